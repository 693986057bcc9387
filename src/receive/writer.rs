//! The writer thread of a session: verifies each chunk, writes it, and
//! commits (fdatasync, then journal) in batches.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::journal::{Journal, JournalError};
use super::store::{StoreError, Target};
use crate::wire::digest::ChunkRecord;
use crate::wire::frame::{Chunk, ChunkData, FrameError, is_zero};
use crate::wire::message::DiskAnnounce;

/// Commit at least this often, so a crash loses little work.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const COMMIT_BYTES: u64 = 256 << 20;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("chunk for disk {0}, but only {1} disks were announced")]
    NoSuchDisk(u16, usize),
    #[error("chunk at disk {disk} offset {offset} (+{len}) lies past the disk end ({size})")]
    PastEnd {
        disk: u16,
        offset: u64,
        len: u32,
        size: u64,
    },
}

impl WriteError {
    /// Errors that reconnecting cannot fix.
    pub fn is_fatal(&self) -> bool {
        match self {
            WriteError::Store(e) => e.is_full() || !matches!(e, StoreError::Io { .. }),
            WriteError::Journal(_) => true,
            _ => false,
        }
    }
}

/// One disk as the writer holds it.
pub struct DiskSink {
    pub announce: DiskAnnounce,
    pub target: Box<dyn Target>,
    /// Shared with the committer thread, which appends after fdatasync.
    journal: Arc<Mutex<Journal>>,
    pending: Vec<ChunkRecord>,
    pub received_bytes: u64,
    pub zero_chunks: u64,
    /// Cutover: chunks found equal on the target, committed without a write.
    pub unchanged_chunks: u64,
    pub unchanged_bytes: u64,
}

impl DiskSink {
    pub fn new(announce: DiskAnnounce, target: Box<dyn Target>, journal: Journal) -> Self {
        DiskSink {
            announce,
            target,
            journal: Arc::new(Mutex::new(journal)),
            pending: Vec::new(),
            received_bytes: 0,
            zero_chunks: 0,
            unchanged_chunks: 0,
            unchanged_bytes: 0,
        }
    }
}

impl DiskSink {
    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the session hands the writer thread, in arrival order.
pub enum Input {
    /// A data chunk from the wire.
    Chunk(Chunk),
    /// Cutover: a planned chunk whose bytes the target holds already (the
    /// session hashed them equal to the sender's); committed like a written
    /// chunk, so the journal and the final read-back cover it, but not written.
    Unchanged { disk: u16, record: ChunkRecord },
}

/// Chunks written since the last commit, per disk index.
type Batch = Vec<(usize, Vec<ChunkRecord>)>;

/// The committer thread: fdatasync, then journal, off the writer's path, so
/// the writer keeps the disk busy while a commit waits for the device.
struct Committer {
    tx: SyncSender<Batch>,
    handle: JoinHandle<Result<(), WriteError>>,
}

impl Committer {
    fn start(disks: &[DiskSink]) -> Result<Committer, WriteError> {
        let mut targets: Vec<(File, PathBuf, Arc<Mutex<Journal>>)> = Vec::new();
        for d in disks {
            targets.push((
                d.target.sync_handle()?,
                d.target.path().to_path_buf(),
                d.journal.clone(),
            ));
        }
        // Two batches in flight at most: a slow device slows the writer down.
        let (tx, rx) = sync_channel::<Batch>(2);
        let handle = std::thread::spawn(move || {
            for batch in rx.iter() {
                for (i, records) in batch {
                    let Some((file, path, journal)) = targets.get(i) else {
                        continue;
                    };
                    file.sync_data()
                        .map_err(|e| StoreError::io(path, "fdatasync", 0, 0, e))?;
                    journal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .append(&records)?;
                }
            }
            Ok(())
        });
        Ok(Committer { tx, handle })
    }

    fn finish(self) -> Result<(), WriteError> {
        drop(self.tx);
        self.handle.join().unwrap_or_else(|_| {
            Err(WriteError::Store(StoreError::BadSpec(
                "committer thread panicked".into(),
            )))
        })
    }
}

/// Progress reporter called every couple of seconds with the disks.
pub type ProgressFn = Box<dyn FnMut(&[DiskSink], f64) + Send>;

pub struct Writer {
    pub disks: Vec<DiskSink>,
    pending_bytes: u64,
    last_commit: Instant,
    committer: Option<Committer>,
}

impl Writer {
    pub fn new(disks: Vec<DiskSink>) -> Self {
        Writer {
            disks,
            pending_bytes: 0,
            last_commit: Instant::now(),
            committer: None,
        }
    }

    /// Takes chunks until the channel closes, then commits what was written.
    /// On error, what was written before is still committed.
    pub fn run(
        mut self,
        rx: Receiver<Input>,
        mut progress: ProgressFn,
    ) -> (Self, Result<(), WriteError>) {
        let start = Instant::now();
        let mut last_progress = Instant::now();
        let mut result = Ok(());
        match Committer::start(&self.disks) {
            Ok(c) => self.committer = Some(c),
            Err(e) => return (self, Err(e)),
        }
        loop {
            // A timeout still commits: a stalled sender must not leave
            // written chunks out of the journal.
            let input = match rx.recv_timeout(COMMIT_INTERVAL) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(input) = input {
                let done = match input {
                    Input::Chunk(chunk) => self.write_chunk(chunk),
                    Input::Unchanged { disk, record } => self.keep_chunk(disk, record),
                };
                if let Err(e) = done {
                    result = Err(e);
                    break;
                }
            }
            if self.pending_bytes >= COMMIT_BYTES || self.last_commit.elapsed() >= COMMIT_INTERVAL {
                if let Err(e) = self.commit() {
                    result = Err(e);
                    break;
                }
            }
            if last_progress.elapsed() >= PROGRESS_INTERVAL {
                progress(&self.disks, start.elapsed().as_secs_f64());
                last_progress = Instant::now();
            }
        }
        let commit = self.commit();
        let finished = self.committer.take().map_or(Ok(()), Committer::finish);
        if result.is_ok() {
            result = commit.and(finished);
        }
        progress(&self.disks, start.elapsed().as_secs_f64());
        (self, result)
    }

    /// The disk a chunk at `offset` (+`len`) of disk `disk` goes to, if it
    /// was announced and the chunk lies inside it.
    fn sink(&mut self, disk: u16, offset: u64, len: u32) -> Result<&mut DiskSink, WriteError> {
        let n = self.disks.len();
        let d = self
            .disks
            .get_mut(usize::from(disk))
            .ok_or(WriteError::NoSuchDisk(disk, n))?;
        let size = d.announce.size_bytes;
        if offset.checked_add(u64::from(len)).is_none_or(|e| e > size) {
            return Err(WriteError::PastEnd {
                disk,
                offset,
                len,
                size,
            });
        }
        Ok(d)
    }

    fn keep_chunk(&mut self, disk: u16, record: ChunkRecord) -> Result<(), WriteError> {
        let d = self.sink(disk, record.offset, record.len)?;
        d.unchanged_chunks += 1;
        d.unchanged_bytes += u64::from(record.len);
        d.pending.push(record);
        Ok(())
    }

    fn write_chunk(&mut self, chunk: Chunk) -> Result<(), WriteError> {
        let h = chunk.header;
        let d = self.sink(h.disk, h.offset, h.len)?;
        // decode_verified is the only source of bytes: nothing unverified is written.
        match chunk.decode_verified()? {
            ChunkData::Bytes(b) => write_sparse(&mut *d.target, h.offset, &b)?,
            ChunkData::Zero => {
                d.target.zero(h.offset, u64::from(h.len))?;
                d.zero_chunks += 1;
            }
        }
        d.target.start_writeback(h.offset, u64::from(h.len));
        d.received_bytes += u64::from(h.len);
        d.pending.push(ChunkRecord {
            offset: h.offset,
            len: h.len,
            hash: h.hash,
        });
        self.pending_bytes += u64::from(h.len);
        Ok(())
    }

    /// Hands the chunks written so far to the committer (fdatasync, then
    /// journal). Without a committer (not running) it commits in place.
    pub fn commit(&mut self) -> Result<(), WriteError> {
        let batch: Batch = self
            .disks
            .iter_mut()
            .enumerate()
            .filter(|(_, d)| !d.pending.is_empty())
            .map(|(i, d)| (i, std::mem::take(&mut d.pending)))
            .collect();
        self.pending_bytes = 0;
        self.last_commit = Instant::now();
        if batch.is_empty() {
            return Ok(());
        }
        match &self.committer {
            Some(c) => {
                if c.tx.send(batch).is_err() {
                    // The committer stopped on an error; finish() returns it.
                    return self.committer.take().map_or(Ok(()), Committer::finish);
                }
                Ok(())
            }
            None => {
                for (i, records) in batch {
                    if let Some(d) = self.disks.get_mut(i) {
                        d.target.sync()?;
                        d.journal().append(&records)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Writes `data`, turning its all-zero 64 KiB blocks into holes, so a chunk
/// that is mostly zero does not allocate its zeros on the target.
fn write_sparse(t: &mut dyn Target, offset: u64, data: &[u8]) -> Result<(), StoreError> {
    const BLOCK: usize = 64 * 1024;
    let block_end = |i: usize| (i + BLOCK).min(data.len());
    let mut i = 0;
    while i < data.len() {
        let zero = is_zero(&data[i..block_end(i)]);
        let mut j = block_end(i);
        while j < data.len() && is_zero(&data[j..block_end(j)]) == zero {
            j = block_end(j);
        }
        // i and j are <= data.len() <= CHUNK_SIZE, so the sums cannot overflow.
        if zero {
            t.zero(offset + i as u64, (j - i) as u64)?;
        } else {
            t.write_at(offset + i as u64, &data[i..j])?;
        }
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::store::SparseFile;
    use crate::wire::frame::{ChunkHeader, Encoding};

    #[test]
    fn a_chunk_corrupted_after_decoding_is_never_written() {
        let d = tempfile::tempdir().unwrap();
        let target = SparseFile::open(&d.path().join("disk0.img"), 8 << 20).unwrap();
        let journal = Journal::open(&d.path().join("disk0.journal")).unwrap();
        let announce = DiskAnnounce {
            disk: 0,
            source: "t".into(),
            size_bytes: 8 << 20,
            chunks: 2,
            plan_bytes: 8 << 20,
            plan_digest: String::new(),
            notes: vec![],
            head_digest: None,
        };
        let w = Writer::new(vec![DiskSink::new(announce, Box::new(target), journal)]);
        let good: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let header = |data: &[u8], offset| ChunkHeader {
            disk: 0,
            encoding: Encoding::Raw,
            len: data.len() as u32,
            offset,
            hash: *blake3::hash(data).as_bytes(),
        };
        let mut bad = Chunk {
            header: header(&good, 4 << 20),
            payload: good.clone(),
        };
        bad.payload[1000] ^= 4; // the fault a broken NIC or buggy proxy could inject
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        tx.send(Input::Chunk(Chunk {
            header: header(&good, 0),
            payload: good.clone(),
        }))
        .unwrap();
        tx.send(Input::Chunk(bad)).unwrap();
        drop(tx);
        let (mut w, res) = w.run(rx, Box::new(|_, _| {}));
        assert!(matches!(
            res,
            Err(WriteError::Frame(FrameError::HashMismatch { offset, .. })) if offset == 4 << 20
        ));
        // The good chunk is committed, the bad one neither written nor journalled.
        assert_eq!(w.disks[0].journal().ranges(), vec![(0, 65536)]);
        let mut back = vec![1u8; 65536];
        w.disks[0].target.read_at(4 << 20, &mut back).unwrap();
        assert!(back.iter().all(|b| *b == 0));
    }
}
