//! RHEL's `/etc/sysconfig/network-scripts/ifcfg-*` and SUSE's
//! `/etc/sysconfig/network/ifcfg-*`: shell assignments, one file per
//! interface, named after it.

use super::{Bond, NetMap, Rewrite, rename_tokens};
use crate::guest::change::map_lines;

/// Suffixes the network scripts, NetworkManager's ifcfg-rh and wicked skip.
const IGNORED: &[&str] = &[
    "~", ".bak", ".old", ".orig", ".rpmnew", ".rpmorig", ".rpmsave", ".rej",
];

pub fn is_config_name(name: &str) -> bool {
    name.starts_with("ifcfg-") && name != "ifcfg-lo" && !IGNORED.iter().any(|s| name.ends_with(s))
}

/// Per-interface route and rule files beside the ifcfg files (RHEL's
/// `route-DEV`, SUSE's `ifroute-DEV`), named after the interface too.
const ROUTE_PREFIXES: &[&str] = &["route-", "route6-", "rule-", "rule6-", "ifroute-"];

fn route_parts(name: &str) -> Option<(&str, &str)> {
    let prefix = ROUTE_PREFIXES.iter().find(|p| name.starts_with(*p))?;
    Some((prefix, &name[prefix.len()..]))
}

pub fn is_route_name(name: &str) -> bool {
    route_parts(name).is_some() && !IGNORED.iter().any(|s| name.ends_with(s))
}

/// A route or rule file: `dev NAME` inside and the file's name follow the
/// interface; a collapsed bond's slave's are disabled with its ifcfg.
pub fn rewrite_routes(file_name: &str, text: &str, map: &NetMap) -> Rewrite {
    let Some((prefix, dev)) = route_parts(file_name) else {
        return Rewrite::Unchanged;
    };
    if map.is_absorbed(dev) {
        return Rewrite::Disable;
    }
    let new = rename_tokens(text, map);
    let rename_to = map.rename(dev).map(|n| format!("{prefix}{n}"));
    if new == text && rename_to.is_none() {
        return Rewrite::Unchanged;
    }
    Rewrite::Edit {
        text: new,
        rename_to,
    }
}

/// `KEY=value` with the value unquoted; `None` for comments and others.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.trim_start().split_once('=')?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v);
    Some((k, v))
}

fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(assignment)
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .next_back()
}

/// The interface a file configures: `DEVICE=`, else the file's name
/// (SUSE names it only so).
fn device<'a>(file_name: &'a str, text: &'a str) -> &'a str {
    value(text, "DEVICE")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| file_name.strip_prefix("ifcfg-").unwrap_or(file_name))
}

fn yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("yes"))
}

/// Bond membership: RHEL's `MASTER=` + `SLAVE=yes` in the slave's file,
/// SUSE's `BONDING_SLAVEn=` in the bond's.
pub fn bonds(file_name: &str, text: &str) -> Vec<Bond> {
    let dev = device(file_name, text);
    let mut out = Vec::new();
    if let Some(master) = value(text, "MASTER") {
        if yes(value(text, "SLAVE")) || value(text, "SLAVE").is_none() {
            out.push(Bond {
                name: master.to_string(),
                slaves: vec![dev.to_string()],
            });
        }
    }
    if yes(value(text, "BONDING_MASTER")) {
        let slaves: Vec<String> = text
            .lines()
            .filter_map(assignment)
            .filter(|(k, v)| is_suse_slave_key(k) && !v.is_empty())
            .map(|(_, v)| v.to_string())
            .collect();
        if !slaves.is_empty() {
            out.push(Bond {
                name: dev.to_string(),
                slaves,
            });
        }
    }
    out
}

/// `BONDING_SLAVE`, `BONDING_SLAVE0`, `BONDING_SLAVE1`, ...
fn is_suse_slave_key(k: &str) -> bool {
    k.strip_prefix("BONDING_SLAVE")
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// The interface and its `HWADDR=`, for [`NetMap::learn`].
pub fn name_and_mac(file_name: &str, text: &str) -> Option<(String, String)> {
    let mac = value(text, "HWADDR")?;
    Some((device(file_name, text).to_string(), mac.to_string()))
}

/// Keys whose values name interfaces (VLAN parents, bond slaves, bridge
/// ports); `MASTER` names a bond, renamed only if it became one vif.
const NAME_KEYS: &[&str] = &["DEVICE", "PHYSDEV", "ETHERDEVICE", "BRIDGE_PORTS", "MASTER"];

/// Settings only a bond has: commented out when the bond becomes one vif.
fn is_bond_only(key: &str) -> bool {
    matches!(
        key,
        "BONDING_OPTS" | "BONDING_MASTER" | "BONDING_MODULE_OPTS"
    ) || is_suse_slave_key(key)
}

/// Renames a device, an alias of one (`eno1:1`) kept as an alias.
fn rename_dev(dev: &str, map: &NetMap) -> Option<String> {
    match dev.split_once(':') {
        Some((base, alias)) => Some(format!("{}:{alias}", map.rename(base)?)),
        None => map.rename(dev),
    }
}

pub fn rewrite(file_name: &str, text: &str, map: &NetMap) -> Rewrite {
    let dev = device(file_name, text);
    let base = dev.split_once(':').map_or(dev, |(b, _)| b);
    let master_collapsed = value(text, "MASTER").is_some_and(|m| map.collapsed(m).is_some());
    if map.is_absorbed(base) || master_collapsed {
        return Rewrite::Disable;
    }
    let bond_vif = map.collapsed(base);
    let new_dev = rename_dev(dev, map);
    if new_dev.is_none() {
        if let Some(mac) = value(text, "HWADDR") {
            if map.by_mac(mac).is_none() {
                return Rewrite::Unknown(format!(
                    "HWADDR={mac} is no NIC of the source with a vif"
                ));
            }
        }
    }
    let new = map_lines(text, |line| {
        let Some((k, v)) = assignment(line) else {
            return line.to_string();
        };
        if bond_vif.is_some() {
            if is_bond_only(k) {
                return format!("# p2xen: {line}");
            }
            if k == "TYPE" && v.eq_ignore_ascii_case("bond") {
                return line.replacen(v, "Ethernet", 1);
            }
        }
        let eq = line.find('=').unwrap_or(0);
        let (head, rest) = line.split_at(eq);
        if NAME_KEYS.contains(&k) || is_suse_slave_key(k) {
            return format!("{head}{}", rename_tokens(rest, map));
        }
        if k == "NAME" && v == dev {
            if let Some(n) = &new_dev {
                return format!("{head}{}", rest.replacen(v, n, 1));
            }
        }
        line.to_string()
    });
    let file_dev = file_name.strip_prefix("ifcfg-").unwrap_or(file_name);
    let rename_to = rename_dev(file_dev, map).map(|n| format!("ifcfg-{n}"));
    if new == text && rename_to.is_none() {
        return Rewrite::Unchanged;
    }
    Rewrite::Edit {
        text: new,
        rename_to,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bond, nics, two_port_map};
    use super::*;

    const RHEL8_STATIC: &str = "\
TYPE=Ethernet
PROXY_METHOD=none
BROWSER_ONLY=no
BOOTPROTO=none
DEFROUTE=yes
IPV4_FAILURE_FATAL=no
NAME=enp3s0f1
UUID=8d4f2c43-8a0e-4c1b-9a55-0c3a4e6f7b21
DEVICE=enp3s0f1
ONBOOT=yes
IPADDR=192.0.2.10
PREFIX=24
GATEWAY=192.0.2.1
DNS1=192.0.2.53
HWADDR=3C:EC:EF:12:34:57
";

    #[test]
    fn rhel8_static_renamed_to_eth1() {
        let map = two_port_map();
        assert_eq!(
            rewrite("ifcfg-enp3s0f1", RHEL8_STATIC, &map),
            Rewrite::Edit {
                text: RHEL8_STATIC
                    .replace("NAME=enp3s0f1", "NAME=eth1")
                    .replace("DEVICE=enp3s0f1", "DEVICE=eth1"),
                rename_to: Some("ifcfg-eth1".to_string()),
            }
        );
        assert_eq!(
            name_and_mac("ifcfg-enp3s0f1", RHEL8_STATIC),
            Some(("enp3s0f1".to_string(), "3C:EC:EF:12:34:57".to_string()))
        );
        // A NIC that was not migrated is named, not guessed at.
        let other = RHEL8_STATIC.replace("3C:EC:EF:12:34:57", "3C:EC:EF:99:99:99");
        let map = NetMap::new(&nics(&[("eth0", "3c:ec:ef:12:34:56")]), &[], false);
        assert_eq!(
            rewrite("ifcfg-enp3s0f1", &other, &map),
            Rewrite::Unknown("HWADDR=3C:EC:EF:99:99:99 is no NIC of the source with a vif".into())
        );
    }

    const BOND0: &str = "\
DEVICE=bond0
NAME=bond0
TYPE=Bond
BONDING_MASTER=yes
BONDING_OPTS=\"mode=active-backup miimon=100\"
BOOTPROTO=none
IPADDR=198.51.100.5
PREFIX=24
ONBOOT=yes
";
    const ENO1: &str =
        "DEVICE=eno1\nNAME=bond0-port1\nTYPE=Ethernet\nMASTER=bond0\nSLAVE=yes\nONBOOT=yes\n";
    const VLAN: &str =
        "DEVICE=bond0.20\nVLAN=yes\nPHYSDEV=bond0\nIPADDR=10.20.0.5\nPREFIX=24\nONBOOT=yes\n";

    #[test]
    fn rhel_bond_becomes_one_vif_and_its_vlan_follows() {
        assert_eq!(bonds("ifcfg-eno1", ENO1), [bond("bond0", &["eno1"])]);
        let map = NetMap::new(
            &nics(&[("eno1", "52:54:00:00:00:01"), ("eno2", "52:54:00:00:00:02")]),
            &[bond("bond0", &["eno1", "eno2"])],
            false,
        );
        assert_eq!(
            rewrite("ifcfg-bond0", BOND0, &map),
            Rewrite::Edit {
                text: "\
DEVICE=eth0
NAME=eth0
TYPE=Ethernet
# p2xen: BONDING_MASTER=yes
# p2xen: BONDING_OPTS=\"mode=active-backup miimon=100\"
BOOTPROTO=none
IPADDR=198.51.100.5
PREFIX=24
ONBOOT=yes
"
                .to_string(),
                rename_to: Some("ifcfg-eth0".to_string()),
            }
        );
        assert_eq!(rewrite("ifcfg-eno1", ENO1, &map), Rewrite::Disable);
        assert_eq!(
            rewrite("ifcfg-bond0.20", VLAN, &map),
            Rewrite::Edit {
                text: "DEVICE=eth0.20\nVLAN=yes\nPHYSDEV=eth0\nIPADDR=10.20.0.5\nPREFIX=24\nONBOOT=yes\n"
                    .to_string(),
                rename_to: Some("ifcfg-eth0.20".to_string()),
            }
        );
        // One vif per NIC: the bond stays, its slaves follow their NICs.
        let map = NetMap::new(
            &nics(&[("eno1", "52:54:00:00:00:01"), ("eno2", "52:54:00:00:00:02")]),
            &[bond("bond0", &["eno1", "eno2"])],
            true,
        );
        assert_eq!(rewrite("ifcfg-bond0", BOND0, &map), Rewrite::Unchanged);
        assert_eq!(
            rewrite("ifcfg-eno1", ENO1, &map),
            Rewrite::Edit {
                text: ENO1.replace("DEVICE=eno1", "DEVICE=eth0"),
                rename_to: Some("ifcfg-eth0".to_string()),
            }
        );
    }

    #[test]
    fn route_files_follow_their_interface() {
        let map = two_port_map();
        let routes = "10.8.0.0/16 via 192.0.2.254 dev enp3s0f1\n";
        assert_eq!(
            rewrite_routes("route-enp3s0f1", routes, &map),
            Rewrite::Edit {
                text: "10.8.0.0/16 via 192.0.2.254 dev eth1\n".to_string(),
                rename_to: Some("route-eth1".to_string()),
            }
        );
        assert_eq!(
            rewrite_routes("ifroute-enp3s0f9", "default 192.0.2.1 - -\n", &map),
            Rewrite::Unchanged
        );
        assert!(is_route_name("route6-eth0") && !is_route_name("route-eth0.bak"));
    }

    #[test]
    fn suse_bond_lists_its_slaves() {
        let suse = "BOOTPROTO='static'\nSTARTMODE='auto'\nBONDING_MASTER='yes'\nBONDING_SLAVE0='eth0'\nBONDING_SLAVE1='eth1'\nBONDING_MODULE_OPTS='mode=active-backup miimon=100'\nIPADDR='192.0.2.7/24'\n";
        assert_eq!(
            bonds("ifcfg-bond0", suse),
            [bond("bond0", &["eth0", "eth1"])]
        );
        let map = NetMap::new(
            &nics(&[("eth0", "52:54:00:00:00:01"), ("eth1", "52:54:00:00:00:02")]),
            &bonds("ifcfg-bond0", suse),
            false,
        );
        assert_eq!(
            rewrite("ifcfg-bond0", suse, &map),
            Rewrite::Edit {
                text: "BOOTPROTO='static'\nSTARTMODE='auto'\n# p2xen: BONDING_MASTER='yes'\n# p2xen: BONDING_SLAVE0='eth0'\n# p2xen: BONDING_SLAVE1='eth1'\n# p2xen: BONDING_MODULE_OPTS='mode=active-backup miimon=100'\nIPADDR='192.0.2.7/24'\n".to_string(),
                rename_to: Some("ifcfg-eth0".to_string()),
            }
        );
        assert!(is_config_name("ifcfg-eth0") && !is_config_name("ifcfg-lo"));
        assert!(!is_config_name("ifcfg-eth0.rpmsave") && !is_config_name("route-eth0"));
    }
}
