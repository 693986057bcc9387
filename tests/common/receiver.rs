//! `p2xen receive --once` on 127.0.0.1 for system tests whose live VM
//! migrates to the host: killed on drop; its stderr is echoed with the time
//! since start so the first byte's arrival shows in the test output.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Receiver {
    child: Child,
    /// `p2xen.server=... p2xen.token=... p2xen.fingerprint=...` as printed.
    params: String,
    /// When the receiver logged the new migration (the sender's first bytes).
    first_contact: mpsc::Receiver<Instant>,
    /// `--store`: images land in `store/NAME/diskN.img`.
    pub store: PathBuf,
    /// `--xen-dir`: the converted guest's `NAME.cfg`.
    pub xen_dir: PathBuf,
}

impl Receiver {
    /// Starts the receiver with its store, state and xl directories under
    /// `work`; `extra` are further `p2xen receive` options (`--no-convert`).
    pub fn start(work: &Path, extra: &[&str]) -> Receiver {
        let token = work.join("token");
        std::fs::write(&token, "e2e-token-0123456789abcdef\n").expect("token file");
        let store = work.join("store");
        let xen_dir = work.join("xen");
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
            .arg(&store)
            .arg("--state-dir")
            .arg(work.join("state"))
            .arg("--xen-dir")
            .arg(&xen_dir)
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
            store,
            xen_dir,
        }
    }

    /// The kernel parameters as the guest must see them: the host's
    /// 127.0.0.1 is 10.0.2.2 from inside QEMU's user network.
    pub fn guest_params(&self) -> String {
        self.params
            .replace("p2xen.server=127.0.0.1:", "p2xen.server=10.0.2.2:")
    }

    /// When the sender's first bytes arrived, if they did.
    pub fn first_contact(&self) -> Option<Instant> {
        self.first_contact.try_recv().ok()
    }

    /// Waits for `--once` to end; panics after `timeout`.
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
