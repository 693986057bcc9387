//! `--store dev:/dev/X[,/dev/Y...]`: existing block devices (SAN LUNs,
//! partitions, LVs made by hand) receive the disks, disk N the Nth device.
//!
//! These devices are not ours: before anything is written every one is
//! checked to be a block device, listed once, not mounted, not held by an
//! md/LVM/dm device, not open exclusively by anyone, big enough, and free of
//! a partition table or filesystem signature (unless `--force`). Writing
//! reuses [`super::target::BlockTarget`].

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::dev_error::DevError;
use crate::source::device::{Device, ReadAt, Window};
use crate::source::mounts::{devnum, holders, mounted_at, with_partitions};
use crate::source::{filesystems, partitions, sysfs};

const SYSFS: &str = "/sys";

/// A listed device, as the checks see it.
struct Dev {
    path: PathBuf,
    rdev: u64,
    size: u64,
}

fn stat_block(path: &Path) -> Result<u64, DevError> {
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DevError::Missing(path.to_path_buf()),
        _ => DevError::Open {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !meta.file_type().is_block_device() {
        return Err(DevError::NotBlock(path.to_path_buf()));
    }
    Ok(meta.rdev())
}

/// Checks that need no knowledge of the migration: run before the receiver
/// listens and again before a migration writes.
pub fn check_devices(paths: &[PathBuf]) -> Result<(), DevError> {
    devices(paths).map(|_| ())
}

fn devices(paths: &[PathBuf]) -> Result<Vec<Dev>, DevError> {
    let mut devs: Vec<Dev> = Vec::new();
    let mountinfo = fs::read_to_string(crate::source::mounts::MOUNTINFO).unwrap_or_default();
    for (i, path) in paths.iter().enumerate() {
        let rdev = stat_block(path)?;
        // Two names of one device (/dev/sdb and /dev/disk/by-id/...).
        if let Some(first) = devs.iter().position(|d| d.rdev == rdev) {
            return Err(DevError::Twice {
                path: path.clone(),
                first,
                second: i,
            });
        }
        let sys = Path::new(SYSFS).join("dev/block").join(devnum(rdev));
        for (name, num) in with_partitions(&sys) {
            if let Some(point) = mounted_at(&mountinfo, &num, &name) {
                return Err(DevError::Mounted {
                    path: path.clone(),
                    what: name,
                    point,
                });
            }
        }
        let held = holders(&sys);
        if !held.is_empty() {
            return Err(DevError::Held {
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
fn claim_test(path: &Path) -> Result<(), DevError> {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(busy_or(path, e)),
    }
}

/// EBUSY from an exclusive open as [`DevError::Busy`].
pub fn busy_or(path: &Path, source: std::io::Error) -> DevError {
    if source.raw_os_error() == Some(nix::libc::EBUSY) {
        DevError::Busy(path.to_path_buf())
    } else {
        DevError::Open {
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
) -> Result<(), DevError> {
    if paths.len() < sizes.len() {
        return Err(DevError::Count {
            have: paths.len(),
            need: sizes.len(),
        });
    }
    let devs = devices(paths)?;
    for (i, (dev, &need)) in devs.iter().zip(sizes).enumerate() {
        if dev.size < need {
            return Err(DevError::TooSmall {
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
                    return Err(DevError::Signature {
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
fn signature(path: &Path, rdev: u64) -> Result<Option<String>, DevError> {
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
