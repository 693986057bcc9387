//! PID 1's signals, handled synchronously by one thread (sigwait), so no
//! code runs in signal-handler context:
//! SIGCHLD → reap; SIGINT (Ctrl-Alt-Del once `reboot(RB_DISABLE_CAD)` is set)
//! and SIGTERM → reboot; SIGUSR2 and SIGPWR → poweroff; SIGUSR1 → halt.
//! These are busybox's conventions, so `reboot`/`poweroff` typed in the
//! rescue shell do the clean shutdown too.

use super::power::{PowerAction, shutdown};
use super::process;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        set.add(s);
    }
    set
}

/// Blocks the handled signals in the calling thread (call before starting any
/// other thread, so they all inherit the mask) and starts the signal thread.
/// Children get an empty mask: std's spawn resets it.
pub fn start() {
    let set = handled();
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        log::error!("cannot block signals: {}", e.desc());
    }
    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate hard reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        log::warn!("reboot(RB_DISABLE_CAD) failed: {}", e.desc());
    }
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                match set.wait() {
                    Ok(Signal::SIGCHLD) => process::reap(),
                    Ok(Signal::SIGINT) => {
                        log::info!("Ctrl-Alt-Del pressed");
                        shutdown(PowerAction::Reboot)
                    }
                    Ok(Signal::SIGTERM) => shutdown(PowerAction::Reboot),
                    Ok(Signal::SIGUSR2) | Ok(Signal::SIGPWR) => shutdown(PowerAction::PowerOff),
                    Ok(Signal::SIGUSR1) => shutdown(PowerAction::Halt),
                    Ok(other) => log::debug!("ignoring {other}"),
                    Err(e) => log::error!("sigwait: {}", e.desc()),
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the signal thread: {e}; zombies will not be reaped");
    }
}
