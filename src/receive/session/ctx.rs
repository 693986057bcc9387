//! What all sessions of one receiver share, and the lock that keeps two
//! sessions of one migration from writing at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use super::super::admission::Admission;
use super::super::store::Store;
use super::Refusal;
use crate::wire::message::DiskAnnounce;

/// How long a reconnecting sender waits for its previous session to wind down.
const NAME_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Shared by all sessions of one receiver.
pub struct Ctx {
    pub tls: Arc<ServerConfig>,
    pub token: String,
    pub store: Store,
    pub state_dir: PathBuf,
    pub force: bool,
    pub json: bool,
    /// Where the conversion writes xl configs; `None`: no conversion.
    pub xen_dir: Option<PathBuf>,
    /// The receiver's settings for each conversion.
    pub policy: crate::guest::ConversionPolicy,
    /// Caps and deadline for connections that have not shown the token.
    pub admission: Admission,
    /// Each session's bandwidth limit unless STATE/limits/NAME says otherwise.
    pub limit: Option<crate::wire::rate::Rate>,
    /// Names being received now, with the head digests of their disks.
    active: Mutex<HashMap<String, Vec<Option<String>>>>,
    released: Condvar,
}

impl Ctx {
    pub fn new(
        tls: Arc<ServerConfig>,
        token: String,
        store: Store,
        state_dir: PathBuf,
        opts: &super::super::ReceiveOptions,
    ) -> Ctx {
        Ctx {
            tls,
            token,
            store,
            state_dir,
            force: opts.force,
            json: opts.json,
            xen_dir: opts.xen_dir.clone(),
            policy: opts.policy.clone(),
            admission: Admission::new(opts.admission),
            limit: opts.limit,
            active: Mutex::new(HashMap::new()),
            released: Condvar::new(),
        }
    }

    /// Serialises sessions of one migration: a reconnect waits until the
    /// broken session has committed and let go of the files. A session of
    /// the same name from another disk is refused at once, never queued.
    pub(super) fn lock_name(
        &self,
        name: &str,
        disks: &[DiskAnnounce],
    ) -> Result<NameGuard<'_>, Refusal> {
        let deadline = Instant::now() + NAME_LOCK_WAIT;
        let mut set = self.active.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(heads) = set.get(name) {
            if let Some(d) = other_disk(heads, disks) {
                let r = format!(
                    "migration {name} is being received from another disk right now (the first 64 KiB of disk {} ({}) differ): \
                     copies are never mixed; send under a new --name",
                    d.disk, d.source
                );
                return Err(Refusal::fatal(r));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                let r = format!("migration {name} is busy in another session; retrying");
                return Err(Refusal::retry(r));
            };
            set = self
                .released
                .wait_timeout(set, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let heads = disks.iter().map(|d| d.head_digest.clone()).collect();
        set.insert(name.to_string(), heads);
        Ok(NameGuard {
            ctx: self,
            name: name.to_string(),
        })
    }
}

/// The first of `disks` whose head digest differs from the one `held` (by
/// disk index) records; disks without a digest (older senders) match.
pub(super) fn other_disk<'a>(
    held: &[Option<String>],
    disks: &'a [DiskAnnounce],
) -> Option<&'a DiskAnnounce> {
    held.iter()
        .zip(disks)
        .find_map(|(h, d)| match (h, &d.head_digest) {
            (Some(x), Some(y)) if x != y => Some(d),
            _ => None,
        })
}

/// Holds a migration's name until the session ends.
pub(super) struct NameGuard<'a> {
    ctx: &'a Ctx,
    name: String,
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        let mut set = self.ctx.active.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.name);
        self.ctx.released.notify_all();
    }
}
