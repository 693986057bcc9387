//! The targets a disk is written to: a sparse image file or a block device
//! (an LV of ours or a `dev:` device). Both promise the same content:
//! whatever the sender did not send reads as zeros.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::blockdev;
use super::error::StoreError;
use crate::receive::direct::DirectIo;

/// One disk being received. Every target is an open file (an image or a
/// block device) at a path; they differ only in how they write and zero.
pub trait Target: Send {
    /// The `O_DIRECT` handle beside the ordinary one: data is written and
    /// read back around dom0's page cache (see `direct.rs`).
    fn direct(&mut self) -> (&mut DirectIo, &File);
    /// Makes `[offset, offset+len)` read as zeros.
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), StoreError>;
    fn file(&self) -> &File;
    fn path(&self) -> &Path;

    /// After the last chunk: makes everything outside `written` (sorted,
    /// disjoint (offset, len) ranges) read as zeros, as a fresh copy has it.
    fn fill_gaps(&mut self, written: &[(u64, u64)]) -> Result<(), StoreError>;

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let (direct, file) = self.direct();
        direct
            .write_at(file, offset, data)
            .map_err(|e| StoreError::io(self.path(), "write", offset, data.len(), e))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let (direct, file) = self.direct();
        direct
            .read_at(file, offset, buf)
            .map_err(|e| StoreError::io(self.path(), "read back", offset, buf.len(), e))
    }
    /// Data reaches stable storage (fdatasync) before the journal records it.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.file()
            .sync_data()
            .map_err(|e| StoreError::io(self.path(), "fdatasync", 0, 0, e))
    }
    /// Starts writeback of a written range without waiting for it, so the
    /// periodic fdatasync finds little left to do and does not stall the copy.
    fn start_writeback(&self, offset: u64, len: u64) {
        start_writeback(self.file(), offset, len);
    }
    /// A second handle for fdatasync from the committer thread.
    fn sync_handle(&self) -> Result<File, StoreError> {
        self.file().try_clone().map_err(|source| StoreError::File {
            path: self.path().to_path_buf(),
            source,
        })
    }
}

/// A sparse image file.
pub struct SparseFile {
    file: File,
    /// Data goes around the page cache; `file` serves reads, holes and sync.
    direct: DirectIo,
    path: PathBuf,
}

impl SparseFile {
    pub fn open(path: &Path, size: u64) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| StoreError::File {
                path: path.to_path_buf(),
                source,
            })?;
        // Setting the length allocates nothing: the image starts as one hole.
        file.set_len(size).map_err(|source| StoreError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SparseFile {
            file,
            direct: DirectIo::open(path),
            path: path.to_path_buf(),
        })
    }
}

impl Target for SparseFile {
    fn direct(&mut self) -> (&mut DirectIo, &File) {
        (&mut self.direct, &self.file)
    }

    fn fill_gaps(&mut self, written: &[(u64, u64)]) -> Result<(), StoreError> {
        // A fresh image is a hole outside what was written, and zero() finds
        // that at the cost of one SEEK_DATA per gap. An image a cutover
        // updated can hold data there: blocks freed on the source since, or
        // files the earlier conversion wrote.
        let size = self
            .file
            .metadata()
            .map_err(|e| StoreError::io(&self.path, "size", 0, 0, e))?
            .len();
        for (offset, len) in gaps(written, size) {
            self.zero(offset, len)?;
        }
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), StoreError> {
        // A fresh image is a hole already; punching is for a chunk rewritten
        // on resume. Punching never needs space, so it cannot hit ENOSPC.
        let (Ok(o), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(StoreError::io(
                &self.path,
                "punch hole",
                offset,
                0,
                io::ErrorKind::InvalidInput.into(),
            ));
        };
        if is_hole(&self.file, offset, len) {
            return Ok(());
        }
        let mode = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match nix::fcntl::fallocate(std::os::fd::AsRawFd::as_raw_fd(&self.file), mode, o, l) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => write_zeros(self, offset, len),
            Err(e) => Err(StoreError::io(
                &self.path,
                "punch hole",
                offset,
                0,
                e.into(),
            )),
        }
    }

    fn file(&self) -> &File {
        &self.file
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// True when `[offset, offset+len)` holds no data (SEEK_DATA finds none
/// before its end). Punching a hole that is already one still costs a
/// filesystem transaction, which is most of the copy's zero 64 KiB blocks.
fn is_hole(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(o) = i64::try_from(offset) else {
        return false;
    };
    match nix::unistd::lseek(file.as_raw_fd(), o, nix::unistd::Whence::SeekData) {
        Ok(next) => u64::try_from(next).is_ok_and(|n| n >= offset.saturating_add(len)),
        // ENXIO: no data at or after offset.
        Err(nix::errno::Errno::ENXIO) => true,
        Err(_) => false,
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: neither nix nor rustix wraps it.
/// Only a hint: failure just leaves the work to the next fdatasync.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(o), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: plain syscall on an fd we own for the duration of the call; no
    // memory is passed to the kernel.
    let _ = unsafe {
        nix::libc::sync_file_range(file.as_raw_fd(), o, l, nix::libc::SYNC_FILE_RANGE_WRITE)
    };
}

fn write_zeros(t: &mut dyn Target, offset: u64, len: u64) -> Result<(), StoreError> {
    const ZEROS: usize = 1 << 20;
    let zeros = vec![0u8; ZEROS];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done).map_or(ZEROS, |rest| rest.min(ZEROS));
        t.write_at(offset + done, &zeros[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// A block device: an LV we created, or a device given with `--store dev:`.
pub struct BlockTarget {
    file: File,
    /// Data goes around dom0's page cache, as for image files.
    direct: DirectIo,
    path: PathBuf,
    /// Bytes that belong to the copy; `None`: the whole device (an LV of
    /// ours, whose rounding tail is zeroed too).
    len: Option<u64>,
}

impl BlockTarget {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, 0, None)
    }

    /// A device that is not ours: claimed exclusively (`O_EXCL`) while the
    /// copy writes, so nobody mounts it meanwhile and a second migration
    /// cannot pick it too; only its first `len` bytes are the copy's.
    pub fn open_device(path: &Path, len: u64) -> Result<Self, StoreError> {
        Self::open_with(path, nix::libc::O_EXCL, Some(len))
    }

    fn open_with(path: &Path, flags: i32, len: Option<u64>) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC | flags)
            .open(path)
            .map_err(|source| match flags & nix::libc::O_EXCL {
                0 => StoreError::File {
                    path: path.to_path_buf(),
                    source,
                },
                _ => blockdev::busy_or(path, source).into(),
            })?;
        Ok(BlockTarget {
            file,
            direct: DirectIo::open(path),
            path: path.to_path_buf(),
            len,
        })
    }
}

impl Target for BlockTarget {
    fn direct(&mut self) -> (&mut DirectIo, &File) {
        (&mut self.direct, &self.file)
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), StoreError> {
        // The kernel zeroes a block device range itself (WRITE ZEROES or
        // zero pages), without copying zeros from here; an unaligned range
        // (EINVAL) or a kernel without it gets written zeros.
        let (Ok(o), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return write_zeros(self, offset, len);
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        let mode = nix::fcntl::FallocateFlags::FALLOC_FL_ZERO_RANGE;
        match nix::fcntl::fallocate(fd, mode, o, l) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EOPNOTSUPP) => {
                write_zeros(self, offset, len)
            }
            Err(e) => Err(StoreError::io(&self.path, "zero", offset, 0, e.into())),
        }
    }

    fn fill_gaps(&mut self, written: &[(u64, u64)]) -> Result<(), StoreError> {
        use std::io::{Seek, SeekFrom};
        let size = match self.len {
            Some(len) => len,
            None => (&self.file)
                .seek(SeekFrom::End(0))
                .map_err(|e| StoreError::io(&self.path, "size", 0, 0, e))?,
        };
        let gaps = gaps(written, size);
        let total: u64 = gaps.iter().map(|g| g.1).sum();
        if total > 0 {
            log::info!(
                "{}: zeroing {} MiB the sender skipped (unused or past the disk's end), so no old data stays on the device",
                self.path.display(),
                total >> 20
            );
        }
        for (offset, len) in gaps {
            self.zero(offset, len)?;
        }
        Ok(())
    }

    fn file(&self) -> &File {
        &self.file
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// The parts of `[0, size)` outside `written` (sorted, disjoint ranges).
pub fn gaps(written: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for &(o, l) in written {
        let o = o.min(size);
        if o > at {
            out.push((at, o - at));
        }
        at = at.max(o.saturating_add(l).min(size));
    }
    if at < size {
        out.push((at, size - at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sparse_targets_keep_holes_and_punch_zeros() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("d.img");
        let mut t = SparseFile::open(&p, 64 << 20).unwrap();
        t.write_at(8 << 20, &vec![7u8; 1 << 20]).unwrap();
        t.sync().unwrap();
        use std::os::unix::fs::MetadataExt;
        let blocks = fs::metadata(&p).unwrap().blocks();
        assert!(blocks * 512 <= 2 << 20, "{blocks}");
        t.zero(8 << 20, 1 << 20).unwrap();
        let mut b = vec![1u8; 4096];
        t.read_at(8 << 20, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == 0));
        assert_eq!(fs::metadata(&p).unwrap().len(), 64 << 20);
    }

    #[test]
    fn gaps_are_the_complement_of_what_was_written() {
        assert_eq!(gaps(&[], 100), [(0, 100)]);
        assert_eq!(gaps(&[(0, 100)], 100), []);
        assert_eq!(
            gaps(&[(10, 20), (30, 10), (60, 5)], 100),
            [(0, 10), (40, 20), (65, 35)]
        );
        // A range past the end (an LV shorter than announced cannot happen,
        // but must not underflow) is clipped.
        assert_eq!(gaps(&[(0, 10), (90, 50)], 100), [(10, 80)]);
    }

    #[test]
    fn block_targets_zero_ranges_and_fill_gaps() {
        // A regular file stands in for the LV: same code paths (fallocate
        // ZERO_RANGE, seek to the end for the size).
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lv");
        fs::write(&p, vec![0xa5u8; 1 << 20]).unwrap();
        let mut t = BlockTarget::open(&p).unwrap();
        t.write_at(4096, &[1u8; 4096]).unwrap();
        t.zero(65536, 8192).unwrap();
        let mut b = vec![1u8; 8192];
        t.read_at(65536, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == 0));
        t.fill_gaps(&[(4096, 4096), (65536, 8192)]).unwrap();
        let all = fs::read(&p).unwrap();
        assert_eq!(all.len(), 1 << 20);
        assert!(all[..4096].iter().all(|x| *x == 0));
        assert!(all[4096..8192].iter().all(|x| *x == 1));
        assert!(all[8192..].iter().all(|x| *x == 0));
    }

    #[test]
    fn a_device_longer_than_the_disk_keeps_its_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lun");
        fs::write(&p, vec![0xa5u8; 1 << 20]).unwrap();
        let mut t = BlockTarget::open_device(&p, 512 << 10).unwrap();
        t.write_at(0, &[1u8; 4096]).unwrap();
        t.fill_gaps(&[(0, 4096)]).unwrap();
        let all = fs::read(&p).unwrap();
        assert!(all[..4096].iter().all(|x| *x == 1));
        assert!(all[4096..512 << 10].iter().all(|x| *x == 0));
        assert!(all[512 << 10..].iter().all(|x| *x == 0xa5));
    }
}
