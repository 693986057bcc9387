//! A tiny hand-built one-device Btrfs for unit tests: 4 KiB nodes, a
//! SYSTEM chunk mapped at its own address, METADATA and DATA chunks whose
//! logical addresses differ from their device offsets, and one leaf each
//! for the chunk, root and device trees (or a node and two leaves for the
//! device tree).

use super::tree::Key;

pub const NODESIZE: usize = 4096;
pub const SIZE: usize = 4 << 20;
pub const FSID: [u8; 16] = [0x11; 16];
pub const GENERATION: u64 = 7;
pub const SB: usize = 64 * 1024;
const MIB: u64 = 1 << 20;
/// (logical, length, type, physical) of the three chunks.
pub const CHUNKS: [(u64, u64, u64, u64); 3] = [
    (MIB, MIB, 2, MIB),
    (32 * MIB, MIB / 2, 4, 2 * MIB),
    (64 * MIB, MIB / 2, 1, 3 * MIB),
];
pub const CHUNK_ROOT: u64 = MIB;
pub const ROOT: u64 = 32 * MIB;
pub const DEV_ROOT: u64 = 32 * MIB + 4096;

fn crc(block: &mut [u8]) {
    const C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let c = C.checksum(&block[32..]);
    block[..4].copy_from_slice(&c.to_le_bytes());
    block[4..32].fill(0);
}

fn key(b: &mut [u8], at: usize, k: Key) {
    b[at..at + 8].copy_from_slice(&k.objectid.to_le_bytes());
    b[at + 8] = k.kind;
    b[at + 9..at + 17].copy_from_slice(&k.offset.to_le_bytes());
}

fn header(logical: u64, owner: u64, n: usize, level: u8) -> Vec<u8> {
    let mut b = vec![0u8; NODESIZE];
    b[0x20..0x30].copy_from_slice(&FSID);
    b[0x30..0x38].copy_from_slice(&logical.to_le_bytes());
    b[0x50..0x58].copy_from_slice(&GENERATION.to_le_bytes());
    b[0x58..0x60].copy_from_slice(&owner.to_le_bytes());
    b[0x60..0x64].copy_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
    b[0x64] = level;
    b
}

pub fn leaf(logical: u64, owner: u64, items: &[(Key, Vec<u8>)]) -> Vec<u8> {
    let mut b = header(logical, owner, items.len(), 0);
    let mut data_end = NODESIZE - 101;
    for (i, (k, data)) in items.iter().enumerate() {
        let at = 101 + i * 25;
        key(&mut b, at, *k);
        data_end -= data.len();
        b[at + 17..at + 21].copy_from_slice(&u32::try_from(data_end).unwrap().to_le_bytes());
        b[at + 21..at + 25].copy_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        b[101 + data_end..101 + data_end + data.len()].copy_from_slice(data);
    }
    crc(&mut b);
    b
}

pub fn node(logical: u64, owner: u64, level: u8, ptrs: &[(Key, u64)]) -> Vec<u8> {
    let mut b = header(logical, owner, ptrs.len(), level);
    for (i, (k, ptr)) in ptrs.iter().enumerate() {
        let at = 101 + i * 33;
        key(&mut b, at, *k);
        b[at + 17..at + 25].copy_from_slice(&ptr.to_le_bytes());
        b[at + 25..at + 33].copy_from_slice(&GENERATION.to_le_bytes());
    }
    crc(&mut b);
    b
}

pub fn chunk_item(len: u64, kind: u64, physical: u64) -> Vec<u8> {
    let mut c = vec![0u8; 48 + 32];
    c[0..8].copy_from_slice(&len.to_le_bytes());
    c[8..16].copy_from_slice(&2u64.to_le_bytes());
    c[16..24].copy_from_slice(&65536u64.to_le_bytes());
    c[24..32].copy_from_slice(&kind.to_le_bytes());
    c[44..46].copy_from_slice(&1u16.to_le_bytes());
    c[48..56].copy_from_slice(&1u64.to_le_bytes());
    c[56..64].copy_from_slice(&physical.to_le_bytes());
    c
}

pub fn dev_extent(chunk: u64, len: u64) -> Vec<u8> {
    let mut d = vec![0u8; 48];
    d[0..8].copy_from_slice(&3u64.to_le_bytes());
    d[8..16].copy_from_slice(&256u64.to_le_bytes());
    d[16..24].copy_from_slice(&chunk.to_le_bytes());
    d[24..32].copy_from_slice(&len.to_le_bytes());
    d
}

pub fn k(objectid: u64, kind: u8, offset: u64) -> Key {
    Key {
        objectid,
        kind,
        offset,
    }
}

/// Physical offset of a block at `logical` in the metadata chunk.
pub fn meta_physical(logical: u64) -> usize {
    usize::try_from(logical - CHUNKS[1].0 + CHUNKS[1].3).unwrap()
}

fn put(img: &mut [u8], at: usize, block: &[u8]) {
    img[at..at + block.len()].copy_from_slice(block);
}

/// Rewrites the superblock's checksum after a test changed it.
pub fn reseal_superblock(img: &mut [u8]) {
    crc(&mut img[SB..SB + 4096]);
}

pub fn tiny(two_level: bool) -> Vec<u8> {
    let mut img = vec![0u8; SIZE];
    let mut sb = vec![0u8; 4096];
    sb[0x20..0x30].copy_from_slice(&FSID);
    sb[0x30..0x38].copy_from_slice(&(SB as u64).to_le_bytes());
    sb[0x40..0x48].copy_from_slice(b"_BHRfS_M");
    sb[0x48..0x50].copy_from_slice(&GENERATION.to_le_bytes());
    sb[0x50..0x58].copy_from_slice(&ROOT.to_le_bytes());
    sb[0x58..0x60].copy_from_slice(&CHUNK_ROOT.to_le_bytes());
    sb[0x70..0x78].copy_from_slice(&(SIZE as u64).to_le_bytes());
    sb[0x78..0x80].copy_from_slice(&16384u64.to_le_bytes());
    sb[0x88..0x90].copy_from_slice(&1u64.to_le_bytes());
    sb[0x90..0x94].copy_from_slice(&4096u32.to_le_bytes());
    sb[0x94..0x98].copy_from_slice(&(NODESIZE as u32).to_le_bytes());
    sb[0xbc..0xc4].copy_from_slice(&0x341u64.to_le_bytes());
    sb[0xc9..0xd1].copy_from_slice(&1u64.to_le_bytes());
    sb[0xd1..0xd9].copy_from_slice(&(SIZE as u64).to_le_bytes());
    sb[0x12b..0x12f].copy_from_slice(b"tiny");
    let (l, len, kind, phys) = CHUNKS[0];
    let mut array = vec![0u8; 17];
    key(&mut array, 0, k(256, 228, l));
    array.extend(chunk_item(len, kind, phys));
    sb[0xa0..0xa4].copy_from_slice(&u32::try_from(array.len()).unwrap().to_le_bytes());
    sb[0x32b..0x32b + array.len()].copy_from_slice(&array);
    crc(&mut sb);
    put(&mut img, SB, &sb);

    let mut chunk_items = vec![(k(1, 216, 1), vec![0u8; 98])];
    for (l, len, kind, phys) in CHUNKS {
        chunk_items.push((k(256, 228, l), chunk_item(len, kind, phys)));
    }
    put(
        &mut img,
        usize::try_from(CHUNKS[0].3).unwrap(),
        &leaf(CHUNK_ROOT, 3, &chunk_items),
    );

    let mut root_item = vec![0u8; 439];
    root_item[176..184].copy_from_slice(&DEV_ROOT.to_le_bytes());
    root_item[238] = u8::from(two_level);
    put(
        &mut img,
        meta_physical(ROOT),
        &leaf(ROOT, 1, &[(k(4, 132, 0), root_item)]),
    );

    let exts: Vec<(Key, Vec<u8>)> = CHUNKS
        .iter()
        .map(|&(l, len, _, phys)| (k(1, 204, phys), dev_extent(l, len)))
        .collect();
    if two_level {
        let (a, b) = exts.split_at(1);
        let (la, lb) = (DEV_ROOT + 4096, DEV_ROOT + 8192);
        put(&mut img, meta_physical(la), &leaf(la, 4, a));
        put(&mut img, meta_physical(lb), &leaf(lb, 4, b));
        let n = node(DEV_ROOT, 4, 1, &[(a[0].0, la), (b[0].0, lb)]);
        put(&mut img, meta_physical(DEV_ROOT), &n);
    } else {
        put(&mut img, meta_physical(DEV_ROOT), &leaf(DEV_ROOT, 4, &exts));
    }
    img
}

/// Rewrites the checksum of the tree block at byte `at`.
pub fn reseal_block(img: &mut [u8], at: usize) {
    crc(&mut img[at..at + NODESIZE]);
}
