//! The GUID partition table: header at LBA 1 (backup at the last LBA) and
//! the partition entry array it points to.
//!
//! The headers are parsed and validated here, the entry array by `gpt`.
//! `gpt::GptConfig::open_from_device` is not used on source disks because,
//! fed a header with a valid CRC, it `assert!`s that the entry size is 128
//! (a panic on crafted input) and allocates `num_parts * part_size` bytes
//! unchecked (up to 512 GiB from one on-disk u32); and when the primary
//! header is fine but its entry array is damaged it fails instead of using
//! the backup array. So we validate both headers ourselves, bound the entry
//! array, and only then hand a header to `gpt::partition::file_read_partitions`.

use super::cursor::Cursor;
use super::{Partition, PartitionError, Table, gpt_types, lba_bytes};
use crate::source::device::{ReadAt, read_vec};
use gpt::disk::LogicalBlockSize;
use gpt::header::Header;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const HEADER_MIN: u32 = 92;
const ENTRY_SIZE: u32 = 128;
/// 8192 entries; the spec's minimum array is 128 entries, nobody uses more
/// than a few hundred. Bounds the allocation in `file_read_partitions`.
const MAX_ENTRY_ARRAY: u64 = 1 << 20;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Whether a GPT header signature sits at LBA 1 or at the last LBA.
pub fn has_signature(disk: &dyn ReadAt, sector_size: u32) -> bool {
    let mut sig = [0u8; 8];
    let last = last_lba(disk, sector_size);
    [Some(1), last].into_iter().flatten().any(|lba| {
        lba_bytes(lba, sector_size)
            .is_some_and(|off| disk.read_exact_at(off, &mut sig).is_ok() && &sig == SIGNATURE)
    })
}

fn last_lba(disk: &dyn ReadAt, sector_size: u32) -> Option<u64> {
    (disk.size() / u64::from(sector_size)).checked_sub(1)
}

fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}
fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}
fn le64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Reads and validates the GPT header at `lba`. The error is a reason
/// phrase; the caller adds device and offset.
pub fn read_header(disk: &dyn ReadAt, lba: u64, sector_size: u32) -> Result<Header, String> {
    let off = lba_bytes(lba, sector_size).ok_or("offset overflows")?;
    let buf = read_vec(disk, off, sector_size as usize).map_err(|e| match e {
        crate::source::device::DeviceError::OutOfRange { .. } => {
            "it lies past the end of the disk".to_string()
        }
        other => other.to_string(),
    })?;
    if buf.get(..8) != Some(&SIGNATURE[..]) {
        return Err("no \"EFI PART\" signature".to_string());
    }
    let header_size = le32(&buf, 12);
    if header_size < HEADER_MIN || header_size > sector_size {
        return Err(format!(
            "header size {header_size} is outside {HEADER_MIN}..={sector_size}"
        ));
    }
    let stored = le32(&buf, 16);
    let mut copy = buf.get(..header_size as usize).unwrap_or(&[]).to_vec();
    if let Some(crc_field) = copy.get_mut(16..20) {
        crc_field.fill(0);
    }
    let computed = CRC32.checksum(&copy);
    if stored != computed {
        return Err(format!(
            "header CRC32 mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
        ));
    }
    let current_lba = le64(&buf, 24);
    if current_lba != lba {
        return Err(format!("header says it is at LBA {current_lba}"));
    }
    let num_parts = le32(&buf, 80);
    let part_size = le32(&buf, 84);
    if part_size != ENTRY_SIZE {
        return Err(format!(
            "partition entry size {part_size} is not {ENTRY_SIZE}"
        ));
    }
    let array_len = u64::from(num_parts) * u64::from(ENTRY_SIZE);
    if array_len > MAX_ENTRY_ARRAY {
        return Err(format!(
            "{num_parts} partition entries are more than p2xen accepts ({})",
            MAX_ENTRY_ARRAY / u64::from(ENTRY_SIZE)
        ));
    }
    let part_start = le64(&buf, 72);
    let array_end = lba_bytes(part_start, sector_size).and_then(|s| s.checked_add(array_len));
    if array_end.is_none_or(|end| end > disk.size()) {
        return Err(format!(
            "partition entry array at LBA {part_start} runs past the end of the disk"
        ));
    }
    let guid_tail: [u8; 8] = buf
        .get(64..72)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 8]);
    Ok(Header {
        signature: "EFI PART".to_string(),
        revision: (le16(&buf, 10), le16(&buf, 8)),
        header_size_le: header_size,
        crc32: stored,
        reserved: le32(&buf, 20),
        current_lba,
        backup_lba: le64(&buf, 32),
        first_usable: le64(&buf, 40),
        last_usable: le64(&buf, 48),
        disk_guid: uuid::Uuid::from_fields(
            le32(&buf, 56),
            le16(&buf, 60),
            le16(&buf, 62),
            &guid_tail,
        ),
        part_start,
        num_parts,
        part_size,
        crc32_parts: le32(&buf, 88),
    })
}

type Entries = std::collections::BTreeMap<u32, gpt::partition::Partition>;

fn read_entries(disk: &dyn ReadAt, header: &Header, sector_size: u32) -> Result<Entries, String> {
    let lb = if sector_size == 4096 {
        LogicalBlockSize::Lb4096
    } else {
        LogicalBlockSize::Lb512
    };
    gpt::partition::file_read_partitions(&mut Cursor::new(disk), header, lb)
        .map_err(|e| e.to_string())
}

/// Reads the GPT of `disk` into `table`, preferring the primary header and
/// entry array and falling back to the backup ones with a warning.
pub fn read_into(disk: &dyn ReadAt, sector_size: u32, table: &mut Table) {
    let path = disk.name().to_path_buf();
    let name = disk.name().display().to_string();
    let ss = u64::from(sector_size);
    let Some(last) = last_lba(disk, sector_size) else {
        return;
    };
    let primary = read_header(disk, 1, sector_size);
    // The backup should be at the last LBA; a primary that says otherwise
    // (a disk grown after partitioning) is believed when it is in range.
    let backup_lba = match &primary {
        Ok(h) if h.backup_lba > 1 && h.backup_lba <= last => h.backup_lba,
        _ => last,
    };
    let backup = read_header(disk, backup_lba, sector_size);
    let primary_off = ss;
    let backup_off = backup_lba.saturating_mul(ss);
    let (header, other) = match (primary, backup) {
        (Err(p), Err(b)) => {
            table.errors.push(PartitionError::GptUnreadable {
                path,
                primary_offset: primary_off,
                primary: p,
                backup_offset: backup_off,
                backup: b,
            });
            return;
        }
        (Err(p), Ok(b)) => {
            table.warnings.push(format!(
                "{name}: primary GPT header at offset {primary_off} is damaged ({p}); using the backup header at offset {backup_off}"
            ));
            (b, None)
        }
        (Ok(p), Err(b)) => {
            table.warnings.push(format!(
                "{name}: backup GPT header at offset {backup_off} is damaged or missing ({b}); the primary header is used (truncated image?)"
            ));
            (p, None)
        }
        (Ok(p), Ok(b)) => (p, Some(b)),
    };
    table.disk_id = Some(header.disk_guid.hyphenated().to_string().to_uppercase());
    let entries = match read_entries(disk, &header, sector_size) {
        Ok(e) => e,
        Err(first) => {
            let first_off = header.part_start.saturating_mul(ss);
            let fallback = other
                .as_ref()
                .map(|o| (o, read_entries(disk, o, sector_size)));
            match fallback {
                Some((o, Ok(e))) => {
                    table.warnings.push(format!(
                        "{name}: GPT partition entries at offset {first_off} are damaged ({first}); using the backup entries at offset {}",
                        o.part_start.saturating_mul(ss)
                    ));
                    e
                }
                other_result => {
                    let (backup_offset, backup) = match other_result {
                        Some((o, Err(e))) => (o.part_start.saturating_mul(ss), e),
                        _ => (0, "no usable backup header".to_string()),
                    };
                    table.errors.push(PartitionError::GptEntries {
                        path,
                        primary_offset: first_off,
                        primary: first,
                        backup_offset,
                        backup,
                    });
                    return;
                }
            }
        }
    };
    for (number, e) in entries {
        if !e.is_used() {
            continue;
        }
        let in_usable = e.first_lba >= header.first_usable
            && e.last_lba <= header.last_usable
            && e.last_lba >= e.first_lba;
        if !in_usable {
            table.errors.push(PartitionError::GptEntryRange {
                path: path.clone(),
                number,
                first_usable: header.first_usable,
                last_usable: header.last_usable,
            });
        }
        let Some(sectors) = e
            .last_lba
            .checked_sub(e.first_lba)
            .and_then(|n| n.checked_add(1))
        else {
            continue;
        };
        let (Some(start_bytes), Some(size_bytes)) = (
            lba_bytes(e.first_lba, sector_size),
            lba_bytes(sectors, sector_size),
        ) else {
            continue;
        };
        let type_id = e
            .part_type_guid
            .guid
            .hyphenated()
            .to_string()
            .to_uppercase();
        table.partitions.push(Partition {
            number,
            start_lba: e.first_lba,
            sectors,
            start_bytes,
            size_bytes,
            type_name: gpt_types::name(&type_id).to_string(),
            type_id,
            name: (!e.name.is_empty()).then(|| e.name.clone()),
            uuid: Some(e.part_guid.hyphenated().to_string().to_uppercase()),
            flags: gpt_types::attribute_names(e.flags),
            bootable: e.flags & (1 << 2) != 0,
            logical: false,
            extended: false,
        });
    }
}
