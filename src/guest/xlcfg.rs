//! The xl domain config (xl.cfg(5)): what `xl create` reads, and how the
//! conversion writes it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::convert::{BootFiles, BootRoute, Conversion, Route, now};
use super::{Firmware, GuestError, XenType};

pub const PVGRUB_PV: &str = "/usr/lib/grub-xen/grub-x86_64-xen.bin";
pub const PVGRUB_PVH: &str = "/usr/lib/grub-xen/grub-i386-xen_pvh.bin";

#[derive(Debug, Clone, Default)]
pub struct XlConfig {
    pub header: Vec<String>,
    pub name: String,
    pub xen_type: Option<XenType>,
    /// HVM firmware: `ovmf` for a source that booted by UEFI.
    pub bios: Option<String>,
    pub kernel: Option<String>,
    pub ramdisk: Option<String>,
    pub root: Option<String>,
    pub extra: Option<String>,
    pub bootloader: Option<String>,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// Disk specs without quotes: `format=raw, vdev=xvda, access=rw, target=/p`.
    pub disks: Vec<String>,
    /// Vif specs without quotes: `mac=..., bridge=xenbr0`.
    pub vifs: Vec<String>,
    pub serial: Option<String>,
}

impl XlConfig {
    pub fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            let _ = writeln!(s, "# {h}");
        }
        let _ = writeln!(s);
        let mut kv = |k: &str, v: &str| {
            let _ = writeln!(s, "{k} = \"{v}\"");
        };
        kv("name", &self.name);
        if let Some(t) = self.xen_type {
            kv("type", t.as_str());
        }
        if let Some(b) = &self.bios {
            kv("bios", b);
        }
        if let Some(b) = &self.bootloader {
            kv("bootloader", b);
        }
        if let Some(k) = &self.kernel {
            kv("kernel", k);
        }
        if let Some(r) = &self.ramdisk {
            kv("ramdisk", r);
        }
        if let Some(r) = &self.root {
            kv("root", r);
        }
        if let Some(e) = &self.extra {
            kv("extra", e);
        }
        if let Some(se) = &self.serial {
            kv("serial", se);
        }
        let _ = writeln!(s, "memory = {}", self.memory_mib);
        let _ = writeln!(s, "vcpus = {}", self.vcpus);
        let list = |items: &[String]| -> String {
            let inner: Vec<String> = items.iter().map(|i| format!("    '{i}',")).collect();
            format!("[\n{}\n]", inner.join("\n"))
        };
        let _ = writeln!(s, "disk = {}", list(&self.disks));
        if !self.vifs.is_empty() {
            let _ = writeln!(s, "vif = {}", list(&self.vifs));
        }
        let _ = writeln!(s, "on_poweroff = \"destroy\"");
        let _ = writeln!(s, "on_reboot = \"restart\"");
        let _ = writeln!(s, "on_crash = \"restart\"");
        s
    }
}

/// A MAC in the form xl accepts: six colon-separated hex pairs.
pub fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Values are written inside quotes and xl disk/vif specs split on commas:
/// refuse what would break the syntax rather than escape it.
pub fn safe_value(v: &str) -> bool {
    !v.is_empty() && !v.contains(['\'', '"', '\\', '\n', '\r', ','])
}

/// The config for the converted guest. `images`: (vdev, image) pairs;
/// `root_device`: the root as the guest names it (dom0-kernel route).
pub(super) fn xl_config(
    conv: &mut Conversion,
    route: &Route,
    images: &[(String, PathBuf)],
    root_device: &str,
    boot_files: Option<&BootFiles>,
    firmware: Firmware,
) -> XlConfig {
    let mut cfg = XlConfig {
        header: header(conv, route),
        name: conv.req.name.clone(),
        xen_type: Some(route.xen_type),
        memory_mib: conv.settings.memory_mib,
        vcpus: conv.settings.vcpus,
        disks: disks(images, route.xen_type == XenType::Hvm),
        vifs: vifs(conv),
        ..Default::default()
    };
    match route.boot {
        BootRoute::Pvgrub2 => cfg.kernel = Some(PVGRUB_PV.to_string()),
        BootRoute::Pvgrub2Pvh => cfg.kernel = Some(PVGRUB_PVH.to_string()),
        BootRoute::Pygrub => cfg.bootloader = Some("pygrub".to_string()),
        BootRoute::Dom0Kernel | BootRoute::SuppliedKernel => {
            if let Some(files) = boot_files {
                cfg.kernel = Some(files.kernel.display().to_string());
                cfg.ramdisk = files.initrd.as_ref().map(|i| i.display().to_string());
            }
            cfg.root = Some(format!("{root_device} ro"));
            cfg.extra = Some(match &conv.root_flags {
                Some(f) => format!("rootflags={f} console=hvc0"),
                None => "console=hvc0".to_string(),
            });
        }
        BootRoute::Hvm => {
            cfg.serial = Some("pty".to_string());
            // SeaBIOS cannot start a UEFI loader; OVMF boots the ESP's
            // fallback loader, as NVRAM entries do not travel.
            if firmware == Firmware::Uefi {
                cfg.bios = Some("ovmf".to_string());
            }
        }
    }
    cfg
}

/// Comment lines: where the guest came from and why it boots as it does.
fn header(conv: &Conversion, route: &Route) -> Vec<String> {
    let (req, m) = (conv.req, &conv.req.machine);
    let source = m
        .hostname
        .clone()
        .or(m.name.clone())
        .unwrap_or_else(|| req.name.clone());
    vec![
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
            conv.settings.layout.as_str(),
            route.boot.as_str()
        ),
        format!("Boot: {}", route.reason),
    ]
}

fn disks(images: &[(String, PathBuf)], hvm: bool) -> Vec<String> {
    images
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
        .collect()
}

/// One vif per source NIC with a usable MAC (the guest's network
/// configuration may name it), but one for the NICs of a bond that became
/// one vif; else one on the bridge.
fn vifs(conv: &mut Conversion) -> Vec<String> {
    let (req, bridge) = (conv.req, conv.settings.bridge.clone());
    let mut vifs = Vec::new();
    for n in &req.machine.nics {
        let dropped = n
            .mac
            .as_deref()
            .is_some_and(|m| conv.dropped_macs.contains(&m.to_ascii_lowercase()));
        if dropped {
            continue;
        }
        match n.mac.as_deref() {
            Some(mac) if valid_mac(mac) => {
                vifs.push(format!("mac={}, bridge={bridge}", mac.to_ascii_lowercase()))
            }
            other => conv.warn(format!(
                "network: NIC {} has no usable MAC ({other:?}): not in the config",
                n.name.as_deref().unwrap_or("?")
            )),
        }
    }
    if vifs.is_empty() {
        vifs.push(format!("bridge={bridge}"));
    }
    vifs
}

pub(super) fn write_config(
    xen_dir: &Path,
    cfg_path: &Path,
    config: &str,
) -> Result<(), GuestError> {
    std::fs::create_dir_all(xen_dir).map_err(|source| GuestError::Io {
        path: xen_dir.to_path_buf(),
        source,
    })?;
    std::fs::write(cfg_path, config).map_err(|source| GuestError::Io {
        path: cfg_path.to_path_buf(),
        source,
    })
}
