//! Filesystem and volume signatures: what a partition (or a whole disk) holds.
//!
//! Hand-written because no well-kept crate probes these signatures without
//! libblkid (C); the parsers only read fixed-size headers at known offsets,
//! except ext2/3/4, whose group descriptors and block bitmaps, XFS, whose
//! free-space btrees, Btrfs, whose chunk and device trees, and FAT, whose
//! allocation table, give the map of used blocks that lets the copy skip
//! free space.

pub mod btrfs;
mod bytes;
pub mod ext;
pub mod lvm;
pub mod md;
mod ntfs;
mod swap;
pub mod vfat;
pub mod xfs;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::source::device::{DeviceError, ReadAt};
use crate::source::extent::ExtentList;

/// What a signature says the partition holds. Serialised in blkid's
/// lower-case spelling where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

    /// The serialised name ("ext4", "lvm2_pv", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Swap => "swap",
            FsKind::Lvm2Pv => "lvm2_pv",
            FsKind::LinuxRaidMember => "linux_raid_member",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Vfat => "vfat",
            FsKind::Ntfs => "ntfs",
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-type extras, flattened into the [`Filesystem`] object; a field is
/// present only for the types that have it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsDetails {
    /// ext/xfs/btrfs/vfat/ntfs: allocation unit in bytes (FAT/NTFS: cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    /// ext: cluster size when bigalloc is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_blocks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_inodes: Option<u64>,
    /// ext: feature names as `dumpe2fs -h` prints them, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// swap: header version (1 for SWAPSPACE2, 0 for the old SWAP-SPACE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_version: Option<u32>,
    /// swap: page size the header was written for (the header is one page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    /// swap: last usable page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_page: Option<u64>,
    /// md: superblock version "0.90", "1.0", "1.1" or "1.2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_metadata: Option<String>,
    /// md: "raid1", "raid5", "linear", ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_raid_disks: Option<u32>,
    /// md: this device's slot in the array ("0", "1", ...) or "spare"/"faulty".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_role: Option<String>,
    /// md: array UUID as mdadm prints it (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_array_uuid: Option<String>,
    /// md: byte offset of the array's data in the member (0 for 0.90 and
    /// usually for 1.0; after the superblock for 1.1/1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_data_offset: Option<u64>,
    /// md RAID1: the sender copied the filesystem that was inside this
    /// array ("raid1 1.2 UUID"), so the partition now holds it bare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_flattened_from: Option<String>,
    /// md 1.x: this member's own UUID (blkid's UUID_SUB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_device_uuid: Option<String>,
    /// LVM: the volume group this PV belongs to (from the metadata area).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg_name: Option<String>,
    /// LVM: the VG's UUID (6-4-4-4-4-4-6, as vgs prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg_uuid: Option<String>,
    /// LVM: the VG's extent size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extent_size: Option<u64>,
    /// LVM: every LV of the VG, with its share of this PV and its filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logical_volumes: Vec<lvm::LvReport>,
    /// vfat: "FAT12", "FAT16" or "FAT32" (blkid's VERSION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fat_type: Option<String>,
}

/// What was found on a partition or whole disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filesystem {
    #[serde(rename = "type")]
    pub kind: FsKind,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Size as the filesystem (or volume header) says.
    pub size_bytes: Option<u64>,
    /// ext, xfs, btrfs, vfat: from the used-block map; others: where the fs
    /// records it exactly.
    pub used_bytes: Option<u64>,
    /// ext: "clean" | "needs_recovery" | "errors" | "not_clean";
    /// xfs: "clean" (log ends in an unmount record) | "needs_recovery";
    /// btrfs: "clean" | "needs_recovery" (a tree log awaits replay), both
    /// only when the used map was read.
    pub state: Option<String>,
    #[serde(flatten)]
    pub details: FsDetails,
}

impl Filesystem {
    pub(crate) fn new(kind: FsKind) -> Self {
        Filesystem {
            kind,
            label: None,
            uuid: None,
            size_bytes: None,
            used_bytes: None,
            state: None,
            details: FsDetails::default(),
        }
    }
}

/// Why a signature that was found could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{path}: ext2/3/4 filesystem: {source}")]
    Ext {
        path: PathBuf,
        source: ext::ExtError,
    },
    #[error("{path}: LVM2 physical volume: {source}")]
    Lvm {
        path: PathBuf,
        source: lvm::LvmError,
    },
    #[error("{path}: xfs filesystem: {source}")]
    Xfs {
        path: PathBuf,
        source: xfs::XfsError,
    },
    #[error("{path}: btrfs filesystem: {source}")]
    Btrfs {
        path: PathBuf,
        source: btrfs::BtrfsError,
    },
    #[error("{path}: vfat filesystem: {source}")]
    Vfat {
        path: PathBuf,
        source: vfat::VfatError,
    },
    #[error("{path}: {kind} header at offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        kind: FsKind,
        offset: u64,
        what: String,
    },
}

impl ProbeError {
    fn corrupt(part: &dyn ReadAt, kind: FsKind, offset: u64, what: impl Into<String>) -> Self {
        ProbeError::Corrupt {
            path: part.name().to_path_buf(),
            kind,
            offset,
            what: what.into(),
        }
    }
}

type Prober = fn(&dyn ReadAt) -> Result<Option<Filesystem>, ProbeError>;

/// Identifies what `part` holds; `Ok(None)` if no known signature is there.
///
/// RAID and LVM signatures come first, as in blkid: an md 0.90/1.0 mirror
/// member carries the filesystem of the array at offset 0 as well, and
/// copying it as that filesystem would lose the RAID superblock's meaning.
/// NTFS precedes vfat because both boot sectors look alike.
pub fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    probe_with(part, lvm::probe)
}

/// [`probe`] for what an LV holds: a PV found there is named but its LVs
/// are not walked into, so nesting cannot recurse.
fn probe_nested(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    probe_with(part, lvm::probe_pv_only)
}

fn probe_with(part: &dyn ReadAt, lvm: Prober) -> Result<Option<Filesystem>, ProbeError> {
    let order: [Prober; 8] = [
        md::probe,
        lvm,
        ext::probe,
        xfs::probe,
        btrfs::probe,
        ntfs::probe,
        vfat::probe,
        swap::probe,
    ];
    for prober in order {
        if let Some(fs) = prober(part)? {
            log::debug!("{}: found {}", part.name().display(), fs.kind);
            return Ok(Some(fs));
        }
    }
    Ok(None)
}

/// Byte extents (relative to the partition start) that hold data worth
/// copying: `Some` for ext2/3/4 (block bitmaps), xfs (free-space btrees),
/// btrfs (allocated device extents of a one-device filesystem), vfat
/// (metadata and the clusters the FAT allocates), swap (header page only)
/// and LVM2 PVs (allocated extents, by their LVs' filesystems where
/// mapped); `None` means copy everything. An error means a map was
/// expected but cannot be trusted: the caller copies the partition whole
/// and reports why.
pub fn used_extents(part: &dyn ReadAt, fs: &Filesystem) -> Result<Option<ExtentList>, ProbeError> {
    match fs.kind {
        k if k.is_ext() => ext::used_extents(part).map(Some),
        FsKind::Xfs => xfs::used_extents(part).map(Some),
        FsKind::Btrfs => btrfs::used_extents(part).map(Some),
        FsKind::Vfat => vfat::used_extents(part).map(Some),
        FsKind::Swap => swap::used_extents(part),
        FsKind::Lvm2Pv => lvm::used_extents(part),
        _ => Ok(None),
    }
}

/// For the parsers' property tests: probing and mapping `disk` must not
/// panic, and a filesystem of `kind` must report the map's total as
/// `used_bytes` (None when the map is refused).
#[cfg(test)]
fn assert_used_bytes_match_map(disk: &dyn ReadAt, kind: FsKind) {
    if let Ok(Some(fs)) = probe(disk) {
        let map = used_extents(disk, &fs);
        if fs.kind == kind {
            assert_eq!(fs.used_bytes, map.ok().flatten().map(|u| u.total_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;

    #[test]
    fn kinds_serialise_in_blkid_spelling() {
        for k in [
            FsKind::Ext2,
            FsKind::Lvm2Pv,
            FsKind::LinuxRaidMember,
            FsKind::Vfat,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert!(FsKind::Ext3.is_ext() && !FsKind::Xfs.is_ext());
    }

    #[test]
    fn details_flatten_and_round_trip() {
        let mut fs = Filesystem::new(FsKind::Swap);
        fs.details.swap_version = Some(1);
        let v = serde_json::to_value(&fs).unwrap();
        assert_eq!(v["type"], "swap");
        assert_eq!(v["swap_version"], 1);
        assert!(v.get("md_level").is_none());
        let back: Filesystem = serde_json::from_value(v).unwrap();
        assert_eq!(back, fs);
    }

    /// Signatures stamped into random bytes, so the parsers behind each
    /// magic check get exercised, not just the magic checks.
    const MAGICS: &[(usize, &[u8])] = &[
        (1024 + 56, &[0x53, 0xEF]),           // ext
        (0, b"XFSB"),                         // xfs
        (65536 + 64, b"_BHRfS_M"),            // btrfs
        (3, b"NTFS    "),                     // ntfs
        (54, b"FAT16   "),                    // vfat (with 0x55AA below)
        (4086, b"SWAPSPACE2"),                // swap
        (512, b"LABELONE"),                   // lvm (sector 1)
        (4096, &[0xfc, 0x4e, 0x2b, 0xa9, 1]), // md 1.2
        (0, &[0xfc, 0x4e, 0x2b, 0xa9, 1]),    // md 1.1
    ];

    proptest::proptest! {
        #[test]
        fn probe_never_panics_on_arbitrary_bytes(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..140_000),
            which in 0..MAGICS.len(),
            seed_ext in proptest::prelude::any::<bool>(),
        ) {
            let mut data = data;
            let (off, magic) = MAGICS[which];
            if data.len() >= off + magic.len() {
                data[off..off + magic.len()].copy_from_slice(magic);
            }
            if data.len() >= 512 {
                data[510] = 0x55;
                data[511] = 0xAA;
                data[0] = 0xEB;
            }
            if seed_ext && data.len() >= 2048 {
                // Plausible ext geometry so parsing reaches the descriptors.
                ext::superblock_fields_for_tests(&mut data[1024..2048]);
            }
            let disk = MemDisk::new(data);
            if let Ok(Some(fs)) = probe(&disk) {
                let _ = used_extents(&disk, &fs);
            }
        }
    }

    #[test]
    fn empty_and_tiny_sources_hold_nothing() {
        for len in [0usize, 1, 511, 4096, 70_000] {
            let disk = MemDisk::new(vec![0; len]);
            assert!(probe(&disk).unwrap().is_none(), "len {len}");
        }
    }
}
