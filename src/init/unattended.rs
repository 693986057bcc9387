//! The unattended run, started by `p2xen.server=` on the kernel command line:
//! inspect the (read-only) source disks, print a short summary, migrate, and
//! finish with `p2xen.post=` (default poweroff) or, on failure, `p2xen.fail=`
//! (default shell).
//!
//! The copy itself is [`crate::send::run`], the same engine as `p2xen send`.

use crate::bootparams::{Cmdline, EndAction};
use crate::net;
use crate::source::inspect::{DiskReport, inspect_disk};
use std::path::PathBuf;

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
        "migration to {server} impossible: p2xen.{key}= is missing; boot with the line `p2xen receive` printed"
    )]
    Missing { server: String, key: &'static str },
    #[error(
        "migration to {server}: p2xen.disks= names {disk}, which is not a source disk here (found: {found})"
    )]
    UnknownDisk {
        server: String,
        disk: String,
        found: String,
    },
    #[error("migration to {server} failed: {source}")]
    Copy {
        server: String,
        source: crate::send::SendError,
    },
}

/// The plan from the parsed command line; None without `p2xen.server=`.
pub fn plan(cmd: &Cmdline) -> Option<Plan> {
    let server = cmd.server.as_ref()?.to_string();
    Some(Plan {
        server,
        post: cmd.post,
        fail: cmd.fail,
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

/// Inspects the source disks (already read-only) and logs the summary, so the
/// console shows what is about to be copied before the connection is made.
pub fn log_summary(sources: &[PathBuf]) {
    let mut reports = Vec::new();
    for path in sources {
        match inspect_disk(path) {
            Ok(r) => reports.push(r),
            Err(e) => log::error!("{e}"),
        }
    }
    log::info!("source disks:\n{}", summary(&reports).trim_end());
}

/// The disks to copy: all `sources`, or those `p2xen.disks=` names, in its order.
pub fn select_disks(cmd: &Cmdline, sources: &[PathBuf]) -> Result<Vec<PathBuf>, UnattendedError> {
    let Some(wanted) = &cmd.disks else {
        return Ok(sources.to_vec());
    };
    wanted
        .iter()
        .map(|name| {
            let name = name.trim_start_matches("/dev/");
            sources
                .iter()
                .find(|p| p.file_name().is_some_and(|f| f == name))
                .cloned()
                .ok_or_else(|| UnattendedError::UnknownDisk {
                    server: server_name(cmd),
                    disk: name.to_string(),
                    found: sources
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

fn server_name(cmd: &Cmdline) -> String {
    cmd.server
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The send options an unattended run uses: everything from the command line.
/// Unattended means no one can confirm a certificate, so token and
/// fingerprint are both required (no trust on first use).
pub fn send_options(
    cmd: &Cmdline,
    sources: &[PathBuf],
) -> Result<crate::send::SendOptions, UnattendedError> {
    let server = server_name(cmd);
    let missing = |key| UnattendedError::Missing {
        server: server.clone(),
        key,
    };
    let token = cmd.token.as_ref().ok_or_else(|| missing("token"))?;
    let fingerprint = cmd
        .fingerprint
        .as_ref()
        .ok_or_else(|| missing("fingerprint"))?;
    let mut opts = crate::send::SendOptions::new(
        &server,
        token.as_str(),
        &fingerprint.to_string(),
        select_disks(cmd, sources)?,
    );
    opts.name = cmd.name.clone();
    opts.guest.layout = cmd.layout;
    opts.guest.xen_type = cmd.xen_type;
    opts.guest.bridge = cmd.bridge.clone();
    opts.guest.memory_mib = cmd.memory_mib;
    opts.guest.vcpus = cmd.vcpus;
    opts.limit = cmd.limit;
    opts.progress = Some(std::sync::Arc::new(|ev: &crate::send::ProgressEvent| {
        log::info!("{}", crate::send::progress::text(ev));
    }));
    Ok(opts)
}

/// The copy to the receiver (network already up); logs the summary.
pub fn migrate(cmd: &Cmdline, sources: &[PathBuf]) -> Result<(), UnattendedError> {
    let opts = send_options(cmd, sources)?;
    if opts.sources.is_empty() {
        return Err(UnattendedError::Copy {
            server: opts.server.clone(),
            source: crate::send::SendError::NoDisks,
        });
    }
    let report = crate::send::run(&opts).map_err(|source| UnattendedError::Copy {
        server: opts.server.clone(),
        source,
    })?;
    log::info!("{}", report.summary());
    Ok(())
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
        assert_eq!((p.post, p.fail), (EndAction::Poweroff, EndAction::Shell));
        let p = plan(&cmd("p2xen.server=dom0 p2xen.post=reboot p2xen.fail=wait")).unwrap();
        assert_eq!((p.post, p.fail), (EndAction::Reboot, EndAction::Wait));
    }

    #[test]
    fn send_options_need_token_and_fingerprint_and_known_disks() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let disks = [PathBuf::from("/dev/vda"), PathBuf::from("/dev/sdb")];
        let c = Cmdline::parse("p2xen.server=dom0:7007 p2xen.token=t").unwrap();
        assert_eq!(
            send_options(&c, &disks)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            "migration to dom0:7007 impossible: p2xen.fingerprint= is missing; boot with the line `p2xen receive` printed"
        );
        let line = format!(
            "p2xen.server=dom0:7007 p2xen.token=t p2xen.fingerprint={fp} p2xen.disks=sdb p2xen.name=web1 p2xen.layout=partitions p2xen.memory=2G"
        );
        let o = send_options(&Cmdline::parse(&line).unwrap(), &disks).unwrap();
        assert_eq!(o.sources, [PathBuf::from("/dev/sdb")]);
        assert_eq!((o.server.as_str(), o.token.as_str()), ("dom0:7007", "t"));
        assert_eq!(o.fingerprint, fp);
        assert_eq!(o.name.as_deref(), Some("web1"));
        assert_eq!(o.guest.layout, crate::wire::machine::Layout::Partitions);
        assert_eq!(o.guest.memory_mib, Some(2048));
        let bad = Cmdline::parse(&format!("{line} p2xen.disks=nvme0n1")).unwrap();
        assert_eq!(
            send_options(&bad, &disks)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            "migration to dom0:7007: p2xen.disks= names nvme0n1, which is not a source disk here (found: /dev/vda, /dev/sdb)"
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
