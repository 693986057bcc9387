//! ext2/3/4: superblock identity and the used-block map from block bitmaps.
//!
//! `ext4-view` reads files but exposes neither group descriptors nor block
//! bitmaps, so the allocation map is parsed here (read-only, bounded).

mod block_bitmap;
mod features;
mod group_desc;
mod superblock;

#[cfg(test)]
pub(super) use superblock::fields_for_tests as superblock_fields_for_tests;
pub use superblock::{BlockIndex, GroupIndex, Superblock};

use super::{Filesystem, FsDetails, ProbeError};
use crate::source::device::{DeviceError, ReadAt};
use crate::source::extent::ExtentList;
use crate::source::filesystems::bytes::read_if_fits;
use superblock::{SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};

/// What is wrong with an ext2/3/4 filesystem's metadata.
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no ext2/3/4 superblock magic at byte 1024")]
    NoSuperblock,
    #[error("superblock: absurd block size 2^(10+{log}) bytes (at most 64 KiB)")]
    BlockSize { log: u32 },
    #[error(
        "superblock: absurd bigalloc cluster size 2^(10+{log_cluster}) for block size 2^(10+{log_block})"
    )]
    ClusterSize { log_cluster: u32, log_block: u32 },
    #[error(
        "superblock: absurd group size: {blocks_per_group} blocks, {clusters_per_group} clusters per group with {block_size}-byte blocks"
    )]
    BlocksPerGroup {
        blocks_per_group: u32,
        clusters_per_group: u32,
        block_size: u64,
    },
    #[error("superblock: absurd {inodes_per_group} inodes per group with {block_size}-byte blocks")]
    InodesPerGroup {
        inodes_per_group: u32,
        block_size: u64,
    },
    #[error("superblock: first data block is {first_data_block}, expected {expected}")]
    FirstDataBlock {
        first_data_block: u32,
        expected: u32,
    },
    #[error("superblock: {groups} block groups, more than p2xen maps ({max})")]
    TooManyGroups { groups: u64, max: u32 },
    #[error("superblock: absurd blocks count {blocks_count}")]
    BlocksCount { blocks_count: u64 },
    #[error(
        "superblock: {blocks_count} blocks of {block_size} bytes do not fit in the {device_size}-byte partition (truncated image or wrong partition size)"
    )]
    BeyondDevice {
        blocks_count: u64,
        block_size: u64,
        device_size: u64,
    },
    #[error("superblock: {free_blocks} free blocks out of {blocks_count}")]
    FreeBeyondCount { free_blocks: u64, blocks_count: u64 },
    #[error(
        "superblock: inodes count {inodes_count} is not {inodes_per_group} inodes x {group_count} groups"
    )]
    InodesCount {
        inodes_count: u32,
        inodes_per_group: u32,
        group_count: u32,
    },
    #[error("superblock: absurd inode size {inode_size}")]
    InodeSize { inode_size: u32 },
    #[error(
        "superblock: absurd group descriptor size {desc_size} (64bit needs a power of two in 64..=1024)"
    )]
    DescSize { desc_size: u32 },
    #[error("superblock: absurd {reserved_gdt_blocks} reserved GDT blocks")]
    ReservedGdt { reserved_gdt_blocks: u32 },
    #[error(
        "superblock: first meta block group {first_meta_bg} is past the {gdt_blocks} descriptor blocks"
    )]
    FirstMetaBg { first_meta_bg: u32, gdt_blocks: u32 },
    #[error(
        "group descriptor block {nr} would be at block {block}, past the {blocks_count} blocks of the filesystem"
    )]
    DescriptorBlockOutside {
        nr: u32,
        block: BlockIndex,
        blocks_count: u64,
    },
    #[error("group {group} (descriptor at byte {offset}): {what} at block {block} {why}")]
    BadDescriptor {
        group: GroupIndex,
        offset: u64,
        what: &'static str,
        block: BlockIndex,
        why: &'static str,
    },
    #[error(
        "group {group} (descriptor at byte {offset}): {free} free clusters but only {per_group} per group"
    )]
    GroupFreeCount {
        group: GroupIndex,
        offset: u64,
        free: u32,
        per_group: u32,
    },
    #[error(
        "block bitmaps count {bitmap_free} free blocks but the superblock says {superblock_free}: run `e2fsck -f` on the source, or copy the whole partition"
    )]
    FreeCountMismatch {
        bitmap_free: u64,
        superblock_free: u64,
    },
}

fn wrap(part: &dyn ReadAt, e: ExtError) -> ProbeError {
    match e {
        ExtError::Device(d) => ProbeError::Device(d),
        source => ProbeError::Ext {
            path: part.name().to_path_buf(),
            source,
        },
    }
}

/// Reads and validates the primary superblock; `Ok(None)` without ext magic.
pub fn read_superblock(part: &dyn ReadAt) -> Result<Option<Superblock>, ProbeError> {
    let Some(buf) = read_if_fits(part, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)? else {
        return Ok(None);
    };
    Superblock::parse(&buf, part.size()).map_err(|e| wrap(part, e))
}

fn map(part: &dyn ReadAt, sb: &Superblock) -> Result<ExtentList, ExtError> {
    let descs = group_desc::read_all(part, sb)?;
    block_bitmap::used_map(part, sb, &descs)
}

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(sb) = read_superblock(part)? else {
        return Ok(None);
    };
    let Some(kind) = sb.kind() else {
        log::info!(
            "{}: external ext3/4 journal device, not a filesystem",
            part.name().display()
        );
        return Ok(None);
    };
    let used = map(part, &sb).map_err(|e| wrap(part, e))?;
    Ok(Some(Filesystem {
        kind,
        label: sb.label(),
        uuid: sb.uuid_string(),
        size_bytes: Some(sb.blocks_count * sb.block_size),
        used_bytes: Some(used.total_bytes()),
        state: Some(sb.state_name().to_string()),
        details: FsDetails {
            block_size: Some(sb.block_size),
            cluster_size: (sb.cluster_size != sb.block_size).then_some(sb.cluster_size),
            blocks_count: Some(sb.blocks_count),
            free_blocks: Some(sb.free_blocks),
            inodes_count: Some(u64::from(sb.inodes_count)),
            free_inodes: Some(u64::from(sb.free_inodes)),
            features: sb.features(),
            ..FsDetails::default()
        },
    }))
}

/// The used-block map of the ext2/3/4 filesystem on `part`.
pub(super) fn used_extents(part: &dyn ReadAt) -> Result<ExtentList, ProbeError> {
    let sb = read_superblock(part)?.ok_or_else(|| wrap(part, ExtError::NoSuperblock))?;
    map(part, &sb).map_err(|e| wrap(part, e))
}
