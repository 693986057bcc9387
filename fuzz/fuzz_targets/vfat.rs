//! Fuzzes the FAT used map (boot sector geometry, FAT12/16/32 entries):
//! no input may make `probe` or `used_extents` panic or allocate without
//! bound.
//!
//! The input is the first bytes of a zeroed 1 MiB disk (boot sector and
//! the start of the FATs); the boot signature and jump byte are forced so
//! that the BPB parser runs.
//!
//! Run for a bounded time (needs a nightly toolchain), from `fuzz/`:
//!   cargo +nightly fuzz run vfat -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;
use p2xen::source::filesystems::{probe, used_extents};

const DISK: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut disk = vec![0u8; DISK];
    let n = data.len().min(DISK);
    disk[..n].copy_from_slice(&data[..n]);
    disk[0] = 0xEB;
    disk[510] = 0x55;
    disk[511] = 0xAA;
    let disk = MemDisk::new(disk);
    if let Ok(Some(fs)) = probe(&disk) {
        let _ = used_extents(&disk, &fs);
    }
});
