//! Files that name the source's disks and would mislead the guest: the LVM
//! devices file (RHEL 9 lists the PVs by their old device IDs, so LVM in
//! the guest ignores its own disks), LVM's and blkid's caches; and
//! `/.autorelabel` for SELinux guests whose files were changed, so files
//! written from dom0 without the guest's labels get them at first boot.

use super::FixupKind;
use super::change::{Change, Planned};
use super::guestfs::{GuestFs, GuestFsError};

pub const DEVICE_CACHES: [&str; 6] = [
    "/etc/lvm/devices/system.devices",
    "/etc/lvm/cache/.cache",
    "/etc/blkid.tab",
    "/etc/blkid.tab.old",
    "/etc/blkid/blkid.tab",
    "/etc/blkid/blkid.tab.old",
];
const AUTORELABEL: &str = "/.autorelabel";

pub fn plan(gfs: &GuestFs) -> Vec<Planned> {
    DEVICE_CACHES
        .iter()
        .filter(|p| gfs.exists(p) && !gfs.is_dir(p))
        .map(|p| {
            Planned::new(
                FixupKind::DeviceCaches,
                Change::Remove {
                    path: (*p).to_string(),
                },
                "names the source's disks; rebuilt by the guest from its Xen disks",
            )
        })
        .collect()
}

/// The guest's SELinux mode from `/etc/selinux/config`, when it labels files.
fn selinux_mode(config: &str) -> Option<&str> {
    config.lines().find_map(|l| {
        let v = l.trim().strip_prefix("SELINUX=")?;
        let v = v.split('#').next().unwrap_or("").trim().trim_matches('"');
        matches!(v, "enforcing" | "permissive").then_some(v)
    })
}

/// `/.autorelabel` when `planned` changes files of a guest with SELinux on.
pub fn plan_relabel(gfs: &GuestFs, planned: &[Planned]) -> Result<Option<Planned>, GuestFsError> {
    if planned.is_empty() || gfs.exists(AUTORELABEL) {
        return Ok(None);
    }
    let Some(config) = gfs.read("/etc/selinux/config")? else {
        return Ok(None);
    };
    Ok(selinux_mode(&config).map(|mode| {
        Planned::new(
            FixupKind::Selinux,
            Change::Write {
                path: AUTORELABEL.to_string(),
                old: None,
                new: String::new(),
            },
            format!(
                "SELinux {mode}: files changed from dom0 are relabelled at the guest's first boot"
            ),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::guest::guestfs::test_guest as guest;

    #[test]
    fn caches_naming_the_old_disks_are_removed() {
        let (t, gfs) = guest(&[
            (
                "/etc/lvm/devices/system.devices",
                "VERSION=1.1.2\nIDTYPE=sys_wwid IDNAME=naa.5000c500a1b2c3d4 DEVNAME=/dev/sda2 PVID=abc\n",
            ),
            (
                "/etc/blkid.tab",
                "<device DEVNO=\"0x0801\">/dev/sda1</device>\n",
            ),
            ("/etc/lvm/lvm.conf", "devices { }\n"),
        ]);
        std::fs::create_dir_all(t.path().join("etc/lvm/cache/.cache")).unwrap();
        let planned = plan(&gfs);
        let paths: Vec<&str> = planned
            .iter()
            .map(|p| match &p.change {
                Change::Remove { path } => path.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, ["/etc/lvm/devices/system.devices", "/etc/blkid.tab"]);
        let d = planned[0].describe(&gfs);
        assert!(d.diff.contains("-IDTYPE=sys_wwid"), "{}", d.diff);
        for p in &planned {
            p.apply(&gfs).unwrap();
        }
        assert!(!t.path().join("etc/lvm/devices/system.devices").exists());
        assert!(!t.path().join("etc/blkid.tab").exists());
        assert!(t.path().join("etc/lvm/lvm.conf").exists());
    }

    #[test]
    fn autorelabel_only_for_selinux_guests_with_changes() {
        let change = plan(&guest(&[("/etc/blkid.tab", "x\n")]).1);
        for (config, want) in [
            ("SELINUX=enforcing\nSELINUXTYPE=targeted\n", true),
            ("# c\nSELINUX=permissive # for now\n", true),
            ("SELINUX=disabled\n", false),
            ("SELINUXTYPE=targeted\n", false),
        ] {
            let (t, gfs) = guest(&[("/etc/selinux/config", config)]);
            let p = plan_relabel(&gfs, &change).unwrap();
            assert_eq!(p.is_some(), want, "{config}");
            if let Some(p) = p {
                p.apply(&gfs).unwrap();
                assert_eq!(std::fs::read(t.path().join(".autorelabel")).unwrap(), b"");
                assert!(plan_relabel(&gfs, &change).unwrap().is_none());
            }
            assert!(plan_relabel(&gfs, &[]).unwrap().is_none());
        }
        let (_t, gfs) = guest(&[]);
        assert!(plan_relabel(&gfs, &change).unwrap().is_none());
    }
}
