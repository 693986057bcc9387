//! The boot-medium label reader (FAT boot sector, ISO 9660 volume
//! descriptor) runs on every disk of the source server: it must never panic
//! on arbitrary bytes, at any offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::MemDisk;

fuzz_target!(|data: &[u8]| {
    let offset = data.first().map(|b| u64::from(*b) * 512).unwrap_or(0);
    let disk = MemDisk::new(data.to_vec());
    let _ = p2xen::init::protect::volume_label(&disk, offset);
    let _ = p2xen::init::protect::volume_label(&disk, u64::MAX - 100);
});
