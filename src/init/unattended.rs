//! The unattended run, started by `p2xen.server=` on the kernel command line:
//! inspect the (read-only) source disks, print a short summary, migrate, and
//! finish with `p2xen.post=` (default poweroff) or, on failure, `p2xen.fail=`
//! (default shell).
//!
//! The copy (`send::run`, branch `copy`) is not in this build yet: [`migrate`]
//! says so and the run ends in the failure action. Wiring it is the body of
//! [`migrate`] only.

use crate::init::cmdline::{Cmdline, FailAction, PostAction};
use crate::init::net;
use crate::source::inspect::{DiskReport, inspect_disk};
use std::path::PathBuf;

/// What to do when the run ends (`p2xen.post=`, `p2xen.fail=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAction {
    PowerOff,
    Reboot,
    Shell,
    Wait,
}

impl EndAction {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "poweroff" => Some(EndAction::PowerOff),
            "reboot" => Some(EndAction::Reboot),
            "shell" => Some(EndAction::Shell),
            "wait" => Some(EndAction::Wait),
            _ => None,
        }
    }
}

/// The parameters of an unattended run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub server: String,
    pub post: EndAction,
    pub fail: EndAction,
}

#[derive(Debug, thiserror::Error)]
pub enum UnattendedError {
    #[error("cannot reach {server}: network set-up failed: {reason}")]
    Network { server: String, reason: String },
    #[error(
        "migration to {server} impossible: this build has no copy engine (branch copy not merged)"
    )]
    NotWired { server: String },
}

/// The plan from the parsed command line; None without `p2xen.server=`.
pub fn plan(cmd: &Cmdline) -> Option<Plan> {
    let server = cmd.server.as_ref()?.to_string();
    Some(Plan {
        server,
        post: match cmd.post {
            PostAction::Poweroff => EndAction::PowerOff,
            PostAction::Reboot => EndAction::Reboot,
            PostAction::Shell => EndAction::Shell,
            PostAction::Wait => EndAction::Wait,
        },
        fail: match cmd.fail {
            FailAction::Poweroff => EndAction::PowerOff,
            FailAction::Shell => EndAction::Shell,
            FailAction::Wait => EndAction::Wait,
        },
    })
}

/// Brings the network up as `ip=` says (DHCP on every interface with
/// carrier by default); an error when no interface got an address.
pub fn network(cmd: &Cmdline, server: &str) -> Result<(), UnattendedError> {
    let status = net::configure(&net::NetRequest::from_cmdline(cmd)).map_err(|e| {
        UnattendedError::Network {
            server: server.to_string(),
            reason: e.to_string(),
        }
    })?;
    for line in status.summary() {
        log::info!("network: {line}");
    }
    if status.is_up() {
        Ok(())
    } else {
        Err(UnattendedError::Network {
            server: server.to_string(),
            reason: "no interface got an address".into(),
        })
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

/// One line per disk and partition: what will be copied.
pub fn summary(reports: &[DiskReport]) -> String {
    let mut s = String::new();
    for d in reports {
        s.push_str(&format!(
            "  {} {} MiB, table {}, {} partition(s){}\n",
            d.path,
            mib(d.size_bytes),
            d.table,
            d.partitions.len(),
            d.model
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        ));
        for p in &d.partitions {
            let fs = p.filesystem.as_ref();
            s.push_str(&format!(
                "    #{} {} MiB {}{}{}\n",
                p.number,
                mib(p.size_bytes),
                fs.map(|f| f.kind.to_string())
                    .unwrap_or_else(|| p.type_name.clone()),
                fs.and_then(|f| f.label.as_deref())
                    .map(|l| format!(" \"{l}\""))
                    .unwrap_or_default(),
                p.os.as_ref()
                    .and_then(|o| o.pretty_name.as_deref())
                    .map(|n| format!(", {n}"))
                    .unwrap_or_default()
            ));
        }
        for e in d
            .errors
            .iter()
            .chain(d.partitions.iter().flat_map(|p| &p.errors))
        {
            s.push_str(&format!("    error: {e}\n"));
        }
    }
    s
}

/// Inspects the source disks (already read-only) and logs the summary.
pub fn inspect(sources: &[PathBuf]) -> Vec<DiskReport> {
    let mut reports = Vec::new();
    for path in sources {
        match inspect_disk(path) {
            Ok(r) => reports.push(r),
            Err(e) => log::error!("{e}"),
        }
    }
    log::info!("source disks:\n{}", summary(&reports).trim_end());
    reports
}

/// The copy to `plan.server` (network already up).
pub fn migrate(plan: &Plan, _disks: &[DiskReport]) -> Result<(), UnattendedError> {
    Err(UnattendedError::NotWired {
        server: plan.server.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_defaults_and_overrides() {
        let cmd = |line: &str| Cmdline::parse(line).unwrap();
        assert_eq!(plan(&cmd("console=ttyS0")), None);
        let p = plan(&cmd("p2xen.server=dom0:7007")).unwrap();
        assert_eq!(p.server, "dom0:7007");
        assert_eq!((p.post, p.fail), (EndAction::PowerOff, EndAction::Shell));
        let p = plan(&cmd("p2xen.server=dom0 p2xen.post=reboot p2xen.fail=wait")).unwrap();
        assert_eq!((p.post, p.fail), (EndAction::Reboot, EndAction::Wait));
        assert!(
            migrate(&p, &[])
                .unwrap_err()
                .to_string()
                .starts_with("migration to dom0:")
        );
    }

    #[test]
    fn summary_lines() {
        let d = DiskReport {
            path: "/dev/vda".into(),
            size_bytes: 64 << 20,
            table: "mbr".into(),
            partitions: vec![crate::source::inspect::PartitionReport {
                number: 1,
                size_bytes: 63 << 20,
                type_name: "Linux".into(),
                errors: vec!["bad superblock".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            summary(&[d]),
            "  /dev/vda 64 MiB, table mbr, 1 partition(s)\n    #1 63 MiB Linux\n    error: bad superblock\n"
        );
    }
}
