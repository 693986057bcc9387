//! A login on the Xen console (`hvc0`; `ttyS0` for HVM, where xl's
//! `serial = "pty"` is the console): a getty line in `/etc/inittab`
//! (sysvinit) or `serial-getty@TTY.service` enabled (systemd), and the tty
//! in `/etc/securetty` where the guest restricts root logins by tty.

use super::FixupKind;
use super::change::{Change, Planned, append_line, edit};
use super::guestfs::{GuestFs, GuestFsError};

const SYSTEMD_UNIT_DIRS: [&str; 3] = [
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
];

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

pub fn plan(
    gfs: &GuestFs,
    systemd: bool,
    tty: &str,
) -> Result<(Vec<Planned>, Vec<String>), GuestFsError> {
    let wants_link = format!("/etc/systemd/system/getty.target.wants/serial-getty@{tty}.service");
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    if systemd {
        if !gfs.exists(&wants_link) {
            let template = SYSTEMD_UNIT_DIRS
                .iter()
                .map(|d| format!("{d}/serial-getty@.service"))
                .find(|p| gfs.exists(p));
            match template {
                Some(t) => out.push(Planned::new(
                    FixupKind::Console,
                    Change::Symlink {
                        path: wants_link.clone(),
                        target: t,
                    },
                    format!(
                        "login prompt on the Xen console (systemctl enable serial-getty@{tty})"
                    ),
                )),
                None => warnings.push(format!(
                    "console: systemd guest without serial-getty@.service: no login on {tty}; \
                     in the guest run: systemctl enable serial-getty@{tty}.service"
                )),
            }
        }
    } else if let Some(old) = gfs.read("/etc/inittab")? {
        if !has_getty(&old, tty) {
            let line = inittab_line(&old, tty);
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
        if !old.lines().any(|l| l.trim() == tty) {
            out.extend(edit(
                FixupKind::Console,
                "/etc/securetty",
                &old,
                append_line(&old, tty),
                "allow root login on the Xen console",
            ));
        }
    }
    Ok((out, warnings))
}

fn has_getty(inittab: &str, tty: &str) -> bool {
    inittab
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains(tty))
}

/// Copies the form of the guest's own tty1 getty line (getty path, speed,
/// runlevels) so the new line looks like what the distribution would write.
fn inittab_line(inittab: &str, tty: &str) -> String {
    // inittab ids are at most 4 characters.
    let id: String = tty.trim_start_matches("tty").chars().take(4).collect();
    for l in inittab.lines() {
        let t = l.trim();
        if t.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = t.splitn(4, ':').collect();
        if let [_, levels, "respawn", cmd] = f.as_slice() {
            if cmd.contains("getty") && cmd.contains("tty1") {
                return format!("{id}:{levels}:respawn:{}", cmd.replace("tty1", tty));
            }
        }
    }
    format!("{id}:2345:respawn:/sbin/getty 38400 {tty}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn inittab_line_follows_tty1() {
        assert_eq!(
            super::inittab_line(
                "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n",
                "hvc0"
            ),
            "hvc0:2345:respawn:/sbin/getty 38400 hvc0"
        );
        assert_eq!(
            super::inittab_line("1:2345:respawn:/sbin/mingetty tty1\n", "ttyS0"),
            "S0:2345:respawn:/sbin/mingetty ttyS0"
        );
        assert!(super::has_getty(
            "co:2345:respawn:/sbin/getty hvc0 9600 vt100\n",
            "hvc0"
        ));
    }
}
