//! Where received disks go: a storage backend creates one target per disk.
//!
//! Sparse image files (`STORE/NAME/diskN.img`) keep holes as holes: zero
//! records punch holes instead of writing. LVM (`lvm:VG`) creates one logical
//! volume per disk (`lvm.rs`). A new LV may hold another volume's old data,
//! so zero records are written as zeros there, and at the end of the copy
//! everything the sender skipped (unused blocks, the LV's rounding tail) is
//! zeroed too: both backends promise the same content, unsent = zero.

mod blockdev;
mod dev_error;
mod error;
mod lvm;
mod lvm_error;
mod target;

use std::fs;
use std::path::{Path, PathBuf};

pub use dev_error::DevError;
pub use error::StoreError;
pub use lvm_error::LvmError;
pub use target::{BlockTarget, SparseFile, Target, gaps};

use crate::wire::name::MigrationName;

/// The parsed `--store` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Dir(PathBuf),
    Lvm(String),
    /// `dev:/dev/X,/dev/Y`: disk N goes to the Nth device.
    Dev(Vec<PathBuf>),
}

impl StoreSpec {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        if let Some(vg) = s.strip_prefix("lvm:") {
            if MigrationName::parse(vg).is_err() {
                return Err(StoreError::BadSpec(s.to_string()));
            }
            return Ok(StoreSpec::Lvm(vg.to_string()));
        }
        if let Some(list) = s.strip_prefix("dev:") {
            return parse_dev_list(s, list).map(StoreSpec::Dev);
        }
        if s.is_empty() {
            return Err(StoreError::BadSpec(s.to_string()));
        }
        Ok(StoreSpec::Dir(PathBuf::from(s)))
    }
}

/// Where a migration's metadata (machine.json, report.json) and targets live.
pub struct Store {
    pub spec: StoreSpec,
    /// For lvm:VG the JSON files go to `STATE/lvm/VG`, for dev: to
    /// `STATE/dev`; that directory takes the role of STORE.
    pub meta_root: PathBuf,
}

impl Store {
    pub fn new(spec: StoreSpec, state_dir: &Path) -> Store {
        let meta_root = match &spec {
            StoreSpec::Dir(d) => d.clone(),
            StoreSpec::Lvm(vg) => state_dir.join("lvm").join(vg),
            StoreSpec::Dev(_) => state_dir.join("dev"),
        };
        Store { spec, meta_root }
    }

    /// `STORE/NAME`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.meta_root.join(name)
    }

    /// True when a migration called `name` left anything behind: its
    /// directory or, with LVM, any of its LVs (an LV without a directory is
    /// still somebody's data and is never written over without --force).
    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        if self.dir(name).exists() {
            return Ok(true);
        }
        match &self.spec {
            // A device's content is checked for signatures instead (check_disks).
            StoreSpec::Dir(_) | StoreSpec::Dev(_) => Ok(false),
            StoreSpec::Lvm(vg) => Ok(!lvm::lvs_of(&lvm::list_lvs(vg)?, name).is_empty()),
        }
    }

    /// The first thing of `name` that exists, for the "already exists" error.
    pub fn existing_path(&self, name: &str) -> PathBuf {
        let dir = self.dir(name);
        if let (false, StoreSpec::Lvm(vg)) = (dir.exists(), &self.spec) {
            if let Some(lv) = lvm::list_lvs(vg)
                .ok()
                .and_then(|l| lvm::lvs_of(&l, name).first().map(|lv| lv.name.clone()))
            {
                return lvm::lv_path(vg, &lv);
            }
        }
        dir
    }

    /// Checks the store is usable before the receiver listens: for LVM, that
    /// the volume group exists; for devices, that each is a block device,
    /// listed once, and not mounted, held or in use.
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.spec {
            StoreSpec::Dir(_) => Ok(()),
            StoreSpec::Lvm(vg) => Ok(lvm::vg_info(vg).map(|_| ())?),
            StoreSpec::Dev(paths) => Ok(blockdev::check_devices(paths)?),
        }
    }

    /// Checks, before anything is created or written, that disks of `sizes`
    /// bytes fit the store. Only devices need it: a device per disk, each
    /// big enough and (unless `resuming` our own copy, or `force`) without
    /// a partition table or filesystem on it.
    pub fn check_disks(
        &self,
        sizes: &[u64],
        resuming: bool,
        force: bool,
    ) -> Result<(), StoreError> {
        match &self.spec {
            StoreSpec::Dev(paths) => Ok(blockdev::check_for_copy(paths, sizes, resuming, force)?),
            _ => Ok(()),
        }
    }

    /// Removes everything of an earlier migration called `name` (--force).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        if let StoreSpec::Lvm(vg) = &self.spec {
            for lv in lvm::lvs_of(&lvm::list_lvs(vg)?, name) {
                lvm::remove(vg, &lv.name)?;
            }
        }
        let dir = self.dir(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|source| StoreError::File { path: dir, source })?;
        }
        Ok(())
    }

    pub fn create_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.dir(name);
        fs::create_dir_all(&dir).map_err(|source| StoreError::File {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Opens disk `index` of `name`, creating it with `size` bytes if absent.
    pub fn open_disk(
        &self,
        name: &str,
        index: usize,
        size: u64,
    ) -> Result<Box<dyn Target>, StoreError> {
        match &self.spec {
            StoreSpec::Dir(_) => Ok(Box::new(SparseFile::open(
                &self.image_path(name, index),
                size,
            )?)),
            StoreSpec::Lvm(vg) => {
                let dev = lvm::open_or_create(vg, &lv_name(name, index), size)?;
                Ok(Box::new(BlockTarget::open(&dev)?))
            }
            StoreSpec::Dev(paths) => {
                let path = paths.get(index).ok_or(DevError::Count {
                    have: paths.len(),
                    need: index.saturating_add(1),
                })?;
                Ok(Box::new(BlockTarget::open_device(path, size)?))
            }
        }
    }

    /// What the guest conversion opens as `STORE/NAME/diskN.img`: for LVM
    /// and devices a symlink there to the device, so the conversion finds
    /// every disk the same way and the xl config names the device.
    pub fn link_disks(&self, name: &str, disks: usize) -> Result<(), StoreError> {
        if let StoreSpec::Dir(_) = &self.spec {
            return Ok(());
        }
        for i in 0..disks {
            let link = self.image_path(name, i);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(self.disk_path(name, i), &link)
                .map_err(|source| StoreError::File { path: link, source })?;
        }
        Ok(())
    }

    /// `STORE/NAME/diskN.img`: the image, or the link to the device.
    fn image_path(&self, name: &str, index: usize) -> PathBuf {
        self.dir(name).join(format!("disk{index}.img"))
    }

    /// Human-readable path of a disk target, for reports.
    pub fn disk_path(&self, name: &str, index: usize) -> PathBuf {
        match &self.spec {
            StoreSpec::Dir(_) => self.image_path(name, index),
            StoreSpec::Lvm(vg) => lvm::lv_path(vg, &lv_name(name, index)),
            // As the admin wrote it: a /dev/disk/by-id name stays stable.
            StoreSpec::Dev(paths) => paths.get(index).cloned().unwrap_or_default(),
        }
    }
}

fn lv_name(name: &str, index: usize) -> String {
    format!("{name}-disk{index}")
}

/// The device list of `dev:LIST` (after the prefix): absolute paths,
/// comma-separated, each once.
fn parse_dev_list(spec: &str, list: &str) -> Result<Vec<PathBuf>, StoreError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for item in list.split(',') {
        let p = PathBuf::from(item.trim());
        if !p.is_absolute() {
            return Err(StoreError::BadSpec(spec.to_string()));
        }
        if let Some(first) = out.iter().position(|q| *q == p) {
            return Err(StoreError::Dev(DevError::Twice {
                path: p,
                first,
                second: out.len(),
            }));
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm_specs_are_parsed() {
        assert_eq!(
            StoreSpec::parse("lvm:vg0").unwrap(),
            StoreSpec::Lvm("vg0".into())
        );
        assert!(StoreSpec::parse("lvm:../x").is_err());
    }

    #[test]
    fn device_lists_are_parsed() {
        assert_eq!(
            StoreSpec::parse("dev:/dev/sdb,/dev/sdc").unwrap(),
            StoreSpec::Dev(vec!["/dev/sdb".into(), "/dev/sdc".into()])
        );
        let e = StoreSpec::parse("dev:").unwrap_err();
        assert!(e.to_string().contains("dev:/dev/X[,/dev/Y...]"), "{e}");
        assert!(StoreSpec::parse("dev:/dev/sdb,sdc").is_err());
        let e = StoreSpec::parse("dev:/dev/sdb,/dev/sdb").unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let s = Store::new(
            StoreSpec::parse("dev:/dev/sdb").unwrap(),
            Path::new("/var/lib/p2xen"),
        );
        assert_eq!(s.meta_root, Path::new("/var/lib/p2xen/dev"));
        assert_eq!(s.disk_path("web", 0), Path::new("/dev/sdb"));
    }

    #[test]
    fn lists_are_parsed_and_checked() {
        let s = "dev:/dev/sdb,/dev/disk/by-id/wwn-0x5000";
        assert_eq!(
            parse_dev_list(s, "/dev/sdb,/dev/disk/by-id/wwn-0x5000").unwrap(),
            [
                PathBuf::from("/dev/sdb"),
                PathBuf::from("/dev/disk/by-id/wwn-0x5000")
            ]
        );
        assert_eq!(
            parse_dev_list("dev:/dev/sdb", "/dev/sdb").unwrap(),
            [PathBuf::from("/dev/sdb")]
        );
        for bad in ["", "sdb", "/dev/sdb,", "/dev/sdb,,/dev/sdc", "dev/sdb"] {
            assert!(
                matches!(parse_dev_list("x", bad), Err(StoreError::BadSpec(_))),
                "{bad:?}"
            );
        }
        let e = parse_dev_list("x", "/dev/sdb,/dev/sdc,/dev/sdb").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/sdb is listed twice in --store dev: (for disks 0 and 2): list each device once, one per disk"
        );
    }
}
