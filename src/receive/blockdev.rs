//! `--store dev:/dev/X[,/dev/Y...]`: existing block devices (SAN LUNs,
//! partitions, LVs made by hand) receive the disks, disk N the Nth device.
//!
//! These devices are not ours: before anything is written every one is
//! checked to be a block device, listed once, not mounted, not held by an
//! md/LVM/dm device, not open exclusively by anyone, big enough, and free of
//! a partition table or filesystem signature (unless `--force`). Writing
//! reuses [`super::store::BlockTarget`].

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::store::StoreError;
use crate::source::device::{Device, ReadAt, Window};
use crate::source::mounts::{devnum, holders, mounted_at, with_partitions};
use crate::source::{filesystems, partitions, sysfs};

const SYSFS: &str = "/sys";

/// The device list of `dev:LIST` (after the prefix): absolute paths,
/// comma-separated, each once.
pub fn parse_list(spec: &str, list: &str) -> Result<Vec<PathBuf>, StoreError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for item in list.split(',') {
        let p = PathBuf::from(item.trim());
        if !p.is_absolute() {
            return Err(StoreError::BadSpec(spec.to_string()));
        }
        if let Some(first) = out.iter().position(|q| *q == p) {
            return Err(StoreError::DevTwice {
                path: p,
                first,
                second: out.len(),
            });
        }
        out.push(p);
    }
    Ok(out)
}

/// A listed device, as the checks see it.
struct Dev {
    path: PathBuf,
    rdev: u64,
    size: u64,
}

fn stat_block(path: &Path) -> Result<u64, StoreError> {
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => StoreError::DevMissing(path.to_path_buf()),
        _ => StoreError::File {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !meta.file_type().is_block_device() {
        return Err(StoreError::NotBlock(path.to_path_buf()));
    }
    Ok(meta.rdev())
}

/// Checks that need no knowledge of the migration: run before the receiver
/// listens and again before a migration writes.
pub fn check_devices(paths: &[PathBuf]) -> Result<(), StoreError> {
    devices(paths).map(|_| ())
}

fn devices(paths: &[PathBuf]) -> Result<Vec<Dev>, StoreError> {
    let mut devs: Vec<Dev> = Vec::new();
    let mountinfo = fs::read_to_string(crate::source::mounts::MOUNTINFO).unwrap_or_default();
    for (i, path) in paths.iter().enumerate() {
        let rdev = stat_block(path)?;
        // Two names of one device (/dev/sdb and /dev/disk/by-id/...).
        if let Some(first) = devs.iter().position(|d| d.rdev == rdev) {
            return Err(StoreError::DevTwice {
                path: path.clone(),
                first,
                second: i,
            });
        }
        let sys = Path::new(SYSFS).join("dev/block").join(devnum(rdev));
        for (name, num) in with_partitions(&sys) {
            if let Some(point) = mounted_at(&mountinfo, &num, &name) {
                return Err(StoreError::DevMounted {
                    path: path.clone(),
                    what: name,
                    point,
                });
            }
        }
        let held = holders(&sys);
        if !held.is_empty() {
            return Err(StoreError::DevHeld {
                path: path.clone(),
                holders: held.join(", "),
            });
        }
        claim_test(path)?;
        let size = Device::open(path)?.size();
        devs.push(Dev {
            path: path.clone(),
            rdev,
            size,
        });
    }
    Ok(devs)
}

/// Opens `path` exclusively for a moment: EBUSY means a mount (maybe in
/// another namespace), active swap, or a program holding it exclusively.
fn claim_test(path: &Path) -> Result<(), StoreError> {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(busy_or(path, e)),
    }
}

/// EBUSY from an exclusive open as [`StoreError::DevBusy`].
pub fn busy_or(path: &Path, source: std::io::Error) -> StoreError {
    if source.raw_os_error() == Some(nix::libc::EBUSY) {
        StoreError::DevBusy(path.to_path_buf())
    } else {
        StoreError::File {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Checks before disks of `sizes` bytes are written to `paths`: all of
/// [`check_devices`], one device per disk, each big enough, and, unless
/// resuming (the device holds our own partial copy) or `force`, no partition
/// table or filesystem on it.
pub fn check_for_copy(
    paths: &[PathBuf],
    sizes: &[u64],
    resuming: bool,
    force: bool,
) -> Result<(), StoreError> {
    if paths.len() < sizes.len() {
        return Err(StoreError::DevCount {
            have: paths.len(),
            need: sizes.len(),
        });
    }
    let devs = devices(paths)?;
    for (i, (dev, &need)) in devs.iter().zip(sizes).enumerate() {
        if dev.size < need {
            return Err(StoreError::DevTooSmall {
                path: dev.path.clone(),
                disk: i,
                have: dev.size,
                need,
            });
        }
    }
    if !resuming {
        for dev in devs.iter().take(sizes.len()) {
            if let Some(what) = signature(&dev.path, dev.rdev)? {
                if !force {
                    return Err(StoreError::DevSignature {
                        path: dev.path.clone(),
                        what,
                    });
                }
                log::warn!("{}: overwriting {what} (--force)", dev.path.display());
            }
        }
    }
    for (i, (dev, &need)) in devs.iter().zip(sizes).enumerate() {
        if dev.size > need {
            log::info!(
                "{}: {} bytes for disk {i} of {need} bytes; the last {} bytes of the device are left as they are",
                dev.path.display(),
                dev.size,
                dev.size - need
            );
        }
    }
    for dev in devs.iter().skip(sizes.len()) {
        log::info!(
            "{}: not needed ({} disk(s) in this migration); left alone",
            dev.path.display(),
            sizes.len()
        );
    }
    Ok(())
}

/// What `path` carries, as blkid would say it: a partition table or a
/// filesystem/RAID/LVM signature. Read through our own parsers on a
/// read-only open.
fn signature(path: &Path, rdev: u64) -> Result<Option<String>, StoreError> {
    let dev = Device::open(path)?;
    let sector = sysfs::attrs_for_devnum(
        Path::new(SYSFS),
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev),
    )
    .and_then(|a| a.logical_sector_size)
    .unwrap_or(512);
    if let Ok(t) = partitions::read_table(&dev, sector) {
        if t.kind != partitions::TableKind::None {
            return Ok(Some(format!(
                "{} partition table ({} partition(s))",
                match t.kind {
                    partitions::TableKind::Gpt => "a GPT",
                    _ => "an MBR",
                },
                t.partitions.len()
            )));
        }
    }
    let whole = Window::new(&dev, 0, dev.size());
    Ok(match filesystems::probe(&whole) {
        Ok(Some(fs)) => Some(describe(&fs)),
        Ok(None) => None,
        // A signature was found but does not parse: still somebody's data.
        Err(e) => Some(format!("a damaged signature ({e})")),
    })
}

fn describe(fs: &filesystems::Filesystem) -> String {
    let mut s = fs.kind.to_string();
    if let Some(l) = fs.label.as_deref().filter(|l| !l.is_empty()) {
        s.push_str(&format!(" labelled {l:?}"));
    }
    if let Some(u) = &fs.uuid {
        s.push_str(&format!(" (UUID {u})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_parsed_and_checked() {
        let s = "dev:/dev/sdb,/dev/disk/by-id/wwn-0x5000";
        assert_eq!(
            parse_list(s, "/dev/sdb,/dev/disk/by-id/wwn-0x5000").unwrap(),
            [
                PathBuf::from("/dev/sdb"),
                PathBuf::from("/dev/disk/by-id/wwn-0x5000")
            ]
        );
        assert_eq!(
            parse_list("dev:/dev/sdb", "/dev/sdb").unwrap(),
            [PathBuf::from("/dev/sdb")]
        );
        for bad in ["", "sdb", "/dev/sdb,", "/dev/sdb,,/dev/sdc", "dev/sdb"] {
            assert!(
                matches!(parse_list("x", bad), Err(StoreError::BadSpec(_))),
                "{bad:?}"
            );
        }
        let e = parse_list("x", "/dev/sdb,/dev/sdc,/dev/sdb").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/sdb is listed twice in --store dev: (for disks 0 and 2): list each device once, one per disk"
        );
    }
}
