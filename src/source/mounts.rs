//! Is a disk in use on this machine: mounted (itself, a partition, or a
//! device built on them) or held by md/LVM/dm? Read from sysfs and
//! /proc/self/mountinfo. The receiver asks it of the devices it is to write
//! (`--store dev:`); the sender of the disks it reads, because a copy of a
//! mounted, running system is not consistent (`send --warm` says it knows).

use std::fs;
use std::path::Path;

pub const MOUNTINFO: &str = "/proc/self/mountinfo";
const SYSFS: &str = "/sys";

/// "MAJ:MIN" of a device number.
pub fn devnum(rdev: u64) -> String {
    format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    )
}

/// The device of sysfs directory `sys` and its partitions: (kernel name,
/// "MAJ:MIN").
pub fn with_partitions(sys: &Path) -> Vec<(String, String)> {
    let read = |d: &Path| {
        fs::read_to_string(d.join("dev"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let name = |d: &Path| {
        fs::canonicalize(d)
            .ok()
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default()
    };
    let mut out: Vec<(String, String)> = read(sys).map(|n| (name(sys), n)).into_iter().collect();
    if let Ok(entries) = fs::read_dir(sys) {
        for e in entries.flatten() {
            let p = e.path();
            if p.join("partition").is_file() {
                if let Some(n) = read(&p) {
                    out.push((e.file_name().to_string_lossy().into_owned(), n));
                }
            }
        }
    }
    out
}

/// Kernel names of the devices built on the device or its partitions
/// (`holders/` in sysfs: dm, md, bcache ...).
pub fn holders(sys: &Path) -> Vec<String> {
    let mut dirs = vec![sys.to_path_buf()];
    if let Ok(entries) = fs::read_dir(sys) {
        dirs.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("partition").is_file()),
        );
    }
    let mut out: Vec<String> = dirs
        .iter()
        .filter_map(|d| fs::read_dir(d.join("holders")).ok())
        .flat_map(|it| it.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Where device `num` ("MAJ:MIN", kernel name `name`) is mounted, from
/// /proc/self/mountinfo: field 3 is the device number; the source after
/// " - fstype " catches filesystems whose st_dev is not the device's.
pub fn mounted_at(mountinfo: &str, num: &str, name: &str) -> Option<String> {
    let dev_name = format!("/dev/{name}");
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let point = f.get(4)?;
        let sep = f.iter().position(|x| *x == "-")?;
        let source = f.get(sep + 2).copied().unwrap_or_default();
        (f.get(2) == Some(&num) || (!name.is_empty() && source == dev_name))
            .then(|| point.replace("\\040", " "))
    })
}

/// The first mount of block device `path`, of one of its partitions, or of
/// a device built on them (an LV or md array over a partition), as
/// ("sda2", "/"); `None` for a file or an unmounted device.
pub fn first_mount(path: &Path) -> Option<(String, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let mountinfo = fs::read_to_string(MOUNTINFO).unwrap_or_default();
    let sys = Path::new(SYSFS).join("dev/block").join(devnum(meta.rdev()));
    let mut devices = with_partitions(&sys);
    for holder in holders(&sys) {
        devices.extend(with_partitions(
            &Path::new(SYSFS).join("block").join(holder),
        ));
    }
    devices
        .into_iter()
        .find_map(|(name, num)| mounted_at(&mountinfo, &num, &name).map(|point| (name, point)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_found_by_number_or_source() {
        let mi = "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n\
                  95 22 7:3 / /mnt/old\\040data ro,relatime shared:50 - ext4 /dev/loop3 ro\n\
                  96 22 0:55 / /srv rw shared:51 - btrfs /dev/sdc1 rw,space_cache\n";
        assert_eq!(
            mounted_at(mi, "7:3", "loop3").as_deref(),
            Some("/mnt/old data")
        );
        assert_eq!(mounted_at(mi, "8:33", "sdc1").as_deref(), Some("/srv"));
        assert_eq!(mounted_at(mi, "7:4", "loop4"), None);
        assert_eq!(mounted_at("garbage\n\n1 2\n", "7:4", ""), None);
    }

    #[test]
    fn holders_of_the_device_and_its_partitions() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sdb");
        fs::create_dir_all(sys.join("holders")).unwrap();
        fs::write(sys.join("dev"), "8:16\n").unwrap();
        assert!(holders(&sys).is_empty());
        fs::create_dir_all(sys.join("sdb1/holders/md127")).unwrap();
        fs::write(sys.join("sdb1/partition"), "1\n").unwrap();
        fs::write(sys.join("sdb1/dev"), "8:17\n").unwrap();
        fs::create_dir_all(sys.join("holders/dm-0")).unwrap();
        assert_eq!(holders(&sys), ["dm-0", "md127"]);
        let mut parts = with_partitions(&sys);
        parts.sort();
        assert_eq!(
            parts,
            [
                ("sdb".to_string(), "8:16".to_string()),
                ("sdb1".to_string(), "8:17".to_string())
            ]
        );
    }
}
