//! Debian's ifupdown `/etc/network/interfaces` (interfaces(5)): `auto`
//! and `allow-*` lines, `iface NAME` stanzas with option lines.

use super::{Bond, NetMap, Rewrite, rename_tokens};
use crate::guest::change::map_lines;

/// What disabled lines start with.
const DISABLED_PREFIX: &str = "# p2xen: ";

/// Words that start a stanza (and so end the one before).
fn is_stanza(word: &str) -> bool {
    matches!(
        word,
        "iface" | "mapping" | "auto" | "source" | "source-directory" | "rename"
    ) || word.starts_with("allow-")
        || word.starts_with("no-")
}

/// Options whose values name interfaces.
fn names_interfaces(key: &str) -> bool {
    matches!(
        key,
        "bond-slaves"
            | "bond_slaves"
            | "slaves"
            | "bond-master"
            | "bond_master"
            | "bond-primary"
            | "bond_primary"
            | "bridge-ports"
            | "bridge_ports"
            | "vlan-raw-device"
            | "vlan_raw_device"
    )
}

fn is_bond_option(key: &str) -> bool {
    key.starts_with("bond-") || key.starts_with("bond_") || key == "slaves"
}

/// Bond membership: `bond-slaves` in the bond's stanza, `bond-master` in
/// a slave's.
pub fn bonds(text: &str) -> Vec<Bond> {
    let mut out = Vec::new();
    let mut iface: Option<&str> = None;
    for line in text.lines() {
        // What an earlier conversion disabled still says which NICs were
        // bonded: a second run gives the same vifs.
        let line = line.strip_prefix(DISABLED_PREFIX).unwrap_or(line);
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.starts_with('#') {
            continue;
        }
        if is_stanza(first) {
            iface = (first == "iface").then(|| words.next()).flatten();
            continue;
        }
        let Some(name) = iface else { continue };
        match first {
            "bond-slaves" | "bond_slaves" | "slaves" => {
                let slaves: Vec<String> =
                    words.filter(|w| *w != "none").map(str::to_string).collect();
                if !slaves.is_empty() {
                    out.push(Bond {
                        name: name.to_string(),
                        slaves,
                    });
                }
            }
            "bond-master" | "bond_master" => {
                if let Some(b) = words.next() {
                    out.push(Bond {
                        name: b.to_string(),
                        slaves: vec![name.to_string()],
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// `line` with the text after its first word renamed.
fn rename_after_first(line: &str, first: &str, map: &NetMap) -> String {
    let at = line.find(first).unwrap_or(0) + first.len();
    let (head, rest) = line.split_at(at);
    format!("{head}{}", rename_tokens(rest, map))
}

pub fn rewrite(text: &str, map: &NetMap) -> Rewrite {
    // The stanza being read: its interface is a collapsed bond's slave
    // (disabled) or the collapsed bond itself.
    let mut disabled = false;
    let mut collapsed = false;
    let new = map_lines(text, |line| {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            return line.to_string();
        };
        if first.starts_with('#') {
            return line.to_string();
        }
        if is_stanza(first) {
            disabled = false;
            collapsed = false;
            if first == "auto" || first.starts_with("allow-") {
                let names: Vec<&str> = words.collect();
                let kept: Vec<String> = names
                    .iter()
                    .filter(|n| !map.is_absorbed(n))
                    .map(|n| map.rename(n).unwrap_or_else(|| (*n).to_string()))
                    .collect();
                if kept.is_empty() && !names.is_empty() {
                    return format!("{DISABLED_PREFIX}{line}");
                }
                if kept.len() == names.len() {
                    return rename_after_first(line, first, map);
                }
                return format!("{first} {}", kept.join(" "));
            }
            if first == "iface" {
                let name = words.next().unwrap_or("");
                if map.is_absorbed(name) {
                    disabled = true;
                    return format!("{DISABLED_PREFIX}{line}");
                }
                collapsed = map.collapsed(name).is_some();
                return rename_after_first(line, first, map);
            }
            return line.to_string();
        }
        if disabled || (collapsed && is_bond_option(first)) {
            return format!("{DISABLED_PREFIX}{line}");
        }
        if names_interfaces(first) {
            return rename_after_first(line, first, map);
        }
        line.to_string()
    });
    Rewrite::edited(text, new)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bond, edit, nics};
    use super::*;

    const BONDED: &str = "\
# The loopback network interface
auto lo
iface lo inet loopback

auto eno1
iface eno1 inet manual
    bond-master bond0

auto eno2
iface eno2 inet manual
    bond-master bond0

auto bond0
iface bond0 inet static
    address 203.0.113.20/24
    gateway 203.0.113.1
    bond-slaves eno1 eno2
    bond-mode 802.3ad
    bond-miimon 100
    dns-nameservers 203.0.113.53

auto bond0.30
iface bond0.30 inet static
    address 10.30.0.20/24
    vlan-raw-device bond0
";

    fn two_nics() -> Vec<(String, String)> {
        nics(&[("eno1", "52:54:00:12:34:56"), ("eno2", "52:54:00:12:34:57")])
    }

    #[test]
    fn bond_over_two_nics_becomes_eth0() {
        assert_eq!(
            bonds(BONDED),
            [
                bond("bond0", &["eno1"]),
                bond("bond0", &["eno2"]),
                bond("bond0", &["eno1", "eno2"])
            ]
        );
        let map = NetMap::new(&two_nics(), &[bond("bond0", &["eno1", "eno2"])], false);
        let Rewrite::Edit { text, rename_to } = rewrite(BONDED, &map) else {
            panic!("not edited");
        };
        assert_eq!(rename_to, None);
        assert_eq!(
            text,
            "\
# The loopback network interface
auto lo
iface lo inet loopback

# p2xen: auto eno1
# p2xen: iface eno1 inet manual
# p2xen:     bond-master bond0

# p2xen: auto eno2
# p2xen: iface eno2 inet manual
# p2xen:     bond-master bond0

auto eth0
iface eth0 inet static
    address 203.0.113.20/24
    gateway 203.0.113.1
# p2xen:     bond-slaves eno1 eno2
# p2xen:     bond-mode 802.3ad
# p2xen:     bond-miimon 100
    dns-nameservers 203.0.113.53

auto eth0.30
iface eth0.30 inet static
    address 10.30.0.20/24
    vlan-raw-device eth0
"
        );
    }

    #[test]
    fn vif_per_nic_keeps_the_bond_over_renamed_nics() {
        let map = NetMap::new(&two_nics(), &[bond("bond0", &["eno1", "eno2"])], true);
        let Rewrite::Edit { text, .. } = rewrite(BONDED, &map) else {
            panic!("not edited");
        };
        assert_eq!(text, BONDED.replace("eno1", "eth0").replace("eno2", "eth1"));
        let plain = "auto lo eno1\niface eno1 inet dhcp\n";
        let map = NetMap::new(&two_nics(), &[], false);
        assert_eq!(
            rewrite(plain, &map),
            edit("auto lo eth0\niface eth0 inet dhcp\n".to_string())
        );
        assert_eq!(
            rewrite("auto lo\niface lo inet loopback\n", &map),
            Rewrite::Unchanged
        );
    }
}
