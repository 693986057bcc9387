//! The journal's record of an unfinished migration.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
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

/// `STATE/journal/NAME/lock`, locked by the session writing that journal.
fn lock_path(jdir: &Path) -> PathBuf {
    jdir.join("lock")
}

/// Held by the session that writes a journal for as long as it runs: a
/// second receiver process on the same state directory cannot write the
/// same journal, and `p2xen receive --status` tells a running migration from
/// an interrupted one by it (a killed receiver's lock goes with its process).
pub struct JournalLock {
    _flock: Flock<fs::File>,
}

impl JournalLock {
    /// The lock, or None when another process holds it.
    pub fn try_acquire(jdir: &Path) -> std::io::Result<Option<JournalLock>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(lock_path(jdir))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(JournalLock { _flock: flock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }
}

/// Whether a session (of any receiver process) is writing the journal in
/// `jdir` now.
pub fn is_running(jdir: &Path) -> bool {
    let Ok(file) = fs::File::open(lock_path(jdir)) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockSharedNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

/// Empties the journal directory for a new copy, keeping the lock that
/// this session holds.
pub fn clear_journal(jdir: &Path) {
    let Ok(entries) = fs::read_dir(jdir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name() != "lock" {
            let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
        }
    }
}

/// `STATE/journal/NAME/progress.json`: the running session's throughput,
/// rewritten with every progress line, read by `p2xen receive --status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub updated_unix: u64,
    /// Bytes received in this session so far, and their rate.
    pub received_bytes: u64,
    pub bytes_per_sec: f64,
}

pub fn progress_path(jdir: &Path) -> PathBuf {
    jdir.join("progress.json")
}

/// Written beside and renamed, so a reader never sees half of it.
pub fn write_progress(jdir: &Path, p: &Progress) -> std::io::Result<()> {
    let tmp = jdir.join("progress.json.tmp");
    fs::write(&tmp, serde_json::to_vec(p).unwrap_or_default())?;
    fs::rename(&tmp, progress_path(jdir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_lock_is_exclusive_and_tells_running_from_interrupted() {
        let t = tempfile::tempdir().unwrap();
        let jdir = t.path();
        assert!(!is_running(jdir), "no lock file: not running");
        let held = JournalLock::try_acquire(jdir).unwrap().expect("first lock");
        assert!(JournalLock::try_acquire(jdir).unwrap().is_none());
        assert!(is_running(jdir));
        fs::write(jdir.join("disk0.journal"), b"x").unwrap();
        fs::create_dir(jdir.join("sub")).unwrap();
        clear_journal(jdir);
        let left: Vec<_> = fs::read_dir(jdir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["lock"]);
        assert!(is_running(jdir), "clearing kept the held lock");
        drop(held);
        assert!(!is_running(jdir));
        assert!(JournalLock::try_acquire(jdir).unwrap().is_some());
    }
}
