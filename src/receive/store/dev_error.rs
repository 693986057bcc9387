//! Failures of the `dev:` backend (`blockdev.rs`): the listed devices are
//! not ours, so every refusal names the device and how to free or replace it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(
        "{0} is not a block device: --store dev: takes devices (/dev/sdX, /dev/VG/LV, /dev/disk/by-id/...); for image files use --store DIR"
    )]
    NotBlock(PathBuf),
    #[error(
        "{0} does not exist: list existing block devices in --store dev: (lsblk, ls /dev/disk/by-id)"
    )]
    Missing(PathBuf),
    #[error(
        "{path} is listed twice in --store dev: (for disks {first} and {second}): list each device once, one per disk"
    )]
    Twice {
        path: PathBuf,
        first: usize,
        second: usize,
    },
    #[error(
        "{path} is mounted ({what} on {point}): unmount it (umount {point}) or list another device in --store dev:"
    )]
    Mounted {
        path: PathBuf,
        what: String,
        point: String,
    },
    #[error(
        "{path} is held by {holders} (an md array, LVM or dm mapping on it): stop that (mdadm --stop, vgchange -an, dmsetup remove) or list another device in --store dev:"
    )]
    Held { path: PathBuf, holders: String },
    #[error(
        "{0} is in use (exclusive open: device busy; active swap, a mount elsewhere or another program): stop that or list another device in --store dev:"
    )]
    Busy(PathBuf),
    #[error(
        "--store dev: lists {have} device(s) but the migration has {need} disk(s): list one device per disk (disk N goes to the Nth device)"
    )]
    Count { have: usize, need: usize },
    #[error(
        "{path} is {have} bytes, smaller than the {need} bytes of disk {disk}: list a device of at least {need} bytes in --store dev:"
    )]
    TooSmall {
        path: PathBuf,
        disk: usize,
        have: u64,
        need: u64,
    },
    #[error(
        "{path} is not empty: it carries {what}, maybe someone's data: wipe it (wipefs -a {path}) or start the receiver with --force to overwrite it"
    )]
    Signature { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Device(#[from] crate::source::device::DeviceError),
}
