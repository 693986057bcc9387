//! Network bring-up for the live image: links up over rtnetlink, wait for
//! carrier, then DHCP on every interface with carrier (in parallel) or the
//! static configuration of the kernel's `ip=`, routes, and resolv.conf.
//!
//! Debian's kernel has no IP autoconfiguration (`CONFIG_IP_PNP` is off), so
//! this is what makes `p2xen.server=dom0.example` reachable.

pub mod dhcp;
pub mod dhcp6;
mod ifmap;
pub mod ipv6;
mod links;
pub mod netlink;
pub mod resolv;
pub mod socket;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bootparams::{Cmdline, IpParam, NetDevices, StaticIp, StaticIp6};
use dhcp::{DhcpConfig, Lease};
use netlink::{Link, NetlinkError, Origin, RouteSpec, Rtnl};
pub use resolv::{ResolvError, resolve};

/// Where resolvers look.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// After the first interface has carrier, how long to wait for the others.
/// Unplugged ports never get one; a whole `carrier_timeout` for them would
/// delay every boot.
const CARRIER_GRACE: Duration = Duration::from_secs(3);

/// Route metric of the first configured interface; the next get +1, so the
/// first interface (lowest index) carries the default route.
const METRIC_BASE: u32 = 100;

/// What to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRequest {
    /// One entry per interface and address family; see [`NetMethod`].
    pub methods: Vec<NetMethod>,
    /// Links to make first: `ifname=`, `bond=`, `vlan=`.
    pub devices: NetDevices,
    /// Only these interfaces are touched; `None`: every Ethernet interface.
    pub interfaces: Option<Vec<String>>,
    /// How long to wait for carrier after setting the links up.
    pub carrier_timeout: Duration,
    /// DHCP per interface: total time, first retransmission, largest interval.
    pub dhcp_timeout: Duration,
    pub dhcp_first_retry: Duration,
    pub dhcp_max_retry: Duration,
    /// How long to wait for a router advertisement (`auto6`).
    pub ra_timeout: Duration,
    /// Where to write the resolver configuration (tests use a temp file).
    pub resolv_conf: PathBuf,
    /// Sent to the DHCP server (option 12), from `ip=`'s host field.
    pub hostname: Option<String>,
    /// Renew DHCP leases in the background for as long as the process runs.
    pub keep_leases: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMethod {
    /// Leave every interface down (`ip=off`).
    Off,
    /// DHCP on every interface with carrier, or only on `device`.
    Dhcp {
        device: Option<String>,
    },
    Static(StaticIp),
    /// IPv6 SLAAC on every interface with carrier, or only on `device`.
    Auto6 {
        device: Option<String>,
    },
    Static6(StaticIp6),
    /// DHCPv6 (IA_NA) on every interface with carrier, or only on `device`.
    Dhcp6 {
        device: Option<String>,
    },
}

impl NetMethod {
    fn device(&self) -> Option<&str> {
        match self {
            NetMethod::Off => None,
            NetMethod::Dhcp { device }
            | NetMethod::Auto6 { device }
            | NetMethod::Dhcp6 { device } => device.as_deref(),
            NetMethod::Static(s) => s.device.as_deref(),
            NetMethod::Static6(s) => s.device.as_deref(),
        }
    }
}

impl Default for NetRequest {
    fn default() -> Self {
        let d = DhcpConfig::new("", &[]);
        NetRequest {
            methods: vec![NetMethod::Dhcp { device: None }],
            devices: NetDevices::default(),
            interfaces: None,
            carrier_timeout: Duration::from_secs(10),
            dhcp_timeout: d.timeout,
            dhcp_first_retry: d.first_retry,
            dhcp_max_retry: d.max_retry,
            ra_timeout: Duration::from_secs(15),
            resolv_conf: PathBuf::from(RESOLV_CONF),
            hostname: None,
            keep_leases: true,
        }
    }
}

impl NetRequest {
    /// The request the kernel command line asks for (`ip=`, dracut's network
    /// parameters; no `ip=` means DHCP everywhere).
    pub fn from_cmdline(cmdline: &Cmdline) -> NetRequest {
        NetRequest::from_params(&cmdline.ip, &cmdline.net, cmdline.carrier_timeout)
    }

    /// The request for these `ip=` entries and links, whether they came from
    /// the kernel command line or the menu (which builds the same values).
    pub fn from_params(
        ip: &[IpParam],
        devices: &NetDevices,
        carrier_timeout: Option<Duration>,
    ) -> NetRequest {
        let mut req = NetRequest {
            devices: devices.clone(),
            ..NetRequest::default()
        };
        if let Some(t) = carrier_timeout {
            req.carrier_timeout = t;
        }
        if ip.is_empty() {
            return req;
        }
        req.methods = ip
            .iter()
            .map(|p| match p {
                IpParam::Off => NetMethod::Off,
                IpParam::Dhcp { device, .. } => NetMethod::Dhcp {
                    device: device.clone(),
                },
                IpParam::Static(s) => NetMethod::Static(s.clone()),
                IpParam::Auto6 { device } => NetMethod::Auto6 {
                    device: device.clone(),
                },
                IpParam::Dhcp6 { device } => NetMethod::Dhcp6 {
                    device: device.clone(),
                },
                IpParam::Static6(s) => NetMethod::Static6(s.clone()),
            })
            .collect();
        req.hostname = ip.iter().find_map(|p| match p {
            IpParam::Dhcp { hostname, .. } => hostname.clone(),
            IpParam::Static(s) => s.hostname.clone(),
            IpParam::Static6(s) => s.hostname.clone(),
            IpParam::Off | IpParam::Auto6 { .. } | IpParam::Dhcp6 { .. } => None,
        });
        req
    }

    fn is_off(&self) -> bool {
        self.methods.iter().all(|m| *m == NetMethod::Off)
    }
}

/// The outcome, per interface and overall.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetStatus {
    pub interfaces: Vec<InterfaceStatus>,
    /// Name servers written to resolv.conf, in order.
    pub dns: Vec<IpAddr>,
    pub search: Vec<String>,
    /// `None` when no name server was known, so the file was left alone.
    pub resolv_conf: Option<PathBuf>,
    /// From `ip=` or the first DHCP lease that named one.
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub index: u32,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Kernel driver from sysfs (`e1000`, `virtio_net`), when there is one.
    pub driver: Option<String>,
    pub carrier: bool,
    pub address: Option<Ipv4Addr>,
    pub prefix_len: Option<u8>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub configured: Configured,
    /// Global IPv6 addresses with their prefix length.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// How IPv6 was configured; `None`: not asked for.
    pub configured6: Option<Configured>,
    /// IPv6 name servers a DHCPv6 server sent.
    pub dns6: Vec<Ipv6Addr>,
}

/// How (or why not) an interface was configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Configured {
    Dhcp {
        server: Ipv4Addr,
        lease_secs: Option<u32>,
    },
    Static,
    /// IPv6 stateless autoconfiguration from router advertisements.
    Slaac,
    /// An address leased by DHCPv6; `server` is its DUID in hex.
    Dhcp6 {
        server: String,
        valid_secs: u32,
    },
    /// No carrier within the timeout.
    NoCarrier,
    /// Not asked for (`ip=off`, another device named, static on another one).
    Skipped,
    Failed {
        error: String,
    },
}

impl Configured {
    fn describe(&self) -> String {
        match self {
            Configured::Dhcp { server, .. } => format!("DHCP from {server}"),
            Configured::Static => "static".to_string(),
            Configured::Slaac => "SLAAC".to_string(),
            Configured::Dhcp6 { server, .. } => format!("DHCPv6 from {server}"),
            Configured::NoCarrier => "no carrier".to_string(),
            Configured::Skipped => "not configured".to_string(),
            Configured::Failed { error } => format!("failed: {error}"),
        }
    }
}

impl NetStatus {
    /// At least one interface has an address.
    pub fn is_up(&self) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.address.is_some() || !i.ipv6.is_empty())
    }

    /// One line per interface, for the consoles.
    pub fn summary(&self) -> Vec<String> {
        self.interfaces
            .iter()
            .map(|i| {
                let addr = match (i.address, i.prefix_len) {
                    (Some(a), Some(p)) => format!(" {a}/{p}"),
                    _ => String::new(),
                };
                let gw = i.gateway.map_or(String::new(), |g| format!(" via {g}"));
                let driver = i.driver.as_deref().unwrap_or("?");
                let mut line = format!(
                    "{} ({}, {driver}):{addr}{gw} {}",
                    i.name,
                    i.mac,
                    i.configured.describe()
                );
                if let Some(c6) = &i.configured6 {
                    let v6: String = i.ipv6.iter().map(|(a, p)| format!(" {a}/{p}")).collect();
                    line.push_str(&format!("; IPv6:{v6} {}", c6.describe()));
                }
                line
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("network: interface {name} (from {from}) does not exist; interfaces: {available}")]
    NoSuchInterface {
        name: String,
        from: String,
        available: String,
    },
    #[error("network: ifname={name}:{mac}: no interface has MAC {mac}; interfaces: {available}")]
    NoSuchMac {
        mac: String,
        name: String,
        available: String,
    },
    #[error(
        "network: no interface has carrier for the static address {address}; interfaces: {available}"
    )]
    NoCarrier { address: IpAddr, available: String },
    #[error(transparent)]
    Resolv(#[from] ResolvError),
}

fn status_of(l: &Link) -> InterfaceStatus {
    InterfaceStatus {
        name: l.name.clone(),
        index: l.index,
        mac: netlink::format_mac(&l.mac),
        driver: driver(&l.name),
        carrier: l.carrier,
        address: None,
        prefix_len: None,
        gateway: None,
        dns: Vec::new(),
        configured: Configured::Skipped,
        ipv6: Vec::new(),
        configured6: None,
        dns6: Vec::new(),
    }
}

/// Brings the network up as `req` says. Per-interface failures (no carrier,
/// no DHCP answer) are reported in the status, not as errors; see
/// [`NetStatus::is_up`].
pub fn configure(req: &NetRequest) -> Result<NetStatus, NetError> {
    let mut rtnl = Rtnl::open()?;
    // Loopback first: local services and 127.0.0.1 lookups need it, and the
    // kernel adds 127.0.0.1/8 itself when it goes up.
    for l in rtnl.links()?.iter().filter(|l| l.loopback && !l.up) {
        rtnl.set_up(l.index, &l.name)?;
    }
    if !req.is_off() {
        links::build(&mut rtnl, &req.devices)?;
    }
    let all = rtnl.links()?;
    for dev in req.methods.iter().filter_map(NetMethod::device) {
        if !all.iter().any(|l| l.name == dev) {
            return Err(NetError::NoSuchInterface {
                name: dev.to_string(),
                from: "ip=".into(),
                available: names(&all),
            });
        }
    }
    let carriers = links::carriers(&req.devices);
    let named: Vec<&str> = req.methods.iter().filter_map(NetMethod::device).collect();
    let candidates: Vec<&Link> = all
        .iter()
        .filter(|l| !l.loopback && l.ethernet && l.controller.is_none())
        .filter(|l| named.contains(&l.name.as_str()) || !carriers.contains(&l.name))
        .filter(|l| req.interfaces.as_ref().is_none_or(|w| w.contains(&l.name)))
        .collect();
    if candidates.is_empty() {
        log::warn!(
            "network: no Ethernet interface (links: {}); is the NIC's driver in the initramfs?",
            names(&all)
        );
    }
    let mut status = NetStatus {
        interfaces: candidates.iter().map(|l| status_of(l)).collect(),
        dns: Vec::new(),
        search: Vec::new(),
        resolv_conf: None,
        hostname: req.hostname.clone().or_else(|| {
            req.methods.iter().find_map(|m| match m {
                NetMethod::Static(s) => s.hostname.clone(),
                NetMethod::Static6(s) => s.hostname.clone(),
                _ => None,
            })
        }),
    };
    if req.is_off() {
        log::info!("network: ip=off, leaving the interfaces down");
        return Ok(status);
    }
    // A method without a device may use any interface; otherwise only the
    // named ones are brought up.
    let any = req
        .methods
        .iter()
        .any(|m| *m != NetMethod::Off && m.device().is_none());
    let active: Vec<u32> = candidates
        .iter()
        .filter(|l| any || named.contains(&l.name.as_str()))
        .map(|l| l.index)
        .collect();
    for l in candidates
        .iter()
        .filter(|l| active.contains(&l.index) && !l.up)
    {
        rtnl.set_up(l.index, &l.name)?;
    }
    let carrier = wait_for_carrier(&mut rtnl, &active, req.carrier_timeout)?;
    for s in &mut status.interfaces {
        s.carrier = carrier.contains(&s.index);
        if active.contains(&s.index) && !s.carrier {
            s.configured = Configured::NoCarrier;
            log::warn!("network: {} has no carrier (cable?)", s.name);
        }
    }
    for (i, method) in req.methods.iter().enumerate() {
        let metric = METRIC_BASE + u32::try_from(i).unwrap_or(0);
        apply_method(
            &mut rtnl,
            req,
            method,
            metric,
            &mut status,
            &candidates,
            &all,
        )?;
    }
    add_routes(&mut rtnl, &req.devices.routes, &status);
    let mut dns: Vec<IpAddr> = req.devices.nameservers.clone();
    for i in &status.interfaces {
        dns.extend(i.dns.iter().copied().map(IpAddr::V4));
        dns.extend(i.dns6.iter().copied().map(IpAddr::V6));
    }
    for m in &req.methods {
        if let NetMethod::Static6(s) = m {
            dns.extend(s.dns.iter().copied().map(IpAddr::V6));
        }
    }
    status.dns = dns;
    if !status.dns.is_empty() {
        resolv::write_resolv_conf(&req.resolv_conf, &status.dns, &status.search)?;
        status.resolv_conf = Some(req.resolv_conf.clone());
    }
    for line in status.summary() {
        log::info!("network: {line}");
    }
    Ok(status)
}

/// The interface a static entry goes to: the named one, or the first with
/// carrier that nothing configured yet.
fn static_target<'a>(
    status: &'a mut NetStatus,
    device: Option<&str>,
    v6: bool,
) -> Option<&'a mut InterfaceStatus> {
    status.interfaces.iter_mut().find(|s| match device {
        Some(d) => s.name == d,
        None if v6 => s.carrier && s.configured6.is_none(),
        None => s.carrier && s.configured == Configured::Skipped,
    })
}

fn apply_method(
    rtnl: &mut Rtnl,
    req: &NetRequest,
    method: &NetMethod,
    metric: u32,
    status: &mut NetStatus,
    candidates: &[&Link],
    all: &[Link],
) -> Result<(), NetError> {
    match method {
        NetMethod::Off => {}
        NetMethod::Static(st) => {
            let Some(iface) = static_target(status, st.device.as_deref(), false) else {
                return Err(NetError::NoCarrier {
                    address: IpAddr::V4(st.address),
                    available: names(all),
                });
            };
            apply_static(rtnl, iface, st, metric);
        }
        NetMethod::Static6(st) => {
            let Some(iface) = static_target(status, st.device.as_deref(), true) else {
                return Err(NetError::NoCarrier {
                    address: IpAddr::V6(st.address),
                    available: names(all),
                });
            };
            iface.configured6 = Some(
                match ipv6::apply_static(rtnl, iface.index, &iface.name, st, metric) {
                    Ok(()) => {
                        iface.ipv6.push((st.address, st.prefix_len));
                        Configured::Static
                    }
                    Err(e) => failed(e),
                },
            );
        }
        NetMethod::Auto6 { device } => {
            for iface in status
                .interfaces
                .iter_mut()
                .filter(|s| s.carrier && device.as_ref().is_none_or(|d| *d == s.name))
            {
                iface.configured6 = Some(
                    match ipv6::autoconf(rtnl, iface.index, &iface.name, req.ra_timeout) {
                        Ok(addrs) => {
                            iface.ipv6 = addrs;
                            Configured::Slaac
                        }
                        Err(e) => failed(e),
                    },
                );
            }
        }
        NetMethod::Dhcp6 { device } => {
            for iface in status
                .interfaces
                .iter_mut()
                .filter(|s| s.carrier && device.as_ref().is_none_or(|d| *d == s.name))
            {
                let Some(link) = candidates.iter().find(|l| l.index == iface.index) else {
                    continue;
                };
                let cfg = dhcp6::Dhcp6Config {
                    iface: iface.name.clone(),
                    mac: <[u8; 6]>::try_from(&link.mac[..]).unwrap_or_default(),
                    timeout: req.dhcp_timeout,
                    max_retry: req.dhcp_max_retry,
                };
                iface.configured6 = Some(match ipv6::dhcp6(rtnl, iface.index, &iface.name, &cfg) {
                    Ok(lease) => {
                        iface.ipv6.push((lease.address, 128));
                        iface.dns6.extend(lease.dns.iter().copied());
                        for d in &lease.search {
                            if !status.search.contains(d) {
                                status.search.push(d.clone());
                            }
                        }
                        Configured::Dhcp6 {
                            server: lease.server_duid.clone(),
                            valid_secs: lease.valid_secs,
                        }
                    }
                    Err(e) => failed(e),
                });
            }
        }
        NetMethod::Dhcp { device } => {
            let leases = run_dhcp(req, &status.interfaces, candidates, device.as_deref());
            let mut metric = metric;
            for ((iface, lease), link) in status.interfaces.iter_mut().zip(leases).zip(candidates) {
                match lease {
                    None => {}
                    Some(Err(e)) => {
                        log::warn!("network: {e}");
                        iface.configured = Configured::Failed {
                            error: e.to_string(),
                        };
                    }
                    Some(Ok(lease)) => {
                        apply_lease(rtnl, iface, &lease, metric);
                        metric += 1;
                        if req.keep_leases && iface.address.is_some() {
                            keep_lease(req, iface, &link.mac, &lease);
                        }
                        if let Some(d) = &lease.domain
                            && !status.search.contains(d)
                        {
                            status.search.push(d.clone());
                        }
                        if status.hostname.is_none() {
                            status.hostname = lease.hostname.clone();
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn failed(e: impl std::fmt::Display) -> Configured {
    log::warn!("network: {e}");
    Configured::Failed {
        error: e.to_string(),
    }
}

/// `rd.route=`: on the named interface, or the first configured one of the
/// route's family. A route that cannot be added is reported, not fatal: the
/// receiver may be reachable without it.
fn add_routes(rtnl: &mut Rtnl, routes: &[crate::bootparams::Route], status: &NetStatus) {
    for r in routes {
        let iface = status.interfaces.iter().find(|i| match &r.device {
            Some(d) => i.name == *d,
            None if r.gateway.is_ipv4() => i.address.is_some(),
            None => !i.ipv6.is_empty(),
        });
        let Some(iface) = iface else {
            log::warn!(
                "network: rd.route={}/{}: no configured interface for it; skipped",
                r.destination,
                r.prefix_len
            );
            continue;
        };
        let spec = RouteSpec {
            index: iface.index,
            destination: r.destination,
            prefix_len: r.prefix_len,
            gateway: Some(r.gateway),
            metric: METRIC_BASE,
            origin: Origin::Static,
        };
        if let Err(e) = rtnl.add_route(&spec, &iface.name) {
            log::warn!("network: rd.route: {e}");
        }
    }
}

fn names(links: &[Link]) -> String {
    links
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bound driver's name, from /sys/class/net/NAME/device/driver.
fn driver(name: &str) -> Option<String> {
    let link =
        std::fs::read_link(Path::new("/sys/class/net").join(name).join("device/driver")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Sets every Ethernet link up (no address yet) and waits up to `timeout`
/// for carrier, so the menu's overview can show each NIC's link state
/// before anything is configured. Returns how many links have carrier.
pub fn links_up(timeout: Duration) -> Result<usize, NetError> {
    let mut rtnl = Rtnl::open()?;
    let links: Vec<Link> = rtnl
        .links()?
        .into_iter()
        .filter(|l| !l.loopback && l.ethernet)
        .collect();
    for l in links.iter().filter(|l| !l.up) {
        rtnl.set_up(l.index, &l.name)?;
    }
    let indexes: Vec<u32> = links.iter().map(|l| l.index).collect();
    if indexes.is_empty() {
        return Ok(0);
    }
    Ok(wait_for_carrier(&mut rtnl, &indexes, timeout)?.len())
}

/// Polls until every link in `indexes` has carrier, or the timeout passes,
/// or `CARRIER_GRACE` after the first one got carrier. Returns those with carrier.
fn wait_for_carrier(
    rtnl: &mut Rtnl,
    indexes: &[u32],
    timeout: Duration,
) -> Result<Vec<u32>, NetError> {
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        let with: Vec<u32> = rtnl
            .links()?
            .into_iter()
            .filter(|l| indexes.contains(&l.index) && l.carrier)
            .map(|l| l.index)
            .collect();
        let now = Instant::now();
        if !with.is_empty() && first.is_none() {
            first = Some(now);
        }
        let done = with.len() == indexes.len()
            || now.duration_since(start) >= timeout
            || first.is_some_and(|f| now.duration_since(f) >= CARRIER_GRACE);
        if done {
            log::debug!(
                "network: carrier on {} of {} after {:?}",
                with.len(),
                indexes.len(),
                now - start
            );
            return Ok(with);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs DHCP on every interface with carrier at once: a rack's servers
/// often have several NICs of which only one is patched.
fn run_dhcp(
    req: &NetRequest,
    ifaces: &[InterfaceStatus],
    links: &[&Link],
    only: Option<&str>,
) -> Vec<Option<Result<Lease, dhcp::DhcpError>>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = ifaces
            .iter()
            .zip(links)
            .map(|(iface, link)| {
                let go = iface.carrier
                    && iface.configured == Configured::Skipped
                    && only.is_none_or(|d| d == iface.name);
                go.then(|| {
                    let mut cfg = DhcpConfig::new(&link.name, &link.mac);
                    cfg.hostname = req.hostname.clone();
                    cfg.timeout = req.dhcp_timeout;
                    cfg.first_retry = req.dhcp_first_retry;
                    cfg.max_retry = req.dhcp_max_retry;
                    scope.spawn(move || {
                        let mut t = socket::UdpTransport::open(&cfg.iface).map_err(|source| {
                            dhcp::DhcpError::Io {
                                iface: cfg.iface.clone(),
                                what: "open UDP port 68",
                                source,
                            }
                        })?;
                        dhcp::acquire(&mut t, &cfg)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(ifaces)
            .map(|(h, iface)| {
                h.map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(dhcp::DhcpError::Io {
                            iface: iface.name.clone(),
                            what: "DHCP thread",
                            source: std::io::Error::other("panicked"),
                        })
                    })
                })
            })
            .collect()
    })
}

/// Starts the background renewal of one lease. The thread inherits the
/// caller's network namespace.
fn keep_lease(req: &NetRequest, iface: &InterfaceStatus, mac: &[u8], lease: &Lease) {
    let mut cfg = DhcpConfig::new(&iface.name, mac);
    cfg.hostname = req.hostname.clone();
    cfg.first_retry = req.dhcp_first_retry;
    cfg.max_retry = req.dhcp_max_retry;
    let lease = lease.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("dhcp-{}", iface.name))
        .spawn(move || match socket::UdpTransport::open(&cfg.iface) {
            Ok(t) => dhcp::maintain(t, cfg, lease),
            Err(e) => log::error!(
                "{}: cannot open UDP port 68 to renew the lease: {e}",
                cfg.iface
            ),
        });
    if let Err(e) = spawned {
        log::error!("{}: cannot start the lease renewal: {e}", iface.name);
    }
}

/// Address, then routes: a gateway outside the subnet (a /32 lease, say) first
/// gets a link route so the default route through it is accepted.
fn add_address_and_routes(
    rtnl: &mut Rtnl,
    iface: &InterfaceStatus,
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Option<Ipv4Addr>,
    metric: u32,
    origin: Origin,
) -> Result<(), NetlinkError> {
    rtnl.add_address(iface.index, &iface.name, IpAddr::V4(address), prefix_len)?;
    if let Some(gw) = gateway {
        if !netlink::same_subnet(address, prefix_len, gw) {
            let host = RouteSpec {
                index: iface.index,
                destination: IpAddr::V4(gw),
                prefix_len: 32,
                gateway: None,
                metric,
                origin,
            };
            rtnl.add_route(&host, &iface.name)?;
        }
        let default = RouteSpec {
            index: iface.index,
            destination: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
            gateway: Some(IpAddr::V4(gw)),
            metric,
            origin,
        };
        rtnl.add_route(&default, &iface.name)?;
    }
    Ok(())
}

fn apply_lease(rtnl: &mut Rtnl, iface: &mut InterfaceStatus, lease: &Lease, metric: u32) {
    let gateway = lease.routers.first().copied();
    match add_address_and_routes(
        rtnl,
        iface,
        lease.address,
        lease.prefix_len,
        gateway,
        metric,
        Origin::Dhcp,
    ) {
        Ok(()) => {
            iface.address = Some(lease.address);
            iface.prefix_len = Some(lease.prefix_len);
            iface.gateway = gateway;
            iface.dns = lease.dns.clone();
            iface.configured = Configured::Dhcp {
                server: lease.server,
                lease_secs: lease.lease_secs,
            };
        }
        Err(e) => {
            log::warn!("network: {e}");
            iface.configured = Configured::Failed {
                error: e.to_string(),
            };
        }
    }
}

fn apply_static(rtnl: &mut Rtnl, iface: &mut InterfaceStatus, st: &StaticIp, metric: u32) {
    match add_address_and_routes(
        rtnl,
        iface,
        st.address,
        st.prefix_len,
        st.gateway,
        metric,
        Origin::Static,
    ) {
        Ok(()) => {
            iface.address = Some(st.address);
            iface.prefix_len = Some(st.prefix_len);
            iface.gateway = st.gateway;
            iface.dns = st.dns.clone();
            iface.configured = Configured::Static;
        }
        Err(e) => {
            log::warn!("network: {e}");
            iface.configured = Configured::Failed {
                error: e.to_string(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_from_the_command_line() {
        let c = Cmdline::parse("quiet").unwrap();
        assert_eq!(NetRequest::from_cmdline(&c), NetRequest::default());
        let c = Cmdline::parse("ip=off").unwrap();
        assert_eq!(NetRequest::from_cmdline(&c).methods, [NetMethod::Off]);
        let c = Cmdline::parse("ip=::::src1:eth1:dhcp").unwrap();
        let r = NetRequest::from_cmdline(&c);
        assert_eq!(
            r.methods,
            [NetMethod::Dhcp {
                device: Some("eth1".into())
            }]
        );
        assert_eq!(r.hostname.as_deref(), Some("src1"));
        let c = Cmdline::parse("ip=10.0.0.5::10.0.0.1:255.255.255.0:h::off:10.0.0.53").unwrap();
        let [NetMethod::Static(s)] = &NetRequest::from_cmdline(&c).methods[..] else {
            panic!()
        };
        assert_eq!(
            (s.address, s.prefix_len, s.dns.len()),
            (Ipv4Addr::new(10, 0, 0, 5), 24, 1)
        );
        assert_eq!(
            NetRequest::default().resolv_conf,
            PathBuf::from("/etc/resolv.conf")
        );
    }

    #[test]
    fn summary_lines() {
        let st = NetStatus {
            interfaces: vec![
                InterfaceStatus {
                    name: "eth0".into(),
                    index: 2,
                    mac: "52:54:00:12:34:56".into(),
                    driver: Some("e1000".into()),
                    carrier: true,
                    address: Some(Ipv4Addr::new(10, 0, 2, 15)),
                    prefix_len: Some(24),
                    gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                    dns: vec![],
                    configured: Configured::Dhcp {
                        server: Ipv4Addr::new(10, 0, 2, 2),
                        lease_secs: Some(86400),
                    },
                    ipv6: vec![("2001:db8::5".parse().unwrap(), 64)],
                    configured6: Some(Configured::Slaac),
                    dns6: vec![],
                },
                InterfaceStatus {
                    name: "eth1".into(),
                    index: 3,
                    mac: "52:54:00:12:34:57".into(),
                    driver: None,
                    carrier: false,
                    address: None,
                    prefix_len: None,
                    gateway: None,
                    dns: vec![],
                    configured: Configured::NoCarrier,
                    ipv6: vec![],
                    configured6: None,
                    dns6: vec![],
                },
            ],
            dns: vec![],
            search: vec![],
            resolv_conf: None,
            hostname: None,
        };
        assert!(st.is_up());
        assert_eq!(
            st.summary(),
            [
                "eth0 (52:54:00:12:34:56, e1000): 10.0.2.15/24 via 10.0.2.2 DHCP from 10.0.2.2; IPv6: 2001:db8::5/64 SLAAC",
                "eth1 (52:54:00:12:34:57, ?): no carrier"
            ]
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["interfaces"][0]["configured"]["method"], "dhcp");
        assert_eq!(json["interfaces"][1]["configured"]["method"], "no_carrier");
    }
}
