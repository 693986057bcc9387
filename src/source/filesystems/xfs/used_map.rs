//! The used-block map of an XFS data device: every block of every AG that
//! its bnobt does not list as free. AG headers, the AGFL and its reserve,
//! all btrees, inodes, data and the internal log are never on that list,
//! so they are all copied; blocks past `dblocks` belong to no AG and are
//! not.

use super::XfsError;
use super::superblock::{AgBlock, AgIndex, Superblock};
use super::{agf, bnobt, log_record};
use crate::source::device::ReadAt;
use crate::source::extent::ExtentList;

/// Byte extents in use, relative to the start of the filesystem. The log
/// must be clean (the free-space trees on disk are then the truth), and
/// every AG's tree must add up to its AGF's free count.
pub fn used_map(part: &dyn ReadAt, sb: &Superblock) -> Result<ExtentList, XfsError> {
    log_record::check_clean(part, sb)?;
    let log = sb.log_place()?;
    let mut used = ExtentList::new();
    for ag in (0..sb.agcount).map(AgIndex) {
        let agf = agf::read(part, sb, ag)?;
        let free = bnobt::read(part, sb, ag, &agf)?;
        if free.free_blocks != u64::from(agf.freeblks) {
            return Err(XfsError::FreeCountMismatch {
                ag,
                tree_free: free.free_blocks,
                agf_free: agf.freeblks,
            });
        }
        if ag == log.ag {
            // u32 + u32 in u64 cannot overflow.
            let log_end = u64::from(log.agbno.0) + u64::from(log.blocks);
            let clash = free
                .extents
                .iter()
                .find(|e| u64::from(e.start) < log_end && e.end() > log.agbno.0);
            if let Some(e) = clash {
                return Err(XfsError::Corrupt {
                    ag,
                    block: AgBlock(e.start),
                    why: format!(
                        "free extent {}+{} overlaps the internal log at {}+{}",
                        e.start, e.len, log.agbno, log.blocks
                    ),
                });
            }
        }
        let mut cursor = 0;
        for e in &free.extents {
            push_blocks(&mut used, sb, ag, cursor, e.start)?;
            cursor = e.end();
        }
        push_blocks(&mut used, sb, ag, cursor, agf.length)?;
    }
    Ok(used)
}

/// Appends AG blocks `[from, to)` of `ag` as bytes.
fn push_blocks(
    used: &mut ExtentList,
    sb: &Superblock,
    ag: AgIndex,
    from: u32,
    to: u32,
) -> Result<(), XfsError> {
    let offset = sb
        .byte_offset(ag, AgBlock(from))
        .ok_or_else(|| XfsError::Corrupt {
            ag,
            block: AgBlock(from),
            why: "byte offset overflows".into(),
        })?;
    // At most 2^32 blocks of at most 64 KiB: fits in u64.
    let len = u64::from(to.saturating_sub(from)) * u64::from(sb.block_size);
    used.push(offset, len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::extent::Extent;
    use crate::source::filesystems::xfs::superblock::SB_READ;
    use crate::source::filesystems::xfs::test_image;

    fn map(img: Vec<u8>) -> Result<ExtentList, XfsError> {
        let sb = Superblock::parse(&img[..SB_READ]).unwrap().unwrap();
        used_map(&MemDisk::new(img), &sb)
    }

    #[test]
    fn tiny_image_map_is_the_complement_of_the_free_extents() {
        let bs = u64::from(test_image::BS);
        let ag1 = u64::from(test_image::AGBLOCKS);
        let want: Vec<Extent> = [
            (0, 10),
            (30, 100),
            (150, ag1 + 5),
            (ag1 + 15, ag1 + 20),
            (ag1 + 50, ag1 + 120),
        ]
        .iter()
        .map(|&(a, b)| Extent {
            offset: a * bs,
            len: (b - a) * bs,
        })
        .collect();
        for img in [test_image::tiny_v4(), test_image::tiny_v4_two_level()] {
            assert_eq!(map(img).unwrap().as_slice(), want);
        }
    }

    #[test]
    fn free_count_must_match_the_agf() {
        let mut img = test_image::tiny_v4();
        let at = test_image::agf_offset(0) + 52;
        img[at..at + 4].copy_from_slice(&69u32.to_be_bytes());
        let e = map(img).unwrap_err();
        assert!(
            matches!(
                e,
                XfsError::FreeCountMismatch {
                    ag: AgIndex(0),
                    tree_free: 70,
                    agf_free: 69
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_free_extent_over_the_log_is_corrupt() {
        let mut img = test_image::tiny_v4();
        // AG 0's second record, 100+50, moved onto the log at 64+32.
        let at = test_image::bno_root_offset(0) + 16 + 8;
        img[at..at + 4].copy_from_slice(&90u32.to_be_bytes());
        let s = map(img).unwrap_err().to_string();
        assert!(
            s.contains("AG 0, block 90: free extent 90+50")
                && s.contains("overlaps the internal log"),
            "{s}"
        );
    }
}
