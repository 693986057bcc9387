//! `STORE/NAME/report.json`: what the receiver did, written at the end of a
//! migration and (as `incomplete`) when it stops early.

use crate::wire::report::CopyReport;
use std::path::Path;

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `report.json` into `dir` (atomically: temp file + rename).
pub fn write(dir: &Path, report: &CopyReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let tmp = dir.join("report.json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, dir.join("report.json"))
}
