//! The FAT boot sector (BIOS parameter block) of the ESP image.
//!
//! Only the fields the USB image depends on are read: the BIOS boot chain
//! (gptmbr.bin → syslinux VBR → ldlinux.sys) finds its files through the
//! "hidden sectors" field, so it must equal the partition's first LBA.

use std::fmt;

/// Size of the boot sector and of the only sector size the image supports.
pub const BOOT_SECTOR_LEN: usize = 512;

/// Why a boot sector is not a usable FAT boot sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FatBootSectorError {
    /// Fewer than 512 bytes were given.
    Short { len: usize },
    /// Bytes 510..512 are not 0x55 0xAA.
    NoSignature,
    /// Bytes-per-sector is not 512.
    SectorSize { found: u16 },
    /// Both total-sector fields are zero.
    NoSize,
}

impl fmt::Display for FatBootSectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len } => write!(f, "boot sector is {len} bytes, need {BOOT_SECTOR_LEN}"),
            Self::NoSignature => {
                write!(f, "no 0x55AA signature at byte 510: not a FAT file system")
            }
            Self::SectorSize { found } => {
                write!(f, "{found} bytes per sector, only 512 is supported")
            }
            Self::NoSize => write!(f, "total sector count is zero"),
        }
    }
}

/// The fields of a FAT12/16/32 boot sector that the image writer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatBootSector {
    /// Sectors before the file system on its disk (BPB offset 0x1C).
    pub hidden_sectors: u32,
    /// Sectors the file system spans (BPB 0x13, or 0x20 when that is zero).
    pub total_sectors: u32,
}

impl FatBootSector {
    pub fn parse(sector: &[u8]) -> Result<Self, FatBootSectorError> {
        let sector = sector
            .get(..BOOT_SECTOR_LEN)
            .ok_or(FatBootSectorError::Short { len: sector.len() })?;
        let le16 = |at: usize| u16::from_le_bytes([sector[at], sector[at + 1]]);
        let le32 = |at: usize| {
            u32::from_le_bytes([sector[at], sector[at + 1], sector[at + 2], sector[at + 3]])
        };
        if sector[510..512] != [0x55, 0xAA] {
            return Err(FatBootSectorError::NoSignature);
        }
        let bytes_per_sector = le16(0x0B);
        if bytes_per_sector != 512 {
            return Err(FatBootSectorError::SectorSize {
                found: bytes_per_sector,
            });
        }
        let total_sectors = match le16(0x13) {
            0 => le32(0x20),
            small => u32::from(small),
        };
        if total_sectors == 0 {
            return Err(FatBootSectorError::NoSize);
        }
        Ok(Self {
            hidden_sectors: le32(0x1C),
            total_sectors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sector(hidden: u32, small_total: u16, large_total: u32) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        s[0x13..0x15].copy_from_slice(&small_total.to_le_bytes());
        s[0x1C..0x20].copy_from_slice(&hidden.to_le_bytes());
        s[0x20..0x24].copy_from_slice(&large_total.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn reads_hidden_and_total_sectors() {
        let bs = FatBootSector::parse(&sector(2048, 0, 81920)).unwrap();
        assert_eq!(
            bs,
            FatBootSector {
                hidden_sectors: 2048,
                total_sectors: 81920
            }
        );
        let small = FatBootSector::parse(&sector(63, 2880, 0)).unwrap();
        assert_eq!(small.total_sectors, 2880);
    }

    #[test]
    fn rejects_what_is_not_fat() {
        assert_eq!(
            FatBootSector::parse(&[0u8; 100]),
            Err(FatBootSectorError::Short { len: 100 })
        );
        assert_eq!(
            FatBootSector::parse(&[0u8; 512]),
            Err(FatBootSectorError::NoSignature)
        );
        let mut s = sector(2048, 0, 100);
        s[0x0B..0x0D].copy_from_slice(&4096u16.to_le_bytes());
        assert_eq!(
            FatBootSector::parse(&s),
            Err(FatBootSectorError::SectorSize { found: 4096 })
        );
        assert_eq!(
            FatBootSector::parse(&sector(2048, 0, 0)),
            Err(FatBootSectorError::NoSize)
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = FatBootSector::parse(&bytes);
        }
    }
}
