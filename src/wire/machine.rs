//! The machine description: the first thing the receiver learns about the
//! source server, saved as `STORE/NAME/machine.json` for the guest conversion.

use super::keyword::keyword_enum;
use crate::source::inspect::DiskReport;
use crate::source::os::OsInfo;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    pub driver: Option<String>,
}

keyword_enum!(
    /// How the copy is exposed to the guest (`p2xen.layout=`, `--layout`).
    #[derive(Default, Serialize, Deserialize, clap::ValueEnum)]
    #[serde(rename_all = "lowercase")]
    Layout {
        /// One image per source disk (xvda, xvdb, ...), partitions keep their numbers.
        #[default]
        Disk = "disk",
        /// One image per source partition (xvda1, xvda2, ...), kernel from dom0.
        Partitions = "partitions",
    }
);

keyword_enum!(
    /// The Xen guest type (`p2xen.type=`, `--type`).
    #[derive(Serialize, Deserialize, clap::ValueEnum)]
    #[serde(rename_all = "lowercase")]
    XenType { Pv = "pv", Pvh = "pvh", Hvm = "hvm" }
);

keyword_enum!(
    /// How the source machine booted: the live system sees `/sys/firmware/efi`
    /// only when the firmware started it by UEFI.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    Firmware { Bios = "bios", Uefi = "uefi" }
);

/// Overrides for the guest the user chose on the sender (menu or kernel
/// parameters); `None` lets the conversion decide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestOptions {
    pub layout: Layout,
    #[serde(rename = "type")]
    pub xen_type: Option<XenType>,
    pub bridge: Option<String>,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineDescription {
    pub name: String,
    pub hostname: Option<String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub nics: Vec<Nic>,
    /// What `inspect` found on each disk, in the sender's disk order.
    pub disks: Vec<DiskReport>,
    pub options: GuestOptions,
    /// `None` from senders older than the field.
    #[serde(default)]
    pub firmware: Option<Firmware>,
}

impl MachineDescription {
    /// The hostname of the installed OS found by inspection (the first disk
    /// and partition that has one), as opposed to the running system's.
    pub fn os_hostname(&self) -> Option<String> {
        let of = |os: &Option<OsInfo>| os.as_ref()?.hostname.clone().filter(|h| !h.is_empty());
        self.disks
            .iter()
            .find_map(|d| of(&d.os).or_else(|| d.partitions.iter().find_map(|p| of(&p.os))))
    }
}

/// Reads CPU count, memory, hostname and NICs of the machine we run on.
/// Missing pieces are left empty: a description is never a reason to fail.
pub fn collect(name: &str) -> MachineDescription {
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_mem_total(&s))
        .unwrap_or(0);
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty() && h != "(none)");
    MachineDescription {
        name: name.to_string(),
        hostname,
        cpus,
        memory_bytes,
        nics: list_nics(Path::new("/sys/class/net")),
        disks: Vec::new(),
        options: GuestOptions {
            layout: Layout::Disk,
            ..GuestOptions::default()
        },
        firmware: Some(firmware_of(Path::new("/sys/firmware/efi"))),
    }
}

/// UEFI firmware leaves `/sys/firmware/efi` to the kernel it started; BIOS
/// (and UEFI's legacy mode) does not.
pub fn firmware_of(sys_firmware_efi: &Path) -> Firmware {
    if sys_firmware_efi.is_dir() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    }
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// NICs under a sysfs `class/net` directory, loopback excluded, sorted by name.
pub fn list_nics(class_net: &Path) -> Vec<Nic> {
    let Ok(dir) = std::fs::read_dir(class_net) else {
        return Vec::new();
    };
    let mut nics: Vec<Nic> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name == "lo" {
                return None;
            }
            let path = e.path();
            let mac = std::fs::read_to_string(path.join("address"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let driver = std::fs::read_link(path.join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
            Some(Nic { name, mac, driver })
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_hostname_comes_from_the_inspected_disks() {
        let mut m = MachineDescription::default();
        assert_eq!(m.os_hostname(), None);
        let part = |number, hostname: Option<&str>| crate::source::inspect::PartitionReport {
            number,
            os: hostname.map(|h| OsInfo {
                hostname: Some(h.to_string()),
                ..OsInfo::default()
            }),
            ..Default::default()
        };
        m.disks = vec![
            DiskReport {
                partitions: vec![part(1, None)],
                ..DiskReport::default()
            },
            DiskReport {
                partitions: vec![part(1, Some("")), part(2, Some("web1"))],
                ..DiskReport::default()
            },
        ];
        assert_eq!(m.os_hostname().as_deref(), Some("web1"));
    }

    #[test]
    fn nics_are_read_from_sysfs_layout() {
        let d = tempfile::tempdir().unwrap();
        let net = d.path().join("class/net");
        let eth = net.join("eth0");
        std::fs::create_dir_all(eth.join("device")).unwrap();
        std::fs::create_dir_all(d.path().join("drivers/e1000")).unwrap();
        std::os::unix::fs::symlink(d.path().join("drivers/e1000"), eth.join("device/driver"))
            .unwrap();
        std::fs::write(eth.join("address"), "52:54:00:12:34:56\n").unwrap();
        std::fs::create_dir_all(net.join("lo")).unwrap();
        let nics = list_nics(&net);
        assert_eq!(
            nics,
            vec![Nic {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                driver: Some("e1000".into())
            }]
        );
        assert_eq!(parse_mem_total("MemTotal:       1024 kB\n"), Some(1 << 20));
    }

    #[test]
    fn json_field_names_match_the_interface() {
        let m = collect("seed");
        let v = serde_json::to_value(&m).unwrap();
        for k in [
            "name",
            "hostname",
            "cpus",
            "memory_bytes",
            "nics",
            "disks",
            "options",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(v["options"].get("type").is_some());
        assert!(m.cpus >= 1 && m.memory_bytes > 0);
        assert!(matches!(v["firmware"].as_str(), Some("bios" | "uefi")));
    }

    #[test]
    fn firmware_from_sysfs_and_absent_from_old_senders() {
        let d = tempfile::tempdir().unwrap();
        let efi = d.path().join("efi");
        assert_eq!(firmware_of(&efi), Firmware::Bios);
        std::fs::create_dir(&efi).unwrap();
        assert_eq!(firmware_of(&efi), Firmware::Uefi);
        let old: MachineDescription = serde_json::from_str(
            r#"{"name":"a","hostname":null,"cpus":1,"memory_bytes":1,"nics":[],"disks":[],
                "options":{"layout":"disk","type":null,"bridge":null,"memory_mib":null,"vcpus":null}}"#,
        )
        .unwrap();
        assert_eq!(old.firmware, None);
        let new = MachineDescription {
            firmware: Some(Firmware::Uefi),
            ..old
        };
        let v = serde_json::to_value(&new).unwrap();
        assert_eq!(v["firmware"], "uefi");
    }
}
