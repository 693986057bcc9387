//! Writes and read-back that bypass dom0's page cache (`O_DIRECT`).
//!
//! Why: dom0 usually runs with 1-4 GiB of memory. Hundreds of GiB pushed
//! through its page cache evict everything else and turn every periodic
//! fdatasync into a long writeback stall. On benchmark B1 (bench/b1) 57 % of
//! the receiver's CPU was the kernel copying chunks into freshly allocated
//! page-cache folios (`copy_folio_from_iter_atomic`); with `O_DIRECT` the
//! device reads the bytes straight from our buffer. It also makes the final
//! read-back honest: an `O_DIRECT` write drops the range from the page cache,
//! so the verification reads what reached the disk, not a cached copy.
//!
//! `O_DIRECT` wants the buffer address, file offset and length aligned to the
//! device's logical block size; [`ALIGN`] (4096) covers every common device.
//! Anything unaligned (the tail of an image whose size is not a multiple of
//! 4096) and filesystems that refuse `O_DIRECT` (older tmpfs, some FUSE) take
//! the ordinary buffered path, so the result is the same bytes either way.

use crate::wire::CHUNK_LEN;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of buffer, offset and length for `O_DIRECT`.
pub const ALIGN: usize = 4096;

/// A second, `O_DIRECT` handle on a target, with its aligned bounce buffer.
pub struct DirectIo {
    file: Option<File>,
    /// `CHUNK_SIZE + ALIGN` bytes: the aligned window inside it holds a whole
    /// chunk. Aligning a slice of a plain `Vec` needs no `unsafe` allocator.
    bounce: Vec<u8>,
}

impl DirectIo {
    /// Opens `path` for direct I/O; without `O_DIRECT` support on its
    /// filesystem every call goes through the buffered handle instead.
    pub fn open(path: &Path) -> DirectIo {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_DIRECT | nix::libc::O_CLOEXEC)
            .open(path);
        match file {
            Ok(f) => DirectIo {
                file: Some(f),
                bounce: vec![0; CHUNK_LEN + ALIGN],
            },
            Err(e) => {
                log::info!(
                    "{}: no O_DIRECT ({e}); writing through the page cache",
                    path.display()
                );
                DirectIo {
                    file: None,
                    bounce: Vec::new(),
                }
            }
        }
    }

    /// True when writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.file.is_some()
    }

    /// The aligned window of the bounce buffer for `len` bytes at `offset`,
    /// when a direct transfer is possible.
    fn window(&mut self, offset: u64, len: usize) -> Option<(&File, &mut [u8])> {
        let file = self.file.as_ref()?;
        if offset % ALIGN as u64 != 0 || len % ALIGN != 0 {
            return None;
        }
        let start = self.bounce.as_ptr().align_offset(ALIGN);
        let buf = self.bounce.get_mut(start..start.checked_add(len)?)?;
        Some((file, buf))
    }

    /// Writes `data` at `offset`: directly when both are aligned, else
    /// through `buffered` (an ordinary handle on the same file).
    pub fn write_at(&mut self, buffered: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        match self.window(offset, data.len()) {
            Some((direct, buf)) => {
                buf.copy_from_slice(data);
                direct.write_all_at(buf, offset)
            }
            None => buffered.write_all_at(data, offset),
        }
    }

    /// Reads `out.len()` bytes at `offset` from the device itself when
    /// aligned (the read-back must not fill dom0's page cache either).
    pub fn read_at(&mut self, buffered: &File, offset: u64, out: &mut [u8]) -> io::Result<()> {
        match self.window(offset, out.len()) {
            Some((direct, buf)) => {
                direct.read_exact_at(buf, offset)?;
                out.copy_from_slice(buf);
                Ok(())
            }
            None => buffered.read_exact_at(out, offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_unaligned_writes_read_back_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.img");
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        buffered.set_len(16 << 20).unwrap();
        let mut w = DirectIo::open(&p);
        let a: Vec<u8> = (0..(1 << 20) as u32).map(|i| (i % 253) as u8).collect();
        let b: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8 + 1).collect();
        // The page cache holds stale bytes of the range before the direct
        // write; the read-back must not see them.
        let mut back = vec![0u8; a.len()];
        buffered.read_exact_at(&mut back, 4 << 20).unwrap();
        w.write_at(&buffered, 4 << 20, &a).unwrap();
        w.write_at(&buffered, (8 << 20) + 3, &b).unwrap();
        buffered.read_exact_at(&mut back, 4 << 20).unwrap();
        assert_eq!(back, a);
        let mut direct_back = vec![0u8; a.len()];
        w.read_at(&buffered, 4 << 20, &mut direct_back).unwrap();
        assert_eq!(direct_back, a);
        let mut back = vec![0u8; b.len()];
        w.read_at(&buffered, (8 << 20) + 3, &mut back).unwrap();
        assert_eq!(back, b);
        // This test runs on an ext4 /tmp in CI; say so when it did not.
        eprintln!("O_DIRECT in use: {}", w.is_direct());
    }
}
