//! Clean poweroff and reboot: stop processes, sync, unmount, reboot(2).

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
    Halt,
}

impl PowerAction {
    fn mode(self) -> RebootMode {
        match self {
            PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
            PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
            PowerAction::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }

    fn word(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "poweroff",
            PowerAction::Reboot => "reboot",
            PowerAction::Halt => "halt",
        }
    }
}

/// Mount points from /proc/mounts, deepest (last mounted) first, without "/".
fn mount_points() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| *p != "/")
        // /proc/mounts escapes spaces as \040; unmounting needs the real name.
        .map(|p| p.replace("\\040", " "))
        .collect();
    points.reverse();
    points
}

/// sync(2), waiting at most 10 s: sync takes each disk's open mutex, which
/// a driver whose probe is stuck (mid partition scan) holds forever.
fn bounded_sync() {
    let sync = super::bounded::run("sync".into(), Duration::from_secs(10), nix::unistd::sync);
    if let super::bounded::Bounded::Overran(_) = sync {
        log::error!("sync did not finish in 10 s (a disk or its driver is stuck); going on");
    }
}

/// reboot(2) shuts every device down first and waits for each one's lock,
/// which a driver whose probe is stuck holds forever: say so after 30 s, and
/// for a reboot restart at once (sysrq `b`: no device shutdown; all is synced).
fn watch_kernel(action: PowerAction, sysrq: Option<std::fs::File>) {
    let spawned = std::thread::Builder::new()
        .name("shutdown watch".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            log::error!(
                "the kernel has not finished the {} after 30 s: a stuck driver blocks its device shutdown",
                action.word()
            );
            if action == PowerAction::Reboot {
                log::error!("restarting at once (sysrq b)");
                if let Some(mut f) = sysrq {
                    use std::io::Write;
                    let _ = f.write_all(b"b");
                }
            } else {
                log::error!("switch the machine off by hand (nothing is left to write)");
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot watch the {}: {e}", action.word());
    }
}

/// Never returns: terminates all other processes, syncs, unmounts, and
/// asks the kernel to power off / reboot; if that fails, waits forever.
pub fn shutdown(action: PowerAction) -> ! {
    log::info!("{}: stopping processes, syncing, unmounting", action.word());
    // Opened while /proc is still mounted: the watch may need it afterwards.
    let sysrq = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sysrq-trigger")
        .ok();
    // Pid -1 from PID 1: every process but ourselves.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    // The shell's exit hung up its console; reopen before /dev goes away.
    std::thread::sleep(Duration::from_millis(200));
    super::console::reopen();
    bounded_sync();
    for point in mount_points() {
        if let Err(e) = nix::mount::umount(point.as_str()) {
            // Busy: detach it, and at least make it read-only for the sync.
            log::debug!("umount {point}: {}; detaching", e.desc());
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    bounded_sync();
    log::info!("{}: now", action.word());
    watch_kernel(action, sysrq);
    let err = nix::sys::reboot::reboot(action.mode());
    log::error!("reboot({}) failed: {err:?}; halting here", action.word());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
