//! The backend on a real machine: the live image's (every fixed disk,
//! network through `net`) and `p2xen menu` on a workstation's (image
//! files as disks, the host's network left alone).

use super::backend::{
    Backend, BackendError, DiskEntry, MachineInfo, MigrationEvent, MigrationPlan, NetChoice,
    NicInfo,
};
use crate::source::inspect;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

pub struct LocalBackend {
    /// None: every fixed disk (`inspect::list_fixed_disks`).
    pub disks: Option<Vec<PathBuf>>,
    /// Running as the live image: interfaces are configured with
    /// `net::configure`. False on a workstation, whose network is not ours
    /// to change.
    pub live: bool,
    /// The live image's rescue shell, given by init because only PID 1 may
    /// reap it; None on a workstation, where `$SHELL` runs instead.
    pub rescue_shell: Option<fn(&Path) -> std::io::Result<i32>>,
}

/// Carrier of a NIC: Some(true) link up; None when the kernel does not say
/// (interface down).
fn carrier(nic: &str) -> Option<bool> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(nic).join("carrier"))
        .ok()
        .map(|c| c.trim() == "1")
}

/// The live image's log file (`init::console::InitLogger` writes it).
const LIVE_LOG: &str = "/run/p2xen.log";
/// The log view reads at most the file's last bytes.
const LOG_TAIL_BYTES: u64 = 512 * 1024;

/// The last lines of `path`, reading at most `LOG_TAIL_BYTES`.
pub fn log_tail(path: &Path) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(LOG_TAIL_BYTES).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if start > 0 && !lines.is_empty() {
        // The first line was cut by the tail.
        lines.remove(0);
    }
    Ok(lines)
}

impl Backend for LocalBackend {
    fn machine(&self) -> MachineInfo {
        // The same description the sender gives the receiver.
        let m = crate::wire::machine::collect("");
        MachineInfo {
            cpus: m.cpus,
            memory_bytes: m.memory_bytes,
            nics: m
                .nics
                .into_iter()
                .map(|n| NicInfo {
                    link: carrier(&n.name),
                    name: n.name,
                    mac: n.mac,
                    driver: n.driver,
                    addresses: Vec::new(),
                })
                .collect(),
        }
    }

    fn disks(&self) -> Vec<DiskEntry> {
        let paths = match &self.disks {
            Some(d) => d.clone(),
            None => match inspect::list_fixed_disks() {
                Ok(d) => d,
                Err(e) => {
                    log::error!("menu: cannot list the disks: {e}");
                    Vec::new()
                }
            },
        };
        paths
            .iter()
            .map(|p| DiskEntry {
                path: p.clone(),
                report: inspect::inspect_disk(p).map_err(|e| e.to_string()),
            })
            .collect()
    }

    fn configure_network(&self, choice: &NetChoice) -> Result<Vec<String>, BackendError> {
        if !self.live {
            return Err(BackendError(
                "not changed: outside the live image the host's own network is used".into(),
            ));
        }
        crate::net::configure(&choice.to_request())
            .map(|status| status.summary())
            .map_err(|e| BackendError(e.to_string()))
    }

    fn test_receiver(&self, server: &str) -> Result<String, BackendError> {
        let addrs: Vec<_> = server
            .to_socket_addrs()
            .map_err(|e| BackendError(format!("cannot resolve: {e}")))?
            .collect();
        let start = Instant::now();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                Ok(_) => {
                    return Ok(format!(
                        "answered on {a} in {} ms",
                        start.elapsed().as_millis()
                    ));
                }
                Err(e) => last = Some(format!("{a}: {e}")),
            }
        }
        Err(BackendError(format!(
            "no answer ({}); is `p2xen receive` running there?",
            last.unwrap_or_else(|| "no address".into())
        )))
    }

    fn receiver_fingerprint(&self, server: &str) -> Result<String, BackendError> {
        crate::wire::probe::receiver_fingerprint(server).map_err(|e| BackendError(e.to_string()))
    }

    fn start_migration(
        &self,
        plan: &MigrationPlan,
        events: Sender<MigrationEvent>,
    ) -> Result<(), BackendError> {
        super::migrate::start(plan, events)
            .map_err(|e| BackendError(format!("cannot start the copy thread: {e}")))
    }

    fn full_log(&self) -> Option<Vec<String>> {
        if !self.live {
            return None;
        }
        log_tail(Path::new(LIVE_LOG))
            .map_err(|e| log::warn!("menu: {LIVE_LOG}: {e}"))
            .ok()
    }

    fn shell(&self, tty: &Path) -> Result<(), BackendError> {
        if let Some(rescue_shell) = self.rescue_shell {
            return rescue_shell(tty)
                .map(drop)
                .map_err(|e| BackendError(format!("rescue shell on {}: {e}", tty.display())));
        }
        let sh = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(tty)
                .map_err(|e| BackendError(format!("{}: {e}", tty.display())))
        };
        let status = std::process::Command::new(&sh)
            .stdin(open()?)
            .stdout(open()?)
            .stderr(open()?)
            .status()
            .map_err(|e| BackendError(format!("{}: {e}", sh.to_string_lossy())))?;
        log::info!("menu: shell exited with {status}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_is_bounded_and_drops_the_cut_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let line = "x".repeat(99);
        let text: String = (0..10_000).map(|i| format!("{i:05} {line}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        let lines = log_tail(&p).unwrap();
        assert_eq!(
            lines.last().map(String::as_str),
            Some(format!("09999 {line}").as_str())
        );
        assert!(lines.iter().all(|l| l.len() == 105), "a cut line is kept");
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert!(bytes <= LOG_TAIL_BYTES as usize);
        std::fs::write(&p, "one\ntwo\n").unwrap();
        assert_eq!(log_tail(&p).unwrap(), vec!["one", "two"]);
    }
}
