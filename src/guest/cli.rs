//! `p2xen convert`: re-runs the conversion on stored images.

use std::path::PathBuf;
use std::process::ExitCode;

use super::supplied_kernel::SuppliedKernel;
use super::{
    Bootloader, ConversionPolicy, ConversionReport, ConvertRequest, FixupKind, GuestError, Layout,
    XenType,
};

#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// Guest name: images are in STORE/NAME, the config is XEN_DIR/NAME.cfg.
    #[arg(long)]
    pub name: String,
    /// The receiver's store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Where the xl config is written.
    #[arg(long, default_value = "/etc/xen")]
    pub xen_dir: PathBuf,
    /// How the copy is exposed (default: machine.json's option, else disk).
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// Guest type (default: pv when the guest kernel supports Xen, else hvm).
    #[arg(long = "type", value_enum)]
    pub xen_type: Option<XenType>,
    /// Boot loader for layout disk (default: pvgrub).
    #[arg(long, value_enum)]
    pub bootloader: Option<Bootloader>,
    /// Bridge for the guest's NICs (default xenbr0).
    #[arg(long)]
    pub bridge: Option<String>,
    /// Guest memory in MiB (default: the source server's).
    #[arg(long)]
    pub memory: Option<u64>,
    /// Guest CPUs (default: the source server's).
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Print what would change, as diffs; touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite an existing config and partition images.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The conversion settings shared by `p2xen convert` and `p2xen receive`
/// (which applies them to every conversion it runs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// Skip one kind of fix-up (repeatable).
    #[arg(long = "no-fixup", value_enum)]
    pub no_fixup: Vec<FixupKind>,
    /// Give each NIC of a bond its own vif (the bond kept in the guest)
    /// instead of one vif for the bond.
    #[arg(long)]
    pub vif_per_nic: bool,
    #[command(flatten)]
    pub guest_kernel: GuestKernelArgs,
}

impl PolicyArgs {
    /// The policy, with `--guest-kernel`'s files checked to exist.
    pub fn resolve(&self) -> Result<ConversionPolicy, GuestError> {
        Ok(ConversionPolicy {
            skip: self.no_fixup.clone(),
            vif_per_nic: self.vif_per_nic,
            guest_kernel: self.guest_kernel.resolve()?,
        })
    }
}

/// `--guest-kernel` and its companions.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GuestKernelArgs {
    /// Boot the guest PV with this Xen-capable kernel from dom0 instead of
    /// its own (which lacks Xen support, or is 32-bit); `dom0` for dom0's
    /// running kernel. Its modules are installed into the guest.
    #[arg(long, value_name = "PATH|dom0")]
    pub guest_kernel: Option<String>,
    /// The initrd for --guest-kernel (default for dom0: /boot/initrd.img-VERSION).
    #[arg(long, value_name = "PATH", requires = "guest_kernel")]
    pub guest_initrd: Option<PathBuf>,
    /// The modules of --guest-kernel, /lib/modules/VERSION (default for dom0: its own).
    #[arg(long, value_name = "DIR", requires = "guest_kernel")]
    pub guest_modules: Option<PathBuf>,
}

impl GuestKernelArgs {
    /// The supplied kernel, its files checked to exist; `None` without
    /// `--guest-kernel`. The error names the missing file.
    pub fn resolve(&self) -> Result<Option<SuppliedKernel>, GuestError> {
        self.guest_kernel
            .as_deref()
            .map(|k| {
                SuppliedKernel::resolve(
                    k,
                    self.guest_initrd.as_deref(),
                    self.guest_modules.as_deref(),
                )
            })
            .transpose()
    }
}

/// `p2xen convert`: prints the summary, or logs the error; the exit status says which.
pub fn run(args: ConvertArgs) -> ExitCode {
    match convert(&args) {
        Ok(report) => {
            print!("{}", summary(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("convert {}: {e}", args.name);
            ExitCode::FAILURE
        }
    }
}

fn convert(args: &ConvertArgs) -> Result<ConversionReport, GuestError> {
    let dir = args.store.join(&args.name);
    refuse_unfinished(&dir)?;
    let mut req = ConvertRequest::from_store(dir, &args.name, args.xen_dir.clone())?;
    req.layout = args.layout;
    req.xen_type = args.xen_type;
    req.bootloader = args.bootloader;
    req.bridge = args.bridge.clone();
    req.memory_mib = args.memory;
    req.vcpus = args.vcpus;
    req.dry_run = args.dry_run;
    req.force = args.force;
    req.policy = args.policy.resolve()?;
    super::convert(&req)
}

/// The receiver leaves `diskN.img.incomplete` beside an image until the copy
/// is verified, and keeps it after a pre-copy from the running server:
/// converting either would boot a guest from an inconsistent disk.
fn refuse_unfinished(dir: &std::path::Path) -> Result<(), GuestError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "incomplete") {
            let why = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(GuestError::Invalid(format!(
                "{}: {}; convert after the copy is finished",
                path.display(),
                why.trim()
            )));
        }
    }
    Ok(())
}

/// The human-readable summary the binary prints on stdout.
pub fn summary(r: &ConversionReport) -> String {
    let mut s = String::new();
    for f in &r.fixups {
        s.push_str(&format!(
            "== {} {} ({}): {}\n",
            f.kind.as_str(),
            f.file,
            f.action,
            f.note
        ));
        s.push_str(&f.diff);
    }
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s.push_str(&format!(
        "firmware: {} ({})\n",
        r.firmware.as_str(),
        r.firmware_reason
    ));
    s.push_str(&format!(
        "boot route: {} ({}): {}\n",
        r.boot_route,
        r.xen_type.as_str(),
        r.boot_reason
    ));
    if r.dry_run {
        s.push_str(&format!(
            "dry run: nothing changed; {} would be:\n{}",
            r.config_path.display(),
            r.config
        ));
    } else {
        s.push_str(&format!(
            "wrote {}\nnext: {}\n",
            r.config_path.display(),
            r.next_command
        ));
    }
    s
}
