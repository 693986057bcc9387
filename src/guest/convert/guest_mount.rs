//! The copy mounted as the guest mounts it, for the fix-ups.

use std::path::Path;

use super::super::btrfs::Subvol;
use super::super::guestfs::GuestFs;
use super::super::lvm::OpenVolume;
use super::super::mount::{MountPoint, Mounted, fstypes_for, mount_root};
use super::super::{ConvertRequest, GuestError};
use super::volumes::{Volume, find_volume};

/// The copy's root filesystem mounted on a private mount point, with a
/// separate /boot mounted where the guest mounts it.
/// Fields in drop order (an early error unwinds /boot, then root, then the
/// mount point).
pub(super) struct GuestMount {
    boot: Option<(OpenVolume, Mounted)>,
    root_mount: Mounted,
    root_loop: OpenVolume,
    mnt: MountPoint,
    /// The Btrfs subvolume mounted as root, if one was.
    pub(super) subvol: Option<Subvol>,
}

impl GuestMount {
    pub(super) fn mount(
        req: &ConvertRequest,
        vols: &[Volume],
        root: &Volume,
    ) -> Result<Self, GuestError> {
        let mnt = MountPoint::new()?;
        // A root (or /boot) on an LV opens as a window of its PV or a
        // device-mapper table (guest::lvm), never by activating its VG.
        let root_loop = root.open(&req.name, req.dry_run)?;
        let (root_mount, subvol) = mount_root(
            root_loop.path(),
            mnt.path(),
            root.fs_kind.as_deref(),
            req.dry_run,
        )?;
        let mut mounted = GuestMount {
            boot: None,
            root_mount,
            root_loop,
            mnt,
            subvol,
        };
        let gfs = GuestFs::new(mounted.path());
        if let Some(spec) = guest_boot_spec(&gfs)? {
            let idx =
                find_volume(vols, &spec).ok_or(GuestError::BootNotFound { spec: spec.clone() })?;
            if let Some(bv) = vols.get(idx) {
                let target = gfs.resolve("/boot")?;
                let lo = bv.open(&req.name, req.dry_run)?;
                let mo = Mounted::mount(
                    lo.path(),
                    &target,
                    fstypes_for(bv.fs_kind.as_deref()),
                    req.dry_run,
                )?;
                mounted.boot = Some((lo, mo));
            }
        }
        Ok(mounted)
    }

    pub(super) fn path(&self) -> &Path {
        self.mnt.path()
    }

    /// Unmounts and detaches in order, and reports failures: a copy still
    /// mounted is not a finished conversion.
    pub(super) fn unmount(self) -> Result<(), GuestError> {
        if let Some((lo, mo)) = self.boot {
            mo.unmount()?;
            lo.close()?;
        }
        self.root_mount.unmount()?;
        nix::unistd::sync();
        self.root_loop.close()?;
        drop(self.mnt);
        Ok(())
    }
}

/// The fstab spec of the guest's separate /boot, if it has one.
fn guest_boot_spec(gfs: &GuestFs) -> Result<Option<String>, GuestError> {
    let Some(text) = gfs.read("/etc/fstab")? else {
        return Ok(None);
    };
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            [spec, "/boot", ..] if !spec.starts_with('#') => Some(spec.to_string()),
            _ => None,
        }
    }))
}
