//! NetworkManager keyfiles (`/etc/NetworkManager/system-connections/`,
//! nm-settings-keyfile(5)). `mac-address=` needs nothing (the vif keeps
//! the MAC); `interface-name=`, a bond port's `master=`/`controller=` and
//! a VLAN's `parent=` are renamed, and `id=` when it was the interface's
//! name. The file keeps its name: NetworkManager goes by the contents.

use super::ini::{map_values, values};
use super::{NetMap, Rewrite, rename_tokens};

pub fn name_and_mac(text: &str) -> Option<(String, String)> {
    let name = values(text, "connection", "interface-name").pop()?;
    let mac = values(text, "ethernet", "mac-address").pop()?;
    Some((name.to_string(), mac.to_string()))
}

pub fn rewrite(text: &str, map: &NetMap) -> Rewrite {
    if values(text, "connection", "type").is_empty() {
        return Rewrite::Unknown("no [connection] type=".to_string());
    }
    if values(text, "connection", "master")
        .into_iter()
        .chain(values(text, "connection", "controller"))
        .any(|m| map.collapsed(m).is_some())
    {
        // A port of a bond that became one vif: NetworkManager would
        // otherwise try to enslave the vif to a bond that no longer exists.
        return Rewrite::Disable;
    }
    let iface = values(text, "connection", "interface-name").pop();
    if values(text, "connection", "type").contains(&"bond") {
        if let Some(b) = iface.filter(|i| map.collapsed(i).is_some()) {
            return Rewrite::Unknown(format!(
                "defines bond {b}, which became one vif from another file's bond"
            ));
        }
    }
    let new = map_values(text, |section, key, value| match (section, key) {
        ("connection", "interface-name" | "master" | "controller") | ("vlan", "parent") => {
            Some(rename_tokens(value, map))
        }
        ("connection", "id") if Some(value) == iface => map.rename(value),
        _ => None,
    });
    Rewrite::edited(text, new)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bonded_map, edit, nics};
    use super::*;

    const KEYFILE: &str = "\
[connection]
id=enp3s0f1
uuid=2b0d4c8e-5f0a-4e43-9d3c-7a1b2c3d4e5f
type=ethernet
interface-name=enp3s0f1

[ethernet]
mac-address=3C:EC:EF:12:34:57

[ipv4]
address1=192.0.2.10/24,192.0.2.1
dns=192.0.2.53;
method=manual

[ipv6]
method=disabled
";

    #[test]
    fn keyfile_interface_renamed_mac_kept() {
        let mut map = NetMap::new(
            &nics(&[("eth0", "3c:ec:ef:12:34:56"), ("eth1", "3c:ec:ef:12:34:57")]),
            &[],
            false,
        );
        let (name, mac) = name_and_mac(KEYFILE).unwrap();
        map.learn(&name, &mac);
        assert_eq!(
            rewrite(KEYFILE, &map),
            edit(
                KEYFILE
                    .replace("id=enp3s0f1", "id=eth1")
                    .replace("interface-name=enp3s0f1", "interface-name=eth1")
            )
        );
        let vlan = "[connection]\nid=vlan20\ntype=vlan\ninterface-name=enp3s0f1.20\n\n[vlan]\nid=20\nparent=enp3s0f1\n";
        assert_eq!(
            rewrite(vlan, &map),
            edit("[connection]\nid=vlan20\ntype=vlan\ninterface-name=eth1.20\n\n[vlan]\nid=20\nparent=eth1\n"
                    .to_string())
        );
        assert!(matches!(rewrite("junk\n", &map), Rewrite::Unknown(_)));
        let bonded = bonded_map();
        assert_eq!(
            rewrite(
                "[connection]\nid=bond0\ntype=bond\ninterface-name=bond0\n",
                &bonded
            ),
            Rewrite::Unknown(
                "defines bond bond0, which became one vif from another file's bond".into()
            )
        );
        let port = "[connection]\nid=p1\ntype=ethernet\ninterface-name=eno1\nmaster=bond0\nslave-type=bond\n";
        assert_eq!(rewrite(port, &bonded), Rewrite::Disable);
    }
}
