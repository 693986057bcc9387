//! The copy's volumes: the images, the filesystems in them (partitions, or
//! whole disks without a table, and the LVs of the LVM2 PVs among them; see
//! `guest::lvm` for why the copy's VG is not activated), which of them is
//! the guest's root, and md members flattened to plain filesystems.

use std::path::{Path, PathBuf};

use super::super::change::Fixup;
use super::super::devmap::{DiskPart, parse_disk_name, vdev_disk};
use super::super::guestfs::GuestFs;
use super::super::lvm::{self, LvPlace, LvVolume, OpenVolume};
use super::super::mount::{MountPoint, mount_root, run};
use super::super::xlcfg::safe_value;
use super::super::{ConvertRequest, FixupKind, GuestError, Layout, mdraid, split};
use super::Conversion;

/// One filesystem-bearing piece of the copy: a partition, or a whole disk
/// without a partition table.
#[derive(Debug, Clone)]
pub(in crate::guest) struct Volume {
    pub disk: usize,
    pub part: Option<u32>,
    /// Image holding it, and where in that image.
    pub image: PathBuf,
    pub offset: u64,
    pub size: u64,
    pub fs_kind: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub has_os: bool,
    pub raid_member: bool,
    /// For an md member: the UUID of the filesystem inside.
    pub inner_uuid: Option<String>,
    /// The sender flattened the md array this was a member of (see
    /// `send::flatten`): what it names.
    pub md_flattened_from: Option<String>,
    /// An LV of a copied PV (`part` is then the PV's partition): where it
    /// lies. For a linear LV `offset` and `size` are its bytes in `image`.
    pub lv: Option<LvVolume>,
}

impl Volume {
    pub fn dp(&self) -> DiskPart {
        DiskPart {
            disk: self.disk,
            part: self.part,
        }
    }
    pub fn describe(&self) -> String {
        let place = match self.part {
            Some(p) => format!("disk{} partition {p}", self.disk),
            None => format!("disk{}", self.disk),
        };
        match &self.lv {
            Some(lv) => format!("LV {}/{} (PV on {place})", lv.vg, lv.name),
            None => place,
        }
    }

    /// The root device as the guest names it under Xen: its xvd name, or
    /// for an LV its `/dev/mapper` name (LVM stays inside the guest's disk).
    pub fn guest_device(&self) -> String {
        match &self.lv {
            Some(lv) => lv.mapper_path(),
            None => super::super::devmap::xvd_name(self.dp()),
        }
    }

    /// Opens the volume as a block device on dom0 (see [`OpenVolume`]);
    /// `migration` names a device-mapper table where one is needed.
    pub fn open(&self, migration: &str, read_only: bool) -> Result<OpenVolume, GuestError> {
        Ok(OpenVolume::open(
            &self.image,
            self.offset,
            self.size,
            self.lv.as_ref(),
            migration,
            read_only,
        )?)
    }

    fn is_pv(&self) -> bool {
        matches!(self.fs_kind.as_deref(), Some("lvm2_pv" | "LVM2_member"))
    }
}

/// The images of the guest's disks, `STORE/NAME/diskN.img` (or the LVs they
/// link to), as absolute paths.
pub(super) fn disk_images(req: &ConvertRequest) -> Result<Vec<PathBuf>, GuestError> {
    let n = req.machine.disks.len();
    if n == 0 {
        return Err(GuestError::Invalid(format!(
            "{}: machine.json lists no disks",
            req.store_dir.display()
        )));
    }
    let dir = std::path::absolute(&req.store_dir).map_err(|source| GuestError::Io {
        path: req.store_dir.clone(),
        source,
    })?;
    if !safe_value(&dir.to_string_lossy()) {
        return Err(GuestError::Invalid(format!(
            "store path {}: quotes, commas and backslashes break the xl config; use another path",
            dir.display()
        )));
    }
    (0..n)
        .map(|i| {
            let p = dir.join(format!("disk{i}.img"));
            let kind = std::fs::metadata(&p).map(|m| m.file_type());
            match kind {
                Ok(k) if k.is_file() => Ok(p),
                // `--store lvm:VG`: diskN.img links to the LV, and the xl
                // config names the LV itself (/dev/VG/LV, a phy: disk).
                Ok(k) if std::os::unix::fs::FileTypeExt::is_block_device(&k) => {
                    Ok(std::fs::read_link(&p).unwrap_or(p))
                }
                _ => Err(GuestError::MissingImage { path: p, disks: n }),
            }
        })
        .collect()
}

/// The volumes of the disks machine.json describes, sized against their images.
pub(super) fn volumes(req: &ConvertRequest, images: &[PathBuf]) -> Result<Vec<Volume>, GuestError> {
    let mut v = Vec::new();
    for (i, (d, img)) in req.machine.disks.iter().zip(images).enumerate() {
        // Seeking to the end sizes block devices (LVs) too; metadata says 0.
        let size = std::fs::File::open(img)
            .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
            .map_err(|source| GuestError::Io {
                path: img.clone(),
                source,
            })?;
        if d.partitions.is_empty() {
            let fs = d.filesystem.clone().unwrap_or_default();
            v.push(Volume {
                disk: i,
                part: None,
                image: img.clone(),
                offset: 0,
                size,
                raid_member: fs.is_raid_member(),
                inner_uuid: flattened_uuid(&fs),
                md_flattened_from: fs.details.md_flattened_from.clone(),
                fs_kind: fs.kind,
                uuid: fs.uuid,
                label: fs.label,
                has_os: d.os.is_some(),
                lv: None,
            });
            add_lvs(&mut v, &fs.details.logical_volumes);
            continue;
        }
        for p in &d.partitions {
            if p.is_extended_container() || p.size_bytes == 0 {
                continue;
            }
            if p.start_bytes
                .checked_add(p.size_bytes)
                .is_none_or(|end| end > size)
            {
                return Err(GuestError::Invalid(format!(
                    "machine.json: disk {i} partition {} ({} bytes at byte {}) lies beyond {} ({size} bytes); the copy is incomplete",
                    p.number,
                    p.size_bytes,
                    p.start_bytes,
                    img.display()
                )));
            }
            let fs = p.filesystem.clone().unwrap_or_default();
            v.push(Volume {
                disk: i,
                part: Some(p.number),
                image: img.clone(),
                offset: p.start_bytes,
                size: p.size_bytes,
                raid_member: fs.is_raid_member(),
                inner_uuid: flattened_uuid(&fs),
                md_flattened_from: fs.details.md_flattened_from.clone(),
                fs_kind: fs.kind,
                uuid: fs.uuid,
                label: fs.label,
                has_os: p.os.is_some(),
                lv: None,
            });
            add_lvs(&mut v, &fs.details.logical_volumes);
        }
    }
    Ok(v)
}

/// If the last volume of `v` is an LVM2 PV: its LVs after it, located from
/// the PV's metadata in the copy (the bytes the guest will use), named by
/// machine.json's LV filesystems where the sender probed them.
fn add_lvs(v: &mut Vec<Volume>, known: &[super::super::machine::LvFs]) {
    let Some(pv) = v.last().filter(|p| p.is_pv()).cloned() else {
        return;
    };
    // A PV whose metadata does not read is copied all the same; only its
    // LVs cannot be looked into (a root there ends in "no root").
    let found = match lvm::lvs_of_pv(&pv.image, pv.part, pv.offset, pv.size) {
        Ok(found) => found,
        Err(e) => {
            log::warn!("{}: {e}; its LVs are not looked into", pv.describe());
            return;
        }
    };
    for found in found {
        let fs = known
            .iter()
            .find(|k| k.name == found.lv.name)
            .and_then(|k| k.filesystem.clone())
            .unwrap_or_default();
        log::info!(
            "{}: LV {}/{} at byte {} ({} bytes), {}",
            pv.describe(),
            found.lv.vg,
            found.lv.name,
            found.offset,
            found.size,
            match &found.lv.place {
                LvPlace::Window => "one run of the PV".to_string(),
                LvPlace::Table(_) => "a device-mapper table over the PV".to_string(),
                LvPlace::Unusable(why) => format!("not openable on dom0: {why}"),
            }
        );
        v.push(Volume {
            disk: pv.disk,
            part: pv.part,
            image: pv.image.clone(),
            offset: found.offset,
            size: found.size,
            fs_kind: fs.kind,
            uuid: fs.uuid,
            label: fs.label,
            has_os: false,
            raid_member: false,
            inner_uuid: None,
            md_flattened_from: None,
            lv: Some(found.lv),
        });
    }
}

/// A filesystem the sender flattened is the one that was inside the array.
fn flattened_uuid(fs: &super::super::machine::Filesystem) -> Option<String> {
    fs.details.md_flattened_from.as_ref().and(fs.uuid.clone())
}

/// machine.json may lack UUIDs and labels (an older sender): ask blkid.
/// For md members, the filesystem inside (`-u filesystem` skips the raid
/// superblock), which names the flattened array where device names do not.
pub(super) fn fill_ids_by_blkid(vols: &mut [Volume]) {
    for v in vols.iter_mut() {
        // An LV mapped by a table is no window of the image blkid could read.
        if v.lv.as_ref().is_some_and(|l| l.place != LvPlace::Window) {
            continue;
        }
        let img = v.image.to_string_lossy().to_string();
        let (o, s) = (v.offset.to_string(), v.size.to_string());
        if v.raid_member {
            let args = [
                "-p",
                "-u",
                "filesystem",
                "-o",
                "export",
                "-O",
                &o,
                "-S",
                &s,
                &img,
            ];
            if let Ok(out) = run("blkid", &args) {
                v.inner_uuid = out
                    .lines()
                    .find_map(|l| l.strip_prefix("UUID="))
                    .map(str::to_string);
            }
            continue;
        }
        if v.uuid.is_some() {
            continue;
        }
        let Ok(out) = run("blkid", &["-p", "-o", "export", "-O", &o, "-S", &s, &img]) else {
            continue;
        };
        for l in out.lines() {
            match l.split_once('=') {
                Some(("UUID", u)) => v.uuid = Some(u.to_string()),
                Some(("LABEL", l)) => v.label = Some(l.to_string()),
                Some(("TYPE", t)) if v.fs_kind.is_none() => v.fs_kind = Some(t.to_string()),
                _ => {}
            }
        }
    }
}

/// The images the guest is given, as (vdev, image) pairs: the disk images,
/// or with layout partitions one cut out per partition.
pub(super) fn guest_images(
    req: &ConvertRequest,
    layout: Layout,
    disk_images: &[PathBuf],
    vols: &mut [Volume],
) -> Result<Vec<(String, PathBuf)>, GuestError> {
    match layout {
        Layout::Partitions => cut_partition_images(req, disk_images, vols),
        Layout::Disk => Ok(disk_images
            .iter()
            .enumerate()
            .map(|(i, p)| (vdev_disk(i), p.clone()))
            .collect()),
    }
}

/// Layout partitions: cuts each partition out of its disk image into
/// `diskN-partM.img` (unless `dry_run`) and points the volume at it, so all
/// later steps change the partition images and leave `diskN.img` alone.
/// Returns (vdev, image) pairs for the config.
fn cut_partition_images(
    req: &ConvertRequest,
    disk_images: &[PathBuf],
    vols: &mut [Volume],
) -> Result<Vec<(String, PathBuf)>, GuestError> {
    let dir = disk_images
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| req.store_dir.clone());
    let out_of = |v: &Volume| match v.part {
        Some(p) => dir.join(format!("disk{}-part{p}.img", v.disk)),
        None => v.image.clone(),
    };
    // Refuse before writing anything, not half-way through.
    if !req.dry_run {
        for v in vols.iter().filter(|v| v.part.is_some() && v.lv.is_none()) {
            let out = out_of(v);
            if out.exists() && !req.force {
                return Err(GuestError::Exists { path: out });
            }
        }
    }
    let mut images = Vec::new();
    for v in vols.iter_mut() {
        // LVs travel inside their PV's partition image.
        if v.lv.is_some() {
            continue;
        }
        let out = out_of(v);
        let vdev = match v.part {
            Some(p) => format!("{}{p}", vdev_disk(v.disk)),
            None => vdev_disk(v.disk),
        };
        if v.part.is_some() && !req.dry_run {
            if out.exists() {
                std::fs::remove_file(&out).map_err(|source| GuestError::Io {
                    path: out.clone(),
                    source,
                })?;
            }
            let n = split::copy_partition(&v.image, v.offset, v.size, &out)?;
            log::info!("{}: {n} bytes of data from {}", out.display(), v.describe());
            v.image = out.clone();
            v.offset = 0;
        }
        images.push((vdev, out));
    }
    repoint_lvs(vols);
    Ok(images)
}

/// After the partitions were cut out: each LV lies in its PV's partition
/// image now, at the same place relative to the PV.
fn repoint_lvs(vols: &mut [Volume]) {
    let pvs: Vec<(usize, Option<u32>, PathBuf, u64)> = vols
        .iter()
        .filter(|v| v.lv.is_none())
        .map(|v| (v.disk, v.part, v.image.clone(), v.offset))
        .collect();
    for v in vols.iter_mut() {
        let Some(lv) = v.lv.as_mut() else { continue };
        let Some((_, _, image, start)) = pvs
            .iter()
            .find(|(d, p, _, _)| *d == v.disk && *p == lv.pv_part)
        else {
            continue;
        };
        let rel = v.offset.saturating_sub(lv.pv_start);
        v.image = image.clone();
        v.offset = start.saturating_add(rel);
        lv.pv_start = *start;
    }
}

/// md RAID1 members whose data starts at the member's start: their
/// superblock is zeroed so the filesystem inside is a plain one. Returns the
/// indexes of the volumes so flattened.
pub(super) fn flatten_md_members(
    conv: &mut Conversion,
    vols: &[Volume],
) -> Result<Vec<usize>, GuestError> {
    let mut flattened = Vec::new();
    for (i, v) in vols.iter().enumerate() {
        if let Some(from) = &v.md_flattened_from {
            flattened.push(i);
            conv.fixup(done_by_the_sender(v, from));
        } else if v.raid_member && make_member_plain(conv, v)? {
            flattened.push(i);
        }
    }
    Ok(flattened)
}

/// The fix-up reporting what the sender did to `v` (`from`: "raid1 ...",
/// one mirror half made plain; "raid0 ..."/"raid10 ...", the array it
/// assembled into a disk of its own).
fn done_by_the_sender(v: &Volume, from: &str) -> Fixup {
    let (action, note, diff) = if from.starts_with("raid1 ") {
        (
            "flattened",
            format!("{} was an md RAID1 member", v.describe()),
            format!("the sender wrote the filesystem inside md {from} at the partition's start\n"),
        )
    } else {
        (
            "assembled",
            format!(
                "{} is a whole md array, assembled by the sender",
                v.describe()
            ),
            format!("the sender assembled md {from} into this disk\n"),
        )
    };
    Fixup {
        kind: FixupKind::MdRaid,
        file: v.image.display().to_string(),
        action: action.to_string(),
        note,
        diff,
    }
}

/// Zeroes the superblock of md RAID1 member `v` whose data starts at its
/// start, so the filesystem inside is a plain one; warns and leaves other
/// members alone. Whether `v` was made plain.
fn make_member_plain(conv: &mut Conversion, v: &Volume) -> Result<bool, GuestError> {
    let end = v.offset.saturating_add(v.size);
    let found = mdraid::find_superblock(&v.image, v.offset, v.size)?;
    if let Some((ver, abs)) = found {
        // Only a mirror half holds the whole filesystem: a striped or
        // parity member without its superblock would be lost to the
        // guest's own assembly, its only way to the data.
        let level = mdraid::superblock_level(&v.image, abs, ver)?;
        if level != Some(1) {
            conv.warn(format!(
                "md-raid: {} is a member of an md {} {} array: left as it is (only \
                 RAID1 members are made plain filesystems); the guest assembles the \
                 array itself, so its initrd must carry md and mdadm and every member \
                 disk must be in the guest",
                v.describe(),
                ver.name(),
                match level {
                    Some(-1) => "linear".to_string(),
                    Some(n) => format!("raid{n}"),
                    None => "unknown-level".to_string(),
                }
            ));
            return Ok(false);
        }
    }
    match found {
        Some((ver, abs)) if ver.data_at_start() => {
            if !conv.req.dry_run {
                mdraid::zero_superblock(&v.image, abs, end)?;
            }
            conv.fixup(Fixup {
                kind: FixupKind::MdRaid,
                file: v.image.display().to_string(),
                action: "zero".to_string(),
                note: format!("{} was an md RAID1 member", v.describe()),
                diff: format!(
                    "zeroed md {} superblock: 4096 bytes at byte {abs} of {}\n",
                    ver.name(),
                    v.image.display()
                ),
            });
            Ok(true)
        }
        Some((ver, _)) => {
            conv.warn(format!(
                "md-raid: {} has md metadata {}: its data starts after the superblock, so it \
                 is left as an array member; the guest assembles it degraded",
                v.describe(),
                ver.name()
            ));
            Ok(false)
        }
        None => {
            conv.warn(format!(
                "md-raid: {} is listed as an md member but no superblock was found",
                v.describe()
            ));
            Ok(false)
        }
    }
}

/// The root volume (see `find_root`).
pub(super) fn root_volume(req: &ConvertRequest, vols: &[Volume]) -> Result<Volume, GuestError> {
    let root = find_root(req, vols)?;
    let root = vols
        .get(root)
        .cloned()
        .ok_or_else(|| GuestError::Invalid("root volume index".to_string()))?;
    log::info!("guest root filesystem: {}", root.describe());
    Ok(root)
}

/// The volume holding the root filesystem: the one inspect found an OS on,
/// else the first that mounts and holds /etc/fstab.
fn find_root(req: &ConvertRequest, vols: &[Volume]) -> Result<usize, GuestError> {
    if let Some(i) = vols.iter().position(|v| v.has_os) {
        return Ok(i);
    }
    let mut tried = Vec::new();
    let mut unopened = Vec::new();
    for (i, v) in vols.iter().enumerate() {
        // An LV whose filesystem the sender did not know may be the root too.
        let unknown_lv = v.lv.is_some() && v.fs_kind.is_none();
        let mountable = v.raid_member
            || unknown_lv
            || matches!(
                v.fs_kind.as_deref(),
                Some("ext2" | "ext3" | "ext4" | "xfs" | "btrfs") | None
            );
        if !mountable {
            continue;
        }
        tried.push(v.describe());
        let probe = || -> Result<bool, GuestError> {
            let mnt = MountPoint::new()?;
            let dev = v.open(&req.name, true)?;
            let (mo, _) = mount_root(dev.path(), mnt.path(), v.fs_kind.as_deref(), true)?;
            let found = GuestFs::new(mnt.path()).exists("/etc/fstab");
            mo.unmount()?;
            dev.close()?;
            Ok(found)
        };
        match probe() {
            Ok(true) => return Ok(i),
            Ok(false) => {}
            // An LV that cannot be opened may well be the root: say why.
            Err(e @ GuestError::Lvm(_)) if v.lv.is_some() => unopened.push(e),
            Err(e) => log::debug!("{}: not a root filesystem: {e}", v.describe()),
        }
    }
    if let Some(first) = unopened.into_iter().next() {
        // Nothing else held the root, and this LV could not be looked
        // into: why is the answer, not "no root".
        log::error!(
            "no root filesystem in {} outside the LVs dom0 cannot open",
            req.store_dir.display()
        );
        return Err(first);
    }
    Err(GuestError::NoRoot {
        store: req.store_dir.clone(),
        tried: if tried.is_empty() {
            "nothing mountable".to_string()
        } else {
            tried.join(", ")
        },
    })
}

/// The volume an fstab spec (`UUID=`, `LABEL=` or `/dev/NAME`) names.
pub(super) fn find_volume(vols: &[Volume], spec: &str) -> Option<usize> {
    let eq = |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    if let Some(u) = spec.strip_prefix("UUID=") {
        return vols.iter().position(|v| eq(&v.uuid, u.trim_matches('"')));
    }
    if let Some(l) = spec.strip_prefix("LABEL=") {
        return vols.iter().position(|v| eq(&v.label, l.trim_matches('"')));
    }
    if let Some((vg, lv)) = lvm::lv_of_spec(spec) {
        let hit = vols
            .iter()
            .position(|v| v.lv.as_ref().is_some_and(|l| l.vg == vg && l.name == lv));
        if hit.is_some() {
            return hit;
        }
    }
    let dev = spec.strip_prefix("/dev/")?;
    let dp = parse_disk_name(dev)?;
    vols.iter().position(|v| v.lv.is_none() && v.dp() == dp)
}
