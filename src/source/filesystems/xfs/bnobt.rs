//! The free-space B+tree by block number (bnobt) of one AG: short-form
//! btree blocks, "AB3B" with the 56-byte v5 header (checksum, own address,
//! owner AG, filesystem UUID) or "ABTB" with the 16-byte v4 one. Leaves hold
//! (startblock, blockcount) records, nodes (startblock, blockcount) keys and
//! then, after room for the most keys a block holds, 32-bit AG block
//! pointers.

use super::XfsError;
use super::agf::Agf;
use super::superblock::{AgBlock, AgIndex, Superblock, crc_of};
use crate::source::device::{ReadAt, read_vec};
use crate::source::filesystems::bytes::{be16, be32, be64, bytes, has_magic};

const MAGIC_V4: &[u8; 4] = b"ABTB";
const MAGIC_V5: &[u8; 4] = b"AB3B";
const HEADER_V4: usize = 16;
const HEADER_V5: usize = 56;
const V5_BLKNO: usize = 16;
const V5_UUID: usize = 32;
const V5_OWNER: usize = 48;
const V5_CRC: usize = 52;
const REC_LEN: usize = 8;
const KEY_LEN: usize = 8;
const PTR_LEN: usize = 4;

/// A free extent: `len` blocks from `start`, AG-relative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FreeExtent {
    pub start: u32,
    pub len: u32,
}

impl FreeExtent {
    /// One past the last block; start + len was checked to fit the AG.
    pub fn end(&self) -> u32 {
        self.start.saturating_add(self.len)
    }
}

/// A btree block still to read, with the level its parent says it has and
/// the parent's key for it (the block's first startblock).
struct Pending {
    block: AgBlock,
    level: u32,
    low_key: Option<u32>,
}

/// What a walk of one AG's bnobt found.
#[derive(Debug, Default)]
pub struct FreeSpace {
    /// Sorted and non-overlapping.
    pub extents: Vec<FreeExtent>,
    pub free_blocks: u64,
}

/// Walks the bnobt of `ag` from the AGF's root, checking every block and
/// record; records come out in block order. Work is bounded: levels
/// strictly decrease (at most [`super::agf::MAX_LEVELS`]), at most
/// `agf.length` blocks are read, and records must ascend, so a block
/// reached twice is an error at once.
pub fn read(
    part: &dyn ReadAt,
    sb: &Superblock,
    ag: AgIndex,
    agf: &Agf,
) -> Result<FreeSpace, XfsError> {
    let mut walk = Walk {
        part,
        sb,
        ag,
        ag_blocks: agf.length,
        header: if sb.has_crc() { HEADER_V5 } else { HEADER_V4 },
        out: FreeSpace::default(),
        tree_blocks: Vec::new(),
    };
    let mut stack = vec![Pending {
        // bno_level is 1..=MAX_LEVELS (checked in the AGF).
        block: agf.bno_root,
        level: agf.bno_level - 1,
        low_key: None,
    }];
    while let Some(p) = stack.pop() {
        if walk.tree_blocks.len() >= agf.length as usize {
            return Err(walk.corrupt(p.block, "more btree blocks than the AG has".into()));
        }
        walk.tree_blocks.push(p.block);
        let is_root = walk.tree_blocks.len() == 1;
        let b = walk.block(&p)?;
        if p.level == 0 {
            walk.leaf(&p, &b, is_root)?;
        } else {
            walk.node(&p, &b, &mut stack)?;
        }
    }
    walk.check_tree_blocks_not_free()?;
    Ok(walk.out)
}

fn corrupt(ag: AgIndex, block: AgBlock, why: String) -> XfsError {
    XfsError::Corrupt {
        ag,
        block,
        why: format!("free-space btree: {why}"),
    }
}

struct Walk<'a> {
    part: &'a dyn ReadAt,
    sb: &'a Superblock,
    ag: AgIndex,
    ag_blocks: u32,
    header: usize,
    out: FreeSpace,
    tree_blocks: Vec<AgBlock>,
}

impl Walk<'_> {
    fn corrupt(&self, block: AgBlock, why: String) -> XfsError {
        corrupt(self.ag, block, why)
    }

    /// Whether `agbno` may hold a btree block or start a free extent: past
    /// the AG headers and inside the AG.
    fn in_ag(&self, agbno: u32) -> bool {
        agbno > self.sb.agfl_block().0 && agbno < self.ag_blocks
    }

    /// Reads `p.block` and checks its header; returns the block.
    fn block(&self, p: &Pending) -> Result<Vec<u8>, XfsError> {
        let bad = |why: String| self.corrupt(p.block, why);
        if !self.in_ag(p.block.0) {
            return Err(bad(format!(
                "pointer outside the AG's {} blocks",
                self.ag_blocks
            )));
        }
        let offset = self
            .sb
            .byte_offset(self.ag, p.block)
            .ok_or_else(|| bad("offset overflows".into()))?;
        // block_size was validated to be at most 64 KiB.
        let b = read_vec(self.part, offset, self.sb.block_size as usize)?;
        let magic = if self.sb.has_crc() {
            MAGIC_V5
        } else {
            MAGIC_V4
        };
        if !has_magic(&b, 0, magic) {
            return Err(bad(format!(
                "magic {:#010x}, expected {}",
                be32(&b, 0),
                String::from_utf8_lossy(magic)
            )));
        }
        if self.sb.has_crc() {
            let (stored, computed) = crc_of(&b, V5_CRC);
            if stored != computed {
                return Err(bad(format!(
                    "checksum {stored:#010x}, computed {computed:#010x}"
                )));
            }
            let daddr = self.sb.daddr(self.ag, p.block);
            if Some(be64(&b, V5_BLKNO)) != daddr {
                return Err(bad(format!(
                    "records its address as sector {}, it is at {daddr:?}",
                    be64(&b, V5_BLKNO)
                )));
            }
            if be32(&b, V5_OWNER) != self.ag.0 {
                return Err(bad(format!("owned by AG {}", be32(&b, V5_OWNER))));
            }
            if bytes::<16>(&b, V5_UUID) != self.sb.metadata_uuid() {
                return Err(bad("belongs to another filesystem (UUID differs)".into()));
            }
        }
        let level = u32::from(be16(&b, 4));
        if level != p.level {
            return Err(bad(format!("level {level}, its parent says {}", p.level)));
        }
        Ok(b)
    }

    fn numrecs(&self, b: &[u8], entry_len: usize) -> Result<(usize, usize), String> {
        let max = (b.len() - self.header) / entry_len;
        let n = usize::from(be16(b, 6));
        if n > max {
            return Err(format!("{n} entries, a block holds at most {max}"));
        }
        Ok((n, max))
    }

    fn leaf(&mut self, p: &Pending, b: &[u8], is_root: bool) -> Result<(), XfsError> {
        let (ag, block) = (self.ag, p.block);
        let bad = |why: String| corrupt(ag, block, why);
        let (n, _) = self.numrecs(b, REC_LEN).map_err(bad)?;
        // Only a root leaf may be empty (an AG with no free space).
        if n == 0 && !is_root {
            return Err(bad("empty leaf below the root".into()));
        }
        for i in 0..n {
            let at = self.header + i * REC_LEN;
            let start = be32(b, at);
            let len = be32(b, at + 4);
            let end = start.checked_add(len);
            if len == 0 || !self.in_ag(start) || end.is_none_or(|e| e > self.ag_blocks) {
                return Err(bad(format!(
                    "record {i}: free extent {start}+{len} outside the AG's {} blocks",
                    self.ag_blocks
                )));
            }
            if i == 0 && p.low_key.is_some_and(|k| k != start) {
                return Err(bad(format!(
                    "first record starts at {start}, its parent's key says {:?}",
                    p.low_key
                )));
            }
            if let Some(prev) = self.out.extents.last() {
                if start < prev.end() {
                    return Err(bad(format!(
                        "record {i}: free extent {start}+{len} overlaps or precedes {}+{}",
                        prev.start, prev.len
                    )));
                }
            }
            self.out.extents.push(FreeExtent { start, len });
            self.out.free_blocks += u64::from(len);
        }
        Ok(())
    }

    fn node(&self, p: &Pending, b: &[u8], stack: &mut Vec<Pending>) -> Result<(), XfsError> {
        let bad = |why: String| self.corrupt(p.block, why);
        let (n, max) = self.numrecs(b, KEY_LEN + PTR_LEN).map_err(bad)?;
        if n == 0 {
            return Err(bad("node without keys".into()));
        }
        let ptrs = self.header + max * KEY_LEN;
        let mut children = Vec::with_capacity(n);
        let mut prev_key: Option<u32> = None;
        for i in 0..n {
            let key = be32(b, self.header + i * KEY_LEN);
            let ptr = be32(b, ptrs + i * PTR_LEN);
            if i == 0 && p.low_key.is_some_and(|k| k != key) {
                return Err(bad(format!(
                    "first key {key}, its parent's key says {:?}",
                    p.low_key
                )));
            }
            if prev_key.is_some_and(|k| key <= k) {
                return Err(bad(format!("key {i} ({key}) out of order")));
            }
            prev_key = Some(key);
            children.push(Pending {
                block: AgBlock(ptr),
                level: p.level - 1,
                low_key: Some(key),
            });
        }
        // Popped in order: leftmost child first, so records come out sorted.
        stack.extend(children.into_iter().rev());
        Ok(())
    }

    /// A btree block inside a free extent would be left out of the copy,
    /// and the copy's free-space tree with it.
    fn check_tree_blocks_not_free(&self) -> Result<(), XfsError> {
        let free = &self.out.extents;
        for &blk in &self.tree_blocks {
            let i = free.partition_point(|e| e.end() <= blk.0);
            if free.get(i).is_some_and(|e| e.start <= blk.0) {
                return Err(self.corrupt(blk, "btree block lies in a free extent".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::filesystems::xfs::superblock::SB_READ;
    use crate::source::filesystems::xfs::{agf, test_image};

    fn walk(img: Vec<u8>, ag: u32) -> Result<FreeSpace, XfsError> {
        let sb = Superblock::parse(&img[..SB_READ]).unwrap().unwrap();
        let disk = MemDisk::new(img);
        let agf = agf::read(&disk, &sb, AgIndex(ag))?;
        read(&disk, &sb, AgIndex(ag), &agf)
    }

    #[test]
    fn tiny_image_leaf_root() {
        let fs = walk(test_image::tiny_v4(), 1).unwrap();
        assert_eq!(
            fs.extents,
            test_image::FREE_AG1
                .iter()
                .map(|&(start, len)| FreeExtent { start, len })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn two_level_tree_is_walked_in_order() {
        let img = test_image::tiny_v4_two_level();
        let fs = walk(img, 1).unwrap();
        let want: Vec<(u32, u32)> = fs.extents.iter().map(|e| (e.start, e.len)).collect();
        assert_eq!(want, test_image::FREE_AG1);
    }

    fn record(img: &mut [u8], i: usize, start: u32, len: u32) {
        let at = test_image::bno_root_offset(1) + HEADER_V4 + i * REC_LEN;
        img[at..at + 4].copy_from_slice(&start.to_be_bytes());
        img[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
    }

    #[test]
    fn bad_records_name_the_ag_and_block() {
        let cases: &[(u32, u32, &str)] = &[
            (0, 3, "outside the AG"),
            (10, 0, "outside the AG"),
            (test_image::AGBLOCKS - 2, 3, "outside the AG"),
            (u32::MAX, 2, "outside the AG"),
            (2, 1, "overlaps or precedes"),
            (test_image::BNO_ROOT, 1, "btree block lies in a free extent"),
        ];
        for &(start, len, want) in cases {
            let mut img = test_image::tiny_v4();
            // The last record, so "precedes" and "tree block" reach it.
            let last = test_image::FREE_AG1.len() - 1;
            record(&mut img, last, start, len);
            if want.starts_with("btree") {
                // Keep records sorted: the root block goes first.
                record(&mut img, 0, start, len);
                record(&mut img, last, 150, 1);
            }
            let e = walk(img, 1).unwrap_err();
            let s = e.to_string();
            assert!(
                s.contains(want)
                    && s.starts_with("AG 1, block ")
                    && s.contains("free-space btree: "),
                "{start}+{len}: {s}"
            );
        }
    }

    #[test]
    fn bad_headers_are_corrupt() {
        let root = test_image::bno_root_offset(1);
        let cases: &[(usize, &[u8], &str)] = &[
            (0, b"ABTC", "magic"),
            (4, &[0, 1], "level 1, its parent says 0"),
            (6, &[0xff, 0xff], "entries, a block holds at most"),
        ];
        for &(field, value, want) in cases {
            let mut img = test_image::tiny_v4();
            img[root + field..root + field + value.len()].copy_from_slice(value);
            let s = walk(img, 1).unwrap_err().to_string();
            assert!(s.contains(want), "{s}");
        }
    }

    #[test]
    fn a_node_pointing_at_itself_ends() {
        let mut img = test_image::tiny_v4_two_level();
        let node = test_image::bno_root_offset(1);
        let max = (test_image::BS as usize - HEADER_V4) / (KEY_LEN + PTR_LEN);
        let ptrs = node + HEADER_V4 + max * KEY_LEN;
        img[ptrs..ptrs + 4].copy_from_slice(&test_image::BNO_ROOT.to_be_bytes());
        let s = walk(img, 1).unwrap_err().to_string();
        assert!(s.contains("level 1, its parent says 0"), "{s}");
    }

    #[test]
    fn two_pointers_to_one_leaf_are_caught() {
        let mut img = test_image::tiny_v4_two_level();
        let node = test_image::bno_root_offset(1);
        let max = (test_image::BS as usize - HEADER_V4) / (KEY_LEN + PTR_LEN);
        let ptrs = node + HEADER_V4 + max * KEY_LEN;
        let first: [u8; 4] = img[ptrs..ptrs + 4].try_into().unwrap();
        img[ptrs + 4..ptrs + 8].copy_from_slice(&first);
        let s = walk(img, 1).unwrap_err().to_string();
        assert!(s.contains("its parent's key says"), "{s}");
    }
}
