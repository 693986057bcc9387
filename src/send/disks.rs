//! One source disk as the sender holds it: opened read-only, planned,
//! announced, and its progress and figures so far.

use std::path::Path;
use std::sync::Arc;

use super::pipeline::DigestState;
use super::plan::{self, DiskLayout, DiskPlan, Region};
use super::{DiskProgress, DiskSendReport, SendError, assemble, flatten, layout};
use crate::source::device::{Device, ReadAt, Window, read_vec};
use crate::source::inspect::DiskReport;
use crate::wire::digest;
use crate::wire::message::{DiskAnnounce, HEAD_LEN};

pub(super) struct SourceDisk {
    pub(super) source: Arc<dyn ReadAt + Send + Sync>,
    pub(super) plan: Arc<DiskPlan>,
    pub(super) announce: DiskAnnounce,
    pub(super) digest: DigestState,
    pub(super) report: DiskSendReport,
    /// Plan bytes processed in the current connection.
    pub(super) done_now: u64,
    pub(super) done_before: u64,
}

/// Opens one source disk, plans its copy and describes it for the receiver.
/// With `--all-blocks` md members are sent as they are, each of them.
pub(super) fn source_disk(
    disk: u16,
    path: &Path,
    all_blocks: bool,
    arrays: &mut flatten::MdArrays,
) -> Result<(SourceDisk, DiskReport), SendError> {
    let dev = Device::open(path)?;
    if all_blocks {
        let (_, desc) = layout::describe(&dev);
        let plan = plan::whole_disk(dev.size(), "--all-blocks: every block sent");
        return planned_disk(disk, path, Arc::new(dev), plan, desc);
    }
    let d = layout::describe_disk(&dev, usize::from(disk), arrays);
    let plan = plan::plan(&d.layout);
    let source: Arc<dyn ReadAt + Send + Sync> = if d.remaps.is_empty() {
        Arc::new(dev)
    } else {
        Arc::new(flatten::Flattened::new(dev, d.remaps))
    };
    planned_disk(disk, path, source, plan, d.report)
}

/// An assembled md array as guest disk `t.disk`: described as a disk
/// without a partition table (its filesystem, the OS on it), only the used
/// blocks of what is inside sent.
pub(super) fn assembled_disk(t: assemble::ToSend) -> Result<(SourceDisk, DiskReport), SendError> {
    let array = Arc::new(t.array);
    let what = format!("md {} array {}", t.level, t.uuid);
    let mut desc = crate::source::inspect::inspect_source(array.clone(), None);
    let size = array.size();
    let mut notes = t.notes.clone();
    let mut regions = Vec::new();
    let pieces = desc
        .filesystem
        .iter_mut()
        .map(|fs| (0, size, fs, what.clone()))
        .chain(
            desc.partitions
                .iter_mut()
                .filter(|p| !p.extended)
                .filter_map(|p| {
                    let part = format!("{what} partition {}", p.number);
                    Some((p.start_bytes, p.size_bytes, p.filesystem.as_mut()?, part))
                }),
        );
    for (start, len, fs, part) in pieces {
        let window = Window::new(array.as_ref(), start, len);
        let used = layout::used_map(&window, fs, &part, &mut notes);
        regions.push(Region { start, len, used });
        // What the guest's conversion maps the array's names to.
        fs.details.md_flattened_from = Some(format!("{} {} {}", t.level, t.version, t.uuid));
    }
    if !array.missing().is_empty() {
        desc.warnings.extend(t.notes.iter().cloned());
    }
    let plan = plan::plan(&DiskLayout {
        size,
        regions,
        notes,
    });
    let disk = u16::try_from(t.disk).map_err(|_| SendError::TooManyDisks(t.disk))?;
    planned_disk(disk, Path::new(&what), array, plan, desc)
}

/// The announce and report of one disk whose plan is made; `dev` is what
/// the copy reads (the disk, or its flattened view).
fn planned_disk(
    disk: u16,
    path: &Path,
    dev: Arc<dyn ReadAt + Send + Sync>,
    plan: DiskPlan,
    desc: DiskReport,
) -> Result<(SourceDisk, DiskReport), SendError> {
    // Streamed twice rather than collected: memory must not grow with the disk.
    let chunks = plan.pieces().count() as u64;
    let plan_digest = digest::plan_digest(plan.pieces().map(|p| (p.offset, p.len)));
    let head = read_vec(dev.as_ref(), 0, dev.size().min(HEAD_LEN) as usize)?;
    let announce = DiskAnnounce {
        disk,
        source: path.display().to_string(),
        size_bytes: dev.size(),
        chunks,
        plan_bytes: plan.bytes(),
        plan_digest,
        notes: plan.notes.clone(),
        head_digest: Some(blake3::hash(&head).to_hex().to_string()),
    };
    let report = DiskSendReport {
        disk,
        source: announce.source.clone(),
        size_bytes: dev.size(),
        plan_bytes: plan.bytes(),
        chunks,
        skipped_unused_bytes: dev.size() - plan.bytes().min(dev.size()),
        notes: plan.notes.clone(),
        ..DiskSendReport::default()
    };
    let d = SourceDisk {
        source: dev,
        plan: Arc::new(plan),
        announce,
        digest: DigestState::default(),
        report,
        done_now: 0,
        done_before: 0,
    };
    Ok((d, desc))
}

pub(super) fn disk_progress(disks: &[SourceDisk]) -> Vec<DiskProgress> {
    disks
        .iter()
        .map(|d| DiskProgress {
            disk: d.announce.disk,
            source: d.announce.source.clone(),
            done_bytes: d.done_before + d.done_now,
            total_bytes: d.announce.plan_bytes,
        })
        .collect()
}
