//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client>:<server>:<gw>:<netmask>:<host>:<dev>:<autoconf>:<dns0>:<dns1>:<ntp0>`
//! or just `ip=<autoconf>`.
//!
//! Debian's kernel has IP autoconfiguration compiled out, so p2xen reads the
//! same syntax and does the work itself; administrators keep the PXE entries
//! they already have.

use std::net::Ipv4Addr;

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
pub const ACCEPTED: &str = "dhcp, on, any, off, none, or \
    <client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Autoconf {
    Default,
    Off,
    Dhcp,
}

fn autoconf(word: &str) -> Result<Autoconf, IpError> {
    match word {
        "" => Ok(Autoconf::Default),
        "off" | "none" => Ok(Autoconf::Off),
        "on" | "any" | "dhcp" => Ok(Autoconf::Dhcp),
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

/// Parses the value of `ip=`. Returns the request and any warnings (values the
/// kernel would accept but that p2xen ignores or derives).
pub fn parse(value: &str) -> Result<(IpParam, Vec<String>), IpError> {
    let mut warnings = Vec::new();
    if !value.contains(':') {
        return match autoconf(value)? {
            Autoconf::Off => Ok((IpParam::Off, warnings)),
            Autoconf::Dhcp => Ok((
                IpParam::Dhcp {
                    device: None,
                    hostname: None,
                },
                warnings,
            )),
            Autoconf::Default => Err(IpError("empty value".into())),
        };
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > 10 {
        return Err(IpError(format!(
            "{} fields, at most 10 are defined",
            fields.len()
        )));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let client = addr(field(0), "client address")?;
    let server = addr(field(1), "server address")?;
    let gateway = addr(field(2), "gateway")?;
    let netmask = addr(field(3), "netmask")?;
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
                Autoconf::Default | Autoconf::Dhcp => IpParam::Dhcp { device, hostname },
            },
            warnings,
        ));
    };
    // Like the kernel: a given client address means static configuration,
    // whatever the autoconf field says.
    if method == Autoconf::Dhcp {
        warnings.push(format!(
            "ip=: client address {address} given, so the autoconf method is ignored (static configuration, as the kernel does)"
        ));
    }
    let prefix_len = match netmask {
        Some(mask) => netmask_prefix(mask)
            .ok_or_else(|| IpError(format!("netmask {mask} is not contiguous")))?,
        None => {
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

    proptest! {
        #[test]
        fn parse_never_panics(v in "[0-9a-z.:,]{0,60}") {
            let _ = parse(&v);
        }
    }
}
