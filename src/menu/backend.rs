//! What the menu needs from the rest of p2xen, as one small trait: the live
//! init wires the real parts (inspect, net, send), tests wire fakes.

use crate::bootparams::{Bond, NetDevices, Vlan};
use crate::net;
use crate::source::inspect::DiskReport;
use crate::wire::machine::{Layout, XenType};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

/// A failure the menu shows on its message line; backends turn their typed
/// errors into the one-line text (naming device/address and the fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub nics: Vec<NicInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicInfo {
    pub name: String,
    pub mac: String,
    pub driver: Option<String>,
    /// Carrier: Some(true) link up, Some(false) no link, None unknown.
    pub link: Option<bool>,
    /// Addresses already configured (e.g. "10.0.2.15/24").
    pub addresses: Vec<String>,
}

/// One source disk as the menu lists it.
#[derive(Debug, Clone)]
pub struct DiskEntry {
    pub path: PathBuf,
    /// The inspection, or why the disk could not even be opened.
    pub report: Result<DiskReport, String>,
}

/// IPv4 on the chosen link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMethod {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
    /// No IPv4 (an IPv6-only network).
    Off,
}

/// IPv6 on the chosen link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net6Method {
    None,
    /// `auto6`: SLAAC from router advertisements.
    Auto6,
    /// `dhcp6`: an address leased by DHCPv6.
    Dhcp6,
    Static {
        address: Ipv6Addr,
        prefix_len: u8,
        gateway: Option<Ipv6Addr>,
    },
}

/// What the Network screen applies, as the typed values the kernel's
/// `bond=`, `vlan=` and `ip=` parse to: one path into `net` for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetChoice {
    /// The NIC; None: every interface with a link. Unused with a bond (its
    /// slaves are the NICs).
    pub interface: Option<String>,
    /// The bond to make of chosen NICs (`bond=`); addresses go on it.
    pub bond: Option<Bond>,
    /// A tagged link on the NIC or the bond (`vlan=`); addresses go on it.
    pub vlan: Option<Vlan>,
    pub method: NetMethod,
    pub method6: Net6Method,
}

impl Default for NetChoice {
    fn default() -> Self {
        NetChoice {
            interface: None,
            bond: None,
            vlan: None,
            method: NetMethod::Dhcp,
            method6: Net6Method::None,
        }
    }
}

impl NetChoice {
    /// The link the addresses go on: the VLAN, else the bond, else the NIC.
    pub fn device(&self) -> Option<String> {
        self.vlan
            .as_ref()
            .map(|v| v.name.clone())
            .or_else(|| self.bond.as_ref().map(|b| b.name.clone()))
            .or_else(|| self.interface.clone())
    }

    /// The links to make first, as `bond=` and `vlan=` give them.
    pub fn devices(&self) -> NetDevices {
        NetDevices {
            bonds: self.bond.iter().cloned().collect(),
            vlans: self.vlan.iter().cloned().collect(),
            ..NetDevices::default()
        }
    }

    /// The request for `net::configure`: the one the equivalent kernel
    /// command line gives (`NetRequest::from_params`).
    pub fn to_request(&self) -> net::NetRequest {
        net::NetRequest::from_params(
            &super::prefill::ip_of_choice(self, &[]),
            &self.devices(),
            None,
        )
    }
}

/// Everything the user chose, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// HOST:PORT
    pub server: String,
    pub token: String,
    /// "sha256:" + 64 hex digits, given or explicitly trusted.
    pub fingerprint: String,
    pub name: String,
    pub disks: Vec<PathBuf>,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub layout: Layout,
    /// None: the conversion chooses.
    pub xen_type: Option<XenType>,
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskBar {
    pub source: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MigrationEvent {
    /// Per disk what will be sent.
    Plan {
        disks: Vec<DiskBar>,
    },
    Progress {
        disks: Vec<DiskBar>,
        bytes_per_sec: f64,
        eta_secs: Option<f64>,
    },
    /// A line for the log tail (connecting, retrying, verifying...).
    Log(String),
    Finished(MigrationResult),
    Failed(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationResult {
    pub name: String,
    pub disks: Vec<ResultDisk>,
    /// Where the receiver wrote the xl config, e.g. /etc/xen/NAME.cfg.
    pub config_path: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultDisk {
    pub source: String,
    /// The image on the receiver (path of disk0.img, or an LV).
    pub image: Option<String>,
    /// The verified content digest.
    pub digest: String,
}

pub trait Backend {
    fn machine(&self) -> MachineInfo;
    /// The source disks, inspected (read-only).
    fn disks(&self) -> Vec<DiskEntry>;
    /// Applies the choice; the lines describe the result per interface.
    fn configure_network(&self, choice: &NetChoice) -> Result<Vec<String>, BackendError>;
    /// Checks that the receiver answers; the text says how (e.g. "answered in 3 ms").
    fn test_receiver(&self, server: &str) -> Result<String, BackendError>;
    /// The certificate fingerprint the receiver presents ("sha256:...").
    fn receiver_fingerprint(&self, server: &str) -> Result<String, BackendError>;
    /// Starts the migration in its own thread and returns at once; events
    /// go to `events` until `Finished` or `Failed`. The run must not depend
    /// on the menu reading them promptly (the channel is unbounded).
    fn start_migration(
        &self,
        plan: &MigrationPlan,
        events: Sender<MigrationEvent>,
    ) -> Result<(), BackendError>;
    /// Runs a rescue shell on `tty` and returns when it exits.
    fn shell(&self, tty: &Path) -> Result<(), BackendError>;
    /// The full log for "show full log" (e.g. the live image's log file);
    /// None: the menu shows the lines it logged itself.
    fn full_log(&self) -> Option<Vec<String>> {
        None
    }
}
