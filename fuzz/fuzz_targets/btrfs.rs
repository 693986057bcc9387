//! Fuzzes the Btrfs used map (superblock, sys_chunk_array, chunk, root and
//! device trees): no input may make `probe` or `used_extents` panic or
//! allocate without bound.
//!
//! The input is a list of patches onto a zeroed 4 MiB disk whose
//! superblock at 64 KiB carries the magic and its own offset: each patch
//! is a 2-byte big-endian 512-byte sector number (mod the disk's 8192
//! sectors) and up to 512 bytes to put there, so the superblock and tree
//! blocks far apart are all reachable. Checksums are not fixed up, so the
//! fuzzer must find them (CRC-32C over the block) or stay in the checks
//! before them.
//!
//! Run for a bounded time (needs a nightly toolchain), from `fuzz/`:
//!   cargo +nightly fuzz run btrfs -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;
use p2xen::source::filesystems::{probe, used_extents};

const SECTOR: usize = 512;
const DISK: usize = 4 << 20;
const SUPER: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut disk = vec![0u8; DISK];
    for patch in data.chunks(2 + SECTOR) {
        let Some((at, body)) = patch.split_first_chunk::<2>() else {
            break;
        };
        let start = usize::from(u16::from_be_bytes(*at)) % (DISK / SECTOR) * SECTOR;
        disk[start..start + body.len()].copy_from_slice(body);
    }
    disk[SUPER + 64..SUPER + 72].copy_from_slice(b"_BHRfS_M");
    disk[SUPER + 48..SUPER + 56].copy_from_slice(&(SUPER as u64).to_le_bytes());
    let disk = MemDisk::new(disk);
    if let Ok(Some(fs)) = probe(&disk) {
        let _ = used_extents(&disk, &fs);
    }
});
