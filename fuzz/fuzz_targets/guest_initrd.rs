//! The initrd walker (concatenated cpio archives, gzip/xz/zstd) must never
//! panic or allocate without bound on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = p2xen::guest::initrd::list_names(data) {
        let _ = p2xen::guest::initrd::has_module(&names, "xen-blkfront");
    }
});
