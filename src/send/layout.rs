//! From a source disk to the copy plan's input: where its filesystems are
//! and which of their bytes are used.
//!
//! Until `source::inspect` and `source::filesystems` are available in this
//! build, every disk is described by its size only and copied whole (zero
//! chunks are still skipped).

use serde_json::json;

use super::plan::DiskLayout;
use crate::source::device::{Device, ReadAt};

/// The layout used for the plan and the description sent as machine.json's
/// `disks[i]`.
pub fn describe(dev: &Device) -> (DiskLayout, serde_json::Value) {
    let layout = DiskLayout {
        size: dev.size(),
        regions: Vec::new(),
        notes: vec!["no layout information: copied whole (zero chunks skipped)".into()],
    };
    let desc = json!({
        "path": dev.path().display().to_string(),
        "size_bytes": dev.size(),
        "table": "none",
        "partitions": [],
        "warnings": [],
        "errors": [],
    });
    (layout, desc)
}
