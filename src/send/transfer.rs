//! One connection's copy: the pipeline's chunks sent in order (a full pass)
//! or offered by hash first (a cutover), then the content digests, Finish
//! and the receiver's verified report.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::connection::{
    Accepted, Attempt, Tls, classify, peer_spoke, read_message, refusal_or, unexpected,
    write_message,
};
use super::delta::{self, Held, Offered, Offers};
use super::disks::{SourceDisk, disk_progress};
use super::pipeline::{DiskWork, Out, Pipeline};
use super::{ProgressEvent, SendError, SendOptions, level};
use crate::wire::digest;
use crate::wire::frame::{self, ChunkHeader, Encoding};
use crate::wire::message::{DiskResume, Message};
use crate::wire::report::CopyReport;
use crate::wire::sequence::Phase;

const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// The receiver reads every disk back before answering Finish.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3600);

/// The copy over one accepted connection.
pub(super) fn transfer(
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
    let mut meter = Meter::new(disks);
    let mut link = Link {
        tls: &mut tls,
        server,
        offers: offers.as_mut(),
    };
    link.stream(work, disks, &mut meter, emit)?;
    if let Some(o) = link.offers.as_deref_mut() {
        for batch in o.drain_filling() {
            send_offer(link.tls, server, o, batch, disks)?;
        }
        while !o.in_flight.is_empty() {
            answer_oldest(link.tls, server, o, disks)?;
        }
    }
    emit(meter.event(disks));
    finish(&mut tls, server, disks, emit)
}

/// Throughput and progress over one connection.
struct Meter {
    started: Instant,
    last: Instant,
    sent_now: u64,
    total: u64,
}

impl Meter {
    fn new(disks: &[SourceDisk]) -> Meter {
        Meter {
            started: Instant::now(),
            last: Instant::now(),
            sent_now: 0,
            total: disks.iter().map(|d| d.announce.plan_bytes).sum(),
        }
    }

    /// Counts `len` plan bytes as sent; a progress event every
    /// [`PROGRESS_EVERY`].
    fn add(&mut self, len: u64, disks: &[SourceDisk], emit: &dyn Fn(ProgressEvent)) {
        self.sent_now += len;
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            emit(self.event(disks));
        }
    }

    fn event(&self, disks: &[SourceDisk]) -> ProgressEvent {
        let done: u64 = disks.iter().map(|d| d.done_before + d.done_now).sum();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.sent_now as f64 / secs;
        ProgressEvent::Progress {
            disks: disk_progress(disks),
            done_bytes: done,
            total_bytes: self.total,
            bytes_per_sec: rate,
            eta_secs: (rate > 0.0).then(|| self.total.saturating_sub(done) as f64 / rate),
            wire_bytes: disks.iter().map(|d| d.report.wire_bytes).sum(),
        }
    }
}

/// Where the pipeline's output goes: the connection, through the offers
/// in a cutover.
struct Link<'a> {
    tls: &'a mut Tls,
    server: &'a str,
    offers: Option<&'a mut Offers>,
}

impl Link<'_> {
    /// Runs the pipeline over `work` and forwards its chunks in order. The
    /// first failure stops the readers; what they had read is still folded
    /// into the digests, which a reconnect picks up from.
    fn stream(
        &mut self,
        work: Vec<DiskWork>,
        disks: &mut [SourceDisk],
        meter: &mut Meter,
        emit: &dyn Fn(ProgressEvent),
    ) -> Result<(), Attempt> {
        let cutover = self.offers.is_some();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let levels = Arc::new(level::LevelControl::new(workers, level::mem_available()));
        let pipe = Pipeline::start(work, workers, levels.clone());
        let mut window = level::Window::default();
        let mut failure: Option<Attempt> = None;
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
            let sent = match item {
                Ok(out) => self.forward(out, disks, failure.is_none()),
                Err(e) => Err(Attempt::Fatal(SendError::Source(e))),
            };
            match sent {
                Ok(Some(len)) => meter.add(len, disks, emit),
                Ok(None) => {}
                Err(a) => {
                    pipe.abort.store(true, Ordering::Relaxed);
                    failure.get_or_insert(a);
                }
            }
        }
        pipe.join();
        failure.map_or(Ok(()), Err)
    }

    /// Folds one output into its disk's digest and, when `send`, sends it
    /// (a full pass) or holds it for an offer (a cutover). Returns the plan
    /// bytes it covers once it left.
    fn forward(
        &mut self,
        out: Out,
        disks: &mut [SourceDisk],
        send: bool,
    ) -> Result<Option<u64>, Attempt> {
        let i = usize::from(out.disk);
        let Some(d) = disks.get_mut(i) else {
            return Ok(None);
        };
        d.digest.fold(out.seq, out.record);
        let len = u64::from(out.record.len);
        let (Some((encoding, payload)), true) = (out.payload, send) else {
            return Ok(None);
        };
        match self.offers.as_deref_mut() {
            Some(o) => {
                let held = Held {
                    record: out.record,
                    data: payload,
                };
                if let Some(batch) = o.hold(out.disk, held) {
                    send_offer(self.tls, self.server, o, batch, disks)?;
                }
            }
            None => {
                if out.level > 0 {
                    *d.report.zstd_levels.entry(out.level).or_default() += 1;
                }
                send_chunk(self.tls, self.server, d, encoding, out.record, &payload)?;
            }
        }
        if let Some(d) = disks.get_mut(i) {
            d.done_now += len;
        }
        Ok(Some(len))
    }
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
        return Err(refusal_or(server, tls, Phase::Copy, classify(server, e)));
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
        return Err(match read_message(server, tls, Phase::Copy) {
            Ok(other) => unexpected(&other),
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
    let offer = Message::Offer {
        disk: batch.disk,
        chunks: batch.hashes(),
    };
    write_message(server, tls, &offer)?;
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
    let wanted = match read_message(server, tls, Phase::Copy)? {
        Message::Want { disk, offsets } if disk == batch.disk => offsets,
        other => return Err(unexpected(&other)),
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
    write_message(server, tls, &Message::Finish)?;
    emit(ProgressEvent::Verifying);
    let _ = tls.sock.set_read_timeout(Some(VERIFY_TIMEOUT));
    match read_message(server, tls, Phase::Finish)? {
        Message::Done { report } => {
            for d in disks.iter_mut() {
                d.report.content_digest = d.digest.digest();
            }
            Ok(*report)
        }
        other => Err(unexpected(&other)),
    }
}
