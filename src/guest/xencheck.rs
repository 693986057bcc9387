//! Can the guest's own kernel run under Xen? Read from `/boot/config-*`
//! (CONFIG_XEN, CONFIG_XEN_PV, CONFIG_XEN_PVH, the block and net frontends)
//! and, for frontends built as modules, from the initrd's file list.

use serde::{Deserialize, Serialize};

use super::guestfs::{GuestFs, GuestFsError, gjoin};
use super::initrd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    BuiltIn,
    /// Module, and in the initrd (or no initrd needed to know).
    Module,
    /// Module, but not in the initrd: the root filesystem cannot be mounted.
    ModuleNotInInitrd,
    /// Module the conversion added to the initrd (`initrd_drivers`).
    AddedToInitrd,
    Missing,
    /// No kernel config found.
    Unknown,
}

impl Driver {
    pub fn usable(self) -> bool {
        matches!(
            self,
            Driver::BuiltIn | Driver::Module | Driver::AddedToInitrd
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelInfo {
    pub version: String,
    /// Guest paths.
    pub kernel: String,
    pub initrd: Option<String>,
    pub has_config: bool,
    pub pv: bool,
    pub pvh: bool,
    pub blkfront: Driver,
    pub netfront: Driver,
}

impl KernelInfo {
    pub fn pv_ready(&self) -> bool {
        self.pv && self.blkfront.usable()
    }
}

/// Every kernel in the guest's /boot, oldest first, and what could not be
/// checked.
pub fn scan(gfs: &GuestFs) -> Result<(Vec<KernelInfo>, Vec<String>), GuestFsError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let names = gfs.list("/boot")?;
    let mut versions: Vec<String> = names
        .iter()
        .filter_map(|n| {
            n.strip_prefix("vmlinuz-")
                .or_else(|| n.strip_prefix("vmlinux-"))
        })
        .map(str::to_string)
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    versions.dedup();
    for v in versions {
        let (k, warning) = scan_kernel(gfs, v)?;
        out.push(k);
        warnings.extend(warning);
    }
    Ok((out, warnings))
}

/// One kernel: its files in /boot, and what its config says about Xen.
fn scan_kernel(gfs: &GuestFs, v: String) -> Result<(KernelInfo, Option<String>), GuestFsError> {
    let kernel = ["vmlinuz-", "vmlinux-"]
        .iter()
        .map(|p| gjoin("/boot", &format!("{p}{v}")))
        .find(|p| gfs.exists(p))
        .unwrap_or_default();
    let initrd = [
        format!("initrd.img-{v}"),
        format!("initramfs-{v}.img"),
        format!("initrd-{v}.img"),
        format!("initrd-{v}"),
    ]
    .into_iter()
    .map(|n| gjoin("/boot", &n))
    .find(|p| gfs.exists(p));
    let config = KernelConfig(gfs.read(&gjoin("/boot", &format!("config-{v}")))?);
    let xen = config.opt("CONFIG_XEN") == Some('y');
    // Kernels before 4.x had no CONFIG_XEN_PV: CONFIG_XEN alone meant PV.
    let pv = xen
        && (config.opt("CONFIG_XEN_PV") == Some('y')
            || config
                .0
                .as_deref()
                .is_some_and(|c| !c.contains("CONFIG_XEN_PV")));
    let pvh = xen && config.opt("CONFIG_XEN_PVH") == Some('y');
    let mut listing = InitrdNames {
        path: initrd.as_deref(),
        names: None,
    };
    let blkfront = listing.driver(gfs, &config, "CONFIG_XEN_BLKDEV_FRONTEND", "xen-blkfront")?;
    let netfront = listing.driver(gfs, &config, "CONFIG_XEN_NETDEV_FRONTEND", "xen-netfront")?;
    let warning = match &listing.names {
        Some(Err(e)) => Some(format!(
            "xen-drivers: cannot list {}: {e}; check it in the guest with lsinitramfs",
            initrd.as_deref().unwrap_or("?")
        )),
        _ => None,
    };
    let info = KernelInfo {
        version: v,
        kernel,
        initrd,
        has_config: config.0.is_some(),
        pv,
        pvh,
        blkfront,
        netfront,
    };
    Ok((info, warning))
}

/// A kernel's `/boot/config-VERSION`, if it has one.
struct KernelConfig(Option<String>);

impl KernelConfig {
    /// The first character of an option's value: `y`, `m`, ...
    fn opt(&self, name: &str) -> Option<char> {
        let text = self.0.as_deref()?;
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .and_then(|r| r.chars().next())
        })
    }
}

/// A kernel's initrd, listed on first need (only a driver built as a
/// module needs it); `Err` in `names` is why it could not be listed.
struct InitrdNames<'a> {
    path: Option<&'a str>,
    names: Option<Result<Vec<String>, String>>,
}

impl InitrdNames<'_> {
    fn driver(
        &mut self,
        gfs: &GuestFs,
        config: &KernelConfig,
        key: &str,
        module: &str,
    ) -> Result<Driver, GuestFsError> {
        if config.0.is_none() {
            return Ok(Driver::Unknown);
        }
        match config.opt(key) {
            Some('y') => Ok(Driver::BuiltIn),
            Some('m') => {
                let Some(ir) = self.path else {
                    return Ok(Driver::ModuleNotInInitrd);
                };
                let names = match &self.names {
                    Some(n) => n,
                    None => self.names.insert(read_initrd(gfs, ir)?),
                };
                match names {
                    Ok(n) if initrd::has_module(n, module) => Ok(Driver::Module),
                    Ok(_) => Ok(Driver::ModuleNotInInitrd),
                    Err(_) => Ok(Driver::Module),
                }
            }
            _ => Ok(Driver::Missing),
        }
    }
}

fn read_initrd(gfs: &GuestFs, path: &str) -> Result<Result<Vec<String>, String>, GuestFsError> {
    let p = gfs.resolve(path)?;
    let io = |source| GuestFsError::Io {
        path: path.to_string(),
        source,
    };
    let len = std::fs::metadata(&p).map_err(io)?.len();
    if len > initrd::MAX_INITRD_BYTES {
        return Ok(Err(format!("{len} bytes is too big")));
    }
    let data = std::fs::read(&p).map_err(io)?;
    Ok(initrd::list_names(&data).map_err(|e| e.to_string()))
}

/// The one-line warnings with the command to run in the guest;
/// `not_added` says why the conversion could not add xen-blkfront itself.
pub fn warnings(k: &KernelInfo, dracut: bool, not_added: Option<&str>) -> Vec<String> {
    let mut w = Vec::new();
    let v = &k.version;
    let fix_initrd = |m: &str| {
        if dracut {
            format!("dracut --add-drivers \"{m}\" -f /boot/initramfs-{v}.img {v}")
        } else {
            format!("echo {m} >> /etc/initramfs-tools/modules && update-initramfs -u -k {v}")
        }
    };
    if !k.has_config {
        w.push(format!(
            "kernel {v}: no /boot/config-{v}, Xen support unknown; in the guest run: grep XEN /boot/config-$(uname -r)"
        ));
        return w;
    }
    match k.blkfront {
        Driver::Missing => w.push(format!(
            "kernel {v} has no xen-blkfront: install a Xen-capable kernel in the guest (Debian: apt-get install linux-image-amd64)"
        )),
        Driver::ModuleNotInInitrd => w.push(format!(
            "initrd of kernel {v} lacks xen-blkfront{}; in the guest run: {}",
            not_added
                .map(|why| format!(" and p2xen could not add it ({why})"))
                .unwrap_or_default(),
            fix_initrd("xen-blkfront")
        )),
        _ => {}
    }
    if k.netfront == Driver::Missing {
        w.push(format!(
            "kernel {v} has no xen-netfront: the guest will have no network"
        ));
    }
    w
}

/// Natural order of kernel versions ("2.6.9" < "2.6.18", "6.1.0-9" < "6.1.0-10").
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut v = Vec::new();
        let mut num = String::new();
        let mut txt = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !txt.is_empty() {
                    v.push((0, std::mem::take(&mut txt)));
                }
                num.push(c);
            } else {
                if !num.is_empty() {
                    v.push((num.parse().unwrap_or(u64::MAX), String::new()));
                    num.clear();
                }
                txt.push(c);
            }
        }
        if !num.is_empty() {
            v.push((num.parse().unwrap_or(u64::MAX), String::new()));
        }
        if !txt.is_empty() {
            v.push((0, txt));
        }
        v
    }
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_sort_naturally() {
        use std::cmp::Ordering::Less;
        assert_eq!(super::version_cmp("2.6.9", "2.6.18"), Less);
        assert_eq!(super::version_cmp("6.1.0-9-amd64", "6.1.0-10-amd64"), Less);
    }
}
