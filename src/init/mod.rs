//! The live environment: `p2xen` running as PID 1 in the initramfs.
//!
//! [`run`] never returns (PID 1 exiting panics the kernel): it sets up the
//! mounts and consoles, loads drivers (coldplug), sets every disk read-only,
//! prints the ready marker and then starts the unattended run or the rescue
//! shell; on any failure it says what went wrong and offers the shell again.

pub mod bounded;
pub mod coldplug;
pub mod console;
pub mod cpu;
pub mod mkinitramfs;
pub mod power;
pub mod process;
pub mod protect;
pub mod shell;
pub mod signals;
pub mod steps;
pub mod unattended;

use crate::bootparams::{self as cmdline, EndAction};
use crate::net;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Printed on every console once disks and drivers are ready; tests wait for it.
pub const READY_MARKER: &str = "p2xen-live: ready";

/// True when this process should act as init: PID 1, or started as `init`.
pub fn is_init() -> bool {
    std::process::id() == 1
        || std::env::args_os()
            .next()
            .is_some_and(|a| Path::new(&a).file_name().is_some_and(|n| n == "init"))
}

/// PID 1's main loop. Never returns: after the set-up (or a panic in it,
/// which would otherwise end PID 1 and panic the kernel) the rescue shell
/// runs on the primary console, again and again.
pub fn run() -> ! {
    let primary = match std::panic::catch_unwind(setup) {
        Ok(primary) => primary,
        Err(_) => {
            log::error!("the live environment's set-up failed with a panic (a bug; message above)");
            PathBuf::from("/dev/console")
        }
    };
    loop {
        match shell::rescue_shell(&primary) {
            Ok(code) => {
                console::reopen();
                log::info!("rescue shell exited ({code}); starting it again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                log::error!(
                    "cannot start the rescue shell on {}: {e}; retrying in 5 s",
                    primary.display()
                );
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    }
}

/// Everything up to the ready marker and the unattended run; returns the
/// console the rescue shell should use.
fn setup() -> PathBuf {
    let started = Instant::now();
    let booted = boot();
    // A command line with an error still gets the default settle time and
    // boot medium detection: the rescue shell needs the disks too.
    let defaults = cmdline::Cmdline::default();
    let cmd = booted.cmdline.as_ref().unwrap_or(&defaults);
    coldplug_all(cmd, &booted.module_options);
    let inv = inventory(cmd);
    log::info!(
        "{READY_MARKER} in {:.1} s: {} source disk(s){}",
        started.elapsed().as_secs_f64(),
        inv.sources.len(),
        inv.boot_medium
            .map(|b| format!(", boot medium /dev/{b} left alone"))
            .unwrap_or_default()
    );
    dispatch(&booted, inv.sources);
    booted.primary
}

/// What the boot step leaves behind.
struct Booted {
    logger: &'static console::InitLogger,
    /// The kernel command line; an error means no unattended run.
    cmdline: Result<cmdline::Cmdline, cmdline::CmdlineError>,
    /// The console the rescue shell (and the messages for it) use.
    primary: PathBuf,
    /// `MODULE.PARAM=` of the command line, even when p2xen's own keys
    /// have an error: the rescue shell needs the disks too.
    module_options: coldplug::options::ModuleOptions,
}

/// Logging, signals, the base mounts and devices (the step table), the
/// kernel command line and the consoles it names.
fn boot() -> Booted {
    let logger = console::InitLogger::install(log::LevelFilter::Debug);
    log::set_max_level(log::LevelFilter::Info);
    // Before any other thread exists, so every thread inherits the mask.
    signals::start();
    let failed_steps = steps::run_all(&steps::base_steps());

    let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let parsed = cmdline::Cmdline::parse(&line);
    let module_options = coldplug::options::ModuleOptions::from_cmdline(&cmdline::split(&line));
    let opened = logger.attach(&console_devices(parsed.as_ref().ok()));
    match &parsed {
        Ok(c) => {
            if c.debug {
                log::set_max_level(log::LevelFilter::Debug);
            }
            for w in &c.warnings {
                log::warn!("kernel command line: {w}");
            }
        }
        Err(e) => log::error!("{e}; no unattended run"),
    }
    let primary = opened
        .last()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/dev/console"));
    log::info!(
        "p2xen {} live environment; consoles: {}; {failed_steps} set-up step(s) failed",
        env!("CARGO_PKG_VERSION"),
        opened
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = nix::unistd::sethostname("p2xen");
    Booted {
        logger,
        cmdline: parsed,
        primary,
        module_options,
    }
}

/// The `console=` devices, else /dev/console.
fn console_devices(cmd: Option<&cmdline::Cmdline>) -> Vec<PathBuf> {
    let mut consoles: Vec<PathBuf> = cmd
        .map(|c| {
            c.consoles
                .iter()
                .map(|c| Path::new("/dev").join(&c.device))
                .collect()
        })
        .unwrap_or_default();
    if consoles.is_empty() {
        consoles.push(PathBuf::from("/dev/console"));
    }
    consoles
}

/// The disks after coldplug, every one set read-only first.
struct Inventory {
    /// Source disks to copy: read-only, not the boot medium.
    sources: Vec<PathBuf>,
    /// The medium the live environment booted from, left alone.
    boot_medium: Option<String>,
}

fn inventory(cmd: &cmdline::Cmdline) -> Inventory {
    let sys_block = Path::new("/sys/block");
    let listed = crate::source::sysfs::list_disks(Path::new("/sys")).unwrap_or_else(|e| {
        log::error!("{e}; no disks found");
        Vec::new()
    });
    let all: Vec<String> = listed.iter().map(|d| d.name.clone()).collect();
    // Read-only first: nothing below (boot medium detection, inspection, the
    // copy) may read a disk that is still writable.
    let unprotected: Vec<String> =
        protect::protect_all(sys_block, Path::new("/dev"), &all, cmd.settle)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
    // Only protected disks are read, and a disk that did not answer would
    // block the reader again.
    let protected: Vec<String> = all
        .iter()
        .filter(|d| !unprotected.contains(d))
        .cloned()
        .collect();
    let boot_medium = protect::boot_medium(
        sys_block,
        Path::new("/dev"),
        &protected,
        cmd.bootdev.as_deref(),
    );
    let sources: Vec<&crate::source::sysfs::DiskAttrs> = listed
        .iter()
        .filter(|d| Some(&d.name) != boot_medium.as_ref())
        .collect();
    for d in &sources {
        log::info!(
            "disk /dev/{}: {} bytes, {} {}",
            d.name,
            d.size_bytes.unwrap_or(0),
            d.transport.as_deref().unwrap_or("unknown transport"),
            d.model.as_deref().unwrap_or("")
        );
    }
    if !unprotected.is_empty() {
        log::error!(
            "{} disk(s) could not be set read-only; they will not be copied",
            unprotected.len()
        );
    }
    let sources = sources
        .iter()
        .filter(|d| !unprotected.contains(&d.name))
        .map(|d| Path::new("/dev").join(&d.name))
        .collect();
    Inventory {
        sources,
        boot_medium,
    }
}

/// What the command line asks for: the unattended run, the menu or the
/// rescue shell (which follows when this returns).
fn dispatch(booted: &Booted, sources: Vec<PathBuf>) {
    let logger = booted.logger;
    match &booted.cmdline {
        Ok(cmd) if cmd.mode == cmdline::Mode::Auto => run_unattended(cmd, &sources, logger),
        Ok(cmd) if cmd.mode == cmdline::Mode::Menu => run_menu(cmd, sources, logger),
        Ok(_) => logger.console_write("\nRescue shell (p2xen.mode=shell).\n\n"),
        Err(_) => logger.console_write(
            "\nThe kernel command line has an error (see above); fix it at the boot menu.\n\
             Rescue shell follows; `poweroff` or `reboot` leave cleanly.\n\n",
        ),
    }
}

/// The unattended migration (`p2xen.mode=auto`), then its end action.
fn run_unattended(cmd: &cmdline::Cmdline, sources: &[PathBuf], logger: &console::InitLogger) {
    let Some(plan) = unattended::plan(cmd) else {
        return;
    };
    unattended::log_summary(sources);
    let end = match unattended::network(cmd, &plan.server)
        .and_then(|()| unattended::migrate(cmd, sources))
    {
        Ok(()) => {
            log::info!("migration to {} finished", plan.server);
            plan.post
        }
        Err(e) => {
            log::error!("{e}");
            plan.fail
        }
    };
    finish(end, logger);
}

/// The interactive migration on every console; returns when the user asks
/// for the shell (or every console went away).
fn run_menu(cmd: &cmdline::Cmdline, paths: Vec<PathBuf>, logger: &console::InitLogger) {
    let consoles = crate::menu::console_paths(cmd);
    let quiet = console::QuietKernel::start();
    // Links up first: the overview shows each NIC's link state. Not with
    // ip=off, which asks to leave the network down.
    if cmd.ip != [cmdline::IpParam::Off] {
        match net::links_up(Duration::from_secs(5)) {
            Ok(n) => log::info!("network: {n} link(s) with carrier"),
            Err(e) => log::warn!("network: {e}; the menu shows no link state"),
        }
    }
    // The log would scribble over the menu: it keeps going to /run/p2xen.log
    // and /dev/kmsg ("show full log" in the menu reads the file).
    logger.attach(&[]);
    let backend = crate::menu::local::LocalBackend {
        disks: Some(paths),
        live: true,
        rescue_shell: Some(shell::rescue_shell),
    };
    let outcome = crate::menu::run(
        &consoles,
        crate::menu::MenuPrefill::from_cmdline(cmd),
        &backend,
    );
    drop(quiet);
    logger.attach(&consoles);
    match outcome {
        Ok(crate::menu::MenuOutcome::PowerOff) => finish(EndAction::Poweroff, logger),
        Ok(crate::menu::MenuOutcome::Reboot) => finish(EndAction::Reboot, logger),
        Ok(_) => logger.console_write("\nRescue shell follows.\n\n"),
        Err(e) => log::error!("menu: {e}; rescue shell follows"),
    }
}

/// Carries out an end action; returns only for [`EndAction::Shell`].
fn finish(end: EndAction, logger: &console::InitLogger) {
    match end {
        EndAction::Poweroff => power::shutdown(power::PowerAction::PowerOff),
        EndAction::Reboot => power::shutdown(power::PowerAction::Reboot),
        EndAction::Shell => logger.console_write("\nRescue shell follows.\n\n"),
        EndAction::Wait => {
            logger.console_write("\nWaiting (p2xen.post/fail=wait); Ctrl-Alt-Del reboots.\n");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn coldplug_all(cmd: &cmdline::Cmdline, options: &coldplug::options::ModuleOptions) {
    let policy = coldplug::Policy {
        blacklist: cmd.blacklist.clone(),
        load_timeout: cmd.settle,
        options: options.clone(),
    };
    let moddir = coldplug::running_moddir();
    let events = match coldplug::uevent::UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "uevent socket: {}; late devices will not load drivers",
                e.desc()
            );
            None
        }
    };
    let mut cp = match coldplug::Coldplug::open(&moddir, &policy) {
        Ok(cp) => cp,
        Err(e) => {
            log::error!("coldplug impossible: {e}; only built-in drivers are available");
            return;
        }
    };
    let t0 = Instant::now();
    let loaded = cp.settle(events.as_ref(), Duration::from_millis(1000), cmd.settle);
    log::info!(
        "coldplug: {} module(s) loaded in {:.1} s: {}{}",
        loaded.len(),
        t0.elapsed().as_secs_f64(),
        loaded.join(" "),
        cp.problems()
    );
    // Virtual links have no modalias, and the kernel's own request_module
    // needs a /sbin/modprobe the live image does not have.
    let wanted = [
        ("8021q", !cmd.net.vlans.is_empty()),
        ("bonding", !cmd.net.bonds.is_empty()),
    ];
    for (module, _) in wanted.iter().filter(|(_, w)| *w) {
        let mut inserted = Vec::new();
        match cp.load(module, &mut inserted) {
            Ok(()) => log::info!("coldplug: {module} loaded for the command line's links"),
            Err(e) => log::error!("coldplug: {module}: {e}; vlan=/bond= links cannot be made"),
        }
    }
    if let Some(events) = events {
        cp.spawn_hotplug(events);
    }
}
