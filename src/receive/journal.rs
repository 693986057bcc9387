//! Per-disk journal of committed chunks, in the receiver's state directory.
//!
//! A chunk is appended only after its bytes were fdatasync'ed to the target,
//! so after a crash (even `kill -9`) every journalled chunk is really on disk
//! and resume can skip it. Records are fixed 48-byte entries with their own
//! checksum; a torn last record is ignored.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::wire::digest::ChunkRecord;

const RECORD_LEN: usize = 48;
/// Journals larger than this are not a p2xen journal (4 TiB disk = 1 Mi chunks).
const MAX_JOURNAL_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    pub source: io::Error,
}

pub struct Journal {
    file: File,
    path: PathBuf,
    /// Committed chunks by offset.
    pub committed: BTreeMap<u64, ChunkRecord>,
}

fn checksum(r: &ChunkRecord) -> [u8; 4] {
    let mut h = blake3::Hasher::new();
    h.update(&r.offset.to_le_bytes());
    h.update(&r.len.to_le_bytes());
    h.update(&r.hash);
    let d = h.finalize();
    let b = d.as_bytes();
    [b[0], b[1], b[2], b[3]]
}

fn encode(r: &ChunkRecord) -> [u8; RECORD_LEN] {
    let mut b = [0u8; RECORD_LEN];
    b[0..8].copy_from_slice(&r.offset.to_le_bytes());
    b[8..12].copy_from_slice(&r.len.to_le_bytes());
    b[12..16].copy_from_slice(&checksum(r));
    b[16..48].copy_from_slice(&r.hash);
    b
}

fn decode(b: &[u8]) -> Option<ChunkRecord> {
    let b: &[u8; RECORD_LEN] = b.try_into().ok()?;
    let mut off = [0u8; 8];
    off.copy_from_slice(&b[0..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[16..48]);
    let r = ChunkRecord {
        offset: u64::from_le_bytes(off),
        len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        hash,
    };
    (checksum(&r) == b[12..16]).then_some(r)
}

impl Journal {
    /// Opens (creating) the journal at `path` and loads its valid records.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len > MAX_JOURNAL_BYTES {
            return Err(err(io::Error::other("too large to be a p2xen journal")));
        }
        let data = fs::read(path).map_err(err)?;
        let mut committed = BTreeMap::new();
        for rec in data.chunks(RECORD_LEN) {
            match decode(rec) {
                Some(r) => {
                    committed.insert(r.offset, r);
                }
                // Torn tail from a crash mid-append: what follows is unusable.
                None => break,
            }
        }
        let valid = committed.len();
        let mut j = Journal {
            file,
            path: path.to_path_buf(),
            committed,
        };
        if (valid * RECORD_LEN) as u64 != len {
            // Rewrite without the torn tail, so new records are not appended after garbage.
            j.rewrite()?;
        }
        Ok(j)
    }

    fn rewrite(&mut self) -> Result<(), JournalError> {
        let err = |source| JournalError {
            path: self.path.clone(),
            source,
        };
        let mut buf = Vec::with_capacity(self.committed.len() * RECORD_LEN);
        for r in self.committed.values() {
            buf.extend_from_slice(&encode(r));
        }
        self.file.set_len(0).map_err(err)?;
        self.file.write_all(&buf).map_err(err)?;
        self.file.sync_data().map_err(err)
    }

    /// Appends records whose data is already synced, and syncs the journal.
    pub fn append(&mut self, records: &[ChunkRecord]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * RECORD_LEN);
        for r in records {
            buf.extend_from_slice(&encode(r));
        }
        let err = |source| JournalError {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        for r in records {
            self.committed.insert(r.offset, *r);
        }
        Ok(())
    }

    /// Forgets a chunk that failed read-back, so the next run re-sends it.
    pub fn drop_records(&mut self, offsets: &[u64]) -> Result<(), JournalError> {
        for o in offsets {
            self.committed.remove(o);
        }
        self.rewrite()
    }

    /// Committed byte ranges, adjacent chunks merged.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for r in self.committed.values() {
            let len = u64::from(r.len);
            match out.last_mut() {
                Some((o, l)) if o.saturating_add(*l) == r.offset => *l += len,
                _ => out.push((r.offset, len)),
            }
        }
        out
    }

    pub fn committed_bytes(&self) -> u64 {
        self.committed.values().map(|r| u64::from(r.len)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk0.journal");
        let mut j = Journal::open(&p).unwrap();
        let rec = |offset, len| ChunkRecord {
            offset,
            len,
            hash: [offset as u8; 32],
        };
        j.append(&[rec(0, 10), rec(10, 6), rec(100, 4)]).unwrap();
        drop(j);
        // A crash in the middle of an append leaves a partial record.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[0xAB; 20]).unwrap();
        drop(f);
        let mut j = Journal::open(&p).unwrap();
        assert_eq!(j.ranges(), vec![(0, 16), (100, 4)]);
        j.append(&[rec(200, 1)]).unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.committed.len(), 4);
        assert_eq!(j.committed_bytes(), 21);
        assert_eq!(fs::metadata(&p).unwrap().len(), 4 * RECORD_LEN as u64);
    }
}
