//! A login on the Xen console `hvc0`: a getty line in `/etc/inittab`
//! (sysvinit) or `serial-getty@hvc0.service` enabled (systemd), and `hvc0`
//! in `/etc/securetty` where the guest restricts root logins by tty.

use super::FixupKind;
use super::change::{Change, Planned, append_line, edit};
use super::guestfs::{GuestFs, GuestFsError};

const SYSTEMD_UNIT_DIRS: [&str; 3] = [
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
];
const WANTS_LINK: &str = "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service";

/// Whether the guest boots with systemd: /sbin/init points at systemd, or
/// there is no inittab and systemd is installed.
pub fn uses_systemd(gfs: &GuestFs, hint: Option<&str>) -> bool {
    if let Some(h) = hint {
        return h == "systemd";
    }
    if let Some(t) = gfs.read_link("/sbin/init") {
        return t.to_string_lossy().contains("systemd");
    }
    !gfs.exists("/etc/inittab") && gfs.exists("/lib/systemd/systemd")
}

pub fn plan(gfs: &GuestFs, systemd: bool) -> Result<(Vec<Planned>, Vec<String>), GuestFsError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    if systemd {
        if !gfs.exists(WANTS_LINK) {
            let template = SYSTEMD_UNIT_DIRS
                .iter()
                .map(|d| format!("{d}/serial-getty@.service"))
                .find(|p| gfs.exists(p));
            match template {
                Some(t) => out.push(Planned::new(
                    FixupKind::Console,
                    Change::Symlink {
                        path: WANTS_LINK.to_string(),
                        target: t,
                    },
                    "login prompt on the Xen console (systemctl enable serial-getty@hvc0)",
                )),
                None => warnings.push(
                    "console: systemd guest without serial-getty@.service: no login on hvc0; \
                     in the guest run: systemctl enable serial-getty@hvc0.service"
                        .to_string(),
                ),
            }
        }
    } else if let Some(old) = gfs.read("/etc/inittab")? {
        if !has_hvc0_getty(&old) {
            let line = hvc0_inittab_line(&old);
            out.extend(edit(
                FixupKind::Console,
                "/etc/inittab",
                &old,
                append_line(&old, &line),
                "login prompt on the Xen console",
            ));
        }
    }
    if let Some(old) = gfs.read("/etc/securetty")? {
        if !old.lines().any(|l| l.trim() == "hvc0") {
            out.extend(edit(
                FixupKind::Console,
                "/etc/securetty",
                &old,
                append_line(&old, "hvc0"),
                "allow root login on the Xen console",
            ));
        }
    }
    Ok((out, warnings))
}

fn has_hvc0_getty(inittab: &str) -> bool {
    inittab
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains("hvc0"))
}

/// Copies the form of the guest's own tty1 getty line (getty path, speed,
/// runlevels) so the new line looks like what the distribution would write.
fn hvc0_inittab_line(inittab: &str) -> String {
    for l in inittab.lines() {
        let t = l.trim();
        if t.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = t.splitn(4, ':').collect();
        if let [_, levels, "respawn", cmd] = f.as_slice() {
            if cmd.contains("getty") && cmd.contains("tty1") {
                return format!("hvc0:{levels}:respawn:{}", cmd.replace("tty1", "hvc0"));
            }
        }
    }
    "hvc0:2345:respawn:/sbin/getty 38400 hvc0".to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn inittab_line_follows_tty1() {
        assert_eq!(
            super::hvc0_inittab_line("id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n"),
            "hvc0:2345:respawn:/sbin/getty 38400 hvc0"
        );
        assert_eq!(
            super::hvc0_inittab_line("1:2345:respawn:/sbin/mingetty tty1\n"),
            "hvc0:2345:respawn:/sbin/mingetty hvc0"
        );
        assert!(super::has_hvc0_getty(
            "co:2345:respawn:/sbin/getty hvc0 9600 vt100\n"
        ));
    }
}
