//! Disks and their attributes from sysfs (`/sys/block/NAME/...`).
//!
//! Every function takes the sysfs root as an argument so the parsing can be
//! tested against a fake tree; production code passes `/sys`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::controllers::{self, Controller};

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("{path}: cannot list block devices: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What sysfs says about one disk. Every attribute is optional: image files
/// have none, virtual disks lack model and serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskAttrs {
    /// Kernel name, e.g. "sda", "nvme0n1".
    pub name: String,
    pub size_bytes: Option<u64>,
    pub logical_sector_size: Option<u32>,
    pub physical_sector_size: Option<u32>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub rotational: Option<bool>,
    pub removable: Option<bool>,
    /// "nvme", "usb", "sata", "scsi", "virtio", "xen", "mmc".
    pub transport: Option<String>,
    /// The PCI host adapter and its driver.
    pub controller: Option<Controller>,
}

/// Names in /sys/block that are never a server's fixed disks.
const SKIP_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd"];

/// Sysfs attributes are tiny; a bigger one is not what we expect.
const ATTR_MAX: u64 = 4096;

fn read_attr(path: &Path) -> Option<String> {
    let f = fs::File::open(path).ok()?;
    let mut s = String::new();
    f.take(ATTR_MAX).read_to_string(&mut s).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn read_num<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_attr(path)?.parse().ok()
}

/// The fixed disks under `root/block`, sorted by name, with attributes.
pub fn list_disks(root: &Path) -> Result<Vec<DiskAttrs>, SysfsError> {
    let dir = root.join("block");
    let entries = fs::read_dir(&dir).map_err(|source| SysfsError::List {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if SKIP_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let attrs = disk_attrs(root, &name);
        if attrs.size_bytes.unwrap_or(0) == 0 {
            continue;
        }
        out.push(attrs);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Attributes of the disk `name` (as in /sys/block/NAME).
pub fn disk_attrs(root: &Path, name: &str) -> DiskAttrs {
    attrs_in(&root.join("block").join(name), name)
}

/// Attributes of the block device with this device number, via
/// `root/dev/block/MAJ:MIN` (which links to `.../block/NAME`).
pub fn attrs_for_devnum(root: &Path, major: u64, minor: u64) -> Option<DiskAttrs> {
    let dir = root.join("dev/block").join(format!("{major}:{minor}"));
    let name = fs::read_link(&dir)
        .ok()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    Some(attrs_in(&dir, &name))
}

fn attrs_in(dir: &Path, name: &str) -> DiskAttrs {
    let dev = dir.join("device");
    // `size` is always in 512-byte units, whatever the sector size.
    let size_bytes = read_num::<u64>(&dir.join("size")).and_then(|s| s.checked_mul(512));
    let serial = read_attr(&dev.join("serial")).or_else(|| read_attr(&dev.join("wwid")));
    let real = fs::canonicalize(dir).unwrap_or(dir.to_path_buf());
    DiskAttrs {
        name: name.to_string(),
        size_bytes,
        logical_sector_size: read_num(&dir.join("queue/logical_block_size")),
        physical_sector_size: read_num(&dir.join("queue/physical_block_size")),
        model: read_attr(&dev.join("model")),
        serial,
        rotational: read_num::<u8>(&dir.join("queue/rotational")).map(|v| v != 0),
        removable: read_num::<u8>(&dir.join("removable")).map(|v| v != 0),
        transport: transport(name, &real),
        controller: controllers::of_device(&real),
    }
}

/// The bus a disk hangs off, from its name and its sysfs device path
/// (e.g. `/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/.../block/sda`).
pub fn transport(name: &str, device_path: &Path) -> Option<String> {
    let p = device_path.to_string_lossy();
    let t = if name.starts_with("nvme") || p.contains("/nvme") {
        "nvme"
    } else if p.contains("/usb") {
        "usb"
    } else if name.starts_with("vd") || p.contains("/virtio") {
        "virtio"
    } else if name.starts_with("xvd") || p.contains("/vbd-") {
        "xen"
    } else if name.starts_with("mmcblk") {
        "mmc"
    } else if p.contains("/ata") {
        "sata"
    } else if p.contains("/host") && p.contains("/target") {
        "scsi"
    } else {
        return None;
    };
    Some(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, s: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, s).unwrap();
    }

    /// A fake sysfs: real devices live under devices/, /sys/block has links.
    fn fake_disk(root: &Path, name: &str, devpath: &str, size: &str) -> PathBuf {
        let dev = root.join("devices").join(devpath).join("block").join(name);
        write(&dev.join("size"), size);
        fs::create_dir_all(root.join("block")).unwrap();
        symlink(&dev, root.join("block").join(name)).unwrap();
        dev
    }

    #[test]
    fn lists_real_disks_with_attributes_and_skips_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let sda = fake_disk(
            root,
            "sda",
            "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
            "2097152\n",
        );
        write(&sda.join("queue/logical_block_size"), "512\n");
        write(&sda.join("queue/physical_block_size"), "4096\n");
        write(&sda.join("queue/rotational"), "1\n");
        write(&sda.join("removable"), "0\n");
        write(&sda.join("device/model"), "WDC WD10EZEX-00B \n");
        write(&sda.join("device/wwid"), "t10.ATA     WDC WD10EZEX\n");
        let ahci = root.join("bus/pci/drivers/ahci");
        fs::create_dir_all(&ahci).unwrap();
        symlink(&ahci, root.join("devices/pci0000:00/0000:00:1f.2/driver")).unwrap();
        let nvme = fake_disk(
            root,
            "nvme0n1",
            "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0",
            "1000\n",
        );
        write(&nvme.join("device/serial"), "S4EWNX0N123456\n");
        write(&nvme.join("queue/rotational"), "0\n");
        fake_disk(
            root,
            "sdb",
            "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0",
            "64\n",
        );
        fake_disk(root, "vda", "pci0000:00/0000:00:04.0/virtio1", "64\n");
        fake_disk(root, "sdc", "platform/host7/target7:0:0/7:0:0:0", "64\n");
        for skipped in [
            "loop0", "ram0", "zram0", "sr0", "fd0", "dm-0", "md0", "nbd0",
        ] {
            fake_disk(root, skipped, "virtual", "100\n");
        }
        fake_disk(
            root,
            "sdz",
            "pci0000:00/ata9/host9/target9:0:0/9:0:0:0",
            "0\n",
        );

        let disks = list_disks(root).unwrap();
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "sda", "sdb", "sdc", "vda"]);
        let sda = &disks[1];
        assert_eq!(sda.size_bytes, Some(2097152 * 512));
        assert_eq!(sda.logical_sector_size, Some(512));
        assert_eq!(sda.physical_sector_size, Some(4096));
        assert_eq!(sda.model.as_deref(), Some("WDC WD10EZEX-00B"));
        assert_eq!(sda.serial.as_deref(), Some("t10.ATA     WDC WD10EZEX"));
        assert_eq!(sda.rotational, Some(true));
        assert_eq!(sda.removable, Some(false));
        assert_eq!(
            sda.controller.as_ref().map(Controller::summary).as_deref(),
            Some("ahci at 0000:00:1f.2 (AHCI SATA)")
        );
        assert_eq!(disks[2].controller, None, "no driver bound on sdb's path");
        let transports: Vec<_> = disks.iter().map(|d| d.transport.as_deref()).collect();
        assert_eq!(
            transports,
            [
                Some("nvme"),
                Some("sata"),
                Some("usb"),
                Some("scsi"),
                Some("virtio")
            ]
        );
        assert_eq!(disks[0].serial.as_deref(), Some("S4EWNX0N123456"));
        assert_eq!(disks[0].rotational, Some(false));
        assert_eq!(disks[4].model, None);
    }

    #[test]
    fn devnum_resolves_to_the_device_attributes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let sda = fake_disk(
            root,
            "sda",
            "pci0000:00/ata1/host0/target0:0:0/0:0:0:0",
            "8\n",
        );
        write(&sda.join("device/model"), "QEMU HARDDISK\n");
        fs::create_dir_all(root.join("dev/block")).unwrap();
        symlink(&sda, root.join("dev/block/8:0")).unwrap();
        let a = attrs_for_devnum(root, 8, 0).unwrap();
        assert_eq!(a.name, "sda");
        assert_eq!(a.size_bytes, Some(4096));
        assert_eq!(a.model.as_deref(), Some("QEMU HARDDISK"));
        assert_eq!(a.transport.as_deref(), Some("sata"));
        assert_eq!(attrs_for_devnum(root, 8, 1), None);
    }

    #[test]
    fn missing_block_dir_is_an_error_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let err = list_disks(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("block: cannot list block devices"), "{err}");
    }
}
