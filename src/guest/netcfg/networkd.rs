//! systemd-networkd's `.network`, `.netdev` and `.link` files
//! (`/etc/systemd/network/`). `MACAddress=` matches need nothing (the vif
//! keeps the MAC); `[Match] Name=`/`OriginalName=`, a `.netdev`'s
//! `[NetDev] Name=` (a VLAN on a renamed NIC) and `[Network]` `VLAN=`/
//! `Bond=`/`MACVLAN=` are renamed. A `.link`'s `[Link] Name=` is the name
//! it gives by MAC, which still applies, so it stays.

use super::ini::{map_values, values};
use super::{NetMap, Rewrite, rename_tokens};

pub fn rewrite(text: &str, map: &NetMap) -> Rewrite {
    if let Some(glob) = values(text, "Match", "Name")
        .into_iter()
        .find(|v| v.contains(['*', '?', '[']))
    {
        return Rewrite::Unknown(format!(
            "matches interfaces by the pattern {glob}, which may not match the vifs"
        ));
    }
    if let Some(b) = values(text, "NetDev", "Name")
        .into_iter()
        .find(|n| map.collapsed(n).is_some())
    {
        return Rewrite::Unknown(format!(
            "defines {b}, which became one vif from another file's bond"
        ));
    }
    let new = map_values(text, |section, key, value| match (section, key) {
        ("Match", "Name" | "OriginalName")
        | ("NetDev", "Name")
        | ("Network", "VLAN" | "Bond" | "MACVLAN" | "IPVLAN") => Some(rename_tokens(value, map)),
        _ => None,
    });
    Rewrite::edited(text, new)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bonded_map, edit, nics};
    use super::*;

    #[test]
    fn network_and_netdev_follow_the_rename() {
        let map = NetMap::new(
            &nics(&[("eno1", "52:54:00:12:34:56"), ("eno2", "52:54:00:12:34:57")]),
            &[],
            false,
        );
        let network = "\
[Match]
Name=eno2

[Network]
Address=192.0.2.30/24
Gateway=192.0.2.1
DNS=192.0.2.53
VLAN=eno2.50
";
        assert_eq!(
            rewrite(network, &map),
            edit(
                network
                    .replace("Name=eno2", "Name=eth1")
                    .replace("VLAN=eno2.50", "VLAN=eth1.50")
            )
        );
        let netdev = "[NetDev]\nName=eno2.50\nKind=vlan\n\n[VLAN]\nId=50\n";
        assert_eq!(
            rewrite(netdev, &map),
            edit("[NetDev]\nName=eth1.50\nKind=vlan\n\n[VLAN]\nId=50\n".to_string())
        );
        assert_eq!(
            rewrite("[NetDev]\nName=bond0\nKind=bond\n", &bonded_map()),
            Rewrite::Unknown("defines bond0, which became one vif from another file's bond".into())
        );
        let link = "[Match]\nMACAddress=52:54:00:12:34:56\n\n[Link]\nName=lan0\n";
        assert_eq!(rewrite(link, &map), Rewrite::Unchanged);
        assert_eq!(
            rewrite("[Match]\nName=en*\n\n[Network]\nDHCP=yes\n", &map),
            Rewrite::Unknown(
                "matches interfaces by the pattern en*, which may not match the vifs".to_string()
            )
        );
    }
}
