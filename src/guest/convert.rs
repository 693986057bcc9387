//! The conversion run: find the images and the guest's root, open them,
//! plan and apply the fix-ups, choose the boot route, write the xl config
//! and the report.

use std::path::{Path, PathBuf};

use super::change::{Fixup, Planned};
use super::devmap::{DevMap, DiskPart, parse_disk_name, vdev_disk, xvd_name};
use super::guestfs::GuestFs;
use super::mount::{LoopDevice, MountPoint, Mounted, fstypes_for, run};
use super::xencheck::KernelInfo;
use super::xlcfg::{PVGRUB_PV, PVGRUB_PVH, XlConfig, safe_value, valid_mac};
use super::{
    Bootloader, ConversionReport, ConvertRequest, FixupKind, GuestError, Layout, XenType, bootcfg,
    console, fstab, initrd_drivers, mdraid, modalias, monitoring, netrules, report, split,
    xencheck,
};

/// One filesystem-bearing piece of the copy: a partition, or a whole disk
/// without a partition table.
#[derive(Debug, Clone)]
struct Volume {
    disk: usize,
    part: Option<u32>,
    /// Image holding it, and where in that image.
    image: PathBuf,
    offset: u64,
    size: u64,
    fs_kind: Option<String>,
    uuid: Option<String>,
    label: Option<String>,
    has_os: bool,
    raid_member: bool,
    /// For an md member: the UUID of the filesystem inside.
    inner_uuid: Option<String>,
}

impl Volume {
    fn dp(&self) -> DiskPart {
        DiskPart {
            disk: self.disk,
            part: self.part,
        }
    }
    fn describe(&self) -> String {
        match self.part {
            Some(p) => format!("disk{} partition {p}", self.disk),
            None => format!("disk{}", self.disk),
        }
    }
}

/// The boot route decided for the guest.
#[derive(Debug, Clone)]
struct Route {
    xen_type: XenType,
    name: &'static str,
    reason: String,
    /// Kernel used by the dom0-kernel route.
    kernel: Option<KernelInfo>,
}

pub fn convert(req: &ConvertRequest) -> Result<ConversionReport, GuestError> {
    validate(req)?;
    let (layout, type_override) = guest_options(req)?;
    let mut warnings = Vec::new();
    let disk_images = disk_images(req)?;
    let _lock = if req.dry_run {
        None
    } else {
        Some(lock_store(&req.store_dir, &req.name)?)
    };
    let cfg_path = req.xen_dir.join(format!("{}.cfg", req.name));
    if !req.dry_run && !req.force && cfg_path.exists() {
        return Err(GuestError::Exists { path: cfg_path });
    }
    let mut vols = volumes(req, &disk_images)?;
    fill_ids_by_blkid(&mut vols);

    let images = match layout {
        Layout::Partitions => cut_partition_images(req, &disk_images, &mut vols)?,
        Layout::Disk => disk_images
            .iter()
            .enumerate()
            .map(|(i, p)| (vdev_disk(i), p.clone()))
            .collect(),
    };

    let mut fixups: Vec<Fixup> = Vec::new();
    let skip = |k: FixupKind| req.skip.contains(&k);

    // md members: zeroing the superblock must precede mounting, or the
    // filesystem is ambiguous to mount's probing.
    let flattened = if skip(FixupKind::MdRaid) {
        Vec::new()
    } else {
        flatten_md_members(req, &vols, &mut fixups, &mut warnings)?
    };

    let root_idx = find_root(req, &vols)?;
    let root = vols
        .get(root_idx)
        .cloned()
        .ok_or_else(|| GuestError::Invalid("root volume index".to_string()))?;
    log::info!("guest root filesystem: {}", root.describe());

    let mounted = GuestMount::mount(req, &vols, &root)?;
    let gfs = GuestFs::new(mounted.path());

    let result = plan_and_apply(
        req,
        layout,
        type_override,
        &gfs,
        &vols,
        &root,
        &flattened,
        &mut fixups,
        &mut warnings,
    );
    // Copy the kernel for the dom0-kernel route while the guest is mounted.
    let result = result.and_then(|(route, kernels)| {
        let copied = match (&route.kernel, req.dry_run) {
            (Some(k), false) => Some(copy_boot_files(&gfs, k, &req.store_dir)?),
            (Some(k), true) => Some(boot_file_paths(k, &req.store_dir)),
            _ => None,
        };
        Ok((route, kernels, copied))
    });

    mounted.unmount()?;
    let (route, kernels, boot_files) = result?;

    let root_device = match route.xen_type {
        XenType::Hvm => "(as the guest names it)".to_string(),
        _ => xvd_name(root.dp()),
    };
    let cfg = xl_config(
        req,
        layout,
        &route,
        &images,
        &root_device,
        boot_files.as_ref(),
        &mut warnings,
    );
    let config = cfg.render();
    if !req.dry_run {
        write_config(&req.xen_dir, &cfg_path, &config)?;
    }
    let rep = ConversionReport {
        name: req.name.clone(),
        date: now(),
        dry_run: req.dry_run,
        layout,
        xen_type: route.xen_type,
        boot_route: route.name.to_string(),
        boot_reason: route.reason.clone(),
        root_device,
        config_path: cfg_path.clone(),
        config,
        images: images.into_iter().map(|(_, p)| p).collect(),
        kernels,
        fixups,
        warnings,
        next_command: format!("xl create {}", cfg_path.display()),
    };
    if !req.dry_run {
        report::merge(&req.store_dir.join("report.json"), &rep)?;
    }
    Ok(rep)
}

/// Layout and type: the command line's, else what the sender chose.
fn guest_options(req: &ConvertRequest) -> Result<(Layout, Option<XenType>), GuestError> {
    let opts = req.machine.options.clone().unwrap_or_default();
    let layout = req.layout.or(opts.layout).unwrap_or_default();
    let xen_type = req.xen_type.or(opts.xen_type);
    if layout == Layout::Partitions && xen_type == Some(XenType::Hvm) {
        return Err(GuestError::Invalid(
            "layout partitions cannot boot as hvm (no disk with a boot loader); use --layout disk"
                .to_string(),
        ));
    }
    Ok((layout, xen_type))
}

/// md RAID1 members whose data starts at the member's start: their
/// superblock is zeroed so the filesystem inside is a plain one. Returns the
/// indexes of the volumes so flattened.
fn flatten_md_members(
    req: &ConvertRequest,
    vols: &[Volume],
    fixups: &mut Vec<Fixup>,
    warnings: &mut Vec<String>,
) -> Result<Vec<usize>, GuestError> {
    let mut flattened = Vec::new();
    for (i, v) in vols.iter().enumerate() {
        if !v.raid_member {
            continue;
        }
        let end = v.offset.saturating_add(v.size);
        match mdraid::find_superblock(&v.image, v.offset, v.size)? {
            Some((ver, abs)) if ver.data_at_start() => {
                if !req.dry_run {
                    mdraid::zero_superblock(&v.image, abs, end)?;
                }
                flattened.push(i);
                fixups.push(Fixup {
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
            }
            Some((ver, _)) => warnings.push(format!(
                "md-raid: {} has md metadata {}: its data starts after the superblock, so it \
                 is left as an array member; the guest assembles it degraded",
                v.describe(),
                ver.name()
            )),
            None => warnings.push(format!(
                "md-raid: {} is listed as an md member but no superblock was found",
                v.describe()
            )),
        }
    }
    Ok(flattened)
}

/// The copy's root filesystem mounted on a private mount point, with a
/// separate /boot mounted where the guest mounts it.
/// Fields in drop order (an early error unwinds /boot, then root, then the
/// mount point).
struct GuestMount {
    boot: Option<(LoopDevice, Mounted)>,
    root_mount: Mounted,
    root_loop: LoopDevice,
    mnt: MountPoint,
}

impl GuestMount {
    fn mount(req: &ConvertRequest, vols: &[Volume], root: &Volume) -> Result<Self, GuestError> {
        let mnt = MountPoint::new()?;
        let root_loop = LoopDevice::attach(&root.image, root.offset, root.size, req.dry_run)?;
        let root_mount = Mounted::mount(
            root_loop.path(),
            mnt.path(),
            fstypes_for(root.fs_kind.as_deref()),
            req.dry_run,
        )?;
        let mut mounted = GuestMount {
            boot: None,
            root_mount,
            root_loop,
            mnt,
        };
        let gfs = GuestFs::new(mounted.path());
        if let Some(spec) = guest_boot_spec(&gfs)? {
            let idx =
                find_volume(vols, &spec).ok_or(GuestError::BootNotFound { spec: spec.clone() })?;
            if let Some(bv) = vols.get(idx) {
                let target = gfs.resolve("/boot")?;
                let lo = LoopDevice::attach(&bv.image, bv.offset, bv.size, req.dry_run)?;
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

    fn path(&self) -> &Path {
        self.mnt.path()
    }

    /// Unmounts and detaches in order, and reports failures: a copy still
    /// mounted is not a finished conversion.
    fn unmount(self) -> Result<(), GuestError> {
        if let Some((lo, mo)) = self.boot {
            mo.unmount()?;
            lo.detach()?;
        }
        self.root_mount.unmount()?;
        nix::unistd::sync();
        self.root_loop.detach()?;
        drop(self.mnt);
        Ok(())
    }
}

fn write_config(xen_dir: &Path, cfg_path: &Path, config: &str) -> Result<(), GuestError> {
    std::fs::create_dir_all(xen_dir).map_err(|source| GuestError::Io {
        path: xen_dir.to_path_buf(),
        source,
    })?;
    std::fs::write(cfg_path, config).map_err(|source| GuestError::Io {
        path: cfg_path.to_path_buf(),
        source,
    })
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
        for v in vols.iter().filter(|v| v.part.is_some()) {
            let out = out_of(v);
            if out.exists() && !req.force {
                return Err(GuestError::Exists { path: out });
            }
        }
    }
    let mut images = Vec::new();
    for v in vols.iter_mut() {
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
    Ok(images)
}

/// One conversion per guest at a time: the receiver's and a manual
/// `p2xen convert` would otherwise mount and edit the same image twice.
fn lock_store(dir: &Path, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>, GuestError> {
    let path = dir.join(".p2xen-convert.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| GuestError::Io {
            path: path.clone(),
            source,
        })?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, e)| match e {
            nix::errno::Errno::EWOULDBLOCK => GuestError::Invalid(format!(
                "another conversion of {name} is running (lock {}); wait for it",
                path.display()
            )),
            e => GuestError::Io {
                path,
                source: e.into(),
            },
        },
    )
}

fn validate(req: &ConvertRequest) -> Result<(), GuestError> {
    let ok_name = !req.name.is_empty()
        && req.name.len() <= 64
        && req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !req.name.starts_with('.');
    if !ok_name {
        return Err(GuestError::Invalid(format!(
            "guest name {:?}: use letters, digits, '-', '_' and '.' (at most 64)",
            req.name
        )));
    }
    if let Some(b) = &req.bridge {
        if !safe_value(b) {
            return Err(GuestError::Invalid(format!("bridge name {b:?}")));
        }
    }
    Ok(())
}

fn disk_images(req: &ConvertRequest) -> Result<Vec<PathBuf>, GuestError> {
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

fn volumes(req: &ConvertRequest, images: &[PathBuf]) -> Result<Vec<Volume>, GuestError> {
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
                fs_kind: fs.kind,
                uuid: fs.uuid,
                label: fs.label,
                has_os: d.os.is_some(),
                inner_uuid: None,
            });
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
                fs_kind: fs.kind,
                uuid: fs.uuid,
                label: fs.label,
                has_os: p.os.is_some(),
                inner_uuid: None,
            });
        }
    }
    Ok(v)
}

/// machine.json may lack UUIDs and labels (an older sender): ask blkid.
/// For md members, the filesystem inside (`-u filesystem` skips the raid
/// superblock), which names the flattened array where device names do not.
fn fill_ids_by_blkid(vols: &mut [Volume]) {
    for v in vols.iter_mut() {
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

/// The volume holding the root filesystem: the one inspect found an OS on,
/// else the first that mounts and holds /etc/fstab.
fn find_root(req: &ConvertRequest, vols: &[Volume]) -> Result<usize, GuestError> {
    if let Some(i) = vols.iter().position(|v| v.has_os) {
        return Ok(i);
    }
    let mut tried = Vec::new();
    for (i, v) in vols.iter().enumerate() {
        let mountable = v.raid_member
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
            let lo = LoopDevice::attach(&v.image, v.offset, v.size, true)?;
            let mo = Mounted::mount(
                lo.path(),
                mnt.path(),
                fstypes_for(v.fs_kind.as_deref()),
                true,
            )?;
            let found = GuestFs::new(mnt.path()).exists("/etc/fstab");
            mo.unmount()?;
            lo.detach()?;
            Ok(found)
        };
        match probe() {
            Ok(true) => return Ok(i),
            Ok(false) => {}
            Err(e) => log::debug!("{}: not a root filesystem: {e}", v.describe()),
        }
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

fn find_volume(vols: &[Volume], spec: &str) -> Option<usize> {
    let eq = |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    if let Some(u) = spec.strip_prefix("UUID=") {
        return vols.iter().position(|v| eq(&v.uuid, u.trim_matches('"')));
    }
    if let Some(l) = spec.strip_prefix("LABEL=") {
        return vols.iter().position(|v| eq(&v.label, l.trim_matches('"')));
    }
    let dev = spec.strip_prefix("/dev/")?;
    let dp = parse_disk_name(dev)?;
    vols.iter().position(|v| v.dp() == dp)
}

#[allow(clippy::too_many_arguments)]
fn plan_and_apply(
    req: &ConvertRequest,
    layout: Layout,
    type_override: Option<XenType>,
    gfs: &GuestFs,
    vols: &[Volume],
    root: &Volume,
    flattened: &[usize],
    fixups: &mut Vec<Fixup>,
    warnings: &mut Vec<String>,
) -> Result<(Route, Vec<KernelInfo>), GuestError> {
    let skip = |k: FixupKind| req.skip.contains(&k);
    let (mut kernels, kw) = xencheck::scan(gfs)?;
    warnings.extend(kw);
    // Host-only initrds get the block frontend before the route is chosen,
    // so a kernel that can boot under Xen once fixed is chosen as such.
    let mut initrd_fixes = Vec::new();
    let mut not_added = std::collections::HashMap::new();
    if !skip(FixupKind::XenDrivers) {
        for k in kernels.iter_mut() {
            if k.blkfront != xencheck::Driver::ModuleNotInInitrd {
                continue;
            }
            match initrd_drivers::plan(gfs, k) {
                Ok(Some(fix)) => {
                    k.blkfront = xencheck::Driver::AddedToInitrd;
                    initrd_fixes.push(fix);
                }
                Ok(None) => {}
                Err(e) => {
                    not_added.insert(k.version.clone(), e.to_string());
                }
            }
        }
    }
    let has_grub2 = bootcfg::GRUB2_CFGS.iter().any(|p| gfs.exists(p));
    let route = choose_route(req, layout, type_override, &kernels, root, warnings);
    if !skip(FixupKind::XenDrivers) {
        let dracut = gfs.exists("/etc/dracut.conf") && !gfs.exists("/etc/initramfs-tools");
        let checked: Vec<&KernelInfo> = match &route.kernel {
            Some(k) => vec![k],
            None => best_kernel(&kernels).into_iter().collect(),
        };
        for k in checked {
            let why = not_added.get(&k.version).map(String::as_str);
            warnings.extend(xencheck::warnings(k, dracut, why));
        }
    }

    let hvm = route.xen_type == XenType::Hvm;
    let parts = req
        .machine
        .disks
        .iter()
        .map(|d| d.partitions.iter().map(|p| p.number).collect())
        .collect();
    let mut map = DevMap::new(req.machine.disks.len(), !hvm).with_partitions(parts);
    if !flattened.is_empty() {
        let arrays = mdraid::arrays(gfs)?;
        if arrays.len() == flattened.len() {
            for (md, vi) in arrays.iter().zip(flattened) {
                let Some(v) = vols.get(*vi) else { continue };
                // Emulated disks may be hdX or sdX in the guest: name by UUID.
                match (hvm, &v.inner_uuid) {
                    (false, _) => map.add_md(md, &xvd_name(v.dp())),
                    (true, Some(u)) => map.add_md(md, &format!("UUID={u}")),
                    (true, None) => warnings.push(format!(
                        "md-raid: no filesystem UUID in {}: /dev/{md} left unmapped; check /etc/fstab",
                        v.describe()
                    )),
                }
            }
        } else {
            warnings.push(format!(
                "md-raid: {} array(s) in mdadm.conf for {} flattened member(s): /dev/mdN names \
                 left unmapped; check /etc/fstab",
                arrays.len(),
                flattened.len()
            ));
        }
    }

    let systemd = console::uses_systemd(
        gfs,
        req.machine
            .disks
            .iter()
            .flat_map(|d| {
                d.partitions
                    .iter()
                    .filter_map(|p| p.os.as_ref())
                    .chain(d.os.as_ref())
            })
            .find_map(|o| o.init_system.as_deref()),
    );
    // HVM guests may lack Xen's console driver; xl's serial = "pty" is ttyS0.
    let tty = if route.xen_type == XenType::Hvm {
        "ttyS0"
    } else {
        "hvc0"
    };
    let mut planned: Vec<Planned> = Vec::new();
    if !skip(FixupKind::Fstab) {
        planned.extend(fstab::plan(gfs, &map)?);
    }
    if !skip(FixupKind::Bootloader) {
        planned.extend(bootcfg::plan(gfs, &map, tty)?);
        if route.name.starts_with("pvgrub2") && !has_grub2 {
            match bootcfg::plan_generated_grub_cfg(gfs, &planned)? {
                Some(p) => planned.push(p),
                None => warnings.push(
                    "bootloader: no grub.cfg, menu.lst or lilo.conf found: pvgrub2 will find \
                     nothing to boot; use --layout partitions"
                        .to_string(),
                ),
            }
        }
    }
    if !skip(FixupKind::Modules) {
        planned.extend(modalias::plan(gfs)?);
    }
    if !skip(FixupKind::NetRules) {
        planned.extend(netrules::plan(gfs)?);
    }
    if !skip(FixupKind::Console) {
        let (p, w) = console::plan(gfs, systemd, tty)?;
        planned.extend(p);
        warnings.extend(w);
    }
    if !skip(FixupKind::MdRaid) && !flattened.is_empty() {
        planned.extend(mdraid::plan_mdadm_conf(gfs)?);
    }
    if !skip(FixupKind::Monitoring) {
        planned.extend(monitoring::plan(gfs)?);
    }
    for fix in &mut initrd_fixes {
        planned.append(&mut fix.planned);
    }
    for p in &planned {
        fixups.push(p.describe(gfs));
    }
    if !req.dry_run {
        for p in &planned {
            p.apply(gfs)?;
        }
        for fix in &initrd_fixes {
            initrd_drivers::verify(gfs, fix)?;
        }
    }
    Ok((route, kernels))
}

/// Newest kernel that can boot PV, else the newest.
fn best_kernel(kernels: &[KernelInfo]) -> Option<&KernelInfo> {
    kernels
        .iter()
        .rev()
        .find(|k| k.pv_ready())
        .or_else(|| kernels.iter().rev().find(|k| k.pv || k.pvh))
        .or_else(|| kernels.last())
}

fn choose_route(
    req: &ConvertRequest,
    layout: Layout,
    type_override: Option<XenType>,
    kernels: &[KernelInfo],
    root: &Volume,
    warnings: &mut Vec<String>,
) -> Route {
    let best = best_kernel(kernels).cloned();
    let pv_ready = best.as_ref().is_some_and(|k| k.pv_ready());
    let pvh_ready = best.as_ref().is_some_and(|k| k.pvh && k.blkfront.usable());
    if layout == Layout::Partitions {
        let xen_type = type_override.unwrap_or(if pv_ready || !pvh_ready {
            XenType::Pv
        } else {
            XenType::Pvh
        });
        let reason = match &best {
            Some(k) => format!(
                "layout partitions: dom0 boots the guest's kernel {} directly (copied to {}/boot); root {}",
                k.version,
                req.store_dir.display(),
                xvd_name(root.dp())
            ),
            None => "layout partitions: no kernel found in the guest's /boot".to_string(),
        };
        if best.is_none() {
            warnings.push(
                "boot: no /boot/vmlinuz-* in the guest: set kernel = and ramdisk = in the config by hand"
                    .to_string(),
            );
        }
        return Route {
            xen_type,
            name: "dom0-kernel",
            reason,
            kernel: best,
        };
    }
    let kname = best
        .as_ref()
        .map(|k| k.version.clone())
        .unwrap_or_else(|| "none".to_string());
    if req.bootloader == Some(Bootloader::Pygrub) && type_override != Some(XenType::Hvm) {
        return Route {
            xen_type: XenType::Pv,
            name: "pygrub",
            reason: "--bootloader pygrub: dom0's pygrub reads the guest's boot menu (needs Python in dom0)"
                .to_string(),
            kernel: None,
        };
    }
    let pvgrub_asked = req.bootloader == Some(Bootloader::Pvgrub);
    match type_override {
        None if pvgrub_asked && !pv_ready => Route {
            xen_type: XenType::Pv,
            name: "pvgrub2",
            reason: format!(
                "--bootloader pvgrub: pvgrub2 boots the guest's kernel {kname}, though no Xen PV support was found in it"
            ),
            kernel: None,
        },
        Some(XenType::Hvm) => Route {
            xen_type: XenType::Hvm,
            name: "hvm",
            reason: "type hvm requested: emulated disks, the guest's own boot loader".to_string(),
            kernel: None,
        },
        Some(XenType::Pvh) => Route {
            xen_type: XenType::Pvh,
            name: "pvgrub2-pvh",
            reason: format!(
                "type pvh requested: pvgrub2 PVH image boots the guest's kernel {kname}"
            ),
            kernel: None,
        },
        Some(XenType::Pv) => Route {
            xen_type: XenType::Pv,
            name: "pvgrub2",
            reason: format!("type pv requested: pvgrub2 boots the guest's kernel {kname}"),
            kernel: None,
        },
        None if pv_ready => Route {
            xen_type: XenType::Pv,
            name: "pvgrub2",
            reason: format!(
                "guest kernel {kname} has Xen PV support and xen-blkfront: pvgrub2 boots it from the guest's own grub.cfg"
            ),
            kernel: None,
        },
        None => {
            warnings.push(format!(
                "boot: no guest kernel with Xen PV support and xen-blkfront (best: {kname}); \
                 booting as hvm with emulated disks"
            ));
            Route {
                xen_type: XenType::Hvm,
                name: "hvm",
                reason: format!(
                    "no guest kernel with Xen PV support and xen-blkfront (best: {kname}): hvm with emulated disks, device names unchanged"
                ),
                kernel: None,
            }
        }
    }
}

fn boot_file_paths(k: &KernelInfo, store: &Path) -> (PathBuf, Option<PathBuf>) {
    let dir = std::path::absolute(store.join("boot")).unwrap_or_else(|_| store.join("boot"));
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    (
        dir.join(base(&k.kernel)),
        k.initrd.as_deref().map(|i| dir.join(base(i))),
    )
}

fn copy_boot_files(
    gfs: &GuestFs,
    k: &KernelInfo,
    store: &Path,
) -> Result<(PathBuf, Option<PathBuf>), GuestError> {
    let (kdst, idst) = boot_file_paths(k, store);
    if let Some(dir) = kdst.parent() {
        std::fs::create_dir_all(dir).map_err(|source| GuestError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let pairs =
        std::iter::once((k.kernel.as_str(), &kdst)).chain(k.initrd.as_deref().zip(idst.as_ref()));
    for (src, dst) in pairs {
        let from = gfs.resolve(src)?;
        std::fs::copy(&from, dst).map_err(|source| GuestError::Io {
            path: dst.clone(),
            source,
        })?;
    }
    Ok((kdst, idst))
}

fn xl_config(
    req: &ConvertRequest,
    layout: Layout,
    route: &Route,
    images: &[(String, PathBuf)],
    root_device: &str,
    boot_files: Option<&(PathBuf, Option<PathBuf>)>,
    warnings: &mut Vec<String>,
) -> XlConfig {
    let m = &req.machine;
    let opts = m.options.clone().unwrap_or_default();
    let memory_mib = req
        .memory_mib
        .or(opts.memory_mib)
        .or(m.memory_bytes.map(|b| b / (1024 * 1024)))
        .unwrap_or(512)
        .max(128);
    let vcpus = req
        .vcpus
        .or(opts.vcpus)
        .or(m.cpus)
        .unwrap_or(1)
        .clamp(1, 128);
    let bridge = req
        .bridge
        .clone()
        .or(opts.bridge.filter(|b| safe_value(b)))
        .unwrap_or_else(|| "xenbr0".to_string());
    let hvm = route.xen_type == XenType::Hvm;
    let disks = images
        .iter()
        .enumerate()
        .map(|(i, (vdev, p))| {
            // Emulated IDE (hda..hdd) keeps old guests' /dev/hdX names.
            let vdev = if hvm && i < 4 {
                vdev.replacen("xvd", "hd", 1)
            } else {
                vdev.clone()
            };
            format!("format=raw, vdev={vdev}, access=rw, target={}", p.display())
        })
        .collect();
    let mut vifs = Vec::new();
    for n in &m.nics {
        match n.mac.as_deref() {
            Some(mac) if valid_mac(mac) => {
                vifs.push(format!("mac={}, bridge={bridge}", mac.to_ascii_lowercase()))
            }
            other => warnings.push(format!(
                "network: NIC {} has no usable MAC ({other:?}): not in the config",
                n.name.as_deref().unwrap_or("?")
            )),
        }
    }
    if vifs.is_empty() {
        vifs.push(format!("bridge={bridge}"));
    }
    let source = m
        .hostname
        .clone()
        .or(m.name.clone())
        .unwrap_or_else(|| req.name.clone());
    let mut cfg = XlConfig {
        header: vec![
            format!(
                "Xen domain config for {}, written by p2xen convert.",
                req.name
            ),
            format!(
                "Migrated from physical server {source}; images in {}.",
                std::path::absolute(&req.store_dir)
                    .unwrap_or_else(|_| req.store_dir.clone())
                    .display()
            ),
            format!(
                "Written {} (layout {}, boot route {}).",
                now(),
                match layout {
                    Layout::Disk => "disk",
                    Layout::Partitions => "partitions",
                },
                route.name
            ),
            format!("Boot: {}", route.reason),
        ],
        name: req.name.clone(),
        xen_type: Some(route.xen_type),
        memory_mib,
        vcpus,
        disks,
        vifs,
        ..Default::default()
    };
    match route.name {
        "pvgrub2" => cfg.kernel = Some(PVGRUB_PV.to_string()),
        "pvgrub2-pvh" => cfg.kernel = Some(PVGRUB_PVH.to_string()),
        "pygrub" => cfg.bootloader = Some("pygrub".to_string()),
        "dom0-kernel" => {
            if let Some((k, i)) = boot_files {
                cfg.kernel = Some(k.display().to_string());
                cfg.ramdisk = i.as_ref().map(|i| i.display().to_string());
            }
            cfg.root = Some(format!("{root_device} ro"));
            cfg.extra = Some("console=hvc0".to_string());
        }
        _ => cfg.serial = Some("pty".to_string()),
    }
    cfg
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
