//! The USB disk image: a GPT with one EFI System Partition that both firmware
//! kinds boot.
//!
//! UEFI finds `\EFI\BOOT\BOOTX64.EFI` on the ESP. Legacy BIOS runs the boot
//! code in the protective MBR (syslinux's `gptmbr.bin`), which chain-loads the
//! partition flagged "legacy BIOS bootable" (GPT attribute bit 2), i.e. the
//! syslinux boot sector of the same ESP. sfdisk could write the table too, but
//! it cannot put boot code into the protective MBR, and keeping the layout in
//! code lets `p2xen mkimage` check the ESP against it before writing.

use super::fat_boot_sector::{BOOT_SECTOR_LEN, FatBootSector, FatBootSectorError};
use gpt::mbr::ProtectiveMBR;
use gpt::partition::PartitionAttributes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Logical sector size of the image (USB sticks and the firmware's view).
pub const SECTOR: u64 = 512;
/// The ESP starts at 1 MiB so that it is aligned to flash erase blocks.
pub const ESP_FIRST_LBA: u64 = 2048;
/// Room after the ESP for the backup GPT (33 sectors), rounded up to 1 MiB.
pub const TAIL_SECTORS: u64 = 2048;
/// Upper bound of the ESP image: far above what p2xen needs, below anything a
/// protective MBR cannot describe.
pub const MAX_ESP_BYTES: u64 = 2 << 30;
/// GPT partition name of the ESP; the live image recognises its boot medium by it.
pub const ESP_NAME: &str = "P2XEN-BOOT";
/// The part of the MBR that holds boot code.
pub const BOOT_CODE_LEN: usize = 440;

/// Errors while writing the USB image; every one names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum UsbImageError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error(
        "{path}: ESP image is {size} bytes; it must be a non-empty multiple of 512 and at most {MAX_ESP_BYTES}"
    )]
    EspSize { path: PathBuf, size: u64 },
    #[error("{path}: ESP image has no usable FAT boot sector: {reason}")]
    EspNotFat {
        path: PathBuf,
        reason: FatBootSectorError,
    },
    #[error(
        "{path}: FAT says the file system starts at sector {found}, the image puts it at {ESP_FIRST_LBA}; create it with `mkfs.vfat -h {ESP_FIRST_LBA}`"
    )]
    EspHiddenSectors { path: PathBuf, found: u32 },
    #[error(
        "{path}: FAT file system spans {fat_sectors} sectors but the image file holds only {file_sectors}"
    )]
    EspTruncated {
        path: PathBuf,
        fat_sectors: u32,
        file_sectors: u64,
    },
    #[error(
        "{path}: MBR boot code is {len} bytes, at most {BOOT_CODE_LEN} fit (use syslinux's gptmbr.bin)"
    )]
    BootCodeSize { path: PathBuf, len: u64 },
    #[error("{path}: writing the GPT failed: {detail}")]
    Gpt { path: PathBuf, detail: String },
}

/// Where things ended up in the written image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbImage {
    pub size_bytes: u64,
    pub esp_first_lba: u64,
    pub esp_sectors: u64,
}

/// Inputs of [`write_usb_image`].
#[derive(Debug, Clone)]
pub struct UsbImageSpec {
    /// A FAT image made with `mkfs.vfat -h 2048`, boot loaders already installed.
    pub esp: PathBuf,
    /// MBR boot code for legacy BIOS, normally `/usr/lib/syslinux/mbr/gptmbr.bin`.
    pub boot_code: PathBuf,
    /// The image to write; it is replaced atomically (written to `OUT.tmp`, renamed).
    pub out: PathBuf,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> UsbImageError + 'a {
    move |source| UsbImageError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Sectors the ESP occupies, after checking the ESP image fits this layout.
fn check_esp(path: &Path, esp: &mut File) -> Result<u64, UsbImageError> {
    let size = esp.metadata().map_err(io_err(path, "stat"))?.len();
    if size == 0 || size % SECTOR != 0 || size > MAX_ESP_BYTES {
        return Err(UsbImageError::EspSize {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut sector = [0u8; BOOT_SECTOR_LEN];
    esp.read_exact(&mut sector)
        .map_err(io_err(path, "read boot sector"))?;
    let bs = FatBootSector::parse(&sector).map_err(|reason| UsbImageError::EspNotFat {
        path: path.to_path_buf(),
        reason,
    })?;
    if u64::from(bs.hidden_sectors) != ESP_FIRST_LBA {
        return Err(UsbImageError::EspHiddenSectors {
            path: path.to_path_buf(),
            found: bs.hidden_sectors,
        });
    }
    let file_sectors = size / SECTOR;
    if u64::from(bs.total_sectors) > file_sectors {
        return Err(UsbImageError::EspTruncated {
            path: path.to_path_buf(),
            fat_sectors: bs.total_sectors,
            file_sectors,
        });
    }
    esp.rewind().map_err(io_err(path, "seek"))?;
    Ok(file_sectors)
}

fn read_boot_code(path: &Path) -> Result<[u8; BOOT_CODE_LEN], UsbImageError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    if len > BOOT_CODE_LEN as u64 {
        return Err(UsbImageError::BootCodeSize {
            path: path.to_path_buf(),
            len,
        });
    }
    let mut code = [0u8; BOOT_CODE_LEN];
    let mut buf = Vec::with_capacity(BOOT_CODE_LEN);
    file.take(BOOT_CODE_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "read"))?;
    code.get_mut(..buf.len())
        .ok_or(UsbImageError::BootCodeSize {
            path: path.to_path_buf(),
            len,
        })?
        .copy_from_slice(&buf);
    Ok(code)
}

/// Writes the protective MBR (with `boot_code`) and both GPT copies onto a
/// device of `total_sectors`, with the ESP at [`ESP_FIRST_LBA`].
pub fn write_partition_table<D: gpt::DiskDevice>(
    mut device: D,
    total_sectors: u64,
    esp_sectors: u64,
    boot_code: [u8; BOOT_CODE_LEN],
) -> Result<D, String> {
    // A protective partition covers the disk up to 2 TiB; the images are far smaller.
    let pmbr_sectors = u32::try_from(total_sectors.saturating_sub(1)).unwrap_or(u32::MAX);
    let mut pmbr = ProtectiveMBR::with_lb_size(pmbr_sectors);
    pmbr.set_bootcode(boot_code);
    pmbr.overwrite_lba0(&mut device)
        .map_err(|e| format!("protective MBR: {e}"))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(device, None)
        .map_err(|e| format!("GPT header: {e}"))?;
    disk.add_partition_at(
        ESP_NAME,
        1,
        ESP_FIRST_LBA,
        esp_sectors,
        gpt::partition_types::EFI,
        PartitionAttributes::BOOTABLE.bits(),
    )
    .map_err(|e| format!("ESP at LBA {ESP_FIRST_LBA}, {esp_sectors} sectors: {e}"))?;
    disk.write().map_err(|e| format!("GPT write: {e}"))
}

/// Assembles the USB image from an ESP image and MBR boot code.
pub fn write_usb_image(spec: &UsbImageSpec) -> Result<UsbImage, UsbImageError> {
    let mut esp = File::open(&spec.esp).map_err(io_err(&spec.esp, "open"))?;
    let esp_sectors = check_esp(&spec.esp, &mut esp)?;
    let boot_code = read_boot_code(&spec.boot_code)?;
    // Cannot overflow: esp_sectors is bounded by MAX_ESP_BYTES / SECTOR.
    let total_sectors = ESP_FIRST_LBA + esp_sectors + TAIL_SECTORS;
    let size_bytes = total_sectors * SECTOR;

    let mut tmp_name = spec.out.clone().into_os_string();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut out = OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp, "create"))?;
    out.set_len(size_bytes).map_err(io_err(&tmp, "set size"))?;
    out.seek(SeekFrom::Start(ESP_FIRST_LBA * SECTOR))
        .map_err(io_err(&tmp, "seek"))?;
    io::copy(&mut esp, &mut out).map_err(io_err(&tmp, "copy ESP"))?;
    let mut out =
        write_partition_table(out, total_sectors, esp_sectors, boot_code).map_err(|detail| {
            UsbImageError::Gpt {
                path: tmp.clone(),
                detail,
            }
        })?;
    out.flush().map_err(io_err(&tmp, "flush"))?;
    out.sync_all().map_err(io_err(&tmp, "sync"))?;
    drop(out);
    std::fs::rename(&tmp, &spec.out).map_err(io_err(&spec.out, "rename into place"))?;
    Ok(UsbImage {
        size_bytes,
        esp_first_lba: ESP_FIRST_LBA,
        esp_sectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";

    fn run(cmd: &mut Command, package: &str) -> Vec<u8> {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install Debian package {package})"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// An ESP image as build/media makes it: `mkfs.vfat -C -h HIDDEN`.
    fn make_esp(dir: &Path, hidden: u32, kib: u32) -> PathBuf {
        let esp = dir.join("esp.img");
        run(
            Command::new("mkfs.vfat")
                .args(["-C", "-h", &hidden.to_string(), "-n", "P2XEN"])
                .arg(&esp)
                .arg(kib.to_string()),
            "dosfstools",
        );
        esp
    }

    #[test]
    fn writes_gpt_with_bios_bootable_esp_and_protective_mbr() {
        let dir = tempfile::tempdir().unwrap();
        let esp = make_esp(dir.path(), 2048, 4096);
        let out = dir.path().join("usb.img");
        let spec = UsbImageSpec {
            esp: esp.clone(),
            boot_code: GPTMBR.into(),
            out: out.clone(),
        };
        let img = write_usb_image(&spec).unwrap();
        assert_eq!(img.esp_sectors, 8192);
        assert_eq!(img.size_bytes, (2048 + 8192 + 2048) * 512);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len() as u64, img.size_bytes);
        assert!(!dir.path().join("usb.img.tmp").exists());

        let json = run(Command::new("sfdisk").arg("-J").arg(&out), "fdisk");
        let table: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let pt = &table["partitiontable"];
        assert_eq!(pt["label"], "gpt");
        assert_eq!(pt["sectorsize"], 512);
        let parts = pt["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["start"], 2048);
        assert_eq!(parts[0]["size"], 8192);
        assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(parts[0]["name"], ESP_NAME);
        assert_eq!(parts[0]["attrs"], "LegacyBIOSBootable");
        // The backup GPT sits in the last sector, after the ESP.
        assert_eq!(pt["lastlba"], 2048 + 8192 + 2048 - 34);

        // Protective MBR: gptmbr.bin's code, one 0xEE entry from LBA 1 to the end.
        let code = std::fs::read(GPTMBR).unwrap();
        assert_eq!(&bytes[..code.len()], &code[..]);
        let entry = &bytes[446..462];
        assert_eq!(
            entry[0], 0,
            "protective entry must not be active (UEFI spec)"
        );
        assert_eq!(entry[4], 0xEE);
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 1);
        assert_eq!(
            u64::from(u32::from_le_bytes(entry[12..16].try_into().unwrap())),
            img.size_bytes / 512 - 1
        );
        assert!(bytes[462..510].iter().all(|&b| b == 0));
        assert_eq!(&bytes[510..512], &[0x55, 0xAA]);

        // The ESP's bytes land unchanged at 1 MiB.
        let esp_bytes = std::fs::read(&esp).unwrap();
        assert_eq!(&bytes[1 << 20..(1 << 20) + esp_bytes.len()], &esp_bytes[..]);
    }

    #[test]
    fn rejects_esp_made_for_another_offset() {
        let dir = tempfile::tempdir().unwrap();
        let esp = make_esp(dir.path(), 0, 2048);
        let out = dir.path().join("usb.img");
        let err = write_usb_image(&UsbImageSpec {
            esp: esp.clone(),
            boot_code: GPTMBR.into(),
            out: out.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FAT says the file system starts at sector 0")
                && err.contains("mkfs.vfat -h 2048")
                && err.contains("esp.img"),
            "{err}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn rejects_oversized_boot_code_and_non_fat_esp() {
        let dir = tempfile::tempdir().unwrap();
        let esp = make_esp(dir.path(), 2048, 2048);
        let big = dir.path().join("big.bin");
        std::fs::write(&big, [0u8; 512]).unwrap();
        let err = write_usb_image(&UsbImageSpec {
            esp,
            boot_code: big,
            out: dir.path().join("usb.img"),
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("big.bin: MBR boot code is 512 bytes, at most 440"),
            "{err}"
        );

        let junk = dir.path().join("junk.img");
        std::fs::write(&junk, vec![0u8; 4096]).unwrap();
        let err = write_usb_image(&UsbImageSpec {
            esp: junk,
            boot_code: GPTMBR.into(),
            out: dir.path().join("usb.img"),
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("junk.img: ESP image has no usable FAT boot sector: no 0x55AA"),
            "{err}"
        );
    }
}
