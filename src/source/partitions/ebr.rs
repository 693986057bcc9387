//! The chain of extended boot records inside an MBR extended partition.
//!
//! Each EBR is decoded by `mbrman`, but the chain is walked here rather than
//! with `mbrman::MBR::read_from`: that adds on-disk u32 LBAs without overflow
//! checks (a panic on crafted input), reads chains of any length, and fails
//! as a whole on the first bad EBR, where we want to keep the logical
//! partitions before it and say which EBR is broken.

use super::{Partition, PartitionError, Table, lba_bytes, mbr};
use crate::source::device::ReadAt;
use std::collections::HashSet;

/// Linux's msdos parser stops well before this; a longer chain is garbage.
pub const MAX_LOGICAL: usize = 256;

pub fn read_chain(disk: &dyn ReadAt, sector_size: u32, ext: &Partition, table: &mut Table) {
    let path = disk.name().to_path_buf();
    let ext_start = ext.start_lba;
    let ext_end = ext.start_lba.saturating_add(ext.sectors);
    let mut next_number = 5u32;
    let mut relative = 0u64;
    let mut seen = HashSet::new();
    for index in 0..=MAX_LOGICAL {
        if index == MAX_LOGICAL {
            table.errors.push(PartitionError::EbrChainTooLong {
                path,
                max: MAX_LOGICAL,
            });
            return;
        }
        let Some(lba) = ext_start.checked_add(relative) else {
            return;
        };
        let offset = lba_bytes(lba, sector_size).unwrap_or(u64::MAX);
        if !seen.insert(lba) {
            table.errors.push(PartitionError::EbrLoop {
                path,
                index,
                offset,
            });
            return;
        }
        if lba >= ext_end {
            table.errors.push(PartitionError::EbrInvalid {
                path,
                index,
                offset,
                reason: format!(
                    "it lies outside the extended partition (LBA {ext_start}..{ext_end})"
                ),
            });
            return;
        }
        let header = match mbr::decode(disk, offset) {
            Ok(h) => h,
            // An empty extended partition need not hold an EBR at all: a
            // zeroed first EBR sector just means no logical partitions.
            Err(_) if index == 0 && is_zero_sector(disk, offset) => return,
            Err(reason) => {
                table.errors.push(PartitionError::EbrInvalid {
                    path,
                    index,
                    offset,
                    reason,
                });
                return;
            }
        };
        let data = &header.partition_1;
        if data.is_used() && data.sectors > 0 {
            if let Some(p) = mbr::entry_partition(data, lba, next_number, sector_size, true) {
                let ext_end_bytes = ext.end_bytes();
                if p.start_bytes < ext.start_bytes || p.end_bytes() > ext_end_bytes {
                    table.errors.push(PartitionError::OutsideExtended {
                        path: path.clone(),
                        number: p.number,
                        start: p.start_bytes,
                        end: p.end_bytes(),
                        ext_start: ext.start_bytes,
                        ext_end: ext_end_bytes,
                    });
                }
                table.partitions.push(p);
                next_number = next_number.saturating_add(1);
            }
        }
        let link = &header.partition_2;
        if !link.is_used() || link.starting_lba == 0 {
            return;
        }
        // The link is relative to the start of the extended partition.
        relative = u64::from(link.starting_lba);
    }
}

fn is_zero_sector(disk: &dyn ReadAt, offset: u64) -> bool {
    let mut buf = [0u8; 512];
    disk.read_exact_at(offset, &mut buf).is_ok() && buf.iter().all(|&b| b == 0)
}
