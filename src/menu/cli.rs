//! `p2xen menu`: the menu on a given terminal with image files as disks,
//! for tests and for trying it on a workstation. Hidden from --help: the
//! live image starts the menu itself.

use super::app::MenuOutcome;
use super::console::MenuError;
use super::local::LocalBackend;
use super::prefill::MenuPrefill;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct MenuArgs {
    /// Terminal(s) to run on (default: /dev/tty). Repeat for several.
    #[arg(long = "tty", value_name = "PATH")]
    pub ttys: Vec<PathBuf>,
    /// Disk images or devices to offer as source disks (opened read-only).
    #[arg(long = "disk", value_name = "IMG")]
    pub disks: Vec<PathBuf>,
    /// Pre-fill: receiver HOST[:PORT].
    #[arg(long)]
    pub server: Option<String>,
    /// Pre-fill: receiver token.
    #[arg(long)]
    pub token: Option<String>,
    /// Pre-fill: receiver fingerprint (sha256:HEX).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Pre-fill: guest name.
    #[arg(long)]
    pub name: Option<String>,
}

/// `p2xen menu`: runs the menu on the given terminals until it ends.
pub fn run(args: MenuArgs) -> ExitCode {
    match menu(&args) {
        Ok(outcome) => {
            println!("menu: {outcome:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("menu: {e}");
            ExitCode::FAILURE
        }
    }
}

fn menu(args: &MenuArgs) -> Result<MenuOutcome, MenuError> {
    let ttys = if args.ttys.is_empty() {
        vec![PathBuf::from("/dev/tty")]
    } else {
        args.ttys.clone()
    };
    let prefill = MenuPrefill {
        server: args.server.clone(),
        token: args.token.clone(),
        fingerprint: args.fingerprint.clone(),
        name: args.name.clone(),
        ..MenuPrefill::default()
    };
    let backend = LocalBackend {
        disks: Some(args.disks.clone()),
        live: false,
        rescue_shell: None,
    };
    super::run(&ttys, prefill, &backend)
}
