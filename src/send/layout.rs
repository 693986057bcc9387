//! From a source disk to the copy plan's input: where its filesystems are
//! and which of their bytes are used (`source::inspect` +
//! `source::filesystems::used_extents`).

use super::plan::{DiskLayout, Region};
use crate::source::device::{Device, ReadAt, Window};
use crate::source::filesystems::{self, Filesystem};
use crate::source::inspect::{self, DiskReport};

/// The layout used for the plan and the description sent as machine.json's
/// `disks[i]` (the `inspect` DiskReport). Anything that cannot be mapped is
/// copied whole, with a note saying why.
pub fn describe(dev: &Device) -> (DiskLayout, DiskReport) {
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
            return (
                DiskLayout {
                    size,
                    regions: Vec::new(),
                    notes: vec![note],
                },
                desc,
            );
        }
    };
    let mut layout = DiskLayout {
        size,
        regions: Vec::new(),
        notes: Vec::new(),
    };
    if let Some(fs) = &report.filesystem {
        add_region(dev, 0, size, fs, "whole disk", &mut layout);
    }
    for p in &report.partitions {
        // An extended partition only holds EBRs and the logical partitions,
        // which are listed themselves; as a region it would swallow them.
        if p.extended {
            continue;
        }
        if let Some(fs) = &p.filesystem {
            let what = format!("partition {}", p.number);
            add_region(dev, p.start_bytes, p.size_bytes, fs, &what, &mut layout);
        }
    }
    (layout, report)
}

fn add_region(
    dev: &Device,
    start: u64,
    len: u64,
    fs: &Filesystem,
    what: &str,
    layout: &mut DiskLayout,
) {
    let kind = fs.kind.as_str();
    if fs.kind.is_ext() && fs.state.as_deref() != Some("clean") {
        layout.notes.push(format!(
            "{what}: {kind} is {}: copied whole",
            fs.state.as_deref().unwrap_or("in an unknown state")
        ));
        layout.regions.push(Region {
            start,
            len,
            used: None,
        });
        return;
    }
    let window = Window::new(dev, start, len);
    match filesystems::used_extents(&window, fs) {
        Ok(Some(used)) => {
            layout.notes.push(format!(
                "{what}: {kind}: {} of {} MiB used",
                used.total_bytes() >> 20,
                len >> 20
            ));
            layout.regions.push(Region {
                start,
                len,
                used: Some(used),
            });
        }
        Ok(None) => layout.regions.push(Region {
            start,
            len,
            used: None,
        }),
        Err(e) => {
            layout.notes.push(format!(
                "{what}: {kind}: used-block map unreadable ({e}): copied whole"
            ));
            layout.regions.push(Region {
                start,
                len,
                used: None,
            });
        }
    }
}
