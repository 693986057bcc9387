//! From a source disk to the copy plan's input: where its filesystems are
//! and which of their bytes are used (`source::inspect` +
//! `source::filesystems::used_extents`).

use super::assemble;
use super::flatten::{MdArrays, MemberFate, Remap};
use super::plan::{DiskLayout, Region};
use crate::source::device::{Device, ReadAt, Window};
use crate::source::extent::ExtentList;
use crate::source::filesystems::{self, Filesystem, md};
use crate::source::inspect::{self, DiskReport};

/// What one source disk contributes: the plan's input, machine.json's
/// `disks[i]`, and the md RAID1 members to read through a
/// [`super::flatten::Flattened`] view.
pub struct Described {
    pub layout: DiskLayout,
    pub report: DiskReport,
    pub remaps: Vec<Remap>,
}

/// [`describe_disk`] for a disk alone (no other disk's arrays known).
pub fn describe(dev: &Device) -> (DiskLayout, DiskReport) {
    let d = describe_disk(dev, 0, &mut MdArrays::default());
    (d.layout, d.report)
}

/// The layout used for the plan and the description sent as machine.json's
/// `disks[i]` (the `inspect` DiskReport). Anything that cannot be mapped is
/// copied whole, with a note saying why. md RAID1 members are flattened
/// (see [`super::flatten`]); `arrays` carries what earlier disks (`disk` is
/// this one's index) held of each array.
pub fn describe_disk(dev: &Device, disk: usize, arrays: &mut MdArrays) -> Described {
    let size = dev.size();
    let report = match inspect::inspect_disk(dev.path()) {
        Ok(r) => r,
        Err(e) => {
            let note = format!(
                "{}: cannot inspect ({e}): copied whole",
                dev.path().display()
            );
            log::warn!("{note}");
            let desc = DiskReport {
                path: dev.path().display().to_string(),
                size_bytes: size,
                table: "none".into(),
                warnings: vec![note.clone()],
                ..DiskReport::default()
            };
            return Described {
                layout: DiskLayout {
                    size,
                    regions: Vec::new(),
                    notes: vec![note],
                },
                report: desc,
                remaps: Vec::new(),
            };
        }
    };
    let mut report = report;
    let mut layout = DiskLayout {
        size,
        regions: Vec::new(),
        notes: Vec::new(),
    };
    let mut remaps = Vec::new();
    let mut warnings = Vec::new();
    let mut member = Member {
        dev,
        disk,
        arrays,
        layout: &mut layout,
        remaps: &mut remaps,
        warnings: &mut warnings,
    };
    if let Some(fs) = report.filesystem.take() {
        report.filesystem = member.region(0, size, fs, "whole disk");
    }
    for p in &mut report.partitions {
        // An extended partition only holds EBRs and the logical partitions,
        // which are listed themselves; as a region it would swallow them.
        if p.extended {
            continue;
        }
        if let Some(fs) = p.filesystem.take() {
            let what = format!("partition {}", p.number);
            p.filesystem = member.region(p.start_bytes, p.size_bytes, fs, &what);
        }
    }
    report.warnings.extend(warnings);
    Described {
        layout,
        report,
        remaps,
    }
}

/// Before any disk is planned: every active md RAID1 member of `dev`
/// (source disk `disk`) told to `arrays`, with whether its data area checks
/// out, so that the member each array travels from is chosen knowing them
/// all. A disk that cannot be inspected has none (it is copied whole).
pub fn survey_md(dev: &Device, disk: usize, arrays: &mut MdArrays) {
    let Ok(report) = inspect::inspect_disk(dev.path()) else {
        return;
    };
    let whole = report
        .filesystem
        .iter()
        .map(|fs| (0, dev.size(), fs, "whole disk".to_string()));
    let parts = report
        .partitions
        .iter()
        .filter(|p| !p.extended)
        .filter_map(|p| {
            let fs = p.filesystem.as_ref()?;
            Some((
                p.start_bytes,
                p.size_bytes,
                fs,
                format!("partition {}", p.number),
            ))
        });
    for (start, len, fs, what) in whole.chain(parts) {
        if let Some(m) = RaidMember::of(dev, start, len, fs) {
            arrays.candidate(&m.uuid, m.raid_disks, disk, &what, m.data.is_ok());
        } else if fs.kind == filesystems::FsKind::LinuxRaidMember
            && assemble::assembles(fs.details.md_level.as_deref())
        {
            let uuid = fs.details.md_array_uuid.clone().unwrap_or_default();
            let sup = md::read_super(&Window::new(dev, start, len), fs);
            let path = dev.path().to_path_buf();
            arrays
                .striped
                .candidate(&uuid, disk, &what, path, start, len, sup);
        }
    }
}

/// An active member of an md RAID1 array, where its data lies.
struct RaidMember {
    uuid: String,
    raid_disks: u32,
    data: Result<md::MdData, md::MdDataError>,
}

impl RaidMember {
    /// `None` for what is not an active RAID1 member (a spare, a faulty
    /// one, another level, not md).
    fn of(dev: &Device, start: u64, len: u64, fs: &Filesystem) -> Option<RaidMember> {
        let active = fs.kind == filesystems::FsKind::LinuxRaidMember
            && fs.details.md_level.as_deref() == Some("raid1")
            && fs
                .details
                .md_role
                .as_deref()
                .is_some_and(|r| r.parse::<u32>().is_ok());
        active.then(|| RaidMember {
            uuid: fs.details.md_array_uuid.clone().unwrap_or_default(),
            raid_disks: fs.details.md_raid_disks.unwrap_or(0),
            data: md::mirror_data(&Window::new(dev, start, len), fs),
        })
    }
}

/// The per-disk state the regions of one disk are added to.
struct Member<'a> {
    dev: &'a Device,
    disk: usize,
    arrays: &'a mut MdArrays,
    layout: &'a mut DiskLayout,
    remaps: &'a mut Vec<Remap>,
    warnings: &'a mut Vec<String>,
}

impl Member<'_> {
    /// Adds the region of `fs` at `start..start+len`; returns what the
    /// guest will find there (for a flattened md member: the filesystem
    /// that was inside; for a member not sent: nothing).
    fn region(&mut self, start: u64, len: u64, fs: Filesystem, what: &str) -> Option<Filesystem> {
        let md = fs.kind == filesystems::FsKind::LinuxRaidMember;
        let level = fs.details.md_level.as_deref();
        if md && level == Some("raid1") {
            return self.raid1_member(start, len, fs, what);
        }
        let uuid = fs.details.md_array_uuid.clone().unwrap_or_default();
        let fate = self.arrays.striped.fate(&uuid);
        if md && assemble::assembles(level) {
            if let Some(Ok(disk)) = fate {
                self.not_sent(
                    start,
                    len,
                    &fs,
                    what,
                    format!("the array is assembled and sent as disk {disk}"),
                );
                return None;
            }
        }
        if md {
            // Striped and parity arrays not assembled: each member goes as
            // it is, superblock and all.
            let why = match fate {
                Some(Err(why)) => format!("not assembled: {why}"),
                // Described without a survey of all disks (--all-blocks).
                _ if assemble::assembles(level) => "not assembled: sent as it is".into(),
                _ => "only RAID0/5/6/10 arrays are assembled, RAID1 flattened".into(),
            };
            let note = format!(
                "{what}: md {} {} member of array {uuid}: copied whole ({why}); the guest \
                 assembles the array itself, so its initrd must carry md and mdadm, and every \
                 member disk must be migrated",
                fs.details.md_metadata.as_deref().unwrap_or("?"),
                level.unwrap_or("unknown-level"),
            );
            self.layout.notes.push(note.clone());
            self.warnings.push(note);
        }
        let window = Window::new(self.dev, start, len);
        let used = used_map(&window, &fs, what, &mut self.layout.notes);
        self.layout.regions.push(Region { start, len, used });
        Some(fs)
    }

    /// A member partition whose array travels otherwise: the guest's
    /// partition is left zero (no stale superblock for its md to find).
    fn not_sent(&mut self, start: u64, len: u64, fs: &Filesystem, what: &str, why: String) {
        let note = format!(
            "{what}: md {} {} member of array {} not sent ({why}): the guest's partition is \
             left zero",
            fs.details.md_metadata.as_deref().unwrap_or_default(),
            fs.details.md_level.as_deref().unwrap_or("unknown-level"),
            fs.details.md_array_uuid.as_deref().unwrap_or_default(),
        );
        self.layout.notes.push(note.clone());
        self.warnings.push(note);
        self.layout.regions.push(Region {
            start,
            len,
            used: Some(ExtentList::new()),
        });
        self.remaps.push(Remap {
            start,
            len,
            source: None,
            data_len: 0,
        });
    }

    /// A RAID1 member: the array is flattened from the member chosen to
    /// carry it; the others are not sent.
    fn raid1_member(
        &mut self,
        start: u64,
        len: u64,
        fs: Filesystem,
        what: &str,
    ) -> Option<Filesystem> {
        let (fate, data) = match RaidMember::of(self.dev, start, len, &fs) {
            Some(m) => {
                let fate =
                    self.arrays
                        .member(&m.uuid, m.raid_disks, self.disk, what, m.data.is_ok());
                (Some(fate), m.data)
            }
            None => (
                None,
                md::mirror_data(&Window::new(self.dev, start, len), &fs),
            ),
        };
        let why = match (fate, data) {
            (None, _) => format!(
                "its role is {}",
                fs.details.md_role.as_deref().unwrap_or("unknown")
            ),
            (Some(MemberFate::Duplicate { disk, what: other }), Ok(_)) => {
                format!("the array travels from disk {disk} {other}")
            }
            (Some(MemberFate::Duplicate { disk, what: other }), Err(e)) => {
                format!("the array travels from disk {disk} {other}; this member's own: {e}")
            }
            (Some(MemberFate::Send), Err(e)) => {
                // Not flattened: the member goes whole and the guest's
                // conversion deals with it as before.
                self.layout.notes.push(format!(
                    "{what}: md member not flattened ({e}): copied whole"
                ));
                self.layout.regions.push(Region {
                    start,
                    len,
                    used: None,
                });
                return Some(fs);
            }
            (Some(MemberFate::Send), Ok(d)) => return self.flatten_raid1(start, len, &fs, what, d),
        };
        self.not_sent(start, len, &fs, what, why);
        None
    }

    /// Sends the RAID1 array's data `d` of the member at `start` as the
    /// partition itself: the filesystem inside at the partition's start,
    /// only its used blocks.
    fn flatten_raid1(
        &mut self,
        start: u64,
        len: u64,
        fs: &Filesystem,
        what: &str,
        d: md::MdData,
    ) -> Option<Filesystem> {
        let uuid = fs.details.md_array_uuid.clone().unwrap_or_default();
        let version = fs.details.md_metadata.clone().unwrap_or_default();
        // mirror_data checked d.offset + d.len <= len.
        let src = start + d.offset;
        let inner_window = Window::new(self.dev, src, d.len);
        let (inner, used) = inner_used(&inner_window, what, &mut self.layout.notes);
        let note = format!(
            "{what}: md {version} RAID1 array {uuid} flattened: its {} ({} bytes at \
             byte {} of the member) written at the partition's start, {} MiB of it used",
            inner.as_ref().map_or("data", |i| i.kind.as_str()),
            d.len,
            d.offset,
            used.total_bytes() >> 20
        );
        self.layout.notes.push(note);
        self.remaps.push(Remap {
            start,
            len,
            source: Some(src),
            data_len: d.len,
        });
        self.layout.regions.push(Region {
            start,
            len,
            used: Some(used),
        });
        inner.map(|mut i| {
            i.details.md_flattened_from = Some(format!("raid1 {version} {uuid}"));
            i
        })
    }
}

/// The filesystem inside an array's data `inner` and its used bytes (all
/// of them when it has no used-block map).
pub(super) fn inner_used(
    inner: &dyn ReadAt,
    what: &str,
    notes: &mut Vec<String>,
) -> (Option<Filesystem>, ExtentList) {
    let fs = filesystems::probe(inner).ok().flatten();
    let used = fs
        .as_ref()
        .and_then(|i| used_map(inner, i, what, notes))
        .unwrap_or_else(|| {
            let mut all = ExtentList::new();
            all.push(0, inner.size());
            all
        });
    (fs, used)
}

/// The used bytes of `fs` in `part` (relative to its start); `None` = send
/// it whole, with a note saying why when that is not simply the kind.
pub(super) fn used_map(
    part: &dyn ReadAt,
    fs: &Filesystem,
    what: &str,
    notes: &mut Vec<String>,
) -> Option<ExtentList> {
    let kind = fs.kind.as_str();
    if fs.kind.is_ext() && fs.state.as_deref() != Some("clean") {
        notes.push(format!(
            "{what}: {kind} is {}: copied whole",
            fs.state.as_deref().unwrap_or("in an unknown state")
        ));
        return None;
    }
    match filesystems::used_extents(part, fs) {
        Ok(Some(used)) => {
            notes.push(format!(
                "{what}: {kind}: {} of {} MiB used",
                used.total_bytes() >> 20,
                part.size() >> 20
            ));
            Some(used)
        }
        Ok(None) => None,
        Err(e) => {
            notes.push(format!(
                "{what}: {kind}: used-block map unreadable ({e}): copied whole"
            ));
            None
        }
    }
}
