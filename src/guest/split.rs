//! Layout `partitions`: one image per partition, cut out of the disk image
//! with its holes kept (SEEK_DATA/SEEK_HOLE), so a sparse copy stays sparse.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Whence, lseek};

const CHUNK: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("{path}: {what} at offset {offset}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error("{path}: partition {start}+{len} lies beyond the image end ({size} bytes)")]
    OutOfImage {
        path: PathBuf,
        start: u64,
        len: u64,
        size: u64,
    },
}

/// Copies bytes `start..start+len` of `disk` into a new file `out`.
/// Returns the number of data bytes copied (holes excluded).
pub fn copy_partition(disk: &Path, start: u64, len: u64, out: &Path) -> Result<u64, SplitError> {
    let io_err = |path: &Path, what: &'static str, offset: u64| {
        let path = path.to_path_buf();
        move |source| SplitError::Io {
            path,
            what,
            offset,
            source,
        }
    };
    let src = File::open(disk).map_err(io_err(disk, "open", 0))?;
    let size = src.metadata().map_err(io_err(disk, "stat", 0))?.len();
    let end = start
        .checked_add(len)
        .filter(|e| *e <= size)
        .ok_or(SplitError::OutOfImage {
            path: disk.to_path_buf(),
            start,
            len,
            size,
        })?;
    let dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io_err(out, "create", 0))?;
    dst.set_len(len).map_err(io_err(out, "set length", len))?;
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    let mut pos = start;
    while pos < end {
        let Some((data, hole)) = next_data(&src, pos, end).map_err(io_err(disk, "seek", pos))?
        else {
            break;
        };
        let mut at = data;
        while at < hole {
            let n = usize::try_from((hole - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = buf.get_mut(..n).unwrap_or_default();
            src.read_exact_at(chunk, at)
                .map_err(io_err(disk, "read", at))?;
            // Zero blocks inside data extents stay holes in the copy too.
            if chunk.iter().any(|b| *b != 0) {
                dst.write_all_at(chunk, at - start)
                    .map_err(io_err(out, "write", at - start))?;
                copied += n as u64;
            }
            at += n as u64;
        }
        pos = hole;
    }
    dst.sync_all().map_err(io_err(out, "sync", 0))?;
    Ok(copied)
}

/// The next data extent at or after `pos`, clipped to `end`.
fn next_data(f: &File, pos: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
    let off = i64::try_from(pos).map_err(io::Error::other)?;
    let data = match lseek(f.as_raw_fd(), off, Whence::SeekData) {
        Ok(d) => u64::try_from(d).map_err(io::Error::other)?,
        Err(nix::errno::Errno::ENXIO) => return Ok(None),
        // Filesystems without SEEK_DATA: everything is data.
        Err(nix::errno::Errno::EINVAL) => return Ok(Some((pos, end))),
        Err(e) => return Err(e.into()),
    };
    if data >= end {
        return Ok(None);
    }
    let hole = lseek(f.as_raw_fd(), data as i64, Whence::SeekHole).map_err(io::Error::from)?;
    let hole = u64::try_from(hole).map_err(io::Error::other)?;
    Ok(Some((data, hole.min(end))))
}
