//! The used map of a one-device Btrfs: the first MiB (boot area and
//! primary superblock, never allocated), the superblock mirrors inside the
//! device, and every allocated device extent. Chunks are allocated in
//! 8 MiB..1 GiB pieces and unused space inside them is sent too; what no
//! chunk holds is free to the filesystem and left out.

use super::BtrfsError;
use super::chunk_map::{CHUNK_ITEM_KEY, Chunk, ChunkMap};
use super::dev_extents;
use super::superblock::{self, Superblock};
use super::tree::{self, Root};
use crate::source::device::ReadAt;
use crate::source::extent::ExtentList;
use crate::source::filesystems::bytes::{le64, u8_at};

const ROOT_TREE_OBJECTID: u64 = 1;
const CHUNK_TREE_OBJECTID: u64 = 3;
const DEV_TREE_OBJECTID: u64 = 4;
const FIRST_CHUNK_TREE_OBJECTID: u64 = 256;
const DEV_ITEMS_OBJECTID: u64 = 1;
const DEV_ITEM_KEY: u8 = 216;
const ROOT_ITEM_KEY: u8 = 132;
/// A root item's tree address and level (after its 160-byte inode item,
/// generation and root_dirid).
const ROOT_ITEM_BYTENR: usize = 176;
const ROOT_ITEM_LEVEL: usize = 238;

/// btrfs never allocates the first MiB of a device.
const RESERVED: u64 = 1 << 20;
/// The superblock mirrors (the primary is inside [`RESERVED`]).
pub const MIRRORS: [u64; 2] = [64 << 20, 256 << 30];

/// Byte extents in use, relative to the start of the device.
pub fn used_map(part: &dyn ReadAt, sb: &Superblock) -> Result<ExtentList, BtrfsError> {
    let sys = ChunkMap::from_sys_chunk_array(&sb.sys_chunk_array)?;
    let chunks = read_chunk_tree(part, sb, &sys)?;
    for c in sys.iter() {
        if chunks.get(c.logical) != Some(c) {
            return Err(BtrfsError::Chunk {
                logical: c.logical,
                why: "the superblock's system chunk differs from the chunk tree's".into(),
            });
        }
    }
    let dev_root = find_dev_root(part, sb, &chunks)?;
    let extents = dev_extents::read(part, sb, &chunks, dev_root)?;
    dev_extents::check_against_chunks(&extents, &chunks, sb.devid)?;

    let size = sb.dev_total_bytes;
    let mut pieces: Vec<(u64, u64)> = vec![(0, RESERVED.min(size))];
    pieces.extend(
        MIRRORS
            .iter()
            .filter(|&&m| m + superblock::SIZE as u64 <= size)
            .map(|&m| (m, superblock::SIZE as u64)),
    );
    pieces.extend(extents.iter().map(|e| (e.physical, e.length)));
    pieces.sort_unstable();
    let mut used = ExtentList::new();
    for (offset, len) in pieces {
        used.push(offset, len);
    }
    Ok(used)
}

fn read_chunk_tree(
    part: &dyn ReadAt,
    sb: &Superblock,
    sys: &ChunkMap,
) -> Result<ChunkMap, BtrfsError> {
    let root = Root {
        logical: sb.chunk_root,
        level: sb.chunk_root_level,
        owner: CHUNK_TREE_OBJECTID,
    };
    let mut chunks = ChunkMap::default();
    tree::walk(part, sb, sys, root, |item| match item.key.kind {
        CHUNK_ITEM_KEY => {
            let logical = item.key.offset;
            if item.key.objectid != FIRST_CHUNK_TREE_OBJECTID {
                return Err(BtrfsError::Chunk {
                    logical,
                    why: format!("key objectid {}", item.key.objectid),
                });
            }
            let (c, _) = Chunk::parse(logical, item.data)
                .map_err(|why| BtrfsError::Chunk { logical, why })?;
            chunks.insert(c)
        }
        DEV_ITEM_KEY if item.key.objectid == DEV_ITEMS_OBJECTID && item.key.offset != sb.devid => {
            Err(BtrfsError::MultiDevice {
                num_devices: sb.num_devices,
            })
        }
        _ => Ok(()),
    })?;
    Ok(chunks)
}

/// The device tree's root, from its ROOT_ITEM (key (4, 132, 0)) in the
/// root tree.
fn find_dev_root(
    part: &dyn ReadAt,
    sb: &Superblock,
    chunks: &ChunkMap,
) -> Result<Root, BtrfsError> {
    let root = Root {
        logical: sb.root,
        level: sb.root_level,
        owner: ROOT_TREE_OBJECTID,
    };
    let mut found = None;
    tree::walk(part, sb, chunks, root, |item| {
        if item.key.objectid == DEV_TREE_OBJECTID && item.key.kind == ROOT_ITEM_KEY {
            if item.data.len() <= ROOT_ITEM_LEVEL {
                return Err(BtrfsError::Node {
                    logical: item.leaf,
                    why: format!(
                        "slot {}: device tree root item of {} bytes",
                        item.slot,
                        item.data.len()
                    ),
                });
            }
            found = Some(Root {
                logical: le64(item.data, ROOT_ITEM_BYTENR),
                level: u8_at(item.data, ROOT_ITEM_LEVEL),
                owner: DEV_TREE_OBJECTID,
            });
        }
        Ok(())
    })?;
    found.ok_or(BtrfsError::NoDevTree)
}
