//! Hardware monitoring that has no hardware under Xen (SMART, sensors,
//! machine-check logging, IPMI, vendor agents) would fail or spam the logs:
//! disabled in the init system, not uninstalled, so it can come back if the
//! guest moves to hardware again.

use super::FixupKind;
use super::change::{Change, Planned};
use super::guestfs::{GuestFs, GuestFsError, gjoin};

/// Service names (systemd unit stem or sysvinit script name).
const SERVICES: &[&str] = &[
    "smartd",
    "smartmontools",
    "lm-sensors",
    "lm_sensors",
    "sensord",
    "fancontrol",
    "mcelog",
    "ipmievd",
    "openipmi",
    "ipmi",
    "hddtemp",
    "hp-health",
    "hpasm",
    "hpasmd",
    "hp-snmp-agents",
    "cpqarrayd",
    "dataeng",
    "dsm_om_connsvc",
    "dsm_sa_ipmi",
    "instsvcdrv",
    "mpt-statusd",
    "megaraid-statusd",
    "megaclisas-statusd",
    "3ware-statusd",
];

fn is_monitor(stem: &str) -> bool {
    SERVICES.contains(&stem)
}

pub fn plan(gfs: &GuestFs) -> Result<Vec<Planned>, GuestFsError> {
    let mut out = Vec::new();
    // systemd: enabled means a symlink in some *.wants directory.
    for dir in gfs.list("/etc/systemd/system")? {
        if !dir.ends_with(".wants") {
            continue;
        }
        let gdir = gjoin("/etc/systemd/system", &dir);
        for name in gfs.list(&gdir)? {
            let stem = name.strip_suffix(".service").unwrap_or("");
            if is_monitor(stem) {
                out.push(Planned::new(
                    FixupKind::Monitoring,
                    Change::Remove {
                        path: gjoin(&gdir, &name),
                    },
                    format!("{stem}: no such hardware under Xen (systemctl disable {stem})"),
                ));
            }
        }
    }
    // sysvinit: S links renamed to K, as `update-rc.d NAME disable` does.
    for base in ["/etc", "/etc/rc.d"] {
        for level in ["0", "1", "2", "3", "4", "5", "6", "S"] {
            let dir = format!("{base}/rc{level}.d");
            for name in gfs.list(&dir)? {
                let Some(rest) = name.strip_prefix('S') else {
                    continue;
                };
                let (num, stem) = rest.split_at(
                    rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len(),
                );
                if !is_monitor(stem) {
                    continue;
                }
                let kill = num
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 99)
                    .map(|n| format!("K{:02}{stem}", 100 - n))
                    .unwrap_or_else(|| format!("K{num}{stem}"));
                out.push(Planned::new(
                    FixupKind::Monitoring,
                    Change::Rename {
                        from: gjoin(&dir, &name),
                        to: gjoin(&dir, &kill),
                    },
                    format!("{stem}: no such hardware under Xen (update-rc.d {stem} disable)"),
                ));
            }
        }
    }
    Ok(out)
}
