//! The third stage: what the store already holds under the name decides
//! between a new copy, a resume and a cutover (or a refusal, before
//! anything is written); then the targets and journals are opened.

use std::fs;
use std::path::{Path, PathBuf};

use super::super::journal::Journal;
use super::super::report;
use super::super::writer::DiskSink;
use super::ctx::other_disk;
use super::handshake::Start;
use super::meta::{JournalLock, clear_journal};
use super::{Ctx, Meta, Refusal, create_private_dir, journal_dir};
use crate::wire::auth::token_owner;
use crate::wire::identity;
use crate::wire::machine::MachineDescription;
use crate::wire::message::DiskAnnounce;
use crate::wire::tls;

/// Creates (or reopens, to resume) the targets of `start`.
pub(super) fn prepare(ctx: &Ctx, start: &Start) -> Result<Prepared, Refusal> {
    let jdir = journal_dir(&ctx.state_dir, &start.name);
    let created = !jdir.exists();
    let lock = lock_journal(ctx, start, &jdir)?;
    let old: Option<Meta> = fs::read(jdir.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let kind = match decide(ctx, start, old.as_ref()) {
        Ok(k) => k,
        Err(r) => {
            // Refused: nothing of this session stays behind.
            if created {
                let _ = fs::remove_dir_all(&jdir);
            }
            return Err(r);
        }
    };
    let meta = match old.filter(|_| kind == Kind::Resume) {
        Some(mut m) => {
            m.sessions += 1;
            m
        }
        None => fresh_meta(ctx, start, kind, &jdir)?,
    };
    open_targets(ctx, start, meta, lock, &jdir)
}

/// The journal's lock, before the journal is read: another receiver
/// process on the same state directory may be writing it.
fn lock_journal(ctx: &Ctx, start: &Start, jdir: &Path) -> Result<JournalLock, Refusal> {
    let at = |e: std::io::Error| fatal(format!("{}: {e}", jdir.display()));
    create_private_dir(jdir).map_err(at)?;
    JournalLock::try_acquire(jdir).map_err(at)?.ok_or_else(|| {
        Refusal::retry(format!(
            "migration {} is being received by another p2xen receive process on {}; retrying",
            start.name,
            ctx.state_dir.display()
        ))
    })
}

/// What this session does with the store's copy under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing there (or `--force`): a new copy.
    New,
    /// The journal's unfinished copy of the same plan: continue it.
    Resume,
    /// A finished (or differently planned) copy of this server: update
    /// it in place, offered chunk by chunk.
    Cutover,
}

fn fatal(e: impl std::fmt::Display) -> Refusal {
    Refusal::fatal(e.to_string())
}

/// Refuses what must not happen to an existing copy (mixing disks, another
/// token, another server, a running guest), else says what to do with it.
fn decide(ctx: &Ctx, start: &Start, old: Option<&Meta>) -> Result<Kind, Refusal> {
    let name = start.name.as_str();
    let disks = start.disks.as_slice();
    let exists = ctx.store.exists(name).map_err(fatal)?;
    let owner = token_owner(&ctx.token);
    let foreign = old
        .and_then(|m| m.owner.as_ref())
        .is_some_and(|o| *o != owner);
    let other = old.and_then(|m| {
        let held: Vec<Option<String>> = m.disks.iter().map(|d| d.head_digest.clone()).collect();
        other_disk(&held, disks)
    });
    if let (true, Some(d), false) = (exists, other, ctx.force) {
        return Err(fatal(format!(
            "migration {name} holds a partial copy of another disk (the first 64 KiB of disk {} ({}) differ): \
             copies are never mixed; send under a new --name, or run p2xen receive --force to start it over",
            d.disk, d.source
        )));
    }
    if exists && foreign && !ctx.force {
        return Err(fatal(format!(
            "migration {name} was started with another token (the receiver's token changed since): \
             it cannot be resumed with this one; send under a new --name, or run p2xen receive --force to start it over"
        )));
    }
    let targets = target_paths(ctx, name, disks.len());
    let resumable = old.is_some_and(|m| {
        m.store == ctx.store.meta_root
            && same_plan(&m.disks, disks)
            && m.warm == start.warm
            && (m.targets.is_empty() || m.targets == targets)
    }) && exists
        && !foreign
        && other.is_none();
    // A copy that cannot be resumed is updated in place when it is this
    // server's (rehearsal, then cutover); another server's is never touched.
    let cutover = exists && !resumable && !ctx.force;
    if cutover {
        if let Err(why) = same_server(ctx, name, &start.machine) {
            let path = ctx.store.existing_path(name);
            return Err(fatal(format!(
                "{} already exists and is not a copy of this server ({why}): a cutover only updates \
                 the same server's copy; pick another --name on the sender, or start the receiver \
                 with --force to replace it",
                path.display()
            )));
        }
    }
    if cutover || old.is_some_and(|m| m.cutover) {
        refuse_if_in_use(ctx, name, disks.len())?;
    }
    // Devices given with --store dev: are checked before anything is
    // created; resuming or cutting over, they hold our own copy.
    let sizes: Vec<u64> = disks.iter().map(|d| d.size_bytes).collect();
    ctx.store
        .check_disks(&sizes, resumable || cutover, ctx.force)
        .map_err(fatal)?;
    Ok(match (resumable, cutover) {
        (true, _) => Kind::Resume,
        (false, true) => Kind::Cutover,
        (false, false) => Kind::New,
    })
}

fn target_paths(ctx: &Ctx, name: &str, disks: usize) -> Vec<PathBuf> {
    (0..disks).map(|i| ctx.store.disk_path(name, i)).collect()
}

/// The journal record of a new copy or a cutover; an existing copy that is
/// neither (`--force`) is removed first.
fn fresh_meta(
    ctx: &Ctx,
    start: &Start,
    kind: Kind,
    jdir: &std::path::Path,
) -> Result<Meta, Refusal> {
    let name = start.name.as_str();
    if kind == Kind::New && ctx.store.exists(name).map_err(fatal)? {
        log::warn!("{name}: replacing the existing migration (--force)");
        ctx.store.remove(name).map_err(fatal)?;
    }
    clear_journal(jdir);
    Ok(Meta {
        name: name.to_string(),
        store: ctx.store.meta_root.clone(),
        started_unix: report::now_unix(),
        sessions: 1,
        disks: start.disks.clone(),
        targets: target_paths(ctx, name, start.disks.len()),
        owner: Some(token_owner(&ctx.token)),
        cutover: kind == Kind::Cutover,
        warm: start.warm,
    })
}

/// Records `meta` and the machine, marks each disk incomplete and opens
/// its target and journal.
fn open_targets(
    ctx: &Ctx,
    start: &Start,
    meta: Meta,
    lock: JournalLock,
    jdir: &Path,
) -> Result<Prepared, Refusal> {
    let name = start.name.as_str();
    create_private_dir(jdir).map_err(fatal)?;
    let meta_json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    tls::write_private(&jdir.join("meta.json"), &meta_json).map_err(fatal)?;
    let dir = ctx.store.create_dir(name).map_err(fatal)?;
    let machine_json = serde_json::to_vec_pretty(&start.machine).unwrap_or_default();
    fs::write(dir.join("machine.json"), machine_json)
        .map_err(|e| fatal(format!("{}/machine.json: {e}", dir.display())))?;
    let mut sinks = Vec::new();
    for (i, d) in start.disks.iter().enumerate() {
        let marker = dir.join(format!("disk{i}.img.incomplete"));
        fs::write(&marker, b"partial image: the copy has not been verified\n")
            .map_err(|e| fatal(format!("{}: {e}", marker.display())))?;
        let target = ctx.store.open_disk(name, i, d.size_bytes).map_err(fatal)?;
        let journal = Journal::open(&jdir.join(format!("disk{i}.journal"))).map_err(fatal)?;
        sinks.push(DiskSink::new(d.clone(), target, journal));
    }
    ctx.store
        .link_disks(name, start.disks.len())
        .map_err(fatal)?;
    Ok(Prepared {
        sinks,
        meta,
        dir,
        lock,
    })
}

/// Whether the copy the store holds under `name` is of the server that
/// describes itself as `machine` now, judged by the disks' identity (see
/// [`identity`]). Err says why not, for the refusal.
fn same_server(ctx: &Ctx, name: &str, machine: &MachineDescription) -> Result<(), String> {
    let path = ctx.store.dir(name).join("machine.json");
    let old: MachineDescription = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("{} is missing or unreadable", path.display()))?;
    let differences = identity::differences(&old, machine);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("; "))
    }
}

/// A cutover rewrites the earlier copy in place: never under a guest (a
/// rehearsal left running) or anything else that has it open. Retryable:
/// the sender keeps trying while the administrator shuts the guest down.
fn refuse_if_in_use(ctx: &Ctx, name: &str, disks: usize) -> Result<(), Refusal> {
    for i in 0..disks {
        let path = ctx.store.disk_path(name, i);
        let users = super::super::in_use::users(&path);
        if !users.is_empty() {
            return Err(Refusal::retry(format!(
                "{} is in use by {}: shut the guest down (xl shutdown) or detach it before the cutover",
                path.display(),
                users.join(", ")
            )));
        }
    }
    Ok(())
}

/// A session's targets, opened, and its journal record.
pub(super) struct Prepared {
    pub(super) sinks: Vec<DiskSink>,
    pub(super) meta: Meta,
    /// STORE/NAME.
    pub(super) dir: PathBuf,
    /// Held until the session ends.
    pub(super) lock: JournalLock,
}

fn same_plan(a: &[DiskAnnounce], b: &[DiskAnnounce]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.size_bytes == y.size_bytes && x.plan_digest == y.plan_digest && x.chunks == y.chunks
        })
}
