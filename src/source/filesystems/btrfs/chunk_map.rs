//! Chunks: the logical address ranges of the filesystem and the device
//! ranges ("stripes") that hold them. The superblock's sys_chunk_array
//! carries the SYSTEM chunks, enough to read the chunk tree, which holds
//! them all (CHUNK_ITEM, key (256, 228, logical start)).

use std::collections::BTreeMap;

use super::BtrfsError;
use super::tree::Key;
use crate::source::filesystems::bytes::{le16, le64};

pub const CHUNK_ITEM_KEY: u8 = 228;
const KEY_LEN: usize = 17;
const CHUNK_FIXED: usize = 48;
const STRIPE_LEN: usize = 32;

// Block group profile bits in the chunk type.
const RAID0: u64 = 1 << 3;
const RAID1: u64 = 1 << 4;
const DUP: u64 = 1 << 5;
const RAID10: u64 = 1 << 6;
const RAID5: u64 = 1 << 7;
const RAID6: u64 = 1 << 8;
const RAID1C3: u64 = 1 << 9;
const RAID1C4: u64 = 1 << 10;
const PROFILES: u64 = RAID0 | RAID1 | DUP | RAID10 | RAID5 | RAID6 | RAID1C3 | RAID1C4;

/// One device range of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripe {
    pub devid: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub logical: u64,
    pub length: u64,
    pub chunk_type: u64,
    pub stripes: Vec<Stripe>,
    /// Bytes each stripe occupies on its device (the DEV_EXTENT length).
    pub stripe_bytes: u64,
}

impl Chunk {
    /// Parses a chunk item whose key says it starts at `logical`. The
    /// length on each device follows from the profile: whole for
    /// single/DUP/RAID1*, a share for the striped ones.
    pub fn parse(logical: u64, b: &[u8]) -> Result<(Chunk, usize), String> {
        let length = le64(b, 0);
        let chunk_type = le64(b, 24);
        let num_stripes = le16(b, 44);
        let sub_stripes = le16(b, 46);
        let n = usize::from(num_stripes);
        let size = CHUNK_FIXED + n * STRIPE_LEN;
        if b.len() < size {
            return Err(format!(
                "chunk item of {} bytes, {num_stripes} stripes need {size}",
                b.len()
            ));
        }
        if length == 0 || num_stripes == 0 || logical.checked_add(length).is_none() {
            return Err(format!(
                "chunk at logical {logical}: length {length} with {num_stripes} stripes"
            ));
        }
        let n64 = u64::from(num_stripes);
        let data_stripes = match chunk_type & PROFILES {
            0 | RAID1 | DUP | RAID1C3 | RAID1C4 => Some(1),
            RAID0 => Some(n64),
            RAID10 => (sub_stripes != 0)
                .then(|| n64 / u64::from(sub_stripes))
                .filter(|&d| d > 0),
            RAID5 => n64.checked_sub(1).filter(|&d| d > 0),
            RAID6 => n64.checked_sub(2).filter(|&d| d > 0),
            _ => None,
        };
        let stripe_bytes = data_stripes
            .filter(|&d| length % d == 0)
            .map(|d| length / d)
            .ok_or_else(|| {
                format!(
                    "chunk at logical {logical}: type {chunk_type:#x} with {num_stripes} stripes ({sub_stripes} sub-stripes) does not divide its length {length}"
                )
            })?;
        let stripes = (0..n)
            .map(|i| Stripe {
                devid: le64(b, CHUNK_FIXED + i * STRIPE_LEN),
                offset: le64(b, CHUNK_FIXED + i * STRIPE_LEN + 8),
            })
            .collect();
        Ok((
            Chunk {
                logical,
                length,
                chunk_type,
                stripes,
                stripe_bytes,
            },
            size,
        ))
    }

    /// Whether every stripe holds the whole chunk, so one stripe can be
    /// read as is.
    fn is_mirrored(&self) -> bool {
        self.stripes.len() == 1 || self.chunk_type & (RAID0 | RAID10 | RAID5 | RAID6) == 0
    }
}

/// Chunks by logical start, non-overlapping.
#[derive(Debug, Default, Clone)]
pub struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
}

impl ChunkMap {
    pub fn insert(&mut self, c: Chunk) -> Result<(), BtrfsError> {
        // logical + length was checked not to overflow in Chunk::parse.
        let end = c.logical + c.length;
        let prev = self.chunks.range(..=c.logical).next_back();
        let next = self.chunks.range(c.logical..).next();
        for other in prev.into_iter().chain(next).map(|(_, o)| o) {
            if other.logical < end && c.logical < other.logical + other.length {
                return Err(BtrfsError::Chunk {
                    logical: c.logical,
                    why: format!(
                        "length {} overlaps the chunk at {} of length {}",
                        c.length, other.logical, other.length
                    ),
                });
            }
        }
        self.chunks.insert(c.logical, c);
        Ok(())
    }

    pub fn get(&self, logical: u64) -> Option<&Chunk> {
        self.chunks
            .range(..=logical)
            .next_back()
            .map(|(_, c)| c)
            .filter(|c| logical - c.logical < c.length)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.values()
    }

    /// The device byte holding `logical`, with `len` bytes after it in the
    /// same chunk. Only mirrored (or one-stripe) chunks are read: metadata
    /// on a single device is single or DUP.
    pub fn physical(&self, logical: u64, len: u64) -> Result<u64, BtrfsError> {
        let c = self.get(logical).ok_or(BtrfsError::Unmapped { logical })?;
        let within = logical - c.logical;
        if within.checked_add(len).is_none_or(|e| e > c.length) {
            return Err(BtrfsError::Unmapped { logical });
        }
        if !c.is_mirrored() {
            return Err(BtrfsError::Profile {
                logical,
                chunk_type: c.chunk_type,
            });
        }
        c.stripes
            .first()
            .and_then(|s| s.offset.checked_add(within))
            .ok_or(BtrfsError::Unmapped { logical })
    }

    /// The superblock's sys_chunk_array: (key, chunk item) pairs.
    pub fn from_sys_chunk_array(array: &[u8]) -> Result<ChunkMap, BtrfsError> {
        let mut map = ChunkMap::default();
        let mut at = 0;
        while at < array.len() {
            let bad = |why: String| BtrfsError::SysChunkArray { at, why };
            let key = array
                .get(at..at + KEY_LEN)
                .map(|k| Key::at(k, 0))
                .ok_or_else(|| bad("key cut short".into()))?;
            if key.kind != CHUNK_ITEM_KEY {
                return Err(bad(format!("key {key} is not a chunk item")));
            }
            let rest = array.get(at + KEY_LEN..).unwrap_or_default();
            let (chunk, size) = Chunk::parse(key.offset, rest).map_err(bad)?;
            map.insert(chunk)?;
            at += KEY_LEN + size;
        }
        if map.chunks.is_empty() {
            return Err(BtrfsError::SysChunkArray {
                at: 0,
                why: "no system chunk".into(),
            });
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::filesystems::btrfs::test_image::chunk_item;

    const MIB: u64 = 1 << 20;

    fn with_stripes(len: u64, kind: u64, stripes: &[(u64, u64)], sub: u16) -> Vec<u8> {
        let mut c = chunk_item(len, kind, 0);
        c.truncate(48);
        c[44..46].copy_from_slice(&u16::try_from(stripes.len()).unwrap().to_le_bytes());
        c[46..48].copy_from_slice(&sub.to_le_bytes());
        for &(dev, off) in stripes {
            c.extend(dev.to_le_bytes());
            c.extend(off.to_le_bytes());
            c.extend([0; 16]);
        }
        c
    }

    #[test]
    fn stripe_bytes_follow_the_profile() {
        // (type, stripes (devid, offset), sub-stripes, bytes per stripe)
        type Case = (u64, &'static [(u64, u64)], u16, u64);
        let cases: &[Case] = &[
            (4 | DUP, &[(1, 10 * MIB), (1, 40 * MIB)], 1, 32 * MIB),
            (1 | RAID0, &[(1, 0), (1, 0)], 1, 16 * MIB),
            (1 | RAID10, &[(1, 0), (1, 0), (1, 0), (1, 0)], 2, 16 * MIB),
            (1 | RAID5, &[(1, 0), (1, 0), (1, 0)], 1, 16 * MIB),
            (1 | RAID6, &[(1, 0), (1, 0), (1, 0)], 1, 32 * MIB),
        ];
        for &(kind, stripes, sub, want) in cases {
            let (c, size) = Chunk::parse(MIB, &with_stripes(32 * MIB, kind, stripes, sub)).unwrap();
            assert_eq!(
                (c.stripe_bytes, size),
                (want, 48 + 32 * stripes.len()),
                "{kind:#x}"
            );
        }
        let e = Chunk::parse(
            MIB,
            &with_stripes(32 * MIB, 1 | RAID6, &[(1, 0), (1, 0)], 1),
        );
        assert!(e.unwrap_err().contains("does not divide"));
        let mut short = with_stripes(32 * MIB, 1, &[(1, 0)], 1);
        short.truncate(70);
        assert!(Chunk::parse(MIB, &short).unwrap_err().contains("need 80"));
    }

    #[test]
    fn map_refuses_overlaps_and_reads_mirrors_only() {
        let mut m = ChunkMap::default();
        let dup = Chunk::parse(
            8 * MIB,
            &with_stripes(8 * MIB, 4 | DUP, &[(1, 20 * MIB), (1, 30 * MIB)], 1),
        );
        m.insert(dup.unwrap().0).unwrap();
        assert_eq!(m.physical(9 * MIB, 4096).unwrap(), 21 * MIB);
        assert!(matches!(
            m.physical(16 * MIB - 100, 4096),
            Err(BtrfsError::Unmapped { .. })
        ));
        let over = Chunk::parse(15 * MIB, &with_stripes(2 * MIB, 1, &[(1, 0)], 1))
            .unwrap()
            .0;
        let e = m.insert(over).unwrap_err().to_string();
        assert!(
            e.contains("chunk at logical 15728640: length 2097152 overlaps"),
            "{e}"
        );
        let raid0 = Chunk::parse(
            64 * MIB,
            &with_stripes(8 * MIB, 4 | RAID0, &[(1, 0), (1, 4 * MIB)], 1),
        );
        m.insert(raid0.unwrap().0).unwrap();
        assert!(matches!(
            m.physical(64 * MIB, 4096),
            Err(BtrfsError::Profile { .. })
        ));
    }
}
