//! A DHCPv6 client (RFC 8415) for `ip=dhcp6`: Solicit → Advertise →
//! Request → Reply for one non-temporary address (IA_NA), with the DNS
//! servers and search list (RFC 3646) the server sends. Retransmission
//! follows RFC 8415 section 15 (SOL_TIMEOUT/SOL_MAX_RT, REQ_TIMEOUT/
//! REQ_MAX_RT/REQ_MAX_RC, ±10 % randomisation), with the maximum interval
//! and the whole exchange bounded by the request's DHCP timeouts so a boot
//! never waits an hour. Renewal is not done: a migration takes hours, the
//! leases dnsmasq and ISC hand out are at least that long, and the kernel
//! keeps the address for its valid lifetime.
//!
//! The message format is written here, as for DHCPv4 ([`super::dhcp`]):
//! it is a flat list of type-length-value options, every length is checked
//! against the datagram before it is read, and `dhcproto` (the kept crate)
//! would pull `hickory-proto` into the static init while its DHCPv4 side
//! was found to panic on malformed input (see `dhcp::message`). The tests
//! read what this side encodes with `dhcproto` and the reverse.
//!
//! The exchange runs over [`super::dhcp::Transport`], tested on a virtual
//! clock and run for real over [`super::socket::Udp6Transport`].

use std::net::Ipv6Addr;
use std::time::Duration;
#[cfg(test)]
use std::time::Instant;

use super::dhcp::Transport;

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (link-scoped).
pub const SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

const SOLICIT: u8 = 1;
const ADVERTISE: u8 = 2;
const REQUEST: u8 = 3;
const REPLY: u8 = 7;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_PREFERENCE: u16 = 7;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;

const STATUS_SUCCESS: u16 = 0;

/// RFC 8415 section 7.6.
const SOL_TIMEOUT: Duration = Duration::from_secs(1);
const SOL_MAX_RT: Duration = Duration::from_secs(3600);
const REQ_TIMEOUT: Duration = Duration::from_secs(1);
const REQ_MAX_RT: Duration = Duration::from_secs(30);
const REQ_MAX_RC: u32 = 10;

/// Largest datagram read; DHCPv6 messages fit one Ethernet frame.
pub const MAX_MESSAGE: usize = 1500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Config {
    /// Interface name, for messages.
    pub iface: String,
    /// Ethernet address: the client's DUID-LL (RFC 8415 11.4), so the same
    /// NIC gets the same lease on every boot.
    pub mac: [u8; 6],
    /// Give up after this long (the exchange's MRD).
    pub timeout: Duration,
    /// Upper bound on the retransmission interval (caps SOL_MAX_RT and
    /// REQ_MAX_RT for a boot).
    pub max_retry: Duration,
}

/// A leased address and what came with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease6 {
    pub address: Ipv6Addr,
    pub preferred_secs: u32,
    pub valid_secs: u32,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    /// The server's DUID, hex.
    pub server_duid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Dhcp6Error {
    #[error(
        "{iface}: DHCPv6: no address within {secs} s ({solicits} Solicit, {advertises} Advertise, {requests} Request, {ignored} foreign or malformed replies); is a DHCPv6 server with an address range on this link?"
    )]
    Timeout {
        iface: String,
        secs: u64,
        solicits: u32,
        advertises: u32,
        requests: u32,
        ignored: u32,
    },
    #[error("{iface}: DHCPv6: {what}: {source}")]
    Io {
        iface: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("DHCPv6 reply: {0}")]
    Malformed(String),
    #[error("DHCPv6 reply not for us: {0}")]
    NotOurs(String),
    #[error("DHCPv6 server refused: status {code} {message:?}")]
    Status { code: u16, message: String },
}

/// DUID-LL: type 3, hardware type 1 (Ethernet), the MAC.
fn duid(mac: &[u8; 6]) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(mac);
    d
}

/// The IA's id: the MAC's last four bytes, stable across boots.
fn iaid(mac: &[u8; 6]) -> u32 {
    u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])
}

fn put_opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    // Every option built here is far below 64 KiB.
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(data);
}

/// One client message: Solicit, or Request with the chosen server's id.
pub fn encode(
    kind: u8,
    xid: u32,
    mac: &[u8; 6],
    elapsed: Duration,
    server_id: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&xid.to_be_bytes()[1..]);
    put_opt(&mut out, OPT_CLIENTID, &duid(mac));
    if let Some(s) = server_id {
        put_opt(&mut out, OPT_SERVERID, s);
    }
    // Elapsed time in hundredths of a second, 0xffff when longer.
    let cs = u16::try_from(elapsed.as_millis() / 10).unwrap_or(u16::MAX);
    put_opt(&mut out, OPT_ELAPSED_TIME, &cs.to_be_bytes());
    let mut oro = Vec::new();
    for code in [OPT_DNS_SERVERS, OPT_DOMAIN_LIST] {
        oro.extend_from_slice(&code.to_be_bytes());
    }
    put_opt(&mut out, OPT_ORO, &oro);
    // IA_NA: IAID, T1 and T2 zero (the server chooses), no address hint.
    let mut ia = iaid(mac).to_be_bytes().to_vec();
    ia.extend_from_slice(&[0; 8]);
    put_opt(&mut out, OPT_IA_NA, &ia);
    out
}

/// Splits `data` into (code, value) options, checking every length.
fn options(mut data: &[u8]) -> Result<Vec<(u16, &[u8])>, Dhcp6Error> {
    let mut v = Vec::new();
    while !data.is_empty() {
        let (Some(h), Some(rest)) = (data.get(..4), data.get(4..)) else {
            return Err(Dhcp6Error::Malformed(format!(
                "{} stray bytes after the last option",
                data.len()
            )));
        };
        let code = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let value = rest.get(..len).ok_or_else(|| {
            Dhcp6Error::Malformed(format!(
                "option {code} claims {len} bytes, {} are left",
                rest.len()
            ))
        })?;
        v.push((code, value));
        data = rest.get(len..).unwrap_or(&[]);
    }
    Ok(v)
}

fn status(value: &[u8]) -> (u16, String) {
    let code = value
        .get(..2)
        .map_or(STATUS_SUCCESS, |c| u16::from_be_bytes([c[0], c[1]]));
    let msg = String::from_utf8_lossy(value.get(2..).unwrap_or(&[])).into_owned();
    (code, msg)
}

/// RFC 1035 names without compression (RFC 8415 10).
fn domains(mut d: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    while let Some((&len, rest)) = d.split_first() {
        if len == 0 {
            if !labels.is_empty() {
                out.push(labels.join("."));
            }
            labels.clear();
            d = rest;
            continue;
        }
        let Some(label) = rest.get(..usize::from(len)) else {
            break;
        };
        labels.push(String::from_utf8_lossy(label).into_owned());
        d = rest.get(usize::from(len)..).unwrap_or(&[]);
    }
    out
}

fn ipv6s(value: &[u8]) -> Vec<Ipv6Addr> {
    value
        .chunks_exact(16)
        .filter_map(|c| <[u8; 16]>::try_from(c).ok().map(Ipv6Addr::from))
        .collect()
}

/// An Advertise or Reply that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply6 {
    pub kind: u8,
    pub server_id: Vec<u8>,
    pub preference: u8,
    pub lease: Lease6,
}

/// Decodes a server message and checks it answers transaction `xid` of the
/// client with `mac`, and that it offers an address in our IA.
pub fn parse_reply(bytes: &[u8], xid: u32, mac: &[u8; 6]) -> Result<Reply6, Dhcp6Error> {
    let (&kind, rest) = bytes
        .split_first()
        .ok_or_else(|| Dhcp6Error::Malformed("empty datagram".into()))?;
    let (Some(x), Some(body)) = (rest.get(..3), rest.get(3..)) else {
        return Err(Dhcp6Error::Malformed(format!("{} bytes", bytes.len())));
    };
    let got = u32::from_be_bytes([0, x[0], x[1], x[2]]);
    if kind != ADVERTISE && kind != REPLY {
        return Err(Dhcp6Error::NotOurs(format!("message type {kind}")));
    }
    if got != xid & 0x00ff_ffff {
        return Err(Dhcp6Error::NotOurs(format!(
            "transaction {got:#08x}, ours {:#08x}",
            xid & 0x00ff_ffff
        )));
    }
    let opts = options(body)?;
    let find = |c: u16| opts.iter().find(|(code, _)| *code == c).map(|(_, v)| *v);
    if find(OPT_CLIENTID) != Some(&duid(mac)[..]) {
        return Err(Dhcp6Error::NotOurs("client id is not ours".into()));
    }
    let server_id = find(OPT_SERVERID)
        .ok_or_else(|| Dhcp6Error::Malformed("no server id".into()))?
        .to_vec();
    if let Some((code, message)) = find(OPT_STATUS_CODE).map(status)
        && code != STATUS_SUCCESS
    {
        return Err(Dhcp6Error::Status { code, message });
    }
    let ia = opts
        .iter()
        .filter(|(c, _)| *c == OPT_IA_NA)
        .map(|(_, v)| *v)
        .find(|v| v.get(..4) == Some(&iaid(mac).to_be_bytes()[..]))
        .ok_or_else(|| Dhcp6Error::Malformed("no IA_NA for our IAID".into()))?;
    let ia_opts = options(ia.get(12..).unwrap_or(&[]))?;
    if let Some((code, message)) = ia_opts
        .iter()
        .find(|(c, _)| *c == OPT_STATUS_CODE)
        .map(|(_, v)| status(v))
        && code != STATUS_SUCCESS
    {
        return Err(Dhcp6Error::Status { code, message });
    }
    let (address, preferred_secs, valid_secs) = ia_opts
        .iter()
        .filter(|(c, _)| *c == OPT_IAADDR)
        .filter_map(|(_, v)| {
            let a = <[u8; 16]>::try_from(v.get(..16)?).ok()?;
            let p = u32::from_be_bytes(v.get(16..20)?.try_into().ok()?);
            let l = u32::from_be_bytes(v.get(20..24)?.try_into().ok()?);
            Some((Ipv6Addr::from(a), p, l))
        })
        .find(|(_, _, valid)| *valid > 0)
        .ok_or_else(|| Dhcp6Error::Malformed("IA_NA holds no address with a lifetime".into()))?;
    Ok(Reply6 {
        kind,
        server_id: server_id.clone(),
        preference: find(OPT_PREFERENCE)
            .and_then(|p| p.first().copied())
            .unwrap_or(0),
        lease: Lease6 {
            address,
            preferred_secs,
            valid_secs,
            dns: find(OPT_DNS_SERVERS).map(ipv6s).unwrap_or_default(),
            search: find(OPT_DOMAIN_LIST).map(domains).unwrap_or_default(),
            server_duid: server_id.iter().map(|b| format!("{b:02x}")).collect(),
        },
    })
}

/// RFC 8415 15: RT = IRT ± 10 % for the first, then 2·RT ± 10 %, capped by
/// MRT (itself ± 10 %).
fn next_rt(prev: Option<Duration>, irt: Duration, mrt: Duration) -> Duration {
    // RAND in [-0.1, +0.1], in thousandths.
    let rand = |d: Duration| {
        let r = i64::try_from(super::dhcp::random() % 201).unwrap_or(100) - 100;
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Duration::from_millis(u64::try_from(ms + ms * r / 1000).unwrap_or(0))
    };
    let rt = match prev {
        None => rand(irt),
        Some(p) => p
            .saturating_mul(2)
            .saturating_add(rand(p).saturating_sub(p)),
    };
    if rt > mrt { rand(mrt) } else { rt }
}

/// Runs the exchange until an address is leased or `cfg.timeout` passes.
pub fn acquire(t: &mut impl Transport, cfg: &Dhcp6Config) -> Result<Lease6, Dhcp6Error> {
    let start = t.now();
    let end = start + cfg.timeout;
    let io = |what: &'static str| {
        let iface = cfg.iface.clone();
        move |source| Dhcp6Error::Io {
            iface,
            what,
            source,
        }
    };
    let (mut solicits, mut advertises, mut requests, mut ignored) = (0u32, 0u32, 0u32, 0u32);
    let mut buf = vec![0u8; MAX_MESSAGE];
    'solicit: while t.now() < end {
        // Solicit: collect Advertises during the first RT and take the most
        // preferred; after that, the first one (RFC 8415 18.2.1).
        let xid = u32::try_from(super::dhcp::random() & 0x00ff_ffff).unwrap_or(1);
        let sol_start = t.now();
        let mut rt: Option<Duration> = None;
        let mut best: Option<Reply6> = None;
        let chosen = 'wait: loop {
            let now = t.now();
            if now >= end {
                break 'solicit;
            }
            let r = next_rt(rt, SOL_TIMEOUT, SOL_MAX_RT.min(cfg.max_retry));
            let first = rt.is_none();
            rt = Some(r);
            t.send(&encode(SOLICIT, xid, &cfg.mac, now - sol_start, None))
                .map_err(io("send Solicit"))?;
            solicits += 1;
            let deadline = (now + r).min(end);
            while let Some(n) = t.recv(&mut buf, deadline).map_err(io("receive"))? {
                match parse_reply(buf.get(..n).unwrap_or(&[]), xid, &cfg.mac) {
                    Ok(a) if a.kind == ADVERTISE => {
                        advertises += 1;
                        if a.preference == 255 || !first {
                            break 'wait a;
                        }
                        if best.as_ref().is_none_or(|b| a.preference > b.preference) {
                            best = Some(a);
                        }
                    }
                    Ok(_) => ignored += 1,
                    Err(e) => {
                        log::debug!("{}: DHCPv6: ignored: {e}", cfg.iface);
                        ignored += 1;
                    }
                }
            }
            if let Some(b) = best.take() {
                break 'wait b;
            }
        };
        log::info!(
            "{}: DHCPv6: {} offered by server {}",
            cfg.iface,
            chosen.lease.address,
            chosen.lease.server_duid
        );
        // Request, with its own transaction id and timers.
        let xid = u32::try_from(super::dhcp::random() & 0x00ff_ffff).unwrap_or(2);
        let req_start = t.now();
        let mut rt: Option<Duration> = None;
        for _ in 0..REQ_MAX_RC {
            let now = t.now();
            if now >= end {
                break 'solicit;
            }
            let r = next_rt(rt, REQ_TIMEOUT, REQ_MAX_RT.min(cfg.max_retry));
            rt = Some(r);
            t.send(&encode(
                REQUEST,
                xid,
                &cfg.mac,
                now - req_start,
                Some(&chosen.server_id),
            ))
            .map_err(io("send Request"))?;
            requests += 1;
            let deadline = (now + r).min(end);
            while let Some(n) = t.recv(&mut buf, deadline).map_err(io("receive"))? {
                match parse_reply(buf.get(..n).unwrap_or(&[]), xid, &cfg.mac) {
                    Ok(r) if r.kind == REPLY && r.server_id == chosen.server_id => {
                        log::info!(
                            "{}: DHCPv6: leased {} (valid {} s)",
                            cfg.iface,
                            r.lease.address,
                            r.lease.valid_secs
                        );
                        return Ok(r.lease);
                    }
                    // A refusal (NoAddrsAvail, NotOnLink): start over.
                    Err(e @ Dhcp6Error::Status { .. }) => {
                        log::warn!("{}: DHCPv6: {e}; soliciting again", cfg.iface);
                        continue 'solicit;
                    }
                    Ok(_) | Err(_) => ignored += 1,
                }
            }
        }
    }
    Err(Dhcp6Error::Timeout {
        iface: cfg.iface.clone(),
        secs: cfg.timeout.as_secs(),
        solicits,
        advertises,
        requests,
        ignored,
    })
}

#[cfg(test)]
mod tests;
