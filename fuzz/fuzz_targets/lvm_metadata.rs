//! The LVM2 text-metadata parser and VG model, and the PV reader built on
//! them, run on every PV of the source server: no input may make them
//! panic, recurse without bound or allocate without bound.
//!
//! The first input byte picks the mode: the rest as metadata text, or as
//! the bytes of a PV (label, metadata area, LVs) whose map is then made.
//!
//! Run for a bounded time (needs a nightly toolchain), from `fuzz/`:
//!   cargo +nightly fuzz run lvm_metadata -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;
use p2xen::source::filesystems::{lvm, probe, used_extents};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel % 2 == 0 {
        let _ = lvm::parse_metadata(rest, 0);
        return;
    }
    let disk = MemDisk::new(rest.to_vec());
    let _ = lvm::read(&disk);
    if let Ok(Some(fs)) = probe(&disk) {
        let _ = used_extents(&disk, &fs);
    }
});
