//! `p2xen send`: read the source disks and push them to `p2xen receive`.

pub mod cli;
pub mod compress;
pub mod delta;
pub mod flatten;
pub mod layout;
pub mod level;
pub mod paced;
pub mod pipeline;
pub mod plan;
pub mod progress;

use std::collections::HashSet;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde::Serialize;

use crate::source::device::{Device, DeviceError, ReadAt, read_vec};
use crate::source::inspect::DiskReport;
use crate::source::mounts;
use crate::wire::frame::{self, ChunkHeader, Encoding, Frame, FrameError};
use crate::wire::machine::{self, GuestOptions};
use crate::wire::message::{DiskAnnounce, DiskResume, HEAD_LEN, Message};
use crate::wire::name::MigrationName;
use crate::wire::report::{CopyReport, CopyState};
use crate::wire::{PROTOCOL_VERSION, digest, tls};
use delta::{Held, Offered, Offers};
use pipeline::{DigestState, DiskWork, Pipeline};
use plan::DiskPlan;
pub use progress::{DiskProgress, ProgressEvent};

/// Receives progress events (the CLI prints them, the menu draws them).
pub type ProgressSink = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

const PROGRESS_EVERY: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// The receiver reads every disk back before answering Finish.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SendOptions {
    /// `HOST:PORT` of `p2xen receive`.
    pub server: String,
    pub token: String,
    /// `sha256:HEX` of the receiver's certificate.
    pub fingerprint: String,
    /// Migration name on the receiver; default: the hostname.
    pub name: Option<String>,
    /// Disks or images to send, in order (disk0, disk1, ...); empty: all fixed disks.
    pub sources: Vec<PathBuf>,
    /// Send every block (zero chunks still as zero records).
    pub all_blocks: bool,
    /// A pre-copy from the running server: mounted disks are read as they
    /// are, and the receiver keeps the copy as not consistent.
    pub warm: bool,
    /// Keep reconnecting after a connection loss for this long.
    pub retry_for: Duration,
    /// Bandwidth limit on the wire (`--limit`, `p2xen.limit=`).
    pub limit: Option<crate::wire::rate::Rate>,
    /// Guest overrides, passed through to machine.json.
    pub guest: GuestOptions,
    pub progress: Option<ProgressSink>,
}

impl SendOptions {
    pub fn new(server: &str, token: &str, fingerprint: &str, sources: Vec<PathBuf>) -> Self {
        SendOptions {
            server: server.to_string(),
            token: token.to_string(),
            fingerprint: fingerprint.to_string(),
            name: None,
            sources,
            all_blocks: false,
            warm: false,
            retry_for: Duration::from_secs(600),
            limit: None,
            guest: GuestOptions {
                layout: crate::wire::machine::Layout::Disk,
                ..GuestOptions::default()
            },
            progress: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Source(#[from] DeviceError),
    #[error(
        "{path}: {part} is mounted at {point}: a copy of a running system is not consistent; send from the p2xen live image, or pass --warm for a pre-copy that a later cutover from the live image finishes"
    )]
    Mounted {
        path: PathBuf,
        part: String,
        point: String,
    },
    #[error("no disks to send: none found and none named on the command line")]
    NoDisks,
    #[error("too many disks ({0}); at most 64")]
    TooManyDisks(usize),
    #[error(
        "invalid name {0:?}: use letters, digits, '.', '-', '_' (at most 64), e.g. --name web01"
    )]
    BadName(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("receiver at {server} refused: {reason}")]
    Refused { server: String, reason: String },
    #[error("receiver at {server} is not the pinned one: {reason}")]
    WrongReceiver { server: String, reason: String },
    #[error("{0}")]
    Inspect(#[from] crate::source::inspect::InspectError),
    #[error("receiver at {server}: {reason}")]
    ReceiverFailed { server: String, reason: String },
    #[error("zstd: {0}")]
    Encoder(std::io::Error),
    #[error("gave up after {secs} s of failed reconnects to {server}: {last}")]
    GaveUp {
        server: String,
        secs: u64,
        last: String,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskSendReport {
    pub disk: u16,
    pub source: String,
    pub size_bytes: u64,
    pub plan_bytes: u64,
    pub chunks: u64,
    /// Bytes left out by the plan (unused filesystem blocks, swap body).
    pub skipped_unused_bytes: u64,
    /// Planned bytes that were all-zero (sent as zero records).
    pub zero_bytes: u64,
    /// Planned bytes found already committed on the receiver after a reconnect.
    pub resumed_bytes: u64,
    /// Cutover: planned bytes the receiver's copy held already (their hashes
    /// matched), so they were not sent.
    pub unchanged_bytes: u64,
    /// Uncompressed bytes of the data chunks sent.
    pub data_bytes: u64,
    /// Chunk payload bytes put on the wire.
    pub wire_bytes: u64,
    /// Chunks sent zstd-compressed, by level (see `send/level.rs`).
    pub zstd_levels: std::collections::BTreeMap<i32, u64>,
    pub content_digest: String,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SendReport {
    pub name: String,
    pub server: String,
    pub connections: u32,
    pub seconds: f64,
    pub disks: Vec<DiskSendReport>,
    pub wire_bytes: u64,
    /// data_bytes / wire_bytes over all disks.
    pub compression_ratio: f64,
    /// The receiver's report.json, as it answered.
    pub receiver_report: CopyReport,
}

impl SendReport {
    /// The per-disk figures and their totals.
    fn of_disks(disks: Vec<SourceDisk>, receiver_report: CopyReport) -> SendReport {
        let wire: u64 = disks.iter().map(|d| d.report.wire_bytes).sum();
        let data: u64 = disks.iter().map(|d| d.report.data_bytes).sum();
        SendReport {
            disks: disks.into_iter().map(|d| d.report).collect(),
            wire_bytes: wire,
            compression_ratio: if wire == 0 {
                1.0
            } else {
                data as f64 / wire as f64
            },
            receiver_report,
            ..SendReport::default()
        }
    }

    pub fn summary(&self) -> String {
        let m = |b: u64| b as f64 / 1048576.0;
        let sum = |f: fn(&DiskSendReport) -> u64| self.disks.iter().map(f).sum::<u64>();
        let digests: Vec<String> = self
            .disks
            .iter()
            .map(|d| format!("disk{} {}", d.disk, d.content_digest))
            .collect();
        let cutover = if self.receiver_report.cutover {
            format!(
                ", cutover: {:.1} MiB unchanged on the receiver",
                m(sum(|d| d.unchanged_bytes))
            )
        } else {
            String::new()
        };
        let pre_copy = match self.receiver_report.state {
            CopyState::PreCopy => {
                "pre-copy (not consistent until the cutover from the live image) "
            }
            _ => "",
        };
        format!(
            "{pre_copy}done in {:.1} s over {} connection(s): sent {:.1} MiB of data as {:.1} MiB on the wire (ratio {:.2}), skipped {:.1} MiB unused, {:.1} MiB zero, {:.1} MiB already there{cutover}; {}",
            self.seconds,
            self.connections,
            m(sum(|d| d.data_bytes)),
            m(self.wire_bytes),
            self.compression_ratio,
            m(sum(|d| d.skipped_unused_bytes)),
            m(sum(|d| d.zero_bytes)),
            m(sum(|d| d.resumed_bytes)),
            digests.join(", ")
        )
    }
}

struct SourceDisk {
    source: Arc<dyn ReadAt + Send + Sync>,
    plan: Arc<DiskPlan>,
    announce: DiskAnnounce,
    digest: DigestState,
    report: DiskSendReport,
    /// Plan bytes processed in the current connection.
    done_now: u64,
    done_before: u64,
}

type Tls = StreamOwned<ClientConnection, paced::PacedStream>;

/// The receiver's answer to Start.
struct Accepted {
    /// What each disk has committed already.
    resume: Vec<DiskResume>,
    resumed: bool,
    /// The receiver holds an earlier copy: offer hashes, send what it wants.
    cutover: bool,
}

/// Why one connection attempt ended.
enum Attempt {
    Retry(String),
    Fatal(SendError),
}

/// Sends the disks in `opts.sources` and waits for the receiver's verified report.
pub fn run(opts: &SendOptions) -> Result<SendReport, SendError> {
    let started = Instant::now();
    let emit = |ev: ProgressEvent| {
        if let Some(p) = &opts.progress {
            p(&ev);
        }
    };
    let sources = if opts.sources.is_empty() {
        crate::source::inspect::list_fixed_disks()?
    } else {
        opts.sources.clone()
    };
    if sources.is_empty() {
        return Err(SendError::NoDisks);
    }
    if sources.len() > 64 {
        return Err(SendError::TooManyDisks(sources.len()));
    }
    let pinned = tls::parse_fingerprint(&opts.fingerprint)?;
    let cfg = tls::client_config(pinned)?;
    let mut machine = machine::collect("");
    machine.options = opts.guest.clone();

    let mut disks = Vec::new();
    let mut arrays = flatten::MdArrays::default();
    for (disk, path) in (0u16..).zip(&sources) {
        if let (false, Some((part, point))) = (opts.warm, mounts::first_mount(path)) {
            return Err(SendError::Mounted {
                path: path.clone(),
                part,
                point,
            });
        }
        let (d, desc) = source_disk(disk, path, opts.all_blocks, &mut arrays)?;
        machine.disks.push(desc);
        disks.push(d);
    }
    for (i, note) in arrays.degraded() {
        log::warn!("{note}");
        if let (Some(d), Some(desc)) = (disks.get_mut(i), machine.disks.get_mut(i)) {
            d.announce.notes.push(note.clone());
            d.report.notes.push(note.clone());
            desc.warnings.push(note);
        }
    }
    // The running system's hostname is the live image's ("p2xen") or a
    // rescue system's: the server's own name is the one in its /etc/hostname.
    if let Some(h) = machine.os_hostname() {
        machine.hostname = Some(h);
    }
    let name = opts
        .name
        .clone()
        .or_else(|| machine.hostname.clone())
        .unwrap_or_else(|| "migrated".into());
    if MigrationName::parse(&name).is_err() {
        return Err(SendError::BadName(name));
    }
    machine.name = name.clone();
    emit(ProgressEvent::Plan {
        disks: disk_progress(&disks),
        skipped_unused_bytes: disks.iter().map(|d| d.report.skipped_unused_bytes).sum(),
    });
    let start_msg = Message::Start {
        name: name.clone(),
        machine: Box::new(machine),
        disks: disks.iter().map(|d| d.announce.clone()).collect(),
        warm: opts.warm,
    };

    let mut connections = 0u32;
    let mut outage_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        connections += 1;
        emit(ProgressEvent::Connecting {
            server: opts.server.clone(),
            attempt: connections,
        });
        let result = match connect(opts, &cfg, &start_msg) {
            Ok((tls, accepted)) => {
                outage_since = None;
                backoff = Duration::from_millis(250);
                transfer(opts, tls, accepted, &mut disks, &emit)
            }
            Err(a) => Err(a),
        };
        match result {
            Ok(receiver_report) => {
                if let Some(reason) = &receiver_report.error {
                    return Err(SendError::ReceiverFailed {
                        server: opts.server.clone(),
                        reason: reason.clone(),
                    });
                }
                let report = SendReport {
                    name,
                    server: opts.server.clone(),
                    connections,
                    seconds: started.elapsed().as_secs_f64(),
                    ..SendReport::of_disks(disks, receiver_report)
                };
                emit(ProgressEvent::Finished {
                    report: Box::new(report.clone()),
                });
                return Ok(report);
            }
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(why)) => {
                let since = *outage_since.get_or_insert_with(Instant::now);
                let left = opts.retry_for.saturating_sub(since.elapsed());
                if left.is_zero() {
                    return Err(SendError::GaveUp {
                        server: opts.server.clone(),
                        secs: opts.retry_for.as_secs(),
                        last: why,
                    });
                }
                let wait = backoff.min(left);
                emit(ProgressEvent::ConnectionLost {
                    error: why,
                    retry_in_secs: wait.as_secs_f64(),
                    gives_up_in_secs: left.as_secs_f64(),
                });
                std::thread::sleep(wait);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Opens one source disk, plans its copy and describes it for the receiver.
/// With `--all-blocks` md members are sent as they are, each of them.
fn source_disk(
    disk: u16,
    path: &Path,
    all_blocks: bool,
    arrays: &mut flatten::MdArrays,
) -> Result<(SourceDisk, DiskReport), SendError> {
    let dev = Device::open(path)?;
    if all_blocks {
        let (_, desc) = layout::describe(&dev);
        let plan = plan::whole_disk(dev.size(), "--all-blocks: every block sent");
        return planned_disk(disk, path, Arc::new(dev), plan, desc);
    }
    let d = layout::describe_disk(&dev, usize::from(disk), arrays);
    let plan = plan::plan(&d.layout);
    let source: Arc<dyn ReadAt + Send + Sync> = if d.remaps.is_empty() {
        Arc::new(dev)
    } else {
        Arc::new(flatten::Flattened::new(dev, d.remaps))
    };
    planned_disk(disk, path, source, plan, d.report)
}

/// The announce and report of one disk whose plan is made; `dev` is what
/// the copy reads (the disk, or its flattened view).
fn planned_disk(
    disk: u16,
    path: &Path,
    dev: Arc<dyn ReadAt + Send + Sync>,
    plan: plan::DiskPlan,
    desc: DiskReport,
) -> Result<(SourceDisk, DiskReport), SendError> {
    // Streamed twice rather than collected: memory must not grow with the disk.
    let chunks = plan.pieces().count() as u64;
    let plan_digest = digest::plan_digest(plan.pieces().map(|p| (p.offset, p.len)));
    let head = read_vec(dev.as_ref(), 0, dev.size().min(HEAD_LEN) as usize)?;
    let announce = DiskAnnounce {
        disk,
        source: path.display().to_string(),
        size_bytes: dev.size(),
        chunks,
        plan_bytes: plan.bytes(),
        plan_digest,
        notes: plan.notes.clone(),
        head_digest: Some(blake3::hash(&head).to_hex().to_string()),
    };
    let report = DiskSendReport {
        disk,
        source: announce.source.clone(),
        size_bytes: dev.size(),
        plan_bytes: plan.bytes(),
        chunks,
        skipped_unused_bytes: dev.size() - plan.bytes().min(dev.size()),
        notes: plan.notes.clone(),
        ..DiskSendReport::default()
    };
    let d = SourceDisk {
        source: dev,
        plan: Arc::new(plan),
        announce,
        digest: DigestState::default(),
        report,
        done_now: 0,
        done_before: 0,
    };
    Ok((d, desc))
}

fn disk_progress(disks: &[SourceDisk]) -> Vec<DiskProgress> {
    disks
        .iter()
        .map(|d| DiskProgress {
            disk: d.announce.disk,
            source: d.announce.source.clone(),
            done_bytes: d.done_before + d.done_now,
            total_bytes: d.announce.plan_bytes,
        })
        .collect()
}

/// Classifies a connection-level error: a wrong certificate is fatal,
/// anything else (cut connection, corrupted record) is worth a reconnect.
fn classify(server: &str, e: FrameError) -> Attempt {
    if let FrameError::Io(io) = &e {
        if let Some(tls_err) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            let reason = match tls::fingerprint_mismatch(tls_err) {
                Some(mismatch) => Some(mismatch.to_string()),
                None if matches!(tls_err, rustls::Error::InvalidCertificate(_)) => {
                    Some(tls_err.to_string())
                }
                None => None,
            };
            if let Some(reason) = reason {
                return Attempt::Fatal(SendError::WrongReceiver {
                    server: server.to_string(),
                    reason,
                });
            }
        }
    }
    Attempt::Retry(e.to_string())
}

fn read_message(server: &str, tls: &mut Tls) -> Result<Message, Attempt> {
    match frame::read_frame(tls) {
        Ok(Frame::Control(j)) => serde_json::from_slice(&j)
            .map_err(|e| Attempt::Retry(format!("bad message from receiver: {e}"))),
        Ok(Frame::Chunk(_)) => Err(Attempt::Retry("unexpected data from receiver".into())),
        Err(e) => Err(classify(server, e)),
    }
}

fn refused(server: &str, reason: String, fatal: bool) -> Attempt {
    if fatal {
        Attempt::Fatal(SendError::Refused {
            server: server.to_string(),
            reason,
        })
    } else {
        Attempt::Retry(format!("receiver: {reason}"))
    }
}

/// TCP + TLS + hello + start; returns what the receiver already has.
fn connect(
    opts: &SendOptions,
    cfg: &Arc<ClientConfig>,
    start: &Message,
) -> Result<(Tls, Accepted), Attempt> {
    let server = opts.server.as_str();
    let addrs: Vec<_> = server
        .to_socket_addrs()
        .map_err(|e| Attempt::Retry(format!("resolving {server}: {e}")))?
        .collect();
    let mut last = format!("{server}: no address");
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    let tcp = tcp.ok_or(Attempt::Retry(last))?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let conn = ClientConnection::new(cfg.clone(), tls::server_name())
        .map_err(|e| Attempt::Fatal(SendError::Tls(e.into())))?;
    let mut tls = StreamOwned::new(conn, paced::PacedStream::new(tcp, opts.limit));
    let hello = Message::Hello {
        protocol: PROTOCOL_VERSION,
        software: crate::wire::software(),
        token: opts.token.clone(),
    };
    hello
        .write(&mut tls)
        .and_then(|_| tls.flush().map_err(FrameError::from))
        .map_err(|e| classify(server, e))?;
    match read_message(server, &mut tls)? {
        Message::Welcome { .. } => {}
        Message::Refused { reason, fatal } => return Err(refused(server, reason, fatal)),
        other => return Err(Attempt::Retry(format!("unexpected {other:?}"))),
    }
    start
        .write(&mut tls)
        .and_then(|_| tls.flush().map_err(FrameError::from))
        .map_err(|e| classify(server, e))?;
    match read_message(server, &mut tls)? {
        Message::Ready {
            resumed,
            disks,
            cutover,
        } => Ok((
            tls,
            Accepted {
                resume: disks,
                resumed,
                cutover,
            },
        )),
        Message::Refused { reason, fatal } => Err(refused(server, reason, fatal)),
        other => Err(Attempt::Retry(format!("unexpected {other:?}"))),
    }
}

/// Is there something to read (a refusal) on the socket right now?
fn peer_spoke(tls: &Tls) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(tls.sock.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

fn transfer(
    opts: &SendOptions,
    mut tls: Tls,
    accepted: Accepted,
    disks: &mut [SourceDisk],
    emit: &dyn Fn(ProgressEvent),
) -> Result<CopyReport, Attempt> {
    let server = opts.server.as_str();
    let Accepted {
        resume,
        resumed,
        cutover,
    } = accepted;
    let (work, committed_total) = connection_work(disks, &resume, resumed, cutover);
    emit(ProgressEvent::Connected {
        server: server.to_string(),
        resumed,
        already_committed_bytes: committed_total,
    });
    let mut offers = match cutover {
        true => Some(Offers::new().map_err(|e| Attempt::Fatal(SendError::Encoder(e)))?),
        false => None,
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let levels = Arc::new(level::LevelControl::new(workers, level::mem_available()));
    let pipe = Pipeline::start(work, workers, levels.clone());
    let mut window = level::Window::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut failure: Option<Attempt> = None;
    let mut sent_now = 0u64;
    let total: u64 = disks.iter().map(|d| d.announce.plan_bytes).sum();
    loop {
        let asked = Instant::now();
        let Ok(item) = pipe.rx.recv() else {
            break;
        };
        window.waited(asked.elapsed());
        // In a cutover the connection thread encodes, at level 1, itself.
        if !cutover {
            window.tick(&levels);
        }
        pipe.queued.fetch_sub(1, Ordering::Relaxed);
        let out = match item {
            Ok(o) => o,
            Err(e) => {
                pipe.abort.store(true, Ordering::Relaxed);
                failure.get_or_insert(Attempt::Fatal(SendError::Source(e)));
                continue;
            }
        };
        let i = usize::from(out.disk);
        let Some(d) = disks.get_mut(i) else {
            continue;
        };
        d.digest.fold(out.seq, out.record);
        let len = u64::from(out.record.len);
        let Some((encoding, payload)) = out.payload else {
            continue;
        };
        if failure.is_some() {
            continue;
        }
        let step = match offers.as_mut() {
            Some(o) => match o.hold(
                out.disk,
                Held {
                    record: out.record,
                    data: payload,
                },
            ) {
                Some(batch) => send_offer(&mut tls, server, o, batch, disks),
                None => Ok(()),
            },
            None => {
                if out.level > 0 {
                    *d.report.zstd_levels.entry(out.level).or_default() += 1;
                }
                send_chunk(&mut tls, server, d, encoding, out.record, &payload)
            }
        };
        if let Err(a) = step {
            pipe.abort.store(true, Ordering::Relaxed);
            failure = Some(a);
            continue;
        }
        if let Some(d) = disks.get_mut(i) {
            d.done_now += len;
        }
        sent_now += len;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            emit(progress_event(disks, total, sent_now, started));
        }
    }
    pipe.join();
    if let Some(f) = failure {
        return Err(f);
    }
    if let Some(o) = offers.as_mut() {
        for batch in o.drain_filling() {
            send_offer(&mut tls, server, o, batch, disks)?;
        }
        while !o.in_flight.is_empty() {
            answer_oldest(&mut tls, server, o, disks)?;
        }
    }
    emit(progress_event(disks, total, sent_now, started));
    finish(&mut tls, server, disks, emit)
}

/// Work for this connection: per disk, what is neither committed nor hashed
/// yet; and the plan bytes the receiver holds already.
fn connection_work(
    disks: &mut [SourceDisk],
    resume: &[DiskResume],
    resumed: bool,
    cutover: bool,
) -> (Vec<DiskWork>, u64) {
    let mut work = Vec::new();
    let mut committed_total = 0;
    for d in disks.iter_mut() {
        let committed: Vec<(u64, u64)> = resume
            .iter()
            .find(|r| r.disk == d.announce.disk)
            .map(|r| r.committed.clone())
            .unwrap_or_default();
        // Progress starts at what the receiver already holds of the plan.
        let mut cursor = 0;
        let mut before = 0;
        let probe = DiskWork {
            disk: d.announce.disk,
            source: d.source.clone(),
            plan: d.plan.clone(),
            committed,
            known_next: d.digest.folded(),
            known_pending: HashSet::new(),
            raw: cutover,
        };
        for p in d.plan.pieces() {
            if probe.covered(&mut cursor, p.offset, p.len) {
                before += u64::from(p.len);
            }
        }
        d.done_before = before;
        d.done_now = 0;
        d.report.resumed_bytes = d.report.resumed_bytes.max(if resumed { before } else { 0 });
        committed_total += before;
        let pending: HashSet<u64> = (d.digest.folded()..d.announce.chunks)
            .filter(|s| d.digest.knows(*s))
            .collect();
        work.push(DiskWork {
            known_pending: pending,
            ..probe
        });
    }
    (work, committed_total)
}

/// Writes one chunk and counts it; `Err` carries the receiver's refusal
/// when it gave one.
fn write_counted(
    tls: &mut Tls,
    server: &str,
    d: &mut SourceDisk,
    header: &ChunkHeader,
    payload: &[u8],
) -> Result<(), Attempt> {
    if let Err(e) = frame::write_chunk(tls, header, payload) {
        return Err(refusal_or(server, tls, classify(server, e)));
    }
    d.report.wire_bytes += payload.len() as u64;
    match header.encoding {
        Encoding::Zero => d.report.zero_bytes += u64::from(header.len),
        _ => d.report.data_bytes += u64::from(header.len),
    }
    Ok(())
}

/// A full pass: sends the encoded chunk; the receiver only speaks mid-copy
/// to refuse (target full, ...), which stops the copy.
fn send_chunk(
    tls: &mut Tls,
    server: &str,
    d: &mut SourceDisk,
    encoding: Encoding,
    record: digest::ChunkRecord,
    payload: &[u8],
) -> Result<(), Attempt> {
    let header = ChunkHeader {
        disk: d.announce.disk,
        encoding,
        len: record.len,
        offset: record.offset,
        hash: record.hash,
    };
    write_counted(tls, server, d, &header, payload)?;
    if peer_spoke(tls) {
        return Err(match read_message(server, tls) {
            Ok(Message::Refused { reason, fatal }) => refused(server, reason, fatal),
            Ok(other) => Attempt::Retry(format!("unexpected {other:?}")),
            Err(a) => a,
        });
    }
    Ok(())
}

/// A cutover: offers a batch's hashes; with more than [`delta::IN_FLIGHT`]
/// offers unanswered, takes the oldest answer first.
fn send_offer(
    tls: &mut Tls,
    server: &str,
    offers: &mut Offers,
    batch: Offered,
    disks: &mut [SourceDisk],
) -> Result<(), Attempt> {
    Message::Offer {
        disk: batch.disk,
        chunks: batch.hashes(),
    }
    .write(tls)
    .and_then(|_| tls.flush().map_err(FrameError::from))
    .map_err(|e| classify(server, e))?;
    offers.in_flight.push_back(batch);
    while offers.in_flight.len() > delta::IN_FLIGHT {
        answer_oldest(tls, server, offers, disks)?;
    }
    Ok(())
}

/// Reads the answer to the oldest offer and sends the chunks it wants.
fn answer_oldest(
    tls: &mut Tls,
    server: &str,
    offers: &mut Offers,
    disks: &mut [SourceDisk],
) -> Result<(), Attempt> {
    let Some(batch) = offers.in_flight.pop_front() else {
        return Ok(());
    };
    let wanted = match read_message(server, tls)? {
        Message::Want { disk, offsets } if disk == batch.disk => offsets,
        Message::Refused { reason, fatal } => return Err(refused(server, reason, fatal)),
        other => return Err(Attempt::Retry(format!("unexpected {other:?}"))),
    };
    let Some(d) = disks.get_mut(usize::from(batch.disk)) else {
        return Ok(());
    };
    for held in batch.chunks {
        let r = held.record;
        if !wanted.contains(&r.offset) {
            d.report.unchanged_bytes += u64::from(r.len);
            continue;
        }
        let e = offers.encode(held.data);
        let header = ChunkHeader {
            disk: batch.disk,
            encoding: e.encoding,
            len: r.len,
            offset: r.offset,
            hash: r.hash,
        };
        write_counted(tls, server, d, &header, &e.payload)?;
    }
    Ok(())
}

/// Every chunk is out: the content digests, Finish, and the receiver's
/// verified report.
fn finish(
    tls: &mut Tls,
    server: &str,
    disks: &mut [SourceDisk],
    emit: &dyn Fn(ProgressEvent),
) -> Result<CopyReport, Attempt> {
    for d in disks.iter() {
        if d.digest.folded() != d.announce.chunks {
            return Err(Attempt::Retry(format!(
                "disk{}: not every chunk was processed",
                d.announce.disk
            )));
        }
        Message::DiskEnd {
            disk: d.announce.disk,
            content_digest: d.digest.digest(),
        }
        .write(tls)
        .map_err(|e| classify(server, e))?;
    }
    Message::Finish
        .write(tls)
        .and_then(|_| tls.flush().map_err(FrameError::from))
        .map_err(|e| classify(server, e))?;
    emit(ProgressEvent::Verifying);
    let _ = tls.sock.set_read_timeout(Some(VERIFY_TIMEOUT));
    match read_message(server, tls)? {
        Message::Done { report } => {
            for d in disks.iter_mut() {
                d.report.content_digest = d.digest.digest();
            }
            Ok(*report)
        }
        Message::Refused { reason, fatal } => Err(refused(server, reason, fatal)),
        other => Err(Attempt::Retry(format!("unexpected {other:?}"))),
    }
}

/// After a failed write, the receiver may have said why before closing.
fn refusal_or(server: &str, tls: &mut Tls, fallback: Attempt) -> Attempt {
    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(2)));
    match read_message(server, tls) {
        Ok(Message::Refused { reason, fatal }) => refused(server, reason, fatal),
        _ => fallback,
    }
}

fn progress_event(
    disks: &[SourceDisk],
    total: u64,
    sent_now: u64,
    started: Instant,
) -> ProgressEvent {
    let done: u64 = disks.iter().map(|d| d.done_before + d.done_now).sum();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = sent_now as f64 / secs;
    ProgressEvent::Progress {
        disks: disk_progress(disks),
        done_bytes: done,
        total_bytes: total,
        bytes_per_sec: rate,
        eta_secs: (rate > 0.0).then(|| total.saturating_sub(done) as f64 / rate),
        wire_bytes: disks.iter().map(|d| d.report.wire_bytes).sum(),
    }
}
