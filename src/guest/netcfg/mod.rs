//! The guest's network configuration after migration: each source NIC
//! becomes a vif (eth0, eth1, ... in the order of the xl config's `vif`
//! list, MAC kept), and the guest's files that name the old interfaces
//! (`enp3s0f1`, `bond0`) are rewritten so the same addresses come up on the
//! new names. Formats: RHEL/SUSE `ifcfg-*`, Debian `/etc/network/interfaces`
//! (+ `interfaces.d`), netplan, NetworkManager keyfiles, systemd-networkd.
//!
//! Bond and VLAN membership is not in the machine description: it is read
//! from the guest's own `ifcfg-*` and `interfaces` files. A bond of several
//! NICs found there becomes one vif (the first slave's MAC) carrying the
//! bond's addresses, unless `--vif-per-nic`. Bonds in netplan,
//! NetworkManager or networkd are kept as bonds over the renamed NICs (one
//! vif per NIC): their membership is not parsed.
//!
//! Each rewriter is a pure function of the file's text and the [`NetMap`];
//! a file a rewriter does not understand is left as it is and named in a
//! warning.

pub mod ifcfg;
mod ini;
pub mod interfaces;
pub mod netplan;
pub mod networkd;
pub mod nmconnection;

use std::collections::{BTreeMap, BTreeSet};

use super::FixupKind;
use super::change::{Change, Planned, edit};
use super::guestfs::{GuestFs, GuestFsError, gjoin};
use super::xlcfg::valid_mac;

/// A bond and its slaves, as the guest's config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub name: String,
    pub slaves: Vec<String>,
}

/// What the guest's interface names become.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetMap {
    /// Old interface name (physical NIC or collapsed bond) → vif name.
    names: BTreeMap<String, String>,
    /// Lower-case MAC → vif name.
    macs: BTreeMap<String, String>,
    /// Collapsed bond → its vif name.
    collapsed: BTreeMap<String, String>,
    /// Slaves of collapsed bonds: their own config is disabled.
    absorbed: BTreeSet<String>,
    /// MACs of the NICs that get no vif (the other slaves of a collapsed bond).
    pub dropped_macs: Vec<String>,
    /// (vif name, lower-case MAC) in the config's order.
    vifs: Vec<(String, String)>,
}

/// The guest's name of the `i`-th vif: netfront devices are named by the
/// kernel in the order of the config's `vif` list.
pub fn vif_name(i: usize) -> String {
    format!("eth{i}")
}

impl NetMap {
    /// `nics`: (name, MAC) of the source NICs in the machine description's
    /// order (the order xl gives the vifs); those without a valid MAC get
    /// no vif (as in the xl config) and are not mapped.
    pub fn new(nics: &[(String, String)], bonds: &[Bond], vif_per_nic: bool) -> Self {
        let mut map = NetMap::default();
        let usable: Vec<(&str, String)> = nics
            .iter()
            .filter(|(_, mac)| valid_mac(mac))
            .map(|(n, mac)| (n.as_str(), mac.to_ascii_lowercase()))
            .collect();
        // A bond is collapsed only if all its slaves are NICs with a vif:
        // else the bond is kept over the renamed NICs.
        let collapse: Vec<&Bond> = if vif_per_nic {
            Vec::new()
        } else {
            bonds
                .iter()
                .filter(|b| {
                    b.slaves.len() > 1
                        && b.slaves.iter().all(|s| usable.iter().any(|(n, _)| n == s))
                })
                .collect()
        };
        let mut next = 0;
        for (name, mac) in &usable {
            let bond = collapse.iter().find(|b| b.slaves.iter().any(|s| s == name));
            if let Some(b) = bond {
                map.absorbed.insert((*name).to_string());
                if map.collapsed.contains_key(&b.name) {
                    map.dropped_macs.push(mac.clone());
                    continue;
                }
                let vif = vif_name(next);
                next += 1;
                map.collapsed.insert(b.name.clone(), vif.clone());
                map.names.insert(b.name.clone(), vif.clone());
                map.macs.insert(mac.clone(), vif.clone());
                map.vifs.push((vif, mac.clone()));
                continue;
            }
            let vif = vif_name(next);
            next += 1;
            // A NIC without a name is known to the guest's files by MAC only.
            if !name.is_empty() {
                map.names.insert((*name).to_string(), vif.clone());
            }
            map.macs.insert(mac.clone(), vif.clone());
            map.vifs.push((vif, mac.clone()));
        }
        map
    }

    /// Teaches the map the name the guest gave the NIC with `mac`: the
    /// machine description names NICs as the live system saw them, which
    /// may differ from the installed system's names.
    pub fn learn(&mut self, name: &str, mac: &str) {
        let mac = mac.to_ascii_lowercase();
        if name.is_empty() || self.names.contains_key(name) || self.absorbed.contains(name) {
            return;
        }
        if let Some(vif) = self.macs.get(&mac) {
            if self.collapsed.values().any(|v| v == vif) {
                return;
            }
            self.names.insert(name.to_string(), vif.clone());
        }
    }

    /// The new name of an interface, or of a VLAN on one (`eno1.100` →
    /// `eth0.100`); `None` if it is not renamed.
    pub fn rename(&self, name: &str) -> Option<String> {
        if let Some(n) = self.names.get(name) {
            return Some(n.clone());
        }
        let (parent, vid) = name.rsplit_once('.')?;
        if vid.is_empty() || !vid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(format!("{}.{vid}", self.names.get(parent)?))
    }

    pub fn by_mac(&self, mac: &str) -> Option<&str> {
        self.macs.get(&mac.to_ascii_lowercase()).map(String::as_str)
    }

    /// A slave of a bond that became one vif.
    pub fn is_absorbed(&self, name: &str) -> bool {
        self.absorbed.contains(name)
    }

    /// The vif of a bond that became one.
    pub fn collapsed(&self, bond: &str) -> Option<&str> {
        self.collapsed.get(bond).map(String::as_str)
    }

    /// The first name in `text` of a bond that became one vif.
    pub fn collapsed_in(&self, text: &str) -> Option<&str> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')))
            .find_map(|t| self.collapsed.get_key_value(t).map(|(k, _)| k.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Where the vifs' names are pinned in a systemd guest.
pub const PIN_DIR: &str = "/etc/systemd/network";

/// udev's `.link` file keeping the vif with `mac` named `name`: since
/// systemd 251 the predictable name of a netfront NIC is `enX0`, not the
/// kernel's `eth0` the configuration was rewritten to. `90-` sorts before
/// the default `99-default.link` and after the administrator's own; the
/// `Type=` match keeps VLANs and bonds, which share the MAC, out of it.
pub fn pin_link(name: &str, mac: &str) -> String {
    format!(
        "# Written by p2xen convert: the Xen vif keeps the name its network\n\
         # configuration was rewritten to.\n\
         [Match]\nMACAddress={mac}\nType=ether\n\n[Link]\nName={name}\n"
    )
}

/// Replaces each interface name in `text` that the map renames; names are
/// runs of `[A-Za-z0-9_.@-]` (a MAC's colons separate, so MACs stay).
pub fn rename_tokens(text: &str, map: &NetMap) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-');
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.is_empty() {
            return;
        }
        match map.rename(token) {
            Some(n) => out.push_str(&n),
            None => out.push_str(token),
        }
        token.clear();
    };
    for c in text.chars() {
        if is_name(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// What a rewriter makes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Nothing in it names a renamed interface.
    Unchanged,
    /// New content, and the file's new name in the same directory if it
    /// is named after the interface.
    Edit {
        text: String,
        rename_to: Option<String>,
    },
    /// The config of a slave of a collapsed bond: renamed out of the way
    /// (the name gains [`DISABLED_SUFFIX`]) so that it no longer applies.
    Disable,
    /// Not understood: left as is, the reason goes into a warning.
    Unknown(String),
}

impl Rewrite {
    /// `new` as an edit in place, if it differs from `old`.
    pub fn edited(old: &str, new: String) -> Self {
        if new == old {
            Rewrite::Unchanged
        } else {
            Rewrite::Edit {
                text: new,
                rename_to: None,
            }
        }
    }
}

/// Suffix the network scripts, NetworkManager and wicked all ignore.
pub const DISABLED_SUFFIX: &str = ".p2xen.orig";

/// The planned changes of one file's rewrite.
fn planned_of(path: &str, old: &str, rw: Rewrite, warnings: &mut Vec<String>) -> Vec<Planned> {
    let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
    let kind = FixupKind::NetConfig;
    let note = "the interface is named differently under Xen (netfront, MAC kept)";
    match rw {
        Rewrite::Unchanged => Vec::new(),
        Rewrite::Unknown(why) => {
            warnings.push(format!("net-config: {path} left as is: {why}"));
            Vec::new()
        }
        Rewrite::Disable => vec![Planned::new(
            kind,
            Change::Rename {
                from: path.to_string(),
                to: format!("{path}{DISABLED_SUFFIX}"),
            },
            "slave of a bond that became one vif: disabled",
        )],
        Rewrite::Edit { text, rename_to } => {
            let mut out = Vec::new();
            let mut target = path.to_string();
            if let Some(name) = rename_to {
                let to = gjoin(dir, &name);
                if to != path {
                    out.push(Planned::new(
                        kind,
                        Change::Rename {
                            from: path.to_string(),
                            to: to.clone(),
                        },
                        "named after the interface",
                    ));
                    target = to;
                }
            }
            out.extend(edit(kind, &target, old, text, note));
            out
        }
    }
}

/// The guest's network files, by format.
struct Files {
    ifcfg: Vec<(String, String)>,
    /// Slaves' ifcfg files an earlier conversion disabled: read for bond
    /// membership only, so that a second run gives the same vifs.
    disabled_ifcfg: Vec<(String, String)>,
    routes: Vec<(String, String)>,
    interfaces: Vec<(String, String)>,
    netplan: Vec<(String, String)>,
    nm: Vec<(String, String)>,
    networkd: Vec<(String, String)>,
}

fn read_dir_files(
    gfs: &GuestFs,
    dir: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, GuestFsError> {
    let mut out = Vec::new();
    for name in gfs.list(dir)? {
        if !keep(&name) {
            continue;
        }
        let path = gjoin(dir, &name);
        if let Some(text) = gfs.read(&path)? {
            out.push((path, text));
        }
    }
    Ok(out)
}

fn read_files(gfs: &GuestFs) -> Result<Files, GuestFsError> {
    let mut ifcfg = Vec::new();
    let mut routes = Vec::new();
    let mut disabled_ifcfg = Vec::new();
    for dir in ["/etc/sysconfig/network-scripts", "/etc/sysconfig/network"] {
        ifcfg.extend(read_dir_files(gfs, dir, ifcfg::is_config_name)?);
        disabled_ifcfg.extend(read_dir_files(gfs, dir, |n| {
            n.starts_with("ifcfg-") && n.ends_with(DISABLED_SUFFIX)
        })?);
        routes.extend(read_dir_files(gfs, dir, ifcfg::is_route_name)?);
    }
    let mut interfaces = Vec::new();
    if let Some(t) = gfs.read("/etc/network/interfaces")? {
        interfaces.push(("/etc/network/interfaces".to_string(), t));
    }
    // ifupdown's `source-directory` default skips names with dots.
    interfaces.extend(read_dir_files(gfs, "/etc/network/interfaces.d", |n| {
        !n.starts_with('.') && !n.ends_with('~')
    })?);
    let netplan = read_dir_files(gfs, "/etc/netplan", |n| n.ends_with(".yaml"))?;
    let nm = read_dir_files(gfs, "/etc/NetworkManager/system-connections", |n| {
        !n.starts_with('.') && !n.ends_with('~')
    })?;
    let networkd = read_dir_files(gfs, "/etc/systemd/network", |n| {
        n.ends_with(".network") || n.ends_with(".link") || n.ends_with(".netdev")
    })?;
    Ok(Files {
        ifcfg,
        disabled_ifcfg,
        routes,
        interfaces,
        netplan,
        nm,
        networkd,
    })
}

/// The plan: the vif map and the file changes. `nics`: (name, MAC) from the
/// machine description. Returns the map (for the xl config's vifs), the
/// changes and warnings.
pub fn plan(
    gfs: &GuestFs,
    nics: &[(String, String)],
    vif_per_nic: bool,
) -> Result<(NetMap, Vec<Planned>, Vec<String>), GuestFsError> {
    let files = read_files(gfs)?;
    let map = learn_map(&files, nics, vif_per_nic);
    let mut warnings = Vec::new();
    if map.is_empty() {
        return Ok((map, Vec::new(), warnings));
    }
    let mut planned = order_rewrites(gfs, rewrites(&files, &map), &mut warnings);
    planned.extend(plan_pins(gfs, &map)?);
    Ok((map, planned, warnings))
}

/// The vif map: the NICs, the bonds the guest's files declare (disabled
/// ifcfg files too), and the names its files pin to MAC addresses.
fn learn_map(files: &Files, nics: &[(String, String)], vif_per_nic: bool) -> NetMap {
    let mut bonds = Vec::new();
    for (path, text) in files.ifcfg.iter().chain(&files.disabled_ifcfg) {
        let name = file_name(path);
        bonds.extend(ifcfg::bonds(name.trim_end_matches(DISABLED_SUFFIX), text));
    }
    for (_, text) in &files.interfaces {
        bonds.extend(interfaces::bonds(text));
    }
    let bonds = merge_bonds(bonds);
    let mut map = NetMap::new(nics, &bonds, vif_per_nic);
    for (path, text) in &files.ifcfg {
        if let Some((name, mac)) = ifcfg::name_and_mac(file_name(path), text) {
            map.learn(&name, &mac);
        }
    }
    for (_, text) in &files.nm {
        if let Some((name, mac)) = nmconnection::name_and_mac(text) {
            map.learn(&name, &mac);
        }
    }
    map
}

/// Every network file with what its format's rewriter makes of it:
/// (path, text, rewrite).
fn rewrites<'a>(files: &'a Files, map: &NetMap) -> Vec<(&'a str, &'a str, Rewrite)> {
    let mut rewrites: Vec<(&str, &str, Rewrite)> = Vec::new();
    for (path, text) in &files.ifcfg {
        rewrites.push((path, text, ifcfg::rewrite(file_name(path), text, map)));
    }
    for (path, text) in &files.routes {
        rewrites.push((
            path,
            text,
            ifcfg::rewrite_routes(file_name(path), text, map),
        ));
    }
    for (path, text) in &files.interfaces {
        rewrites.push((path, text, interfaces::rewrite(text, map)));
    }
    for (path, text) in &files.netplan {
        rewrites.push((path, text, netplan::rewrite(text, map)));
    }
    for (path, text) in &files.nm {
        rewrites.push((path, text, nmconnection::rewrite(text, map)));
    }
    for (path, text) in &files.networkd {
        rewrites.push((path, text, networkd::rewrite(text, map)));
    }
    rewrites
}

/// The rewrites as planned changes, disabled files first: a bond's file
/// renamed to ifcfg-eth0 may take the place of its slave's ifcfg-eth0. A
/// rename onto a file that exists and is not moved away is refused.
fn order_rewrites(
    gfs: &GuestFs,
    rewrites: Vec<(&str, &str, Rewrite)>,
    warnings: &mut Vec<String>,
) -> Vec<Planned> {
    let vacated: Vec<&str> = rewrites
        .iter()
        .filter(|(_, _, rw)| *rw == Rewrite::Disable)
        .map(|(p, _, _)| *p)
        .collect();
    let mut first = Vec::new();
    let mut planned = Vec::new();
    for (path, text, mut rw) in rewrites {
        if let Rewrite::Edit {
            rename_to: Some(name),
            ..
        } = &rw
        {
            let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
            let to = gjoin(dir, name);
            // A file renamed away by another edit is not counted as freed:
            // the order of two such renames would decide which one is lost.
            if to != path && gfs.exists(&to) && !vacated.contains(&to.as_str()) {
                rw = Rewrite::Unknown(format!("{to} exists already"));
            }
        }
        let into = if rw == Rewrite::Disable {
            &mut first
        } else {
            &mut planned
        };
        into.extend(planned_of(path, text, rw, warnings));
    }
    first.append(&mut planned);
    first
}

/// The `.link` pins, for guests whose udev reads them (systemd's udevd).
fn plan_pins(gfs: &GuestFs, map: &NetMap) -> Result<Vec<Planned>, GuestFsError> {
    let udevd = [
        "/lib/systemd/systemd-udevd",
        "/usr/lib/systemd/systemd-udevd",
    ];
    if !udevd.iter().any(|p| gfs.exists(p)) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let note = "keeps the vif's name (netfront would be enX0 under systemd 251 and later)";
    for (name, mac) in &map.vifs {
        let path = gjoin(PIN_DIR, &format!("90-p2xen-{name}.link"));
        let new = pin_link(name, mac);
        match gfs.read(&path)? {
            Some(old) => out.extend(edit(FixupKind::NetConfig, &path, &old, new, note)),
            None => out.push(Planned::new(
                FixupKind::NetConfig,
                Change::Write {
                    path,
                    old: None,
                    new,
                },
                note,
            )),
        }
    }
    Ok(out)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One bond per name, its slaves in the order first found.
fn merge_bonds(bonds: Vec<Bond>) -> Vec<Bond> {
    let mut out: Vec<Bond> = Vec::new();
    for b in bonds {
        match out.iter_mut().find(|o| o.name == b.name) {
            Some(o) => {
                for s in b.slaves {
                    if !o.slaves.contains(&s) {
                        o.slaves.push(s);
                    }
                }
            }
            None => out.push(b),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn nics(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .collect()
    }

    /// A dual-port card, enp3s0f0 and enp3s0f1.
    pub fn two_port_map() -> NetMap {
        NetMap::new(
            &nics(&[
                ("enp3s0f0", "3c:ec:ef:12:34:56"),
                ("enp3s0f1", "3c:ec:ef:12:34:57"),
            ]),
            &[],
            false,
        )
    }

    /// eno1 and eno2 in bond0, which became one vif.
    pub fn bonded_map() -> NetMap {
        NetMap::new(
            &nics(&[("eno1", "52:54:00:00:00:01"), ("eno2", "52:54:00:00:00:02")]),
            &[bond("bond0", &["eno1", "eno2"])],
            false,
        )
    }

    /// An edit in place.
    pub fn edit(text: impl Into<String>) -> Rewrite {
        Rewrite::Edit {
            text: text.into(),
            rename_to: None,
        }
    }

    pub fn bond(name: &str, slaves: &[&str]) -> Bond {
        Bond {
            name: name.to_string(),
            slaves: slaves.iter().map(|s| s.to_string()).collect(),
        }
    }

    const A: &str = "52:54:00:00:00:0a";
    const B: &str = "52:54:00:00:00:0b";
    const C: &str = "52:54:00:00:00:0c";

    #[test]
    fn bond_of_two_becomes_one_vif_unless_vif_per_nic() {
        let n = nics(&[("eno1", A), ("eno2", B), ("enp3s0f1", C), ("eno9", "none")]);
        let bonds = [bond("bond0", &["eno1", "eno2"])];
        let m = NetMap::new(&n, &bonds, false);
        assert_eq!(m.rename("bond0").as_deref(), Some("eth0"));
        assert_eq!(m.rename("bond0.100").as_deref(), Some("eth0.100"));
        assert_eq!(m.rename("enp3s0f1").as_deref(), Some("eth1"));
        assert_eq!(m.rename("eno1"), None);
        assert_eq!(m.rename("eno9"), None);
        assert!(m.is_absorbed("eno1") && m.is_absorbed("eno2"));
        assert_eq!(m.dropped_macs, [B]);
        assert_eq!(m.by_mac("52:54:00:00:00:0C"), Some("eth1"));

        // A NIC without a name keeps its place in the vif order.
        let m = NetMap::new(&nics(&[("", A), ("eno2", B)]), &[], false);
        assert_eq!(m.rename("eno2").as_deref(), Some("eth1"));
        assert_eq!(m.rename(""), None);
        assert_eq!(rename_tokens("a: [b]", &m), "a: [b]");
        let m = NetMap::new(&n, &bonds, true);
        assert_eq!(m.rename("eno1").as_deref(), Some("eth0"));
        assert_eq!(m.rename("eno2").as_deref(), Some("eth1"));
        assert_eq!(m.rename("bond0"), None);
        assert!(m.dropped_macs.is_empty());
        // A bond with a slave that is no NIC of the source is kept.
        let m = NetMap::new(&n, &[bond("bond1", &["eno1", "eno7"])], false);
        assert_eq!(m.rename("eno1").as_deref(), Some("eth0"));
    }

    #[test]
    fn learned_names_and_tokens() {
        let mut m = NetMap::new(&nics(&[("eth0", A), ("eth1", B)]), &[], false);
        m.learn("enp3s0f1", "52:54:00:00:00:0B");
        m.learn("enp9s0", C);
        m.learn("", A);
        assert_eq!(m.rename(""), None);
        assert_eq!(m.rename("enp3s0f1").as_deref(), Some("eth1"));
        assert_eq!(m.rename("enp9s0"), None);
        assert_eq!(
            rename_tokens("link: enp3s0f1.20, [eth1, enp3s0f10] 52:54:00:00:00:0b", &m),
            "link: eth1.20, [eth1, enp3s0f10] 52:54:00:00:00:0b"
        );
    }
}
