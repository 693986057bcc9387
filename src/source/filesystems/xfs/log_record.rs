//! The internal log: is it clean? Records start with a 512-byte header
//! (magic 0xFEEDBABE, cycle, version, length, LSN, ...); every other
//! 512-byte basic block (BB) a record writes starts with the cycle number
//! of the pass that wrote it, so the cycles along the log read
//! `c c ... c | c-1 c-1 ... c-1` with the head (the next block to write) at
//! the bar.
//!
//! p2xen's rule, stricter than the kernel's (`xlog_find_tail`) so that any
//! doubt means "not clean" and the partition is copied whole:
//! 1. Cycle of the first BB `c`, of the last BB `c` (head at the end: the
//!    log wrapped exactly) or `c - 1` (head found by the kernel's binary
//!    search for the first BB of cycle `c - 1`); anything else, or `c == 0`
//!    (a zeroed log mkfs never leaves), is not clean.
//! 2. Every BB within the kernel's in-flight window (8 log buffers of
//!    256 KiB: 2 MiB) before and after the head has the cycle that picture
//!    predicts. A hole or a newer block there is a torn write of a crash.
//! 3. The last record before the head is complete (its header blocks plus
//!    its length end exactly at the head), says its own LSN, holds exactly
//!    one operation, and that operation carries XLOG_UNMOUNT_TRANS: the
//!    record a clean unmount, or a remount read-only, writes last. Unlike
//!    the kernel, a log that was merely covered (a powered-off idle mount)
//!    is not clean either.
//!
//! `sb_inprogress` (set while mkfs runs) is refused by the superblock
//! checks; the log's cycle pattern and its last record are what a crash
//! leaves behind.

use super::XfsError;
use super::superblock::Superblock;
use crate::source::device::{ReadAt, read_vec};
use crate::source::filesystems::bytes::{be32, be64, bytes, u8_at};

const BB: u64 = 512;
/// [`BB`] as a buffer length.
const BB_LEN: usize = 512;
const HEADER_MAGIC: u32 = 0xFEED_BABE;
const VERSION_2: u32 = 2;
/// A v2 header covers the cycle words of this much data per header BB.
const HEADER_CYCLE_SIZE: u32 = 32 * 1024;
/// Largest log buffer (XLOG_MAX_RECORD_BSIZE).
const MAX_RECORD_BYTES: u32 = 256 * 1024;
/// XLOG_MAX_ICLOGS buffers of the largest size: how far torn writes reach.
const WINDOW_BB: u64 = 8 * MAX_RECORD_BYTES as u64 / BB;
/// Header BBs plus data of the largest record, with its padding to a log
/// stripe unit (at most 256 KiB too).
const MAX_RECORD_BB: u64 = 2 * MAX_RECORD_BYTES as u64 / BB + 8;
/// xlog_op_header.oh_flags bit of the record an unmount writes.
const UNMOUNT_TRANS: u8 = 0x20;
/// BBs read at once while checking the window.
const CHUNK_BB: u64 = 128;

struct Log<'a> {
    part: &'a dyn ReadAt,
    /// Byte offset of the log's first BB.
    base: u64,
    /// Length in BBs.
    n: u64,
}

/// Where the head is and the cycle of the blocks before it.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// 1..=n: BBs `[0, at)` have `cycle`, `[at, n)` have `cycle - 1`.
    at: u64,
    cycle: u32,
}

impl Head {
    fn expected(&self, bb: u64) -> u32 {
        if bb < self.at {
            self.cycle
        } else {
            // cycle >= 1: find_head refuses cycle 0.
            self.cycle.saturating_sub(1)
        }
    }
}

/// `Ok` if the log's last record is a clean unmount's (rule above).
pub fn check_clean(part: &dyn ReadAt, sb: &Superblock) -> Result<(), XfsError> {
    let place = sb.log_place()?;
    let bs = u64::from(sb.block_size);
    let not_clean = |bb: u64, why: String| XfsError::LogNotClean { bb, why };
    let base = place
        .first_block
        .checked_mul(bs)
        .ok_or_else(|| not_clean(0, "log offset overflows".into()))?;
    // logblocks * block size <= 2^32 * 2^16 fits in u64.
    let n = u64::from(place.blocks) * bs / BB;
    let log = Log { part, base, n };
    let head = log.find_head()?;
    log.check_window(head)?;
    log.check_last_record(head, &sb.uuid)
}

fn cycle_of(bb: &[u8]) -> u32 {
    if be32(bb, 0) == HEADER_MAGIC {
        be32(bb, 4)
    } else {
        be32(bb, 0)
    }
}

impl Log<'_> {
    fn read(&self, bb: u64, count: u64) -> Result<Vec<u8>, XfsError> {
        // Callers keep bb + count <= n, and the n BBs were checked to lie
        // inside the filesystem; checked anyway so that a slip is an error.
        let offset = bb.checked_mul(BB).and_then(|o| o.checked_add(self.base));
        let len = count.checked_mul(BB).and_then(|l| usize::try_from(l).ok());
        let (Some(offset), Some(len)) = (offset, len) else {
            return Err(XfsError::LogNotClean {
                bb,
                why: format!("{count} sectors there overflow the byte offset"),
            });
        };
        Ok(read_vec(self.part, offset, len)?)
    }

    fn cycle(&self, bb: u64) -> Result<u32, XfsError> {
        Ok(cycle_of(&self.read(bb, 1)?))
    }

    fn find_head(&self) -> Result<Head, XfsError> {
        let not_clean = |bb: u64, why: String| XfsError::LogNotClean { bb, why };
        if self.n < 2 {
            return Err(not_clean(0, format!("log of {} sectors", self.n)));
        }
        let first = self.cycle(0)?;
        let last = self.cycle(self.n - 1)?;
        if first == 0 {
            return Err(not_clean(
                0,
                "log starts with cycle 0 (never written)".into(),
            ));
        }
        if first == last {
            return Ok(Head {
                at: self.n,
                cycle: first,
            });
        }
        if first != last.wrapping_add(1) {
            return Err(not_clean(
                self.n - 1,
                format!("cycle {first} at the start but {last} at the end"),
            ));
        }
        // The kernel's xlog_find_cycle_start: the interval halves each
        // round, so this takes log2(n) reads.
        let (mut lo, mut hi) = (0, self.n - 1);
        let mut mid = (lo + hi) / 2;
        while mid != lo && mid != hi {
            if self.cycle(mid)? == last {
                hi = mid;
            } else {
                lo = mid;
            }
            mid = (lo + hi) / 2;
        }
        Ok(Head {
            at: hi,
            cycle: first,
        })
    }

    /// Rule 2: the window of BBs around the head has the predicted cycles.
    fn check_window(&self, head: Head) -> Result<(), XfsError> {
        let (start, len) = if self.n <= 2 * WINDOW_BB {
            (0, self.n)
        } else {
            // head.at <= n and WINDOW_BB < n, so no underflow.
            ((head.at + self.n - WINDOW_BB) % self.n, 2 * WINDOW_BB)
        };
        let mut done = 0;
        while done < len {
            let bb = (start + done) % self.n;
            let count = CHUNK_BB.min(len - done).min(self.n - bb);
            let buf = self.read(bb, count)?;
            for (i, sector) in buf.chunks_exact(BB_LEN).enumerate() {
                let at = bb + i as u64;
                let (got, want) = (cycle_of(sector), head.expected(at));
                if got != want {
                    return Err(XfsError::LogNotClean {
                        bb: at,
                        why: format!(
                            "cycle {got} where {want} was expected, with the head at sector {} (torn or unfinished writes)",
                            head.at
                        ),
                    });
                }
            }
            done += count;
        }
        Ok(())
    }

    /// Rule 3: the last record is a complete unmount record.
    fn check_last_record(&self, head: Head, uuid: &[u8; 16]) -> Result<(), XfsError> {
        let mut back = 0;
        let (at, h) = loop {
            if back >= MAX_RECORD_BB.min(self.n) {
                return Err(XfsError::LogNotClean {
                    bb: head.at % self.n,
                    why: format!("no record header in the {back} sectors before the head"),
                });
            }
            // back < n and head.at >= 1, so this does not underflow.
            let at = (head.at + self.n - 1 - back) % self.n;
            let b = self.read(at, 1)?;
            if be32(&b, 0) == HEADER_MAGIC {
                break (at, b);
            }
            back += 1;
        };
        let bad = |why: String| XfsError::LogNotClean { bb: at, why };
        let cycle = be32(&h, 4);
        let version = be32(&h, 8);
        let len = be32(&h, 12);
        let lsn = be64(&h, 16);
        let num_logops = be32(&h, 40);
        let size = be32(&h, 320);
        if cycle != head.expected(at) || lsn != (u64::from(cycle) << 32 | at) {
            return Err(bad(format!(
                "last record has cycle {cycle} and LSN {}/{}, not its place",
                lsn >> 32,
                lsn & 0xffff_ffff
            )));
        }
        if version != 1 && version != VERSION_2 {
            return Err(bad(format!("record version {version}")));
        }
        if !(12..=2 * MAX_RECORD_BYTES).contains(&len) || size > MAX_RECORD_BYTES {
            return Err(bad(format!("record of {len} bytes (buffer size {size})")));
        }
        let header_bbs = if version == VERSION_2 && size > HEADER_CYCLE_SIZE {
            u64::from(size.div_ceil(HEADER_CYCLE_SIZE))
        } else {
            1
        };
        let ends = header_bbs + u64::from(len).div_ceil(BB);
        if ends != back + 1 {
            return Err(bad(format!(
                "last record spans {ends} sectors but the head is {} after it",
                back + 1
            )));
        }
        if version == VERSION_2 {
            let log_uuid = bytes::<16>(&h, 304);
            if log_uuid != [0; 16] && &log_uuid != uuid {
                return Err(bad("record of another filesystem (UUID differs)".into()));
            }
        }
        if num_logops != 1 {
            return Err(bad(format!(
                "last record holds {num_logops} operations: the filesystem was not unmounted"
            )));
        }
        let data = self.read((at + header_bbs) % self.n, 1)?;
        let flags = u8_at(&data, 9);
        if flags & UNMOUNT_TRANS == 0 {
            return Err(bad(format!(
                "last record is not an unmount record (operation flags {flags:#04x}): the filesystem was not unmounted"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use crate::source::filesystems::xfs::superblock::SB_READ;
    use crate::source::filesystems::xfs::test_image;

    fn check(img: Vec<u8>) -> Result<(), XfsError> {
        let sb = Superblock::parse(&img[..SB_READ]).unwrap().unwrap();
        check_clean(&MemDisk::new(img), &sb)
    }

    fn log_bb(img: &mut [u8], bb: usize) -> &mut [u8] {
        let at = test_image::log_offset() + bb * 512;
        &mut img[at..at + 512]
    }

    #[test]
    fn fresh_unmount_record_is_clean() {
        check(test_image::tiny_v4()).unwrap();
    }

    #[test]
    fn a_transaction_after_the_unmount_record_is_not_clean() {
        let mut img = test_image::tiny_v4();
        // A second record (one op, no unmount flag) right after it.
        test_image::log_record(&mut img, 2, 1, 0x02);
        let s = check(img).unwrap_err().to_string();
        assert!(s.contains("not an unmount record"), "{s}");
    }

    #[test]
    fn a_torn_write_after_the_head_is_not_clean() {
        let mut img = test_image::tiny_v4();
        log_bb(&mut img, 5)[..4].copy_from_slice(&1u32.to_be_bytes());
        let s = check(img).unwrap_err().to_string();
        assert!(s.contains("cycle 1 where 0 was expected"), "{s}");
    }

    #[test]
    fn odd_cycle_patterns_are_not_clean() {
        let mut img = test_image::tiny_v4();
        let last = test_image::LOG_BBS - 1;
        log_bb(&mut img, last)[..4].copy_from_slice(&7u32.to_be_bytes());
        let s = check(img).unwrap_err().to_string();
        assert!(s.contains("cycle 1 at the start but 7 at the end"), "{s}");

        let mut img = test_image::tiny_v4();
        log_bb(&mut img, 0).fill(0);
        let s = check(img).unwrap_err().to_string();
        assert!(s.contains("never written"), "{s}");
    }

    #[test]
    fn a_wrapped_log_ending_in_an_unmount_record_is_clean() {
        // Second pass: everything cycle 2 up to a new unmount record,
        // cycle 1 after it.
        let mut img = test_image::tiny_v4();
        for bb in 0..test_image::LOG_BBS {
            let b = log_bb(&mut img, bb);
            b.fill(0);
            b[..4].copy_from_slice(&1u32.to_be_bytes());
        }
        for bb in (0..10).step_by(2) {
            test_image::log_record(&mut img, bb, 2, 0x02);
        }
        test_image::log_record(&mut img, 10, 2, UNMOUNT_TRANS);
        check(img.clone()).unwrap();
        // The same log whose last record is cut short is not clean.
        log_bb(&mut img, 11)[..4].copy_from_slice(&1u32.to_be_bytes());
        let s = check(img).unwrap_err().to_string();
        assert!(
            s.contains("spans 2 sectors but the head is 1 after it"),
            "{s}"
        );
    }
}
