//! Fuzzes the partition-table parsers (MBR, EBR chain, GPT headers and
//! entries, boot code detection) and the whole-disk inspection behind them.
//! Run: `cargo +nightly fuzz run partitions -- -max_total_time=60`
//! (from the repository root; see docs/inspect-json.md, "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2xen::source::device::{MemDisk, ReadAt};
use p2xen::source::inspect::inspect_source;
use p2xen::source::partitions::read_table;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let disk = MemDisk::new(data.to_vec());
    for ss in [512, 4096] {
        let _ = read_table(&disk, ss);
    }
    let shared: Arc<dyn ReadAt> = Arc::new(disk);
    let _ = inspect_source(shared, None);
});
