//! Guest conversion on the copy: fix-ups to the copied root filesystem and
//! the xl domain config, so that `xl create /etc/xen/NAME.cfg` boots the
//! migrated server. Never touches anything but the store's images.

pub mod bootcfg;
pub mod btrfs;
pub mod caches;
pub mod change;
pub mod cli;
pub mod console;
mod convert;
pub mod devmap;
pub mod efi;
pub mod fstab;
pub mod guestfs;
pub mod initrd;
pub mod initrd_drivers;
pub mod lvm;
pub mod machine;
pub mod mdraid;
pub mod modalias;
pub mod monitoring;
pub mod mount;
pub mod netcfg;
pub mod netrules;
pub mod report;
pub mod split;
pub mod supplied_kernel;
pub mod xencheck;
pub mod xlcfg;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use change::Fixup;
pub use convert::convert;
pub use machine::Machine;
pub use xencheck::KernelInfo;

pub use crate::wire::machine::{Firmware, Layout, XenType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Bootloader {
    /// pvgrub2 from grub-xen-host: reads the guest's grub.cfg, no Python in dom0.
    Pvgrub,
    /// pygrub: reads grub legacy and grub2 configs, needs Python in dom0.
    Pygrub,
}

/// The kinds of fix-up (`--no-fixup KIND` skips one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FixupKind {
    Fstab,
    Bootloader,
    Modules,
    NetRules,
    /// The guest's interface configuration renamed to the vifs' names.
    NetConfig,
    Console,
    MdRaid,
    Monitoring,
    XenDrivers,
    /// The fallback `\EFI\BOOT\BOOTX64.EFI` in the copy's ESP.
    Efi,
    /// Caches naming the source's disks (LVM devices file, blkid.tab).
    DeviceCaches,
    /// `/.autorelabel` for SELinux guests whose files were changed.
    Selinux,
}

impl FixupKind {
    /// The name used on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            FixupKind::Fstab => "fstab",
            FixupKind::Bootloader => "bootloader",
            FixupKind::Modules => "modules",
            FixupKind::NetRules => "net-rules",
            FixupKind::NetConfig => "net-config",
            FixupKind::Console => "console",
            FixupKind::MdRaid => "md-raid",
            FixupKind::Monitoring => "monitoring",
            FixupKind::XenDrivers => "xen-drivers",
            FixupKind::Efi => "efi",
            FixupKind::DeviceCaches => "device-caches",
            FixupKind::Selinux => "selinux",
        }
    }
}

/// What `guest::convert` is asked to do.
#[derive(Debug, Clone)]
pub struct ConvertRequest {
    /// STORE/NAME: holds disk0.img..., machine.json, report.json.
    pub store_dir: PathBuf,
    pub name: String,
    pub machine: Machine,
    pub xen_dir: PathBuf,
    /// Overrides machine.json's options; `None` = from machine.json, else default.
    pub layout: Option<Layout>,
    pub xen_type: Option<XenType>,
    pub bootloader: Option<Bootloader>,
    pub bridge: Option<String>,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub dry_run: bool,
    pub force: bool,
    pub policy: ConversionPolicy,
}

/// The administrator's conversion settings that hold for every guest, so
/// that `p2xen receive` applies them to each conversion it runs just as
/// `p2xen convert` does to one.
#[derive(Debug, Clone, Default)]
pub struct ConversionPolicy {
    /// `--no-fixup KIND`: fix-ups not applied.
    pub skip: Vec<FixupKind>,
    /// `--vif-per-nic`: a bond of several NICs keeps one vif per NIC
    /// (and stays a bond) instead of becoming one vif.
    pub vif_per_nic: bool,
    /// `--guest-kernel`: dom0 boots this kernel, whose modules go into the guest.
    pub guest_kernel: Option<supplied_kernel::SuppliedKernel>,
}

impl ConvertRequest {
    /// A request with defaults: every setting from `machine` or left to
    /// the conversion.
    pub fn new(store_dir: PathBuf, name: &str, machine: Machine, xen_dir: PathBuf) -> Self {
        ConvertRequest {
            store_dir,
            name: name.to_string(),
            machine,
            xen_dir,
            layout: None,
            xen_type: None,
            bootloader: None,
            bridge: None,
            memory_mib: None,
            vcpus: None,
            dry_run: false,
            force: false,
            policy: ConversionPolicy::default(),
        }
    }

    /// A request with defaults for the images stored in `store_dir`
    /// (machine.json read from there): what the receiver calls after a copy.
    pub fn from_store(
        store_dir: PathBuf,
        name: &str,
        xen_dir: PathBuf,
    ) -> Result<Self, GuestError> {
        let machine = Machine::load(&store_dir.join("machine.json"))?;
        Ok(ConvertRequest::new(store_dir, name, machine, xen_dir))
    }
}

/// What the conversion did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversionReport {
    pub name: String,
    pub date: String,
    pub dry_run: bool,
    pub layout: Layout,
    #[serde(rename = "type")]
    pub xen_type: XenType,
    /// "pvgrub2", "pvgrub2-pvh", "pygrub", "dom0-kernel" or "hvm".
    pub boot_route: String,
    /// Why that route.
    pub boot_reason: String,
    /// How the source booted ("bios" or "uefi") and why that is known.
    #[serde(default = "default_firmware")]
    pub firmware: Firmware,
    #[serde(default)]
    pub firmware_reason: String,
    /// Guest's root device as the guest will see it.
    pub root_device: String,
    pub config_path: PathBuf,
    pub config: String,
    pub images: Vec<PathBuf>,
    pub kernels: Vec<KernelInfo>,
    pub fixups: Vec<Fixup>,
    pub warnings: Vec<String>,
    pub next_command: String,
}

fn default_firmware() -> Firmware {
    Firmware::Bios
}

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid machine description: {source}")]
    MachineJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} not found: check --store and --name (the receiver writes it with the images)")]
    NoMachine { path: PathBuf },
    #[error("{path}: {size} bytes is too big for a machine description")]
    MachineTooBig { path: PathBuf, size: u64 },
    #[error("{path}: {source}")]
    ReportJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: report is not a JSON object; move it away and re-run")]
    ReportNotObject { path: PathBuf },
    #[error("{path} exists; pass --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("{path}: image missing (machine.json lists {disks} disk(s)); re-run the copy")]
    MissingImage { path: PathBuf, disks: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("no root filesystem (one holding /etc/fstab) found in {store}; tried {tried}")]
    NoRoot { store: PathBuf, tried: String },
    #[error("guest fstab mounts /boot from {spec}, which is in none of the copied images")]
    BootNotFound { spec: String },
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    RootMount(#[from] mount::RootMountError),
    #[error(transparent)]
    GuestFs(#[from] guestfs::GuestFsError),
    #[error(transparent)]
    Md(#[from] mdraid::MdError),
    #[error(transparent)]
    Lvm(#[from] lvm::LvError),
    #[error(transparent)]
    Split(#[from] split::SplitError),
    #[error(transparent)]
    Efi(#[from] efi::EfiError),
    #[error("xen-drivers: {0}")]
    InitrdFix(#[from] initrd_drivers::InitrdFixError),
}
