//! The backend on a real machine: the live image's (every fixed disk,
//! network through `init::net`) and `p2xen menu` on a workstation's (image
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
    /// `init::net::configure` and the rescue shell is `init::shell`'s.
    /// False on a workstation, whose network is not ours to change.
    pub live: bool,
}

/// Carrier of a NIC: Some(true) link up; None when the kernel does not say
/// (interface down).
fn carrier(nic: &str) -> Option<bool> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(nic).join("carrier"))
        .ok()
        .map(|c| c.trim() == "1")
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
        crate::init::net::configure(&choice.to_request())
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
        super::probe::receiver_fingerprint(server).map_err(BackendError)
    }

    fn start_migration(
        &self,
        plan: &MigrationPlan,
        events: Sender<MigrationEvent>,
    ) -> Result<(), BackendError> {
        super::migrate::start(plan, events)
            .map_err(|e| BackendError(format!("cannot start the copy thread: {e}")))
    }

    fn shell(&self, tty: &Path) -> Result<(), BackendError> {
        if self.live {
            return crate::init::shell::rescue_shell(tty)
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
