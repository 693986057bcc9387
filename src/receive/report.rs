//! `STORE/NAME/report.json`: what the receiver did, written at the end of a
//! migration and (as `incomplete`) when it stops early.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// Every disk received, read back and matched the sender's digests.
    Complete,
    /// Stopped early; the images are partial and must not be used.
    Incomplete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskCopyReport {
    pub disk: u16,
    pub source: String,
    pub target: String,
    pub size_bytes: u64,
    pub plan_bytes: u64,
    pub chunks: u64,
    pub committed_bytes: u64,
    pub zero_chunks: u64,
    pub verified: bool,
    /// Digest over the transferred map (ranges + chunk BLAKE3s), see docs/protocol.md.
    pub content_digest: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyReport {
    pub name: String,
    pub state: CopyState,
    pub protocol: u32,
    pub receiver_version: String,
    pub started_unix: u64,
    pub finished_unix: u64,
    /// How many connections the copy took (1 = no resume).
    pub sessions: u32,
    pub disks: Vec<DiskCopyReport>,
    pub error: Option<String>,
    /// Filled by the guest conversion once it runs after verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<serde_json::Value>,
}

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
