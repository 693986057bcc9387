//! The conversion run: find the images and the guest's root, open them,
//! plan and apply the fix-ups, choose the boot route, write the xl config
//! and the report.

mod fixups;
mod guest_mount;
mod options;
mod route;
mod uefi;
mod volumes;

use std::path::Path;

use super::change::Fixup;
use super::guestfs::GuestFs;
use super::xencheck::KernelInfo;
use super::{ConversionReport, ConvertRequest, FixupKind, GuestError, XenType, report, xlcfg};
use guest_mount::GuestMount;
use options::Settings;
use volumes::Volume;

pub(super) use route::{BootFiles, BootRoute, Route};

/// One conversion under way: the request, the settings drawn from it, and
/// what the steps report (fix-ups in the order planned, warnings in the
/// order found), which end up in the report.
pub(super) struct Conversion<'a> {
    pub req: &'a ConvertRequest,
    pub settings: Settings,
    /// `rootflags=` the guest's kernel needs when dom0 boots it (a Btrfs
    /// root's subvolume, which the guest's boot menu would have passed).
    pub root_flags: Option<String>,
    /// MACs of NICs that get no vif: the other slaves of a bond that
    /// became one vif (set by the net-config fix-up).
    pub dropped_macs: Vec<String>,
    fixups: Vec<Fixup>,
    warnings: Vec<String>,
}

impl<'a> Conversion<'a> {
    fn new(req: &'a ConvertRequest) -> Result<Self, GuestError> {
        options::validate(req)?;
        Ok(Conversion {
            req,
            settings: options::guest_options(req)?,
            root_flags: None,
            dropped_macs: Vec::new(),
            fixups: Vec::new(),
            warnings: Vec::new(),
        })
    }

    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    pub fn warn_all(&mut self, warnings: impl IntoIterator<Item = String>) {
        self.warnings.extend(warnings);
    }

    pub fn fixup(&mut self, fixup: Fixup) {
        self.fixups.push(fixup);
    }

    /// `--no-fixup KIND`.
    pub fn skips(&self, kind: FixupKind) -> bool {
        self.req.policy.skip.contains(&kind)
    }
}

pub fn convert(req: &ConvertRequest) -> Result<ConversionReport, GuestError> {
    let mut conv = Conversion::new(req)?;
    let disk_images = volumes::disk_images(req)?;
    let _lock = if req.dry_run {
        None
    } else {
        Some(lock_store(&req.store_dir, &req.name)?)
    };
    let cfg_path = req.xen_dir.join(format!("{}.cfg", req.name));
    if !req.dry_run && !req.force && cfg_path.exists() {
        return Err(GuestError::Exists { path: cfg_path });
    }
    let mut vols = volumes::volumes(req, &disk_images)?;
    volumes::fill_ids_by_blkid(&mut vols);
    let images = volumes::guest_images(req, conv.settings.layout, &disk_images, &mut vols)?;
    // md members: zeroing the superblock must precede mounting, or the
    // filesystem is ambiguous to mount's probing.
    let flattened = if conv.skips(FixupKind::MdRaid) {
        Vec::new()
    } else {
        volumes::flatten_md_members(&mut conv, &vols)?
    };
    let root = volumes::root_volume(req, &vols)?;
    let uefi = uefi::detect(&mut conv, &vols)?;
    let (route, kernels, boot_files) =
        fix_mounted_copy(&mut conv, &vols, &root, &flattened, &uefi)?;
    uefi::add_fallback_loader(&mut conv, &uefi)?;

    let root_device = match route.xen_type {
        XenType::Hvm => "(as the guest names it)".to_string(),
        _ => root.guest_device(),
    };
    let cfg = xlcfg::xl_config(
        &mut conv,
        &route,
        &images,
        &root_device,
        boot_files.as_ref(),
        uefi.firmware,
    );
    let config = cfg.render();
    if !req.dry_run {
        xlcfg::write_config(&req.xen_dir, &cfg_path, &config)?;
    }
    let rep = ConversionReport {
        name: req.name.clone(),
        date: now(),
        dry_run: req.dry_run,
        layout: conv.settings.layout,
        xen_type: route.xen_type,
        boot_route: route.boot.as_str().to_string(),
        boot_reason: route.reason,
        firmware: uefi.firmware,
        firmware_reason: uefi.reason,
        root_device,
        next_command: format!("xl create {}", cfg_path.display()),
        config_path: cfg_path,
        config,
        images: images.into_iter().map(|(_, p)| p).collect(),
        kernels,
        fixups: conv.fixups,
        warnings: conv.warnings,
    };
    if !req.dry_run {
        report::merge(&req.store_dir.join("report.json"), &rep)?;
    }
    Ok(rep)
}

/// Mounts the copy, plans and applies the fix-ups (choosing the route on
/// the way) and copies the dom0-kernel route's kernel out while the guest
/// is mounted; unmounts also after an error in between.
fn fix_mounted_copy(
    conv: &mut Conversion,
    vols: &[Volume],
    root: &Volume,
    flattened: &[usize],
    uefi: &uefi::Uefi,
) -> Result<(Route, Vec<KernelInfo>, Option<BootFiles>), GuestError> {
    let mounted = GuestMount::mount(conv.req, vols, root)?;
    conv.root_flags = mounted.subvol.as_ref().map(|s| s.mount_option());
    let gfs = GuestFs::new(mounted.path());
    let result = fixups::plan_and_apply(conv, &gfs, vols, root, flattened, uefi).and_then(
        |(route, kernels)| {
            let files = route::boot_files(&gfs, &route, conv.req)?;
            Ok((route, kernels, files))
        },
    );
    mounted.unmount()?;
    result
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

/// The report's and the config header's time stamp.
pub(super) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
