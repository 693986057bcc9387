//! Typed values of the `p2xen.*` parameters and their parsers. Each parser
//! returns a reason on failure; the caller names the key and accepted forms.

use crate::wire::keyword::keyword_enum;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The port `p2xen receive` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7460;

/// `p2xen.server=HOST[:PORT]`: host name, IPv4, or IPv6 (`[fe80::1]:7460`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Without brackets for IPv6 literals.
    pub host: String,
    pub port: u16,
}

impl Server {
    pub fn parse(v: &str) -> Result<Server, String> {
        let (host, port) = if let Some(rest) = v.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("unexpected {p:?} after the IPv6 address"))?,
                    ),
                ),
            }
        } else if v.parse::<Ipv6Addr>().is_ok() {
            // A bare IPv6 literal has no room for a port.
            (v, None)
        } else {
            match v.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (v, None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
        };
        if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        Ok(Server {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// RFC 1123 host name (underscores tolerated: they exist in real zones).
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// `p2xen.token=`: the shared secret. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub const MAX_LEN: usize = 1024;

    pub fn parse(v: &str) -> Result<Token, String> {
        if v.is_empty() {
            return Err("empty".into());
        }
        if v.len() > Self::MAX_LEN {
            return Err(format!("longer than {} bytes", Self::MAX_LEN));
        }
        if v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            return Err("contains white space, '\"' or control characters".into());
        }
        Ok(Token(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// `p2xen.fingerprint=sha256:HEX`: the receiver's certificate digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Accepts `sha256:` plus 64 hex digits, optionally in `AB:CD:…` pairs as
    /// `openssl x509 -fingerprint -sha256` prints them.
    pub fn parse(v: &str) -> Result<Fingerprint, String> {
        let (algo, hex) = v
            .split_once(':')
            .ok_or_else(|| "missing the \"sha256:\" prefix".to_string())?;
        if !algo.eq_ignore_ascii_case("sha256") {
            return Err(format!("digest {algo:?} is not supported"));
        }
        let digits: Vec<u8> = hex.bytes().filter(|&c| c != b':').collect();
        if digits.len() != 64 {
            return Err(format!("{} hex digits, 64 needed", digits.len()));
        }
        let nibble = |c: u8| {
            char::from(c)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = match pair {
                [h, l] => (nibble(*h), nibble(*l)),
                _ => (None, None),
            };
            *byte = match (hi, lo) {
                (Some(h), Some(l)) => h << 4 | l,
                _ => return Err(format!("{:?} is not hex", String::from_utf8_lossy(pair))),
            };
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Largest guest memory accepted: 16 TiB in MiB, Xen's own limit.
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;

/// `p2xen.memory=`: MiB, or with a unit: `2048`, `512M`, `2G`, `1T`, `2GiB`.
pub fn memory_mib(v: &str) -> Result<u64, String> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = v.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v:?} does not start with a number"))?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return Err(format!("unit {unit:?} is not M, G or T")),
    };
    let mib = n
        .checked_mul(factor)
        .filter(|m| (1..=MAX_MEMORY_MIB).contains(m))
        .ok_or_else(|| format!("{v:?} is not between 1 MiB and 16 TiB"))?;
    Ok(mib)
}

/// Most vCPUs a Xen PV guest can have.
pub const MAX_VCPUS: u32 = 512;

pub fn vcpus(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_VCPUS).contains(n))
        .ok_or_else(|| format!("{v:?} is not a number from 1 to {MAX_VCPUS}"))
}

/// A kernel block device name as in /sys/block: `/dev/` is dropped and the
/// slashes of `/dev/cciss/c0d0` become `!` as sysfs spells them.
pub fn disk_name(v: &str) -> Result<String, String> {
    let name = v.strip_prefix("/dev/").unwrap_or(v).replace('/', "!");
    if name.is_empty() {
        return Err("empty disk name".into());
    }
    if name.len() > 64
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '"')
    {
        return Err(format!("{v:?} is not a block device name"));
    }
    Ok(name)
}

/// A guest name: becomes a file name on dom0 (`/etc/xen/NAME.cfg`) and the
/// xl domain name, so no path separators, no control characters.
pub fn guest_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 64 {
        return Err("must be 1 to 64 bytes".into());
    }
    if v == "." || v == ".." || v.starts_with('-') {
        return Err(format!("{v:?} cannot be a file name"));
    }
    // A '"' could not be written back onto a kernel command line.
    if v.chars().any(|c| c == '/' || c == '"' || c.is_control()) {
        return Err(format!("{v:?} contains '/', '\"' or control characters"));
    }
    Ok(v.to_string())
}

/// A network interface name (the kernel's `dev_valid_name`).
pub fn interface_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 15 || v == "." || v == ".." {
        return Err(format!("{v:?} is not 1 to 15 bytes"));
    }
    if v.chars()
        .any(|c| c == '/' || c == ':' || c == '"' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{v:?} contains '/', ':', '\"' or white space"));
    }
    Ok(v.to_string())
}

/// A console device name like `ttyS0`; `/dev/` is dropped.
pub fn console_name(v: &str) -> Result<String, String> {
    let name = v.strip_prefix("/dev/").unwrap_or(v);
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 bytes".into());
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'.' | b'-'))
        || name.contains("..")
    {
        return Err(format!("{v:?} is not a device name"));
    }
    Ok(name.to_string())
}

/// A boolean flag value; a bare `p2xen.debug` means on.
pub fn flag(v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "1" | "y" | "yes" | "on" | "true") => Ok(true),
        Some("0" | "n" | "no" | "off" | "false") => Ok(false),
        Some(other) => Err(format!("{other:?} is not a yes/no value")),
    }
}

/// `p2xen.layout=` and `p2xen.type=` name the guest options every part shares.
pub use crate::wire::machine::{Layout, XenType};
keyword_enum!(
    /// How a run ends: `p2xen.post=` after a successful migration,
    /// `p2xen.fail=` after a failed one (which refuses `reboot`, see
    /// [`EndAction::parse_fail`]), and the menu's power-off or reboot.
    EndAction { Poweroff = "poweroff", Reboot = "reboot", Shell = "shell", Wait = "wait" }
);

impl EndAction {
    /// What `p2xen.fail=` accepts.
    pub const FAIL_ACCEPTED: &'static str = "shell|wait|poweroff";

    /// `p2xen.fail=`: any end action but `reboot`, because the machine would
    /// boot the same entry again and repeat the failing run forever.
    pub fn parse_fail(v: &str) -> Result<Self, String> {
        match Self::parse(v)? {
            EndAction::Reboot => Err(format!(
                "{v:?} is not one of them (a reboot would repeat the failed run)"
            )),
            action => Ok(action),
        }
    }
}

/// Longest `p2xen.settle=`: ten minutes is more than any HBA needs to scan.
pub const MAX_SETTLE_SECS: u64 = 600;

/// `p2xen.settle=`: seconds coldplug waits at most for devices to settle.
pub fn settle_secs(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_SETTLE_SECS).contains(s))
        .ok_or_else(|| format!("{v:?} is not a number of seconds from 1 to {MAX_SETTLE_SECS}"))
}
/// A kernel module name in `p2xen.blacklist=`, normalised as kmod does
/// (`-` is `_`); the kernel's limit is 55 bytes.
pub fn module_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 55 {
        return Err(format!("{v:?} is not a module name of 1 to 55 characters"));
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{v:?} is not a module name (letters, digits, '_' and '-' only)"
        ));
    }
    Ok(v.replace('-', "_"))
}

keyword_enum!(
    /// `p2xen.mode=`: unattended run, the menu, or straight to the rescue
    /// shell (the boot media's "Rescue shell" entry).
    Mode { Auto = "auto", Menu = "menu", Shell = "shell" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        let s = Server::parse("dom0.example.org").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("dom0.example.org", 7460));
        let s = Server::parse("10.0.0.2:9000").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("10.0.0.2", 9000));
        assert_eq!(s.to_string(), "10.0.0.2:9000");
        let s = Server::parse("[fd00::2]:7000").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("fd00::2", 7000));
        assert_eq!(s.to_string(), "[fd00::2]:7000");
        assert_eq!(Server::parse("fd00::2").unwrap().port, 7460);
        assert_eq!(Server::parse("[fd00::2]").unwrap().port, 7460);
        assert!(Server::parse("host:0").unwrap_err().contains("port \"0\""));
        assert!(Server::parse("host:70000").is_err());
        assert!(Server::parse("host:").is_err());
        assert!(
            Server::parse("bad host")
                .unwrap_err()
                .contains("not a host name")
        );
        assert!(
            Server::parse("[fd00::2")
                .unwrap_err()
                .contains("missing ']'")
        );
        assert!(Server::parse("-a.b").is_err());
        assert!(Server::parse("").is_err());
    }

    #[test]
    fn fingerprints() {
        let hex = "ab".repeat(32);
        let f = Fingerprint::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(f.0, [0xab; 32]);
        assert_eq!(f.to_string(), format!("sha256:{hex}"));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::parse(&format!("SHA256:{colons}")).unwrap(), f);
        assert!(Fingerprint::parse(&hex).unwrap_err().contains("prefix"));
        assert!(
            Fingerprint::parse(&format!("md5:{hex}"))
                .unwrap_err()
                .contains("\"md5\"")
        );
        assert!(
            Fingerprint::parse("sha256:abcd")
                .unwrap_err()
                .contains("4 hex digits")
        );
        let bad = format!("sha256:{}zz", "ab".repeat(31));
        assert!(Fingerprint::parse(&bad).unwrap_err().contains("\"zz\""));
        let plus = format!("sha256:+a{}", "ab".repeat(31));
        assert!(Fingerprint::parse(&plus).is_err());
        // Multi-byte characters must not split into a panic.
        let uni = format!("sha256:{}é", "a".repeat(62));
        assert!(Fingerprint::parse(&uni).is_err());
    }

    #[test]
    fn memory_units() {
        assert_eq!(memory_mib("2048"), Ok(2048));
        assert_eq!(memory_mib("512M"), Ok(512));
        assert_eq!(memory_mib("2G"), Ok(2048));
        assert_eq!(memory_mib("2gib"), Ok(2048));
        assert_eq!(memory_mib("1T"), Ok(1024 * 1024));
        assert!(memory_mib("0").unwrap_err().contains("between"));
        assert!(memory_mib("17T").is_err());
        assert!(memory_mib("99999999999999999999G").is_err());
        assert!(memory_mib("2K").unwrap_err().contains("unit \"K\""));
        assert!(memory_mib("G").is_err());
    }

    #[test]
    fn small_values() {
        assert_eq!(vcpus("4"), Ok(4));
        assert!(vcpus("0").is_err());
        assert!(vcpus("513").is_err());
        assert_eq!(disk_name("/dev/sda").as_deref(), Ok("sda"));
        assert_eq!(disk_name("/dev/cciss/c0d0").as_deref(), Ok("cciss!c0d0"));
        assert!(disk_name("").is_err());
        assert_eq!(guest_name("web 1").as_deref(), Ok("web 1"));
        assert!(guest_name("../x").is_err());
        assert!(guest_name("..").is_err());
        assert!(interface_name("xenbr0").is_ok());
        assert!(interface_name("a-very-long-bridge").is_err());
        assert_eq!(console_name("/dev/ttyS1").as_deref(), Ok("ttyS1"));
        assert!(console_name("tty S1").is_err());
        assert_eq!(flag(None), Ok(true));
        assert_eq!(flag(Some("0")), Ok(false));
        assert!(flag(Some("maybe")).is_err());
        assert_eq!(settle_secs("5"), Ok(5));
        assert_eq!(settle_secs("600"), Ok(600));
        assert!(settle_secs("0").unwrap_err().contains("from 1 to 600"));
        assert!(settle_secs("601").is_err());
        assert!(settle_secs("5s").is_err());
        assert_eq!(module_name("virtio-blk"), Ok("virtio_blk".into()));
        assert!(module_name("").unwrap_err().contains("1 to 55"));
        assert!(
            module_name("e1000.ko")
                .unwrap_err()
                .contains("letters, digits")
        );
    }

    #[test]
    fn keywords() {
        assert_eq!(EndAction::parse("reboot"), Ok(EndAction::Reboot));
        assert_eq!(EndAction::ACCEPTED, "poweroff|reboot|shell|wait");
        assert_eq!(EndAction::parse_fail("wait"), Ok(EndAction::Wait));
        assert!(
            EndAction::parse_fail("reboot")
                .unwrap_err()
                .contains("would repeat")
        );
        assert!(EndAction::parse_fail("halt").is_err());
        assert!(XenType::parse("PV").is_err());
        assert_eq!(Layout::Partitions.to_string(), "partitions");
    }

    #[test]
    fn token_is_redacted() {
        let t = Token::parse("s3cret").unwrap();
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(t.as_str(), "s3cret");
        assert!(Token::parse("").is_err());
        assert!(Token::parse("a b").is_err());
    }
}
