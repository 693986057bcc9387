//! The XFS primary superblock: sector 0 of AG 0, big-endian ("XFSB").
//!
//! Two levels of trust: [`Superblock::parse`] checks only the geometry the
//! identity needs (what `probe` reports), [`Superblock::check_mappable`]
//! the rest the used-block map relies on (checksum, features, log place,
//! size against the partition), so a filesystem the map cannot use is still
//! named by `probe` and copied whole.

use super::XfsError;
use crate::source::filesystems::bytes::{be16, be32, be64, bytes, has_magic, u8_at};

pub const MAGIC: &[u8; 4] = b"XFSB";
/// Bytes of the superblock fields p2xen reads (all below 264).
pub const SB_READ: usize = 512;
const CRC_OFFSET: usize = 224;

const VERSION_NUMBITS: u16 = 0x000f;
const VERSION_4: u16 = 4;
const VERSION_5: u16 = 5;

// sb_features_incompat (v5). Only these are known not to change the AG
// headers or the free-space btrees p2xen reads.
const INCOMPAT_FTYPE: u32 = 1 << 0;
const INCOMPAT_SPINODES: u32 = 1 << 1;
const INCOMPAT_META_UUID: u32 = 1 << 2;
const INCOMPAT_BIGTIME: u32 = 1 << 3;
const INCOMPAT_NEEDSREPAIR: u32 = 1 << 4;
const INCOMPAT_NREXT64: u32 = 1 << 5;
const INCOMPAT_EXCHRANGE: u32 = 1 << 6;
const INCOMPAT_PARENT: u32 = 1 << 7;
const INCOMPAT_KNOWN: u32 = INCOMPAT_FTYPE
    | INCOMPAT_SPINODES
    | INCOMPAT_META_UUID
    | INCOMPAT_BIGTIME
    | INCOMPAT_NREXT64
    | INCOMPAT_EXCHRANGE
    | INCOMPAT_PARENT;

/// The smallest AG mkfs.xfs makes (XFS_MIN_AG_BLOCKS).
const MIN_AG_BLOCKS: u32 = 64;

/// An allocation group number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgIndex(pub u32);

/// A block number relative to the start of its AG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgBlock(pub u32);

impl std::fmt::Display for AgIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for AgBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where the internal log lies, in filesystem blocks from the start of the
/// filesystem (not the AG-encoded `sb_logstart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPlace {
    pub ag: AgIndex,
    pub agbno: AgBlock,
    pub first_block: u64,
    pub blocks: u32,
}

/// The superblock fields p2xen uses.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub block_size: u32,
    pub dblocks: u64,
    pub agblocks: u32,
    pub agcount: u32,
    pub agblklog: u8,
    pub sectsize: u32,
    /// AG-encoded: `(ag << agblklog) | agbno`; 0 means an external log.
    pub logstart: u64,
    pub logblocks: u32,
    pub versionnum: u16,
    pub features_incompat: u32,
    pub inprogress: u8,
    pub uuid: [u8; 16],
    pub meta_uuid: [u8; 16],
    pub fname: [u8; 12],
}

impl Superblock {
    /// Parses the first [`SB_READ`] bytes; `Ok(None)` without the magic.
    /// Checks the geometry only (block, sector and AG sizes).
    pub fn parse(b: &[u8]) -> Result<Option<Self>, XfsError> {
        if !has_magic(b, 0, MAGIC) {
            return Ok(None);
        }
        let block_size = be32(b, 4);
        let blocklog = u8_at(b, 120);
        if !(512..=65536).contains(&block_size)
            || !block_size.is_power_of_two()
            || block_size.trailing_zeros() != u32::from(blocklog)
        {
            return Err(XfsError::BlockSize {
                block_size,
                blocklog,
            });
        }
        let sectsize = u32::from(be16(b, 102));
        let sectlog = u8_at(b, 121);
        if !(512..=32768).contains(&sectsize)
            || !sectsize.is_power_of_two()
            || sectsize.trailing_zeros() != u32::from(sectlog)
            || sectsize > block_size
        {
            return Err(XfsError::SectorSize {
                sectsize,
                sectlog,
                block_size,
            });
        }
        let sb = Superblock {
            block_size,
            dblocks: be64(b, 8),
            agblocks: be32(b, 84),
            agcount: be32(b, 88),
            agblklog: u8_at(b, 124),
            sectsize,
            logstart: be64(b, 48),
            logblocks: be32(b, 96),
            versionnum: be16(b, 100),
            features_incompat: be32(b, 216),
            inprogress: u8_at(b, 126),
            uuid: bytes(b, 32),
            meta_uuid: bytes(b, 248),
            fname: bytes(b, 108),
        };
        sb.check_ag_geometry()?;
        Ok(Some(sb))
    }

    fn check_ag_geometry(&self) -> Result<(), XfsError> {
        let bad = || XfsError::AgGeometry {
            agcount: self.agcount,
            agblocks: self.agblocks,
            agblklog: self.agblklog,
            dblocks: self.dblocks,
        };
        if self.agblocks < MIN_AG_BLOCKS || self.agcount == 0 || self.agblklog > 31 {
            return Err(bad());
        }
        // agblklog is the kernel's log2 rounded up: AG-encoded block numbers
        // (the log start) depend on it.
        let log = u32::from(self.agblklog);
        if (1u64 << log) < u64::from(self.agblocks)
            || (log > 0 && (1u64 << (log - 1)) >= u64::from(self.agblocks))
        {
            return Err(bad());
        }
        // Every AG but the last is full; the last holds at least one block.
        let full = u64::from(self.agcount - 1) * u64::from(self.agblocks);
        let max = u64::from(self.agcount) * u64::from(self.agblocks);
        if self.dblocks <= full || self.dblocks > max {
            return Err(bad());
        }
        Ok(())
    }

    pub fn version(&self) -> u16 {
        self.versionnum & VERSION_NUMBITS
    }

    /// v5: metadata blocks carry checksums, owners and the filesystem UUID.
    pub fn has_crc(&self) -> bool {
        self.version() == VERSION_5
    }

    /// The UUID stamped into v5 metadata blocks (`sb_meta_uuid` when the
    /// UUID was changed after mkfs, else `sb_uuid`).
    pub fn metadata_uuid(&self) -> [u8; 16] {
        if self.features_incompat & INCOMPAT_META_UUID != 0 {
            self.meta_uuid
        } else {
            self.uuid
        }
    }

    /// What the used-block map needs beyond [`Superblock::parse`]: `sector`
    /// is the whole first sector (`sectsize` bytes) for the v5 checksum.
    pub fn check_mappable(&self, sector: &[u8], device_size: u64) -> Result<(), XfsError> {
        match self.version() {
            VERSION_4 => {}
            VERSION_5 => {
                let (stored, computed) = crc_of(sector, CRC_OFFSET);
                if stored != computed {
                    return Err(XfsError::SuperblockCrc { stored, computed });
                }
                if self.features_incompat & INCOMPAT_NEEDSREPAIR != 0 {
                    return Err(XfsError::NeedsRepair);
                }
                let unknown = self.features_incompat & !INCOMPAT_KNOWN;
                if unknown != 0 {
                    return Err(XfsError::UnknownIncompat { bits: unknown });
                }
            }
            _ => {
                return Err(XfsError::Version {
                    versionnum: self.versionnum,
                });
            }
        }
        if self.inprogress != 0 {
            return Err(XfsError::InProgress);
        }
        let fits = self
            .dblocks
            .checked_mul(u64::from(self.block_size))
            .is_some_and(|bytes| bytes <= device_size);
        if !fits {
            return Err(XfsError::BeyondDevice {
                dblocks: self.dblocks,
                block_size: self.block_size,
                device_size,
            });
        }
        self.log_place().map(|_| ())
    }

    /// The internal log, checked to lie inside one AG.
    pub fn log_place(&self) -> Result<LogPlace, XfsError> {
        if self.logstart == 0 {
            return Err(XfsError::ExternalLog);
        }
        let ag = self.logstart >> self.agblklog;
        let agbno = self.logstart & ((1u64 << self.agblklog) - 1);
        let outside = || XfsError::LogOutside {
            logstart: self.logstart,
            ag,
            agbno,
            logblocks: self.logblocks,
        };
        let ag32 = u32::try_from(ag)
            .ok()
            .filter(|&a| a < self.agcount)
            .ok_or_else(outside)?;
        let ag = AgIndex(ag32);
        let end = agbno.checked_add(u64::from(self.logblocks));
        if self.logblocks == 0
            || agbno <= u64::from(self.agfl_block().0)
            || end.is_none_or(|e| e > u64::from(self.ag_blocks(ag)))
        {
            return Err(outside());
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "agbno < ag_blocks <= u32::MAX (checked just above)"
        )]
        let agbno_u32 = agbno as u32;
        Ok(LogPlace {
            ag,
            agbno: AgBlock(agbno_u32),
            first_block: self.ag_first_block(ag) + agbno,
            blocks: self.logblocks,
        })
    }

    /// First block of `ag`, in blocks from the start of the filesystem.
    pub fn ag_first_block(&self, ag: AgIndex) -> u64 {
        // ag < agcount, so this is below dblocks (checked in parse).
        u64::from(ag.0) * u64::from(self.agblocks)
    }

    /// Blocks of `ag`: `agblocks`, except the last AG, which may be shorter.
    pub fn ag_blocks(&self, ag: AgIndex) -> u32 {
        let rest = self.dblocks.saturating_sub(self.ag_first_block(ag));
        u32::try_from(rest).map_or(self.agblocks, |r| r.min(self.agblocks))
    }

    /// The last AG-header block (the one holding the AGFL, sector 3): no
    /// free extent or btree block may start at or before it.
    pub fn agfl_block(&self) -> AgBlock {
        AgBlock(3 * self.sectsize / self.block_size)
    }

    /// Byte offset of `agbno` in `ag` from the start of the filesystem.
    pub fn byte_offset(&self, ag: AgIndex, agbno: AgBlock) -> Option<u64> {
        self.ag_first_block(ag)
            .checked_add(u64::from(agbno.0))?
            .checked_mul(u64::from(self.block_size))
    }

    /// 512-byte sector address of `agbno` in `ag` (v5 blocks record it).
    pub fn daddr(&self, ag: AgIndex, agbno: AgBlock) -> Option<u64> {
        self.byte_offset(ag, agbno).map(|b| b / 512)
    }
}

/// The v5 metadata checksum: CRC-32C of `buf` with the 4-byte checksum
/// field at `crc_offset` taken as zero, stored little-endian.
/// Returns (stored, computed); a short buffer never matches.
pub fn crc_of(buf: &[u8], crc_offset: usize) -> (u32, u32) {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let stored = crate::source::filesystems::bytes::le32(buf, crc_offset);
    let (Some(head), Some(tail)) = (
        buf.get(..crc_offset),
        crc_offset.checked_add(4).and_then(|e| buf.get(e..)),
    ) else {
        return (stored, !stored);
    };
    let mut d = CRC32C.digest();
    d.update(head);
    d.update(&[0; 4]);
    d.update(tail);
    (stored, d.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::filesystems::xfs::test_image;

    #[test]
    fn tiny_image_superblock_parses() {
        let img = test_image::tiny_v4();
        let sb = Superblock::parse(&img[..SB_READ]).unwrap().unwrap();
        assert_eq!(sb.block_size, test_image::BS);
        assert_eq!(sb.ag_blocks(AgIndex(0)), test_image::AGBLOCKS);
        assert_eq!(sb.ag_blocks(AgIndex(1)), test_image::LAST_AG_BLOCKS);
        // Sector 3 of 512 bytes lies in the second 1 KiB block.
        assert_eq!(sb.agfl_block(), AgBlock(1));
        sb.check_mappable(&img[..512], img.len() as u64).unwrap();
        let log = sb.log_place().unwrap();
        assert_eq!(log.first_block, u64::from(test_image::LOG_AGBNO));
    }

    #[test]
    fn geometry_that_does_not_add_up_is_refused() {
        let mut img = test_image::tiny_v4();
        img[88..92].copy_from_slice(&5u32.to_be_bytes()); // agcount
        let e = Superblock::parse(&img[..SB_READ]).unwrap_err();
        assert!(matches!(e, XfsError::AgGeometry { agcount: 5, .. }), "{e}");
        let mut img = test_image::tiny_v4();
        img[124] = 20; // agblklog
        assert!(Superblock::parse(&img[..SB_READ]).is_err());
        let mut img = test_image::tiny_v4();
        img[120] = 11; // blocklog disagrees with blocksize
        assert!(matches!(
            Superblock::parse(&img[..SB_READ]),
            Err(XfsError::BlockSize { .. })
        ));
    }

    #[test]
    fn unmappable_superblocks_are_named() {
        let img = test_image::tiny_v4();
        let sb = Superblock::parse(&img[..SB_READ]).unwrap().unwrap();
        let e = sb.check_mappable(&img[..512], 4096).unwrap_err();
        assert!(matches!(e, XfsError::BeyondDevice { .. }), "{e}");
        let mut s = sb.clone();
        s.logstart = 0;
        let e = s.check_mappable(&img[..512], img.len() as u64).unwrap_err();
        assert!(matches!(e, XfsError::ExternalLog), "{e}");
        let mut s = sb.clone();
        s.inprogress = 1;
        assert!(matches!(
            s.check_mappable(&img[..512], img.len() as u64),
            Err(XfsError::InProgress)
        ));
        let mut s = sb.clone();
        s.logblocks = test_image::AGBLOCKS;
        assert!(matches!(
            s.check_mappable(&img[..512], img.len() as u64),
            Err(XfsError::LogOutside { .. })
        ));
        let mut s = sb;
        s.versionnum = 3;
        assert!(matches!(
            s.check_mappable(&img[..512], img.len() as u64),
            Err(XfsError::Version { versionnum: 3 })
        ));
    }

    #[test]
    fn crc32c_is_castagnoli_over_the_buffer_with_its_field_zeroed() {
        const C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        // The published check value of CRC-32C.
        assert_eq!(C.checksum(b"123456789"), 0xE306_9283);
        let mut b = b"1234\xff\xff\xff\xff56789".to_vec();
        let (_, c) = crc_of(&b, 4);
        assert_eq!(c, C.checksum(b"1234\0\0\0\x0056789"));
        b[4..8].copy_from_slice(&c.to_le_bytes());
        assert_eq!(crc_of(&b, 4), (c, c));
        let (stored, computed) = crc_of(&b[..6], 4);
        assert_ne!(stored, computed, "a short buffer never matches");
    }
}
