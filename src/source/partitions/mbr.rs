//! The master boot record: four primary entries at offset 446, decoded by
//! `mbrman`. Logical partitions are in `ebr.rs`.

use super::cursor::Cursor;
use super::{Partition, PartitionError, Table, ebr, lba_bytes, mbr_types};
use crate::source::device::{ReadAt, Window};
use mbrman::{MBRHeader, MBRPartitionEntry};

pub const GPT_PROTECTIVE: u8 = 0xee;

/// An MBR header that decoded cleanly.
pub struct Mbr {
    pub header: MBRHeader,
}

pub enum MbrRead {
    Valid(Box<Mbr>),
    /// 0x55AA present but the entries are not a partition table.
    Invalid(String),
    /// No 0x55AA boot signature: no MBR at all.
    NoSignature,
}

/// Decodes the 512-byte sector at `offset` of `disk` as an MBR-formatted
/// header (the MBR itself or an EBR, which has the same layout).
pub fn decode(disk: &dyn ReadAt, offset: u64) -> Result<MBRHeader, String> {
    let sector = Window::new(disk, offset, 512);
    MBRHeader::read_from(&mut Cursor::new(&sector)).map_err(|e| match e {
        mbrman::Error::InvalidSignature => "no 0x55AA boot signature".to_string(),
        mbrman::Error::InvalidBootFlag => {
            "an entry has a boot flag other than 0x00 or 0x80".to_string()
        }
        other => other.to_string(),
    })
}

pub fn read(disk: &dyn ReadAt, sector0: &[u8]) -> MbrRead {
    if sector0.get(510..512) != Some(&[0x55, 0xaa][..]) {
        return MbrRead::NoSignature;
    }
    match decode(disk, 0) {
        Ok(header) => MbrRead::Valid(Box::new(Mbr { header })),
        Err(reason) => MbrRead::Invalid(reason),
    }
}

impl Mbr {
    fn used(&self) -> impl Iterator<Item = (usize, &MBRPartitionEntry)> {
        self.header.iter().filter(|(_, e)| e.is_used())
    }

    pub fn has_gpt_entry(&self) -> bool {
        self.used().any(|(_, e)| e.sys == GPT_PROTECTIVE)
    }

    pub fn is_hybrid(&self) -> bool {
        self.has_gpt_entry() && self.used().any(|(_, e)| e.sys != GPT_PROTECTIVE)
    }
}

/// The byte range of an entry whose LBAs are relative to `base_lba`.
pub fn entry_partition(
    e: &MBRPartitionEntry,
    base_lba: u64,
    number: u32,
    sector_size: u32,
    logical: bool,
) -> Option<Partition> {
    let start_lba = base_lba.checked_add(u64::from(e.starting_lba))?;
    let sectors = u64::from(e.sectors);
    Some(Partition {
        number,
        start_lba,
        sectors,
        start_bytes: lba_bytes(start_lba, sector_size)?,
        size_bytes: lba_bytes(sectors, sector_size)?,
        type_id: format!("{:x}", e.sys),
        type_name: mbr_types::name(e.sys).to_string(),
        name: None,
        uuid: None,
        flags: if e.is_active() {
            vec!["boot".to_string()]
        } else {
            Vec::new()
        },
        bootable: e.is_active(),
        logical,
        extended: e.is_extended(),
    })
}

/// Fills `table` with the primary partitions and the logical ones.
pub fn read_into(disk: &dyn ReadAt, sector_size: u32, mbr: &Mbr, table: &mut Table) {
    table.disk_id = Some(format!(
        "0x{:08x}",
        u32::from_le_bytes(mbr.header.disk_signature)
    ));
    let path = disk.name().to_path_buf();
    let mut extended: Option<Partition> = None;
    for (i, e) in mbr.used() {
        #[expect(clippy::cast_possible_truncation, reason = "MBR indexes are 1..=4")]
        let number = i as u32;
        if e.sectors == 0 {
            table.errors.push(PartitionError::MbrEntry {
                path: path.clone(),
                number,
                reason: format!("type 0x{:02x} with a size of 0 sectors", e.sys),
            });
            continue;
        }
        if e.starting_lba == 0 {
            table.errors.push(PartitionError::MbrEntry {
                path: path.clone(),
                number,
                reason: "starts at LBA 0, on top of the MBR itself".to_string(),
            });
            continue;
        }
        // u32 LBAs times a sector size of at most 4096 fit in u64.
        let Some(p) = entry_partition(e, 0, number, sector_size, false) else {
            continue;
        };
        if p.extended {
            if extended.is_some() {
                table.errors.push(PartitionError::MbrEntry {
                    path: path.clone(),
                    number,
                    reason: "a second extended partition; only the first one is followed"
                        .to_string(),
                });
            } else {
                extended = Some(p.clone());
            }
        }
        table.partitions.push(p);
    }
    if let Some(ext) = extended {
        ebr::read_chain(disk, sector_size, &ext, table);
    }
}
