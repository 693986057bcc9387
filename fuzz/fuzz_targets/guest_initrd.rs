//! The initrd walker (concatenated cpio archives, gzip/xz/zstd) must never
//! panic or allocate without bound on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Keeping every file exercises the content path as well as the listing.
    if let Ok(listing) = p2xen::guest::initrd::read(data, &|_| true) {
        let _ = p2xen::guest::initrd::has_module(&listing.names(), "xen-blkfront");
        let _ = listing.file("conf/modules");
    }
});
