//! FAT12/16/32 ("vfat"): the BIOS parameter block in the boot sector, and
//! the volume label entry of the root directory, which blkid prefers. The
//! used map comes from the file allocation table: the reserved sectors,
//! the FATs, the FAT12/16 root directory and every allocated cluster.

mod used_map;

use super::bytes::{has_magic, label_string, le16, le32, read_if_fits, u8_at};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::{DeviceError, ReadAt};
use crate::source::extent::ExtentList;

/// Why a FAT filesystem's used map cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum VfatError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no FAT boot sector at byte 0")]
    NoBootSector,
    #[error(
        "boot sector: {total_sectors} sectors of {sector} bytes do not fit in the {device_size}-byte partition (truncated image or wrong partition size)"
    )]
    BeyondDevice {
        total_sectors: u64,
        sector: u64,
        device_size: u64,
    },
    #[error("boot sector: {why}")]
    Geometry { why: String },
    #[error(
        "FAT {fat} at byte {offset}: {fat_bytes} bytes cannot hold the entries of {clusters} clusters"
    )]
    FatTooSmall {
        fat: u64,
        offset: u64,
        fat_bytes: u64,
        clusters: u64,
    },
}

fn wrap(part: &dyn ReadAt, e: VfatError) -> ProbeError {
    match e {
        VfatError::Device(d) => ProbeError::Device(d),
        source => ProbeError::Vfat {
            path: part.name().to_path_buf(),
            source,
        },
    }
}

const DIR_ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LONG_NAME: u8 = 0x0F;
/// Root directory bytes scanned for the label (FAT12/16 roots are usually
/// 16 KiB; FAT32's first root cluster is at most 64 KiB).
const MAX_ROOT_SCAN: u64 = 64 * 1024;

struct Bpb {
    sector: u64,
    cluster_sectors: u64,
    reserved: u64,
    fats: u64,
    root_entries: u64,
    total_sectors: u64,
    fat_sectors: u64,
    fat32: bool,
    /// FAT32: bit 7 set means only FAT number `ext_flags & 0xf` is used.
    ext_flags: u16,
}

// All factors are at most 16 or 32 bits, so none of this overflows u64.
impl Bpb {
    fn root_sectors(&self) -> u64 {
        (self.root_entries * DIR_ENTRY as u64).div_ceil(self.sector)
    }

    fn fat_area(&self) -> u64 {
        self.fats * self.fat_sectors
    }

    /// First sector of cluster 2.
    fn data_start(&self) -> u64 {
        self.reserved + self.fat_area() + self.root_sectors()
    }

    fn clusters(&self) -> u64 {
        self.total_sectors.saturating_sub(self.data_start()) / self.cluster_sectors
    }

    /// As Linux decides it: FAT32 when the 16-bit FAT size is zero, else
    /// by the cluster count (FAT12 below 4085).
    fn fat_bits(&self) -> u32 {
        if self.fat32 {
            32
        } else if self.clusters() < 4085 {
            12
        } else {
            16
        }
    }
}

fn parse_bpb(b: &[u8]) -> Option<Bpb> {
    if !matches!(u8_at(b, 0), 0xEB | 0xE9) || le16(b, 510) != 0xAA55 {
        return None;
    }
    if !has_magic(b, 54, b"FAT") && !has_magic(b, 82, b"FAT32") {
        return None;
    }
    let sector = u64::from(le16(b, 11));
    let cluster_sectors = u64::from(u8_at(b, 13));
    let media = u8_at(b, 21);
    let fats = u64::from(u8_at(b, 16));
    let reserved = u64::from(le16(b, 14));
    if !(512..=4096).contains(&sector)
        || !sector.is_power_of_two()
        || cluster_sectors == 0
        || !cluster_sectors.is_power_of_two()
        || fats == 0
        || reserved == 0
        || !(media == 0xF0 || media >= 0xF8)
    {
        return None;
    }
    let fat16_len = u64::from(le16(b, 22));
    let (fat_sectors, fat32) = if fat16_len != 0 {
        (fat16_len, false)
    } else {
        (u64::from(le32(b, 36)), true)
    };
    let total16 = u64::from(le16(b, 19));
    let total_sectors = if total16 != 0 {
        total16
    } else {
        u64::from(le32(b, 32))
    };
    if fat_sectors == 0 || total_sectors == 0 {
        return None;
    }
    Some(Bpb {
        sector,
        cluster_sectors,
        reserved,
        fats,
        root_entries: u64::from(le16(b, 17)),
        total_sectors,
        fat_sectors,
        fat32,
        ext_flags: if fat32 { le16(b, 40) } else { 0 },
    })
}

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(b) = read_if_fits(part, 0, 512)? else {
        return Ok(None);
    };
    let Some(bpb) = parse_bpb(&b) else {
        return Ok(None);
    };
    let root_sectors = bpb.root_sectors();
    let fat_area = bpb.fat_area();
    let version = match bpb.fat_bits() {
        32 => "FAT32",
        12 => "FAT12",
        _ => "FAT16",
    };
    let (serial_off, label_off) = if bpb.fat32 { (67, 71) } else { (39, 43) };
    let serial = le32(&b, serial_off);
    let boot_label = label_string(b.get(label_off..label_off + 11).unwrap_or_default())
        .filter(|l| l != "NO NAME");

    // Root directory: fixed after the FATs for FAT12/16; FAT32's starts at
    // its root cluster (only the first cluster is scanned: labels come first).
    let (root_sector, root_len) = if bpb.fat32 {
        let root_cluster = u64::from(le32(&b, 44));
        let first = root_cluster
            .checked_sub(2)
            .map(|c| bpb.reserved + fat_area + c * bpb.cluster_sectors);
        (first, bpb.cluster_sectors * bpb.sector)
    } else {
        (Some(bpb.reserved + fat_area), root_sectors * bpb.sector)
    };
    let dir_label = match root_sector {
        Some(s) => root_label(part, s * bpb.sector, root_len.min(MAX_ROOT_SCAN))?,
        None => None,
    };

    let mut fs = Filesystem::new(FsKind::Vfat);
    fs.label = dir_label.or(boot_label);
    fs.uuid = Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF));
    fs.size_bytes = Some(bpb.total_sectors * bpb.sector);
    fs.details.block_size = Some(bpb.cluster_sectors * bpb.sector);
    fs.details.fat_type = Some(version.to_string());
    match used_map::used_map(part, &bpb) {
        Ok(used) => fs.used_bytes = Some(used.total_bytes()),
        Err(VfatError::Device(e)) => return Err(e.into()),
        Err(e) => log::info!(
            "{}: vfat: no used map, the partition is copied whole: {e}",
            part.name().display()
        ),
    }
    Ok(Some(fs))
}

/// The used map of the FAT filesystem on `part`.
pub(super) fn used_extents(part: &dyn ReadAt) -> Result<ExtentList, ProbeError> {
    let b = read_if_fits(part, 0, 512)?;
    let bpb = b
        .as_deref()
        .and_then(parse_bpb)
        .ok_or_else(|| wrap(part, VfatError::NoBootSector))?;
    used_map::used_map(part, &bpb).map_err(|e| wrap(part, e))
}

fn root_label(part: &dyn ReadAt, offset: u64, len: u64) -> Result<Option<String>, ProbeError> {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "len <= MAX_ROOT_SCAN, so the buffer is bounded"
    )]
    let Some(dir) = read_if_fits(part, offset, len as usize)? else {
        return Ok(None);
    };
    for e in dir.chunks_exact(DIR_ENTRY) {
        match u8_at(e, 0) {
            0x00 => break,
            0xE5 => continue,
            _ => {}
        }
        let attr = u8_at(e, 11);
        if attr != ATTR_LONG_NAME && attr & ATTR_VOLUME_ID != 0 {
            return Ok(label_string(e.get(..11).unwrap_or_default()));
        }
    }
    Ok(None)
}
