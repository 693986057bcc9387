//! The part of `machine.json` (the sender's machine description) that the
//! conversion reads. Only documented fields are named; everything else in the
//! file is ignored, so this keeps working as the sender adds fields.

use serde::Deserialize;
use std::path::Path;

use super::{Firmware, GuestError, Layout, XenType};

/// Largest machine.json accepted: it is a description, not data.
const MAX_MACHINE_JSON: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Machine {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub options: Option<Options>,
    /// How the source booted, as the live system saw it; `None` from older
    /// senders.
    #[serde(default)]
    pub firmware: Option<Firmware>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Nic {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Disk {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Identifies the disk in `/dev/disk/by-id` names.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub partitions: Vec<Partition>,
    #[serde(default)]
    pub filesystem: Option<Filesystem>,
    #[serde(default)]
    pub os: Option<OsInfo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Partition {
    pub number: u32,
    pub start_bytes: u64,
    pub size_bytes: u64,
    #[serde(default)]
    pub type_id: Option<String>,
    #[serde(default)]
    pub filesystem: Option<Filesystem>,
    #[serde(default)]
    pub os: Option<OsInfo>,
}

impl Partition {
    /// MBR extended-partition containers hold only the logical partitions'
    /// table: they are neither mounted nor given an image of their own.
    pub fn is_extended_container(&self) -> bool {
        let Some(id) = self.type_id.as_deref() else {
            return false;
        };
        let id = id.trim().to_ascii_lowercase();
        let id = id.strip_prefix("0x").unwrap_or(&id);
        matches!(id, "5" | "05" | "f" | "0f" | "85")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filesystem {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub uuid: Option<String>,
    /// The sender's `FsDetails` are flattened into the filesystem object.
    #[serde(flatten)]
    pub details: FsDetails,
}

/// The few of the sender's filesystem details the conversion uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FsDetails {
    /// The sender wrote the filesystem inside this md RAID1 array
    /// ("raid1 1.2 UUID") where the member was: it is a plain one now.
    #[serde(default)]
    pub md_flattened_from: Option<String>,
    /// An LVM2 PV: the LVs of its VG, with the filesystem the sender found
    /// in each (type, UUID, label).
    #[serde(default)]
    pub logical_volumes: Vec<LvFs>,
}

/// One LV of a PV as machine.json names it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LvFs {
    pub name: String,
    #[serde(default)]
    pub filesystem: Option<Filesystem>,
}

impl Filesystem {
    pub fn is_raid_member(&self) -> bool {
        self.kind.as_deref() == Some("linux_raid_member")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OsInfo {
    #[serde(default)]
    pub pretty_name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub init_system: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub layout: Option<Layout>,
    #[serde(rename = "type", default)]
    pub xen_type: Option<XenType>,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub vcpus: Option<u32>,
}

impl Machine {
    pub fn load(path: &Path) -> Result<Self, GuestError> {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => GuestError::NoMachine {
                path: path.to_path_buf(),
            },
            _ => GuestError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        if meta.len() > MAX_MACHINE_JSON {
            return Err(GuestError::MachineTooBig {
                path: path.to_path_buf(),
                size: meta.len(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| GuestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| GuestError::MachineJson {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_default() {
        let m: Machine = serde_json::from_str(
            r#"{"name":"seed","cpus":2,"future":1,"nics":[{"mac":"52:54:00:00:00:01","x":2}],
                "disks":[{"path":"/dev/sda","model":"QEMU","partitions":[
                  {"number":1,"start_bytes":1048576,"size_bytes":2048,"type_id":"0x05",
                   "filesystem":{"type":"ext4","details":{"block_size":4096}}}]}]}"#,
        )
        .unwrap();
        assert_eq!(m.cpus, Some(2));
        assert_eq!(m.nics[0].mac.as_deref(), Some("52:54:00:00:00:01"));
        let p = &m.disks[0].partitions[0];
        assert!(p.is_extended_container());
        assert_eq!(p.filesystem.as_ref().unwrap().kind.as_deref(), Some("ext4"));
        assert!(m.options.is_none());
    }

    #[test]
    fn the_senders_flattened_md_details_are_read() {
        let mut fs =
            crate::source::filesystems::Filesystem::new(crate::source::filesystems::FsKind::Ext4);
        fs.details.md_flattened_from = Some("raid1 1.2 a:b:c:d".into());
        let json = serde_json::to_string(&fs).unwrap();
        let got: Filesystem = serde_json::from_str(&json).unwrap();
        assert_eq!(
            got.details.md_flattened_from.as_deref(),
            Some("raid1 1.2 a:b:c:d"),
            "{json}"
        );
        assert_eq!(got.kind.as_deref(), Some("ext4"));
    }

    #[test]
    fn guest_options_are_the_shared_keywords() {
        let m: Machine =
            serde_json::from_str(r#"{"options":{"layout":"partitions","type":"pvh"}}"#).unwrap();
        let o = m.options.unwrap();
        assert_eq!(
            (o.layout, o.xen_type),
            (Some(Layout::Partitions), Some(XenType::Pvh))
        );
        let e = serde_json::from_str::<Machine>(r#"{"options":{"layout":"lvm"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown variant `lvm`, expected `disk` or `partitions`"),
            "{e}"
        );
    }
}
