//! netplan YAML (`/etc/netplan/*.yaml`). No YAML crate is a dependency
//! and a parse-and-dump would lose the administrator's comments and
//! layout, so the rewrite is textual: interface names outside comments
//! are renamed wherever they stand (keys under `ethernets:`/`bonds:`/
//! `vlans:`, `link:`, `interfaces:` lists, `match: name:`). Entries that
//! match by `macaddress:` (with `set-name:`) need nothing: the vif keeps
//! the MAC.

use super::{NetMap, Rewrite, rename_tokens};
use crate::guest::change::map_lines;

/// Where the comment of a YAML line starts (a `#` at the start or after a
/// blank; quoted `#` is rare in netplan and would only stop the rename).
fn comment_at(line: &str) -> Option<usize> {
    if line.trim_start().starts_with('#') {
        return Some(0);
    }
    line.find(" #")
}

pub fn rewrite(text: &str, map: &NetMap) -> Rewrite {
    if !text.lines().any(|l| l.trim_end() == "network:") {
        return Rewrite::Unknown("no top-level network: key".to_string());
    }
    // The bond itself would be renamed, not turned into a plain NIC.
    if let Some(b) = map.collapsed_in(text) {
        return Rewrite::Unknown(format!(
            "names {b}, which became one vif from another file's bond"
        ));
    }
    let new = map_lines(text, |line| {
        let (body, comment) = line.split_at(comment_at(line).unwrap_or(line.len()));
        format!("{}{comment}", rename_tokens(body, map))
    });
    if let Some(glob) = text
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("name:"))
        .map(str::trim)
        .find(|v| v.contains(['*', '?']))
    {
        return Rewrite::Unknown(format!(
            "matches interfaces by the pattern {glob}, which may not match the vifs"
        ));
    }
    Rewrite::edited(text, new)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bonded_map, edit, two_port_map};
    use super::*;

    const NETPLAN: &str = "\
# Written by the installer
network:
  version: 2
  renderer: networkd
  ethernets:
    uplink:
      match:
        macaddress: \"3c:ec:ef:12:34:57\"
      set-name: uplink
      addresses: [192.0.2.10/24]
      routes:
        - to: default
          via: 192.0.2.1
    enp3s0f0:   # enp3s0f0 is the backup link
      dhcp4: true
  vlans:
    enp3s0f0.40:
      id: 40
      link: enp3s0f0
      addresses: [10.40.0.10/24]
";

    #[test]
    fn names_renamed_set_name_by_mac_kept() {
        let map = two_port_map();
        assert_eq!(
            rewrite(NETPLAN, &map),
            edit(
                NETPLAN
                    .replace("    enp3s0f0:   #", "    eth0:   #")
                    .replace("enp3s0f0.40:", "eth0.40:")
                    .replace("link: enp3s0f0", "link: eth0")
            )
        );
        let globbed = "network:\n  ethernets:\n    all:\n      match:\n        name: en*\n      dhcp4: true\n";
        assert_eq!(
            rewrite(globbed, &map),
            Rewrite::Unknown(
                "matches interfaces by the pattern en*, which may not match the vifs".to_string()
            )
        );
        assert!(matches!(rewrite("foo: 1\n", &map), Rewrite::Unknown(_)));
        let bonded = bonded_map();
        assert_eq!(
            rewrite(
                "network:\n  bonds:\n    bond0:\n      interfaces: [eno1, eno2]\n",
                &bonded
            ),
            Rewrite::Unknown("names bond0, which became one vif from another file's bond".into())
        );
    }
}
