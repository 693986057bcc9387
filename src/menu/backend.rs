//! What the menu needs from the rest of p2xen, as one small trait: the live
//! init wires the real parts (inspect, net, send), tests wire fakes.

use crate::bootparams::IpParam;
use crate::net;
use crate::source::inspect::DiskReport;
use crate::wire::machine::{Layout, XenType};
use std::net::Ipv4Addr;
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMethod {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetChoice {
    /// None: every interface with a link.
    pub interface: Option<String>,
    pub method: NetMethod,
}

impl NetChoice {
    /// The request for `net::configure`.
    pub fn to_request(&self) -> net::NetRequest {
        let method = match super::prefill::ip_of_choice(self, None) {
            IpParam::Off => net::NetMethod::Off,
            IpParam::Dhcp { device, .. } => net::NetMethod::Dhcp { device },
            IpParam::Static(s) => net::NetMethod::Static(s),
            IpParam::Auto6 { device } => net::NetMethod::Auto6 { device },
            IpParam::Static6(s) => net::NetMethod::Static6(s),
        };
        net::NetRequest {
            methods: vec![method],
            interfaces: self.interface.clone().map(|i| vec![i]),
            ..net::NetRequest::default()
        }
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
