//! Mapping of the source server's device names (`/dev/hda1`, `/dev/sdb2`,
//! `/dev/cciss/c0d0p1`, `/dev/nvme0n1p2`, `/dev/md0`) to the names the guest
//! sees under Xen (`/dev/xvda1`, ...).
//!
//! The disk index comes from the name (hda/sda = first disk, cciss c0d1 and
//! nvme1 = second disk), matching the sender's disk order; a name whose
//! disk was not migrated, and CD-ROM/floppy names, map to `NotMigrated`.
//!
//! `/dev/disk/by-id/...` and `/dev/disk/by-path/...` name hardware the guest
//! does not have: a partition so named becomes `UUID=` of the filesystem
//! copied from it (the same under PV and HVM), the disk being the one whose
//! serial the by-id name carries, or the only disk.

/// What becomes of one device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Leave as it is (not a device name we know, UUID=/LABEL=, HVM layout).
    Same,
    /// Replace with this `/dev/...` name.
    To(String),
    /// The device has no counterpart in the guest: a CD-ROM, floppy, or a
    /// disk that was not copied.
    NotMigrated(&'static str),
}

#[derive(Debug, Clone)]
pub struct DevMap {
    /// Number of migrated disks.
    disks: usize,
    /// False for HVM: emulated disks keep the names the guest knew.
    rename: bool,
    /// Flattened md arrays: `/dev/mdN` (and `/dev/md/N`) → the member's new name.
    md: Vec<(String, String)>,
    /// Flattened md arrays by array UUID (mdadm's spelling, lower case):
    /// udev's `/dev/disk/by-id/md-uuid-UUID` → the member's new name.
    md_uuids: Vec<(String, String)>,
    /// Partition numbers copied, per disk; `None` = not known (map all).
    parts: Option<Vec<Vec<u32>>>,
    /// Filesystem UUIDs of the copied volumes.
    uuids: Vec<(DiskPart, String)>,
    /// Serial numbers of the disks, in disk order (by-id names carry them).
    serials: Vec<Option<String>>,
}

/// A parsed block-device name: disk index and optional partition number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskPart {
    pub disk: usize,
    pub part: Option<u32>,
}

impl DevMap {
    pub fn new(disks: usize, rename: bool) -> Self {
        DevMap {
            disks,
            rename,
            md: Vec::new(),
            md_uuids: Vec::new(),
            parts: None,
            uuids: Vec::new(),
            serials: Vec::new(),
        }
    }

    /// The filesystem UUIDs by-id/by-path partition names are replaced with.
    pub fn with_uuids(mut self, uuids: Vec<(DiskPart, String)>) -> Self {
        self.uuids = uuids;
        self
    }

    /// The disks' serial numbers, which identify a disk by its by-id name.
    pub fn with_serials(mut self, serials: Vec<Option<String>>) -> Self {
        self.serials = serials;
        self
    }

    /// `by-id/ata-MODEL_SERIAL-part2`, `by-path/pci-0000:00:1f.2-ata-1-part2`.
    fn map_persistent(&self, name: &str) -> Mapped {
        let (disk_name, part) = match name.rsplit_once("-part") {
            Some((d, p)) => match parse_num(p) {
                Some(n) => (d, Some(n)),
                None => (name, None),
            },
            None => (name, None),
        };
        let by_serial = self.serials.iter().position(|s| {
            s.as_deref()
                .map(|s| s.trim().replace(' ', "_"))
                .is_some_and(|s| s.len() >= 4 && disk_name.ends_with(&s))
        });
        let disk = match by_serial {
            Some(d) => d,
            None if self.disks == 1 => 0,
            None => return Mapped::Same,
        };
        let dp = DiskPart { disk, part };
        if let Some((_, u)) = self.uuids.iter().find(|(d, _)| *d == dp) {
            return Mapped::To(format!("UUID={u}"));
        }
        if self.rename {
            Mapped::To(xvd_name(dp))
        } else {
            Mapped::Same
        }
    }

    /// Names the partitions each disk has in the copy: a name of a partition
    /// not in this list maps to `NotMigrated`.
    pub fn with_partitions(mut self, parts: Vec<Vec<u32>>) -> Self {
        self.parts = Some(parts);
        self
    }

    /// Record that the md array `md_name` (e.g. "md0") was flattened into
    /// `target` (a device name, or `UUID=...` where the name is not known).
    pub fn add_md(&mut self, md_name: &str, target: &str) {
        self.md.push((md_name.to_string(), target.to_string()));
    }

    /// A flattened array known by its UUID (`xxxxxxxx:xxxxxxxx:...`).
    pub fn add_md_uuid(&mut self, uuid: &str, target: &str) {
        self.md_uuids
            .push((uuid.to_ascii_lowercase(), target.to_string()));
    }

    /// Some md array was flattened: the md boot arguments go.
    fn any_md(&self) -> bool {
        !self.md.is_empty() || !self.md_uuids.is_empty()
    }

    pub fn map(&self, dev: &str) -> Mapped {
        let Some(name) = dev.strip_prefix("/dev/") else {
            return Mapped::Same;
        };
        if let Some(u) = name.strip_prefix("disk/by-id/md-uuid-") {
            let u = u.to_ascii_lowercase();
            return match self.md_uuids.iter().find(|(m, _)| *m == u) {
                Some((_, t)) => Mapped::To(t.clone()),
                None => Mapped::Same,
            };
        }
        if let Some(n) = name
            .strip_prefix("disk/by-id/")
            .or_else(|| name.strip_prefix("disk/by-path/"))
        {
            return self.map_persistent(n);
        }
        if is_removable_name(name) {
            return Mapped::NotMigrated("CD-ROM/floppy device");
        }
        if let Some(md) = md_name(name) {
            return match self.md.iter().find(|(m, _)| *m == md) {
                Some((_, t)) => Mapped::To(t.clone()),
                _ => Mapped::Same,
            };
        }
        let Some(dp) = parse_disk_name(name) else {
            return Mapped::Same;
        };
        if dp.disk >= self.disks {
            return Mapped::NotMigrated("disk not migrated");
        }
        if let (Some(p), Some(parts)) = (dp.part, &self.parts) {
            if parts.get(dp.disk).is_some_and(|list| !list.contains(&p)) {
                return Mapped::NotMigrated("no such partition in the copy");
            }
        }
        if !self.rename {
            return Mapped::Same;
        }
        Mapped::To(xvd_name(dp))
    }
}

/// `/dev/xvdXN` for a disk index and partition number.
pub fn xvd_name(dp: DiskPart) -> String {
    let mut s = format!("/dev/{}", vdev_disk(dp.disk));
    if let Some(p) = dp.part {
        s.push_str(&p.to_string());
    }
    s
}

/// The xl vdev of a whole disk: xvda .. xvdz, xvdaa ...
pub fn vdev_disk(index: usize) -> String {
    format!("xvd{}", disk_letters(index))
}

fn disk_letters(index: usize) -> String {
    const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
    let letter = |i: usize| char::from(LETTERS[i % 26]);
    if index < 26 {
        letter(index).to_string()
    } else {
        let hi = index / 26 - 1;
        format!("{}{}", letter(hi), letter(index % 26))
    }
}

fn letters_index(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let idx = |c: u8| -> Option<usize> { c.is_ascii_lowercase().then(|| usize::from(c - b'a')) };
    match b {
        [a] => idx(*a),
        [a, c] => Some((idx(*a)? + 1) * 26 + idx(*c)?),
        _ => None,
    }
}

fn split_digits_suffix(s: &str) -> (&str, &str) {
    let cut = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    s.split_at(cut)
}

fn parse_num(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 6 {
        return None;
    }
    s.parse().ok()
}

fn is_removable_name(name: &str) -> bool {
    let (stem, digits) = split_digits_suffix(name);
    matches!(name, "cdrom" | "dvd" | "cdrw" | "dvdrw" | "floppy")
        || (matches!(stem, "sr" | "scd" | "fd" | "cdrom" | "dvd") && !digits.is_empty())
}

fn md_name(name: &str) -> Option<String> {
    if let Some(n) = name.strip_prefix("md/") {
        return parse_num(n).map(|n| format!("md{n}"));
    }
    let n = name.strip_prefix("md")?;
    parse_num(n).map(|n| format!("md{n}"))
}

/// Splits `N` or `NpP` (controller-style names: `c0d1p2`'s `1p2`,
/// `nvme0n1p3`'s `1p3`, `mmcblk0p1`'s `0p1`) into `N` and partition `P`.
fn split_partition(s: &str) -> Option<(&str, Option<u32>)> {
    match s.split_once('p') {
        Some((n, p)) => Some((n, Some(parse_num(p)?))),
        None => Some((s, None)),
    }
}

/// Parses `hda1`, `sdb`, `xvdc2`, `vda1`, `cciss/c0d1p2`, `ida/c0d0p1`,
/// `nvme0n1p3`, `mmcblk0p1`.
pub fn parse_disk_name(name: &str) -> Option<DiskPart> {
    for prefix in ["cciss/", "ida/", "rd/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let rest = rest.strip_prefix('c')?;
            let (_ctrl, rest) = rest.split_once('d')?;
            let (disk, part) = split_partition(rest)?;
            let disk = parse_num(disk)? as usize;
            return Some(DiskPart { disk, part });
        }
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        let (ctrl, rest) = rest.split_once('n')?;
        let (_ns, part) = split_partition(rest)?;
        let disk = parse_num(ctrl)? as usize;
        return Some(DiskPart { disk, part });
    }
    if let Some(rest) = name.strip_prefix("mmcblk") {
        let (disk, part) = split_partition(rest)?;
        let disk = parse_num(disk)? as usize;
        return Some(DiskPart { disk, part });
    }
    for prefix in ["xvd", "hd", "sd", "vd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let (letters, digits) = split_digits_suffix(rest);
            let disk = letters_index(letters)?;
            let part = if digits.is_empty() {
                None
            } else {
                Some(parse_num(digits)?)
            };
            return Some(DiskPart { disk, part });
        }
    }
    None
}

/// Rewrites every `key=/dev/...` token (root=, resume=) of a kernel command
/// line through `map`; other tokens are kept byte for byte.
pub fn map_cmdline_devices(line: &str, map: &DevMap) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        let (space, after) = rest.split_at(ws);
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (tok, tail) = after.split_at(end);
        rest = tail;
        let kept = if !map.any_md() {
            tok.to_string()
        } else {
            without_md_arg(tok)
        };
        let dropped = kept != tok;
        let tok = kept;
        // A dropped argument takes the space before it along (a closing
        // quote it carried stays).
        if !dropped || !tok.trim_start_matches(['"', '\'']).is_empty() {
            out.push_str(space);
        }
        out.push_str(&map_token(&tok, map));
    }
    out
}

/// Where `key` starts an argument in `tok` (at its start, or after the
/// quote or `=` of `GRUB_CMDLINE_LINUX="`), and the value's length up to a
/// closing quote.
fn arg_at(tok: &str, key: &str) -> Option<(usize, usize)> {
    let i = tok.find(key)?;
    let at_start = tok[..i]
        .chars()
        .next_back()
        .is_none_or(|c| matches!(c, '"' | '\'' | '='));
    if !at_start {
        return None;
    }
    let val_start = i + key.len();
    let val_len = tok[val_start..]
        .find(['"', '\''])
        .unwrap_or(tok.len() - val_start);
    Some((i, val_len))
}

/// Once the arrays are flattened, the arguments that make the initrd
/// assemble or wait for them (dracut's `rd.md.uuid=`, `rd.md=`, the
/// kernel's `md=`) name arrays that no longer exist: dropped, quotes kept.
fn without_md_arg(tok: &str) -> String {
    for key in ["rd.md.uuid=", "rd.md=", "md="] {
        if let Some((i, val_len)) = arg_at(tok, key) {
            let end = i + key.len() + val_len;
            return format!("{}{}", &tok[..i], &tok[end..]);
        }
    }
    tok.to_string()
}

fn map_token(tok: &str, map: &DevMap) -> String {
    for key in ["root=", "resume="] {
        let Some((i, val_len)) = arg_at(tok, key) else {
            continue;
        };
        let val_start = i + key.len();
        let dev = &tok[val_start..val_start + val_len];
        if let Mapped::To(new) = map.map(dev) {
            return format!("{}{new}{}", &tok[..val_start], &tok[val_start + val_len..]);
        }
    }
    tok.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md_arguments_go_once_an_array_is_flattened() {
        let mut m = DevMap::new(1, true);
        let line = "linux /vmlinuz root=/dev/md0 ro rd.md.uuid=a:b:c:d md=0,/dev/sda1 quiet";
        // No array flattened: the md arguments stay.
        assert_eq!(map_cmdline_devices(line, &m), line);
        m.add_md("md0", "/dev/xvda1");
        assert_eq!(
            map_cmdline_devices(line, &m),
            "linux /vmlinuz root=/dev/xvda1 ro quiet"
        );
        assert_eq!(
            map_cmdline_devices("GRUB_CMDLINE_LINUX=\"rd.md.uuid=a:b rd.md=1\"", &m),
            "GRUB_CMDLINE_LINUX=\"\""
        );
        assert_eq!(
            map_cmdline_devices("GRUB_CMDLINE_LINUX=\"quiet rd.md.uuid=a:b\"", &m),
            "GRUB_CMDLINE_LINUX=\"quiet\""
        );
    }

    #[test]
    fn names_map_to_xvd() {
        let m = DevMap::new(2, true);
        let to = |s: &str| match m.map(s) {
            Mapped::To(t) => t,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(to("/dev/hda1"), "/dev/xvda1");
        assert_eq!(to("/dev/sdb2"), "/dev/xvdb2");
        assert_eq!(to("/dev/cciss/c0d0p3"), "/dev/xvda3");
        assert_eq!(to("/dev/nvme1n1p2"), "/dev/xvdb2");
        assert_eq!(to("/dev/nvme0n1"), "/dev/xvda");
        assert_eq!(to("/dev/xvda1"), "/dev/xvda1");
        assert_eq!(m.map("/dev/hdc"), Mapped::NotMigrated("disk not migrated"));
        assert_eq!(
            m.map("/dev/cdrom"),
            Mapped::NotMigrated("CD-ROM/floppy device")
        );
        assert_eq!(
            m.map("/dev/fd0"),
            Mapped::NotMigrated("CD-ROM/floppy device")
        );
        assert_eq!(m.map("/dev/mapper/vg-root"), Mapped::Same);
        assert_eq!(m.map("UUID=abc"), Mapped::Same);
        assert_eq!(m.map("/dev/md0"), Mapped::Same);
        assert_eq!(DevMap::new(2, false).map("/dev/hda1"), Mapped::Same);
    }

    #[test]
    fn partitions_not_in_the_copy() {
        let m = DevMap::new(2, true).with_partitions(vec![vec![1, 5], vec![]]);
        assert_eq!(m.map("/dev/sda5"), Mapped::To("/dev/xvda5".into()));
        assert_eq!(
            m.map("/dev/sda2"),
            Mapped::NotMigrated("no such partition in the copy")
        );
        assert_eq!(m.map("/dev/sda"), Mapped::To("/dev/xvda".into()));
        assert_eq!(
            m.map("/dev/sdb1"),
            Mapped::NotMigrated("no such partition in the copy")
        );
    }

    #[test]
    fn by_id_and_by_path_become_uuids() {
        let p = |disk, part| DiskPart { disk, part };
        let uuids = vec![
            (p(0, Some(1)), "aaaa-1".to_string()),
            (p(1, Some(2)), "bbbb-2".to_string()),
        ];
        let one = DevMap::new(1, true).with_uuids(uuids.clone());
        let two = DevMap::new(2, false)
            .with_uuids(uuids)
            .with_serials(vec![Some("5JV4A1B2".into()), Some("S4EW NX0M".into())]);
        let to = |s: &str| Mapped::To(s.to_string());
        for (map, dev, want) in [
            (
                &one,
                "by-path/pci-0000:00:1f.2-ata-1-part1",
                to("UUID=aaaa-1"),
            ),
            (&one, "by-id/ata-ST380011A_5JV4A1B2-part3", to("/dev/xvda3")),
            (&one, "by-id/ata-ST380011A_5JV4A1B2", to("/dev/xvda")),
            (
                &two,
                "by-id/nvme-Samsung_SSD_970_S4EW_NX0M-part2",
                to("UUID=bbbb-2"),
            ),
            (
                &two,
                "by-id/ata-ST380011A_5JV4A1B2-part1",
                to("UUID=aaaa-1"),
            ),
            // No UUID under HVM: the emulated disk has other by-id names,
            // but nothing better is known.
            (&two, "by-id/ata-ST380011A_5JV4A1B2-part9", Mapped::Same),
            // Two disks and no serial to tell them apart.
            (&two, "by-path/pci-0000:00:1f.2-ata-1-part1", Mapped::Same),
        ] {
            assert_eq!(map.map(&format!("/dev/disk/{dev}")), want, "{dev}");
        }
        assert_eq!(
            map_cmdline_devices(
                "linux /vmlinuz root=/dev/disk/by-id/wwn-0x5000-part1 ro",
                &one
            ),
            "linux /vmlinuz root=UUID=aaaa-1 ro"
        );
    }

    #[test]
    fn flattened_md_maps_to_member() {
        let mut m = DevMap::new(1, true);
        m.add_md("md0", "/dev/xvda1");
        assert_eq!(m.map("/dev/md0"), Mapped::To("/dev/xvda1".into()));
        assert_eq!(m.map("/dev/md/0"), Mapped::To("/dev/xvda1".into()));
        assert_eq!(m.map("/dev/md1"), Mapped::Same);
    }

    #[test]
    fn cmdline_tokens_keep_spacing() {
        let m = DevMap::new(1, true);
        assert_eq!(
            map_cmdline_devices("\tkernel /vmlinuz root=/dev/sda1  ro resume=/dev/sda2", &m),
            "\tkernel /vmlinuz root=/dev/xvda1  ro resume=/dev/xvda2"
        );
        assert_eq!(
            map_cmdline_devices("GRUB_CMDLINE_LINUX=\"root=/dev/hda1\"", &m),
            "GRUB_CMDLINE_LINUX=\"root=/dev/xvda1\""
        );
    }

    #[test]
    fn disk_letters_roundtrip() {
        for i in [0usize, 1, 25, 26, 27, 51, 52] {
            let l = disk_letters(i);
            assert_eq!(letters_index(&l), Some(i), "{l}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_guest_text(line in "\\PC{0,80}", dev in "/dev/[a-z0-9/]{0,12}") {
            let mut m = DevMap::new(3, true);
            m.add_md("md0", "/dev/xvda1");
            let _ = m.map(&dev);
            let _ = map_cmdline_devices(&line, &m);
            let _ = map_cmdline_devices(&format!("root={dev} {line}"), &m);
        }
    }
}
