//! Reading Btrfs B-trees: every block ("node" above level 0, "leaf" at
//! it) starts with a 101-byte header (checksum, fsid, own logical address,
//! generation, owner tree, item count, level). Leaves hold 25-byte item
//! headers (key, data offset and size) growing from the front and item
//! data growing from the back; nodes hold 33-byte key pointers (key,
//! child address, child generation).

use super::BtrfsError;
use super::chunk_map::ChunkMap;
use super::superblock::{Superblock, crc_of};
use crate::source::device::{ReadAt, read_vec};
use crate::source::filesystems::bytes::{bytes, le32, le64, u8_at};

pub const HEADER: usize = 101;
const ITEM: usize = 25;
const KEY_PTR: usize = 33;
/// BTRFS_MAX_LEVEL: a root is at most at level 7.
pub const MAX_LEVEL: u8 = 7;

/// A tree key: items are sorted by (objectid, type, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub objectid: u64,
    pub kind: u8,
    pub offset: u64,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({} {} {})", self.objectid, self.kind, self.offset)
    }
}

impl Key {
    /// The 17-byte on-disk key at `at`.
    pub fn at(b: &[u8], at: usize) -> Key {
        Key {
            objectid: le64(b, at),
            kind: u8_at(b, at.saturating_add(8)),
            offset: le64(b, at.saturating_add(9)),
        }
    }
}

/// The root of a tree: its logical address, level and owner objectid.
#[derive(Debug, Clone, Copy)]
pub struct Root {
    pub logical: u64,
    pub level: u8,
    pub owner: u64,
}

/// One leaf item as the walk hands it out.
pub struct Item<'a> {
    /// Logical address of the leaf holding it, for error messages.
    pub leaf: u64,
    pub slot: usize,
    pub key: Key,
    pub data: &'a [u8],
}

struct Pending {
    logical: u64,
    level: u8,
    generation: Option<u64>,
    low_key: Option<Key>,
}

/// Walks the whole tree under `root`, calling `visit` for every leaf item
/// in key order. Each block is checked (checksum, fsid, own address,
/// owner, level, generation, item bounds) and keys must ascend across the
/// whole walk and match the parent's key, so a block reached twice is an
/// error at once; at most one block per `nodesize` of the device is read.
pub fn walk(
    part: &dyn ReadAt,
    sb: &Superblock,
    chunks: &ChunkMap,
    root: Root,
    mut visit: impl FnMut(&Item<'_>) -> Result<(), BtrfsError>,
) -> Result<(), BtrfsError> {
    if root.level > MAX_LEVEL {
        return Err(BtrfsError::Node {
            logical: root.logical,
            why: format!("root level {} above the maximum {MAX_LEVEL}", root.level),
        });
    }
    let budget = part.size() / u64::from(sb.nodesize) + 1;
    let mut read: u64 = 0;
    let mut last_key: Option<Key> = None;
    let mut stack = vec![Pending {
        logical: root.logical,
        level: root.level,
        generation: None,
        low_key: None,
    }];
    while let Some(p) = stack.pop() {
        read += 1;
        if read > budget {
            return Err(BtrfsError::Node {
                logical: p.logical,
                why: "more tree blocks than the device holds".into(),
            });
        }
        let is_root = read == 1;
        let b = read_block(part, sb, chunks, &p, root.owner)?;
        let bad = |why: String| BtrfsError::Node {
            logical: p.logical,
            why,
        };
        let n = usize::try_from(le32(&b, 0x60)).unwrap_or(usize::MAX);
        let entry = if p.level == 0 { ITEM } else { KEY_PTR };
        let max = (b.len() - HEADER) / entry;
        if n > max {
            return Err(bad(format!("{n} items, a block holds at most {max}")));
        }
        if n == 0 && !is_root {
            return Err(bad("empty block below the root".into()));
        }
        if p.level > 0 && n == 0 {
            return Err(bad("node without keys".into()));
        }
        let mut children = Vec::new();
        for slot in 0..n {
            let at = HEADER + slot * entry;
            let key = Key::at(&b, at);
            if slot == 0 && p.low_key.is_some_and(|k| k != key) {
                return Err(bad(format!(
                    "first key {key}, its parent's key says {}",
                    p.low_key.map_or_else(String::new, |k| k.to_string())
                )));
            }
            if p.level == 0 {
                if last_key.is_some_and(|k| key <= k) {
                    return Err(bad(format!("slot {slot}: key {key} out of order")));
                }
                last_key = Some(key);
                let data = item_data(&b, n, slot).map_err(|w| bad(format!("slot {slot}: {w}")))?;
                visit(&Item {
                    leaf: p.logical,
                    slot,
                    key,
                    data,
                })?;
            } else {
                if children
                    .last()
                    .is_some_and(|c: &Pending| c.low_key.is_some_and(|k| key <= k))
                {
                    return Err(bad(format!("slot {slot}: key {key} out of order")));
                }
                children.push(Pending {
                    logical: le64(&b, at + 17),
                    level: p.level - 1,
                    generation: Some(le64(&b, at + 25)),
                    low_key: Some(key),
                });
            }
        }
        // Popped leftmost first, so leaves come out in key order.
        stack.extend(children.into_iter().rev());
    }
    Ok(())
}

/// The data of leaf item `slot` of `n`: inside the block, after the item
/// headers.
fn item_data(b: &[u8], n: usize, slot: usize) -> Result<&[u8], String> {
    let at = HEADER + slot * ITEM;
    let off = usize::try_from(le32(b, at + 17)).unwrap_or(usize::MAX);
    let size = usize::try_from(le32(b, at + 21)).unwrap_or(usize::MAX);
    let start = HEADER.checked_add(off);
    let end = start.and_then(|s| s.checked_add(size));
    match (start, end) {
        (Some(s), Some(e)) if s >= HEADER + n * ITEM && e <= b.len() => b
            .get(s..e)
            .ok_or_else(|| "item data outside the block".into()),
        _ => Err(format!(
            "item data at {off}+{size} overlaps the item headers or leaves the block"
        )),
    }
}

fn read_block(
    part: &dyn ReadAt,
    sb: &Superblock,
    chunks: &ChunkMap,
    p: &Pending,
    owner: u64,
) -> Result<Vec<u8>, BtrfsError> {
    let bad = |why: String| BtrfsError::Node {
        logical: p.logical,
        why,
    };
    let nodesize = u64::from(sb.nodesize);
    if p.logical % u64::from(sb.sectorsize) != 0 {
        return Err(bad("address not aligned to the sector size".into()));
    }
    let physical = chunks.physical(p.logical, nodesize)?;
    if physical
        .checked_add(nodesize)
        .is_none_or(|end| end > part.size())
    {
        return Err(bad(format!(
            "at byte {physical}, beyond the {}-byte device",
            part.size()
        )));
    }
    // nodesize was validated to be at most 64 KiB.
    let b = read_vec(part, physical, sb.nodesize as usize)?;
    let at = |why: String| bad(format!("at byte {physical}: {why}"));
    let (stored, computed) = crc_of(&b);
    if stored != computed {
        return Err(at(format!(
            "checksum {stored:#010x}, computed {computed:#010x}"
        )));
    }
    if bytes::<16>(&b, 0x20) != sb.metadata_uuid {
        return Err(at("belongs to another filesystem (fsid differs)".into()));
    }
    if le64(&b, 0x30) != p.logical {
        return Err(at(format!("records its address as {}", le64(&b, 0x30))));
    }
    let generation = le64(&b, 0x50);
    if generation > sb.generation || p.generation.is_some_and(|g| g != generation) {
        return Err(at(format!(
            "generation {generation}, its parent says {:?}, the superblock {}",
            p.generation, sb.generation
        )));
    }
    if le64(&b, 0x58) != owner {
        return Err(at(format!(
            "owned by tree {}, expected {owner}",
            le64(&b, 0x58)
        )));
    }
    let level = u8_at(&b, 0x64);
    if level != p.level {
        return Err(at(format!("level {level}, its parent says {}", p.level)));
    }
    Ok(b)
}
