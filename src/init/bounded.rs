//! Calls into the kernel that may never return: opening a disk, `sync()`,
//! `finit_module` all wait for a device whose driver is stuck, and none of
//! them can be interrupted. PID 1 runs such a call on a thread of its own
//! and waits at most a bound; a thread that overruns stays behind, blocked
//! in the kernel, and PID 1 goes on.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// What became of a bounded call.
pub enum Bounded<T> {
    Done(T),
    /// Still running after the bound; its result arrives here if ever.
    Overran(Receiver<T>),
    /// The thread ended without a result (it panicked).
    Lost,
    /// No thread could be started.
    NoThread(std::io::Error),
}

/// Runs `f` on a thread named `name` and waits at most `timeout` for it.
pub fn run<T: Send + 'static>(
    name: String,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Bounded<T> {
    let (tx, rx) = mpsc::channel();
    // The receiver is gone once the caller gave up; nothing to tell then.
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn(move || drop(tx.send(f())));
    if let Err(e) = spawned {
        return Bounded::NoThread(e);
    }
    match rx.recv_timeout(timeout) {
        Ok(v) => Bounded::Done(v),
        Err(RecvTimeoutError::Timeout) => Bounded::Overran(rx),
        Err(RecvTimeoutError::Disconnected) => Bounded::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_overruns_hands_back_its_late_result() {
        let (gate_tx, gate) = mpsc::channel::<()>();
        match run("slow".into(), Duration::from_millis(50), move || {
            let _ = gate.recv();
            7
        }) {
            Bounded::Overran(rx) => {
                gate_tx.send(()).unwrap();
                assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
            }
            _ => panic!("the blocked call did not overrun"),
        }
        assert!(matches!(
            run("fast".into(), Duration::from_secs(5), || 3),
            Bounded::Done(3)
        ));
        assert!(matches!(
            run("panics".into(), Duration::from_secs(5), || -> u8 {
                panic!("in the thread")
            }),
            Bounded::Lost
        ));
    }
}
