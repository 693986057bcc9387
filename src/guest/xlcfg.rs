//! The xl domain config (xl.cfg(5)): what `xl create` reads.

use std::fmt::Write as _;

use super::XenType;

pub const PVGRUB_PV: &str = "/usr/lib/grub-xen/grub-x86_64-xen.bin";
pub const PVGRUB_PVH: &str = "/usr/lib/grub-xen/grub-i386-xen_pvh.bin";

#[derive(Debug, Clone, Default)]
pub struct XlConfig {
    pub header: Vec<String>,
    pub name: String,
    pub xen_type: Option<XenType>,
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
