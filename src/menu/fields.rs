//! Validation of what the user types, with messages that say what is
//! accepted. Same rules as the kernel command line (docs/cmdline.md).

use std::net::Ipv4Addr;

/// The receiver's port when none is given.
pub const DEFAULT_PORT: u16 = 7460;

pub fn name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("name: must not be empty".into());
    }
    if s.len() > 64 {
        return Err(format!("name: at most 64 characters ({} given)", s.len()));
    }
    if s == "." || s == ".." || s.starts_with('.') || s.starts_with('-') {
        return Err(format!("name: \"{s}\" must start with a letter or digit"));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "name: '{bad}' not allowed; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(s.to_string())
}

/// MiB, or with a unit: 512M, 2G, 1T.
pub fn memory_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'M' | 'm')) => (&t[..i], 1u64),
        Some((i, 'G' | 'g')) => (&t[..i], 1024),
        Some((i, 'T' | 't')) => (&t[..i], 1024 * 1024),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("memory: \"{s}\" is not a number of MiB (e.g. 2048, 512M, 2G)"))?;
    let mib = n
        .checked_mul(mult)
        .ok_or_else(|| format!("memory: \"{s}\" is too large"))?;
    if !(32..=16 * 1024 * 1024).contains(&mib) {
        return Err(format!("memory: {mib} MiB out of range (32 MiB to 16 TiB)"));
    }
    Ok(mib)
}

pub fn vcpus(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("vCPUs: \"{s}\" is not a number (1 to 512)"))?;
    if !(1..=512).contains(&n) {
        return Err(format!("vCPUs: {n} out of range (1 to 512)"));
    }
    Ok(n)
}

/// HOST, HOST:PORT or [IPV6]:PORT; the port defaults to 7460.
pub fn server(s: &str) -> Result<String, String> {
    let t = s.trim();
    let bad = || format!("receiver: \"{s}\" is not HOST[:PORT] (e.g. 192.0.2.1:{DEFAULT_PORT})");
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c == '"' || c == '/') {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{h}]"), port)
    } else {
        match t.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (t.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("receiver: port \"{p}\" is not 1 to 65535")),
        },
    };
    Ok(format!("{host}:{port}"))
}

pub fn token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("token: must not be empty (p2xen receive prints it)".into());
    }
    if s.len() > 256
        || s.chars()
            .any(|c| c.is_whitespace() || c == '"' || !c.is_ascii())
    {
        return Err("token: no spaces or quotes, at most 256 characters".into());
    }
    Ok(s.to_string())
}

/// Empty (ask the receiver), "sha256:HEX" or AB:CD:... pairs.
pub fn fingerprint(s: &str) -> Result<Option<String>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let hex: String = t
        .strip_prefix("sha256:")
        .unwrap_or(t)
        .chars()
        .filter(|&c| c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(
            "fingerprint: expected sha256: and 64 hex digits (or empty: ask the receiver)".into(),
        );
    }
    Ok(Some(format!("sha256:{}", hex.to_ascii_lowercase())))
}

/// Empty (the receiver's default) or a Linux interface name.
pub fn bridge(s: &str) -> Result<Option<String>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.len() > 15
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "bridge: \"{t}\" is not an interface name (e.g. xenbr0)"
        ));
    }
    Ok(Some(t.to_string()))
}

/// "192.0.2.10/24"
pub fn cidr(s: &str) -> Result<String, String> {
    let bad = || format!("address: \"{s}\" is not ADDRESS/PREFIX (e.g. 192.0.2.10/24)");
    let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
    let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p == 0 || p > 32 {
        return Err(bad());
    }
    Ok(format!("{a}/{p}"))
}

/// Empty or one IPv4 address.
pub fn gateway(s: &str) -> Result<Option<String>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<Ipv4Addr>()
        .map(|a| Some(a.to_string()))
        .map_err(|_| format!("gateway: \"{t}\" is not an IPv4 address"))
}

/// Comma- or space-separated IPv4 addresses.
pub fn dns(s: &str) -> Result<Vec<String>, String> {
    s.split([',', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<Ipv4Addr>()
                .map(|a| a.to_string())
                .map_err(|_| format!("DNS: \"{w}\" is not an IPv4 address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name("web-1.example"), Ok("web-1.example".into()));
        assert_eq!(
            name("../x"),
            Err("name: \"../x\" must start with a letter or digit".into())
        );
        assert_eq!(
            name("a/x"),
            Err("name: '/' not allowed; use letters, digits, '.', '_' and '-'".into())
        );
        assert!(name("").is_err());
        assert!(name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn memory() {
        assert_eq!(memory_mib("2048"), Ok(2048));
        assert_eq!(memory_mib("2G"), Ok(2048));
        assert_eq!(memory_mib("512m"), Ok(512));
        assert_eq!(
            memory_mib("abc"),
            Err("memory: \"abc\" is not a number of MiB (e.g. 2048, 512M, 2G)".into())
        );
        assert!(memory_mib("99999999999999999999T").is_err());
        assert!(memory_mib("18446744073709551615T").is_err());
        assert!(memory_mib("8").is_err());
        assert!(memory_mib("").is_err());
    }

    #[test]
    fn servers_and_secrets() {
        assert_eq!(server("10.0.0.1"), Ok("10.0.0.1:7460".into()));
        assert_eq!(server("dom0:9000"), Ok("dom0:9000".into()));
        assert_eq!(server("[::1]:9"), Ok("[::1]:9".into()));
        assert!(server("a b").is_err());
        assert!(server("h:0").is_err());
        assert!(server("h:x").is_err());
        assert!(token("a b").is_err());
        assert_eq!(fingerprint(""), Ok(None));
        let hex = "AB".repeat(32);
        assert_eq!(
            fingerprint(&format!("sha256:{hex}")),
            Ok(Some(format!("sha256:{}", "ab".repeat(32))))
        );
        assert!(fingerprint("sha256:abc").is_err());
        assert_eq!(vcpus("4"), Ok(4));
        assert!(vcpus("0").is_err());
        assert!(vcpus("x").is_err());
        assert_eq!(bridge(""), Ok(None));
        assert!(bridge("br/0").is_err());
        assert_eq!(cidr("192.0.2.1/24"), Ok("192.0.2.1/24".into()));
        assert!(cidr("192.0.2.1").is_err());
        assert_eq!(
            dns("1.1.1.1, 8.8.8.8"),
            Ok(vec!["1.1.1.1".into(), "8.8.8.8".into()])
        );
    }
}
