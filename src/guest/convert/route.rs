//! The boot route: how dom0 starts the guest, chosen from the layout, the
//! request and what the guest's kernels support; and, for the dom0-kernel
//! route, the kernel copied out of the guest.

use std::path::{Path, PathBuf};

use super::super::guestfs::GuestFs;
use super::super::supplied_kernel::SuppliedKernel;
use super::super::xencheck::KernelInfo;
use super::super::{Bootloader, ConvertRequest, GuestError, Layout, XenType};
use super::Conversion;
use super::volumes::Volume;

/// How dom0 starts the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::guest) enum BootRoute {
    /// pvgrub2's PV image reads the guest's own grub.cfg.
    Pvgrub2,
    /// pvgrub2's PVH image reads the guest's own grub.cfg.
    Pvgrub2Pvh,
    /// dom0's pygrub reads the guest's boot menu.
    Pygrub,
    /// dom0 boots the guest's kernel, copied out of the guest's /boot.
    Dom0Kernel,
    /// dom0 boots a kernel from dom0 (`--guest-kernel`), whose modules are
    /// installed into the guest.
    SuppliedKernel,
    /// Emulated hardware; the guest's own boot loader.
    Hvm,
}

impl BootRoute {
    /// The name in the report and the config's header.
    pub(in crate::guest) fn as_str(self) -> &'static str {
        match self {
            BootRoute::Pvgrub2 => "pvgrub2",
            BootRoute::Pvgrub2Pvh => "pvgrub2-pvh",
            BootRoute::Pygrub => "pygrub",
            BootRoute::Dom0Kernel => "dom0-kernel",
            BootRoute::SuppliedKernel => "supplied-kernel",
            BootRoute::Hvm => "hvm",
        }
    }

    /// pvgrub2 boots nothing without a grub.cfg (or one generated for it).
    pub(super) fn needs_grub_cfg(self) -> bool {
        matches!(self, BootRoute::Pvgrub2 | BootRoute::Pvgrub2Pvh)
    }
}

/// The boot route decided for the guest.
#[derive(Debug, Clone)]
pub(in crate::guest) struct Route {
    pub xen_type: XenType,
    pub boot: BootRoute,
    pub reason: String,
    /// Kernel used by the dom0-kernel route.
    pub kernel: Option<KernelInfo>,
}

impl Route {
    fn new(xen_type: XenType, boot: BootRoute, reason: impl Into<String>) -> Self {
        Route {
            xen_type,
            boot,
            reason: reason.into(),
            kernel: None,
        }
    }
}

/// The kernel and initrd the dom0-kernel route boots, in `STORE/NAME/boot`.
#[derive(Debug, Clone)]
pub(in crate::guest) struct BootFiles {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
}

/// Newest kernel that can boot PV, else the newest.
pub(super) fn best_kernel(kernels: &[KernelInfo]) -> Option<&KernelInfo> {
    kernels
        .iter()
        .rev()
        .find(|k| k.pv_ready())
        .or_else(|| kernels.iter().rev().find(|k| k.pv || k.pvh))
        .or_else(|| kernels.last())
}

/// `preferred`: the kernel file name the guest's boot loader boots by
/// default, taken over the newest where it can boot as well.
pub(super) fn choose_route(
    conv: &mut Conversion,
    kernels: &[KernelInfo],
    root: &Volume,
    preferred: Option<&str>,
) -> Route {
    let best = best_kernel(kernels);
    let default = preferred.and_then(|name| {
        kernels
            .iter()
            .find(|k| k.kernel.rsplit('/').next() == Some(name))
    });
    let best = match (default, best) {
        (Some(d), Some(b)) if d.pv_ready() || !b.pv_ready() => Some(d),
        (_, b) => b,
    }
    .cloned();
    if let Some(sk) = &conv.req.policy.guest_kernel {
        return supplied_kernel_route(conv, sk, best.as_ref(), root);
    }
    if conv.settings.layout == Layout::Partitions {
        return dom0_kernel_route(conv, best, root);
    }
    let type_override = conv.settings.type_override;
    if conv.req.bootloader == Some(Bootloader::Pygrub) && type_override != Some(XenType::Hvm) {
        return Route::new(
            XenType::Pv,
            BootRoute::Pygrub,
            "--bootloader pygrub: dom0's pygrub reads the guest's boot menu (needs Python in dom0)",
        );
    }
    boot_loader_route(conv, best.as_ref())
}

/// Layout partitions has no disk with a boot loader: dom0 boots the
/// guest's kernel.
fn dom0_kernel_route(conv: &mut Conversion, best: Option<KernelInfo>, root: &Volume) -> Route {
    let pv_ready = best.as_ref().is_some_and(|k| k.pv_ready());
    let pvh_ready = best.as_ref().is_some_and(|k| k.pvh && k.blkfront.usable());
    let xen_type = conv
        .settings
        .type_override
        .unwrap_or(if pv_ready || !pvh_ready {
            XenType::Pv
        } else {
            XenType::Pvh
        });
    let reason = match &best {
        Some(k) => format!(
            "layout partitions: dom0 boots the guest's kernel {} directly (copied to {}/boot); root {}",
            k.version,
            conv.req.store_dir.display(),
            root.guest_device()
        ),
        None => "layout partitions: no kernel found in the guest's /boot".to_string(),
    };
    if best.is_none() {
        conv.warn(
            "boot: no /boot/vmlinuz-* in the guest: set kernel = and ramdisk = in the config by hand",
        );
    }
    Route {
        kernel: best,
        ..Route::new(xen_type, BootRoute::Dom0Kernel, reason)
    }
}

/// `--guest-kernel`: the guest's own kernels are left in place (the HVM
/// route can still boot them later) and dom0 boots the supplied one.
fn supplied_kernel_route(
    conv: &Conversion,
    sk: &SuppliedKernel,
    best: Option<&KernelInfo>,
    root: &Volume,
) -> Route {
    let xen_type = match conv.settings.type_override {
        Some(XenType::Pvh) => XenType::Pvh,
        _ => XenType::Pv,
    };
    let own = match best {
        Some(k) if k.pv_ready() => format!("the guest's own {} could boot PV too", k.version),
        Some(k) => format!("the guest's own {} cannot boot under Xen", k.version),
        None => "the guest has no kernel in /boot".to_string(),
    };
    Route::new(
        xen_type,
        BootRoute::SuppliedKernel,
        format!(
            "--guest-kernel: dom0 boots {} ({}), its modules installed into the guest's {}; {own}; root {}",
            sk.kernel.display(),
            sk.version,
            sk.guest_dir(),
            root.guest_device()
        ),
    )
}

/// Layout disk: a boot loader reads the guest's own boot menu, pvgrub2
/// where the guest's kernel can run under Xen, else emulated hardware.
fn boot_loader_route(conv: &mut Conversion, best: Option<&KernelInfo>) -> Route {
    let pv_ready = best.is_some_and(|k| k.pv_ready());
    let kname = best.map_or("none", |k| k.version.as_str());
    let pvgrub_asked = conv.req.bootloader == Some(Bootloader::Pvgrub);
    match conv.settings.type_override {
        None if pvgrub_asked && !pv_ready => Route::new(
            XenType::Pv,
            BootRoute::Pvgrub2,
            format!(
                "--bootloader pvgrub: pvgrub2 boots the guest's kernel {kname}, though no Xen PV support was found in it"
            ),
        ),
        Some(XenType::Hvm) => Route::new(
            XenType::Hvm,
            BootRoute::Hvm,
            "type hvm requested: emulated disks, the guest's own boot loader",
        ),
        Some(XenType::Pvh) => Route::new(
            XenType::Pvh,
            BootRoute::Pvgrub2Pvh,
            format!("type pvh requested: pvgrub2 PVH image boots the guest's kernel {kname}"),
        ),
        Some(XenType::Pv) => Route::new(
            XenType::Pv,
            BootRoute::Pvgrub2,
            format!("type pv requested: pvgrub2 boots the guest's kernel {kname}"),
        ),
        None if pv_ready => Route::new(
            XenType::Pv,
            BootRoute::Pvgrub2,
            format!(
                "guest kernel {kname} has Xen PV support and xen-blkfront: pvgrub2 boots it from the guest's own grub.cfg"
            ),
        ),
        None => {
            conv.warn(format!(
                "boot: no guest kernel with Xen PV support and xen-blkfront (best: {kname}); \
                 booting as hvm with emulated disks"
            ));
            Route::new(
                XenType::Hvm,
                BootRoute::Hvm,
                format!(
                    "no guest kernel with Xen PV support and xen-blkfront (best: {kname}): hvm with emulated disks, device names unchanged"
                ),
            )
        }
    }
}

/// The dom0-kernel route's kernel and initrd, copied out of the mounted
/// guest (with `dry_run`, only where they would go); `None` for the other
/// routes.
pub(super) fn boot_files(
    gfs: &GuestFs,
    route: &Route,
    req: &ConvertRequest,
) -> Result<Option<BootFiles>, GuestError> {
    if let (BootRoute::SuppliedKernel, Some(sk)) = (route.boot, &req.policy.guest_kernel) {
        return supplied_boot_files(sk, &req.store_dir, req.dry_run).map(Some);
    }
    Ok(match (&route.kernel, req.dry_run) {
        (Some(k), false) => Some(copy_boot_files(gfs, k, &req.store_dir)?),
        (Some(k), true) => Some(boot_file_paths(k, &req.store_dir)),
        (None, _) => None,
    })
}

fn boot_dir(store: &Path) -> PathBuf {
    std::path::absolute(store.join("boot")).unwrap_or_else(|_| store.join("boot"))
}

fn boot_file_paths(k: &KernelInfo, store: &Path) -> BootFiles {
    let dir = boot_dir(store);
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    BootFiles {
        kernel: dir.join(base(&k.kernel)),
        initrd: k.initrd.as_deref().map(|i| dir.join(base(i))),
    }
}

fn create_boot_dir(files: &BootFiles) -> Result<(), GuestError> {
    if let Some(dir) = files.kernel.parent() {
        std::fs::create_dir_all(dir).map_err(|source| GuestError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<(), GuestError> {
    std::fs::copy(from, to).map_err(|source| GuestError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// The supplied kernel and initrd, copied into the store: a dom0 kernel
/// upgrade must not take the guest's kernel away.
fn supplied_boot_files(
    sk: &SuppliedKernel,
    store: &Path,
    dry_run: bool,
) -> Result<BootFiles, GuestError> {
    let dir = boot_dir(store);
    let named = |p: &Path, what: &str| {
        dir.join(p.file_name().map_or_else(
            || format!("{what}-{}", sk.version),
            |n| n.to_string_lossy().into_owned(),
        ))
    };
    let files = BootFiles {
        kernel: named(&sk.kernel, "vmlinuz"),
        initrd: sk.initrd.as_deref().map(|i| named(i, "initrd.img")),
    };
    if !dry_run {
        create_boot_dir(&files)?;
        copy_file(&sk.kernel, &files.kernel)?;
        if let (Some(from), Some(to)) = (&sk.initrd, &files.initrd) {
            copy_file(from, to)?;
        }
    }
    Ok(files)
}

fn copy_boot_files(gfs: &GuestFs, k: &KernelInfo, store: &Path) -> Result<BootFiles, GuestError> {
    let files = boot_file_paths(k, store);
    create_boot_dir(&files)?;
    let pairs = std::iter::once((k.kernel.as_str(), &files.kernel))
        .chain(k.initrd.as_deref().zip(files.initrd.as_ref()));
    for (src, dst) in pairs {
        copy_file(&gfs.resolve(src)?, dst)?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::super::Machine;
    use super::super::super::xencheck::Driver;
    use super::*;

    fn request(layout: Layout, xen_type: Option<XenType>) -> ConvertRequest {
        let mut req = ConvertRequest::new(
            PathBuf::from("/srv/p2xen/web1"),
            "web1",
            Machine::default(),
            PathBuf::from("/etc/xen"),
        );
        req.layout = Some(layout);
        req.xen_type = xen_type;
        req
    }

    fn kernel(version: &str, pv: bool, blkfront: Driver) -> KernelInfo {
        KernelInfo {
            version: version.to_string(),
            kernel: format!("/boot/vmlinuz-{version}"),
            initrd: None,
            has_config: true,
            pv,
            pvh: pv,
            blkfront,
            netfront: blkfront,
        }
    }

    fn root() -> Volume {
        Volume {
            disk: 0,
            part: Some(2),
            image: PathBuf::from("/srv/p2xen/web1/disk0.img"),
            offset: 0,
            size: 0,
            fs_kind: Some("ext4".to_string()),
            uuid: None,
            label: None,
            has_os: true,
            raid_member: false,
            inner_uuid: None,
            md_flattened_from: None,
            lv: None,
        }
    }

    /// The route, its name and the warnings it left.
    fn choose(req: &ConvertRequest, kernels: &[KernelInfo]) -> (Route, Vec<String>) {
        let mut conv = Conversion::new(req).unwrap();
        let route = choose_route(&mut conv, kernels, &root(), None);
        (route, conv.warnings)
    }

    #[test]
    fn pv_ready_kernel_boots_with_pvgrub2_and_the_newest_pv_one_wins() {
        let req = request(Layout::Disk, None);
        let kernels = [
            kernel("6.1.0", true, Driver::Module),
            kernel("6.12.0", false, Driver::Missing),
        ];
        let (route, warnings) = choose(&req, &kernels);
        assert_eq!(
            (route.boot, route.xen_type),
            (BootRoute::Pvgrub2, XenType::Pv)
        );
        assert_eq!(route.boot.as_str(), "pvgrub2");
        assert!(
            route.reason.contains("kernel 6.1.0 has Xen PV support"),
            "{}",
            route.reason
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn no_pv_kernel_falls_back_to_hvm_with_a_warning() {
        let req = request(Layout::Disk, None);
        let (route, warnings) = choose(&req, &[kernel("2.6.18", false, Driver::Missing)]);
        assert_eq!((route.boot, route.xen_type), (BootRoute::Hvm, XenType::Hvm));
        assert_eq!(
            warnings,
            [
                "boot: no guest kernel with Xen PV support and xen-blkfront (best: 2.6.18); \
              booting as hvm with emulated disks"
            ]
        );
    }

    #[test]
    fn requested_type_and_boot_loader_decide_over_the_kernel() {
        let pvh = request(Layout::Disk, Some(XenType::Pvh));
        let (route, _) = choose(&pvh, &[]);
        assert_eq!(route.boot.as_str(), "pvgrub2-pvh");
        assert!(route.boot.needs_grub_cfg());

        let mut pygrub = request(Layout::Disk, None);
        pygrub.bootloader = Some(Bootloader::Pygrub);
        assert_eq!(choose(&pygrub, &[]).0.boot, BootRoute::Pygrub);
        // hvm has no PV boot loader: the request's type wins.
        pygrub.xen_type = Some(XenType::Hvm);
        assert_eq!(choose(&pygrub, &[]).0.boot, BootRoute::Hvm);
    }

    #[test]
    fn layout_partitions_boots_the_guest_kernel_from_dom0() {
        let req = request(Layout::Partitions, None);
        let (route, warnings) = choose(&req, &[kernel("6.1.0", true, Driver::BuiltIn)]);
        assert_eq!(route.boot.as_str(), "dom0-kernel");
        assert!(!route.boot.needs_grub_cfg());
        assert_eq!(route.kernel.map(|k| k.version).as_deref(), Some("6.1.0"));
        assert!(
            route.reason.ends_with("root /dev/xvda2"),
            "{}",
            route.reason
        );
        assert!(warnings.is_empty(), "{warnings:?}");

        let (route, warnings) = choose(&req, &[]);
        assert_eq!(route.boot, BootRoute::Dom0Kernel);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("boot: no /boot/vmlinuz-*"));
    }

    #[test]
    fn hvm_of_a_uefi_source_boots_ovmf_and_pv_does_not() {
        use super::super::super::{Firmware, xlcfg};
        let images = [(
            "xvda".to_string(),
            PathBuf::from("/srv/p2xen/web1/disk0.img"),
        )];
        let render = |t: XenType, fw: Firmware| {
            let req = request(Layout::Disk, Some(t));
            let mut conv = Conversion::new(&req).unwrap();
            let route = choose_route(&mut conv, &[], &root(), None);
            xlcfg::xl_config(&mut conv, &route, &images, "/dev/xvda2", None, fw).render()
        };
        let hvm = render(XenType::Hvm, Firmware::Uefi);
        assert!(hvm.contains("type = \"hvm\"\nbios = \"ovmf\"\n"), "{hvm}");
        assert!(hvm.contains("serial = \"pty\""), "{hvm}");
        assert!(!render(XenType::Hvm, Firmware::Bios).contains("bios ="));
        assert!(!render(XenType::Pv, Firmware::Uefi).contains("bios ="));
    }

    #[test]
    fn the_boot_loaders_default_kernel_wins_over_the_newest() {
        let mut req = request(Layout::Partitions, None);
        req.layout = Some(Layout::Partitions);
        let kernels = [
            kernel("6.1.0-9", true, Driver::Module),
            kernel("6.1.0-13", true, Driver::Module),
            kernel("6.5.0", false, Driver::Missing),
        ];
        let mut conv = Conversion::new(&req).unwrap();
        let pick = |conv: &mut Conversion, name| {
            choose_route(conv, &kernels, &root(), name)
                .kernel
                .map(|k| k.version)
        };
        assert_eq!(pick(&mut conv, None).as_deref(), Some("6.1.0-13"));
        assert_eq!(
            pick(&mut conv, Some("vmlinuz-6.1.0-9")).as_deref(),
            Some("6.1.0-9")
        );
        // A default that cannot boot under Xen loses to one that can.
        assert_eq!(
            pick(&mut conv, Some("vmlinuz-6.5.0")).as_deref(),
            Some("6.1.0-13")
        );
    }
}
