//! FAT12/16/32 ("vfat"): the BIOS parameter block in the boot sector, and
//! the volume label entry of the root directory, which blkid prefers.

use super::bytes::{has_magic, label_string, le16, le32, read_if_fits, u8_at};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::ReadAt;

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
    })
}

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(b) = read_if_fits(part, 0, 512)? else {
        return Ok(None);
    };
    let Some(bpb) = parse_bpb(&b) else {
        return Ok(None);
    };
    // All factors are at most 16 or 32 bits, so none of this overflows u64.
    let root_sectors = (bpb.root_entries * DIR_ENTRY as u64).div_ceil(bpb.sector);
    let fat_area = bpb.fats * bpb.fat_sectors;
    let meta_sectors = bpb.reserved + fat_area + root_sectors;
    let clusters = bpb.total_sectors.saturating_sub(meta_sectors) / bpb.cluster_sectors;
    let version = if bpb.fat32 {
        "FAT32"
    } else if clusters < 4085 {
        "FAT12"
    } else {
        "FAT16"
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
    Ok(Some(fs))
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
