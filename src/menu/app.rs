//! The menu's state and what each key does. No I/O here: `console` feeds
//! keys in and paints what `draw` makes of the state.

use super::backend::{
    Backend, DiskBar, DiskEntry, MachineInfo, MigrationEvent, MigrationPlan, MigrationResult,
    Net6Method, NetChoice, NetMethod,
};
use super::fields;
use super::keys::Key;
use super::prefill::{MenuPrefill, ip_of_choice, next_time_cmdline};
use crate::bootparams::{BondMode, IpParam, NetDevices};
use crate::wire::machine::{Layout, XenType};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

/// How `menu::run` ends; the init acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuOutcome {
    PowerOff,
    Reboot,
    Shell,
    /// Every console was closed (EOF/EIO); a started migration was
    /// waited for.
    ConsolesClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Network,
    Target,
    Guest,
    Review,
    Progress,
    Result,
}

impl Screen {
    pub const ALL: [Screen; 7] = [
        Screen::Overview,
        Screen::Network,
        Screen::Target,
        Screen::Guest,
        Screen::Review,
        Screen::Progress,
        Screen::Result,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Network => "Network",
            Screen::Target => "Target",
            Screen::Guest => "Guest",
            Screen::Review => "Review",
            Screen::Progress => "Progress",
            Screen::Result => "Result",
        }
    }
    pub fn number(self) -> usize {
        Screen::ALL.iter().position(|&s| s == self).unwrap_or(0) + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    Help,
    Log {
        scroll_from_end: usize,
    },
    /// The receiver's presented fingerprint, waiting for an explicit "y".
    Trust {
        fingerprint: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    NetIface,
    NetBond,
    NetSlaves,
    NetVlan,
    NetMethod,
    NetAddress,
    NetGateway,
    NetDns,
    NetMethod6,
    NetAddress6,
    NetGateway6,
    Server,
    Token,
    Fingerprint,
    Name,
    Memory,
    Vcpus,
    Disk(usize),
    Layout,
    XenType,
    Bridge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Next,
    NetApply,
    NetTest,
    FetchFingerprint,
    Start,
    ShowProgress,
    Retry,
    PowerOff,
    Reboot,
    Shell,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// Enter opens a line editor.
    Edit(Field),
    /// Enter cycles through the choices.
    Toggle(Field),
    Do(Action),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub label: String,
    pub value: String,
    pub kind: ItemKind,
}

/// What the console loop has to do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Run a rescue shell on the controlling console, then repaint.
    Shell,
    Exit(MenuOutcome),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    pub field: Field,
    pub buf: String,
}

pub const NET_METHODS: [&str; 3] = ["dhcp", "static", "off"];
pub const NET_METHODS6: [&str; 4] = ["none", "auto6 (SLAAC)", "static", "dhcp6"];
/// The bond the Network screen makes (dracut's default name).
pub const BOND_NAME: &str = "bond0";
/// Bond modes in the order the screen offers them: active-backup first,
/// the one that works with any switch.
pub const BOND_MODES: [BondMode; 7] = [
    BondMode::ActiveBackup,
    BondMode::BalanceRr,
    BondMode::BalanceXor,
    BondMode::Broadcast,
    BondMode::Lacp,
    BondMode::BalanceTlb,
    BondMode::BalanceAlb,
];
/// Lines kept for "show full log".
const LOG_LINES: usize = 5000;
const MAX_INPUT: usize = 256;

pub struct Migration {
    pub plan: MigrationPlan,
    pub events: Receiver<MigrationEvent>,
    pub bars: Vec<DiskBar>,
    pub bytes_per_sec: f64,
    pub eta_secs: Option<f64>,
    pub started: Instant,
    pub outcome: Option<Result<MigrationResult, String>>,
}

pub struct App {
    pub screen: Screen,
    pub overlay: Option<Overlay>,
    pub sel: usize,
    pub scroll: usize,
    pub editor: Option<Editor>,
    /// (text, is_error)
    pub message: Option<(String, bool)>,
    pub machine: MachineInfo,
    pub disks: Vec<DiskEntry>,
    pub net_iface: usize,
    /// 0: no bond, else BOND_MODES[i - 1].
    pub net_bond: usize,
    pub net_slaves: String,
    pub net_vlan: String,
    pub net_method: usize,
    pub net_address: String,
    pub net_gateway: String,
    pub net_dns: String,
    pub net_method6: usize,
    pub net_address6: String,
    pub net_gateway6: String,
    pub net_result: Vec<String>,
    pub server: String,
    pub token: String,
    pub fingerprint: String,
    /// The fingerprint was taken from the receiver and confirmed by the user.
    pub trusted: bool,
    pub name: String,
    pub memory: String,
    pub vcpus: String,
    pub disk_sel: Vec<bool>,
    pub layout: Layout,
    /// None: "auto", the conversion chooses.
    pub xen_type: Option<XenType>,
    pub bridge: String,
    /// `ip=` for the "next time" line: the kernel's, or what was applied
    /// on the Network screen.
    pub ip: Vec<IpParam>,
    /// `bond=`, `vlan=` for that line, likewise.
    pub net_devices: NetDevices,
    pub migration: Option<Migration>,
    pub log: Vec<String>,
    /// What the log overlay shows (a snapshot taken when it opens).
    pub log_view: Vec<String>,
}

/// The value after `current` in `all`; None after the last one, the first
/// one after None.
fn next_of<T: Copy + PartialEq>(all: &[T], current: Option<T>) -> Option<T> {
    match current.and_then(|c| all.iter().position(|x| *x == c)) {
        None => all.first().copied(),
        Some(i) => all.get(i + 1).copied(),
    }
}

/// "sda" and "/dev/sda" name the same disk.
fn same_disk(path: &std::path::Path, name: &str) -> bool {
    let p = path.to_string_lossy();
    let short = p.strip_prefix("/dev/").unwrap_or(&p);
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    short == name || *p == *name
}

impl App {
    pub fn new(prefill: MenuPrefill, backend: &dyn Backend) -> App {
        let machine = backend.machine();
        let disks = backend.disks();
        let hostname = disks
            .iter()
            .filter_map(|d| d.report.as_ref().ok())
            .flat_map(|r| {
                r.os.iter()
                    .chain(r.partitions.iter().filter_map(|p| p.os.as_ref()))
            })
            .find_map(|os| os.hostname.clone());
        let disk_sel = disks
            .iter()
            .map(|d| {
                prefill
                    .disks
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| same_disk(&d.path, n)))
            })
            .collect();
        let mut app = App {
            screen: Screen::Overview,
            overlay: None,
            sel: 0,
            scroll: 0,
            editor: None,
            message: None,
            net_iface: 0,
            net_bond: 0,
            net_slaves: machine
                .nics
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            net_vlan: String::new(),
            net_method: 0,
            net_address: String::new(),
            net_gateway: String::new(),
            net_dns: String::new(),
            net_method6: 0,
            net_address6: String::new(),
            net_gateway6: String::new(),
            net_result: Vec::new(),
            server: prefill
                .server
                .map(|s| fields::server(&s).unwrap_or(s))
                .unwrap_or_default(),
            token: prefill.token.unwrap_or_default(),
            fingerprint: prefill
                .fingerprint
                .map(|f| fields::fingerprint(&f).ok().flatten().unwrap_or(f))
                .unwrap_or_default(),
            trusted: false,
            name: prefill
                .name
                .or(hostname)
                .unwrap_or_else(|| "p2xen-guest".into()),
            memory: prefill
                .memory
                .unwrap_or_else(|| (machine.memory_bytes / (1024 * 1024)).max(32).to_string()),
            vcpus: prefill
                .vcpus
                .unwrap_or_else(|| machine.cpus.max(1).to_string()),
            disk_sel,
            layout: prefill.layout.unwrap_or_default(),
            xen_type: prefill.xen_type,
            bridge: prefill.bridge.unwrap_or_default(),
            ip: prefill.ip,
            net_devices: prefill.net,
            machine,
            disks,
            migration: None,
            log: Vec::new(),
            log_view: Vec::new(),
        };
        app.prefill_network();
        app.log(format!(
            "menu started: {} disk(s), {} NIC(s)",
            app.disks.len(),
            app.machine.nics.len()
        ));
        app
    }

    /// The kernel's `ip=`, `bond=` and `vlan=` pre-fill the Network screen,
    /// so Apply does what the boot entry asked for.
    fn prefill_network(&mut self) {
        let bond = self.net_devices.bonds.first().cloned();
        if let Some(b) = &bond {
            self.net_bond = BOND_MODES
                .iter()
                .position(|m| *m == b.mode)
                .map_or(0, |i| i + 1);
            self.net_slaves = b.slaves.join(",");
        }
        let v4 = self.ip.iter().find(|p| !p.is_v6()).cloned();
        let v6 = self.ip.iter().find(|p| p.is_v6()).cloned();
        // The VLAN the addresses go on, else the first one.
        let vlan = self
            .net_devices
            .vlans
            .iter()
            .find(|v| {
                [&v4, &v6]
                    .iter()
                    .any(|p| p.as_ref().and_then(IpParam::device) == Some(v.name.as_str()))
            })
            .or(self.net_devices.vlans.first())
            .cloned();
        let mut device = v4
            .as_ref()
            .or(v6.as_ref())
            .and_then(|p| p.device().map(str::to_string));
        if let Some(v) = &vlan {
            self.net_vlan = v.id.to_string();
            device = Some(v.parent.clone());
        }
        match &v4 {
            Some(IpParam::Static(s)) => {
                self.net_method = 1;
                self.net_address = format!("{}/{}", s.address, s.prefix_len);
                self.net_gateway = s.gateway.map(|g| g.to_string()).unwrap_or_default();
                self.net_dns = s
                    .dns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
            }
            Some(IpParam::Off) => self.net_method = 2,
            // IPv6 given alone: no IPv4 asked for.
            None if v6.is_some() => self.net_method = 2,
            _ => {}
        }
        match &v6 {
            Some(IpParam::Auto6 { .. }) => self.net_method6 = 1,
            Some(IpParam::Static6(s)) => {
                self.net_method6 = 2;
                self.net_address6 = format!("{}/{}", s.address, s.prefix_len);
                self.net_gateway6 = s.gateway.map(|g| g.to_string()).unwrap_or_default();
            }
            Some(IpParam::Dhcp6 { .. }) => self.net_method6 = 3,
            _ => {}
        }
        let on_bond = bond
            .as_ref()
            .is_some_and(|b| device.as_deref() == Some(&b.name));
        if on_bond {
            return;
        }
        if let Some(i) = device.and_then(|d| self.machine.nics.iter().position(|n| n.name == d)) {
            self.net_iface = i + 1;
        }
    }

    pub fn log(&mut self, line: String) {
        log::info!("menu: {line}");
        if self.log.len() >= LOG_LINES {
            self.log.remove(0);
        }
        self.log.push(line);
    }

    fn error(&mut self, text: String) {
        self.log(text.clone());
        self.message = Some((text, true));
    }

    fn info(&mut self, text: String) {
        self.log(text.clone());
        self.message = Some((text, false));
    }

    pub fn value(&self, f: Field) -> String {
        match f {
            Field::NetIface => match self.net_iface {
                0 => "all with link".into(),
                i => self
                    .machine
                    .nics
                    .get(i - 1)
                    .map(|n| n.name.clone())
                    .unwrap_or_default(),
            },
            Field::NetBond => match self.net_bond {
                0 => "none".into(),
                i => BOND_MODES.get(i - 1).map_or("", |m| m.as_str()).to_string(),
            },
            Field::NetSlaves => self.net_slaves.clone(),
            Field::NetVlan => {
                if self.net_vlan.is_empty() {
                    "(untagged)".into()
                } else {
                    self.net_vlan.clone()
                }
            }
            Field::NetMethod => NET_METHODS
                .get(self.net_method)
                .copied()
                .unwrap_or("")
                .into(),
            Field::NetMethod6 => NET_METHODS6
                .get(self.net_method6)
                .copied()
                .unwrap_or("")
                .into(),
            Field::NetAddress6 => self.net_address6.clone(),
            Field::NetGateway6 => self.net_gateway6.clone(),
            Field::NetAddress => self.net_address.clone(),
            Field::NetGateway => self.net_gateway.clone(),
            Field::NetDns => self.net_dns.clone(),
            Field::Server => self.server.clone(),
            Field::Token => self.token.clone(),
            Field::Fingerprint => {
                if self.fingerprint.is_empty() {
                    "(ask the receiver)".into()
                } else {
                    self.fingerprint.clone()
                }
            }
            Field::Name => self.name.clone(),
            Field::Memory => self.memory.clone(),
            Field::Vcpus => self.vcpus.clone(),
            Field::Disk(i) => {
                if self.disk_sel.get(i).copied().unwrap_or(false) {
                    "[x] copy".into()
                } else {
                    "[ ] skip".into()
                }
            }
            Field::Layout => self.layout.to_string(),
            Field::XenType => self.xen_type.map_or("auto", XenType::as_str).into(),
            Field::Bridge => {
                if self.bridge.is_empty() {
                    "(receiver's default)".into()
                } else {
                    self.bridge.clone()
                }
            }
        }
    }

    fn raw(&self, f: Field) -> String {
        match f {
            Field::Fingerprint => self.fingerprint.clone(),
            Field::Bridge => self.bridge.clone(),
            Field::NetVlan => self.net_vlan.clone(),
            _ => self.value(f),
        }
    }

    pub fn items(&self) -> Vec<Item> {
        let edit = |label: &str, f: Field| Item {
            label: label.into(),
            value: self.value(f),
            kind: ItemKind::Edit(f),
        };
        let toggle = |label: &str, f: Field| Item {
            label: label.into(),
            value: self.value(f),
            kind: ItemKind::Toggle(f),
        };
        let act = |label: &str, a: Action| Item {
            label: label.into(),
            value: String::new(),
            kind: ItemKind::Do(a),
        };
        let running = self.migration.as_ref().is_some_and(|m| m.outcome.is_none());
        match self.screen {
            Screen::Overview => vec![act("Continue to the network", Action::Next)],
            Screen::Network => {
                let mut v = vec![if self.net_bond == 0 {
                    toggle("Interface", Field::NetIface)
                } else {
                    edit("Bond NICs", Field::NetSlaves)
                }];
                v.push(toggle("Bond", Field::NetBond));
                v.push(edit("VLAN id", Field::NetVlan));
                v.push(toggle("IPv4", Field::NetMethod));
                if self.net_method == 1 {
                    v.push(edit("Address/prefix", Field::NetAddress));
                    v.push(edit("Gateway", Field::NetGateway));
                    v.push(edit("DNS servers", Field::NetDns));
                }
                v.push(toggle("IPv6", Field::NetMethod6));
                if self.net_method6 == 2 {
                    v.push(edit("IPv6 address/prefix", Field::NetAddress6));
                    v.push(edit("IPv6 gateway", Field::NetGateway6));
                }
                v.push(act("Apply network settings", Action::NetApply));
                v.push(act("Test the receiver", Action::NetTest));
                v.push(act("Continue to the target", Action::Next));
                v
            }
            Screen::Target => vec![
                edit("Receiver", Field::Server),
                edit("Token", Field::Token),
                edit("Fingerprint", Field::Fingerprint),
                act("Get the receiver's fingerprint", Action::FetchFingerprint),
                act("Continue to the guest", Action::Next),
            ],
            Screen::Guest => {
                let mut v = vec![
                    edit("Name", Field::Name),
                    edit("Memory (MiB)", Field::Memory),
                    edit("vCPUs", Field::Vcpus),
                ];
                for (i, d) in self.disks.iter().enumerate() {
                    v.push(toggle(
                        &format!("Disk {}", d.path.display()),
                        Field::Disk(i),
                    ));
                }
                v.push(toggle("Layout", Field::Layout));
                v.push(toggle("Xen type", Field::XenType));
                v.push(edit("Bridge", Field::Bridge));
                v.push(act("Continue to the review", Action::Next));
                v
            }
            Screen::Review => {
                if running {
                    vec![act("Show the running migration", Action::ShowProgress)]
                } else {
                    vec![act("Start the migration", Action::Start)]
                }
            }
            Screen::Progress => vec![],
            Screen::Result => {
                let failed = matches!(
                    self.migration.as_ref().and_then(|m| m.outcome.as_ref()),
                    Some(Err(_))
                );
                let mut v = Vec::new();
                if failed {
                    v.push(act("Back to the review (try again)", Action::Retry));
                }
                v.push(act("Power off", Action::PowerOff));
                v.push(act("Reboot", Action::Reboot));
                v.push(act("Rescue shell", Action::Shell));
                v
            }
        }
    }

    fn go(&mut self, screen: Screen) {
        self.screen = screen;
        self.sel = 0;
        self.scroll = 0;
        self.editor = None;
    }

    fn back(&mut self) {
        let prev = match self.screen {
            Screen::Overview => Screen::Overview,
            Screen::Network => Screen::Overview,
            Screen::Target => Screen::Network,
            Screen::Guest => Screen::Target,
            Screen::Review => Screen::Guest,
            Screen::Progress => Screen::Review,
            Screen::Result => Screen::Result,
        };
        self.message = None;
        self.go(prev);
    }

    /// Drains migration events; called by the console loop on every tick.
    pub fn poll_migration(&mut self) {
        let mut lines = Vec::new();
        let mut ended = false;
        if let Some(m) = self.migration.as_mut() {
            while let Ok(ev) = m.events.try_recv() {
                match ev {
                    MigrationEvent::Plan { disks } => {
                        lines.push(format!("plan: {} disk(s)", disks.len()));
                        m.bars = disks;
                    }
                    MigrationEvent::Progress {
                        disks,
                        bytes_per_sec,
                        eta_secs,
                    } => {
                        m.bars = disks;
                        m.bytes_per_sec = bytes_per_sec;
                        m.eta_secs = eta_secs;
                    }
                    MigrationEvent::Log(l) => lines.push(l),
                    MigrationEvent::Finished(r) => {
                        lines.push(format!("migration of {} finished and verified", r.name));
                        // The result screen may not have room for all.
                        lines.extend(r.warnings.iter().map(|w| format!("conversion: {w}")));
                        m.outcome = Some(Ok(r));
                        ended = true;
                    }
                    MigrationEvent::Failed(e) => {
                        lines.push(format!("migration failed: {e}"));
                        m.outcome = Some(Err(e));
                        ended = true;
                    }
                }
            }
            if m.outcome.is_none() {
                if let Err(mpsc::TryRecvError::Disconnected) = m.events.try_recv() {
                    let e = "the migration thread ended without a result".to_string();
                    lines.push(e.clone());
                    m.outcome = Some(Err(e));
                    ended = true;
                }
            }
        }
        for l in lines {
            self.log(l);
        }
        if ended && self.screen == Screen::Progress && self.editor.is_none() {
            self.go(Screen::Result);
        }
    }

    pub fn migration_running(&self) -> bool {
        self.migration.as_ref().is_some_and(|m| m.outcome.is_none())
    }

    pub fn plan(&self) -> Result<MigrationPlan, String> {
        let server = fields::server(&self.server)?;
        let token = fields::token(&self.token)?;
        let fingerprint = fields::fingerprint(&self.fingerprint)?
            .ok_or("fingerprint: not set; get it from the receiver on the Target screen")?;
        let disks: Vec<PathBuf> = self
            .disks
            .iter()
            .zip(&self.disk_sel)
            .filter(|(_, s)| **s)
            .map(|(d, _)| d.path.clone())
            .collect();
        if disks.is_empty() {
            return Err("disks: choose at least one disk to copy".into());
        }
        Ok(MigrationPlan {
            server,
            token,
            fingerprint,
            name: fields::name(&self.name)?,
            disks,
            memory_mib: fields::memory_mib(&self.memory)?,
            vcpus: fields::vcpus(&self.vcpus)?,
            layout: self.layout,
            xen_type: self.xen_type,
            bridge: fields::bridge(&self.bridge)?,
        })
    }

    pub fn next_time(&self) -> Option<String> {
        self.plan()
            .ok()
            .map(|p| next_time_cmdline(&p, &self.ip, &self.net_devices))
    }

    fn nic_names(&self) -> Vec<&str> {
        self.machine.nics.iter().map(|n| n.name.as_str()).collect()
    }

    fn validate(&self, field: Field, text: &str) -> Result<(), String> {
        match field {
            Field::NetVlan => fields::vlan_id(text).map(drop),
            Field::NetSlaves => fields::slaves(text, &self.nic_names()).map(drop),
            Field::NetAddress6 => fields::cidr6(text).map(drop),
            Field::NetGateway6 => fields::gateway6(text).map(drop),
            Field::NetAddress => fields::cidr(text).map(drop),
            Field::NetGateway => fields::gateway(text).map(drop),
            Field::NetDns => fields::dns(text).map(drop),
            Field::Server => fields::server(text).map(drop),
            Field::Token => fields::token(text).map(drop),
            Field::Fingerprint => fields::fingerprint(text).map(drop),
            Field::Name => fields::name(text).map(drop),
            Field::Memory => fields::memory_mib(text).map(drop),
            Field::Vcpus => fields::vcpus(text).map(drop),
            Field::Bridge => fields::bridge(text).map(drop),
            _ => Ok(()),
        }
    }

    fn store(&mut self, field: Field, text: String) {
        match field {
            Field::NetAddress => self.net_address = text,
            Field::NetGateway => self.net_gateway = text,
            Field::NetDns => self.net_dns = text,
            Field::NetVlan => self.net_vlan = text.trim().to_string(),
            Field::NetSlaves => self.net_slaves = text.trim().to_string(),
            Field::NetAddress6 => self.net_address6 = text.trim().to_string(),
            Field::NetGateway6 => self.net_gateway6 = text.trim().to_string(),
            Field::Server => {
                self.server = fields::server(&text).unwrap_or(text);
                self.trusted = false;
            }
            Field::Token => self.token = text,
            Field::Fingerprint => {
                self.fingerprint = fields::fingerprint(&text)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                self.trusted = false;
            }
            Field::Name => self.name = text.trim().to_string(),
            Field::Memory => self.memory = text.trim().to_string(),
            Field::Vcpus => self.vcpus = text.trim().to_string(),
            Field::Bridge => self.bridge = text.trim().to_string(),
            _ => {}
        }
    }

    fn toggle(&mut self, field: Field) {
        match field {
            Field::NetIface => {
                self.net_iface = (self.net_iface + 1) % (self.machine.nics.len() + 1);
            }
            Field::NetMethod => self.net_method = (self.net_method + 1) % NET_METHODS.len(),
            Field::NetMethod6 => self.net_method6 = (self.net_method6 + 1) % NET_METHODS6.len(),
            Field::NetBond => self.net_bond = (self.net_bond + 1) % (BOND_MODES.len() + 1),
            Field::Disk(i) => {
                if let Some(s) = self.disk_sel.get_mut(i) {
                    *s = !*s;
                }
            }
            Field::Layout => {
                self.layout = next_of(Layout::ALL, Some(self.layout)).unwrap_or_default()
            }
            // auto, then each type, then auto again.
            Field::XenType => self.xen_type = next_of(XenType::ALL, self.xen_type),
            _ => {}
        }
    }

    /// One key from the controlling console.
    pub fn key(&mut self, key: Key, backend: &dyn Backend) -> Option<Request> {
        if let Some(overlay) = self.overlay.clone() {
            return self.overlay_key(overlay, key);
        }
        if self.editor.is_some() {
            self.editor_key(key);
            return None;
        }
        let items = self.items();
        match key {
            Key::Up | Key::Char('k') => {
                if self.screen == Screen::Overview {
                    self.scroll = self.scroll.saturating_sub(1);
                } else {
                    self.sel = self.sel.saturating_sub(1);
                }
            }
            Key::Down | Key::Char('j') | Key::Tab => {
                if self.screen == Screen::Overview {
                    self.scroll = self.scroll.saturating_add(1);
                } else if self.sel + 1 < items.len() {
                    self.sel += 1;
                }
            }
            Key::Esc | Key::Backspace | Key::Left | Key::Char('b') => self.back(),
            Key::Char('?') | Key::Char('h') => self.overlay = Some(Overlay::Help),
            Key::Char('l') | Key::Char('L') => {
                // The whole log of the live image when there is one (init,
                // drivers, network, copy), else what the menu saw.
                self.log_view = backend.full_log().unwrap_or_else(|| self.log.clone());
                self.overlay = Some(Overlay::Log { scroll_from_end: 0 })
            }
            Key::Char('!') => return Some(Request::Shell),
            Key::Char('p') if self.migration.is_some() => {
                let done = self.migration.as_ref().is_some_and(|m| m.outcome.is_some());
                self.go(if done {
                    Screen::Result
                } else {
                    Screen::Progress
                });
            }
            Key::Char('n') | Key::Right => return self.act(Action::Next, backend),
            Key::Enter | Key::Char(' ') => {
                if let Some(item) = items.get(self.sel) {
                    return self.activate(item.kind.clone(), backend);
                }
            }
            Key::Char(c @ '1'..='9') => {
                let i = (c as usize) - ('1' as usize);
                if let Some(item) = items.get(i) {
                    self.sel = i;
                    return self.activate(item.kind.clone(), backend);
                }
                self.message = Some((format!("no item {c} on this screen"), true));
            }
            Key::Char(c) => {
                self.message = Some((
                    format!("key '{c}' does nothing here; ? shows the keys"),
                    true,
                ));
            }
            Key::Redraw => {}
        }
        None
    }

    fn overlay_key(&mut self, overlay: Overlay, key: Key) -> Option<Request> {
        match overlay {
            Overlay::Help => self.overlay = None,
            Overlay::Log { scroll_from_end } => {
                let s = match key {
                    Key::Up | Key::Char('k') => scroll_from_end.saturating_add(1),
                    Key::Down | Key::Char('j') => scroll_from_end.saturating_sub(1),
                    Key::Char('!') => return Some(Request::Shell),
                    _ => {
                        self.overlay = None;
                        return None;
                    }
                };
                self.overlay = Some(Overlay::Log {
                    scroll_from_end: s.min(self.log_view.len()),
                });
            }
            Overlay::Trust { fingerprint } => {
                self.overlay = None;
                if key == Key::Char('y') || key == Key::Char('Y') {
                    self.fingerprint = fingerprint.clone();
                    self.trusted = true;
                    self.info(format!("trusted the receiver's fingerprint {fingerprint}"));
                    self.go(Screen::Guest);
                } else {
                    self.error("fingerprint not trusted; nothing will be sent".into());
                }
            }
        }
        None
    }

    fn editor_key(&mut self, key: Key) {
        let Some(ed) = self.editor.as_mut() else {
            return;
        };
        match key {
            Key::Esc => {
                self.editor = None;
                self.message = None;
                return;
            }
            Key::Backspace => {
                ed.buf.pop();
            }
            Key::Char(c) => {
                if ed.buf.len() < MAX_INPUT {
                    ed.buf.push(c);
                }
            }
            Key::Enter | Key::Tab => {
                let (field, buf) = (ed.field, ed.buf.clone());
                match self.validate(field, &buf) {
                    Ok(()) => {
                        self.store(field, buf);
                        self.editor = None;
                        self.message = None;
                    }
                    Err(e) => self.message = Some((e, true)),
                }
                return;
            }
            _ => return,
        }
        // Validated as typed: the message line says at once what is wrong.
        let (field, buf) = (ed.field, ed.buf.clone());
        self.message = self.validate(field, &buf).err().map(|e| (e, true));
    }

    fn activate(&mut self, kind: ItemKind, backend: &dyn Backend) -> Option<Request> {
        self.message = None;
        match kind {
            ItemKind::Edit(f) => {
                self.editor = Some(Editor {
                    field: f,
                    buf: self.raw(f),
                });
                None
            }
            ItemKind::Toggle(f) => {
                self.toggle(f);
                None
            }
            ItemKind::Do(a) => self.act(a, backend),
        }
    }

    fn act(&mut self, action: Action, backend: &dyn Backend) -> Option<Request> {
        match action {
            Action::Next => self.next(backend),
            Action::NetApply => self.apply_network(backend),
            Action::NetTest => match fields::server(&self.server) {
                Err(_) => {
                    self.error("set the receiver's address on the Target screen first".into())
                }
                Ok(server) => match backend.test_receiver(&server) {
                    Ok(t) => self.info(format!("receiver {server}: {t}")),
                    Err(e) => self.error(format!("receiver {server}: {e}")),
                },
            },
            Action::FetchFingerprint => self.fetch_fingerprint(backend),
            Action::Start => self.start(backend),
            Action::ShowProgress => self.go(Screen::Progress),
            Action::Retry => {
                self.migration = None;
                self.go(Screen::Review);
            }
            Action::PowerOff => return Some(Request::Exit(MenuOutcome::PowerOff)),
            Action::Reboot => return Some(Request::Exit(MenuOutcome::Reboot)),
            Action::Shell => return Some(Request::Exit(MenuOutcome::Shell)),
        }
        None
    }

    /// The Network screen's values as the typed `bond=`/`vlan=`/`ip=` values;
    /// the error names the field.
    pub fn net_choice(&self) -> Result<NetChoice, String> {
        let method = match self.net_method {
            0 => NetMethod::Dhcp,
            1 => {
                let (address, prefix_len) = fields::cidr(&self.net_address)?;
                NetMethod::Static {
                    address,
                    prefix_len,
                    gateway: fields::gateway(&self.net_gateway)?,
                    dns: fields::dns(&self.net_dns)?,
                }
            }
            _ => NetMethod::Off,
        };
        let method6 = match self.net_method6 {
            1 => Net6Method::Auto6,
            2 => {
                let (address, prefix_len) = fields::cidr6(&self.net_address6)?;
                Net6Method::Static {
                    address,
                    prefix_len,
                    gateway: fields::gateway6(&self.net_gateway6)?,
                }
            }
            3 => Net6Method::Dhcp6,
            _ => Net6Method::None,
        };
        if method == NetMethod::Off && method6 == Net6Method::None {
            return Err("IPv4: off and IPv6: none leave the network down; choose one".into());
        }
        let bond = match self.net_bond {
            0 => None,
            i => {
                let mode = BOND_MODES
                    .get(i - 1)
                    .copied()
                    .unwrap_or(BondMode::ActiveBackup);
                let slaves = fields::slaves(&self.net_slaves, &self.nic_names())?;
                Some(fields::bond(BOND_NAME, &slaves, mode)?)
            }
        };
        let interface = match self.net_iface {
            _ if bond.is_some() => None,
            0 => None,
            i => self.machine.nics.get(i - 1).map(|n| n.name.clone()),
        };
        let vlan = match fields::vlan_id(&self.net_vlan)? {
            None => None,
            Some(id) => {
                let parent = bond
                    .as_ref()
                    .map(|b| b.name.clone())
                    .or_else(|| interface.clone())
                    .ok_or_else(|| {
                        format!("VLAN id: choose one interface or a bond to carry VLAN {id}")
                    })?;
                Some(fields::vlan(&parent, id)?)
            }
        };
        Ok(NetChoice {
            interface,
            bond,
            vlan,
            method,
            method6,
        })
    }

    fn apply_network(&mut self, backend: &dyn Backend) {
        let choice = match self.net_choice() {
            Ok(c) => c,
            Err(e) => return self.error(e),
        };
        match backend.configure_network(&choice) {
            Ok(lines) => {
                for l in &lines {
                    self.log(format!("network: {l}"));
                }
                self.net_result = lines;
                self.ip = ip_of_choice(&choice, &self.ip);
                let kept = std::mem::take(&mut self.net_devices);
                self.net_devices = NetDevices {
                    bonds: choice.bond.iter().cloned().collect(),
                    vlans: choice.vlan.iter().cloned().collect(),
                    ..kept
                };
                self.message = Some(("network configured".into(), false));
            }
            Err(e) => {
                self.net_result = vec![format!("failed: {e}")];
                self.error(format!("network: {e}"));
            }
        }
    }

    fn fetch_fingerprint(&mut self, backend: &dyn Backend) {
        let server = match fields::server(&self.server) {
            Ok(s) => s,
            Err(e) => return self.error(e),
        };
        match backend.receiver_fingerprint(&server) {
            Ok(fp) => match fields::fingerprint(&fp) {
                Ok(Some(fp)) => {
                    if !self.fingerprint.is_empty() && self.fingerprint != fp {
                        self.error(format!(
                            "the receiver presents {fp}, not the fingerprint given; check the address"
                        ));
                    } else if self.fingerprint == fp {
                        self.info("the receiver presents the fingerprint given".into());
                    } else {
                        self.overlay = Some(Overlay::Trust { fingerprint: fp });
                    }
                }
                _ => self.error(format!("receiver {server} presented no usable fingerprint")),
            },
            Err(e) => self.error(format!("receiver {server}: {e}")),
        }
    }

    fn next(&mut self, backend: &dyn Backend) {
        self.message = None;
        match self.screen {
            Screen::Overview => self.go(Screen::Network),
            Screen::Network => self.go(Screen::Target),
            Screen::Target => {
                if let Err(e) = fields::server(&self.server).and(fields::token(&self.token)) {
                    return self.error(e);
                }
                if self.fingerprint.is_empty() {
                    // Never trusted silently: show what the receiver
                    // presents and wait for an explicit yes.
                    self.fetch_fingerprint(backend);
                } else {
                    self.go(Screen::Guest);
                }
            }
            Screen::Guest => match self.plan() {
                Ok(_) => self.go(Screen::Review),
                Err(e) => self.error(e),
            },
            Screen::Review => self.start(backend),
            Screen::Progress | Screen::Result => {}
        }
    }

    fn start(&mut self, backend: &dyn Backend) {
        if self.migration_running() {
            return self.go(Screen::Progress);
        }
        let plan = match self.plan() {
            Ok(p) => p,
            Err(e) => return self.error(e),
        };
        let (tx, rx) = mpsc::channel();
        match backend.start_migration(&plan, tx) {
            Ok(()) => {
                self.log(format!(
                    "migration of {} to {} started ({} disk(s))",
                    plan.name,
                    plan.server,
                    plan.disks.len()
                ));
                if let Some(line) = self.next_time() {
                    self.log(format!("next time, boot with: {line}"));
                }
                self.migration = Some(Migration {
                    plan,
                    events: rx,
                    bars: Vec::new(),
                    bytes_per_sec: 0.0,
                    eta_secs: None,
                    started: Instant::now(),
                    outcome: None,
                });
                self.go(Screen::Progress);
            }
            Err(e) => self.error(format!("cannot start the migration: {e}")),
        }
    }
}
