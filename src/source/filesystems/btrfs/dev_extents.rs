//! The device tree: one DEV_EXTENT item (key (devid, 204, physical
//! start)) per stripe of every chunk, saying which bytes of the device are
//! allocated. It must agree, stripe for stripe, with the chunk tree.

use super::BtrfsError;
use super::chunk_map::ChunkMap;
use super::superblock::Superblock;
use super::tree::{self, Root};
use crate::source::device::ReadAt;
use crate::source::filesystems::bytes::le64;

pub const DEV_EXTENT_KEY: u8 = 204;
const DEV_EXTENT_SIZE: usize = 48;

/// An allocated range of this device and the chunk it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevExtent {
    pub physical: u64,
    pub length: u64,
    pub chunk_offset: u64,
}

/// The dev extents of `sb.devid`, in ascending, non-overlapping order,
/// inside the device.
pub fn read(
    part: &dyn ReadAt,
    sb: &Superblock,
    chunks: &ChunkMap,
    root: Root,
) -> Result<Vec<DevExtent>, BtrfsError> {
    let mut out: Vec<DevExtent> = Vec::new();
    tree::walk(part, sb, chunks, root, |item| {
        if item.key.kind != DEV_EXTENT_KEY {
            return Ok(());
        }
        let physical = item.key.offset;
        let bad = |why: String| BtrfsError::DevExtent { physical, why };
        if item.key.objectid != sb.devid {
            return Err(bad(format!(
                "belongs to device {}, this is device {}",
                item.key.objectid, sb.devid
            )));
        }
        if item.data.len() < DEV_EXTENT_SIZE {
            return Err(bad(format!(
                "item of {} bytes (leaf {}, slot {})",
                item.data.len(),
                item.leaf,
                item.slot
            )));
        }
        let e = DevExtent {
            physical,
            length: le64(item.data, 24),
            chunk_offset: le64(item.data, 16),
        };
        let end = physical.checked_add(e.length);
        if e.length == 0 || end.is_none_or(|end| end > sb.dev_total_bytes) {
            return Err(bad(format!(
                "length {} leaves the device's {} bytes",
                e.length, sb.dev_total_bytes
            )));
        }
        if let Some(prev) = out.last() {
            // Keys ascend (checked by the walk); extents must not overlap.
            if physical < prev.physical + prev.length {
                return Err(bad(format!(
                    "overlaps the extent at {} of length {}",
                    prev.physical, prev.length
                )));
            }
        }
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// Every stripe the chunk tree places on this device must be a dev extent
/// of the stripe's length pointing back at its chunk, and nothing else
/// may be: a stripe missing from the device tree would be left out of the
/// copy.
pub fn check_against_chunks(
    extents: &[DevExtent],
    chunks: &ChunkMap,
    devid: u64,
) -> Result<(), BtrfsError> {
    let mut want = Vec::new();
    for c in chunks.iter() {
        for s in &c.stripes {
            if s.devid != devid {
                return Err(BtrfsError::Chunk {
                    logical: c.logical,
                    why: format!(
                        "has a stripe on device {}, this is device {devid} of a one-device filesystem",
                        s.devid
                    ),
                });
            }
            want.push(DevExtent {
                physical: s.offset,
                length: c.stripe_bytes,
                chunk_offset: c.logical,
            });
        }
    }
    want.sort_unstable();
    for (i, w) in want.iter().enumerate() {
        match extents.get(i) {
            Some(e) if e == w => {}
            Some(e) if e.physical <= w.physical => {
                return Err(BtrfsError::DevExtent {
                    physical: e.physical,
                    why: format!(
                        "length {} for chunk {}, the chunk tree says length {} for chunk {} at {}",
                        e.length, e.chunk_offset, w.length, w.chunk_offset, w.physical
                    ),
                });
            }
            _ => {
                return Err(BtrfsError::DevExtent {
                    physical: w.physical,
                    why: format!(
                        "missing from the device tree: chunk {} has a {}-byte stripe here",
                        w.chunk_offset, w.length
                    ),
                });
            }
        }
    }
    if let Some(e) = extents.get(want.len()) {
        return Err(BtrfsError::DevExtent {
            physical: e.physical,
            why: format!(
                "no chunk has a stripe here (it names chunk {})",
                e.chunk_offset
            ),
        });
    }
    Ok(())
}
