//! `p2xen send`: read the source disks and push them to `p2xen receive`.

pub mod assemble;
pub mod cli;
pub mod compress;
mod connection;
pub mod delta;
mod disks;
pub mod flatten;
pub mod layout;
pub mod level;
pub mod paced;
pub mod pipeline;
pub mod plan;
pub mod progress;
mod report;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::source::device::{Device, DeviceError};
use crate::source::mounts;
use crate::wire::machine::{self, GuestOptions};
use crate::wire::message::Message;
use crate::wire::name::MigrationName;
use crate::wire::tls;
use connection::{Attempt, connect};
use disks::{SourceDisk, disk_progress, source_disk};
pub use progress::{DiskProgress, ProgressEvent};
pub use report::{DiskSendReport, SendReport};
use transfer::transfer;

/// Receives progress events (the CLI prints them, the menu draws them).
pub type ProgressSink = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

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
    #[error(transparent)]
    Assemble(#[from] assemble::AssembleError),
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

/// Sends the disks in `opts.sources` and waits for the receiver's verified report.
pub fn run(opts: &SendOptions) -> Result<SendReport, SendError> {
    let started = Instant::now();
    let emit = |ev: ProgressEvent| {
        if let Some(p) = &opts.progress {
            p(&ev);
        }
    };
    // A malformed fingerprint is refused before any disk is opened.
    let pinned = tls::parse_fingerprint(&opts.fingerprint)?;
    let cfg = tls::client_config(pinned)?;
    let (mut disks, name, start) = announce(opts)?;
    emit(ProgressEvent::Plan {
        disks: disk_progress(&disks),
        skipped_unused_bytes: disks.iter().map(|d| d.report.skipped_unused_bytes).sum(),
    });
    let (receiver_report, connections) = deliver(opts, &cfg, &start, &mut disks, &emit)?;
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
    Ok(report)
}

/// Opens and plans every source disk and describes the machine: the
/// disks, the migration's name and the Start message that announces them.
fn announce(opts: &SendOptions) -> Result<(Vec<SourceDisk>, String, Message), SendError> {
    let sources = if opts.sources.is_empty() {
        crate::source::inspect::list_fixed_disks()?
    } else {
        opts.sources.clone()
    };
    if sources.is_empty() {
        return Err(SendError::NoDisks);
    }
    if sources.len() > crate::wire::message::MAX_DISKS {
        return Err(SendError::TooManyDisks(sources.len()));
    }
    let mut machine = machine::collect("");
    machine.options = opts.guest.clone();
    let mut disks = Vec::new();
    let mut arrays = flatten::MdArrays::default();
    let mut assembled = Vec::new();
    if !opts.all_blocks {
        for (disk, path) in sources.iter().enumerate() {
            layout::survey_md(&Device::open(path)?, disk, &mut arrays);
        }
        // Each RAID0/RAID10 array becomes one more guest disk after the
        // source disks.
        assembled = arrays.striped.assemble(sources.len())?;
        if sources.len() + assembled.len() > crate::wire::message::MAX_DISKS {
            return Err(SendError::TooManyDisks(sources.len() + assembled.len()));
        }
    }
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
    for t in assembled {
        for note in &t.notes {
            log::info!("{note}");
        }
        let (d, desc) = disks::assembled_disk(t)?;
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
    let start = Message::Start {
        name: name.clone(),
        machine: Box::new(machine),
        disks: disks.iter().map(|d| d.announce.clone()).collect(),
        warm: opts.warm,
    };
    Ok((disks, name, start))
}

/// Connects and transfers until the receiver answers with its report,
/// reconnecting with backoff for up to `opts.retry_for` of outage. Returns
/// the report and the number of connections it took.
fn deliver(
    opts: &SendOptions,
    cfg: &Arc<rustls::ClientConfig>,
    start: &Message,
    disks: &mut [SourceDisk],
    emit: &dyn Fn(ProgressEvent),
) -> Result<(crate::wire::report::CopyReport, u32), SendError> {
    let mut connections = 0u32;
    let mut outage_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        connections += 1;
        emit(ProgressEvent::Connecting {
            server: opts.server.clone(),
            attempt: connections,
        });
        let result = connect(opts, cfg, start).and_then(|(tls, accepted)| {
            outage_since = None;
            backoff = Duration::from_millis(250);
            transfer(opts, tls, accepted, disks, emit)
        });
        let why = match result {
            Ok(receiver_report) => return Ok((receiver_report, connections)),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(why)) => why,
        };
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
