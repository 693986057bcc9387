//! The receiver's report of a migration: written as `STORE/NAME/report.json`
//! and sent back to the sender in `Message::Done`, so both ends share this
//! one definition.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// Every disk received, read back and matched the sender's digests.
    Complete,
    /// Stopped early; the images are partial and must not be used.
    #[default]
    Incomplete,
    /// Verified, but read from the running server (`send --warm`): not
    /// consistent until a cutover from the live image updates it.
    PreCopy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskCopyReport {
    pub disk: u16,
    pub source: String,
    pub target: String,
    pub size_bytes: u64,
    pub plan_bytes: u64,
    pub chunks: u64,
    pub committed_bytes: u64,
    pub zero_chunks: u64,
    /// Cutover: chunks the target held already (offered, hashed equal, not sent).
    #[serde(default)]
    pub unchanged_chunks: u64,
    #[serde(default)]
    pub unchanged_bytes: u64,
    pub verified: bool,
    /// Digest over the transferred map (ranges + chunk BLAKE3s), see docs/protocol.md.
    pub content_digest: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyReport {
    pub name: String,
    pub state: CopyState,
    pub protocol: u32,
    pub receiver_version: String,
    pub started_unix: u64,
    pub finished_unix: u64,
    /// How many connections the copy took (1 = no resume).
    pub sessions: u32,
    /// This pass updated an earlier copy of the same server in place,
    /// sending only what changed (rehearsal, then cutover).
    #[serde(default)]
    pub cutover: bool,
    pub disks: Vec<DiskCopyReport>,
    pub error: Option<String>,
    /// Filled by the guest conversion once it runs after verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<ConversionSummary>,
}

/// What the sender and the menu are told of the guest conversion; the whole
/// conversion report (fix-ups, kernels, the config text) is the `conversion`
/// key of report.json on dom0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConversionSummary {
    /// The xl domain config written.
    pub config_path: String,
    /// What the administrator runs next (`xl create ...`).
    pub next_command: String,
    pub warnings: Vec<String>,
}
