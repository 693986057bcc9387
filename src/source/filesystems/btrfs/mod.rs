//! Btrfs: the primary superblock at 64 KiB ("_BHRfS_M" at byte 64 of it)
//! names the filesystem; the chunk tree and the device tree give the used
//! map of a one-device filesystem: the device extents its chunks occupy.
//!
//! No crate reads Btrfs trees without mounting, so the few structures
//! needed are parsed here (read-only; each tree block checksummed and
//! bounded by the device size and tree depth).

mod chunk_map;
mod dev_extents;
mod superblock;
#[cfg(test)]
mod test_image;
mod tree;
mod used_map;

use super::bytes::{label_string, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::{DeviceError, ReadAt};
use crate::source::extent::ExtentList;
use superblock::Superblock;

/// Why a Btrfs filesystem's used map cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no Btrfs superblock at byte 65536")]
    NoSuperblock,
    #[error(
        "superblock: absurd sector size {sectorsize} or node size {nodesize} (powers of two, 512..=65536 and 4096..=65536)"
    )]
    Geometry { sectorsize: u32, nodesize: u32 },
    #[error("superblock: checksum type {csum_type}; p2xen verifies CRC-32C (type 0) only")]
    ChecksumType { csum_type: u16 },
    #[error("superblock: checksum {stored:#010x}, computed {computed:#010x}")]
    SuperblockCrc { stored: u32, computed: u32 },
    #[error("filesystem spans {num_devices} devices; p2xen maps one-device filesystems only")]
    MultiDevice { num_devices: u64 },
    #[error(
        "superblock: incompatible features {bits:#x} (zoned, extent tree v2, RAID stripe tree or unknown) change the layout p2xen reads"
    )]
    Incompat { bits: u64 },
    #[error("superblock: flags {flags:#x}: {why}")]
    Flags { flags: u64, why: &'static str },
    #[error(
        "superblock: the device is {dev_total_bytes} bytes, the partition {device_size} (truncated image or wrong partition size)"
    )]
    BeyondDevice {
        dev_total_bytes: u64,
        device_size: u64,
    },
    #[error("superblock: a device of {dev_total_bytes} bytes cannot hold its own superblock")]
    DeviceTooSmall { dev_total_bytes: u64 },
    #[error("superblock: sys_chunk_array at byte {at}: {why}")]
    SysChunkArray { at: usize, why: String },
    #[error("chunk at logical {logical}: {why}")]
    Chunk { logical: u64, why: String },
    #[error("logical address {logical} lies in no chunk")]
    Unmapped { logical: u64 },
    #[error(
        "logical address {logical}: tree block in a striped chunk (type {chunk_type:#x}); p2xen reads single, DUP and RAID1 metadata"
    )]
    Profile { logical: u64, chunk_type: u64 },
    #[error("tree block at logical {logical}: {why}")]
    Node { logical: u64, why: String },
    #[error("the root tree has no device tree (ROOT_ITEM 4)")]
    NoDevTree,
    #[error("device extent at byte {physical}: {why}")]
    DevExtent { physical: u64, why: String },
}

fn wrap(part: &dyn ReadAt, e: BtrfsError) -> ProbeError {
    match e {
        BtrfsError::Device(d) => ProbeError::Device(d),
        source => ProbeError::Btrfs {
            path: part.name().to_path_buf(),
            source,
        },
    }
}

/// The superblock and its raw bytes (for the checksum).
fn read_superblock(part: &dyn ReadAt) -> Result<Option<(Superblock, Vec<u8>)>, ProbeError> {
    let Some(b) = read_if_fits(part, superblock::OFFSET, superblock::SIZE)? else {
        return Ok(None);
    };
    Ok(Superblock::parse(&b)
        .map_err(|e| wrap(part, e))?
        .map(|sb| (sb, b)))
}

fn map(part: &dyn ReadAt, sb: &Superblock, raw: &[u8]) -> Result<ExtentList, BtrfsError> {
    sb.check_mappable(raw, part.size())?;
    used_map::used_map(part, sb)
}

/// Names the filesystem from its superblock. The used map is computed
/// too (the chunk, root and device trees: a few blocks), for `used_bytes`
/// and `state`; a map that cannot be trusted leaves both unset and is
/// reported by [`used_extents`] (the partition is then copied whole).
pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some((sb, raw)) = read_superblock(part)? else {
        return Ok(None);
    };
    let mut fs = Filesystem::new(FsKind::Btrfs);
    fs.uuid = uuid_string(&sb.fsid);
    fs.label = label_string(&sb.label);
    fs.size_bytes = Some(sb.total_bytes);
    fs.details.block_size = Some(u64::from(sb.sectorsize));
    match map(part, &sb, &raw) {
        Ok(used) => {
            fs.used_bytes = Some(used.total_bytes());
            // A tree log (left by fsync before a crash) is replayed at the
            // next mount; it lies in allocated chunks, so the copy has it.
            fs.state = Some(
                if sb.log_root == 0 {
                    "clean"
                } else {
                    "needs_recovery"
                }
                .to_string(),
            );
        }
        Err(e) => {
            log::info!(
                "{}: btrfs: no used map, the partition is copied whole: {e}",
                part.name().display()
            );
        }
    }
    Ok(Some(fs))
}

/// The used map of the Btrfs filesystem on `part`.
pub(super) fn used_extents(part: &dyn ReadAt) -> Result<ExtentList, ProbeError> {
    let (sb, raw) = read_superblock(part)?.ok_or_else(|| wrap(part, BtrfsError::NoSuperblock))?;
    map(part, &sb, &raw).map_err(|e| wrap(part, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::extent::Extent;
    use crate::source::filesystems::assert_used_bytes_match_map;
    use proptest::prelude::*;
    use test_image::{CHUNKS, SB, meta_physical, tiny};

    const MIB: u64 = 1 << 20;

    fn err(img: Vec<u8>) -> BtrfsError {
        let disk = MemDisk::new(img);
        let (sb, raw) = read_superblock(&disk).unwrap().unwrap();
        map(&disk, &sb, &raw).unwrap_err()
    }

    #[test]
    fn tiny_image_maps_its_dev_extents() {
        for two_level in [false, true] {
            let disk = MemDisk::new(tiny(two_level));
            let fs = probe(&disk).unwrap().unwrap();
            assert_eq!(fs.label.as_deref(), Some("tiny"));
            assert_eq!(fs.state.as_deref(), Some("clean"));
            let used = used_extents(&disk).unwrap();
            assert_eq!(fs.used_bytes, Some(used.total_bytes()));
            // The first MiB, the system and metadata chunks (1 MiB + 512
            // KiB, adjacent), the data chunk at 3 MiB; no mirror fits.
            assert_eq!(
                used.as_slice(),
                [
                    Extent {
                        offset: 0,
                        len: 2 * MIB + MIB / 2
                    },
                    Extent {
                        offset: 3 * MIB,
                        len: MIB / 2
                    }
                ]
            );
        }
    }

    #[test]
    fn superblock_refusals_are_typed() {
        let mut img = tiny(false);
        img[SB + 0x88] = 2; // num_devices
        test_image::reseal_superblock(&mut img);
        assert!(matches!(
            err(img),
            BtrfsError::MultiDevice { num_devices: 2 }
        ));

        let mut img = tiny(false);
        img[SB + 0x100] ^= 1;
        assert!(matches!(err(img), BtrfsError::SuperblockCrc { .. }));

        let mut img = tiny(false);
        img.truncate(3 * MIB as usize);
        let e = err(img);
        assert!(
            matches!(
                e,
                BtrfsError::BeyondDevice {
                    dev_total_bytes: 4194304,
                    device_size: 3145728
                }
            ),
            "{e}"
        );

        let mut img = tiny(false);
        img[SB + 0xbd] |= 0x10; // incompat bit 12: zoned
        test_image::reseal_superblock(&mut img);
        assert!(matches!(err(img), BtrfsError::Incompat { bits: 0x1000 }));

        let mut img = tiny(false);
        img[SB + 0x94..SB + 0x98].copy_from_slice(&3000u32.to_le_bytes());
        let disk = MemDisk::new(img);
        let e = probe(&disk).unwrap_err().to_string();
        assert!(
            e.contains("absurd sector size 4096 or node size 3000"),
            "{e}"
        );
    }

    #[test]
    fn damaged_tree_blocks_name_their_address() {
        let chunk_leaf = usize::try_from(CHUNKS[0].3).unwrap();
        let mut img = tiny(false);
        img[chunk_leaf + 200] ^= 0xff;
        let s = err(img).to_string();
        assert!(
            s.starts_with("tree block at logical 1048576: at byte 1048576: checksum"),
            "{s}"
        );

        let mut img = tiny(false);
        let dev = meta_physical(test_image::DEV_ROOT);
        img[dev + 0x58] = 5; // owner
        test_image::reseal_block(&mut img, dev);
        let s = err(img).to_string();
        assert!(s.contains("owned by tree 5, expected 4"), "{s}");
    }

    #[test]
    fn dev_extents_must_match_the_chunks() {
        // The data chunk's dev extent dropped: its stripe would be lost.
        let dev = meta_physical(test_image::DEV_ROOT);
        let mut img = tiny(false);
        let exts: Vec<_> = CHUNKS[..2]
            .iter()
            .map(|&(l, len, _, p)| (test_image::k(1, 204, p), test_image::dev_extent(l, len)))
            .collect();
        let leaf = test_image::leaf(test_image::DEV_ROOT, 4, &exts);
        img[dev..dev + leaf.len()].copy_from_slice(&leaf);
        let e = err(img);
        assert!(
            matches!(e, BtrfsError::DevExtent { physical, .. } if physical == 3 * MIB),
            "{e}"
        );
        assert!(
            e.to_string().contains("missing from the device tree"),
            "{e}"
        );
    }

    #[test]
    fn a_node_pointing_at_itself_ends() {
        let mut img = tiny(true);
        let at = meta_physical(test_image::DEV_ROOT);
        // The second child pointer of the device tree's root node.
        let ptr = at + 101 + 33 + 17;
        img[ptr..ptr + 8].copy_from_slice(&test_image::DEV_ROOT.to_le_bytes());
        test_image::reseal_block(&mut img, at);
        let s = err(img).to_string();
        assert!(
            s.starts_with(&format!("tree block at logical {}:", test_image::DEV_ROOT))
                && s.contains("level 1, its parent says 0"),
            "{s}"
        );
    }

    /// Offsets of everything the map reads: superblock, chunk tree leaf,
    /// root tree leaf, device tree blocks.
    const METADATA: [usize; 5] = [SB, 1 << 20, 2 << 20, (2 << 20) + 4096, (2 << 20) + 8192];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            size in 0usize..(3 << 20),
        ) {
            let mut img = vec![0u8; size.max(SB + 4096)];
            img[SB..SB + data.len()].copy_from_slice(&data);
            img[SB + 0x40..SB + 0x48].copy_from_slice(b"_BHRfS_M");
            img[SB + 0x30..SB + 0x38].copy_from_slice(&(SB as u64).to_le_bytes());
            assert_used_bytes_match_map(&MemDisk::new(img), FsKind::Btrfs);
        }

        #[test]
        fn mutated_tiny_image_never_panics(
            muts in proptest::collection::vec((0usize..METADATA.len(), 0usize..4096, any::<u8>()), 1..16),
            two_level in any::<bool>(),
            reseal in any::<bool>(),
        ) {
            let mut img = tiny(two_level);
            for (region, at, val) in muts {
                img[METADATA[region] + at] = val;
            }
            if reseal {
                // Past the checksums, so the parsers behind them run.
                test_image::reseal_superblock(&mut img);
                for at in &METADATA[1..] {
                    test_image::reseal_block(&mut img, *at);
                }
            }
            assert_used_bytes_match_map(&MemDisk::new(img), FsKind::Btrfs);
        }
    }
}
