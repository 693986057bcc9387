//! Property tests: the partition-table parsers and the whole inspection of
//! a disk never panic, whatever the bytes (the same entry points as the
//! cargo-fuzz target fuzz/fuzz_targets/partitions.rs).

use p2xen::source::device::{MemDisk, ReadAt};
use p2xen::source::inspect::inspect_source;
use p2xen::source::partitions::read_table;
use proptest::prelude::*;
use std::sync::Arc;

const SS: usize = 512;

fn check(bytes: Vec<u8>) {
    let disk = MemDisk::new(bytes);
    for ss in [512, 4096] {
        let _ = read_table(&disk, ss);
    }
    let shared: Arc<dyn ReadAt> = Arc::new(disk);
    let _ = inspect_source(shared, None);
}

fn crc32(b: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(b)
}

/// A GPT header with a valid CRC but otherwise chosen by proptest.
#[derive(Debug, Clone)]
struct Gpt {
    lba_is_last: bool,
    num_parts: u32,
    part_size: u32,
    part_start: u64,
    first_usable: u64,
    last_usable: u64,
    header_size: u32,
}

fn gpt_strategy() -> impl Strategy<Value = Gpt> {
    (
        any::<bool>(),
        prop_oneof![0u32..200, any::<u32>()],
        prop_oneof![Just(128u32), any::<u32>()],
        prop_oneof![0u64..64, any::<u64>()],
        prop_oneof![0u64..64, any::<u64>()],
        prop_oneof![0u64..128, any::<u64>()],
        prop_oneof![Just(92u32), any::<u32>()],
    )
        .prop_map(
            |(
                lba_is_last,
                num_parts,
                part_size,
                part_start,
                first_usable,
                last_usable,
                header_size,
            )| Gpt {
                lba_is_last,
                num_parts,
                part_size,
                part_start,
                first_usable,
                last_usable,
                header_size,
            },
        )
}

fn stamp_gpt(d: &mut [u8], g: &Gpt) {
    let sectors = d.len() / SS;
    let lba = if g.lba_is_last { sectors - 1 } else { 1 };
    let o = lba * SS;
    let h = &mut d[o..o + SS];
    h[..8].copy_from_slice(b"EFI PART");
    h[12..16].copy_from_slice(&g.header_size.to_le_bytes());
    h[24..32].copy_from_slice(&(lba as u64).to_le_bytes());
    h[40..48].copy_from_slice(&g.first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&g.last_usable.to_le_bytes());
    h[72..80].copy_from_slice(&g.part_start.to_le_bytes());
    h[80..84].copy_from_slice(&g.num_parts.to_le_bytes());
    h[84..88].copy_from_slice(&g.part_size.to_le_bytes());
    let len = (g.header_size as usize).clamp(92, SS);
    h[16..20].fill(0);
    let crc = crc32(&h[..len]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    // Entries array CRC over what is there, when it fits, so the entry
    // parser is reached too.
    let start = (g.part_start as usize).saturating_mul(SS);
    let alen = (g.num_parts as usize).saturating_mul(128);
    if let Some(arr) = start
        .checked_add(alen)
        .filter(|&e| e <= d.len())
        .map(|e| d[start..e].to_vec())
    {
        let c = crc32(&arr);
        d[o + 88..o + 92].copy_from_slice(&c.to_le_bytes());
        let h = &mut d[o..o + SS];
        h[16..20].fill(0);
        let crc = crc32(&h[..len]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16384)) {
        check(bytes);
    }

    /// Random sectors behind a valid MBR signature: entries and EBRs with
    /// random fields, often an extended partition.
    #[test]
    fn random_mbr_and_ebr_chains_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 4 * SS..64 * SS),
        ext_start in 0u32..64,
        ext_len in prop_oneof![0u32..64, any::<u32>()],
        boot_flags in proptest::collection::vec(prop_oneof![Just(0u8), Just(0x80u8)], 4),
        ebr_sigs in proptest::collection::vec(0usize..64, 0..16),
    ) {
        for (i, f) in boot_flags.iter().enumerate() {
            bytes[446 + 16 * i] = *f;
        }
        bytes[446 + 4] = 0x05;
        bytes[446 + 8..446 + 12].copy_from_slice(&ext_start.to_le_bytes());
        bytes[446 + 12..446 + 16].copy_from_slice(&ext_len.to_le_bytes());
        let sectors = bytes.len() / SS;
        for s in ebr_sigs {
            let o = (s % sectors) * SS;
            bytes[o + 510] = 0x55;
            bytes[o + 511] = 0xaa;
            for i in 0..4 {
                bytes[o + 446 + 16 * i] = 0;
            }
        }
        bytes[510] = 0x55;
        bytes[511] = 0xaa;
        check(bytes);
    }

    /// GPT headers with valid CRCs and random geometry, behind a
    /// protective MBR or none.
    #[test]
    fn random_gpt_headers_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 8 * SS..96 * SS),
        g in gpt_strategy(),
        pmbr in any::<bool>(),
        backup_too in any::<bool>(),
    ) {
        bytes.truncate(bytes.len() / SS * SS);
        if pmbr {
            bytes[446..510].fill(0);
            bytes[446 + 4] = 0xee;
            bytes[446 + 8] = 1;
            bytes[510] = 0x55;
            bytes[511] = 0xaa;
        }
        stamp_gpt(&mut bytes, &g);
        if backup_too {
            stamp_gpt(&mut bytes, &Gpt { lba_is_last: !g.lba_is_last, ..g.clone() });
        }
        check(bytes);
    }

    /// Random superblocks behind the ext magic reach ext4-view.
    #[test]
    fn random_ext_superblocks_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 4096..65536)) {
        bytes[510] = 0;
        bytes[1080] = 0x53;
        bytes[1081] = 0xef;
        check(bytes);
    }
}
