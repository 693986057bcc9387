//! One sender connection: handshake, token, targets, chunks, verification.

use std::collections::HashMap;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde::{Deserialize, Serialize};

use super::admission::{Admission, Deadline, Ticket};
use super::delta::{self, TargetReader};
use super::journal::Journal;
use super::limit::SessionLimit;
use super::report;
use super::store::{self, Store};
use super::verify::verify_disk;
use super::writer::{DiskSink, Input, Writer};
use crate::wire::auth::{token_matches, token_owner};
use crate::wire::bufsock::BufSock;
use crate::wire::frame::{Frame, FrameError, FrameLimits, read_frame, read_frame_within};
use crate::wire::identity;
use crate::wire::machine::MachineDescription;
use crate::wire::message::{DiskAnnounce, DiskResume, Message, parse_hello};
use crate::wire::name::MigrationName;
use crate::wire::report::{CopyReport, CopyState, DiskCopyReport};
use crate::wire::{PROTOCOL_VERSION, tls};

/// A sender that sends nothing for this long is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a reconnecting sender waits for its previous session to wind down.
const NAME_LOCK_WAIT: Duration = Duration::from_secs(30);
const MAX_DISKS: usize = 64;
const MAX_DISK_BYTES: u64 = 1 << 50;

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
    /// `--guest-kernel` for each conversion.
    pub guest_kernel: Option<crate::guest::supplied_kernel::SuppliedKernel>,
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
        opts: &super::ReceiveOptions,
    ) -> Ctx {
        Ctx {
            tls,
            token,
            store,
            state_dir,
            force: opts.force,
            json: opts.json,
            xen_dir: opts.xen_dir.clone(),
            guest_kernel: opts.guest_kernel.clone(),
            admission: Admission::new(opts.admission),
            limit: opts.limit,
            active: Mutex::new(HashMap::new()),
            released: Condvar::new(),
        }
    }

    /// Serialises sessions of one migration: a reconnect waits until the
    /// broken session has committed and let go of the files. A session of
    /// the same name from another disk is refused at once, never queued.
    fn lock_name(
        &self,
        name: &str,
        disks: &[DiskAnnounce],
    ) -> Result<NameGuard<'_>, (String, bool)> {
        let deadline = Instant::now() + NAME_LOCK_WAIT;
        let mut set = self.active.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(heads) = set.get(name) {
            if let Some(d) = other_disk(heads, disks) {
                let r = format!(
                    "migration {name} is being received from another disk right now (the first 64 KiB of disk {} ({}) differ): \
                     copies are never mixed; send under a new --name",
                    d.disk, d.source
                );
                return Err((r, true));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                let r = format!("migration {name} is busy in another session; retrying");
                return Err((r, false));
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
fn other_disk<'a>(held: &[Option<String>], disks: &'a [DiskAnnounce]) -> Option<&'a DiskAnnounce> {
    held.iter()
        .zip(disks)
        .find_map(|(h, d)| match (h, &d.head_digest) {
            (Some(x), Some(y)) if x != y => Some(d),
            _ => None,
        })
}

struct NameGuard<'a> {
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

/// How a session ended.
#[derive(Debug)]
pub enum Outcome {
    /// Refused before anything was created or written.
    Refused(String),
    /// Connection lost or a retryable error; the journal allows resuming.
    Interrupted(String),
    /// Verified and reported.
    Completed(Box<CopyReport>),
    /// Stopped by an error reconnecting cannot fix (target full, ...).
    Failed(String),
}

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

type Tls = StreamOwned<ServerConnection, BufSock>;

fn send(s: &mut Tls, m: &Message) {
    if let Err(e) = m
        .write(s)
        .and_then(|_| std::io::Write::flush(s).map_err(Into::into))
    {
        log::debug!("could not send {m:?}: {e}");
    }
}

fn refuse(s: &mut Tls, reason: String, fatal: bool) -> String {
    send(
        s,
        &Message::Refused {
            reason: reason.clone(),
            fatal,
        },
    );
    reason
}

/// One connection, from TLS handshake to report. `ticket` is its place
/// among the unauthenticated connections, given back once the token matched.
/// Every refusal names the peer's address.
pub fn serve(tcp: TcpStream, ctx: &Ctx, ticket: Ticket) -> Outcome {
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    match serve_peer(tcp, ctx, ticket, &peer) {
        Outcome::Refused(r) => Outcome::Refused(format!("{peer}: {r}")),
        other => other,
    }
}

/// How a stage of a session ended it early; becomes the session's
/// [`Outcome`]. The sender has been told already where it can be.
enum SessionError {
    Refused(String),
    Interrupted(String),
    Failed(String),
}

impl From<SessionError> for Outcome {
    fn from(e: SessionError) -> Outcome {
        match e {
            SessionError::Refused(r) => Outcome::Refused(r),
            SessionError::Interrupted(r) => Outcome::Interrupted(r),
            SessionError::Failed(r) => Outcome::Failed(r),
        }
    }
}

/// The stages in the order of docs/protocol.md: hello, start, ready, chunks,
/// verification, conversion and report.
fn serve_peer(tcp: TcpStream, ctx: &Ctx, ticket: Ticket, peer: &str) -> Outcome {
    let run = || -> Result<Outcome, SessionError> {
        let mut s = handshake(tcp, ctx, ticket)?;
        let (name, machine, disks, warm) = read_start(&mut s)?;
        let _guard = ctx
            .lock_name(&name, &disks)
            .map_err(|(reason, fatal)| SessionError::Refused(refuse(&mut s, reason, fatal)))?;
        let Prepared { sinks, meta, dir } = prepare(ctx, &name, &machine, &disks, warm)
            .map_err(|(reason, fatal)| SessionError::Refused(refuse(&mut s, reason, fatal)))?;
        if meta.sessions > 1 {
            log::info!("{name}: resuming (session {}) from {peer}", meta.sessions);
        } else if meta.cutover {
            log::info!(
                "{name}: cutover from {peer}: updating the earlier copy in place, only changed chunks are sent"
            );
        } else {
            log::info!("{name}: new migration from {peer}, {} disk(s)", disks.len());
        }
        let ready = Message::Ready {
            resumed: meta.sessions > 1,
            disks: sinks
                .iter()
                .map(|d| DiskResume {
                    disk: d.announce.disk,
                    committed: d.journal().ranges(),
                })
                .collect(),
            cutover: meta.cutover,
        };
        send(&mut s, &ready);
        let mut rep = CopyReport {
            name: name.clone(),
            state: CopyState::Incomplete,
            protocol: PROTOCOL_VERSION,
            receiver_version: crate::wire::software(),
            started_unix: meta.started_unix,
            finished_unix: report::now_unix(),
            sessions: meta.sessions,
            cutover: meta.cutover,
            disks: Vec::new(),
            error: None,
            conversion: None,
        };
        let session = Session {
            ctx,
            name: &name,
            dir: &dir,
            cutover: meta.cutover,
            warm: meta.warm,
        };
        let (mut writer, digests) = session.receive_chunks(&mut s, sinks, &mut rep)?;
        session.verify(&mut s, &mut writer, &digests, &mut rep)?;
        // Verified and recorded: the journal (closed with the writer) is no
        // longer needed.
        drop(writer);
        let _ = fs::remove_dir_all(journal_dir(&ctx.state_dir, &name));
        log::info!(
            "{name}: copy complete and verified ({} disk(s)) in {}",
            rep.disks.len(),
            dir.display()
        );
        Ok(session.convert_and_report(&mut s, rep))
    };
    run().unwrap_or_else(Outcome::from)
}

/// TLS handshake and hello: version, then token, before anything else
/// happens, within the deadline and in one small frame. Answers Welcome.
fn handshake(tcp: TcpStream, ctx: &Ctx, ticket: Ticket) -> Result<Tls, SessionError> {
    let deadline = ctx.admission.limits().hello_deadline;
    // The deadline's watcher closes the socket; the read timeout, a little
    // later, is only the fallback should that thread not run.
    let _ = tcp.set_read_timeout(Some((deadline + Duration::from_secs(1)).min(IDLE_TIMEOUT)));
    let _ = tcp.set_nodelay(true);
    let watch = Deadline::arm(&tcp, deadline)
        .map_err(|e| SessionError::Refused(format!("cannot watch the handshake: {e}")))?;
    let conn = ServerConnection::new(ctx.tls.clone())
        .map_err(|e| SessionError::Refused(format!("TLS: {e}")))?;
    let mut s = StreamOwned::new(conn, BufSock::new(tcp));
    let refused = |s: &mut Tls, reason: String| SessionError::Refused(refuse(s, reason, true));
    let hello = match read_frame_within(&mut s, FrameLimits::PRE_AUTH) {
        Ok(Frame::Control(j)) => j,
        Ok(Frame::Chunk(_)) => return Err(refused(&mut s, "data before hello".into())),
        Err(e) => {
            let timed_out = matches!(&e, FrameError::Io(io) if is_timeout(io));
            let why = if watch.expired() || timed_out {
                format!("no hello within {} s (--hello-timeout)", deadline.as_secs())
            } else {
                format!("no valid hello: {e}")
            };
            return Err(SessionError::Refused(why));
        }
    };
    let token = match parse_hello(&hello) {
        Ok((_, token)) => token,
        Err(e) => return Err(refused(&mut s, e.to_string())),
    };
    if !token_matches(&ctx.token, &token) {
        return Err(refused(
            &mut s,
            "wrong token: use the token printed by p2xen receive".into(),
        ));
    }
    // Authenticated: no deadline now, the full buffer and frame sizes, and
    // the place among the unauthenticated connections is free again.
    watch.disarm();
    drop(ticket);
    let _ = s.sock.tcp().set_read_timeout(Some(IDLE_TIMEOUT));
    s.sock.grow();
    send(
        &mut s,
        &Message::Welcome {
            protocol: PROTOCOL_VERSION,
            software: crate::wire::software(),
        },
    );
    Ok(s)
}

/// The Start message: name, machine, disks, checked.
fn read_start(
    s: &mut Tls,
) -> Result<(String, Box<MachineDescription>, Vec<DiskAnnounce>, bool), SessionError> {
    let refused = |s: &mut Tls, reason: String| SessionError::Refused(refuse(s, reason, true));
    let (name, machine, disks, warm) = match read_frame(s) {
        Ok(Frame::Control(j)) => match serde_json::from_slice::<Message>(&j) {
            Ok(Message::Start {
                name,
                machine,
                disks,
                warm,
            }) => (name, machine, disks, warm),
            Ok(other) => return Err(refused(s, format!("expected start, got {other:?}"))),
            Err(e) => return Err(refused(s, format!("bad start message: {e}"))),
        },
        Ok(Frame::Chunk(_)) => return Err(refused(s, "data before start".into())),
        Err(e) => return Err(SessionError::Refused(e.to_string())),
    };
    if let Err(e) = check_start(&name, &disks) {
        return Err(refused(s, e));
    }
    Ok((name, machine, disks, warm))
}

/// One migration's session after it was prepared.
struct Session<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    /// STORE/NAME.
    dir: &'a Path,
    /// The targets hold an earlier copy: answer the sender's offers.
    cutover: bool,
    /// A pre-copy from the running server: verified, never converted.
    warm: bool,
}

impl Session<'_> {
    /// Chunks, handed to the writer thread in order, until Finish. Returns
    /// the writer with its disks and each disk's announced content digest.
    fn receive_chunks(
        &self,
        s: &mut Tls,
        sinks: Vec<DiskSink>,
        rep: &mut CopyReport,
    ) -> Result<(Writer, Vec<Option<String>>), SessionError> {
        let name = self.name;
        let (tx, rx) = sync_channel(4);
        let json = self.ctx.json;
        let pname = name.to_string();
        let n = sinks.len();
        let mut readers = if self.cutover {
            cutover_readers(&sinks).map_err(|e| {
                let msg = e.to_string();
                SessionError::Failed(refuse(s, msg, true))
            })?
        } else {
            Vec::new()
        };
        let writer = Writer::new(sinks);
        let handle = std::thread::spawn(move || {
            writer.run(rx, Box::new(move |d, secs| progress(&pname, d, secs, json)))
        });
        let mut digests: Vec<Option<String>> = vec![None; n];
        let mut limit = SessionLimit::new(&self.ctx.state_dir, name, self.ctx.limit);
        let read_result: Result<(), String> = loop {
            match read_frame(s) {
                Ok(Frame::Chunk(c)) => {
                    let len = c.payload.len() as u64;
                    if tx.send(Input::Chunk(c)).is_err() {
                        break Ok(()); // the writer stopped; its error says why
                    }
                    limit.after(len);
                }
                Ok(Frame::Control(j)) => match serde_json::from_slice::<Message>(&j) {
                    Ok(Message::Offer { disk, chunks }) if self.cutover => {
                        let keep = |i| tx.send(i).is_ok();
                        match delta::answer(&mut readers, disk, &chunks, keep) {
                            Ok(offsets) => send(s, &Message::Want { disk, offsets }),
                            Err(e) => break Err(e.to_string()),
                        }
                    }
                    Ok(Message::DiskEnd {
                        disk,
                        content_digest,
                    }) => {
                        if let Some(slot) = digests.get_mut(usize::from(disk)) {
                            *slot = Some(content_digest);
                        }
                    }
                    Ok(Message::Finish) => break Ok(()),
                    Ok(other) => break Err(format!("unexpected message {other:?}")),
                    Err(e) => break Err(format!("bad control message: {e}")),
                },
                Err(e) => break Err(format!("connection lost: {e}")),
            }
        };
        drop(tx);
        let (writer, write_result) = handle
            .join()
            .map_err(|_| SessionError::Failed("writer thread panicked".into()))?;
        if let Err(e) = write_result {
            let msg = e.to_string();
            log::error!("{name}: {msg}");
            rep.disks = disk_reports(self.ctx, name, &writer.disks, &digests, &[]);
            rep.error = Some(msg.clone());
            save_report(self.dir, rep);
            refuse(s, msg.clone(), e.is_fatal());
            linger(s);
            return Err(if e.is_fatal() {
                SessionError::Failed(msg)
            } else {
                SessionError::Interrupted(msg)
            });
        }
        if let Err(msg) = read_result {
            log::warn!("{name}: {msg}; committed data is kept for resume");
            return Err(SessionError::Interrupted(msg));
        }
        Ok((writer, digests))
    }

    /// Zeroes what was not sent (LVM), verifies by reading back, and
    /// records the copy as complete.
    fn verify(
        &self,
        s: &mut Tls,
        writer: &mut Writer,
        digests: &[Option<String>],
        rep: &mut CopyReport,
    ) -> Result<(), SessionError> {
        let name = self.name;
        let mut verified = Vec::new();
        let mut failure = None;
        for (i, d) in writer.disks.iter_mut().enumerate() {
            let written = d.journal().ranges();
            if let Err(e) = d.target.fill_gaps(&written).and_then(|_| d.target.sync()) {
                let msg = format!("disk {i}: {e}");
                log::error!("{name}: {msg}");
                rep.error = Some(msg.clone());
                save_report(self.dir, rep);
                refuse(s, msg.clone(), e.is_full());
                return Err(if e.is_full() {
                    SessionError::Failed(msg)
                } else {
                    SessionError::Interrupted(msg)
                });
            }
            match verify_disk(d, digests.get(i).and_then(|x| x.as_deref())) {
                Ok(digest) => verified.push(Some(digest)),
                Err(e) => {
                    verified.push(None);
                    failure.get_or_insert(e.to_string());
                }
            }
        }
        rep.disks = disk_reports(self.ctx, name, &writer.disks, digests, &verified);
        rep.finished_unix = report::now_unix();
        if let Some(msg) = failure {
            log::error!("{name}: verification failed: {msg}");
            rep.error = Some(msg.clone());
            save_report(self.dir, rep);
            refuse(s, msg.clone(), false);
            return Err(SessionError::Interrupted(msg));
        }
        rep.error = None;
        if self.warm {
            // The marker stays, saying why: `p2xen convert` refuses such a copy.
            rep.state = CopyState::PreCopy;
            for i in 0..writer.disks.len() {
                let marker = self.dir.join(format!("disk{i}.img.incomplete"));
                let _ = fs::write(&marker, PRE_COPY_MARKER);
            }
        } else {
            rep.state = CopyState::Complete;
            for i in 0..writer.disks.len() {
                let _ = fs::remove_file(self.dir.join(format!("disk{i}.img.incomplete")));
            }
        }
        save_report(self.dir, rep);
        Ok(())
    }

    /// The guest conversion on the verified copy (which is recorded before
    /// the conversion touches it), then Done with the report.
    fn convert_and_report(&self, s: &mut Tls, mut rep: CopyReport) -> Outcome {
        let name = self.name;
        let mut converted = true;
        if self.warm {
            log::info!(
                "{name}: pre-copy of the running server verified; it is not consistent: shut the server down, boot the p2xen live image and send again under --name {name} (the cutover) to finish it"
            );
        } else if let Some(xen_dir) = &self.ctx.xen_dir {
            // A cutover converts the new state again, over its own earlier
            // config and partition images.
            let replace = self.cutover;
            match super::conversion::after_verified_copy(
                self.dir,
                name,
                xen_dir,
                self.ctx.guest_kernel.as_ref(),
                replace,
            ) {
                Ok(conv) => rep.conversion = Some(conv),
                Err(msg) => {
                    let msg = format!(
                        "copy verified, but the guest conversion failed: {msg}; fix it and run p2xen convert --name {name} --store {}",
                        self.ctx.store.meta_root.display()
                    );
                    log::error!("{name}: {msg}");
                    rep.error = Some(msg);
                    save_report(self.dir, &rep);
                    converted = false;
                }
            }
        }
        send(
            s,
            &Message::Done {
                report: Box::new(rep.clone()),
            },
        );
        s.conn.send_close_notify();
        let _ = std::io::Write::flush(s);
        match rep.error.clone() {
            Some(msg) if !converted => Outcome::Failed(msg),
            _ => Outcome::Completed(Box::new(rep)),
        }
    }
}

/// Closes after a refusal mid-copy without resetting the connection: the
/// sender is still streaming, and closing with unread input would send a RST
/// that can destroy the refusal before the sender reads it.
fn linger(s: &mut Tls) {
    use std::io::Read;
    s.conn.send_close_notify();
    let _ = std::io::Write::flush(s);
    let _ = s.sock.tcp().shutdown(std::net::Shutdown::Write);
    let _ = s
        .sock
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match s.sock.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

fn check_start(name: &str, disks: &[DiskAnnounce]) -> Result<(), String> {
    MigrationName::parse(name).map_err(|e| e.to_string())?;
    if disks.is_empty() || disks.len() > MAX_DISKS {
        return Err(format!(
            "{} disks announced (1..={MAX_DISKS} allowed)",
            disks.len()
        ));
    }
    for (i, d) in disks.iter().enumerate() {
        if usize::from(d.disk) != i || d.size_bytes > MAX_DISK_BYTES || d.plan_bytes > d.size_bytes
        {
            return Err(format!("disk {i}: inconsistent announcement {d:?}"));
        }
    }
    Ok(())
}

/// A reader beside each target, for hashing what it holds.
fn cutover_readers(sinks: &[DiskSink]) -> Result<Vec<TargetReader>, store::StoreError> {
    sinks
        .iter()
        .map(|d| TargetReader::open(d.target.path(), d.announce.size_bytes))
        .collect()
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
fn refuse_if_in_use(ctx: &Ctx, name: &str, disks: usize) -> Result<(), String> {
    for i in 0..disks {
        let path = ctx.store.disk_path(name, i);
        let users = super::in_use::users(&path);
        if !users.is_empty() {
            return Err(format!(
                "{} is in use by {}: shut the guest down (xl shutdown) or detach it before the cutover",
                path.display(),
                users.join(", ")
            ));
        }
    }
    Ok(())
}

struct Prepared {
    sinks: Vec<DiskSink>,
    meta: Meta,
    dir: PathBuf,
}

fn same_plan(a: &[DiskAnnounce], b: &[DiskAnnounce]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.size_bytes == y.size_bytes && x.plan_digest == y.plan_digest && x.chunks == y.chunks
        })
}

/// Creates (or reopens, to resume) the targets. Errors: (reason, fatal).
fn prepare(
    ctx: &Ctx,
    name: &str,
    machine: &MachineDescription,
    disks: &[DiskAnnounce],
    warm: bool,
) -> Result<Prepared, (String, bool)> {
    let jdir = journal_dir(&ctx.state_dir, name);
    let meta_path = jdir.join("meta.json");
    let old: Option<Meta> = fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fatal = |e: &dyn std::fmt::Display| (e.to_string(), true);
    let exists = ctx.store.exists(name).map_err(|e| fatal(&e))?;
    let owner = token_owner(&ctx.token);
    let foreign = old
        .as_ref()
        .and_then(|m| m.owner.as_ref())
        .is_some_and(|o| *o != owner);
    let other = old.as_ref().and_then(|m| {
        let held: Vec<Option<String>> = m.disks.iter().map(|d| d.head_digest.clone()).collect();
        other_disk(&held, disks)
    });
    if let (true, Some(d), false) = (exists, other, ctx.force) {
        return Err(fatal(&format!(
            "migration {name} holds a partial copy of another disk (the first 64 KiB of disk {} ({}) differ): \
             copies are never mixed; send under a new --name, or run p2xen receive --force to start it over",
            d.disk, d.source
        )));
    }
    if exists && foreign && !ctx.force {
        return Err(fatal(&format!(
            "migration {name} was started with another token (the receiver's token changed since): \
             it cannot be resumed with this one; send under a new --name, or run p2xen receive --force to start it over"
        )));
    }
    let targets: Vec<PathBuf> = (0..disks.len())
        .map(|i| ctx.store.disk_path(name, i))
        .collect();
    let resumable = old.as_ref().is_some_and(|m| {
        m.store == ctx.store.meta_root
            && same_plan(&m.disks, disks)
            && m.warm == warm
            && (m.targets.is_empty() || m.targets == targets)
    }) && exists
        && !foreign
        && other.is_none();
    // A copy that cannot be resumed is updated in place when it is this
    // server's (rehearsal, then cutover); another server's is never touched.
    let cutover = exists && !resumable && !ctx.force;
    if cutover {
        if let Err(why) = same_server(ctx, name, machine) {
            let path = ctx.store.existing_path(name);
            return Err(fatal(&format!(
                "{} already exists and is not a copy of this server ({why}): a cutover only updates \
                 the same server's copy; pick another --name on the sender, or start the receiver \
                 with --force to replace it",
                path.display()
            )));
        }
    }
    if cutover || old.as_ref().is_some_and(|m| m.cutover) {
        refuse_if_in_use(ctx, name, disks.len()).map_err(|e| (e, false))?;
    }
    // Devices given with --store dev: are checked before anything is
    // created; resuming or cutting over, they hold our own copy.
    let sizes: Vec<u64> = disks.iter().map(|d| d.size_bytes).collect();
    ctx.store
        .check_disks(&sizes, resumable || cutover, ctx.force)
        .map_err(|e| fatal(&e))?;
    let meta = match old.filter(|_| resumable) {
        Some(mut m) => {
            m.sessions += 1;
            m
        }
        None => {
            if exists && !cutover {
                log::warn!("{name}: replacing the existing migration (--force)");
                ctx.store.remove(name).map_err(|e| fatal(&e))?;
            }
            let _ = fs::remove_dir_all(&jdir);
            Meta {
                name: name.to_string(),
                store: ctx.store.meta_root.clone(),
                started_unix: report::now_unix(),
                sessions: 1,
                disks: disks.to_vec(),
                targets,
                owner: Some(owner),
                cutover,
                warm,
            }
        }
    };
    create_private_dir(&jdir).map_err(|e| fatal(&e))?;
    let meta_json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    tls::write_private(&meta_path, &meta_json).map_err(|e| fatal(&e))?;
    let dir = ctx.store.create_dir(name).map_err(|e| fatal(&e))?;
    let machine_json = serde_json::to_vec_pretty(machine).unwrap_or_default();
    fs::write(dir.join("machine.json"), machine_json)
        .map_err(|e| (format!("{}/machine.json: {e}", dir.display()), true))?;
    let mut sinks = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let marker = dir.join(format!("disk{i}.img.incomplete"));
        fs::write(&marker, b"partial image: the copy has not been verified\n")
            .map_err(|e| (format!("{}: {e}", marker.display()), true))?;
        let target = ctx
            .store
            .open_disk(name, i, d.size_bytes)
            .map_err(|e| fatal(&e))?;
        let journal =
            Journal::open(&jdir.join(format!("disk{i}.journal"))).map_err(|e| fatal(&e))?;
        sinks.push(DiskSink::new(d.clone(), target, journal));
    }
    ctx.store
        .link_disks(name, disks.len())
        .map_err(|e| fatal(&e))?;
    Ok(Prepared { sinks, meta, dir })
}

/// What `diskN.img.incomplete` says after a verified pre-copy.
const PRE_COPY_MARKER: &[u8] = b"pre-copy from the running server: verified, but not consistent; \
boot the server from the p2xen live image and send again under the same name (the cutover) to finish it\n";

/// A socket read timeout (std reports it as either kind).
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

pub fn create_private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}

fn disk_reports(
    ctx: &Ctx,
    name: &str,
    disks: &[DiskSink],
    digests: &[Option<String>],
    verified: &[Option<String>],
) -> Vec<DiskCopyReport> {
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let ok = verified.get(i).and_then(|v| v.clone());
            DiskCopyReport {
                disk: d.announce.disk,
                source: d.announce.source.clone(),
                target: ctx.store.disk_path(name, i).display().to_string(),
                size_bytes: d.announce.size_bytes,
                plan_bytes: d.announce.plan_bytes,
                chunks: d.announce.chunks,
                committed_bytes: d.journal().committed_bytes(),
                zero_chunks: d.zero_chunks,
                unchanged_chunks: d.unchanged_chunks,
                unchanged_bytes: d.unchanged_bytes,
                verified: ok.is_some(),
                content_digest: ok.or_else(|| digests.get(i).cloned().flatten()),
                notes: d.announce.notes.clone(),
            }
        })
        .collect()
}

fn save_report(dir: &Path, rep: &CopyReport) {
    if let Err(e) = report::write(dir, rep) {
        log::error!("{}/report.json: {e}", dir.display());
    }
}

fn progress(name: &str, disks: &[DiskSink], secs: f64, json: bool) {
    for d in disks {
        let done = d.journal().committed_bytes().max(d.received_bytes);
        let total = d.announce.plan_bytes;
        if json {
            let ev = serde_json::json!({"event": "progress", "name": name, "disk": d.announce.disk,
                "done_bytes": done, "total_bytes": total, "received_this_session": d.received_bytes, "seconds": secs});
            println!("{ev}");
        } else {
            let rate = d.received_bytes as f64 / secs.max(0.001) / 1048576.0;
            log::info!(
                "{name} disk{}: {} of {} MiB ({:.0}%), {rate:.1} MiB/s",
                d.announce.disk,
                done >> 20,
                total >> 20,
                100.0 * done as f64 / (total.max(1)) as f64
            );
        }
    }
}
