// placeholder: branch filesystems replaces this file
//
//! Filesystem probing. This file only carries the type definitions from
//! INTERFACES.md so that branch `partitions` compiles; the real probes come
//! from branch `filesystems` at merge.

use crate::source::device::{DeviceError, ReadAt};
use serde::{Deserialize, Serialize};

/// A filesystem found on a partition or a whole disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filesystem {
    #[serde(rename = "type")]
    pub kind: FsKind,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub size_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub state: Option<String>,
    #[serde(flatten)]
    pub details: FsDetails,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Swap,
    Lvm2Pv,
    LinuxRaidMember,
    Xfs,
    Btrfs,
    Vfat,
    Ntfs,
}

impl FsKind {
    pub fn is_ext(self) -> bool {
        matches!(self, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
    }
}

/// Per-type extras; empty in this placeholder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsDetails {}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Placeholder: finds nothing.
pub fn probe(_part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    Ok(None)
}
