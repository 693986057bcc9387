//! The fix-ups on the mounted copy: the guest's kernels checked (and their
//! initrds given Xen's block frontend), the boot route chosen, the device
//! map for the route, then every file change planned, described for the
//! report and, unless `dry_run`, applied.

use std::collections::HashMap;

use super::super::change::Planned;
use super::super::devmap::{DevMap, xvd_name};
use super::super::guestfs::GuestFs;
use super::super::initrd_drivers::InitrdFix;
use super::super::supplied_kernel;
use super::super::xencheck::{self, KernelInfo};
use super::super::{
    FixupKind, GuestError, XenType, bootcfg, caches, console, fstab, initrd_drivers, lvm, mdraid,
    modalias, monitoring, netcfg, netrules,
};
use super::Conversion;
use super::route::{self, Route};
use super::uefi::{self, Uefi};
use super::volumes::Volume;

/// The initrd fixes planned for the kernels that lack xen-blkfront there.
#[derive(Default)]
struct InitrdFixes {
    fixes: Vec<InitrdFix>,
    /// Kernel version → why its initrd could not be fixed.
    not_added: HashMap<String, String>,
}

/// `flattened`: the indexes in `vols` of the md members flattened before
/// mounting. Returns the route and the guest's kernels for the report.
pub(super) fn plan_and_apply(
    conv: &mut Conversion,
    gfs: &GuestFs,
    vols: &[Volume],
    root: &Volume,
    flattened: &[usize],
    uefi: &Uefi,
) -> Result<(Route, Vec<KernelInfo>), GuestError> {
    let (mut kernels, kw) = xencheck::scan(gfs)?;
    conv.warn_all(kw);
    // LV names in fstab stay (LVM stays inside the guest's disk); those
    // that name no LV of the copy are reported.
    let lvs: Vec<&lvm::LvVolume> = vols.iter().filter_map(|v| v.lv.as_ref()).collect();
    conv.warn_all(lvm::check_fstab(gfs, &lvs)?);
    // Host-only initrds get the block frontend before the route is chosen,
    // so a kernel that can boot under Xen once fixed is chosen as such.
    let mut initrd = if conv.skips(FixupKind::XenDrivers) {
        InitrdFixes::default()
    } else {
        plan_initrd_fixes(gfs, &mut kernels)
    };
    let has_grub2 = bootcfg::GRUB2_CFGS.iter().any(|p| gfs.exists(p));
    let (real, w) = uefi::real_grub_cfg(gfs, uefi, vols, root, &[])?;
    conv.warn_all(w);
    let preferred = real.as_ref().and_then(|r| uefi::default_kernel(gfs, r));
    let route = route::choose_route(conv, &kernels, root, preferred.as_deref());
    // A supplied kernel replaces the guest's: their Xen support is moot.
    if !conv.skips(FixupKind::XenDrivers) && conv.req.policy.guest_kernel.is_none() {
        kernel_warnings(conv, gfs, &route, &kernels, &initrd.not_added);
    }
    let map = device_map(conv, gfs, vols, flattened, route.xen_type == XenType::Hvm)?;
    let ctx = PlanContext {
        map: &map,
        route: &route,
        has_grub2,
        md_flattened: !flattened.is_empty(),
        uefi,
        vols,
        root,
    };
    let mut planned = plan_files(conv, gfs, &ctx)?;
    for fix in &mut initrd.fixes {
        planned.append(&mut fix.planned);
    }
    if !conv.skips(FixupKind::Selinux) {
        planned.extend(caches::plan_relabel(gfs, &planned)?);
    }
    // Checked before anything is applied; asked for explicitly, so not
    // subject to --no-fixup xen-drivers.
    let modules = match &conv.req.policy.guest_kernel {
        Some(sk) => Some(supplied_kernel::plan_modules(gfs, sk)?),
        None => None,
    };
    for p in &planned {
        conv.fixup(p.describe(gfs));
    }
    if let Some(m) = &modules {
        conv.fixup(m.describe());
    }
    if !conv.req.dry_run {
        for p in &planned {
            p.apply(gfs)?;
        }
        for fix in &initrd.fixes {
            initrd_drivers::verify(gfs, fix)?;
        }
    }
    if let (Some(m), false) = (&modules, conv.req.dry_run) {
        m.apply(gfs)?;
    }
    Ok((route, kernels))
}

/// Plans adding xen-blkfront to each initrd that lacks it, and marks the
/// kernels so fixed.
fn plan_initrd_fixes(gfs: &GuestFs, kernels: &mut [KernelInfo]) -> InitrdFixes {
    let mut out = InitrdFixes::default();
    for k in kernels.iter_mut() {
        if k.blkfront != xencheck::Driver::ModuleNotInInitrd {
            continue;
        }
        match initrd_drivers::plan(gfs, k) {
            Ok(Some(fix)) => {
                k.blkfront = xencheck::Driver::AddedToInitrd;
                out.fixes.push(fix);
            }
            Ok(None) => {}
            Err(e) => {
                out.not_added.insert(k.version.clone(), e.to_string());
            }
        }
    }
    out
}

/// What keeps the kernel that will boot (the route's, else the best) from
/// running under Xen.
fn kernel_warnings(
    conv: &mut Conversion,
    gfs: &GuestFs,
    route: &Route,
    kernels: &[KernelInfo],
    not_added: &HashMap<String, String>,
) {
    let dracut = gfs.exists("/etc/dracut.conf") && !gfs.exists("/etc/initramfs-tools");
    let checked: Vec<&KernelInfo> = match &route.kernel {
        Some(k) => vec![k],
        None => route::best_kernel(kernels).into_iter().collect(),
    };
    for k in checked {
        let why = not_added.get(&k.version).map(String::as_str);
        conv.warn_all(xencheck::warnings(k, dracut, why));
    }
}

/// Source device names → the guest's, including the md arrays whose
/// members were flattened.
fn device_map(
    conv: &mut Conversion,
    gfs: &GuestFs,
    vols: &[Volume],
    flattened: &[usize],
    hvm: bool,
) -> Result<DevMap, GuestError> {
    let disks = &conv.req.machine.disks;
    let parts = disks
        .iter()
        .map(|d| d.partitions.iter().map(|p| p.number).collect())
        .collect();
    let uuids = vols
        .iter()
        .filter(|v| !v.raid_member && v.lv.is_none())
        .filter_map(|v| Some((v.dp(), v.uuid.clone()?)))
        .collect();
    let serials = disks.iter().map(|d| d.serial.clone()).collect();
    let mut map = DevMap::new(disks.len(), !hvm)
        .with_partitions(parts)
        .with_uuids(uuids)
        .with_serials(serials);
    if flattened.is_empty() {
        return Ok(map);
    }
    let arrays = mdraid::arrays(gfs)?;
    // What the sender flattened names its array ("raid1 1.2 UUID"): matched
    // by UUID, whatever the order of mdadm.conf or the arrays not copied.
    let by_uuid: Vec<(usize, String)> = flattened
        .iter()
        .filter_map(|&vi| {
            let from = vols.get(vi)?.md_flattened_from.as_deref()?;
            Some((vi, from.rsplit(' ').next()?.to_ascii_lowercase()))
        })
        .collect();
    if !by_uuid.is_empty() {
        for (vi, uuid) in by_uuid {
            let Some(v) = vols.get(vi) else { continue };
            let Some(target) = md_target(conv, v, hvm) else {
                continue;
            };
            map.add_md_uuid(&uuid, &target);
            match arrays
                .iter()
                .find(|a| a.uuid.as_deref() == Some(uuid.as_str()))
            {
                Some(a) => map.add_md(&a.name, &target),
                None => conv.warn(format!(
                    "md-raid: array {uuid} of {} is not in mdadm.conf: only its \
                     /dev/disk/by-id/md-uuid- name is mapped; check /etc/fstab",
                    v.describe()
                )),
            }
        }
        return Ok(map);
    }
    if arrays.len() != flattened.len() {
        conv.warn(format!(
            "md-raid: {} array(s) in mdadm.conf for {} flattened member(s): /dev/mdN names \
             left unmapped; check /etc/fstab",
            arrays.len(),
            flattened.len()
        ));
        return Ok(map);
    }
    for (md, vi) in arrays.iter().zip(flattened) {
        let Some(v) = vols.get(*vi) else { continue };
        if let Some(target) = md_target(conv, v, hvm) {
            map.add_md(&md.name, &target);
        }
    }
    Ok(map)
}

/// What a flattened array's names become in the guest: the partition's
/// xvd name, or its filesystem UUID on emulated disks (hdX or sdX there).
fn md_target(conv: &mut Conversion, v: &Volume, hvm: bool) -> Option<String> {
    match (hvm, &v.inner_uuid) {
        (false, _) => Some(xvd_name(v.dp())),
        (true, Some(u)) => Some(format!("UUID={u}")),
        (true, None) => {
            conv.warn(format!(
                "md-raid: no filesystem UUID in {}: its md names left unmapped; check /etc/fstab",
                v.describe()
            ));
            None
        }
    }
}

/// What the file fix-ups are planned from.
struct PlanContext<'a> {
    map: &'a DevMap,
    route: &'a Route,
    has_grub2: bool,
    /// Some md member was flattened.
    md_flattened: bool,
    uefi: &'a Uefi,
    vols: &'a [Volume],
    root: &'a Volume,
}

/// The file changes of every fix-up not skipped, in the order they are
/// described and applied.
fn plan_files(
    conv: &mut Conversion,
    gfs: &GuestFs,
    ctx: &PlanContext,
) -> Result<Vec<Planned>, GuestError> {
    let (map, route) = (ctx.map, ctx.route);
    // HVM guests may lack Xen's console driver; xl's serial = "pty" is ttyS0.
    let tty = if route.xen_type == XenType::Hvm {
        "ttyS0"
    } else {
        "hvc0"
    };
    let mut planned: Vec<Planned> = Vec::new();
    if !conv.skips(FixupKind::Fstab) {
        planned.extend(fstab::plan(gfs, map)?);
    }
    if !conv.skips(FixupKind::Bootloader) {
        planned.extend(bootcfg::plan(gfs, map, tty)?);
        let real = if route.boot.needs_grub_cfg() {
            // Its warnings were given when the route was chosen.
            uefi::real_grub_cfg(gfs, ctx.uefi, ctx.vols, ctx.root, &planned)?.0
        } else {
            None
        };
        let from_real = match &real {
            Some(r) => uefi::plan_pvgrub_cfg(gfs, r, map, tty, &planned)?,
            None => None,
        };
        if let Some(p) = from_real {
            planned.push(p);
        } else if route.boot.needs_grub_cfg() && !ctx.has_grub2 {
            match bootcfg::plan_generated_grub_cfg(gfs, &planned)? {
                Some(p) => planned.push(p),
                None => conv.warn(
                    "bootloader: no grub.cfg, menu.lst or lilo.conf found: pvgrub2 will find \
                     nothing to boot; use --layout partitions",
                ),
            }
        }
    }
    if !conv.skips(FixupKind::Modules) {
        planned.extend(modalias::plan(gfs)?);
    }
    if !conv.skips(FixupKind::NetRules) {
        planned.extend(netrules::plan(gfs)?);
    }
    if !conv.skips(FixupKind::NetConfig) {
        let nics: Vec<(String, String)> = conv
            .req
            .machine
            .nics
            .iter()
            // A NIC without a name still gets its vif: keeping it keeps
            // the vif numbering the xl config's.
            .filter_map(|n| Some((n.name.clone().unwrap_or_default(), n.mac.clone()?)))
            .collect();
        let (map, p, w) = netcfg::plan(gfs, &nics, conv.req.policy.vif_per_nic)?;
        planned.extend(p);
        conv.warn_all(w);
        conv.dropped_macs = map.dropped_macs;
    }
    if !conv.skips(FixupKind::Console) {
        let (p, w) = console::plan(gfs, uses_systemd(conv, gfs), tty)?;
        planned.extend(p);
        conv.warn_all(w);
    }
    if !conv.skips(FixupKind::MdRaid) && ctx.md_flattened {
        planned.extend(mdraid::plan_mdadm_conf(gfs)?);
    }
    if !conv.skips(FixupKind::DeviceCaches) {
        planned.extend(caches::plan(gfs));
    }
    if !conv.skips(FixupKind::Monitoring) {
        planned.extend(monitoring::plan(gfs)?);
    }
    Ok(planned)
}

/// Whether the guest runs systemd: the sender's inspection says so, else
/// the guest's files.
fn uses_systemd(conv: &Conversion, gfs: &GuestFs) -> bool {
    let hint = conv
        .req
        .machine
        .disks
        .iter()
        .flat_map(|d| {
            d.partitions
                .iter()
                .filter_map(|p| p.os.as_ref())
                .chain(d.os.as_ref())
        })
        .find_map(|o| o.init_system.as_deref());
    console::uses_systemd(gfs, hint)
}
