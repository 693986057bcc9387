//! ext2/3/4 block bitmaps: one block per group, one bit per cluster, turned
//! into the byte extents of the filesystem that are in use.

use super::ExtError;
use super::group_desc::GroupDesc;
use super::superblock::{GroupIndex, Superblock};
use crate::source::device::{ReadAt, read_vec};
use crate::source::extent::ExtentList;

/// Used byte extents of the filesystem, checked against the free count in
/// the superblock. Reads one bitmap block at a time.
pub fn used_map(
    part: &dyn ReadAt,
    sb: &Superblock,
    descs: &[GroupDesc],
) -> Result<ExtentList, ExtError> {
    let bs = sb.block_size;
    let ratio = sb.cluster_ratio();
    let fs_end = sb.blocks_count * bs; // checked against the device size
    #[expect(
        clippy::cast_possible_truncation,
        reason = "validated to be at most 64 KiB"
    )]
    let block_len = bs as usize;
    let trust_uninit = sb.has_group_desc_csum();
    let meta = if trust_uninit && descs.iter().any(GroupDesc::block_uninit) {
        metadata_ranges(sb, descs)
    } else {
        Vec::new()
    };

    let mut extents = ExtentList::new();
    // Blocks before the first group (block 0 of a 1 KiB-block filesystem:
    // the boot block) belong to no bitmap but are not free either.
    extents.push(0, u64::from(sb.first_data_block) * bs);
    let mut free_clusters: u64 = 0;
    for (g, d) in descs.iter().enumerate() {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "one descriptor per group: at most group_count, a u32"
        )]
        let group = GroupIndex(g as u32);
        let first = sb.group_first_block(group).0;
        let nclusters = sb.group_blocks(group).div_ceil(ratio);
        let bitmap = if trust_uninit && d.block_uninit() {
            uninit_bitmap(sb, group, &meta, block_len)
        } else {
            read_vec(part, d.block_bitmap.0 * bs, block_len)?
        };
        let used = walk(&bitmap, nclusters, |from, to| {
            let start = (first + from * ratio) * bs;
            let end = ((first + to * ratio) * bs).min(fs_end);
            extents.push(start, end.saturating_sub(start));
        });
        let free = nclusters - used;
        if free != u64::from(d.free_clusters) {
            log::warn!(
                "{}: ext group {group}: bitmap has {free} free clusters, descriptor says {}",
                part.name().display(),
                d.free_clusters
            );
        }
        free_clusters += free;
    }
    let bitmap_free = free_clusters * ratio;
    if bitmap_free != sb.free_blocks {
        return Err(ExtError::FreeCountMismatch {
            bitmap_free,
            superblock_free: sb.free_blocks,
        });
    }
    Ok(extents)
}

/// Block ranges `[start, end)` of every group's bitmaps and inode table,
/// sorted: with flex_bg they may sit in any group, including an
/// uninitialised one.
fn metadata_ranges(sb: &Superblock, descs: &[GroupDesc]) -> Vec<(u64, u64)> {
    let itable = sb.inode_table_blocks();
    let mut v: Vec<(u64, u64)> = descs
        .iter()
        .flat_map(|d| {
            [
                (d.block_bitmap.0, d.block_bitmap.0 + 1),
                (d.inode_bitmap.0, d.inode_bitmap.0 + 1),
                (d.inode_table.0, d.inode_table.0 + itable),
            ]
        })
        .collect();
    v.sort_unstable();
    v
}

/// The bitmap the kernel would build for a BLOCK_UNINIT group
/// (ext4_init_block_bitmap): superblock backup and descriptor copies at the
/// group's start, plus any group's bitmaps and inode table inside it.
fn uninit_bitmap(
    sb: &Superblock,
    group: GroupIndex,
    meta: &[(u64, u64)],
    block_len: usize,
) -> Vec<u8> {
    let ratio = sb.cluster_ratio();
    let first = sb.group_first_block(group).0;
    let end = first + sb.group_blocks(group);
    let mut bitmap = vec![0u8; block_len];
    let base = sb.group_base_meta_blocks(group).min(end - first);
    set_bits(&mut bitmap, 0, base.div_ceil(ratio));
    // Ranges are sorted by start; one starting before `first` may still
    // reach into the group, but by at most an inode table's length.
    let scan_from = first.saturating_sub(sb.inode_table_blocks());
    let i = meta.partition_point(|&(s, _)| s < scan_from);
    for &(s, e) in meta.get(i..).unwrap_or_default() {
        if s >= end {
            break;
        }
        let (s, e) = (s.max(first), e.min(end));
        if s < e {
            set_bits(
                &mut bitmap,
                (s - first) / ratio,
                (e - first).div_ceil(ratio),
            );
        }
    }
    bitmap
}

fn set_bits(bitmap: &mut [u8], from: u64, to: u64) {
    for bit in from..to {
        if let Some(byte) = bitmap.get_mut((bit / 8) as usize) {
            *byte |= 1 << (bit % 8);
        }
    }
}

/// Calls `on_run(from, to)` for each run of set bits among the first
/// `nbits` of `bitmap`; returns how many bits were set.
fn walk(bitmap: &[u8], nbits: u64, mut on_run: impl FnMut(u64, u64)) -> u64 {
    let mut used = 0;
    let mut run: Option<u64> = None;
    let mut bit = 0u64;
    for &byte in bitmap {
        if bit >= nbits {
            break;
        }
        let take = (nbits - bit).min(8);
        if take == 8 && (byte == 0 || byte == 0xFF) {
            if byte == 0xFF {
                used += 8;
                run.get_or_insert(bit);
            } else if let Some(s) = run.take() {
                on_run(s, bit);
            }
            bit += 8;
            continue;
        }
        for i in 0..take {
            if (byte >> i) & 1 == 1 {
                used += 1;
                run.get_or_insert(bit + i);
            } else if let Some(s) = run.take() {
                on_run(s, bit + i);
            }
        }
        bit += take;
    }
    if let Some(s) = run {
        on_run(s, bit);
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runs(bitmap: &[u8], nbits: u64) -> (Vec<(u64, u64)>, u64) {
        let mut v = Vec::new();
        let used = walk(bitmap, nbits, |a, b| v.push((a, b)));
        (v, used)
    }

    #[test]
    fn walk_finds_runs_and_ignores_padding() {
        assert_eq!(runs(&[0xFF, 0x01, 0x80], 24), (vec![(0, 9), (23, 24)], 10));
        // Bits past nbits (the padding of a short last group) are not counted.
        assert_eq!(runs(&[0x0F, 0xFF], 6), (vec![(0, 4)], 4));
        assert_eq!(runs(&[0xFF, 0xFF], 16), (vec![(0, 16)], 16));
    }

    proptest! {
        #[test]
        fn walk_agrees_with_bit_by_bit(bitmap in proptest::collection::vec(any::<u8>(), 0..64), n in 0u64..600) {
            let (got, used) = runs(&bitmap, n);
            let mut want = Vec::new();
            let mut run = None;
            let limit = n.min(bitmap.len() as u64 * 8);
            for bit in 0..limit {
                let set = bitmap[(bit / 8) as usize] >> (bit % 8) & 1 == 1;
                match (set, run) {
                    (true, None) => run = Some(bit),
                    (false, Some(s)) => { want.push((s, bit)); run = None; }
                    _ => {}
                }
            }
            if let Some(s) = run { want.push((s, limit)); }
            prop_assert_eq!(used, want.iter().map(|(a, b)| b - a).sum::<u64>());
            prop_assert_eq!(got, want);
        }
    }
}
