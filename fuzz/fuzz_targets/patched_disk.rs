//! The input format of the fuzz targets whose structures lie far apart on
//! a disk (XFS AGs and log, Btrfs superblock and tree blocks): a list of
//! patches onto a zeroed disk, each a 2-byte big-endian 512-byte sector
//! number (modulo the disk's sectors) and up to 512 bytes to put there.

const SECTOR: usize = 512;

/// A zeroed disk of `size` bytes (a multiple of 512) with `data`'s
/// patches applied.
pub fn patched_disk(data: &[u8], size: usize) -> Vec<u8> {
    let mut disk = vec![0u8; size];
    for patch in data.chunks(2 + SECTOR) {
        let Some((at, body)) = patch.split_first_chunk::<2>() else {
            break;
        };
        let start = usize::from(u16::from_be_bytes(*at)) % (size / SECTOR) * SECTOR;
        disk[start..start + body.len()].copy_from_slice(body);
    }
    disk
}
