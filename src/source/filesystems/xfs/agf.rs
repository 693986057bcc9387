//! The AG free-space header (AGF): sector 1 of every allocation group,
//! big-endian, magic "XAGF". It roots the by-block-number free-space btree
//! and counts the blocks that tree holds.

use super::XfsError;
use super::superblock::{AgBlock, AgIndex, Superblock, crc_of};
use crate::source::device::{ReadAt, read_vec};
use crate::source::filesystems::bytes::{be32, bytes, has_magic};

const MAGIC: &[u8; 4] = b"XAGF";
const VERSION: u32 = 1;
const UUID_OFFSET: usize = 64;
const CRC_OFFSET: usize = 216;
/// Deepest free-space btree p2xen follows. The kernel's limit for the
/// largest AG with the smallest blocks is below this.
pub const MAX_LEVELS: u32 = 8;

/// The AGF fields the used-block map needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agf {
    pub length: u32,
    pub bno_root: AgBlock,
    /// Levels of the bnobt: 1 when the root is a leaf.
    pub bno_level: u32,
    pub freeblks: u32,
}

/// Reads and checks the AGF of `ag`.
pub fn read(part: &dyn ReadAt, sb: &Superblock, ag: AgIndex) -> Result<Agf, XfsError> {
    let offset = sb
        .byte_offset(ag, AgBlock(0))
        .and_then(|o| o.checked_add(u64::from(sb.sectsize)))
        .ok_or(XfsError::Agf {
            ag,
            offset: u64::MAX,
            why: "offset overflows".into(),
        })?;
    // sectsize was validated to be at most 32 KiB.
    let b = read_vec(part, offset, sb.sectsize as usize)?;
    parse(&b, sb, ag).map_err(|why| XfsError::Agf { ag, offset, why })
}

fn parse(b: &[u8], sb: &Superblock, ag: AgIndex) -> Result<Agf, String> {
    if !has_magic(b, 0, MAGIC) {
        return Err(format!("no XAGF magic (found {:#010x})", be32(b, 0)));
    }
    if sb.has_crc() {
        let (stored, computed) = crc_of(b, CRC_OFFSET);
        if stored != computed {
            return Err(format!(
                "checksum {stored:#010x}, computed {computed:#010x}"
            ));
        }
        if bytes::<16>(b, UUID_OFFSET) != sb.metadata_uuid() {
            return Err("belongs to another filesystem (UUID differs)".into());
        }
    }
    let version = be32(b, 4);
    let seqno = be32(b, 8);
    let agf = Agf {
        length: be32(b, 12),
        bno_root: AgBlock(be32(b, 16)),
        bno_level: be32(b, 28),
        freeblks: be32(b, 52),
    };
    let ag_blocks = sb.ag_blocks(ag);
    if version != VERSION {
        return Err(format!("version {version}, expected {VERSION}"));
    }
    if seqno != ag.0 {
        return Err(format!("sequence number {seqno}, expected {ag}"));
    }
    if agf.length != ag_blocks {
        return Err(format!(
            "length {} blocks, the superblock makes it {ag_blocks}",
            agf.length
        ));
    }
    if agf.bno_level == 0 || agf.bno_level > MAX_LEVELS {
        return Err(format!(
            "free-space btree of {} levels (1..={MAX_LEVELS} expected)",
            agf.bno_level
        ));
    }
    if agf.bno_root <= sb.agfl_block() || agf.bno_root.0 >= ag_blocks {
        return Err(format!(
            "free-space btree root at block {} outside the AG's {ag_blocks} blocks",
            agf.bno_root
        ));
    }
    if agf.freeblks > ag_blocks {
        return Err(format!(
            "{} free blocks in an AG of {ag_blocks}",
            agf.freeblks
        ));
    }
    Ok(agf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::filesystems::xfs::superblock::SB_READ;
    use crate::source::filesystems::xfs::test_image;

    fn setup() -> (Vec<u8>, Superblock) {
        let img = test_image::tiny_v4();
        let sb = Superblock::parse(&img[..SB_READ]).unwrap().unwrap();
        (img, sb)
    }

    #[test]
    fn tiny_image_agfs_parse() {
        let (img, sb) = setup();
        let disk = MemDisk::new(img);
        let agf = read(&disk, &sb, AgIndex(1)).unwrap();
        assert_eq!(agf.length, test_image::LAST_AG_BLOCKS);
        assert_eq!(agf.bno_level, 1);
        assert_eq!(agf.bno_root, AgBlock(test_image::BNO_ROOT));
    }

    #[test]
    fn each_bad_field_is_named_with_its_ag() {
        let cases: &[(usize, u32, &str)] = &[
            (0, 0, "no XAGF magic"),
            (4, 2, "version 2"),
            (8, 0, "sequence number 0, expected 1"),
            (12, 7, "length 7 blocks"),
            (28, 9, "btree of 9 levels"),
            (28, 0, "btree of 0 levels"),
            (16, 0, "root at block 0"),
            (16, 1 << 20, "outside the AG"),
            (52, u32::MAX, "free blocks in an AG"),
        ];
        for &(field, value, want) in cases {
            let (mut img, sb) = setup();
            let at = test_image::agf_offset(1) + field;
            img[at..at + 4].copy_from_slice(&value.to_be_bytes());
            let e = read(&MemDisk::new(img), &sb, AgIndex(1)).unwrap_err();
            let s = e.to_string();
            assert!(
                s.contains(want) && s.starts_with("AG 1: AGF at byte"),
                "{s}"
            );
        }
    }
}
