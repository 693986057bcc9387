//! A hand-made v4 XFS for the unit tests: 1 KiB blocks, 512-byte sectors,
//! two AGs (the second one short), bnobt roots that are leaves (or, in one
//! variant, a node over two leaves), and a log holding only mkfs's unmount
//! record. Only the structures the used-block map reads are filled in.

pub const BS: u32 = 1024;
pub const AGBLOCKS: u32 = 256;
pub const LAST_AG_BLOCKS: u32 = 200;
const DBLOCKS: u32 = AGBLOCKS + LAST_AG_BLOCKS;
pub const LOG_AGBNO: u32 = 64;
const LOG_BLOCKS: u32 = 32;
pub const LOG_BBS: usize = (LOG_BLOCKS * BS / 512) as usize;
/// bnobt root of AG 1 (AG 0's is block 2).
pub const BNO_ROOT: u32 = 3;
const FREE_AG0: &[(u32, u32)] = &[(10, 20), (100, 50)];
pub const FREE_AG1: &[(u32, u32)] = &[(5, 10), (20, 30), (120, 80)];
const UUID: [u8; 16] = [7; 16];

fn put(img: &mut [u8], at: usize, v: &[u8]) {
    img[at..at + v.len()].copy_from_slice(v);
}

fn block(ag: u32, agbno: u32) -> usize {
    ((ag * AGBLOCKS + agbno) * BS) as usize
}

pub fn agf_offset(ag: u32) -> usize {
    block(ag, 0) + 512
}

pub fn bno_root_offset(ag: u32) -> usize {
    block(ag, if ag == 0 { 2 } else { BNO_ROOT })
}

pub fn log_offset() -> usize {
    block(0, LOG_AGBNO)
}

fn superblock(img: &mut [u8]) {
    put(img, 0, b"XFSB");
    put(img, 4, &BS.to_be_bytes());
    put(img, 8, &u64::from(DBLOCKS).to_be_bytes());
    put(img, 32, &UUID);
    // AG 0 << agblklog | LOG_AGBNO.
    put(img, 48, &u64::from(LOG_AGBNO).to_be_bytes());
    put(img, 84, &AGBLOCKS.to_be_bytes());
    put(img, 88, &2u32.to_be_bytes());
    put(img, 96, &LOG_BLOCKS.to_be_bytes());
    put(img, 100, &0xb4a4u16.to_be_bytes());
    put(img, 102, &512u16.to_be_bytes());
    put(img, 108, b"tiny");
    img[120] = 10; // blocklog
    img[121] = 9; // sectlog
    img[124] = 8; // agblklog
}

fn agf(img: &mut [u8], ag: u32, length: u32, root: u32, level: u32, free: &[(u32, u32)]) {
    let at = agf_offset(ag);
    put(img, at, b"XAGF");
    put(img, at + 4, &1u32.to_be_bytes());
    put(img, at + 8, &ag.to_be_bytes());
    put(img, at + 12, &length.to_be_bytes());
    put(img, at + 16, &root.to_be_bytes());
    put(img, at + 28, &level.to_be_bytes());
    let freeblks: u32 = free.iter().map(|e| e.1).sum();
    put(img, at + 52, &freeblks.to_be_bytes());
}

fn btree_header(img: &mut [u8], at: usize, level: u16, numrecs: usize) {
    put(img, at, b"ABTB");
    put(img, at + 4, &level.to_be_bytes());
    put(img, at + 6, &(numrecs as u16).to_be_bytes());
    put(img, at + 8, &u32::MAX.to_be_bytes());
    put(img, at + 12, &u32::MAX.to_be_bytes());
}

fn leaf(img: &mut [u8], ag: u32, agbno: u32, recs: &[(u32, u32)]) {
    let at = block(ag, agbno);
    btree_header(img, at, 0, recs.len());
    for (i, &(start, len)) in recs.iter().enumerate() {
        put(img, at + 16 + i * 8, &start.to_be_bytes());
        put(img, at + 20 + i * 8, &len.to_be_bytes());
    }
}

/// A log record of one operation at log BB `bb`: header, then one data BB
/// whose op header has `flags`.
pub fn log_record(img: &mut [u8], bb: usize, cycle: u32, flags: u8) {
    let at = log_offset() + bb * 512;
    img[at..at + 1024].fill(0);
    put(img, at, &0xFEED_BABEu32.to_be_bytes());
    put(img, at + 4, &cycle.to_be_bytes());
    put(img, at + 8, &2u32.to_be_bytes());
    put(img, at + 12, &512u32.to_be_bytes());
    let lsn = (u64::from(cycle) << 32) | bb as u64;
    put(img, at + 16, &lsn.to_be_bytes());
    put(img, at + 24, &lsn.to_be_bytes());
    put(img, at + 40, &1u32.to_be_bytes());
    put(img, at + 300, &1u32.to_be_bytes());
    put(img, at + 304, &UUID);
    put(img, at + 320, &(32u32 * 1024).to_be_bytes());
    let data = at + 512;
    put(img, data, &cycle.to_be_bytes());
    put(img, data + 4, &8u32.to_be_bytes());
    img[data + 8] = 0xAA;
    img[data + 9] = flags;
}

pub fn tiny_v4() -> Vec<u8> {
    let mut img = vec![0u8; (DBLOCKS * BS) as usize];
    superblock(&mut img);
    agf(&mut img, 0, AGBLOCKS, 2, 1, FREE_AG0);
    leaf(&mut img, 0, 2, FREE_AG0);
    agf(&mut img, 1, LAST_AG_BLOCKS, BNO_ROOT, 1, FREE_AG1);
    leaf(&mut img, 1, BNO_ROOT, FREE_AG1);
    log_record(&mut img, 0, 1, 0x20);
    img
}

/// [`tiny_v4`] with AG 1's bnobt as a node over leaves at blocks 16 and 17.
pub fn tiny_v4_two_level() -> Vec<u8> {
    let mut img = tiny_v4();
    agf(&mut img, 1, LAST_AG_BLOCKS, BNO_ROOT, 2, FREE_AG1);
    let (left, right) = FREE_AG1.split_at(2);
    leaf(&mut img, 1, 16, left);
    leaf(&mut img, 1, 17, right);
    let at = bno_root_offset(1);
    img[at..at + BS as usize].fill(0);
    btree_header(&mut img, at, 1, 2);
    let max = (BS as usize - 16) / 12;
    for (i, (&(start, len), ptr)) in [left[0], right[0]].iter().zip([16u32, 17]).enumerate() {
        put(&mut img, at + 16 + i * 8, &start.to_be_bytes());
        put(&mut img, at + 20 + i * 8, &len.to_be_bytes());
        put(&mut img, at + 16 + max * 8 + i * 4, &ptr.to_be_bytes());
    }
    img
}
