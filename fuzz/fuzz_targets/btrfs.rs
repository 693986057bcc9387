//! Fuzzes the Btrfs used map (superblock, sys_chunk_array, chunk, root and
//! device trees): no input may make `probe` or `used_extents` panic or
//! allocate without bound.
//!
//! The input is a list of patches (`patched_disk.rs`) onto a zeroed 4 MiB
//! disk whose superblock at 64 KiB carries the magic and its own offset,
//! so the superblock and tree blocks far apart are all reachable.
//! Checksums are not fixed up, so the fuzzer must find them (CRC-32C over
//! the block) or stay in the checks before them.
//!
//! Run for a bounded time (needs a nightly toolchain), from `fuzz/`:
//!   cargo +nightly fuzz run btrfs -- -max_total_time=300
#![no_main]

mod patched_disk;

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;
use p2xen::source::filesystems::{probe, used_extents};
use patched_disk::patched_disk;

const DISK: usize = 4 << 20;
const SUPER: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut disk = patched_disk(data, DISK);
    disk[SUPER + 64..SUPER + 72].copy_from_slice(b"_BHRfS_M");
    disk[SUPER + 48..SUPER + 56].copy_from_slice(&(SUPER as u64).to_le_bytes());
    let disk = MemDisk::new(disk);
    if let Ok(Some(fs)) = probe(&disk) {
        let _ = used_extents(&disk, &fs);
    }
});
