//! A DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK, with
//! retransmission and exponential backoff, restart after a NAK, and checks
//! that a reply is ours (BOOTREPLY, our xid, our hardware address) before
//! anything in it is believed. No kept crate offers a synchronous client
//! state machine; the wire format is in [`message`].
//!
//! The exchange runs over a [`Transport`], so the state machine is tested
//! against a scripted server with a virtual clock, and run for real over
//! [`super::socket::UdpTransport`].

pub mod message;

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use message::{ClientMessage, opt};
pub use message::{MAX_MESSAGE, MessageType};

use crate::bootparams::{classful_prefix, netmask_prefix};

/// What the client sends and how long it keeps trying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// Interface name, for messages.
    pub iface: String,
    /// Ethernet address (6 bytes).
    pub mac: Vec<u8>,
    /// Sent as option 12, as the kernel does with `ip=::::NAME::dhcp`.
    pub hostname: Option<String>,
    /// Give up after this long.
    pub timeout: Duration,
    /// First retransmission interval; doubles up to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
}

impl DhcpConfig {
    pub fn new(iface: &str, mac: &[u8]) -> DhcpConfig {
        DhcpConfig {
            iface: iface.to_string(),
            mac: mac.to_vec(),
            hostname: None,
            // Long enough for a switch port still in spanning-tree
            // listening/learning (30 s) after the link came up.
            timeout: Duration::from_secs(60),
            // RFC 2131 suggests 4 s doubling to 64 s; a boot on a LAN wants
            // quicker first retries and still backs off.
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(16),
        }
    }
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Option 3, in the server's order of preference.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 15, used as the resolv.conf search domain.
    pub domain: Option<String>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 51; `None` when the server sent none.
    pub lease_secs: Option<u32>,
    /// Option 54.
    pub server: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(
        "{iface}: DHCP: no lease within {secs} s ({discovers} DISCOVER, {offers} OFFER, {naks} NAK, {ignored} foreign or malformed replies); is a DHCP server on this network?"
    )]
    Timeout {
        iface: String,
        secs: u64,
        discovers: u32,
        offers: u32,
        naks: u32,
        ignored: u32,
    },
    #[error("{iface}: DHCP: hardware address {mac} is not a 6-byte Ethernet address")]
    NotEthernet { iface: String, mac: String },
    #[error("{iface}: DHCP: {what}: {source}")]
    Io {
        iface: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("DHCP: cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("{iface}: DHCP: the server refused to extend the lease of {address} (NAK)")]
    Refused { iface: String, address: Ipv4Addr },
    #[error("DHCP reply: {0}")]
    Malformed(String),
    #[error("DHCP reply not for us: {0}")]
    NotOurs(String),
}

/// Datagram transport with a clock, so tests can run the exchange on
/// virtual time.
pub trait Transport {
    /// Broadcasts one message to the server port.
    fn send(&mut self, packet: &[u8]) -> io::Result<()>;
    /// Waits until `deadline` for one datagram from a server; `None` once the
    /// deadline passed.
    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>>;
    fn now(&self) -> Instant;
}

/// A reply that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub yiaddr: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub lease_secs: Option<u32>,
}

fn mac6(mac: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(src) = mac.get(..6) {
        m.copy_from_slice(src);
    }
    m
}

fn encode(msg: &ClientMessage<'_>, what: &'static str) -> Result<Vec<u8>, DhcpError> {
    msg.encode()
        .map_err(|reason| DhcpError::Encode { what, reason })
}

/// A DHCPDISCOVER. `mac` must be 6 bytes (checked by [`acquire`]).
pub fn discover(
    xid: u32,
    mac: &[u8],
    secs: u16,
    hostname: Option<&str>,
) -> Result<Vec<u8>, DhcpError> {
    let msg = ClientMessage {
        kind: MessageType::Discover,
        xid,
        mac: mac6(mac),
        secs,
        requested: None,
        server: None,
        hostname,
        ciaddr: Ipv4Addr::UNSPECIFIED,
    };
    encode(&msg, "DHCPDISCOVER")
}

/// A DHCPREQUEST for an offered address (SELECTING state).
pub fn request(
    xid: u32,
    mac: &[u8],
    secs: u16,
    address: Ipv4Addr,
    server: Ipv4Addr,
    hostname: Option<&str>,
) -> Result<Vec<u8>, DhcpError> {
    let msg = ClientMessage {
        kind: MessageType::Request,
        xid,
        mac: mac6(mac),
        secs,
        requested: Some(address),
        server: Some(server),
        hostname,
        ciaddr: Ipv4Addr::UNSPECIFIED,
    };
    encode(&msg, "DHCPREQUEST")
}

/// A DHCPREQUEST extending a bound lease: `ciaddr` set, no options 50/54
/// (RFC 2131 §4.3.2, RENEWING/REBINDING). It is broadcast, which every server
/// that owns the lease answers (REBINDING); the ACK comes to `ciaddr`.
pub fn renewal(
    xid: u32,
    mac: &[u8],
    address: Ipv4Addr,
    hostname: Option<&str>,
) -> Result<Vec<u8>, DhcpError> {
    let msg = ClientMessage {
        kind: MessageType::Request,
        xid,
        mac: mac6(mac),
        secs: 0,
        requested: None,
        server: None,
        hostname,
        ciaddr: address,
    };
    encode(&msg, "DHCPREQUEST (renewal)")
}

/// Decodes a datagram and checks it answers transaction `xid` of `mac`.
pub fn parse_reply(bytes: &[u8], xid: u32, mac: &[u8]) -> Result<Reply, DhcpError> {
    let raw = message::decode_reply(bytes).map_err(DhcpError::Malformed)?;
    if raw.xid != xid {
        return Err(DhcpError::NotOurs(format!(
            "xid {:#010x}, ours {xid:#010x}",
            raw.xid
        )));
    }
    if usize::from(raw.hlen) != mac.len() || raw.chaddr.get(..mac.len()) != Some(mac) {
        return Err(DhcpError::NotOurs(
            "another client's hardware address".into(),
        ));
    }
    let malformed = DhcpError::Malformed;
    let kind = message::message_type(
        raw.option(opt::MESSAGE_TYPE)
            .ok_or_else(|| malformed("no message type (option 53)".into()))?,
    )
    .map_err(malformed)?;
    let mut reply = Reply {
        kind,
        yiaddr: raw.yiaddr,
        server: None,
        subnet_mask: None,
        routers: Vec::new(),
        dns: Vec::new(),
        domain: None,
        hostname: None,
        lease_secs: None,
    };
    for (code, v) in &raw.options {
        let code = *code;
        match code {
            opt::SERVER_ID => reply.server = Some(message::ipv4(code, v).map_err(malformed)?),
            opt::SUBNET_MASK => {
                reply.subnet_mask = Some(message::ipv4(code, v).map_err(malformed)?)
            }
            opt::ROUTER => reply.routers = message::ipv4_list(code, v).map_err(malformed)?,
            opt::DNS => reply.dns = message::ipv4_list(code, v).map_err(malformed)?,
            opt::LEASE_TIME => {
                reply.lease_secs = Some(message::u32_value(code, v).map_err(malformed)?)
            }
            // Names that could not safely go into resolv.conf are dropped, not fatal.
            opt::DOMAIN_NAME => reply.domain = message::dns_name(v),
            opt::HOSTNAME => reply.hostname = message::dns_name(v),
            _ => {}
        }
    }
    match kind {
        MessageType::Offer | MessageType::Ack => {
            let a = reply.yiaddr;
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
                return Err(malformed(format!("offered address {a}")));
            }
            if let Some(m) = reply.subnet_mask
                && netmask_prefix(m).is_none()
            {
                return Err(malformed(format!("subnet mask {m} is not contiguous")));
            }
        }
        MessageType::Nak => {}
        other => return Err(malformed(format!("unexpected message type {other:?}"))),
    }
    if kind == MessageType::Offer && reply.server.is_none() {
        // RFC 2131 requires it, and the REQUEST must name the server.
        return Err(malformed(
            "OFFER without server identifier (option 54)".into(),
        ));
    }
    Ok(reply)
}

impl Reply {
    fn into_lease(self, server: Ipv4Addr) -> Lease {
        let prefix_len = self
            .subnet_mask
            .and_then(netmask_prefix)
            .or_else(|| classful_prefix(self.yiaddr))
            .unwrap_or(32);
        Lease {
            address: self.yiaddr,
            prefix_len,
            routers: self.routers,
            dns: self.dns,
            domain: self.domain,
            hostname: self.hostname,
            lease_secs: self.lease_secs,
            server: self.server.unwrap_or(server),
        }
    }
}

#[derive(Default)]
struct Stats {
    discovers: u32,
    offers: u32,
    naks: u32,
    ignored: u32,
}

/// How many times a REQUEST is sent before starting over with a DISCOVER.
const REQUEST_TRIES: u32 = 4;

/// A random 64-bit value from std's per-process SipHash keys, which the OS
/// seeds: enough for xids and jitter without another dependency.
pub(super) fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A transaction id: the low 32 bits of [`random`].
fn random_xid() -> u32 {
    let [a, b, c, d, ..] = random().to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

/// Retransmission interval for attempt `n`: doubling from `first`, capped,
/// with up to a quarter of `first` of random jitter so a rack booted at
/// once does not retransmit in lockstep.
fn backoff(cfg: &DhcpConfig, n: u32) -> Duration {
    let base = cfg
        .first_retry
        .checked_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(cfg.max_retry)
        .min(cfg.max_retry);
    let quarter = u64::try_from(cfg.first_retry.as_millis() / 4).unwrap_or(0);
    let jitter = if quarter == 0 { 0 } else { random() % quarter };
    base + Duration::from_millis(jitter)
}

/// Runs the exchange until a lease is granted or `cfg.timeout` passes.
pub fn acquire(t: &mut impl Transport, cfg: &DhcpConfig) -> Result<Lease, DhcpError> {
    if cfg.mac.len() != 6 {
        return Err(DhcpError::NotEthernet {
            iface: cfg.iface.clone(),
            mac: super::netlink::format_mac(&cfg.mac),
        });
    }
    let start = t.now();
    let deadline = start + cfg.timeout;
    let mut stats = Stats::default();
    let hostname = cfg.hostname.as_deref();
    let io = |what| {
        let iface = cfg.iface.clone();
        move |source| DhcpError::Io {
            iface,
            what,
            source,
        }
    };
    let secs = |now: Instant| {
        u16::try_from(now.saturating_duration_since(start).as_secs()).unwrap_or(u16::MAX)
    };
    let timeout = |stats: &Stats| DhcpError::Timeout {
        iface: cfg.iface.clone(),
        secs: cfg.timeout.as_secs(),
        discovers: stats.discovers,
        offers: stats.offers,
        naks: stats.naks,
        ignored: stats.ignored,
    };

    loop {
        let xid = random_xid();
        // SELECTING: broadcast DISCOVERs until an OFFER arrives.
        let mut attempt = 0;
        let offer = loop {
            let now = t.now();
            if now >= deadline {
                return Err(timeout(&stats));
            }
            t.send(&discover(xid, &cfg.mac, secs(now), hostname)?)
                .map_err(io("send DHCPDISCOVER"))?;
            stats.discovers += 1;
            log::debug!("{}: DHCPDISCOVER xid {xid:#010x}", cfg.iface);
            let until = (now + backoff(cfg, attempt)).min(deadline);
            if let Some(r) = wait_for(t, cfg, xid, until, &mut stats, |r| {
                r.kind == MessageType::Offer
            })? {
                stats.offers += 1;
                break r;
            }
            attempt += 1;
        };
        let server = offer.server.unwrap_or(Ipv4Addr::UNSPECIFIED);
        log::debug!("{}: DHCPOFFER of {} from {server}", cfg.iface, offer.yiaddr);

        // REQUESTING: ask for the offered address; a NAK or silence starts over.
        let mut attempt = 0;
        loop {
            let now = t.now();
            if now >= deadline {
                return Err(timeout(&stats));
            }
            if attempt >= REQUEST_TRIES {
                log::info!(
                    "{}: no answer to DHCPREQUEST from {server}; starting over",
                    cfg.iface
                );
                break;
            }
            t.send(&request(
                xid,
                &cfg.mac,
                secs(now),
                offer.yiaddr,
                server,
                hostname,
            )?)
            .map_err(io("send DHCPREQUEST"))?;
            let until = (now + backoff(cfg, attempt)).min(deadline);
            let answer = wait_for(t, cfg, xid, until, &mut stats, |r| {
                matches!(r.kind, MessageType::Ack | MessageType::Nak)
                    && r.server.is_none_or(|s| s == server)
            })?;
            match answer {
                Some(r) if r.kind == MessageType::Ack => {
                    let lease = r.into_lease(server);
                    log::info!(
                        "{}: DHCP lease {}/{} from {} for {} s",
                        cfg.iface,
                        lease.address,
                        lease.prefix_len,
                        lease.server,
                        lease
                            .lease_secs
                            .map_or("unlimited".to_string(), |s| s.to_string())
                    );
                    return Ok(lease);
                }
                Some(_) => {
                    stats.naks += 1;
                    log::warn!(
                        "{}: DHCPNAK from {server} for {}; starting over",
                        cfg.iface,
                        offer.yiaddr
                    );
                    break;
                }
                None => attempt += 1,
            }
        }
    }
}

/// Asks to extend `lease`, retransmitting with backoff for `cfg.timeout`.
/// Returns the extended lease; a NAK means the address must no longer be used.
pub fn renew(t: &mut impl Transport, cfg: &DhcpConfig, lease: &Lease) -> Result<Lease, DhcpError> {
    let start = t.now();
    let deadline = start + cfg.timeout;
    let xid = random_xid();
    let mut stats = Stats::default();
    let mut attempt = 0;
    while t.now() < deadline {
        let now = t.now();
        t.send(&renewal(
            xid,
            &cfg.mac,
            lease.address,
            cfg.hostname.as_deref(),
        )?)
        .map_err(|source| DhcpError::Io {
            iface: cfg.iface.clone(),
            what: "send DHCPREQUEST",
            source,
        })?;
        let until = (now + backoff(cfg, attempt)).min(deadline);
        let answer = wait_for(t, cfg, xid, until, &mut stats, |r| {
            matches!(r.kind, MessageType::Ack | MessageType::Nak)
        })?;
        match answer {
            Some(r) if r.kind == MessageType::Ack => return Ok(r.into_lease(lease.server)),
            Some(_) => {
                return Err(DhcpError::Refused {
                    iface: cfg.iface.clone(),
                    address: lease.address,
                });
            }
            None => attempt += 1,
        }
    }
    Err(DhcpError::Timeout {
        iface: cfg.iface.clone(),
        secs: cfg.timeout.as_secs(),
        discovers: 0,
        offers: 0,
        naks: 0,
        ignored: stats.ignored,
    })
}

/// Keeps `lease` alive for as long as the live system runs: renews at half
/// the lease time, retries until it expires. A migration can take hours;
/// without this the server could hand our address to another machine.
/// The address is never changed under a running copy: a different address or
/// a NAK is logged as an error for the operator.
pub fn maintain(mut t: impl Transport, cfg: DhcpConfig, mut lease: Lease) {
    loop {
        let Some(secs) = lease.lease_secs.filter(|s| *s != u32::MAX) else {
            return; // infinite lease
        };
        let granted = t.now();
        let expiry = granted + Duration::from_secs(u64::from(secs));
        std::thread::sleep(Duration::from_secs(u64::from(secs / 2).max(10)));
        loop {
            let left = expiry.saturating_duration_since(t.now());
            if left.is_zero() {
                log::error!(
                    "{}: DHCP lease of {} expired; the address may be given to another host",
                    cfg.iface,
                    lease.address
                );
                return;
            }
            let mut try_cfg = cfg.clone();
            try_cfg.timeout = left.min(Duration::from_secs(60));
            match renew(&mut t, &try_cfg, &lease) {
                Ok(new) => {
                    if new.address != lease.address {
                        log::error!(
                            "{}: DHCP server now offers {} instead of {}; keeping the old address",
                            cfg.iface,
                            new.address,
                            lease.address
                        );
                    }
                    log::info!("{}: DHCP lease of {} extended", cfg.iface, lease.address);
                    lease.lease_secs = new.lease_secs;
                    break;
                }
                Err(e @ DhcpError::Refused { .. }) => {
                    log::error!("{e}");
                    return;
                }
                Err(e) => log::warn!("{e}; retrying"),
            }
        }
    }
}

/// Receives until `until`, returning the first reply to `xid` that `accept`
/// takes. Foreign and malformed datagrams are counted and skipped: on a
/// shared segment other clients' broadcast replies are normal.
fn wait_for(
    t: &mut impl Transport,
    cfg: &DhcpConfig,
    xid: u32,
    until: Instant,
    stats: &mut Stats,
    accept: impl Fn(&Reply) -> bool,
) -> Result<Option<Reply>, DhcpError> {
    let mut buf = vec![0u8; MAX_MESSAGE.max(4096)];
    loop {
        let got = t.recv(&mut buf, until).map_err(|source| DhcpError::Io {
            iface: cfg.iface.clone(),
            what: "receive",
            source,
        })?;
        let Some(n) = got else { return Ok(None) };
        let packet = buf.get(..n).unwrap_or_default();
        match parse_reply(packet, xid, &cfg.mac) {
            Ok(r) if accept(&r) => return Ok(Some(r)),
            Ok(r) => {
                stats.ignored += 1;
                log::debug!("{}: ignoring {:?} from {:?}", cfg.iface, r.kind, r.server);
            }
            Err(e) => {
                stats.ignored += 1;
                log::debug!("{}: {e}", cfg.iface);
            }
        }
    }
}

#[cfg(test)]
mod tests;
