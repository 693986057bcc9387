//! The Btrfs primary superblock at 64 KiB: little-endian, CRC-32C over
//! everything after the 32-byte checksum field.
//!
//! [`Superblock::parse`] checks what `probe` needs to name the filesystem;
//! [`Superblock::check_mappable`] what the used map relies on (checksum,
//! one device, features that keep the classic chunk layout, size against
//! the partition), so a filesystem the map cannot use is still named and
//! copied whole.

use super::BtrfsError;
use crate::source::filesystems::bytes::{bytes, has_magic, le16, le32, le64, u8_at};

pub const OFFSET: u64 = 64 * 1024;
/// BTRFS_SUPER_INFO_SIZE: the superblock and each mirror.
pub const SIZE: usize = 4096;
pub const MAGIC: &[u8; 8] = b"_BHRfS_M";
const MAGIC_AT: usize = 64;
const CSUM_START: usize = 32;
const SYS_CHUNK_ARRAY: usize = 0x32b;
pub const SYS_CHUNK_ARRAY_MAX: usize = 2048;
const CSUM_CRC32C: u16 = 0;

// Incompatible features that change where blocks live or how logical
// addresses map to the device: zoned devices move the superblocks, the
// extent tree v2 and the RAID stripe tree change the chunk mapping.
const INCOMPAT_ZONED: u64 = 1 << 12;
const INCOMPAT_EXTENT_TREE_V2: u64 = 1 << 13;
const INCOMPAT_RAID_STRIPE_TREE: u64 = 1 << 14;
pub const INCOMPAT_METADATA_UUID: u64 = 1 << 10;
/// Bits 0..=11 and simple quotas (16): compression, skinny metadata,
/// no-holes, RAID56, RAID1C34, the metadata UUID... none of them moves a
/// tree block or a device extent.
const INCOMPAT_KNOWN: u64 = 0x0fff | (1 << 16);
const INCOMPAT_REFUSED: u64 = INCOMPAT_ZONED | INCOMPAT_EXTENT_TREE_V2 | INCOMPAT_RAID_STRIPE_TREE;

const FLAG_ERROR: u64 = 1 << 2;
/// btrfs-image metadumps (no file data) and half-finished `btrfstune`
/// conversions (fsid, block group tree, checksums).
const FLAGS_UNFINISHED: u64 =
    (1 << 33) | (1 << 34) | (1 << 35) | (1 << 36) | (1 << 38) | (1 << 39) | (1 << 40);

/// The superblock fields p2xen uses.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub fsid: [u8; 16],
    pub metadata_uuid: [u8; 16],
    pub flags: u64,
    pub generation: u64,
    pub root: u64,
    pub root_level: u8,
    pub chunk_root: u64,
    pub chunk_root_level: u8,
    pub log_root: u64,
    pub total_bytes: u64,
    pub num_devices: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub sys_chunk_array_size: u32,
    pub incompat_flags: u64,
    pub csum_type: u16,
    pub devid: u64,
    pub dev_total_bytes: u64,
    pub label: [u8; 256],
    pub sys_chunk_array: Vec<u8>,
}

impl Superblock {
    /// Parses the [`SIZE`] bytes read at [`OFFSET`]; `Ok(None)` without the
    /// magic or when the copy does not record this offset (a stale mirror).
    pub fn parse(b: &[u8]) -> Result<Option<Self>, BtrfsError> {
        if !has_magic(b, MAGIC_AT, MAGIC) || le64(b, 48) != OFFSET {
            return Ok(None);
        }
        let sectorsize = le32(b, 0x90);
        let nodesize = le32(b, 0x94);
        if !(512..=65536).contains(&sectorsize)
            || !sectorsize.is_power_of_two()
            || !(4096..=65536).contains(&nodesize)
            || !nodesize.is_power_of_two()
            || nodesize < sectorsize
        {
            return Err(BtrfsError::Geometry {
                sectorsize,
                nodesize,
            });
        }
        let sys_chunk_array_size = le32(b, 0xa0);
        let fsid = bytes(b, 0x20);
        let incompat_flags = le64(b, 0xbc);
        let metadata_uuid = if incompat_flags & INCOMPAT_METADATA_UUID != 0 {
            bytes(b, 0x23b)
        } else {
            fsid
        };
        let array_len = usize::try_from(sys_chunk_array_size)
            .unwrap_or(usize::MAX)
            .min(SYS_CHUNK_ARRAY_MAX);
        Ok(Some(Superblock {
            fsid,
            metadata_uuid,
            flags: le64(b, 0x38),
            generation: le64(b, 0x48),
            root: le64(b, 0x50),
            chunk_root: le64(b, 0x58),
            log_root: le64(b, 0x60),
            total_bytes: le64(b, 0x70),
            num_devices: le64(b, 0x88),
            sectorsize,
            nodesize,
            sys_chunk_array_size,
            incompat_flags,
            csum_type: le16(b, 0xc4),
            root_level: u8_at(b, 0xc6),
            chunk_root_level: u8_at(b, 0xc7),
            devid: le64(b, 0xc9),
            dev_total_bytes: le64(b, 0xd1),
            label: bytes(b, 0x12b),
            sys_chunk_array: b
                .get(SYS_CHUNK_ARRAY..SYS_CHUNK_ARRAY + array_len)
                .unwrap_or_default()
                .to_vec(),
        }))
    }

    /// What the used map needs beyond [`Superblock::parse`]: `b` is the
    /// whole superblock (for its checksum), `device_size` the partition's.
    pub fn check_mappable(&self, b: &[u8], device_size: u64) -> Result<(), BtrfsError> {
        if self.csum_type != CSUM_CRC32C {
            return Err(BtrfsError::ChecksumType {
                csum_type: self.csum_type,
            });
        }
        let (stored, computed) = crc_of(b);
        if stored != computed {
            return Err(BtrfsError::SuperblockCrc { stored, computed });
        }
        if self.num_devices != 1 {
            return Err(BtrfsError::MultiDevice {
                num_devices: self.num_devices,
            });
        }
        let refused = self.incompat_flags & (INCOMPAT_REFUSED | !INCOMPAT_KNOWN);
        if refused != 0 {
            return Err(BtrfsError::Incompat { bits: refused });
        }
        if self.flags & FLAG_ERROR != 0 {
            return Err(BtrfsError::Flags {
                flags: self.flags,
                why: "the kernel recorded an error on it: run `btrfs check` on the source",
            });
        }
        if self.flags & FLAGS_UNFINISHED != 0 {
            return Err(BtrfsError::Flags {
                flags: self.flags,
                why: "a metadump image or an unfinished btrfstune conversion",
            });
        }
        // A seed device (flag bit 32) is an ordinary single-device
        // filesystem on its own, so it is mapped.
        if usize::try_from(self.sys_chunk_array_size).is_ok_and(|n| n > SYS_CHUNK_ARRAY_MAX) {
            return Err(BtrfsError::SysChunkArray {
                at: 0,
                why: format!(
                    "size {} exceeds the {SYS_CHUNK_ARRAY_MAX} bytes it may have",
                    self.sys_chunk_array_size
                ),
            });
        }
        if self.dev_total_bytes < OFFSET + SIZE as u64 {
            return Err(BtrfsError::DeviceTooSmall {
                dev_total_bytes: self.dev_total_bytes,
            });
        }
        if self.dev_total_bytes > device_size {
            return Err(BtrfsError::BeyondDevice {
                dev_total_bytes: self.dev_total_bytes,
                device_size,
            });
        }
        Ok(())
    }
}

/// CRC-32C as Btrfs stores it: over `buf[32..]`, little-endian in the
/// first 4 bytes. Returns (stored, computed); a short buffer never matches.
pub fn crc_of(buf: &[u8]) -> (u32, u32) {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let stored = le32(buf, 0);
    match buf.get(CSUM_START..) {
        Some(rest) if !rest.is_empty() => (stored, CRC32C.checksum(rest)),
        _ => (stored, !stored),
    }
}
