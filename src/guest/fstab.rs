//! `/etc/fstab`, `/etc/crypttab` and the initramfs resume device: old disk
//! names mapped to Xen names; entries of devices that were not migrated
//! (CD-ROM, floppy, disks left behind) commented out with a note.

use super::FixupKind;
use super::change::{Planned, edit, map_lines};
use super::devmap::{DevMap, Mapped};
use super::guestfs::{GuestFs, GuestFsError};

const NOTE_PREFIX: &str = "# p2xen: not migrated";

pub fn plan(gfs: &GuestFs, map: &DevMap) -> Result<Vec<Planned>, GuestFsError> {
    let mut out = Vec::new();
    if let Some(old) = gfs.read("/etc/fstab")? {
        let new = map_lines(&old, |l| fstab_line(l, map));
        out.extend(edit(
            FixupKind::Fstab,
            "/etc/fstab",
            &old,
            new,
            "device names mapped to Xen virtual disks; removable devices commented out",
        ));
    }
    if let Some(old) = gfs.read("/etc/crypttab")? {
        let new = map_lines(&old, |l| map_field(l, 1, map));
        out.extend(edit(
            FixupKind::Fstab,
            "/etc/crypttab",
            &old,
            new,
            "encrypted volumes' source devices mapped to Xen virtual disks",
        ));
    }
    for path in ["/etc/initramfs-tools/conf.d/resume", "/etc/uswsusp.conf"] {
        if let Some(old) = gfs.read(path)? {
            let new = map_lines(&old, |l| map_assignment(l, map));
            out.extend(edit(
                FixupKind::Fstab,
                path,
                &old,
                new,
                "resume (swap) device mapped to its Xen virtual disk",
            ));
        }
    }
    Ok(out)
}

fn fstab_line(line: &str, map: &DevMap) -> String {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return line.to_string();
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    let Some(spec) = fields.first() else {
        return line.to_string();
    };
    let vfstype = fields.get(2).copied().unwrap_or("");
    let removable_fs = matches!(vfstype, "iso9660" | "udf");
    match map.map(spec) {
        Mapped::NotMigrated(why) => format!("{NOTE_PREFIX} ({why}): {line}"),
        _ if removable_fs => format!("{NOTE_PREFIX} (CD-ROM/DVD filesystem): {line}"),
        Mapped::To(new) => replace_field(line, 0, &new),
        Mapped::Same => line.to_string(),
    }
}

/// Maps the `/dev/...` in whitespace-separated field `idx`.
fn map_field(line: &str, idx: usize, map: &DevMap) -> String {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return line.to_string();
    }
    match t.split_whitespace().nth(idx).map(|f| map.map(f)) {
        Some(Mapped::To(new)) => replace_field(line, idx, &new),
        _ => line.to_string(),
    }
}

/// `RESUME=/dev/hda2`, `resume device = /dev/hda2`.
fn map_assignment(line: &str, map: &DevMap) -> String {
    if line.trim_start().starts_with('#') {
        return line.to_string();
    }
    let Some(eq) = line.find('=') else {
        return line.to_string();
    };
    let (head, tail) = line.split_at(eq + 1);
    let ws = tail.len() - tail.trim_start().len();
    let (lead, val) = tail.split_at(ws);
    let dev_len = val.find(char::is_whitespace).unwrap_or(val.len());
    let (dev, rest) = val.split_at(dev_len);
    match map.map(dev) {
        Mapped::To(new) => format!("{head}{lead}{new}{rest}"),
        _ => line.to_string(),
    }
}

/// Replaces whitespace-separated field `idx`, keeping all spacing.
fn replace_field(line: &str, idx: usize, new: &str) -> String {
    let mut pos = 0;
    let mut n = 0;
    let bytes = line.as_bytes();
    while pos < bytes.len() {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            break;
        }
        if n == idx {
            return format!("{}{new}{}", &line[..start], &line[pos..]);
        }
        n += 1;
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_fstab() {
        let map = DevMap::new(1, true);
        for (line, want) in [
            (
                "/dev/hda1  /  ext3 defaults,errors=remount-ro 0 1",
                "/dev/xvda1  /  ext3 defaults,errors=remount-ro 0 1",
            ),
            (
                "/dev/hdc /media/cdrom0 udf,iso9660 user,noauto 0 0",
                "# p2xen: not migrated (disk not migrated): /dev/hdc /media/cdrom0 udf,iso9660 user,noauto 0 0",
            ),
            (
                "UUID=1234 / ext4 defaults 0 1",
                "UUID=1234 / ext4 defaults 0 1",
            ),
            (
                "proc /proc proc defaults 0 0",
                "proc /proc proc defaults 0 0",
            ),
        ] {
            assert_eq!(fstab_line(line, &map), want, "{line}");
        }
        assert_eq!(
            map_assignment("RESUME=/dev/sda2", &map),
            "RESUME=/dev/xvda2"
        );
        assert_eq!(
            map_field("cswap /dev/sda3 /dev/urandom swap", 1, &map),
            "cswap /dev/xvda3 /dev/urandom swap"
        );
    }

    #[test]
    fn by_id_specs_become_uuid() {
        let map = DevMap::new(1, true).with_uuids(vec![(
            crate::guest::devmap::DiskPart {
                disk: 0,
                part: Some(2),
            },
            "0c1d-aa".to_string(),
        )]);
        assert_eq!(
            fstab_line(
                "/dev/disk/by-id/ata-WDC_WD10EZEX_WD-WCC3F1-part2 /srv ext4 defaults 0 2",
                &map
            ),
            "UUID=0c1d-aa /srv ext4 defaults 0 2"
        );
        assert_eq!(
            map_field(
                "data /dev/disk/by-path/pci-0000:00:17.0-ata-1-part2 none luks",
                1,
                &map
            ),
            "data UUID=0c1d-aa none luks"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_fstab_lines(line in "\\PC{0,80}") {
            let map = DevMap::new(2, true);
            let _ = fstab_line(&line, &map);
            let _ = map_field(&line, 1, &map);
            let _ = map_assignment(&line, &map);
            let _ = replace_field(&line, 2, "x");
        }
    }
}
