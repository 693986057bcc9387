//! The receiver's half of a cutover pass: for each chunk the sender offers,
//! hash what the target holds there, keep the chunks that are equal and ask
//! for the others.
//!
//! The target itself is hashed, not a record of an earlier pass: the guest
//! conversion, a booted rehearsal guest or a half-finished earlier pass may
//! all have changed it since, and only its bytes say what it holds.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::direct::DirectIo;
use super::store::StoreError;
use super::writer::Input;
use crate::wire::CHUNK_SIZE;
use crate::wire::message::OfferedChunk;

#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("offer for disk {disk}, but only {disks} disks were announced")]
    NoSuchDisk { disk: u16, disks: usize },
    #[error("offer for disk {disk} at offset {offset}: {what}")]
    BadChunk {
        disk: u16,
        offset: u64,
        what: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A read-only view of one target, beside the writer thread's handle. The
/// offered chunks are never ones the writer is writing: the plan's chunks
/// are disjoint and each is offered once.
pub struct TargetReader {
    path: PathBuf,
    size: u64,
    file: File,
    direct: DirectIo,
    buf: Vec<u8>,
}

impl TargetReader {
    pub fn open(path: &Path, size: u64) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|source| StoreError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(TargetReader {
            path: path.to_path_buf(),
            size,
            file,
            direct: DirectIo::open(path),
            buf: Vec::new(),
        })
    }

    /// BLAKE3 of the target's bytes at `[offset, offset+len)`; `len` is at
    /// most [`CHUNK_SIZE`] (checked by the caller).
    fn hash(&mut self, offset: u64, len: u32) -> Result<[u8; 32], StoreError> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        self.buf.resize(n, 0);
        self.direct
            .read_at(&self.file, offset, &mut self.buf)
            .map_err(|e| StoreError::io(&self.path, "read for cutover", offset, n, e))?;
        Ok(*blake3::hash(&self.buf).as_bytes())
    }
}

/// Answers one offer for `disk`: each chunk the target holds already goes to
/// the writer (`keep`) as [`Input::Unchanged`]; the offsets of the others are
/// returned, for the sender to send. `keep` returns false once the writer
/// has stopped (its error says why); the answer is then cut short.
pub fn answer(
    readers: &mut [TargetReader],
    disk: u16,
    chunks: &[OfferedChunk],
    mut keep: impl FnMut(Input) -> bool,
) -> Result<Vec<u64>, OfferError> {
    let disks = readers.len();
    let reader = readers
        .get_mut(usize::from(disk))
        .ok_or(OfferError::NoSuchDisk { disk, disks })?;
    let mut want = Vec::new();
    for c in chunks {
        let bad = |what| OfferError::BadChunk {
            disk,
            offset: c.offset,
            what,
        };
        let record = c.record().ok_or(bad("the hash is not 64 hex digits"))?;
        if c.len == 0 || u64::from(c.len) > CHUNK_SIZE {
            return Err(bad("length outside 1..=CHUNK_SIZE"));
        }
        if c.offset
            .checked_add(u64::from(c.len))
            .is_none_or(|end| end > reader.size)
        {
            return Err(bad("the chunk lies past the disk's end"));
        }
        if reader.hash(c.offset, c.len)? == record.hash {
            if !keep(Input::Unchanged { disk, record }) {
                break;
            }
        } else {
            want.push(c.offset);
        }
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::digest::ChunkRecord;

    #[test]
    fn equal_chunks_are_kept_and_the_others_wanted() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("disk0.img");
        let mut img = vec![0u8; 3 << 16];
        img[..65536].fill(7);
        std::fs::write(&path, &img).unwrap();
        let mut readers = vec![TargetReader::open(&path, img.len() as u64).unwrap()];
        let offer = |offset: u64, bytes: &[u8]| {
            OfferedChunk::of(&ChunkRecord {
                offset,
                len: bytes.len() as u32,
                hash: *blake3::hash(bytes).as_bytes(),
            })
        };
        let same = offer(0, &img[..65536]);
        let changed = offer(65536, &[1u8; 65536]);
        let zero = offer(131072, &[0u8; 65536]);
        let mut kept = Vec::new();
        let want = answer(&mut readers, 0, &[same, changed, zero], |i| {
            if let Input::Unchanged { record, .. } = i {
                kept.push(record.offset);
            }
            true
        })
        .unwrap();
        assert_eq!(want, vec![65536]);
        assert_eq!(kept, vec![0, 131072]);

        let past_end = offer(3 << 16, &[0u8; 4096]);
        let err = answer(&mut readers, 0, &[past_end], |_| true).unwrap_err();
        assert!(err.to_string().contains("past the disk's end"), "{err}");
        let mut bad_hash = offer(0, &img[..4096]);
        bad_hash.hash = "xyz".into();
        let err = answer(&mut readers, 0, &[bad_hash], |_| true).unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        let err = answer(&mut readers, 1, &[], |_| true).unwrap_err();
        assert!(err.to_string().contains("only 1 disks"), "{err}");
    }
}
