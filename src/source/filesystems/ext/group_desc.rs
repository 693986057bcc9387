//! ext2/3/4 block group descriptors (32 bytes, or `s_desc_size` with 64bit),
//! in the classic contiguous table or spread over meta block groups.

use super::ExtError;
use super::superblock::{BlockIndex, GroupIndex, Superblock};
use crate::source::device::{ReadAt, read_vec};
use crate::source::filesystems::bytes::{le16, le32};

/// Group's block bitmap is not initialised: compute it from the layout.
pub const BG_BLOCK_UNINIT: u16 = 0x0002;

/// The descriptor fields the used-block map needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupDesc {
    pub block_bitmap: BlockIndex,
    pub inode_bitmap: BlockIndex,
    pub inode_table: BlockIndex,
    pub free_clusters: u32,
    pub flags: u16,
}

impl GroupDesc {
    fn parse(b: &[u8], desc_size: u32) -> Self {
        let wide = desc_size >= 64;
        let lo_hi32 = |lo: usize, hi: usize| {
            let h = if wide { u64::from(le32(b, hi)) } else { 0 };
            u64::from(le32(b, lo)) | (h << 32)
        };
        let hi16 = if wide { u32::from(le16(b, 0x2C)) } else { 0 };
        GroupDesc {
            block_bitmap: BlockIndex(lo_hi32(0x00, 0x20)),
            inode_bitmap: BlockIndex(lo_hi32(0x04, 0x24)),
            inode_table: BlockIndex(lo_hi32(0x08, 0x28)),
            free_clusters: u32::from(le16(b, 0x0C)) | (hi16 << 16),
            flags: le16(b, 0x12),
        }
    }

    pub fn block_uninit(&self) -> bool {
        self.flags & BG_BLOCK_UNINIT != 0
    }
}

/// Block holding descriptor block `nr` (kernel's descriptor_loc): right
/// after the superblock for the classic table, or in the first group of its
/// meta block group (after that group's superblock backup) with meta_bg.
fn descriptor_block(sb: &Superblock, nr: u32) -> BlockIndex {
    let sb_block = sb.superblock_block();
    if !sb.has_meta_bg() || nr < sb.first_meta_bg {
        return BlockIndex(sb_block + u64::from(nr) + 1);
    }
    // nr < gdt_blocks, so nr * descs_per_block < group_count + dpb fits u64.
    let bg = u64::from(nr) * u64::from(sb.descs_per_block());
    let bg = GroupIndex(u32::try_from(bg).unwrap_or(u32::MAX));
    let mut has_super = u64::from(sb.group_has_super(bg));
    if sb.block_size == 1024 && nr == 0 && sb.first_data_block == 0 {
        has_super += 1;
    }
    BlockIndex(sb.group_first_block(bg).0 + has_super)
}

/// Reads every group descriptor, one descriptor block at a time, and checks
/// that each group's bitmaps and inode table lie inside the filesystem and
/// off the superblock.
pub fn read_all(part: &dyn ReadAt, sb: &Superblock) -> Result<Vec<GroupDesc>, ExtError> {
    // group_count is bounded by the device size (blocks_count was checked
    // against it), so this allocation is too.
    let mut out = Vec::with_capacity(sb.group_count as usize);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "validated to be at most 64 KiB"
    )]
    let block_len = sb.block_size as usize;
    let desc_len = sb.desc_size as usize;
    let inode_table_blocks = sb.inode_table_blocks();
    for nr in 0..sb.gdt_blocks() {
        let block = descriptor_block(sb, nr);
        if block.0 >= sb.blocks_count {
            return Err(ExtError::DescriptorBlockOutside {
                nr,
                block,
                blocks_count: sb.blocks_count,
            });
        }
        let offset = block.0 * sb.block_size;
        let buf = read_vec(part, offset, block_len)?;
        for (i, raw) in buf.chunks_exact(desc_len).enumerate() {
            let group = u64::from(nr) * u64::from(sb.descs_per_block()) + i as u64;
            if group >= u64::from(sb.group_count) {
                break;
            }
            #[expect(
                clippy::cast_possible_truncation,
                reason = "group < group_count, a u32"
            )]
            let group = GroupIndex(group as u32);
            let d = GroupDesc::parse(raw, sb.desc_size);
            let desc_offset = offset + (i * desc_len) as u64;
            check(sb, group, desc_offset, &d, inode_table_blocks)?;
            out.push(d);
        }
    }
    Ok(out)
}

fn check(
    sb: &Superblock,
    group: GroupIndex,
    offset: u64,
    d: &GroupDesc,
    inode_table_blocks: u64,
) -> Result<(), ExtError> {
    let group_first = sb.group_first_block(group).0;
    let group_end = group_first + sb.group_blocks(group);
    let bad = |what: &'static str, block: BlockIndex, why: &'static str| ExtError::BadDescriptor {
        group,
        offset,
        what,
        block,
        why,
    };
    for (what, block, len) in [
        ("block bitmap", d.block_bitmap, 1),
        ("inode bitmap", d.inode_bitmap, 1),
        ("inode table", d.inode_table, inode_table_blocks),
    ] {
        if block.0 <= sb.superblock_block() || block.0 < u64::from(sb.first_data_block) {
            return Err(bad(what, block, "overlaps the superblock"));
        }
        match block.0.checked_add(len) {
            Some(end) if end <= sb.blocks_count => {}
            _ => return Err(bad(what, block, "lies past the end of the filesystem")),
        }
        // Without flex_bg a group's metadata must live in the group itself.
        if !sb.has_flex_bg() && !(group_first..group_end).contains(&block.0) {
            return Err(bad(what, block, "lies outside its group (no flex_bg)"));
        }
    }
    if d.free_clusters > sb.clusters_per_group {
        return Err(ExtError::GroupFreeCount {
            group,
            offset,
            free: d.free_clusters,
            per_group: sb.clusters_per_group,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_descriptor_combines_high_halves() {
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(&5u32.to_le_bytes());
        b[0x20..0x24].copy_from_slice(&1u32.to_le_bytes());
        b[0x0C..0x0E].copy_from_slice(&7u16.to_le_bytes());
        b[0x2C..0x2E].copy_from_slice(&1u16.to_le_bytes());
        b[0x12] = 2;
        let d = GroupDesc::parse(&b, 64);
        assert_eq!(d.block_bitmap, BlockIndex((1 << 32) | 5));
        assert_eq!(d.free_clusters, (1 << 16) | 7);
        assert!(d.block_uninit());
        let narrow = GroupDesc::parse(&b, 32);
        assert_eq!(narrow.block_bitmap, BlockIndex(5));
        assert_eq!(narrow.free_clusters, 7);
    }
}
