//! Boot code in the MBR's code area and where it loads the rest from: GRUB 2
//! boot.img → core.img (in the post-MBR gap of MBR disks, or in the BIOS boot
//! partition of GPT disks), GRUB legacy stage1 → stage1.5/stage2.
//!
//! Written by hand: no crate identifies boot loaders. The offsets are those
//! of GRUB's `boot.S` (GRUB_BOOT_MACHINE_KERNEL_SECTOR = 0x5c) and legacy
//! `stage1.S` (version 3.2 at 0x3e, stage2 sector at 0x44).

use super::{BIOS_BOOT_GUID, Table, lba_bytes};
use crate::source::device::ReadAt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCode {
    /// "grub2", "grub-legacy", or "grub2-core" (core.img without boot.img).
    pub loader: String,
    /// Where the next stage is, e.g. "core.img at LBA 1 (post-MBR gap)".
    pub description: String,
    /// Next-stage LBA as the boot code says.
    pub next_stage_lba: Option<u64>,
    pub warnings: Vec<String>,
}

const GRUB2_KERNEL_SECTOR: usize = 0x5c;
const LEGACY_VERSION: usize = 0x3e;
const LEGACY_STAGE2_SECTOR: usize = 0x44;
/// diskboot.img, the first sector of core.img, prints this.
const CORE_MARKER: &[u8] = b"loading";
/// GRUB legacy's start.S (first sector of stage1.5/stage2).
const LEGACY_MARKER: &[u8] = b"Loading stage";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn sector_contains(disk: &dyn ReadAt, lba: u64, ss: u32, needle: &[u8]) -> bool {
    let mut buf = [0u8; 512];
    lba_bytes(lba, ss).is_some_and(|off| disk.read_exact_at(off, &mut buf).is_ok())
        && contains(&buf, needle)
}

/// Where `lba` lies: in the post-MBR gap, or in which partition.
fn place(table: &Table, lba: u64) -> String {
    let first_start = table
        .partitions
        .iter()
        .map(|p| p.start_lba)
        .min()
        .unwrap_or(u64::MAX);
    if lba >= 1 && lba < first_start && table.kind != super::TableKind::Gpt {
        return "post-MBR gap".to_string();
    }
    match table
        .partitions
        .iter()
        .find(|p| !p.extended && lba >= p.start_lba && lba < p.start_lba.saturating_add(p.sectors))
    {
        Some(p) if p.type_id == BIOS_BOOT_GUID => format!("BIOS boot partition {}", p.number),
        Some(p) => format!("partition {}", p.number),
        None => "outside any partition".to_string(),
    }
}

pub fn detect(disk: &dyn ReadAt, sector0: &[u8], table: &Table) -> Option<BootCode> {
    let ss = table.sector_size;
    let name = disk.name().display();
    let code = sector0.get(..440)?;
    if contains(code, b"GRUB") {
        let legacy = code.get(LEGACY_VERSION..LEGACY_VERSION + 2) == Some(&[3, 2][..]);
        let (loader, lba, marker, stage) = if legacy {
            let lba = code
                .get(LEGACY_STAGE2_SECTOR..LEGACY_STAGE2_SECTOR + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
                .map(u64::from)?;
            ("grub-legacy", lba, LEGACY_MARKER, "stage1.5/stage2")
        } else {
            let lba = code
                .get(GRUB2_KERNEL_SECTOR..GRUB2_KERNEL_SECTOR + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)?;
            ("grub2", lba, CORE_MARKER, "core.img")
        };
        let mut warnings = Vec::new();
        let found = sector_contains(disk, lba, ss, marker);
        if !found {
            warnings.push(format!(
                "{name}: {loader} boot code in the MBR loads {stage} from LBA {lba}, but that sector holds no {stage}; the disk will not boot by BIOS"
            ));
        }
        return Some(BootCode {
            loader: loader.to_string(),
            description: format!(
                "{loader} boot code in MBR; {stage} at LBA {lba} ({}){}",
                place(table, lba),
                if found { "" } else { ", not found" }
            ),
            next_stage_lba: Some(lba),
            warnings,
        });
    }
    // A BIOS boot partition with core.img but foreign (or no) MBR code.
    let bios_boot = table.partitions.iter().find(|p| {
        p.type_id == BIOS_BOOT_GUID && sector_contains(disk, p.start_lba, ss, CORE_MARKER)
    })?;
    Some(BootCode {
        loader: "grub2-core".to_string(),
        description: format!(
            "GRUB core.img in BIOS boot partition {} (no GRUB boot code in the MBR)",
            bios_boot.number
        ),
        next_stage_lba: Some(bios_boot.start_lba),
        warnings: Vec::new(),
    })
}
