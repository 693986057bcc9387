//! The used map of a FAT filesystem: everything before cluster 2 (boot
//! sector, reserved sectors with FAT32's FSInfo and backup boot sector,
//! every FAT, the FAT12/16 root directory) and every cluster whose entry
//! in the active FAT is not zero (free). Clusters marked bad are left
//! out: they hold nothing a file can reach, and reading them on the
//! source may fail.

use super::{Bpb, VfatError};
use crate::source::device::{ReadAt, read_vec};
use crate::source::extent::ExtentList;
use crate::source::filesystems::bytes::{le16, le32};

/// Entries read at a time from a FAT16/32 (1 MiB of FAT32).
const CHUNK_ENTRIES: u64 = 1 << 18;

/// Linux's limits (MAX_FAT12/16/32): more clusters and the kernel refuses
/// to mount.
fn max_clusters(bits: u32) -> u64 {
    match bits {
        12 => 0xFF4,
        16 => 0xFFF4,
        _ => 0x0FFF_FFF6,
    }
}

fn bad_marker(bits: u32) -> u32 {
    match bits {
        12 => 0xFF7,
        16 => 0xFFF7,
        _ => 0x0FFF_FFF7,
    }
}

pub(super) fn used_map(part: &dyn ReadAt, bpb: &Bpb) -> Result<ExtentList, VfatError> {
    let fits = bpb
        .total_sectors
        .checked_mul(bpb.sector)
        .is_some_and(|end| end <= part.size());
    if !fits {
        return Err(VfatError::BeyondDevice {
            total_sectors: bpb.total_sectors,
            sector: bpb.sector,
            device_size: part.size(),
        });
    }
    let bits = bpb.fat_bits();
    let geometry = |why: String| VfatError::Geometry { why };
    if bits != 32 && bpb.root_entries == 0 {
        return Err(geometry(format!(
            "FAT{bits} without root directory entries"
        )));
    }
    let data_start = bpb.data_start();
    if data_start >= bpb.total_sectors {
        return Err(geometry(format!(
            "the data area starts at sector {data_start}, past the volume's {} sectors",
            bpb.total_sectors
        )));
    }
    let clusters = bpb.clusters();
    if clusters == 0 || clusters > max_clusters(bits) {
        return Err(geometry(format!("{clusters} clusters for FAT{bits}")));
    }
    let active = if bits == 32 && bpb.ext_flags & 0x80 != 0 {
        u64::from(bpb.ext_flags & 0xf)
    } else {
        0
    };
    if active >= bpb.fats {
        return Err(geometry(format!(
            "active FAT {active} of {} FATs",
            bpb.fats
        )));
    }
    // Entries 0 and 1 are reserved; cluster n's entry is entry n.
    let entries = clusters + 2;
    let fat_bytes = bpb.fat_sectors * bpb.sector;
    let offset = (bpb.reserved + active * bpb.fat_sectors) * bpb.sector;
    let need = match bits {
        12 => (entries * 3).div_ceil(2),
        16 => entries * 2,
        _ => entries * 4,
    };
    if need > fat_bytes {
        return Err(VfatError::FatTooSmall {
            fat: active,
            offset,
            fat_bytes,
            clusters,
        });
    }

    let mut used = ExtentList::new();
    used.push(0, data_start * bpb.sector);
    let cluster_bytes = bpb.cluster_sectors * bpb.sector;
    let data_bytes = data_start * bpb.sector;
    let bad = bad_marker(bits);
    let mut mark = |n: u64, entry: u32| {
        if n >= 2 && entry != 0 && entry != bad {
            used.push(data_bytes + (n - 2) * cluster_bytes, cluster_bytes);
        }
    };
    if bits == 12 {
        // At most 4086 entries: about 6 KiB, read at once.
        let fat = read_vec(part, offset, usize::try_from(need).unwrap_or(usize::MAX))?;
        for n in 0..entries {
            // n < 4087: the index is small; an impossible one reads as 0.
            let pair = le16(&fat, usize::try_from(n * 3 / 2).unwrap_or(usize::MAX));
            let entry = if n % 2 == 0 { pair & 0xFFF } else { pair >> 4 };
            mark(n, u32::from(entry));
        }
    } else {
        let width = u64::from(bits / 8);
        let mut first = 0;
        while first < entries {
            let n = (entries - first).min(CHUNK_ENTRIES);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "n <= CHUNK_ENTRIES, so the buffer is at most 1 MiB"
            )]
            let chunk = read_vec(part, offset + first * width, (n * width) as usize)?;
            for (i, e) in chunk.chunks_exact(bits as usize / 8).enumerate() {
                let entry = if bits == 16 {
                    u32::from(le16(e, 0))
                } else {
                    le32(e, 0) & 0x0FFF_FFFF
                };
                mark(first + i as u64, entry);
            }
            first += n;
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::super::parse_bpb;
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::extent::Extent;

    /// 64 sectors of 512 bytes: boot sector, two 1-sector FATs, a 16-entry
    /// root directory, then 60 one-sector clusters.
    fn tiny_fat12(entries: &[(usize, u16)]) -> Vec<u8> {
        let mut img = vec![0u8; 64 * 512];
        img[0] = 0xEB;
        img[510] = 0x55;
        img[511] = 0xAA;
        img[54..62].copy_from_slice(b"FAT12   ");
        img[11..13].copy_from_slice(&512u16.to_le_bytes());
        img[13] = 1;
        img[14..16].copy_from_slice(&1u16.to_le_bytes());
        img[16] = 2;
        img[17..19].copy_from_slice(&16u16.to_le_bytes());
        img[19..21].copy_from_slice(&64u16.to_le_bytes());
        img[21] = 0xF8;
        img[22..24].copy_from_slice(&1u16.to_le_bytes());
        for &(n, v) in entries {
            let at = 512 + n * 3 / 2;
            let mut pair = u16::from_le_bytes([img[at], img[at + 1]]);
            pair = if n % 2 == 0 {
                (pair & 0xF000) | v
            } else {
                (pair & 0x000F) | (v << 4)
            };
            img[at..at + 2].copy_from_slice(&pair.to_le_bytes());
        }
        img
    }

    fn map(img: Vec<u8>) -> Result<ExtentList, VfatError> {
        let bpb = parse_bpb(&img[..512]).unwrap();
        used_map(&MemDisk::new(img), &bpb)
    }

    #[test]
    fn fat12_map_is_metadata_and_allocated_clusters() {
        let img = tiny_fat12(&[
            (0, 0xFF8),
            (1, 0xFFF),
            (2, 0xFFF),
            (3, 4),
            (4, 0xFFF),
            (7, 0xFF7),
            (10, 0xFFF),
            (61, 0xFFF),
        ]);
        let used = map(img).unwrap();
        let want = [(0, 7), (12, 1), (63, 1)].map(|(s, n)| Extent {
            offset: s * 512,
            len: n * 512,
        });
        assert_eq!(used.as_slice(), want);
    }

    #[test]
    fn refusals_are_typed() {
        let mut img = tiny_fat12(&[]);
        img.truncate(60 * 512);
        assert!(matches!(
            map(img),
            Err(VfatError::BeyondDevice {
                total_sectors: 64,
                ..
            })
        ));
        let mut img = tiny_fat12(&[]);
        img[17..19].copy_from_slice(&0u16.to_le_bytes());
        let e = map(img).unwrap_err().to_string();
        assert!(e.contains("FAT12 without root directory entries"), "{e}");
        let mut img = tiny_fat12(&[]);
        img[14..16].copy_from_slice(&70u16.to_le_bytes());
        let e = map(img).unwrap_err().to_string();
        assert!(e.contains("past the volume's 64 sectors"), "{e}");
    }
}
