//! What can go wrong storing a received disk. Backend-specific failures
//! (`lvm:VG`, `dev:`) keep their own types and are wrapped here, so the
//! backends need nothing of this module.

use std::io;
use std::path::{Path, PathBuf};

use super::dev_error::DevError;
use super::lvm_error::LvmError;
use crate::wire::name::BadName;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "target full: {path}: no space left writing {len} bytes at offset {offset}; free space on the store and run the sender again (it resumes)"
    )]
    Full {
        path: PathBuf,
        offset: u64,
        len: usize,
    },
    #[error("{path}: {op} at offset {offset}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error(transparent)]
    BadName(#[from] BadName),
    #[error(
        "{0} already exists: pick another --name on the sender, or start the receiver with --force to replace it"
    )]
    Exists(PathBuf),
    #[error(
        "store {0:?}: expected a directory, lvm:VG or dev:/dev/X[,/dev/Y...] (absolute device paths)"
    )]
    BadSpec(String),
    #[error(transparent)]
    Lvm(#[from] LvmError),
    #[error(transparent)]
    Dev(#[from] DevError),
}

impl StoreError {
    pub fn io(path: &Path, op: &'static str, offset: u64, len: usize, source: io::Error) -> Self {
        if source.raw_os_error() == Some(nix::libc::ENOSPC) {
            StoreError::Full {
                path: path.to_path_buf(),
                offset,
                len,
            }
        } else {
            StoreError::Io {
                path: path.to_path_buf(),
                op,
                offset,
                source,
            }
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full { .. })
    }
}
