//! dracut's network-device parameters (`man dracut.cmdline`), read by the
//! live init so a PXE entry written for a dracut initrd works unchanged:
//! `vlan=`, `bond=`, `ifname=`, `rd.route=`, `nameserver=`.
//!
//! Each may be given several times; every value is kept, in order.

use std::net::IpAddr;

use super::values::interface_name;

/// `vlan=<vlanname>:<phydevice>`: an 802.1Q link on `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

/// What `vlan=` accepts.
pub const VLAN_ACCEPTED: &str =
    "<name>:<parent>, the name carrying the VLAN id: vlan0005, vlan5, eth0.0005, eth0.5";

/// The VLAN id is in the name, in one of dracut's four naming schemes.
pub fn vlan(value: &str) -> Result<Vlan, String> {
    let (name, parent) = value
        .split_once(':')
        .ok_or_else(|| "needs <name>:<parent>".to_string())?;
    let name = interface_name(name)?;
    let parent = interface_name(parent)?;
    let digits = name
        .strip_prefix("vlan")
        .or_else(|| name.rsplit_once('.').map(|(_, id)| id))
        .ok_or_else(|| format!("{name:?} carries no VLAN id (vlan5 or {parent}.5)"))?;
    let id = digits
        .parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| format!("VLAN id {digits:?} in {name:?} is not 1 to 4094"))?;
    Ok(Vlan { name, parent, id })
}

/// The `vlan=` value that [`vlan`] reads back as this link.
impl std::fmt::Display for Vlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.parent)
    }
}

/// The bonding modes of drivers/net/bonding, by name and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    BalanceRr,
    ActiveBackup,
    BalanceXor,
    Broadcast,
    Lacp,
    BalanceTlb,
    BalanceAlb,
}

impl BondMode {
    const NAMES: [(&'static str, BondMode); 7] = [
        ("balance-rr", BondMode::BalanceRr),
        ("active-backup", BondMode::ActiveBackup),
        ("balance-xor", BondMode::BalanceXor),
        ("broadcast", BondMode::Broadcast),
        ("802.3ad", BondMode::Lacp),
        ("balance-tlb", BondMode::BalanceTlb),
        ("balance-alb", BondMode::BalanceAlb),
    ];

    /// Every mode, in the kernel's numbering.
    pub const ALL: [BondMode; 7] = [
        BondMode::BalanceRr,
        BondMode::ActiveBackup,
        BondMode::BalanceXor,
        BondMode::Broadcast,
        BondMode::Lacp,
        BondMode::BalanceTlb,
        BondMode::BalanceAlb,
    ];

    /// The name `bond=...:mode=` takes.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("balance-rr", |(n, _)| n)
    }

    /// The number the kernel's IFLA_BOND_MODE takes.
    pub fn number(self) -> u8 {
        Self::NAMES
            .iter()
            .position(|(_, m)| *m == self)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(0)
    }

    fn parse(v: &str) -> Result<BondMode, String> {
        Self::NAMES
            .iter()
            .enumerate()
            .find(|(i, (name, _))| *name == v || i.to_string() == v)
            .map(|(_, (_, m))| *m)
            .ok_or_else(|| {
                format!(
                    "bond mode {v:?} is not one of {}",
                    Self::NAMES.map(|(n, _)| n).join(", ")
                )
            })
    }
}

/// `bond=<name>[:<slaves>[:<options>[:<mtu>]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub name: String,
    pub slaves: Vec<String>,
    pub mode: BondMode,
    /// Link monitoring interval (ms); dracut's default of 100 when not given,
    /// since a bond without monitoring never fails over.
    pub miimon: u32,
    /// `primary=`: the preferred slave for active-backup.
    pub primary: Option<String>,
    pub mtu: Option<u32>,
}

/// The `bond=` value that [`bond`] reads back as this bond.
impl std::fmt::Display for Bond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:mode={},miimon={}",
            self.name,
            self.slaves.join(","),
            self.mode.as_str(),
            self.miimon
        )?;
        if let Some(p) = &self.primary {
            write!(f, ",primary={p}")?;
        }
        if let Some(m) = self.mtu {
            write!(f, ":{m}")?;
        }
        Ok(())
    }
}

pub const BOND_ACCEPTED: &str = "<name>[:<slave>,<slave>...[:mode=<mode>,miimon=<ms>,primary=<slave>[:<mtu>]]], \
     e.g. bond0:eth0,eth1:mode=active-backup";

pub fn bond(value: &str) -> Result<Bond, String> {
    let mut parts = value.split(':');
    let name = interface_name(parts.next().unwrap_or(""))?;
    let slaves = match parts.next() {
        None | Some("") => vec!["eth0".to_string(), "eth1".to_string()],
        Some(s) => s.split(',').map(interface_name).collect::<Result<_, _>>()?,
    };
    let mut bond = Bond {
        name,
        slaves,
        mode: BondMode::BalanceRr,
        miimon: 100,
        primary: None,
        mtu: None,
    };
    // dracut separates options with commas (its own syntax); spaces are
    // not possible on a kernel command line without quotes.
    for opt in parts
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|o| !o.is_empty())
    {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| format!("bond option {opt:?} is not key=value"))?;
        match k {
            "mode" => bond.mode = BondMode::parse(v)?,
            "miimon" => {
                bond.miimon = v
                    .parse()
                    .map_err(|_| format!("miimon={v:?} is not a number of milliseconds"))?
            }
            "primary" => {
                let p = interface_name(v)?;
                if !bond.slaves.contains(&p) {
                    return Err(format!("primary={p} is not one of the slaves"));
                }
                bond.primary = Some(p);
            }
            other => {
                return Err(format!(
                    "bond option {other:?} is not supported (mode, miimon, primary are)"
                ));
            }
        }
    }
    if let Some(m) = parts.next().filter(|m| !m.is_empty()) {
        bond.mtu = Some(
            m.parse()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| format!("MTU {m:?} is not 68 to 65535"))?,
        );
    }
    if parts.next().is_some() {
        return Err("too many fields".into());
    }
    Ok(bond)
}

/// `ifname=<name>:<MAC>`: the interface with that MAC gets that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName {
    pub name: String,
    pub mac: [u8; 6],
}

pub const IFNAME_ACCEPTED: &str = "<name>:<MAC>, e.g. lan0:52:54:00:12:34:56";

pub fn ifname(value: &str) -> Result<IfName, String> {
    let (name, mac) = value
        .split_once(':')
        .ok_or_else(|| "needs <name>:<MAC>".to_string())?;
    let name = interface_name(name)?;
    let mut out = [0u8; 6];
    let mut octets = mac.split(':');
    for o in &mut out {
        *o = octets
            .next()
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("{mac:?} is not a MAC address like 52:54:00:12:34:56"))?;
    }
    if octets.next().is_some() {
        return Err(format!("{mac:?} has more than 6 octets"));
    }
    Ok(IfName { name, mac: out })
}

/// `rd.route=<net>/<prefix>:<gateway>[:<interface>]`; IPv6 in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub gateway: IpAddr,
    pub device: Option<String>,
}

pub const ROUTE_ACCEPTED: &str =
    "<net>/<prefix>:<gateway>[:<interface>], IPv6 in brackets: [2001:db8::]/32:[fe80::1]:eth0";

/// Takes one address (bracketed when IPv6) off the front of `s`.
fn take_addr(s: &str) -> Result<(&str, &str), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: '[' without ']'"))?;
        Ok((inner, after))
    } else {
        Ok(s.find([':', '/']).map_or((s, ""), |i| s.split_at(i)))
    }
}

fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address"))
}

pub fn route(value: &str) -> Result<Route, String> {
    let (dest, rest) = take_addr(value)?;
    let destination = ip(dest)?;
    let rest = rest
        .strip_prefix('/')
        .ok_or_else(|| "needs <net>/<prefix>".to_string())?;
    let (prefix, rest) = rest
        .split_once(':')
        .ok_or_else(|| "needs :<gateway> after the prefix".to_string())?;
    let max = if destination.is_ipv4() { 32 } else { 128 };
    let prefix_len = prefix
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix length {prefix:?} is not 0 to {max}"))?;
    let (gw, rest) = take_addr(rest)?;
    let gateway = ip(gw)?;
    if gateway.is_ipv4() != destination.is_ipv4() {
        return Err(format!(
            "gateway {gateway} and network {destination} differ in family"
        ));
    }
    let device = match rest {
        "" => None,
        r => Some(interface_name(
            r.strip_prefix(':')
                .ok_or_else(|| format!("{r:?} after the gateway"))?,
        )?),
    };
    Ok(Route {
        destination,
        prefix_len,
        gateway,
        device,
    })
}

pub const NAMESERVER_ACCEPTED: &str = "an IPv4 or IPv6 address: 10.0.0.53, 2001:db8::53";

/// `nameserver=<IP>`; dracut also writes IPv6 ones in brackets.
pub fn nameserver(value: &str) -> Result<IpAddr, String> {
    ip(value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vlan_names_carry_the_id() {
        for (v, name, id) in [
            ("vlan0005:eth0", "vlan0005", 5),
            ("vlan5:eth0", "vlan5", 5),
            ("eth0.0020:eth0", "eth0.0020", 20),
            ("bond0.4094:bond0", "bond0.4094", 4094),
        ] {
            let got = vlan(v).unwrap();
            assert_eq!((got.name.as_str(), got.id), (name, id), "{v}");
        }
        assert_eq!(vlan("eth0.5:eth0").unwrap().parent, "eth0");
        assert!(vlan("eth0.5").unwrap_err().contains("<name>:<parent>"));
        assert!(vlan("lan:eth0").unwrap_err().contains("carries no VLAN id"));
        assert!(vlan("vlan4095:eth0").unwrap_err().contains("not 1 to 4094"));
        assert!(vlan("eth0.0:eth0").unwrap_err().contains("not 1 to 4094"));
    }

    #[test]
    fn bonds() {
        let b = bond("bond0:eth0,eth1:mode=active-backup,miimon=50,primary=eth1:9000").unwrap();
        assert_eq!(b.slaves, ["eth0", "eth1"]);
        assert_eq!(b.mode, BondMode::ActiveBackup);
        assert_eq!(b.mode.number(), 1);
        assert_eq!(b.miimon, 50);
        assert_eq!(b.primary.as_deref(), Some("eth1"));
        assert_eq!(b.mtu, Some(9000));
        let d = bond("bond1").unwrap();
        assert_eq!(
            (d.slaves.len(), d.mode, d.miimon),
            (2, BondMode::BalanceRr, 100)
        );
        assert_eq!(bond("b:e0,e1:mode=4").unwrap().mode, BondMode::Lacp);
        assert_eq!(BondMode::Lacp.number(), 4);
        assert!(
            bond("b:e0:mode=fast")
                .unwrap_err()
                .contains("not one of balance-rr")
        );
        assert!(
            bond("b:e0:lacp_rate=1")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            bond("b:e0,e1:primary=e2")
                .unwrap_err()
                .contains("not one of the slaves")
        );
        assert!(bond("b:e0::10").unwrap_err().contains("MTU"));
        for m in BondMode::ALL {
            assert_eq!(BondMode::parse(m.as_str()), Ok(m));
        }
    }

    #[test]
    fn values_written_back_parse_to_the_same_links() {
        for v in [
            "bond0:eth0,eth1:mode=active-backup,miimon=50,primary=eth1:9000",
            "bond1:e0:mode=802.3ad",
            "bond2",
        ] {
            let b = bond(v).unwrap();
            assert_eq!(bond(&b.to_string()).unwrap(), b, "{v} -> {b}");
        }
        let v = vlan("bond0.20:bond0").unwrap();
        assert_eq!(v.to_string(), "bond0.20:bond0");
        assert_eq!(vlan(&v.to_string()).unwrap(), v);
    }

    #[test]
    fn ifnames() {
        let i = ifname("lan0:52:54:00:AB:cd:0f").unwrap();
        assert_eq!(i.name, "lan0");
        assert_eq!(i.mac, [0x52, 0x54, 0, 0xab, 0xcd, 0x0f]);
        assert!(
            ifname("lan0:52:54:00:ab:cd")
                .unwrap_err()
                .contains("not a MAC")
        );
        assert!(
            ifname("lan0:52:54:00:ab:cd:0f:11")
                .unwrap_err()
                .contains("more than 6")
        );
        assert!(ifname("lan0").is_err());
    }

    #[test]
    fn routes() {
        let r = route("192.168.100.0/24:10.0.0.1:eth0").unwrap();
        assert_eq!(r.destination, ip("192.168.100.0").unwrap());
        assert_eq!(r.prefix_len, 24);
        assert_eq!(r.gateway, ip("10.0.0.1").unwrap());
        assert_eq!(r.device.as_deref(), Some("eth0"));
        let r6 = route("[2001:db8:9::]/48:[2001:db8:7::1]").unwrap();
        assert_eq!(r6.prefix_len, 48);
        assert!(r6.device.is_none() && r6.gateway.is_ipv6());
        assert!(
            route("10.0.0.0/33:10.0.0.1")
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            route("10.0.0.0:10.0.0.1")
                .unwrap_err()
                .contains("<net>/<prefix>")
        );
        assert!(
            route("10.0.0.0/8:[fe80::1]")
                .unwrap_err()
                .contains("differ in family")
        );
    }

    #[test]
    fn nameservers() {
        assert_eq!(nameserver("10.0.0.53").unwrap(), ip("10.0.0.53").unwrap());
        assert_eq!(
            nameserver("[2001:db8::53]").unwrap(),
            ip("2001:db8::53").unwrap()
        );
        assert!(
            nameserver("dns.lan")
                .unwrap_err()
                .contains("not an IP address")
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(v in "[0-9a-z.:,=/\\[\\]-]{0,40}") {
            let _ = (vlan(&v), bond(&v), ifname(&v), route(&v), nameserver(&v));
        }
    }
}
