//! Module aliases for hardware that is gone under Xen: `alias ethN <driver>`
//! would load the old NIC driver instead of xen-netfront's eth0, and
//! `scsi_hostadapter` names the old disk controller. Both are commented out.

use super::FixupKind;
use super::change::{Planned, edit, map_lines};
use super::guestfs::{GuestFs, GuestFsError, gjoin};

const NOTE: &str = "# p2xen: hardware not present under Xen:";

pub fn plan(gfs: &GuestFs) -> Result<Vec<Planned>, GuestFsError> {
    let mut files = vec![
        "/etc/modules.conf".to_string(),
        "/etc/modprobe.conf".to_string(),
    ];
    for name in gfs.list("/etc/modprobe.d")? {
        files.push(gjoin("/etc/modprobe.d", &name));
    }
    let mut out = Vec::new();
    for path in files {
        if let Some(old) = gfs.read(&path)? {
            let new = map_lines(&old, comment_alias);
            out.extend(edit(
                FixupKind::Modules,
                &path,
                &old,
                new,
                "NIC and SCSI host adapter aliases commented out",
            ));
        }
    }
    Ok(out)
}

fn comment_alias(line: &str) -> String {
    let mut w = line.split_whitespace();
    if w.next() != Some("alias") {
        return line.to_string();
    }
    let Some(name) = w.next() else {
        return line.to_string();
    };
    let is_nic = name
        .strip_prefix("eth")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let is_scsi = name
        .strip_prefix("scsi_hostadapter")
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
    if (is_nic || is_scsi) && w.next().is_some() {
        format!("{NOTE} {line}")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert_eq!(
            comment_alias("alias eth0 8139too"),
            "# p2xen: hardware not present under Xen: alias eth0 8139too"
        );
        assert_eq!(
            comment_alias("alias scsi_hostadapter1 aha1740"),
            "# p2xen: hardware not present under Xen: alias scsi_hostadapter1 aha1740"
        );
        assert_eq!(
            comment_alias("alias char-major-10-135 rtc"),
            "alias char-major-10-135 rtc"
        );
        assert_eq!(comment_alias("alias ethx foo"), "alias ethx foo");
        assert_eq!(comment_alias("options eth0 x"), "options eth0 x");
    }
}
