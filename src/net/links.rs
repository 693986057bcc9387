//! Virtual links the command line asks for, made before any address is
//! configured: `ifname=` renames by MAC, `bond=` bonds with their slaves,
//! `vlan=` tagged links on their parent. The order matters: a bond's
//! slaves may be renamed ones, and a VLAN may sit on a bond.

use crate::bootparams::NetDevices;

use super::NetError;
use super::netlink::{Link, Rtnl};

fn find<'a>(links: &'a [Link], name: &str, why: &str) -> Result<&'a Link, NetError> {
    links
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| NetError::NoSuchInterface {
            name: name.to_string(),
            from: why.to_string(),
            available: super::names(links),
        })
}

/// Makes every link `devices` describes. A link that exists already with
/// the right name is left as it is, so running twice does no harm.
pub fn build(rtnl: &mut Rtnl, devices: &NetDevices) -> Result<(), NetError> {
    for want in &devices.ifnames {
        let links = rtnl.links()?;
        let link = links
            .iter()
            .find(|l| l.mac == want.mac)
            .ok_or_else(|| NetError::NoSuchMac {
                mac: super::netlink::format_mac(&want.mac),
                name: want.name.clone(),
                available: super::names(&links),
            })?;
        if link.name != want.name {
            log::info!("network: ip link set {} name {}", link.name, want.name);
            rtnl.rename(link.index, &link.name, &want.name)?;
        }
    }
    for bond in &devices.bonds {
        let links = rtnl.links()?;
        let made = links
            .iter()
            .find(|l| l.name == bond.name)
            .is_some_and(|b| links.iter().any(|l| l.controller == Some(b.index)));
        if made {
            // A retry: the kernel refuses a mode change once slaves are in.
            continue;
        }
        log::info!(
            "network: ip link add {} type bond mode {} miimon {}",
            bond.name,
            bond.mode.number(),
            bond.miimon
        );
        rtnl.add_bond(&bond.name, bond.mode.number(), bond.miimon, bond.mtu)?;
        let links = rtnl.links()?;
        let b = find(&links, &bond.name, "bond=")?;
        for slave in &bond.slaves {
            let s = find(&links, slave, "bond=")?;
            if s.controller == Some(b.index) {
                continue;
            }
            log::info!("network: ip link set {slave} master {}", bond.name);
            rtnl.enslave(s.index, slave, b.index, &bond.name)?;
        }
        if let Some(p) = &bond.primary {
            let p = find(&links, p, "bond= primary")?;
            rtnl.set_bond_primary(b.index, &bond.name, p.index)?;
        }
        rtnl.set_up(b.index, &bond.name)?;
    }
    for vlan in &devices.vlans {
        let links = rtnl.links()?;
        let parent = find(&links, &vlan.parent, "vlan=")?;
        if !parent.up {
            rtnl.set_up(parent.index, &parent.name)?;
        }
        log::info!(
            "network: ip link add link {} name {} type vlan id {}",
            vlan.parent,
            vlan.name,
            vlan.id
        );
        rtnl.add_vlan(&vlan.name, parent.index, vlan.id)?;
    }
    Ok(())
}

/// Links that carry others (bond slaves, VLAN parents) get no address of
/// their own unless an `ip=` names them.
pub fn carriers(devices: &NetDevices) -> Vec<String> {
    devices
        .bonds
        .iter()
        .flat_map(|b| b.slaves.iter().cloned())
        .chain(devices.vlans.iter().map(|v| v.parent.clone()))
        .collect()
}
