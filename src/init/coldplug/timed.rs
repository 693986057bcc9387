//! Module loading with a bounded wait: a driver whose probe blocks (lost
//! interrupts, firmware timeouts) must not hang PID 1.
//!
//! `finit_module` runs the module's init, and with it the probe of every
//! device the driver binds, in the caller; it cannot be interrupted. So each
//! load runs on its own thread and the caller waits at most `timeout`. A
//! thread that overruns is left blocked in the kernel (nothing can free it)
//! and the module is remembered as stuck: later requests for it return at
//! once, and pick up the result if the load has finished meanwhile.

use super::ColdplugError;
use crate::init::bounded::{self, Bounded};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Inserts one module file into the kernel with a parameter string
/// (`"a=1 b"`); injected so tests need no kernel.
pub type LoadFn = dyn Fn(&Path, &str) -> Result<(), ColdplugError> + Send + Sync;

/// The real loader: `finit_module` on the file. `EEXIST` (loaded meanwhile,
/// e.g. by the kernel's own request_module) counts as success.
pub fn finit(path: &Path, params: &str) -> Result<(), ColdplugError> {
    use nix::kmod::{ModuleInitFlags, finit_module};
    let params = std::ffi::CString::new(params).map_err(|_| ColdplugError::Params {
        path: path.to_path_buf(),
        params: params.to_string(),
    })?;
    let file = std::fs::File::open(path).map_err(|source| ColdplugError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    match finit_module(&file, &params, ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
        Err(errno) => Err(ColdplugError::Load {
            path: path.to_path_buf(),
            errno,
        }),
    }
}

/// What became of one load request.
#[derive(Debug)]
pub enum Outcome {
    Loaded,
    Failed(ColdplugError),
    /// This request overran the timeout; the load goes on in the background.
    Overran {
        waited: Duration,
    },
    /// An earlier request overran and the load has still not finished.
    StillStuck {
        since: Duration,
    },
}

struct Pending {
    path: PathBuf,
    started: Instant,
    result: Receiver<Result<(), ColdplugError>>,
}

pub struct TimedLoader {
    load: Arc<LoadFn>,
    timeout: Duration,
    stuck: BTreeMap<String, Pending>,
}

impl TimedLoader {
    pub fn new(load: Arc<LoadFn>, timeout: Duration) -> Self {
        TimedLoader {
            load,
            timeout,
            stuck: BTreeMap::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Loads module `name` from `path` with `params`, waiting at most the timeout.
    pub fn load(&mut self, name: &str, path: &Path, params: &str) -> Outcome {
        if let Some(outcome) = self.poll_stuck(name) {
            return outcome;
        }
        let load = Arc::clone(&self.load);
        let file: PathBuf = path.to_path_buf();
        let params = params.to_string();
        let started = Instant::now();
        match bounded::run(format!("load {name}"), self.timeout, move || {
            load(&file, &params)
        }) {
            Bounded::Done(Ok(())) => Outcome::Loaded,
            Bounded::Done(Err(e)) => Outcome::Failed(e),
            Bounded::Overran(rx) => {
                self.stuck.insert(
                    name.to_string(),
                    Pending {
                        path: path.to_path_buf(),
                        started,
                        result: rx,
                    },
                );
                Outcome::Overran {
                    waited: started.elapsed(),
                }
            }
            Bounded::Lost => Outcome::Failed(ColdplugError::Panicked {
                path: path.to_path_buf(),
            }),
            Bounded::NoThread(source) => Outcome::Failed(ColdplugError::Thread {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// For a module that overran earlier: its late result, or still stuck.
    /// `None` when `name` is not stuck.
    fn poll_stuck(&mut self, name: &str) -> Option<Outcome> {
        let pending = self.stuck.get(name)?;
        let outcome = match pending.result.try_recv() {
            Err(TryRecvError::Empty) => {
                return Some(Outcome::StillStuck {
                    since: pending.started.elapsed(),
                });
            }
            Ok(Ok(())) => Outcome::Loaded,
            Ok(Err(e)) => Outcome::Failed(e),
            Err(TryRecvError::Disconnected) => Outcome::Failed(ColdplugError::Panicked {
                path: pending.path.clone(),
            }),
        };
        self.stuck.remove(name);
        Some(outcome)
    }

    /// True while `name` overran and its result has not been collected by
    /// [`TimedLoader::load`]: the kernel lists such a module in /sys/module
    /// already ("coming"), so callers ask here before trusting that.
    pub fn is_pending(&self, name: &str) -> bool {
        self.stuck.contains_key(name)
    }

    /// Modules still stuck, with how long they have been loading.
    pub fn stuck(&self) -> Vec<(String, Duration)> {
        self.stuck
            .iter()
            .map(|(name, p)| (name.clone(), p.started.elapsed()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, mpsc};

    /// A loader that blocks on `gate` for the modules named `slow*` until
    /// the test sends, and fails `bad*`.
    fn fake(gate: Receiver<()>, calls: Arc<Mutex<Vec<String>>>) -> Arc<LoadFn> {
        let gate = Mutex::new(gate);
        Arc::new(move |path: &Path, _params: &str| {
            let name = path.to_string_lossy().into_owned();
            calls.lock().unwrap().push(name.clone());
            if name.starts_with("slow") {
                let _ = gate.lock().unwrap().recv();
            }
            if name.starts_with("bad") {
                return Err(ColdplugError::Load {
                    path: path.to_path_buf(),
                    errno: nix::Error::ENODEV,
                });
            }
            Ok(())
        })
    }

    #[test]
    fn overrun_is_reported_once_then_late_success_is_seen() {
        let (open, gate) = mpsc::channel();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut l = TimedLoader::new(fake(gate, calls.clone()), Duration::from_millis(100));
        assert!(matches!(
            l.load("fast", Path::new("fast"), ""),
            Outcome::Loaded
        ));
        match l.load("slow", Path::new("slow"), "") {
            Outcome::Overran { waited } => assert!(waited >= Duration::from_millis(100)),
            other => panic!("expected an overrun, got {other:?}"),
        }
        assert!(l.is_pending("slow"));
        assert_eq!(
            l.stuck()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["slow"]
        );
        // Asked again: no second load, no second wait.
        assert!(matches!(
            l.load("slow", Path::new("slow"), ""),
            Outcome::StillStuck { .. }
        ));
        assert_eq!(*calls.lock().unwrap(), ["fast", "slow"]);
        // Other modules still load while the first one hangs.
        assert!(matches!(
            l.load("other", Path::new("other"), ""),
            Outcome::Loaded
        ));
        // The probe finishes late: the next request sees the success.
        open.send(()).unwrap();
        let t0 = Instant::now();
        loop {
            match l.load("slow", Path::new("slow"), "") {
                Outcome::Loaded => break,
                Outcome::StillStuck { .. } => {}
                other => panic!("expected the late success, got {other:?}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "late result lost");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!l.is_pending("slow"));
        assert!(l.stuck().is_empty());
        assert_eq!(*calls.lock().unwrap(), ["fast", "slow", "other"]);
    }

    #[test]
    fn failures_are_returned() {
        let (_open, gate) = mpsc::channel();
        let mut l = TimedLoader::new(
            fake(gate, Arc::new(Mutex::new(Vec::new()))),
            Duration::from_secs(5),
        );
        match l.load("bad", Path::new("bad"), "") {
            Outcome::Failed(e) => assert_eq!(
                e.to_string(),
                "bad: finit_module failed: ENODEV: No such device"
            ),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(!l.is_pending("bad"));
    }
}
