//! udev's persistent network rules pin eth0 to the old NIC's MAC; with them,
//! the Xen NIC would become eth1 and the guest's network config would not
//! apply. The generated rules files are removed (the generator itself stays,
//! and pins the Xen NIC as eth0 on first boot).

use super::FixupKind;
use super::change::{Change, Planned};
use super::guestfs::{GuestFs, GuestFsError, gjoin};

pub fn plan(gfs: &GuestFs) -> Result<Vec<Planned>, GuestFsError> {
    let mut out = Vec::new();
    for dir in ["/etc/udev/rules.d"] {
        for name in gfs.list(dir)? {
            if is_persistent_net_rules(&name) {
                out.push(Planned::new(
                    FixupKind::NetRules,
                    Change::Remove {
                        path: gjoin(dir, &name),
                    },
                    "pins interface names to the old NIC's MAC address",
                ));
            }
        }
    }
    Ok(out)
}

fn is_persistent_net_rules(name: &str) -> bool {
    name.ends_with(".rules") && name.contains("persistent-net") && !name.contains("generator")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::is_persistent_net_rules("70-persistent-net.rules"));
        assert!(super::is_persistent_net_rules("z25_persistent-net.rules"));
        assert!(!super::is_persistent_net_rules(
            "75-persistent-net-generator.rules"
        ));
        assert!(!super::is_persistent_net_rules("70-persistent-cd.rules"));
    }
}
