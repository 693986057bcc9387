//! Read-only access to a source disk: a block device or an image file.
//!
//! Every read p2xen makes of a source goes through [`ReadAt`], so the parsers
//! can be fed from memory (tests, fuzzing) and from a real disk alike, and so
//! that no code path can ever hold a writable handle to the source.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Errors while opening or reading a source device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{path}: cannot open read-only: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: cannot query size: {source}")]
    Size { path: PathBuf, source: io::Error },
    #[error("{path}: is neither a block device nor a regular file")]
    NotADisk { path: PathBuf },
    #[error("{path}: read of {len} bytes at offset {offset} failed: {source}")]
    Read {
        path: PathBuf,
        offset: u64,
        len: usize,
        source: io::Error,
    },
    #[error("{path}: read of {len} bytes at offset {offset} is past the end ({size} bytes)")]
    OutOfRange {
        path: PathBuf,
        offset: u64,
        len: usize,
        size: u64,
    },
}

/// Random-access, read-only byte source with a known length.
///
/// `read_exact_at` must fill `buf` completely or fail; a short read is an error
/// because every caller parses fixed-size on-disk structures.
pub trait ReadAt {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// Name used in error messages (device path, image path, "memory").
    fn name(&self) -> &Path;
}

pub(crate) fn check_range(
    name: &Path,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<(), DeviceError> {
    let end = offset.checked_add(len as u64);
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::OutOfRange {
            path: name.to_path_buf(),
            offset,
            len,
            size,
        }),
    }
}

/// In-memory source, for tests and fuzz targets.
pub struct MemDisk {
    data: Vec<u8>,
    name: PathBuf,
}

impl MemDisk {
    pub fn new(data: Vec<u8>) -> Self {
        MemDisk {
            data,
            name: PathBuf::from("<memory>"),
        }
    }
}

impl ReadAt for MemDisk {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(&self.name, offset, buf.len(), self.size())?;
        #[expect(
            clippy::cast_possible_truncation,
            reason = "check_range proved offset + len <= data.len(), a usize"
        )]
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn name(&self) -> &Path {
        &self.name
    }
}

/// A source disk opened `O_RDONLY`: a block device or a regular image file.
pub struct Device {
    file: File,
    path: PathBuf,
    size: u64,
    is_block: bool,
}

impl Device {
    /// Opens `path` read-only. Never creates, truncates or writes.
    pub fn open(path: &Path) -> Result<Self, DeviceError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_cloexec())
            .open(path)
            .map_err(|source| DeviceError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let meta = file.metadata().map_err(|source| DeviceError::Size {
            path: path.to_path_buf(),
            source,
        })?;
        let ft = meta.file_type();
        let (size, is_block) = if ft.is_block_device() {
            (block_size_bytes(&file, path)?, true)
        } else if ft.is_file() {
            (meta.len(), false)
        } else {
            return Err(DeviceError::NotADisk {
                path: path.to_path_buf(),
            });
        };
        Ok(Device {
            file,
            path: path.to_path_buf(),
            size,
            is_block,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_block_device(&self) -> bool {
        self.is_block
    }

    /// The open file, for callers that need ioctls (sector size, BLKROSET).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn libc_o_cloexec() -> i32 {
    nix::fcntl::OFlag::O_CLOEXEC.bits()
}

fn block_size_bytes(file: &File, path: &Path) -> Result<u64, DeviceError> {
    use std::io::{Seek, SeekFrom};
    // Seeking to the end of a block device yields its size without an ioctl;
    // `&File` implements Seek, and the position is irrelevant for pread.
    let mut f = file;
    f.seek(SeekFrom::End(0))
        .map_err(|source| DeviceError::Size {
            path: path.to_path_buf(),
            source,
        })
}

impl ReadAt for Device {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(&self.path, offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| DeviceError::Read {
                path: self.path.clone(),
                offset,
                len: buf.len(),
                source,
            })
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn name(&self) -> &Path {
        &self.path
    }
}

/// A bounds-checked window of another source: a partition of a disk.
///
/// Offsets given to the window are relative to its start; reads past its end
/// fail even when the underlying disk is larger, so a filesystem parser can
/// never wander into the neighbouring partition.
pub struct Window<'a> {
    inner: &'a dyn ReadAt,
    start: u64,
    len: u64,
}

impl<'a> Window<'a> {
    /// A window of `len` bytes at `start`; clamped to the end of `inner`.
    pub fn new(inner: &'a dyn ReadAt, start: u64, len: u64) -> Self {
        let avail = inner.size().saturating_sub(start);
        Window {
            inner,
            start,
            len: len.min(avail),
        }
    }

    pub fn start(&self) -> u64 {
        self.start
    }
}

impl ReadAt for Window<'_> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(self.inner.name(), offset, buf.len(), self.len)?;
        // offset + len <= self.len <= inner.size() - start, so this cannot overflow.
        self.inner.read_exact_at(self.start + offset, buf)
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn name(&self) -> &Path {
        self.inner.name()
    }
}

/// Reads `len` bytes at `offset` into a new buffer.
///
/// `len` comes from code, never from disk; callers that size a read from an
/// on-disk value must bound it first.
pub fn read_vec(src: &dyn ReadAt, offset: u64, len: usize) -> Result<Vec<u8>, DeviceError> {
    let mut buf = vec![0u8; len];
    src.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_refuses_reads_past_its_end() {
        let disk = MemDisk::new((0..=255u8).collect());
        let w = Window::new(&disk, 16, 16);
        let mut b = [0u8; 4];
        w.read_exact_at(12, &mut b).unwrap();
        assert_eq!(b, [28, 29, 30, 31]);
        let err = w.read_exact_at(13, &mut b).unwrap_err();
        assert!(matches!(err, DeviceError::OutOfRange { offset: 13, .. }));
    }

    #[test]
    fn offsets_near_u64_max_do_not_overflow() {
        let disk = MemDisk::new(vec![0; 8]);
        let mut b = [0u8; 4];
        assert!(disk.read_exact_at(u64::MAX - 1, &mut b).is_err());
    }
}
