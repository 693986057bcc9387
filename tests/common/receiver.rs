//! `p2xen receive --once` on 127.0.0.1 for system tests that migrate from a
//! VM: QEMU's user network shows the host's loopback to the guest as 10.0.2.2.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The receiver, killed on drop; its stderr is echoed with the time since
/// start so the first byte's arrival shows in the log.
pub struct Receiver {
    child: Child,
    /// `p2xen.server=... p2xen.token=... p2xen.fingerprint=...` as printed.
    pub params: String,
    /// When the receiver logged the new migration (the sender's first bytes).
    pub first_contact: mpsc::Receiver<Instant>,
}

impl Receiver {
    /// Starts it with its token, store (`work/store`), state (`work/state`)
    /// and xl configs (`work/xen`) under `work`, plus `extra` arguments
    /// (`--no-convert`, ...); returns once it printed its kernel parameters.
    pub fn start(work: &Path, extra: &[&str]) -> Receiver {
        let token = work.join("token");
        std::fs::write(&token, "e2e-token-0123456789abcdef\n").expect("token file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_p2xen"))
            .args([
                "receive",
                "--once",
                "--listen",
                "127.0.0.1:0",
                "--token-file",
            ])
            .arg(&token)
            .arg("--store")
            .arg(work.join("store"))
            .arg("--state-dir")
            .arg(work.join("state"))
            .arg("--xen-dir")
            .arg(work.join("xen"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start p2xen receive");
        let (tx, first_contact) = mpsc::channel();
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                let t0 = Instant::now();
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.contains("new migration from") {
                        let _ = tx.send(Instant::now());
                    }
                    eprintln!("[receive +{:.1}s] {line}", t0.elapsed().as_secs_f64());
                }
            });
        }
        let stdout = child.stdout.take().expect("receiver stdout");
        let mut params = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[receive] {line}");
            if let Some(p) = line.strip_prefix("kernel parameters: ") {
                params = Some(p.to_owned());
                break;
            }
        }
        let params = params.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("p2xen receive printed no kernel parameters line")
        });
        Receiver {
            child,
            params,
            first_contact,
        }
    }

    /// The kernel parameters as the guest must see them: the host's
    /// 127.0.0.1 is 10.0.2.2 from inside QEMU's user network.
    pub fn guest_params(&self) -> String {
        self.params
            .replace("p2xen.server=127.0.0.1:", "p2xen.server=10.0.2.2:")
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for p2xen receive") {
                return s;
            }
            assert!(
                t0.elapsed() < timeout,
                "p2xen receive still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
