//! XFS: the primary superblock ("XFSB", big-endian) at byte 0 names the
//! filesystem; each allocation group's free-space btree by block number
//! gives the used-block map, trusted only when the internal log says the
//! filesystem was unmounted cleanly.
//!
//! No crate reads XFS allocation metadata, so the few structures needed are
//! parsed here (read-only, bounded by the AG sizes and tree depth).

mod agf;
mod bnobt;
mod log_record;
mod superblock;
#[cfg(test)]
mod test_image;
mod used_map;

pub use superblock::{AgBlock, AgIndex};

use super::bytes::{label_string, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::{DeviceError, ReadAt, read_vec};
use crate::source::extent::ExtentList;
use superblock::{SB_READ, Superblock};

/// Why an XFS filesystem's used-block map cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum XfsError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no XFS superblock magic at byte 0")]
    NoSuperblock,
    #[error(
        "superblock: absurd block size {block_size} (blocklog {blocklog}; a power of two in 512..=65536)"
    )]
    BlockSize { block_size: u32, blocklog: u8 },
    #[error(
        "superblock: absurd sector size {sectsize} (sectlog {sectlog}; a power of two in 512..=32768, at most the {block_size}-byte block)"
    )]
    SectorSize {
        sectsize: u32,
        sectlog: u8,
        block_size: u32,
    },
    #[error(
        "superblock: absurd geometry: {agcount} AGs of {agblocks} blocks (agblklog {agblklog}) for {dblocks} blocks"
    )]
    AgGeometry {
        agcount: u32,
        agblocks: u32,
        agblklog: u8,
        dblocks: u64,
    },
    #[error(
        "superblock: {dblocks} blocks of {block_size} bytes do not fit in the {device_size}-byte partition (truncated image or wrong partition size)"
    )]
    BeyondDevice {
        dblocks: u64,
        block_size: u32,
        device_size: u64,
    },
    #[error("superblock: version {} (versionnum {versionnum:#06x}); p2xen maps versions 4 and 5", versionnum & 0xf)]
    Version { versionnum: u16 },
    #[error("superblock: checksum {stored:#010x}, computed {computed:#010x}")]
    SuperblockCrc { stored: u32, computed: u32 },
    #[error("superblock: unknown incompatible features {bits:#x}")]
    UnknownIncompat { bits: u32 },
    #[error("superblock: marked as needing xfs_repair")]
    NeedsRepair,
    #[error("superblock: mkfs.xfs did not finish (sb_inprogress is set)")]
    InProgress,
    #[error("log on an external device: whether it is clean cannot be checked here")]
    ExternalLog,
    #[error(
        "superblock: internal log at {logstart:#x} (AG {ag}, block {agbno}) of {logblocks} blocks is not inside that AG"
    )]
    LogOutside {
        logstart: u64,
        ag: u64,
        agbno: u64,
        logblocks: u32,
    },
    #[error(
        "log not clean at log sector {bb}: {why}; mounting and unmounting it on the source replays the log, after which only its used blocks are copied"
    )]
    LogNotClean { bb: u64, why: String },
    #[error("AG {ag}: AGF at byte {offset}: {why}")]
    Agf {
        ag: AgIndex,
        offset: u64,
        why: String,
    },
    #[error("AG {ag}, block {block}: {why}")]
    Corrupt {
        ag: AgIndex,
        block: AgBlock,
        why: String,
    },
    #[error(
        "AG {ag}: the free-space btree holds {tree_free} free blocks but the AGF says {agf_free}: run `xfs_repair -n` on the source"
    )]
    FreeCountMismatch {
        ag: AgIndex,
        tree_free: u64,
        agf_free: u32,
    },
}

fn wrap(part: &dyn ReadAt, e: XfsError) -> ProbeError {
    match e {
        XfsError::Device(d) => ProbeError::Device(d),
        source => ProbeError::Xfs {
            path: part.name().to_path_buf(),
            source,
        },
    }
}

fn read_superblock(part: &dyn ReadAt) -> Result<Option<Superblock>, ProbeError> {
    let Some(b) = read_if_fits(part, 0, SB_READ)? else {
        return Ok(None);
    };
    Superblock::parse(&b).map_err(|e| wrap(part, e))
}

fn map(part: &dyn ReadAt, sb: &Superblock) -> Result<ExtentList, XfsError> {
    // sectsize was validated to be at most 32 KiB; sector 0 exists since
    // the superblock was read from it.
    let sector = read_vec(part, 0, sb.sectsize as usize)?;
    sb.check_mappable(&sector, part.size())?;
    used_map::used_map(part, sb)
}

/// Names the filesystem from its superblock. The used-block map is
/// computed too (a sector per AG, the bnobt blocks and a few MiB of log),
/// for an exact `used_bytes`; a map that cannot be trusted leaves it unset
/// and is reported by [`used_extents`], not here.
pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(sb) = read_superblock(part)? else {
        return Ok(None);
    };
    let mut fs = Filesystem::new(FsKind::Xfs);
    fs.uuid = uuid_string(&sb.uuid);
    fs.label = label_string(&sb.fname);
    fs.size_bytes = sb.dblocks.checked_mul(u64::from(sb.block_size));
    fs.details.block_size = Some(u64::from(sb.block_size));
    fs.details.blocks_count = Some(sb.dblocks);
    match map(part, &sb) {
        Ok(used) => {
            fs.used_bytes = Some(used.total_bytes());
            fs.state = Some("clean".to_string());
        }
        Err(e) => {
            if matches!(e, XfsError::LogNotClean { .. }) {
                fs.state = Some("needs_recovery".to_string());
            }
            log::info!("{}: xfs: no used-block map: {e}", part.name().display());
        }
    }
    Ok(Some(fs))
}

/// The used-block map of the XFS filesystem on `part`.
pub(super) fn used_extents(part: &dyn ReadAt) -> Result<ExtentList, ProbeError> {
    let sb = read_superblock(part)?.ok_or_else(|| wrap(part, XfsError::NoSuperblock))?;
    map(part, &sb).map_err(|e| wrap(part, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::filesystems::assert_used_bytes_match_map;
    use proptest::prelude::*;

    #[test]
    fn probe_reports_the_map_and_used_extents_agrees() {
        let disk = MemDisk::new(test_image::tiny_v4());
        let fs = probe(&disk).unwrap().unwrap();
        assert_eq!(fs.label.as_deref(), Some("tiny"));
        assert_eq!(fs.state.as_deref(), Some("clean"));
        let used = used_extents(&disk).unwrap();
        assert_eq!(fs.used_bytes, Some(used.total_bytes()));
        // 456 blocks, 70 + 120 of them free.
        assert_eq!(used.total_bytes(), (456 - 190) * 1024);
    }

    #[test]
    fn an_unclean_log_still_probes_but_maps_to_an_error() {
        let mut img = test_image::tiny_v4();
        test_image::log_record(&mut img, 2, 1, 0x02);
        let disk = MemDisk::new(img);
        let fs = probe(&disk).unwrap().unwrap();
        assert_eq!(fs.state.as_deref(), Some("needs_recovery"));
        assert_eq!(fs.used_bytes, None);
        let e = used_extents(&disk).unwrap_err().to_string();
        assert!(e.contains("log not clean at log sector 2"), "{e}");
    }

    /// Starts of the 2 KiB the map reads from: AG 0's headers and bnobt
    /// root, the log's first sectors, AG 1's headers, bnobt root and the
    /// two-level variant's leaves.
    const METADATA: [usize; 5] = [0, 64 * 1024, 256 * 1024, 259 * 1024, 272 * 1024];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Arbitrary bytes behind the magic, on disks of arbitrary size.
        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            size in 0usize..(512 * 1024),
        ) {
            let mut img = vec![0u8; size.max(data.len() + 4)];
            img[..4].copy_from_slice(superblock::MAGIC);
            img[4..4 + data.len()].copy_from_slice(&data);
            assert_used_bytes_match_map(&MemDisk::new(img), FsKind::Xfs);
        }

        #[test]
        fn mutated_tiny_image_never_panics(
            muts in proptest::collection::vec((0usize..METADATA.len(), 0usize..2048, any::<u8>()), 1..16),
            two_level in any::<bool>(),
        ) {
            let mut img = if two_level {
                test_image::tiny_v4_two_level()
            } else {
                test_image::tiny_v4()
            };
            for (region, at, val) in muts {
                img[METADATA[region] + at] = val;
            }
            assert_used_bytes_match_map(&MemDisk::new(img), FsKind::Xfs);
        }
    }
}
