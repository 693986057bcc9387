//! Validation of what the user types: the kernel command line's own
//! parsers (`bootparams::values`, docs/cmdline.md), with the field named
//! and the accepted forms added for the message line.

use crate::bootparams as values;
use std::net::{Ipv4Addr, Ipv6Addr};

pub fn name(s: &str) -> Result<String, String> {
    values::guest_name(s.trim()).map_err(|e| format!("name: {e}"))
}

/// MiB, or with a unit: 512M, 2G, 1T.
pub fn memory_mib(s: &str) -> Result<u64, String> {
    values::memory_mib(s.trim()).map_err(|e| format!("memory: {e} (MiB, or 512M, 2G)"))
}

pub fn vcpus(s: &str) -> Result<u32, String> {
    values::vcpus(s.trim()).map_err(|e| format!("vCPUs: {e}"))
}

/// HOST, HOST:PORT or [IPV6]:PORT, normalised with the default port.
pub fn server(s: &str) -> Result<String, String> {
    values::Server::parse(s.trim())
        .map(|v| v.to_string())
        .map_err(|e| format!("receiver: {e} (HOST[:PORT], e.g. 192.0.2.1)"))
}

pub fn token(s: &str) -> Result<String, String> {
    values::Token::parse(s)
        .map(|t| t.as_str().to_string())
        .map_err(|e| format!("token: {e} (`p2xen receive` prints it)"))
}

/// Empty (ask the receiver), "sha256:HEX" or AB:CD:... pairs.
pub fn fingerprint(s: &str) -> Result<Option<String>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    values::Fingerprint::parse(t)
        .map(|f| Some(f.to_string()))
        .map_err(|e| format!("fingerprint: {e} (sha256:HEX, or empty: ask the receiver)"))
}

/// Empty (the receiver's default) or a Linux interface name.
pub fn bridge(s: &str) -> Result<Option<String>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    values::interface_name(t)
        .map(Some)
        .map_err(|e| format!("bridge: {e}"))
}

/// "192.0.2.10/24" → (address, prefix length).
pub fn cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("address: \"{s}\" is not ADDRESS/PREFIX (e.g. 192.0.2.10/24)");
    let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
    let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p == 0 || p > 32 {
        return Err(bad());
    }
    Ok((a, p))
}

/// Empty or one IPv4 address.
pub fn gateway(s: &str) -> Result<Option<Ipv4Addr>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<Ipv4Addr>()
        .map(Some)
        .map_err(|_| format!("gateway: \"{t}\" is not an IPv4 address"))
}

/// Comma- or space-separated IPv4 addresses (at most two, as `ip=` has).
pub fn dns(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let v: Vec<Ipv4Addr> = s
        .split([',', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<Ipv4Addr>()
                .map_err(|_| format!("DNS: \"{w}\" is not an IPv4 address"))
        })
        .collect::<Result<_, _>>()?;
    if v.len() > 2 {
        return Err("DNS: at most two servers".into());
    }
    Ok(v)
}

/// Empty (untagged) or a VLAN id, 1 to 4094.
pub fn vlan_id(s: &str) -> Result<Option<u16>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .map(Some)
        .ok_or_else(|| format!("VLAN id: \"{t}\" is not 1 to 4094 (empty: untagged)"))
}

/// The tagged link on `parent`, named `PARENT.ID` and made by `vlan=`'s own
/// parser, so it is the link `vlan=PARENT.ID:PARENT` makes.
pub fn vlan(parent: &str, id: u16) -> Result<values::Vlan, String> {
    values::netdev::vlan(&format!("{parent}.{id}:{parent}")).map_err(|e| format!("VLAN id: {e}"))
}

/// NIC names separated by commas or spaces, each one of `nics`, at least one.
pub fn slaves(s: &str, nics: &[&str]) -> Result<Vec<String>, String> {
    let mut v: Vec<String> = Vec::new();
    for w in s.split([',', ' ']).filter(|w| !w.is_empty()) {
        if !nics.contains(&w) {
            return Err(format!(
                "bond NICs: \"{w}\" is not a NIC here ({})",
                nics.join(", ")
            ));
        }
        if v.iter().any(|x| x == w) {
            return Err(format!("bond NICs: {w} is listed twice"));
        }
        v.push(w.to_string());
    }
    if v.is_empty() {
        return Err(format!(
            "bond NICs: name at least one of {}",
            nics.join(", ")
        ));
    }
    Ok(v)
}

/// The bond `bond=NAME:SLAVES:mode=MODE` makes, by `bond=`'s own parser.
pub fn bond(name: &str, slaves: &[String], mode: values::BondMode) -> Result<values::Bond, String> {
    values::netdev::bond(&format!(
        "{name}:{}:mode={}",
        slaves.join(","),
        mode.as_str()
    ))
    .map_err(|e| format!("bond: {e}"))
}

/// "2001:db8::10/64" → (address, prefix length).
pub fn cidr6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let bad = || format!("IPv6 address: \"{s}\" is not ADDRESS/PREFIX (e.g. 2001:db8::10/64)");
    let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
    let a: Ipv6Addr = a.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p == 0 || p > 128 || a.is_unspecified() || a.is_multicast() {
        return Err(bad());
    }
    Ok((a, p))
}

/// Empty (routers' advertisements give the route) or one IPv6 address.
pub fn gateway6(s: &str) -> Result<Option<Ipv6Addr>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.trim_matches(['[', ']'])
        .parse::<Ipv6Addr>()
        .map(Some)
        .map_err(|_| format!("IPv6 gateway: \"{t}\" is not an IPv6 address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        assert_eq!(name("web-1.example"), Ok("web-1.example".into()));
        assert_eq!(
            name("../x"),
            Err("name: \"../x\" contains '/', '\"' or control characters".into())
        );
        assert_eq!(
            memory_mib("abc"),
            Err("memory: \"abc\" does not start with a number (MiB, or 512M, 2G)".into())
        );
        assert_eq!(memory_mib("2G"), Ok(2048));
        assert!(memory_mib("18446744073709551615T").is_err());
        assert_eq!(server("10.0.0.1"), Ok("10.0.0.1:7460".into()));
        assert_eq!(server("[::1]:9"), Ok("[::1]:9".into()));
        assert!(server("a b").is_err());
        assert!(token("").is_err());
        assert_eq!(fingerprint(""), Ok(None));
        let hex = "AB".repeat(32);
        assert_eq!(
            fingerprint(&format!("sha256:{hex}")),
            Ok(Some(format!("sha256:{}", "ab".repeat(32))))
        );
        assert!(fingerprint("sha256:abc").is_err());
        assert_eq!(vcpus("4"), Ok(4));
        assert!(vcpus("0").is_err());
        assert_eq!(bridge(""), Ok(None));
        assert!(bridge("br/0").is_err());
        assert_eq!(cidr("192.0.2.1/24"), Ok(([192, 0, 2, 1].into(), 24)));
        assert!(cidr("192.0.2.1").is_err());
        assert_eq!(dns("1.1.1.1, 8.8.8.8").map(|v| v.len()), Ok(2));
        assert!(dns("1.1.1.1 2.2.2.2 3.3.3.3").is_err());
        assert_eq!(vlan_id(""), Ok(None));
        assert_eq!(vlan_id(" 20 "), Ok(Some(20)));
        assert_eq!(
            vlan_id("4095"),
            Err("VLAN id: \"4095\" is not 1 to 4094 (empty: untagged)".into())
        );
        let v = vlan("bond0", 20).unwrap();
        assert_eq!(
            (v.name.as_str(), v.parent.as_str(), v.id),
            ("bond0.20", "bond0", 20)
        );
        assert!(
            vlan("enp129s0f1np1", 4000)
                .unwrap_err()
                .starts_with("VLAN id: ")
        );
        let nics = ["eth0", "eth1"];
        assert_eq!(
            slaves("eth0, eth1", &nics),
            Ok(vec!["eth0".into(), "eth1".into()])
        );
        assert_eq!(
            slaves("eth0,eth2", &nics),
            Err("bond NICs: \"eth2\" is not a NIC here (eth0, eth1)".into())
        );
        assert!(slaves("eth0,eth0", &nics).unwrap_err().contains("twice"));
        assert!(slaves("", &nics).unwrap_err().contains("at least one"));
        assert_eq!(
            cidr6("2001:db8::10/64"),
            Ok(("2001:db8::10".parse().unwrap(), 64))
        );
        assert!(
            cidr6("2001:db8::10")
                .unwrap_err()
                .starts_with("IPv6 address: ")
        );
        assert!(cidr6("2001:db8::10/129").is_err());
        assert_eq!(gateway6(""), Ok(None));
        assert!(
            gateway6("10.0.0.1")
                .unwrap_err()
                .starts_with("IPv6 gateway: ")
        );
    }
}
