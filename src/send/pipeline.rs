//! The sender's pipeline: one reader thread per disk → worker threads
//! (BLAKE3, zero detection, adaptive zstd) → the connection thread.
//!
//! All channels are bounded, so at most `readers + 2*workers + OUT_QUEUE`
//! chunks exist at any time whatever the disk size: memory stays flat.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::compress::{Encoder, LinkState};
use super::level::LevelControl;
use super::plan::DiskPlan;
use crate::source::device::{DeviceError, ReadAt};
use crate::wire::digest::{ChunkRecord, ContentHasher};
use crate::wire::frame::Encoding;

/// Chunks waiting for the connection thread.
pub const OUT_QUEUE: usize = 2;

/// A chunk read from the source.
struct Job {
    disk: u16,
    seq: u64,
    offset: u64,
    data: Vec<u8>,
    /// Already committed on the receiver; only its hash is missing.
    hash_only: bool,
    /// Cutover: hash it and pass the bytes on as they are.
    raw: bool,
}

/// A processed chunk, in whatever order workers finish.
pub struct Out {
    pub disk: u16,
    pub seq: u64,
    pub record: ChunkRecord,
    /// `None` for hash-only chunks.
    pub payload: Option<(Encoding, Vec<u8>)>,
    /// The zstd level of a zstd chunk, else 0.
    pub level: i32,
}

/// Per disk, kept across reconnects: the content digest folded in plan
/// order, so a chunk hashed once is never read again for the digest.
#[derive(Debug, Clone, Default)]
pub struct DigestState {
    hasher: ContentHasher,
    next_seq: u64,
    pending: BTreeMap<u64, ChunkRecord>,
}

impl DigestState {
    pub fn fold(&mut self, seq: u64, rec: ChunkRecord) {
        if seq < self.next_seq {
            return;
        }
        self.pending.insert(seq, rec);
        while let Some(r) = self.pending.remove(&self.next_seq) {
            self.hasher.add(&r);
            self.next_seq += 1;
        }
    }

    pub fn knows(&self, seq: u64) -> bool {
        seq < self.next_seq || self.pending.contains_key(&seq)
    }

    /// Chunks hashed out of order, waiting for their predecessors.
    pub fn pending_seqs(&self) -> HashSet<u64> {
        self.pending.keys().copied().collect()
    }

    pub fn folded(&self) -> u64 {
        self.next_seq
    }

    pub fn digest(&self) -> String {
        self.hasher.finish()
    }
}

/// What one disk's reader must do in this connection.
pub struct DiskWork {
    pub disk: u16,
    pub source: Arc<dyn ReadAt + Send + Sync>,
    pub plan: Arc<DiskPlan>,
    /// Ranges the receiver committed (sorted).
    pub committed: Vec<(u64, u64)>,
    /// Chunks whose hash is already folded or pending.
    pub known_next: u64,
    pub known_pending: HashSet<u64>,
    /// Cutover: chunks are hashed and passed on unencoded (as
    /// [`Encoding::Raw`]); only those the receiver asks for get encoded.
    pub raw: bool,
}

impl DiskWork {
    /// Is `[offset, offset+len)` inside one committed range? `cursor` walks
    /// the sorted ranges along with the sorted pieces.
    pub fn covered(&self, cursor: &mut usize, offset: u64, len: u32) -> bool {
        while let Some(&(o, l)) = self.committed.get(*cursor) {
            if o.saturating_add(l) <= offset {
                *cursor += 1;
                continue;
            }
            return o <= offset && offset.saturating_add(u64::from(len)) <= o.saturating_add(l);
        }
        false
    }
}

pub type OutResult = Result<Out, DeviceError>;

pub struct Pipeline {
    pub rx: Receiver<OutResult>,
    /// Chunks in the out queue (for [`LinkState`]).
    pub queued: Arc<AtomicUsize>,
    pub abort: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub fn start(work: Vec<DiskWork>, workers: usize, levels: Arc<LevelControl>) -> Pipeline {
        let abort = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let (job_tx, job_rx) = sync_channel::<Job>(workers);
        let (out_tx, out_rx) = sync_channel::<OutResult>(OUT_QUEUE);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut handles = Vec::new();
        for w in work {
            let tx = job_tx.clone();
            let err_tx = out_tx.clone();
            let abort = abort.clone();
            handles.push(std::thread::spawn(move || read_disk(w, tx, err_tx, abort)));
        }
        drop(job_tx);
        for _ in 0..workers.max(1) {
            let rx = job_rx.clone();
            let tx = out_tx.clone();
            let queued = queued.clone();
            let levels = levels.clone();
            handles.push(std::thread::spawn(move || {
                work_loop(rx, tx, queued, levels)
            }));
        }
        Pipeline {
            rx: out_rx,
            queued,
            abort,
            handles,
        }
    }

    /// Waits for all threads (after the out channel ran dry).
    pub fn join(self) {
        drop(self.rx);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn read_disk(
    w: DiskWork,
    tx: SyncSender<Job>,
    err_tx: SyncSender<OutResult>,
    abort: Arc<AtomicBool>,
) {
    let mut cursor = 0usize;
    for (seq, piece) in w.plan.pieces().enumerate() {
        if abort.load(Ordering::Relaxed) {
            return;
        }
        let seq = seq as u64;
        let committed = w.covered(&mut cursor, piece.offset, piece.len);
        let known = seq < w.known_next || w.known_pending.contains(&seq);
        if committed && known {
            continue;
        }
        let mut data = vec![0u8; piece.len as usize];
        if let Err(e) = w.source.read_exact_at(piece.offset, &mut data) {
            let _ = err_tx.send(Err(e));
            return;
        }
        let job = Job {
            disk: w.disk,
            seq,
            offset: piece.offset,
            data,
            hash_only: committed,
            raw: w.raw,
        };
        if tx.send(job).is_err() {
            return;
        }
    }
}

fn work_loop(
    rx: Arc<Mutex<Receiver<Job>>>,
    tx: SyncSender<OutResult>,
    queued: Arc<AtomicUsize>,
    levels: Arc<LevelControl>,
) {
    let mut enc = match Encoder::new() {
        Ok(e) => e,
        Err(e) => {
            log::error!("zstd: {e}");
            return;
        }
    };
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
            guard.recv()
        };
        let Ok(job) = job else { return };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a job holds one chunk of at most CHUNK_SIZE (4 MiB)"
        )]
        let len = job.data.len() as u32;
        let (hash, payload, level) = if job.hash_only {
            (*blake3::hash(&job.data).as_bytes(), None, 0)
        } else if job.raw {
            let hash = *blake3::hash(&job.data).as_bytes();
            (hash, Some((Encoding::Raw, job.data)), 0)
        } else {
            let q = queued.load(Ordering::Relaxed);
            let link = if q == 0 {
                LinkState::Idle
            } else if q + 1 >= OUT_QUEUE {
                LinkState::Saturated
            } else {
                LinkState::Normal
            };
            let e = enc.encode(job.data, link, levels.current());
            (e.hash, Some((e.encoding, e.payload)), e.level)
        };
        let out = Out {
            disk: job.disk,
            seq: job.seq,
            record: ChunkRecord {
                offset: job.offset,
                len,
                hash,
            },
            payload,
            level,
        };
        queued.fetch_add(1, Ordering::Relaxed);
        if tx.send(Ok(out)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_folds_in_plan_order_whatever_the_arrival_order() {
        let rec = |o: u64| ChunkRecord {
            offset: o,
            len: 1,
            hash: [o as u8; 32],
        };
        let mut a = DigestState::default();
        for s in [2u64, 0, 1, 3] {
            a.fold(s, rec(s));
        }
        a.fold(1, rec(99)); // a repeat after a reconnect is ignored
        let mut b = DigestState::default();
        for s in 0..4u64 {
            b.fold(s, rec(s));
        }
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.folded(), 4);
        assert!(a.knows(3) && !a.knows(4));
    }
}
