//! The journal's record of an unfinished migration.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::wire::message::DiskAnnounce;

/// Kept in `STATE/journal/NAME/meta.json` while a migration is unfinished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    pub store: PathBuf,
    pub started_unix: u64,
    pub sessions: u32,
    pub disks: Vec<DiskAnnounce>,
    /// Where each disk goes; with `--store dev:` a resume must find the
    /// same devices (absent in journals of older receivers).
    #[serde(default)]
    pub targets: Vec<PathBuf>,
    /// [`token_owner`] of the token that started the migration: a receiver
    /// restarted with another token does not let that token's holders
    /// continue a copy begun under the old one (absent in older journals).
    #[serde(default)]
    pub owner: Option<String>,
    /// A cutover pass: the targets held an earlier copy of this server,
    /// which this pass updates in place (a resume continues it as one).
    #[serde(default)]
    pub cutover: bool,
    /// A pre-copy from the running server (`send --warm`).
    #[serde(default)]
    pub warm: bool,
}

pub fn journal_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("journal").join(name)
}

/// Creates `p` (and its parents) for root only: journals name the token's
/// owner and the plan.
pub fn create_private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}
