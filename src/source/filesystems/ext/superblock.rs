//! The ext2/3/4 superblock: 1024 bytes at byte 1024 of the filesystem.

use super::ExtError;
use super::features::*;
use crate::source::filesystems::FsKind;
use crate::source::filesystems::bytes::{bytes, label_string, le16, le32, uuid_string};

/// Byte offset of the primary superblock.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;

const STATE_VALID: u16 = 0x0001;
const STATE_ERROR: u16 = 0x0002;

/// Largest block size the kernel mounts (64 KiB, log 6 over 1 KiB).
const MAX_LOG_BLOCK_SIZE: u32 = 6;
/// Largest cluster size the kernel accepts with bigalloc (2^30 bytes).
const MAX_LOG_CLUSTER_SIZE: u32 = 20;
/// mke2fs refuses fewer blocks per group; a smaller value is garbage and
/// would inflate the group count.
const MIN_BLOCKS_PER_GROUP: u32 = 256;
/// Groups p2xen will map: 2^22 groups is 512 TiB with 4 KiB blocks. The
/// descriptors kept in memory cost about 80 bytes a group.
const MAX_GROUPS: u32 = 1 << 22;

/// A block number, in filesystem blocks from the start of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockIndex(pub u64);

/// A block group number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupIndex(pub u32);

impl std::fmt::Display for BlockIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for GroupIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The superblock fields p2xen uses, validated against each other and
/// against the size of the partition holding them.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub free_blocks: u64,
    pub free_inodes: u32,
    pub first_data_block: u32,
    pub block_size: u64,
    /// Equal to `block_size` unless bigalloc.
    pub cluster_size: u64,
    pub blocks_per_group: u32,
    pub clusters_per_group: u32,
    pub inodes_per_group: u32,
    pub inode_size: u32,
    pub state: u16,
    pub error_count: u32,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub uuid: [u8; 16],
    pub volume_name: [u8; 16],
    pub reserved_gdt_blocks: u32,
    /// Effective descriptor size: 32, or `s_desc_size` with 64bit.
    pub desc_size: u32,
    pub first_meta_bg: u32,
    pub backup_bgs: [u32; 2],
    pub group_count: u32,
}

impl Superblock {
    /// Parses a raw superblock; `Ok(None)` if the ext magic is absent.
    /// `device_size` bounds the filesystem size it may claim.
    pub fn parse(b: &[u8], device_size: u64) -> Result<Option<Self>, ExtError> {
        if le16(b, 56) != MAGIC {
            return Ok(None);
        }
        let log_block = le32(b, 24);
        if log_block > MAX_LOG_BLOCK_SIZE {
            return Err(ExtError::BlockSize { log: log_block });
        }
        let block_size = 1024u64 << log_block;
        let ro_compat = le32(b, 100);
        let incompat = le32(b, 96);
        let bigalloc = ro_compat & RO_COMPAT_BIGALLOC != 0;
        let cluster_size = if bigalloc {
            let log_cluster = le32(b, 28);
            if log_cluster < log_block || log_cluster > MAX_LOG_CLUSTER_SIZE {
                return Err(ExtError::ClusterSize {
                    log_cluster,
                    log_block,
                });
            }
            1024u64 << log_cluster
        } else {
            block_size
        };
        let ratio = cluster_size / block_size;
        let bits_per_bitmap = block_size * 8;

        let blocks_hi = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le32(b, 336))
        } else {
            0
        };
        let free_hi = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le32(b, 344))
        } else {
            0
        };
        let blocks_count = u64::from(le32(b, 4)) | (blocks_hi << 32);
        let free_blocks = u64::from(le32(b, 12)) | (free_hi << 32);
        let first_data_block = le32(b, 20);
        let blocks_per_group = le32(b, 32);
        let clusters_per_group = if bigalloc {
            le32(b, 36)
        } else {
            blocks_per_group
        };
        let inodes_per_group = le32(b, 40);
        let inodes_count = le32(b, 0);

        if clusters_per_group == 0
            || blocks_per_group < MIN_BLOCKS_PER_GROUP
            || u64::from(clusters_per_group) > bits_per_bitmap
            || u64::from(clusters_per_group).checked_mul(ratio) != Some(u64::from(blocks_per_group))
        {
            return Err(ExtError::BlocksPerGroup {
                blocks_per_group,
                clusters_per_group,
                block_size,
            });
        }
        if inodes_per_group == 0 || u64::from(inodes_per_group) > bits_per_bitmap {
            return Err(ExtError::InodesPerGroup {
                inodes_per_group,
                block_size,
            });
        }
        // mke2fs puts block 0 in the first group unless blocks are 1 KiB
        // (without bigalloc), where the superblock's block 1 starts it.
        let expected_first = u32::from(block_size == 1024 && !bigalloc);
        if first_data_block != expected_first {
            return Err(ExtError::FirstDataBlock {
                first_data_block,
                expected: expected_first,
            });
        }
        if blocks_count <= u64::from(first_data_block) {
            return Err(ExtError::BlocksCount { blocks_count });
        }
        let fs_bytes = blocks_count.checked_mul(block_size);
        match fs_bytes {
            Some(n) if n <= device_size => {}
            _ => {
                return Err(ExtError::BeyondDevice {
                    blocks_count,
                    block_size,
                    device_size,
                });
            }
        }
        if free_blocks > blocks_count {
            return Err(ExtError::FreeBeyondCount {
                free_blocks,
                blocks_count,
            });
        }
        // blocks_count > first_data_block and blocks_per_group > 0 (checked).
        let group_count_u64 =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let group_count = u32::try_from(group_count_u64)
            .ok()
            .filter(|&g| g <= MAX_GROUPS)
            .ok_or(ExtError::TooManyGroups {
                groups: group_count_u64,
                max: MAX_GROUPS,
            })?;
        if u64::from(inodes_per_group).checked_mul(group_count_u64) != Some(u64::from(inodes_count))
        {
            return Err(ExtError::InodesCount {
                inodes_count,
                inodes_per_group,
                group_count,
            });
        }

        let rev_level = le32(b, 76);
        let inode_size = if rev_level == 0 {
            128
        } else {
            u32::from(le16(b, 88))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || u64::from(inode_size) > block_size {
            return Err(ExtError::InodeSize { inode_size });
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            let d = u32::from(le16(b, 254));
            if !(64..=1024).contains(&d) || !d.is_power_of_two() {
                return Err(ExtError::DescSize { desc_size: d });
            }
            d
        } else {
            32
        };
        let reserved_gdt_blocks = u32::from(le16(b, 206));
        if u64::from(reserved_gdt_blocks) > block_size / 4 {
            return Err(ExtError::ReservedGdt {
                reserved_gdt_blocks,
            });
        }

        let first_meta_bg = le32(b, 260);
        let sb = Superblock {
            inodes_count,
            blocks_count,
            free_blocks,
            free_inodes: le32(b, 16),
            first_data_block,
            block_size,
            cluster_size,
            blocks_per_group,
            clusters_per_group,
            inodes_per_group,
            inode_size,
            state: le16(b, 58),
            error_count: le32(b, 404),
            compat: le32(b, 92),
            incompat,
            ro_compat,
            uuid: bytes(b, 104),
            volume_name: bytes(b, 120),
            reserved_gdt_blocks,
            desc_size,
            first_meta_bg,
            backup_bgs: [le32(b, 588), le32(b, 592)],
            group_count,
        };
        if sb.has_meta_bg() && first_meta_bg > sb.gdt_blocks() {
            return Err(ExtError::FirstMetaBg {
                first_meta_bg,
                gdt_blocks: sb.gdt_blocks(),
            });
        }
        Ok(Some(sb))
    }

    /// ext2, ext3 or ext4 as blkid decides: a journal makes ext3, any
    /// feature ext3 does not know makes ext4. `None` for an external
    /// journal device, which holds no filesystem.
    pub fn kind(&self) -> Option<FsKind> {
        if self.incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return None;
        }
        if self.ro_compat & !EXT3_RO_COMPAT_SUPP != 0 || self.incompat & !EXT3_INCOMPAT_SUPP != 0 {
            Some(FsKind::Ext4)
        } else if self.compat & COMPAT_HAS_JOURNAL != 0 {
            Some(FsKind::Ext3)
        } else {
            Some(FsKind::Ext2)
        }
    }

    /// "errors" if the kernel recorded any, "needs_recovery" if the journal
    /// must be replayed, "not_clean" if it was not unmounted cleanly.
    pub fn state_name(&self) -> &'static str {
        if self.state & STATE_ERROR != 0 || self.error_count > 0 {
            "errors"
        } else if self.incompat & INCOMPAT_RECOVER != 0 {
            "needs_recovery"
        } else if self.state & STATE_VALID == 0 {
            "not_clean"
        } else {
            "clean"
        }
    }

    pub fn label(&self) -> Option<String> {
        label_string(&self.volume_name)
    }

    pub fn uuid_string(&self) -> Option<String> {
        uuid_string(&self.uuid)
    }

    pub fn features(&self) -> Vec<String> {
        names(self.compat, self.incompat, self.ro_compat)
    }

    pub fn has_meta_bg(&self) -> bool {
        self.incompat & INCOMPAT_META_BG != 0
    }

    pub fn has_flex_bg(&self) -> bool {
        self.incompat & INCOMPAT_FLEX_BG != 0
    }

    /// Whether BLOCK_UNINIT flags are trusted: only with descriptor checksums.
    pub fn has_group_desc_csum(&self) -> bool {
        self.ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0
    }

    /// Blocks of one group's inode table.
    pub fn inode_table_blocks(&self) -> u64 {
        (u64::from(self.inodes_per_group) * u64::from(self.inode_size)).div_ceil(self.block_size)
    }

    /// Blocks per cluster (1 without bigalloc).
    pub fn cluster_ratio(&self) -> u64 {
        self.cluster_size / self.block_size
    }

    /// Group descriptors per descriptor block.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "block_size <= 64 KiB and desc_size >= 32"
    )]
    pub fn descs_per_block(&self) -> u32 {
        (self.block_size / u64::from(self.desc_size)) as u32
    }

    /// Descriptor blocks holding all group descriptors.
    pub fn gdt_blocks(&self) -> u32 {
        self.group_count.div_ceil(self.descs_per_block())
    }

    /// Block number holding the primary superblock (1 for 1 KiB blocks).
    pub fn superblock_block(&self) -> u64 {
        SUPERBLOCK_OFFSET / self.block_size
    }

    /// First block of `group`.
    pub fn group_first_block(&self, group: GroupIndex) -> BlockIndex {
        // group < group_count, so this is < blocks_count (checked above).
        BlockIndex(
            u64::from(group.0) * u64::from(self.blocks_per_group)
                + u64::from(self.first_data_block),
        )
    }

    /// Blocks of `group` (the last group is usually shorter).
    pub fn group_blocks(&self, group: GroupIndex) -> u64 {
        let first = self.group_first_block(group).0;
        (self.blocks_count - first).min(u64::from(self.blocks_per_group))
    }

    /// Whether `group` holds a superblock backup (kernel's ext4_bg_has_super).
    pub fn group_has_super(&self, group: GroupIndex) -> bool {
        let g = group.0;
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if g <= 1 || self.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        if g & 1 == 0 {
            return false;
        }
        is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
    }

    /// Blocks at the start of `group` taken by the superblock backup and
    /// group descriptor copies (kernel's ext4_num_base_meta_blocks).
    pub fn group_base_meta_blocks(&self, group: GroupIndex) -> u64 {
        let has_super = u64::from(self.group_has_super(group));
        let dpb = self.descs_per_block();
        let meta_bg_start = u64::from(self.first_meta_bg) * u64::from(dpb);
        if !self.has_meta_bg() || u64::from(group.0) < meta_bg_start {
            if has_super == 0 {
                return 0;
            }
            let gdt = if self.has_meta_bg() {
                u64::from(self.first_meta_bg)
            } else {
                u64::from(self.gdt_blocks())
            };
            has_super + gdt + u64::from(self.reserved_gdt_blocks)
        } else {
            let first = group.0 - group.0 % dpb;
            let last = first.saturating_add(dpb - 1);
            let holds_desc = group.0 == first || group.0 == first + 1 || group.0 == last;
            has_super + u64::from(holds_desc)
        }
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n % base == 0 {
        n /= base;
    }
    n == 1
}

/// A minimal valid superblock (1 KiB blocks, one group of 1024 blocks, ext2).
#[cfg(test)]
pub(crate) fn fields_for_tests(b: &mut [u8]) {
    let put = |b: &mut [u8], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(b, 0, &16u32.to_le_bytes()); // inodes
    put(b, 4, &1024u32.to_le_bytes()); // blocks
    put(b, 12, &900u32.to_le_bytes()); // free blocks
    put(b, 20, &1u32.to_le_bytes()); // first data block
    put(b, 32, &8192u32.to_le_bytes()); // blocks per group
    put(b, 36, &8192u32.to_le_bytes());
    put(b, 40, &16u32.to_le_bytes()); // inodes per group
    put(b, 56, &MAGIC.to_le_bytes());
    put(b, 58, &STATE_VALID.to_le_bytes());
    put(b, 76, &1u32.to_le_bytes());
    put(b, 88, &128u16.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb() -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        fields_for_tests(&mut b);
        b
    }

    #[test]
    fn minimal_superblock_parses() {
        let s = Superblock::parse(&sb(), 1 << 20).unwrap().unwrap();
        assert_eq!(s.block_size, 1024);
        assert_eq!(s.group_count, 1);
        assert_eq!(s.kind(), Some(FsKind::Ext2));
        assert_eq!(s.state_name(), "clean");
        assert_eq!(s.group_base_meta_blocks(GroupIndex(0)), 2);
    }

    #[test]
    fn absurd_values_are_named() {
        let mut b = sb();
        b[24] = 7;
        let e = Superblock::parse(&b, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("block size 2^(10+7)"), "{e}");

        let e = Superblock::parse(&sb(), 1000 * 1024).unwrap_err();
        assert!(e.to_string().contains("1024 blocks of 1024 bytes"), "{e}");
    }

    #[test]
    fn group_count_is_bounded() {
        let mut b = sb();
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        b[32..36].copy_from_slice(&256u32.to_le_bytes());
        b[36..40].copy_from_slice(&256u32.to_le_bytes());
        let e = Superblock::parse(&b, u64::MAX).unwrap_err();
        assert!(
            e.to_string()
                .contains("16777216 block groups, more than p2xen maps"),
            "{e}"
        );
        b[32..36].copy_from_slice(&8u32.to_le_bytes());
        b[36..40].copy_from_slice(&8u32.to_le_bytes());
        let e = Superblock::parse(&b, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("absurd group size: 8 blocks"), "{e}");
    }

    #[test]
    fn sparse_super_groups() {
        let mut b = sb();
        b[100] = 1; // sparse_super
        let s = Superblock::parse(&b, 1 << 20).unwrap().unwrap();
        let with: Vec<u32> = (0..60)
            .filter(|&g| s.group_has_super(GroupIndex(g)))
            .collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }
}
