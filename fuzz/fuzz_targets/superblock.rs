//! Fuzzes `source::filesystems::probe` and `used_extents`: no input may make
//! them panic or allocate without bound.
//!
//! The first input byte picks where the rest lands on a fixed-size disk, so
//! signatures far from byte 0 (btrfs at 64 KiB, md 0.90/1.0 at the end) are
//! reachable without huge inputs.
//!
//! Run for a bounded time (needs a nightly toolchain), from `fuzz/`:
//!   cargo +nightly fuzz run superblock -- -max_total_time=300
//! or without cargo-fuzz, the same instrumentation by hand:
//!   RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
//!     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
//!     -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
//!     cargo +nightly build --release --target x86_64-unknown-linux-gnu --bin superblock
//!   target/x86_64-unknown-linux-gnu/release/superblock -max_total_time=300 -rss_limit_mb=512 corpus/superblock
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;
use p2xen::source::filesystems::{probe, used_extents};

const DISK: usize = 192 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let rest = &rest[..rest.len().min(DISK)];
    let at = match sel % 4 {
        0 => 0,
        1 => 64 * 1024,
        2 => DISK - rest.len(),
        _ => DISK - 128 * 1024,
    }
    .min(DISK - rest.len());
    let mut disk = vec![0u8; DISK];
    disk[at..at + rest.len()].copy_from_slice(rest);
    let disk = MemDisk::new(disk);
    if let Ok(Some(fs)) = probe(&disk) {
        let _ = used_extents(&disk, &fs);
    }
});
