//! Fuzzes the XFS used-block map (superblock, AGFs, free-space btrees,
//! log): no input may make `probe` or `used_extents` panic or allocate
//! without bound.
//!
//! The input is a list of patches onto a zeroed 1 MiB disk whose first
//! bytes are "XFSB": each patch is a 2-byte big-endian sector number (mod
//! the disk's 2048 sectors) and up to 512 bytes to put there, so AG
//! headers, btree blocks and log records far apart are all reachable.
//!
//! Run for a bounded time (needs a nightly toolchain), from `fuzz/`:
//!   cargo +nightly fuzz run xfs -- -max_total_time=300
#![no_main]

mod patched_disk;

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;
use p2xen::source::filesystems::{probe, used_extents};
use patched_disk::patched_disk;

const DISK: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut disk = patched_disk(data, DISK);
    disk[..4].copy_from_slice(b"XFSB");
    let disk = MemDisk::new(disk);
    if let Ok(Some(fs)) = probe(&disk) {
        let _ = used_extents(&disk, &fs);
    }
});
