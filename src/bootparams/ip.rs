//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client>:<server>:<gw>:<netmask>:<host>:<dev>:<autoconf>:<dns0>:<dns1>:<ntp0>`
//! or just `ip=<autoconf>`, plus dracut's extensions (`man dracut.cmdline`):
//! `ip=<interface>:<autoconf>[:<mtu>[:<mac>]]`, IPv6 addresses in brackets
//! (`ip=[2001:db8::5]::[2001:db8::1]:64::eth0:none`), `auto6` (SLAAC) and
//! `dhcp6` (stateful DHCPv6).
//!
//! Debian's kernel has IP autoconfiguration compiled out, so p2xen reads the
//! same syntax and does the work itself; administrators keep the PXE entries
//! they already have. `ip=` may be given once per interface, as with dracut.

use std::net::{Ipv4Addr, Ipv6Addr};

/// What `ip=` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpParam {
    /// `ip=off` / `ip=none` (and no client address): leave the network down.
    Off,
    /// `ip=dhcp|on|any` or an empty client field: DHCP, on `device` only if named.
    Dhcp {
        device: Option<String>,
        /// Sent to the DHCP server (option 12), as the kernel does.
        hostname: Option<String>,
    },
    /// A client address was given: static configuration.
    Static(StaticIp),
    /// `ip=auto6`, `ip=<dev>:auto6`: IPv6 stateless autoconfiguration (router
    /// advertisements), on `device` only if named.
    Auto6 { device: Option<String> },
    /// `ip=dhcp6`, `ip=<dev>:dhcp6`: an address leased by DHCPv6 (IA_NA),
    /// on `device` only if named.
    Dhcp6 { device: Option<String> },
    /// `ip=[<IPv6>]:...`: a static IPv6 configuration.
    Static6(StaticIp6),
}

impl IpParam {
    /// The interface this entry is for; `None`: any (the first with carrier,
    /// or every one for DHCP).
    pub fn device(&self) -> Option<&str> {
        match self {
            IpParam::Off => None,
            IpParam::Dhcp { device, .. }
            | IpParam::Auto6 { device }
            | IpParam::Dhcp6 { device } => device.as_deref(),
            IpParam::Static(s) => s.device.as_deref(),
            IpParam::Static6(s) => s.device.as_deref(),
        }
    }

    /// An IPv6 entry (`auto6`, `dhcp6`, `[addr]`): one per interface may sit
    /// beside an IPv4 one (dual stack).
    pub fn is_v6(&self) -> bool {
        matches!(
            self,
            IpParam::Auto6 { .. } | IpParam::Dhcp6 { .. } | IpParam::Static6(_)
        )
    }
}

/// A static IPv6 configuration from `ip=[addr]:[peer]:[gw]:prefix:host:dev:none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp6 {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv6Addr>,
    pub hostname: Option<String>,
    /// `None`: the first interface with carrier.
    pub device: Option<String>,
    pub dns: Vec<Ipv6Addr>,
}

/// A static configuration from `ip=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The "NFS server" field; kept because a PXE setup may point it at dom0.
    pub server: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// `None`: the first interface with carrier.
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Option<Ipv4Addr>,
}

/// Why an `ip=` value was refused; the caller adds the key and accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpError(pub String);

/// What `ip=` accepts, for error messages.
pub const ACCEPTED: &str = "dhcp, on, any, off, none, auto6, dhcp6, <device>:<dhcp|auto6|dhcp6|off>, \
    <client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>, \
    or [<IPv6>]::[<gw6>]:<prefix length>:<hostname>:<device>:none";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Autoconf {
    Default,
    Off,
    Dhcp,
    Auto6,
    Dhcp6,
}

fn autoconf(word: &str) -> Result<Autoconf, IpError> {
    match word {
        "" => Ok(Autoconf::Default),
        "off" | "none" => Ok(Autoconf::Off),
        "on" | "any" | "dhcp" => Ok(Autoconf::Dhcp),
        "auto6" => Ok(Autoconf::Auto6),
        "dhcp6" => Ok(Autoconf::Dhcp6),
        // dracut's "SLAAC, else DHCPv6": the fallback order is a policy p2xen
        // does not guess; the administrator knows which one the network runs.
        "either6" => Err(IpError(format!(
            "autoconf {word:?} is not supported; name the one the network runs: auto6 (SLAAC) or dhcp6"
        ))),
        // The kernel's `dhcp,<client-id-type>,<client-id>` form: the client id is
        // not supported, and silently dropping it could hand out another lease.
        w if w.starts_with("dhcp,") => Err(IpError(format!(
            "autoconf {w:?}: DHCP client identifiers are not supported"
        ))),
        "bootp" | "rarp" | "both" => Err(IpError(format!(
            "autoconf {word:?} is not supported (only DHCP is)"
        ))),
        other => Err(IpError(format!("unknown autoconf method {other:?}"))),
    }
}

/// An address field; the kernel treats `0.0.0.0` like an empty field.
fn addr(field: &str, what: &str) -> Result<Option<Ipv4Addr>, IpError> {
    if field.is_empty() {
        return Ok(None);
    }
    let a: Ipv4Addr = field
        .parse()
        .map_err(|_| IpError(format!("{what} {field:?} is not an IPv4 address")))?;
    Ok((!a.is_unspecified()).then_some(a))
}

fn text(field: &str) -> Option<String> {
    (!field.is_empty()).then(|| field.to_string())
}

/// Prefix length of a contiguous netmask (`255.255.254.0` → 23).
pub fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    // Contiguous iff shifting out the ones leaves nothing.
    u8::try_from(len)
        .ok()
        .filter(|_| bits.checked_shl(len).unwrap_or(0) == 0)
}

/// The netmask the kernel derives when none is given (classful addressing).
pub fn classful_prefix(a: Ipv4Addr) -> Option<u8> {
    match a.octets()[0] {
        0..=127 => Some(8),
        128..=191 => Some(16),
        192..=223 => Some(24),
        _ => None,
    }
}

/// Splits at `:` except inside `[...]`, so IPv6 addresses stay whole.
fn fields(value: &str) -> Result<Vec<&str>, IpError> {
    let mut out = Vec::new();
    let mut depth = 0u8;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            ']' if depth == 1 => depth = 0,
            '[' | ']' => return Err(IpError(format!("unbalanced brackets at byte {i}"))),
            ':' if depth == 0 => {
                out.push(value.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(IpError("an opening '[' is never closed".into()));
    }
    out.push(value.get(start..).unwrap_or(""));
    Ok(out)
}

fn no_device(method: Autoconf) -> IpParam {
    match method {
        Autoconf::Off => IpParam::Off,
        Autoconf::Auto6 => IpParam::Auto6 { device: None },
        Autoconf::Dhcp6 => IpParam::Dhcp6 { device: None },
        Autoconf::Default | Autoconf::Dhcp => IpParam::Dhcp {
            device: None,
            hostname: None,
        },
    }
}

/// Parses the value of `ip=`. Returns the request and any warnings (values the
/// kernel would accept but that p2xen ignores or derives).
pub fn parse(value: &str) -> Result<(IpParam, Vec<String>), IpError> {
    let mut warnings = Vec::new();
    if !value.contains(':') {
        return match autoconf(value)? {
            Autoconf::Default => Err(IpError("empty value".into())),
            method => Ok((no_device(method), warnings)),
        };
    }
    let fields = fields(value)?;
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    if field(0).starts_with('[') {
        return parse_static6(&fields, &mut warnings).map(|p| (p, warnings));
    }
    if let Some(p) = parse_device_form(&fields, &mut warnings)? {
        return Ok((p, warnings));
    }
    if fields.len() > 10 {
        return Err(IpError(format!(
            "{} fields, at most 10 are defined",
            fields.len()
        )));
    }
    let client = addr(field(0), "client address")?;
    let server = addr(field(1), "server address")?;
    let gateway = addr(field(2), "gateway")?;
    let netmask = field(3);
    let hostname = text(field(4));
    let device = text(field(5));
    let method = autoconf(field(6))?;
    let mut dns = Vec::new();
    for (i, what) in [(7, "dns0"), (8, "dns1")] {
        dns.extend(addr(field(i), what)?);
    }
    let ntp = addr(field(9), "ntp0")?;

    let Some(address) = client else {
        return Ok((
            match method {
                Autoconf::Off => IpParam::Off,
                Autoconf::Auto6 => IpParam::Auto6 { device },
                Autoconf::Dhcp6 => IpParam::Dhcp6 { device },
                Autoconf::Default | Autoconf::Dhcp => IpParam::Dhcp { device, hostname },
            },
            warnings,
        ));
    };
    // Like the kernel: a given client address means static configuration,
    // whatever the autoconf field says.
    if matches!(method, Autoconf::Dhcp | Autoconf::Auto6 | Autoconf::Dhcp6) {
        warnings.push(format!(
            "ip=: client address {address} given, so the autoconf method is ignored (static configuration, as the kernel does)"
        ));
    }
    let prefix_len = match netmask {
        "" => {
            let len = classful_prefix(address).ok_or_else(|| {
                IpError(format!(
                    "no netmask given and {address} has no classful default"
                ))
            })?;
            warnings.push(format!(
                "ip=: no netmask given, using the classful /{len} for {address}"
            ));
            len
        }
        // dracut also takes a prefix length here.
        m if !m.contains('.') => prefix(m, 32)?,
        m => {
            let mask = addr(m, "netmask")?.unwrap_or(Ipv4Addr::UNSPECIFIED);
            netmask_prefix(mask)
                .ok_or_else(|| IpError(format!("netmask {mask} is not contiguous")))?
        }
    };
    Ok((
        IpParam::Static(StaticIp {
            address,
            prefix_len,
            gateway,
            server,
            hostname,
            device,
            dns,
            ntp,
        }),
        warnings,
    ))
}

fn prefix(field: &str, max: u8) -> Result<u8, IpError> {
    field
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| IpError(format!("prefix length {field:?} is not 0 to {max}")))
}

/// dracut's `<interface>:<autoconf>[:<mtu>[:<macaddr>]]`; `None` when the
/// first field is not an interface name.
fn parse_device_form(
    fields: &[&str],
    warnings: &mut Vec<String>,
) -> Result<Option<IpParam>, IpError> {
    let (Some(dev), Some(method)) = (fields.first(), fields.get(1)) else {
        return Ok(None);
    };
    if dev.is_empty() || dev.parse::<Ipv4Addr>().is_ok() || fields.len() > 4 {
        return Ok(None);
    }
    // An empty second field is the kernel form (`<client>::...`), whose
    // client field then gets its own error; a word there that is no method
    // is best told as such (the kernel form cannot take a name first).
    let method = match autoconf(method)? {
        Autoconf::Default => return Ok(None),
        m => m,
    };
    super::values::interface_name(dev).map_err(IpError)?;
    for (i, what) in [(2, "MTU"), (3, "MAC address")] {
        if let Some(v) = fields.get(i).filter(|v| !v.is_empty()) {
            warnings.push(format!(
                "ip=: the {what} {v:?} for {dev} is ignored (the link keeps its own)"
            ));
        }
    }
    let device = Some((*dev).to_string());
    Ok(Some(match method {
        Autoconf::Off => IpParam::Off,
        Autoconf::Auto6 => IpParam::Auto6 { device },
        Autoconf::Dhcp6 => IpParam::Dhcp6 { device },
        Autoconf::Default | Autoconf::Dhcp => IpParam::Dhcp {
            device,
            hostname: None,
        },
    }))
}

fn addr6(field: &str, what: &str) -> Result<Option<Ipv6Addr>, IpError> {
    if field.is_empty() {
        return Ok(None);
    }
    let inner = field
        .strip_prefix('[')
        .and_then(|f| f.strip_suffix(']'))
        .unwrap_or(field);
    let a: Ipv6Addr = inner
        .parse()
        .map_err(|_| IpError(format!("{what} {field:?} is not an IPv6 address")))?;
    Ok((!a.is_unspecified()).then_some(a))
}

/// `[<IPv6>]:[<peer>]:[<gw>]:<prefix>:<hostname>:<device>:none[:<dns1>[:<dns2>]]`.
fn parse_static6(fields: &[&str], warnings: &mut Vec<String>) -> Result<IpParam, IpError> {
    if fields.len() > 9 {
        return Err(IpError(format!(
            "{} fields, at most 9 are defined for an IPv6 address",
            fields.len()
        )));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let address = addr6(field(0), "client address")?
        .ok_or_else(|| IpError("client address [::] is not usable".into()))?;
    let gateway = addr6(field(2), "gateway")?;
    let prefix_len = match field(3) {
        "" => {
            warnings.push(format!(
                "ip=: no prefix length given, using /64 for {address}"
            ));
            64
        }
        p => prefix(p.trim_start_matches('/'), 128)?,
    };
    match autoconf(field(6))? {
        Autoconf::Default | Autoconf::Off => {}
        _ => warnings.push(format!(
            "ip=: client address {address} given, so the autoconf method is ignored (static configuration)"
        )),
    }
    let mut dns = Vec::new();
    for (i, what) in [(7, "dns1"), (8, "dns2")] {
        dns.extend(addr6(field(i), what)?);
    }
    Ok(IpParam::Static6(StaticIp6 {
        address,
        prefix_len,
        gateway,
        hostname: text(field(4)),
        device: text(field(5)),
        dns,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn keywords() {
        for w in ["dhcp", "on", "any"] {
            assert_eq!(
                parse(w).unwrap().0,
                IpParam::Dhcp {
                    device: None,
                    hostname: None
                }
            );
        }
        assert_eq!(parse("off").unwrap().0, IpParam::Off);
        assert_eq!(parse("none").unwrap().0, IpParam::Off);
    }

    #[test]
    fn full_static() {
        let (p, w) =
            parse("10.1.2.3:10.1.2.1:10.1.2.254:255.255.255.0:src1:eth0:off:10.1.2.53:10.1.2.54:10.1.2.123")
                .unwrap();
        assert!(w.is_empty());
        assert_eq!(
            p,
            IpParam::Static(StaticIp {
                address: ip("10.1.2.3"),
                prefix_len: 24,
                gateway: Some(ip("10.1.2.254")),
                server: Some(ip("10.1.2.1")),
                hostname: Some("src1".into()),
                device: Some("eth0".into()),
                dns: vec![ip("10.1.2.53"), ip("10.1.2.54")],
                ntp: Some(ip("10.1.2.123")),
            })
        );
    }

    #[test]
    fn dhcp_on_one_device_with_hostname() {
        assert_eq!(
            parse(":::::eth1:dhcp").unwrap().0,
            IpParam::Dhcp {
                device: Some("eth1".into()),
                hostname: None
            }
        );
        assert_eq!(
            parse("::::web1:eth0").unwrap().0,
            IpParam::Dhcp {
                device: Some("eth0".into()),
                hostname: Some("web1".into())
            }
        );
        assert_eq!(parse(":::::eth0:none").unwrap().0, IpParam::Off);
    }

    #[test]
    fn zero_address_counts_as_empty() {
        assert!(matches!(
            parse("0.0.0.0::::::dhcp").unwrap().0,
            IpParam::Dhcp { .. }
        ));
    }

    #[test]
    fn classful_default_netmask_is_derived_and_reported() {
        let (p, w) = parse("172.20.1.5::172.20.0.1").unwrap();
        let IpParam::Static(s) = p else {
            panic!("{p:?}")
        };
        assert_eq!(s.prefix_len, 16);
        assert_eq!(s.gateway, Some(ip("172.20.0.1")));
        assert!(w[0].contains("classful /16"), "{w:?}");
    }

    #[test]
    fn client_address_wins_over_dhcp() {
        let (p, w) = parse("192.168.7.9:::255.255.255.0:::dhcp").unwrap();
        assert!(matches!(p, IpParam::Static(_)));
        assert!(w[0].contains("autoconf method is ignored"), "{w:?}");
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            parse("10.0.0.300::")
                .unwrap_err()
                .0
                .contains("client address \"10.0.0.300\"")
        );
        assert!(
            parse("10.0.0.3:::255.0.255.0")
                .unwrap_err()
                .0
                .contains("not contiguous")
        );
        assert!(parse("bootp").unwrap_err().0.contains("not supported"));
        assert!(
            parse("dhcp,01,aa")
                .unwrap_err()
                .0
                .contains("client identifiers")
        );
        assert!(
            parse("::::::fast")
                .unwrap_err()
                .0
                .contains("unknown autoconf method \"fast\"")
        );
        assert!(parse("::::::::::").unwrap_err().0.contains("11 fields"));
        assert!(
            parse("240.0.0.1::")
                .unwrap_err()
                .0
                .contains("no classful default")
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn netmask_prefixes() {
        assert_eq!(netmask_prefix(ip("0.0.0.0")), Some(0));
        assert_eq!(netmask_prefix(ip("255.255.254.0")), Some(23));
        assert_eq!(netmask_prefix(ip("255.255.255.255")), Some(32));
        assert_eq!(netmask_prefix(ip("255.0.0.255")), None);
    }

    #[test]
    fn dracut_device_form() {
        assert_eq!(
            parse("eth1:auto6").unwrap().0,
            IpParam::Auto6 {
                device: Some("eth1".into())
            }
        );
        assert_eq!(parse("auto6").unwrap().0, IpParam::Auto6 { device: None });
        let (p, w) = parse("bond0.20:dhcp:9000").unwrap();
        assert_eq!(
            p,
            IpParam::Dhcp {
                device: Some("bond0.20".into()),
                hostname: None
            }
        );
        assert!(
            w[0].contains("MTU \"9000\" for bond0.20 is ignored"),
            "{w:?}"
        );
        assert_eq!(parse("eth2:off").unwrap().0, IpParam::Off);
        assert_eq!(
            parse("eth0:dhcp6").unwrap().0,
            IpParam::Dhcp6 {
                device: Some("eth0".into())
            }
        );
        assert_eq!(parse("dhcp6").unwrap().0, IpParam::Dhcp6 { device: None });
        assert_eq!(
            parse(":::::bond0.20:dhcp6").unwrap().0,
            IpParam::Dhcp6 {
                device: Some("bond0.20".into())
            }
        );
        assert!(
            parse("eth0:either6")
                .unwrap_err()
                .0
                .contains("auto6 (SLAAC) or dhcp6")
        );
    }

    #[test]
    fn static_ipv6_in_brackets() {
        let (p, w) =
            parse("[2001:db8:7::5]::[2001:db8:7::1]:64:src6:eth0:none:[2001:db8:7::53]").unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            p,
            IpParam::Static6(StaticIp6 {
                address: "2001:db8:7::5".parse().unwrap(),
                prefix_len: 64,
                gateway: Some("2001:db8:7::1".parse().unwrap()),
                hostname: Some("src6".into()),
                device: Some("eth0".into()),
                dns: vec!["2001:db8:7::53".parse().unwrap()],
            })
        );
        assert_eq!(p.device(), Some("eth0"));
        assert!(
            parse("[2001:db8::5:::64")
                .unwrap_err()
                .0
                .contains("never closed")
        );
        assert!(
            parse("[2001:db8::5]:::129")
                .unwrap_err()
                .0
                .contains("prefix length \"129\"")
        );
        assert!(parse("[10.0.0.1]::").unwrap_err().0.contains("not an IPv6"));
        let (p, w) = parse("[fd00::9]").unwrap();
        assert!(
            matches!(p, IpParam::Static6(ref s) if s.prefix_len == 64),
            "{p:?}"
        );
        assert!(w[0].contains("/64"), "{w:?}");
    }

    #[test]
    fn prefix_length_in_the_netmask_field() {
        let IpParam::Static(s) = parse("10.0.0.5:::23").unwrap().0 else {
            panic!()
        };
        assert_eq!(s.prefix_len, 23);
        assert!(parse("10.0.0.5:::33").unwrap_err().0.contains("0 to 32"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(v in "[0-9a-z.:,\\[\\]]{0,60}") {
            let _ = parse(&v);
        }
    }
}
