//! Partition tables: MBR (primary, extended and logical partitions), GPT
//! (with fallback to the backup header), protective/hybrid MBRs, and the GRUB
//! boot code in the MBR and the post-MBR gap.
//!
//! [`read_table`] never gives up on the first problem: partitions that could
//! be read are returned together with typed errors for what could not, so
//! that inspection can carry on and report everything at once.

mod bootcode;
mod cursor;
mod ebr;
mod gpt;
mod gpt_types;
mod mbr;
mod mbr_types;

use crate::source::device::{DeviceError, ReadAt, read_vec};
use std::path::PathBuf;

pub use bootcode::BootCode;

/// Which partition table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
    /// No partition table: the disk is one filesystem (or empty).
    None,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Mbr => "mbr",
            TableKind::Gpt => "gpt",
            TableKind::None => "none",
        }
    }
}

/// The MBR in front of a GPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmbrKind {
    /// One 0xEE entry and nothing else, as the UEFI spec wants.
    Protective,
    /// 0xEE plus MBR entries that mirror GPT partitions (old Macs, some BIOS
    /// installs); the GPT is authoritative.
    Hybrid,
    /// No valid MBR at all in front of the GPT.
    Missing,
}

impl PmbrKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PmbrKind::Protective => "protective",
            PmbrKind::Hybrid => "hybrid",
            PmbrKind::Missing => "missing",
        }
    }
}

/// One partition, in bytes and sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Linux numbering: MBR primaries 1-4, logicals from 5; GPT entry index + 1.
    pub number: u32,
    pub start_lba: u64,
    pub sectors: u64,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// As `sfdisk -J` prints it: MBR hex id ("83", "5"), GPT type GUID upper case.
    pub type_id: String,
    pub type_name: String,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique partition GUID.
    pub uuid: Option<String>,
    /// MBR: "boot"; GPT: attribute names ("required", "legacy_bios_bootable", ...).
    pub flags: Vec<String>,
    pub bootable: bool,
    pub logical: bool,
    /// An MBR extended partition: a container of logicals, holds no filesystem.
    pub extended: bool,
}

impl Partition {
    pub fn end_bytes(&self) -> u64 {
        self.start_bytes.saturating_add(self.size_bytes)
    }
}

/// What [`read_table`] found.
#[derive(Debug)]
pub struct Table {
    pub kind: TableKind,
    pub sector_size: u32,
    /// MBR disk signature ("0x1234abcd") or GPT disk GUID.
    pub disk_id: Option<String>,
    /// For GPT disks: the MBR in front of it.
    pub pmbr: Option<PmbrKind>,
    pub partitions: Vec<Partition>,
    pub boot_code: Option<BootCode>,
    /// Readable but suspicious (backup GPT header used, hybrid MBR, ...).
    pub warnings: Vec<String>,
    /// Parts of the table that could not be read or make no sense.
    pub errors: Vec<PartitionError>,
}

/// Problems with a partition table. Each names the device and the byte
/// offset (or partition number) where it is.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{path}: unsupported logical sector size {sector_size} (512 or 4096 expected)")]
    SectorSize { path: PathBuf, sector_size: u32 },
    #[error("{path}: the MBR at offset 0 is not a valid partition table: {reason}")]
    MbrInvalid { path: PathBuf, reason: String },
    #[error("{path}: partition {number}: the MBR entry is invalid: {reason}")]
    MbrEntry {
        path: PathBuf,
        number: u32,
        reason: String,
    },
    #[error(
        "{path}: extended boot record {index} at offset {offset} is invalid: {reason}; logical partitions after it are not read"
    )]
    EbrInvalid {
        path: PathBuf,
        index: usize,
        offset: u64,
        reason: String,
    },
    #[error(
        "{path}: the EBR chain loops: link {index} points back to the extended boot record at offset {offset}, already read; the chain is cut there"
    )]
    EbrLoop {
        path: PathBuf,
        index: usize,
        offset: u64,
    },
    #[error("{path}: more than {max} logical partitions in the EBR chain; the rest is ignored")]
    EbrChainTooLong { path: PathBuf, max: usize },
    #[error(
        "{path}: partition {number} (bytes {start}..{end}) extends past the end of the disk ({disk_size} bytes); is the image truncated?"
    )]
    PastEnd {
        path: PathBuf,
        number: u32,
        start: u64,
        end: u64,
        disk_size: u64,
    },
    #[error(
        "{path}: logical partition {number} (bytes {start}..{end}) lies outside its extended partition (bytes {ext_start}..{ext_end})"
    )]
    OutsideExtended {
        path: PathBuf,
        number: u32,
        start: u64,
        end: u64,
        ext_start: u64,
        ext_end: u64,
    },
    #[error(
        "{path}: partitions {a} and {b} overlap (bytes {overlap_start}..{overlap_end} belong to both)"
    )]
    Overlap {
        path: PathBuf,
        a: u32,
        b: u32,
        overlap_start: u64,
        overlap_end: u64,
    },
    #[error(
        "{path}: GPT partition {number} is outside the usable area (LBA {first_usable}..={last_usable}) or ends before it starts"
    )]
    GptEntryRange {
        path: PathBuf,
        number: u32,
        first_usable: u64,
        last_usable: u64,
    },
    #[error(
        "{path}: no readable GPT: primary header at offset {primary_offset}: {primary}; backup header at offset {backup_offset}: {backup}"
    )]
    GptUnreadable {
        path: PathBuf,
        primary_offset: u64,
        primary: String,
        backup_offset: u64,
        backup: String,
    },
    #[error(
        "{path}: GPT partition entries unreadable: primary array at offset {primary_offset}: {primary}; backup array at offset {backup_offset}: {backup}"
    )]
    GptEntries {
        path: PathBuf,
        primary_offset: u64,
        primary: String,
        backup_offset: u64,
        backup: String,
    },
}

impl PartitionError {
    /// The partition a problem belongs to, if it belongs to one.
    pub fn partition(&self) -> Option<u32> {
        match self {
            PartitionError::MbrEntry { number, .. }
            | PartitionError::PastEnd { number, .. }
            | PartitionError::OutsideExtended { number, .. }
            | PartitionError::GptEntryRange { number, .. } => Some(*number),
            PartitionError::Overlap { b, .. } => Some(*b),
            _ => None,
        }
    }
}

/// GPT's partition type for the BIOS boot partition, where GRUB puts core.img.
pub const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";

/// Reads the partition table of `disk`, whose logical sectors are
/// `sector_size` bytes (512 for image files unless known otherwise).
///
/// `Err` only when the disk cannot be read at all; a damaged table yields
/// `Ok` with what could be read and `errors` saying what could not.
pub fn read_table(disk: &dyn ReadAt, sector_size: u32) -> Result<Table, PartitionError> {
    if sector_size != 512 && sector_size != 4096 {
        return Err(PartitionError::SectorSize {
            path: disk.name().to_path_buf(),
            sector_size,
        });
    }
    let mut table = Table {
        kind: TableKind::None,
        sector_size,
        disk_id: None,
        pmbr: None,
        partitions: Vec::new(),
        boot_code: None,
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    // A disk shorter than one sector has no table; the whole-disk probe
    // decides whether it holds anything.
    if disk.size() < u64::from(sector_size) {
        return Ok(table);
    }
    let sector0 = read_vec(disk, 0, 512)?;
    let mbr = mbr::read(disk, &sector0);
    let gpt_signature = gpt::has_signature(disk, sector_size);
    match mbr {
        mbr::MbrRead::Valid(m) if m.has_gpt_entry() => {
            table.pmbr = Some(if m.is_hybrid() {
                table.warnings.push(format!(
                    "{}: hybrid MBR: besides the protective 0xEE entry the MBR describes partitions of its own; the GPT is used",
                    disk.name().display()
                ));
                PmbrKind::Hybrid
            } else {
                PmbrKind::Protective
            });
            table.kind = TableKind::Gpt;
            gpt::read_into(disk, sector_size, &mut table);
        }
        mbr::MbrRead::Valid(m) => {
            table.kind = TableKind::Mbr;
            mbr::read_into(disk, sector_size, &m, &mut table);
        }
        mbr::MbrRead::Invalid(reason) if !gpt_signature => {
            table.errors.push(PartitionError::MbrInvalid {
                path: disk.name().to_path_buf(),
                reason,
            });
        }
        other => {
            if gpt_signature {
                // A GPT without a (valid) protective MBR: still a GPT, but
                // BIOS tools may overwrite it.
                table.pmbr = Some(PmbrKind::Missing);
                table.warnings.push(format!(
                    "{}: GPT found but the MBR at offset 0 is not a protective MBR ({}); reading the GPT anyway",
                    disk.name().display(),
                    match other {
                        mbr::MbrRead::Invalid(r) => r,
                        _ => "no 0x55AA signature".to_string(),
                    }
                ));
                table.kind = TableKind::Gpt;
                gpt::read_into(disk, sector_size, &mut table);
            }
        }
    }
    check_bounds(disk, &mut table);
    check_overlaps(disk, &mut table);
    let boot = bootcode::detect(disk, &sector0, &table);
    if let Some(b) = &boot {
        table.warnings.extend(b.warnings.iter().cloned());
    }
    table.boot_code = boot;
    Ok(table)
}

fn check_bounds(disk: &dyn ReadAt, table: &mut Table) {
    for p in &table.partitions {
        if p.end_bytes() > disk.size() {
            table.errors.push(PartitionError::PastEnd {
                path: disk.name().to_path_buf(),
                number: p.number,
                start: p.start_bytes,
                end: p.end_bytes(),
                disk_size: disk.size(),
            });
        }
    }
}

/// Two partitions may share bytes only when one is the extended container
/// of the other; anything else means writing one corrupts the other.
fn check_overlaps(disk: &dyn ReadAt, table: &mut Table) {
    let parts = &table.partitions;
    for (i, a) in parts.iter().enumerate() {
        for b in parts.iter().skip(i + 1) {
            if (a.extended && b.logical) || (b.extended && a.logical) {
                continue;
            }
            let start = a.start_bytes.max(b.start_bytes);
            let end = a.end_bytes().min(b.end_bytes());
            if start < end {
                table.errors.push(PartitionError::Overlap {
                    path: disk.name().to_path_buf(),
                    a: a.number.min(b.number),
                    b: a.number.max(b.number),
                    overlap_start: start,
                    overlap_end: end,
                });
            }
        }
    }
}

/// `lba * sector_size`, `None` on overflow.
fn lba_bytes(lba: u64, sector_size: u32) -> Option<u64> {
    lba.checked_mul(u64::from(sector_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;

    const SS: usize = 512;

    fn mbr_entry(disk: &mut [u8], at: usize, boot: u8, sys: u8, lba: u32, sectors: u32) {
        disk[at] = boot;
        disk[at + 4] = sys;
        disk[at + 8..at + 12].copy_from_slice(&lba.to_le_bytes());
        disk[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
    }

    fn signature(disk: &mut [u8], sector_off: usize) {
        disk[sector_off + 510] = 0x55;
        disk[sector_off + 511] = 0xaa;
    }

    /// A GPT header at `lba` with a correct CRC and the given array geometry.
    fn gpt_header(disk: &mut [u8], lba: u64, num_parts: u32, part_size: u32) {
        let o = lba as usize * SS;
        let h = &mut disk[o..o + 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&lba.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&100u64.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&num_parts.to_le_bytes());
        h[84..88].copy_from_slice(&part_size.to_le_bytes());
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    fn protective(disk: &mut [u8]) {
        mbr_entry(disk, 446, 0, 0xee, 1, u32::MAX);
        signature(disk, 0);
    }

    #[test]
    fn gpt_entry_size_other_than_128_is_an_error_not_a_panic() {
        // gpt's file_read_partitions would assert_eq!(part_size, 128).
        let mut d = vec![0u8; 128 * SS];
        protective(&mut d);
        gpt_header(&mut d, 1, 4, 256);
        let t = read_table(&MemDisk::new(d), 512).unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        let msg = t.errors[0].to_string();
        assert!(
            msg.contains("primary header at offset 512: partition entry size 256 is not 128"),
            "{msg}"
        );
    }

    #[test]
    fn huge_gpt_entry_count_is_refused_before_allocating() {
        let mut d = vec![0u8; 128 * SS];
        protective(&mut d);
        gpt_header(&mut d, 1, u32::MAX, 128);
        let t = read_table(&MemDisk::new(d), 512).unwrap();
        let msg = t.errors[0].to_string();
        assert!(
            msg.contains("4294967295 partition entries are more than p2xen accepts (8192)"),
            "{msg}"
        );
    }

    #[test]
    fn gpt_entry_array_past_the_end_is_refused() {
        // 128 entries need 32 sectors from LBA 2; the disk has 20.
        let mut d = vec![0u8; 20 * SS];
        protective(&mut d);
        gpt_header(&mut d, 1, 128, 128);
        let t = read_table(&MemDisk::new(d), 512).unwrap();
        assert!(
            t.errors[0]
                .to_string()
                .contains("runs past the end of the disk")
        );
    }

    #[test]
    fn mbr_entry_with_u32_max_start_does_not_overflow() {
        let mut d = vec![0u8; 4 * SS];
        mbr_entry(&mut d, 446, 0x80, 0x83, u32::MAX, u32::MAX);
        signature(&mut d, 0);
        let t = read_table(&MemDisk::new(d), 4096).unwrap_or_else(|e| panic!("{e}"));
        // 4 sectors of 512 are less than one 4096-byte sector: no table.
        assert_eq!(t.kind, TableKind::None);
        let mut d = vec![0u8; 4 * SS];
        mbr_entry(&mut d, 446, 0x80, 0x83, u32::MAX, u32::MAX);
        signature(&mut d, 0);
        let t = read_table(&MemDisk::new(d), 512).unwrap();
        assert_eq!(t.partitions[0].start_lba, u64::from(u32::MAX));
        assert!(matches!(
            t.errors[0],
            PartitionError::PastEnd { number: 1, .. }
        ));
    }

    #[test]
    fn endless_ebr_chain_is_bounded() {
        // An extended partition of 600 sectors, each an EBR holding a
        // 1-sector logical and linking to the next sector.
        let n = 600usize;
        let mut d = vec![0u8; (n + 2) * SS];
        mbr_entry(&mut d, 446, 0, 0x05, 1, n as u32);
        signature(&mut d, 0);
        for i in 0..n {
            let o = (1 + i) * SS;
            mbr_entry(&mut d, o + 446, 0, 0x83, 0, 1);
            mbr_entry(&mut d, o + 462, 0, 0x05, i as u32 + 1, 1);
            signature(&mut d, o);
        }
        let t = read_table(&MemDisk::new(d), 512).unwrap();
        assert!(t.errors.iter().any(|e| matches!(
            e,
            PartitionError::EbrChainTooLong {
                max: ebr::MAX_LOGICAL,
                ..
            }
        )));
        assert_eq!(
            t.partitions.iter().filter(|p| p.logical).count(),
            ebr::MAX_LOGICAL
        );
    }

    #[test]
    fn logical_outside_its_extended_partition_is_an_error() {
        let mut d = vec![0u8; 64 * SS];
        mbr_entry(&mut d, 446, 0, 0x05, 8, 8);
        signature(&mut d, 0);
        mbr_entry(&mut d, 8 * SS + 446, 0, 0x83, 2, 20);
        signature(&mut d, 8 * SS);
        let t = read_table(&MemDisk::new(d), 512).unwrap();
        assert_eq!(t.partitions.len(), 2);
        let msg = t.errors[0].to_string();
        assert!(
            msg.contains("logical partition 5 (bytes 5120..15360) lies outside its extended partition (bytes 4096..8192)"),
            "{msg}"
        );
    }

    #[test]
    fn blank_and_tiny_disks_have_no_table() {
        let t = read_table(&MemDisk::new(vec![0; 100]), 512).unwrap();
        assert_eq!((t.kind, t.errors.len()), (TableKind::None, 0));
        let t = read_table(&MemDisk::new(vec![0; 8 * SS]), 512).unwrap();
        assert_eq!((t.kind, t.errors.len()), (TableKind::None, 0));
        assert!(matches!(
            read_table(&MemDisk::new(vec![0; 8 * SS]), 1024),
            Err(PartitionError::SectorSize {
                sector_size: 1024,
                ..
            })
        ));
    }
}
