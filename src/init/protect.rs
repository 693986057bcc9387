//! Protecting the source: every disk (and each of its partitions) is set
//! read-only in the kernel with BLKROSET before anything reads it; the boot
//! medium is detected afterwards and excluded from the copy.

use super::bounded::{self, Bounded};
use crate::source::device::{Device, ReadAt, read_vec};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// FAT or ISO 9660 volume label that marks our own boot medium.
pub const BOOT_LABEL: &str = "P2XEN";

#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error("{path}: cannot open read-only: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: BLKROSET failed: {source}")]
    SetRo { path: PathBuf, source: nix::Error },
    #[error("{path}: still writable after BLKROSET")]
    StillWritable { path: PathBuf },
    #[error(
        "{path}: no answer after {} s (its driver is stuck, or the disk hangs); left alone: not read, not copied",
        waited.as_secs()
    )]
    NoAnswer { path: PathBuf, waited: Duration },
    #[error("{path}: cannot start a thread to protect it: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
}

// <linux/fs.h>: BLKROSET _IO(0x12,93), BLKROGET _IO(0x12,94); both take an int*.
nix::ioctl_write_ptr_bad!(blkroset, 0x125d, nix::libc::c_int);
nix::ioctl_read_bad!(blkroget, 0x125e, nix::libc::c_int);

/// Partitions of `disk` (names like sda1, nvme0n1p2) with their start sector (512 B).
pub fn partitions(sys_block: &Path, disk: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(sys_block.join(disk))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let start = std::fs::read_to_string(e.path().join("start")).ok()?;
                    Some((name, start.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn open_ro(path: &Path) -> Result<File, ProtectError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| ProtectError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// `blockdev --setro PATH`, verified with `blockdev --getro`.
pub fn set_readonly(path: &Path) -> Result<(), ProtectError> {
    let file = open_ro(path)?;
    let one: nix::libc::c_int = 1;
    // SAFETY: BLKROSET reads one int through the pointer, which points to a
    // live local; the fd is an open block device owned by `file`.
    unsafe { blkroset(file.as_raw_fd(), &one) }.map_err(|source| ProtectError::SetRo {
        path: path.to_path_buf(),
        source,
    })?;
    if is_readonly(path)? {
        Ok(())
    } else {
        Err(ProtectError::StillWritable {
            path: path.to_path_buf(),
        })
    }
}

/// `blockdev --getro PATH`.
pub fn is_readonly(path: &Path) -> Result<bool, ProtectError> {
    let file = open_ro(path)?;
    let mut ro: nix::libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer to a live local.
    unsafe { blkroget(file.as_raw_fd(), &mut ro) }.map_err(|source| ProtectError::SetRo {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ro != 0)
}

/// Sets every disk and partition read-only; logs each (`blockdev --getro`
/// equivalent) and returns the disks that could not be protected.
pub fn protect_all(
    sys_block: &Path,
    dev: &Path,
    disks: &[String],
    timeout: Duration,
) -> Vec<(String, ProtectError)> {
    let mut failed = Vec::new();
    for disk in disks {
        // open() waits for the disk's partition scan, which a stuck driver
        // (or dead hardware) never finishes: PID 1 waits at most `timeout`
        // and the thread stays behind, blocked in the kernel.
        let (sys_block, dev, name) = (sys_block.to_path_buf(), dev.to_path_buf(), disk.clone());
        let path = dev.join(disk);
        let protect = move || protect_disk(&sys_block, &dev, &name);
        let errors = match bounded::run(format!("protect {disk}"), timeout, protect) {
            Bounded::Done(errors) => errors,
            Bounded::NoThread(source) => vec![ProtectError::Thread { path, source }],
            Bounded::Overran(_) | Bounded::Lost => vec![ProtectError::NoAnswer {
                path,
                waited: timeout,
            }],
        };
        for e in errors {
            log::error!("{e}");
            failed.push((disk.clone(), e));
        }
    }
    failed
}

/// Sets `disk` and each of its partitions read-only; returns what failed.
fn protect_disk(sys_block: &Path, dev: &Path, disk: &str) -> Vec<ProtectError> {
    let mut names = vec![disk.to_string()];
    names.extend(partitions(sys_block, disk).into_iter().map(|(n, _)| n));
    let mut failed = Vec::new();
    for name in names {
        let path = dev.join(&name);
        match set_readonly(&path) {
            Ok(()) => log::info!("read-only: {} (getro=1)", path.display()),
            Err(e) => failed.push(e),
        }
    }
    failed
}

/// Volume label of a FAT12/16/32 or ISO 9660 filesystem at `offset`, if any.
pub fn volume_label(dev: &dyn ReadAt, offset: u64) -> Option<String> {
    let clean = |b: &[u8]| {
        let s = String::from_utf8_lossy(b)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string();
        (!s.is_empty()).then_some(s)
    };
    if let Ok(boot) = read_vec(dev, offset, 512) {
        if boot.get(510..512) == Some(&[0x55, 0xAA]) {
            // FAT32 keeps its label at 0x47, FAT12/16 at 0x2B.
            if boot.get(0x52..0x5A) == Some(b"FAT32   ") {
                return boot.get(0x47..0x52).and_then(clean);
            }
            if boot.get(0x36..0x39) == Some(b"FAT") {
                return boot.get(0x2B..0x36).and_then(clean);
            }
        }
    }
    let pvd = offset.checked_add(32768)?;
    let sector = read_vec(dev, pvd, 2048).ok()?;
    if sector.get(0..6) == Some(b"\x01CD001") {
        return sector.get(40..72).and_then(clean);
    }
    None
}

/// The disk we booted from: named by `p2xen.bootdev=` (sdb or /dev/sdb), or
/// the disk whose whole-disk or partition filesystem is labelled P2XEN.
pub fn boot_medium(
    sys_block: &Path,
    dev: &Path,
    disks: &[String],
    bootdev: Option<&str>,
) -> Option<String> {
    if let Some(name) = bootdev {
        let name = name.trim_start_matches("/dev/");
        return disks.iter().find(|d| *d == name).cloned();
    }
    for disk in disks {
        let Ok(device) = Device::open(&dev.join(disk)) else {
            continue;
        };
        let mut offsets = vec![0u64];
        offsets.extend(
            partitions(sys_block, disk)
                .into_iter()
                .filter_map(|(_, start)| start.checked_mul(512)),
        );
        for off in offsets {
            if volume_label(&device, off).as_deref() == Some(BOOT_LABEL) {
                log::info!("boot medium: /dev/{disk} (label {BOOT_LABEL} at byte {off})");
                return Some(disk.clone());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn label_reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40_000),
                                     offset in prop_oneof![Just(0u64), 0u64..40_000, Just(u64::MAX)]) {
            let _ = volume_label(&MemDisk::new(data), offset);
        }
    }

    #[test]
    fn fat_labels() {
        let mut fat32 = vec![0u8; 4096];
        fat32[510] = 0x55;
        fat32[511] = 0xAA;
        fat32[0x52..0x5A].copy_from_slice(b"FAT32   ");
        fat32[0x47..0x52].copy_from_slice(b"P2XEN      ");
        assert_eq!(
            volume_label(&MemDisk::new(fat32), 0).as_deref(),
            Some("P2XEN")
        );

        let mut fat16 = vec![0u8; 1024 + 512];
        fat16[1024 + 510] = 0x55;
        fat16[1024 + 511] = 0xAA;
        fat16[1024 + 0x36..1024 + 0x39].copy_from_slice(b"FAT");
        fat16[1024 + 0x2B..1024 + 0x36].copy_from_slice(b"BOOT       ");
        assert_eq!(
            volume_label(&MemDisk::new(fat16.clone()), 1024).as_deref(),
            Some("BOOT")
        );
        assert_eq!(volume_label(&MemDisk::new(fat16), 0), None);
    }

    #[test]
    fn iso_label_and_short_disks() {
        let mut iso = vec![0u8; 32768 + 2048];
        iso[32768..32774].copy_from_slice(b"\x01CD001");
        iso[32768 + 40..32768 + 45].copy_from_slice(b"P2XEN");
        assert_eq!(
            volume_label(&MemDisk::new(iso), 0).as_deref(),
            Some("P2XEN")
        );
        assert_eq!(volume_label(&MemDisk::new(vec![0u8; 100]), 0), None);
        assert_eq!(volume_label(&MemDisk::new(vec![]), u64::MAX), None);
    }

    #[test]
    fn partitions_and_bootdev() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sda/sda1")).unwrap();
        std::fs::write(dir.path().join("sda/sda1/start"), "2048\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sda/queue")).unwrap();
        assert_eq!(
            partitions(dir.path(), "sda"),
            vec![("sda1".to_string(), 2048)]
        );
        let disks = vec!["sda".to_string(), "sdb".to_string()];
        assert_eq!(
            boot_medium(
                dir.path(),
                Path::new("/nonexistent"),
                &disks,
                Some("/dev/sdb")
            ),
            Some("sdb".to_string())
        );
        assert_eq!(
            boot_medium(dir.path(), Path::new("/nonexistent"), &disks, Some("sdc")),
            None
        );
        assert_eq!(
            boot_medium(dir.path(), Path::new("/nonexistent"), &disks, None),
            None
        );
    }
}
