//! The kernel command line (`/proc/cmdline`): the `p2xen.*` parameters that
//! drive an unattended migration, plus the kernel's own `console=` and `ip=`
//! which the live init honours itself (Debian's kernel has no IP autoconfig).
//!
//! Parameters are split with the kernel's quoting rules ([`split`]). For a
//! `p2xen.*` key or `ip=` given more than once the last one wins, as for any
//! kernel parameter, and the repetition is reported; unknown `p2xen.*` keys
//! are reported too. A bad value is an error naming the key and what it
//! accepts, so a typo in a PXE entry stops the run before anything happens.
//! Parameters after `--` (which the kernel hands to init) are read the same way.

mod console;
mod ip;
pub mod netdev;
mod tokens;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wire::rate::Rate;

pub use console::{Console, Parity};
pub use ip::{IpParam, StaticIp, StaticIp6, classful_prefix, netmask_prefix};
pub use netdev::{Bond, BondMode, IfName, Route, Vlan};
pub use tokens::{Param, split};
pub use values::{
    DEFAULT_PORT, EndAction, Fingerprint, Layout, MAX_MEMORY_MIB, MAX_SETTLE_SECS, MAX_VCPUS, Mode,
    Server, Token, XenType, guest_name, interface_name, memory_mib, module_name, settle_secs,
    vcpus,
};

/// Where the running kernel shows its command line.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// Everything p2xen reads from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    /// `p2xen.server=HOST[:PORT]`: the receiver; its presence means an unattended run.
    pub server: Option<Server>,
    pub token: Option<Token>,
    pub fingerprint: Option<Fingerprint>,
    /// Guest name; `None`: the source's hostname.
    pub name: Option<String>,
    /// Guest memory in MiB; `None`: the source's.
    pub memory_mib: Option<u64>,
    /// `None`: the source's CPU count.
    pub vcpus: Option<u32>,
    /// Disk names as in /sys/block; `None`: all fixed disks.
    pub disks: Option<Vec<String>>,
    pub layout: Layout,
    /// `None`: chosen by the conversion.
    pub xen_type: Option<XenType>,
    pub bridge: Option<String>,
    /// After a successful migration.
    pub post: EndAction,
    /// After a failed one; never [`EndAction::Reboot`].
    pub fail: EndAction,
    pub mode: Mode,
    /// `p2xen.console=`: the console the menu runs on; `None`: the last `console=`.
    pub console: Option<String>,
    pub debug: bool,
    /// `p2xen.bootdev=`: the boot medium as named in /sys/block, left out of
    /// the copy; `None`: detected by its `P2XEN` label.
    pub bootdev: Option<String>,
    /// `p2xen.settle=`: how long coldplug waits at most for devices to
    /// settle, and for any one module to load (a longer load is reported
    /// stuck and the boot goes on without it).
    pub settle: Duration,
    /// `p2xen.blacklist=`: modules coldplug never loads (normalised names).
    pub blacklist: Vec<String>,
    /// `p2xen.limit=`: bandwidth limit on the wire; `None`: as fast as the link goes.
    pub limit: Option<Rate>,
    /// Every kernel `console=`, in order (the last one is /dev/console).
    pub consoles: Vec<Console>,
    /// The kernel's (and dracut's) `ip=`, one per interface and address
    /// family; empty: DHCP on every interface with carrier.
    pub ip: Vec<IpParam>,
    /// dracut's `vlan=`, `bond=`, `ifname=`, `rd.route=`, `nameserver=`.
    pub net: NetDevices,
    /// `rd.net.timeout.carrier=`: how long to wait for a link; `None`: the default.
    pub carrier_timeout: Option<Duration>,
    /// Repeated and unknown keys, ignored options: to be shown to the user.
    pub warnings: Vec<CmdlineWarning>,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            server: None,
            token: None,
            fingerprint: None,
            name: None,
            memory_mib: None,
            vcpus: None,
            disks: None,
            layout: Layout::Disk,
            xen_type: None,
            bridge: None,
            post: EndAction::Poweroff,
            fail: EndAction::Shell,
            mode: Mode::Menu,
            console: None,
            debug: false,
            bootdev: None,
            settle: DEFAULT_SETTLE,
            blacklist: Vec::new(),
            limit: None,
            consoles: Vec::new(),
            ip: Vec::new(),
            net: NetDevices::default(),
            carrier_timeout: None,
            warnings: Vec::new(),
        }
    }
}

/// The network devices and settings of dracut's syntax, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDevices {
    pub vlans: Vec<Vlan>,
    pub bonds: Vec<Bond>,
    pub ifnames: Vec<IfName>,
    pub routes: Vec<Route>,
    pub nameservers: Vec<std::net::IpAddr>,
}

/// Keys that may be given several times, each value kept (dracut's rule).
const REPEATABLE: [&str; 5] = ["vlan", "bond", "ifname", "rd.route", "nameserver"];

/// `p2xen.settle=` when not given: enough for SAS HBAs that scan their ports.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);

/// A command line that cannot be acted on.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("kernel command line: {key}={value:?}: {reason} (accepted: {accepted})")]
    BadValue {
        key: String,
        /// `<redacted>` for the token.
        value: String,
        reason: String,
        accepted: &'static str,
    },
    #[error("kernel command line: {key} needs a value (accepted: {key}={accepted})")]
    MissingValue { key: String, accepted: &'static str },
    #[error(
        "kernel command line: p2xen.mode=auto needs p2xen.server=HOST[:PORT] (or use p2xen.mode=menu)"
    )]
    AutoWithoutServer,
    #[error("{path}: cannot read the kernel command line: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Something the user should see, but that does not stop the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineWarning {
    /// The key was given `count` times; the last value is used.
    Repeated { key: String, count: usize },
    /// A `p2xen.*` key p2xen does not know (a typo?); it is ignored.
    UnknownKey { key: String },
    /// A value accepted with a caveat.
    Note { key: String, message: String },
}

impl fmt::Display for CmdlineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineWarning::Repeated { key, count } => {
                write!(f, "{key} is given {count} times; the last one is used")
            }
            CmdlineWarning::UnknownKey { key } => write!(
                f,
                "unknown parameter {key} is ignored (known: {})",
                KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ),
            CmdlineWarning::Note { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

/// One known parameter: its name and the forms it accepts (for errors and docs).
struct Key {
    name: &'static str,
    accepted: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "p2xen.server",
        accepted: "HOST[:PORT], [IPV6][:PORT]",
    },
    Key {
        name: "p2xen.token",
        accepted: "the receiver's token (no spaces or quotes)",
    },
    Key {
        name: "p2xen.fingerprint",
        accepted: "sha256:<64 hex digits>",
    },
    Key {
        name: "p2xen.name",
        accepted: "1-64 characters without '/' or '\"'",
    },
    Key {
        name: "p2xen.memory",
        accepted: "MiB as a number, or with M, G, T: 2048, 512M, 2G",
    },
    Key {
        name: "p2xen.vcpus",
        accepted: "1 to 512",
    },
    Key {
        name: "p2xen.disks",
        accepted: "disk names separated by commas: sda,nvme0n1",
    },
    Key {
        name: "p2xen.layout",
        accepted: Layout::ACCEPTED,
    },
    Key {
        name: "p2xen.type",
        accepted: XenType::ACCEPTED,
    },
    Key {
        name: "p2xen.bridge",
        accepted: "a bridge interface name of 1-15 bytes",
    },
    Key {
        name: "p2xen.post",
        accepted: EndAction::ACCEPTED,
    },
    Key {
        name: "p2xen.fail",
        accepted: EndAction::FAIL_ACCEPTED,
    },
    Key {
        name: "p2xen.mode",
        accepted: Mode::ACCEPTED,
    },
    Key {
        name: "p2xen.console",
        accepted: "a console device: ttyS0, tty1, hvc0",
    },
    Key {
        name: "p2xen.debug",
        accepted: "no value, or 1|0|yes|no|on|off|true|false",
    },
    Key {
        name: "p2xen.bootdev",
        accepted: "the boot medium's disk name: sdb, /dev/sdb",
    },
    Key {
        name: "p2xen.settle",
        accepted: "seconds from 1 to 600",
    },
    Key {
        name: "p2xen.limit",
        accepted: "a rate: 50M (MiB/s), 800Mbit (bits/s), or off",
    },
    Key {
        name: "p2xen.blacklist",
        accepted: "module names separated by commas: e1000,mpt3sas",
    },
    Key {
        name: "ip",
        accepted: ip::ACCEPTED,
    },
    Key {
        name: "vlan",
        accepted: netdev::VLAN_ACCEPTED,
    },
    Key {
        name: "bond",
        accepted: netdev::BOND_ACCEPTED,
    },
    Key {
        name: "ifname",
        accepted: netdev::IFNAME_ACCEPTED,
    },
    Key {
        name: "rd.route",
        accepted: netdev::ROUTE_ACCEPTED,
    },
    Key {
        name: "nameserver",
        accepted: netdev::NAMESERVER_ACCEPTED,
    },
    Key {
        name: "rd.net.timeout.carrier",
        accepted: "seconds from 1 to 600",
    },
];

fn accepted(key: &str) -> &'static str {
    KEYS.iter()
        .find(|k| k.name == key)
        .map_or("", |k| k.accepted)
}

impl Cmdline {
    /// Parses a whole command line such as the contents of /proc/cmdline.
    pub fn parse(line: &str) -> Result<Cmdline, CmdlineError> {
        let mut cmdline = Cmdline::default();
        // Last value per key, in the order keys first appear, with a count.
        let mut last: Vec<(&str, Option<&str>, usize)> = Vec::new();
        let mut ips = IpEntries::default();
        for Param { key, value } in split(line) {
            if key == "--" && value.is_none() {
                continue;
            }
            if key == "console" {
                cmdline.add_console(value);
                continue;
            }
            if key == "ip" {
                let (param, notes) = parse_with(key, value, |v| ip::parse(v).map_err(|e| e.0))?;
                cmdline.note("ip", notes);
                ips.add(param);
                continue;
            }
            if REPEATABLE.contains(&key) {
                cmdline.add_net_device(key, value)?;
                continue;
            }
            if key != "rd.net.timeout.carrier" && !key.starts_with("p2xen.") {
                continue;
            }
            match last.iter_mut().find(|(k, _, _)| *k == key) {
                Some(slot) => {
                    slot.1 = value;
                    slot.2 += 1;
                }
                None => last.push((key, value, 1)),
            }
        }
        let mut explicit_mode = None;
        for (key, value, count) in last {
            if count > 1 {
                cmdline.warnings.push(CmdlineWarning::Repeated {
                    key: key.to_string(),
                    count,
                });
            }
            if key == "p2xen.mode" {
                explicit_mode = Some(parse_with(key, value, Mode::parse)?);
            } else {
                cmdline.apply(key, value)?;
            }
        }
        let (ip, repeated) = ips.finish();
        cmdline.ip = ip;
        cmdline.warnings.extend(repeated);
        cmdline.mode = match explicit_mode {
            Some(mode) => mode,
            None if cmdline.server.is_some() => Mode::Auto,
            None => Mode::Menu,
        };
        if cmdline.mode == Mode::Auto && cmdline.server.is_none() {
            return Err(CmdlineError::AutoWithoutServer);
        }
        Ok(cmdline)
    }

    /// Reads and parses `path` (normally [`PROC_CMDLINE`]).
    pub fn read(path: &Path) -> Result<Cmdline, CmdlineError> {
        let line = std::fs::read_to_string(path).map_err(|source| CmdlineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Cmdline::parse(&line)
    }

    fn note(&mut self, key: &str, notes: Vec<String>) {
        self.warnings
            .extend(notes.into_iter().map(|message| CmdlineWarning::Note {
                key: key.into(),
                message,
            }));
    }

    fn add_net_device(&mut self, key: &str, value: Option<&str>) -> Result<(), CmdlineError> {
        let n = &mut self.net;
        match key {
            "vlan" => n.vlans.push(parse_with(key, value, netdev::vlan)?),
            "bond" => n.bonds.push(parse_with(key, value, netdev::bond)?),
            "ifname" => n.ifnames.push(parse_with(key, value, netdev::ifname)?),
            "rd.route" => n.routes.push(parse_with(key, value, netdev::route)?),
            _ => n
                .nameservers
                .push(parse_with(key, value, netdev::nameserver)?),
        }
        Ok(())
    }

    fn add_console(&mut self, value: Option<&str>) {
        // `console=` belongs to the kernel, which accepted it already; a value
        // p2xen cannot use is worth a warning, not a failed migration.
        let note = |message: String| CmdlineWarning::Note {
            key: "console".into(),
            message,
        };
        match value.map(Console::parse) {
            None => self
                .warnings
                .push(note("given without a value; ignored".into())),
            Some(Err(reason)) => self.warnings.push(note(format!("{reason}; ignored"))),
            Some(Ok((console, warning))) => {
                self.warnings.extend(warning.map(note));
                self.consoles.push(console);
            }
        }
    }

    fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), CmdlineError> {
        match key {
            "p2xen.server" => self.server = Some(parse_with(key, value, Server::parse)?),
            "p2xen.token" => self.token = Some(parse_with(key, value, Token::parse)?),
            "p2xen.fingerprint" => {
                self.fingerprint = Some(parse_with(key, value, Fingerprint::parse)?)
            }
            "p2xen.name" => self.name = Some(parse_with(key, value, values::guest_name)?),
            "p2xen.memory" => self.memory_mib = Some(parse_with(key, value, values::memory_mib)?),
            "p2xen.vcpus" => self.vcpus = Some(parse_with(key, value, values::vcpus)?),
            "p2xen.disks" => {
                self.disks = Some(parse_with(key, value, |v| {
                    let disks = v
                        .split(',')
                        .map(values::disk_name)
                        .collect::<Result<Vec<_>, _>>()?;
                    match disks
                        .iter()
                        .enumerate()
                        .find(|(i, d)| disks[..*i].contains(d))
                    {
                        Some((_, dup)) => Err(format!("{dup} is listed twice")),
                        None => Ok(disks),
                    }
                })?)
            }
            "p2xen.layout" => self.layout = parse_with(key, value, Layout::parse)?,
            "p2xen.type" => self.xen_type = Some(parse_with(key, value, XenType::parse)?),
            "p2xen.bridge" => self.bridge = Some(parse_with(key, value, values::interface_name)?),
            "p2xen.post" => self.post = parse_with(key, value, EndAction::parse)?,
            "p2xen.fail" => self.fail = parse_with(key, value, EndAction::parse_fail)?,
            "p2xen.console" => self.console = Some(parse_with(key, value, values::console_name)?),
            "p2xen.debug" => {
                self.debug = values::flag(value).map_err(|reason| bad(key, value, reason))?
            }
            "p2xen.bootdev" => self.bootdev = Some(parse_with(key, value, values::disk_name)?),
            "p2xen.settle" => {
                self.settle = Duration::from_secs(parse_with(key, value, values::settle_secs)?)
            }
            "p2xen.limit" => {
                self.limit = parse_with(key, value, |v| {
                    Rate::parse_limit(v).map_err(|e| e.to_string())
                })?
            }
            "p2xen.blacklist" => {
                self.blacklist = parse_with(key, value, |v| {
                    v.split(',').map(values::module_name).collect()
                })?
            }
            "rd.net.timeout.carrier" => {
                self.carrier_timeout = Some(Duration::from_secs(parse_with(
                    key,
                    value,
                    values::settle_secs,
                )?))
            }
            unknown => self.warnings.push(CmdlineWarning::UnknownKey {
                key: unknown.to_string(),
            }),
        }
        Ok(())
    }

    /// The `p2xen.*` parameters that reproduce this configuration, for the
    /// menu's "next time, boot with" line. Defaults are left out; values with
    /// white space are quoted the way the kernel reads them back.
    pub fn to_cmdline(&self) -> String {
        let mut out: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &self.server {
            out.push(("p2xen.server", s.to_string()));
        }
        if let Some(t) = &self.token {
            out.push(("p2xen.token", t.as_str().to_string()));
        }
        if let Some(f) = &self.fingerprint {
            out.push(("p2xen.fingerprint", f.to_string()));
        }
        if let Some(n) = &self.name {
            out.push(("p2xen.name", n.clone()));
        }
        if let Some(m) = self.memory_mib {
            out.push(("p2xen.memory", format!("{m}M")));
        }
        if let Some(v) = self.vcpus {
            out.push(("p2xen.vcpus", v.to_string()));
        }
        if let Some(d) = self.disks.as_ref().filter(|d| !d.is_empty()) {
            out.push(("p2xen.disks", d.join(",")));
        }
        if self.layout != Layout::Disk {
            out.push(("p2xen.layout", self.layout.to_string()));
        }
        if let Some(t) = self.xen_type {
            out.push(("p2xen.type", t.to_string()));
        }
        if let Some(b) = &self.bridge {
            out.push(("p2xen.bridge", b.clone()));
        }
        if self.post != EndAction::Poweroff {
            out.push(("p2xen.post", self.post.to_string()));
        }
        if self.fail != EndAction::Shell {
            out.push(("p2xen.fail", self.fail.to_string()));
        }
        let default_mode = if self.server.is_some() {
            Mode::Auto
        } else {
            Mode::Menu
        };
        if self.mode != default_mode {
            out.push(("p2xen.mode", self.mode.to_string()));
        }
        if let Some(c) = &self.console {
            out.push(("p2xen.console", c.clone()));
        }
        if let Some(b) = &self.bootdev {
            out.push(("p2xen.bootdev", b.clone()));
        }
        if self.settle != DEFAULT_SETTLE {
            out.push(("p2xen.settle", self.settle.as_secs().to_string()));
        }
        if !self.blacklist.is_empty() {
            out.push(("p2xen.blacklist", self.blacklist.join(",")));
        }
        if let Some(r) = self.limit {
            out.push(("p2xen.limit", r.bytes_per_sec().to_string()));
        }
        let mut line: Vec<String> = out
            .into_iter()
            .map(|(k, v)| {
                if v.chars().any(char::is_whitespace) {
                    format!("{k}=\"{v}\"")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if self.debug {
            line.push("p2xen.debug".into());
        }
        line.join(" ")
    }
}

/// The `ip=` entries: one per interface and address family (dracut gives
/// each interface its own `ip=`, and `ip=eth0:dhcp ip=eth0:auto6` is dual
/// stack). A second entry for the same slot replaces the first, as for any
/// kernel parameter, and is reported.
#[derive(Default)]
struct IpEntries {
    entries: Vec<(IpParam, usize)>,
}

impl IpEntries {
    fn slot(p: &IpParam) -> (Option<String>, bool) {
        (p.device().map(str::to_string), p.is_v6())
    }

    fn add(&mut self, p: IpParam) {
        let slot = Self::slot(&p);
        match self.entries.iter_mut().find(|(e, _)| Self::slot(e) == slot) {
            Some(e) => {
                e.0 = p;
                e.1 += 1;
            }
            None => self.entries.push((p, 1)),
        }
    }

    fn finish(self) -> (Vec<IpParam>, Vec<CmdlineWarning>) {
        let repeated = self
            .entries
            .iter()
            .filter(|(_, n)| *n > 1)
            .map(|(_, count)| CmdlineWarning::Repeated {
                key: "ip".into(),
                count: *count,
            })
            .collect();
        (self.entries.into_iter().map(|(p, _)| p).collect(), repeated)
    }
}

fn bad(key: &str, value: Option<&str>, reason: String) -> CmdlineError {
    let value = match (key, value) {
        ("p2xen.token", _) => "<redacted>".to_string(),
        (_, v) => v.unwrap_or_default().to_string(),
    };
    CmdlineError::BadValue {
        key: key.to_string(),
        value,
        reason,
        accepted: accepted(key),
    }
}

/// Runs a value parser for `key`, turning a missing value or a refusal into
/// an error that names the key and what it accepts.
fn parse_with<T>(
    key: &str,
    value: Option<&str>,
    parser: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, CmdlineError> {
    let v = value.ok_or_else(|| CmdlineError::MissingValue {
        key: key.to_string(),
        accepted: accepted(key),
    })?;
    parser(v).map_err(|reason| bad(key, value, reason))
}

#[cfg(test)]
mod tests;
