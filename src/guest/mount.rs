//! Opening a copy's filesystem on dom0: a loop device over (a window of) an
//! image file and a mount of it, both undone on drop, so an error on any
//! path leaves no loop device or mount behind.
//!
//! Loop devices are attached per partition with `--offset/--sizelimit`
//! rather than `--partscan`, which needs partition support in dom0's kernel
//! and a udev to create the nodes.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{cmd}: cannot run: {source} (Debian packages mount and util-linux)")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd}: failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: cannot create mount point: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn run(cmd: &str, args: &[&str]) -> Result<String, MountError> {
    let line = format!("{cmd} {}", args.join(" "));
    log::debug!("running {line}");
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|source| MountError::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(MountError::Failed {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// An attached loop device, detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    dev: Option<String>,
}

impl LoopDevice {
    pub fn attach(
        image: &Path,
        offset: u64,
        size: u64,
        read_only: bool,
    ) -> Result<Self, MountError> {
        let img = image.to_string_lossy();
        let (off, lim) = (offset.to_string(), size.to_string());
        let mut args = vec!["--find", "--show", "--offset", &off, "--sizelimit", &lim];
        if read_only {
            args.push("--read-only");
        }
        args.push(&img);
        let dev = run("losetup", &args)?;
        log::debug!(
            "{} attached at {dev} (offset {offset}, {size} bytes)",
            image.display()
        );
        Ok(LoopDevice { dev: Some(dev) })
    }

    pub fn path(&self) -> &str {
        self.dev.as_deref().unwrap_or("")
    }

    /// Detaches, reporting failure (drop only logs it).
    pub fn detach(mut self) -> Result<(), MountError> {
        match self.dev.take() {
            Some(d) => run("losetup", &["-d", &d]).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(d) = self.dev.take() {
            match run("losetup", &["-d", &d]) {
                Ok(_) => wait_detached(&d),
                Err(e) => log::error!("{e}"),
            }
        }
    }
}

/// `losetup -d` only marks a device for removal while something (udev, a
/// failed mount's probe) still holds it open; wait a little for the kernel to
/// let go, so the caller's "nothing left behind" holds when we return.
fn wait_detached(dev: &str) {
    let name = dev.trim_start_matches("/dev/");
    let backing = Path::new("/sys/block").join(name).join("loop");
    for _ in 0..50 {
        if !backing.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    log::warn!("{dev}: still attached 5 s after losetup -d; something holds it open");
}

/// A mounted filesystem, unmounted on drop.
#[derive(Debug)]
pub struct Mounted {
    target: Option<PathBuf>,
}

impl Mounted {
    /// `fstypes` is a `mount -t` list; a read-only mount also skips journal
    /// replay, which would write to the (read-only) device.
    pub fn mount(
        dev: &str,
        target: &Path,
        fstypes: &str,
        read_only: bool,
    ) -> Result<Self, MountError> {
        Self::mount_with(dev, target, fstypes, read_only, None)
    }

    /// [`Mounted::mount`] with more `-o` options (a Btrfs `subvol=`).
    pub fn mount_with(
        dev: &str,
        target: &Path,
        fstypes: &str,
        read_only: bool,
        extra: Option<&str>,
    ) -> Result<Self, MountError> {
        let t = target.to_string_lossy();
        let base = match (read_only, fstypes.contains("xfs")) {
            (true, false) if fstypes.contains("ext") => "ro,noload",
            (true, true) => "ro,norecovery",
            (true, _) => "ro",
            (false, _) => "rw",
        };
        let opts = match extra {
            Some(e) => format!("{base},{e}"),
            None => base.to_string(),
        };
        run("mount", &["-t", fstypes, "-o", &opts, dev, &t])?;
        Ok(Mounted {
            target: Some(target.to_path_buf()),
        })
    }

    pub fn unmount(mut self) -> Result<(), MountError> {
        match self.target.take() {
            Some(t) => umount_retrying(&t),
            None => Ok(()),
        }
    }
}

/// `umount`, tried again for a few seconds while the kernel says the target
/// is busy: a process forked elsewhere in this program holds our files for
/// the instant between fork and exec, which is no reason to fail a
/// conversion that is otherwise done.
fn umount_retrying(target: &Path) -> Result<(), MountError> {
    let t = target.to_string_lossy();
    let mut attempt = 0;
    loop {
        match run("umount", &[&t]) {
            Err(MountError::Failed { stderr, .. }) if stderr.contains("busy") && attempt < 25 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other.map(|_| ()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            if let Err(e) = umount_retrying(&t) {
                log::error!("{e}; unmount {} by hand", t.display());
            }
        }
    }
}

/// An empty directory to mount on, removed on drop only if still empty:
/// never a recursive removal, which after a failed unmount would delete the
/// guest's files.
#[derive(Debug)]
pub struct MountPoint {
    path: PathBuf,
}

impl MountPoint {
    pub fn new() -> Result<Self, MountError> {
        let dir = tempfile::Builder::new()
            .prefix("p2xen-guest-")
            .tempdir()
            .map_err(|source| MountError::MountPoint {
                path: std::env::temp_dir(),
                source,
            })?;
        Ok(MountPoint { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.path) {
            log::warn!("{}: not removed: {e}", self.path.display());
        }
    }
}

/// The guest's root filesystem on `dev` mounted at `target`, with the
/// subvolume option used where it is a Btrfs (see [`super::btrfs`]): its
/// top level is mounted read-only first to read the fstabs in it.
pub fn mount_root(
    dev: &str,
    target: &Path,
    kind: Option<&str>,
    read_only: bool,
) -> Result<(Mounted, Option<super::btrfs::Subvol>), RootMountError> {
    let fstypes = fstypes_for(kind);
    if fstypes != "btrfs" {
        return Ok((Mounted::mount(dev, target, fstypes, read_only)?, None));
    }
    let top = Mounted::mount_with(dev, target, fstypes, true, Some("subvolid=5"))?;
    let chosen = super::btrfs::root_subvol(target);
    top.unmount()?;
    let subvol = chosen?;
    let opt = subvol.as_ref().map(super::btrfs::Subvol::mount_option);
    match &opt {
        Some(o) => log::info!("btrfs root {dev}: the guest's fstab mounts {o} as /"),
        None => log::info!("btrfs root {dev}: default subvolume (fstab names none for /)"),
    }
    let m = Mounted::mount_with(dev, target, fstypes, read_only, opt.as_deref())?;
    Ok((m, subvol))
}

#[derive(Debug, thiserror::Error)]
pub enum RootMountError {
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("choosing the Btrfs root subvolume: {0}")]
    Subvol(#[from] super::guestfs::GuestFsError),
}

/// `mount -t` types for a filesystem named by the inspect data; an md
/// member's inner filesystem is unknown, so the usual ones are tried.
pub fn fstypes_for(kind: Option<&str>) -> &'static str {
    match kind {
        Some("ext2") => "ext2",
        Some("ext3") => "ext3",
        Some("ext4") => "ext4",
        Some("xfs") => "xfs",
        Some("btrfs") => "btrfs",
        _ => "ext4,ext3,ext2,xfs,btrfs",
    }
}
