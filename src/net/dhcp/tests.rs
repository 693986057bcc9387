use super::*;
use dhcproto::v4::{DhcpOption, Message, MessageType as DpType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use proptest::prelude::*;
use std::collections::VecDeque;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 50);

fn reply(kind: DpType, xid: u32, mac: &[u8], opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        OFFERED,
        SERVER,
        Ipv4Addr::UNSPECIFIED,
        mac,
    );
    msg.set_opcode(Opcode::BootReply);
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        msg.opts_mut().insert(o);
    }
    msg.to_vec().unwrap()
}

fn full_opts() -> Vec<DhcpOption> {
    vec![
        DhcpOption::ServerIdentifier(SERVER),
        DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
        DhcpOption::Router(vec![Ipv4Addr::new(10, 9, 0, 254)]),
        DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(10, 9, 0, 53),
            Ipv4Addr::new(10, 9, 0, 54),
        ]),
        DhcpOption::DomainName("lan.example".into()),
        DhcpOption::Hostname("src1".into()),
        DhcpOption::AddressLeaseTime(3600),
    ]
}

/// A scripted server on a virtual clock: `respond` sees every sent message
/// and returns the datagrams to deliver. An empty queue means silence until
/// the deadline, which the clock jumps to.
struct Fake<F: FnMut(&Message) -> Vec<Vec<u8>>> {
    start: Instant,
    elapsed: Duration,
    queue: VecDeque<Vec<u8>>,
    sent: Vec<Message>,
    respond: F,
}

impl<F: FnMut(&Message) -> Vec<Vec<u8>>> Fake<F> {
    fn new(respond: F) -> Self {
        Fake {
            start: Instant::now(),
            elapsed: Duration::ZERO,
            queue: VecDeque::new(),
            sent: Vec::new(),
            respond,
        }
    }
    fn kinds(&self) -> Vec<DpType> {
        self.sent
            .iter()
            .map(|m| m.opts().msg_type().unwrap())
            .collect()
    }
}

impl<F: FnMut(&Message) -> Vec<Vec<u8>>> Transport for Fake<F> {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        let msg = Message::from_bytes(packet).unwrap();
        self.queue.extend((self.respond)(&msg));
        self.sent.push(msg);
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        match self.queue.pop_front() {
            Some(p) => {
                buf[..p.len()].copy_from_slice(&p);
                Ok(Some(p.len()))
            }
            None => {
                self.elapsed = self.elapsed.max(deadline - self.start);
                Ok(None)
            }
        }
    }
    fn now(&self) -> Instant {
        self.start + self.elapsed
    }
}

fn cfg() -> DhcpConfig {
    let mut c = DhcpConfig::new("eth0", &MAC);
    c.hostname = Some("web1".into());
    c
}

/// A well-behaved server: OFFER to DISCOVER, ACK to REQUEST.
fn good_server(m: &Message) -> Vec<Vec<u8>> {
    let kind = match m.opts().msg_type() {
        Some(DpType::Discover) => DpType::Offer,
        Some(DpType::Request) => DpType::Ack,
        _ => return vec![],
    };
    vec![reply(kind, m.xid(), m.chaddr(), full_opts())]
}

#[test]
fn full_exchange_yields_the_lease() {
    let mut t = Fake::new(good_server);
    let lease = acquire(&mut t, &cfg()).unwrap();
    assert_eq!(
        lease,
        Lease {
            address: OFFERED,
            prefix_len: 24,
            routers: vec![Ipv4Addr::new(10, 9, 0, 254)],
            dns: vec![Ipv4Addr::new(10, 9, 0, 53), Ipv4Addr::new(10, 9, 0, 54)],
            domain: Some("lan.example".into()),
            hostname: Some("src1".into()),
            lease_secs: Some(3600),
            server: SERVER,
        }
    );
    assert_eq!(t.kinds(), [DpType::Discover, DpType::Request]);
    let (d, r) = (&t.sent[0], &t.sent[1]);
    assert_eq!(d.xid(), r.xid(), "REQUEST keeps the DISCOVER's xid");
    assert!(d.flags().broadcast());
    assert_eq!(&d.chaddr()[..6], &MAC);
    assert!(
        matches!(r.opts().get(OptionCode::RequestedIpAddress), Some(DhcpOption::RequestedIpAddress(a)) if *a == OFFERED)
    );
    assert!(
        matches!(r.opts().get(OptionCode::ServerIdentifier), Some(DhcpOption::ServerIdentifier(a)) if *a == SERVER)
    );
    assert!(
        matches!(r.opts().get(OptionCode::Hostname), Some(DhcpOption::Hostname(h)) if h == "web1")
    );
    assert!(
        matches!(d.opts().get(OptionCode::ClientIdentifier), Some(DhcpOption::ClientIdentifier(id)) if id[..] == [1, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
}

#[test]
fn lost_discovers_are_retransmitted_with_backoff() {
    let mut n = 0;
    let mut t = Fake::new(|m: &Message| {
        n += 1;
        if n <= 2 { vec![] } else { good_server(m) }
    });
    let lease = acquire(&mut t, &cfg()).unwrap();
    assert_eq!(lease.address, OFFERED);
    assert_eq!(
        t.kinds(),
        [
            DpType::Discover,
            DpType::Discover,
            DpType::Discover,
            DpType::Request
        ]
    );
    // 2 s then 4 s (plus < 0.5 s jitter each) passed before the third DISCOVER.
    let secs: Vec<u16> = t.sent.iter().map(Message::secs).collect();
    assert_eq!(secs[..3], [0, 2, 6]);
}

#[test]
fn foreign_and_malformed_replies_are_skipped() {
    let mut t = Fake::new(|m: &Message| {
        let mut out = vec![
            vec![1, 2, 3],                                                   // truncated
            reply(DpType::Offer, m.xid() ^ 1, m.chaddr(), full_opts()),      // other xid
            reply(DpType::Offer, m.xid(), &[9, 9, 9, 9, 9, 9], full_opts()), // other client
        ];
        out.extend(good_server(m));
        out
    });
    assert_eq!(acquire(&mut t, &cfg()).unwrap().address, OFFERED);
    assert_eq!(t.kinds(), [DpType::Discover, DpType::Request]);
}

#[test]
fn nak_restarts_with_a_new_transaction() {
    let mut naked = false;
    let mut t = Fake::new(|m: &Message| {
        if m.opts().msg_type() == Some(DpType::Request) && !naked {
            naked = true;
            return vec![reply(
                DpType::Nak,
                m.xid(),
                m.chaddr(),
                vec![DhcpOption::ServerIdentifier(SERVER)],
            )];
        }
        good_server(m)
    });
    assert_eq!(acquire(&mut t, &cfg()).unwrap().address, OFFERED);
    assert_eq!(
        t.kinds(),
        [
            DpType::Discover,
            DpType::Request,
            DpType::Discover,
            DpType::Request
        ]
    );
    assert_ne!(t.sent[0].xid(), t.sent[2].xid());
}

#[test]
fn unanswered_requests_start_over() {
    let mut t = Fake::new(|m: &Message| match m.opts().msg_type() {
        Some(DpType::Discover) => good_server(m),
        _ => vec![],
    });
    let mut c = cfg();
    c.timeout = Duration::from_secs(200);
    let e = acquire(&mut t, &c).unwrap_err();
    let kinds = t.kinds();
    assert_eq!(
        kinds[..6],
        [
            DpType::Discover,
            DpType::Request,
            DpType::Request,
            DpType::Request,
            DpType::Request,
            DpType::Discover
        ]
    );
    assert!(e.to_string().contains("no lease within 200 s"), "{e}");
}

#[test]
fn silence_times_out_with_counts() {
    let mut t = Fake::new(|_: &Message| vec![]);
    let e = acquire(&mut t, &cfg()).unwrap_err();
    // 2+4+8+16+16+16 > 60: six DISCOVERs fit in the minute.
    assert_eq!(
        e.to_string(),
        "eth0: DHCP: no lease within 60 s (6 DISCOVER, 0 OFFER, 0 NAK, 0 foreign or malformed replies); is a DHCP server on this network?"
    );
    assert!(t.now() - t.start <= Duration::from_secs(60));
}

#[test]
fn non_ethernet_is_refused() {
    let mut t = Fake::new(good_server);
    let c = DhcpConfig::new("ib0", &[1; 20]);
    assert!(
        acquire(&mut t, &c)
            .unwrap_err()
            .to_string()
            .contains("not a 6-byte Ethernet address")
    );
}

#[test]
fn reply_checks() {
    let xid = 0x1234_5678;
    let ok = reply(DpType::Ack, xid, &MAC, full_opts());
    assert_eq!(
        parse_reply(&ok, xid, &MAC).unwrap().routers,
        vec![Ipv4Addr::new(10, 9, 0, 254)]
    );
    let err = |b: &[u8]| parse_reply(b, xid, &MAC).unwrap_err().to_string();
    assert!(
        err(&ok[..100]).starts_with("DHCP reply: "),
        "truncated header"
    );
    assert!(err(&[]).starts_with("DHCP reply: "));
    assert!(err(&reply(DpType::Ack, xid + 1, &MAC, full_opts())).contains("xid"));
    // A request echoed back (e.g. our own broadcast) is not a reply.
    assert!(err(&discover(xid, &MAC, 0, None).unwrap()).contains("is not BOOTREPLY"));
    let no_server = reply(DpType::Offer, xid, &MAC, vec![]);
    assert!(err(&no_server).contains("without server identifier"));
    let bad_mask = reply(
        DpType::Ack,
        xid,
        &MAC,
        vec![DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0))],
    );
    assert!(err(&bad_mask).contains("not contiguous"));
    let inform = reply(DpType::Inform, xid, &MAC, vec![]);
    assert!(err(&inform).contains("unexpected message type"));
}

/// Replaces the value bytes of the first occurrence of option `code` with a
/// wrong length, keeping the rest of the packet.
fn with_option_length(packet: &[u8], code: u8, len: u8) -> Vec<u8> {
    let mut i = 240; // fixed header + magic cookie
    while i + 1 < packet.len() {
        let c = packet[i];
        if c == 0 {
            i += 1;
            continue;
        }
        let l = packet[i + 1] as usize;
        if c == code {
            let mut out = packet[..i + 1].to_vec();
            out.push(len);
            out.extend_from_slice(&packet[i + 2..]);
            return out;
        }
        i += 2 + l;
    }
    panic!("option {code} not found");
}

#[test]
fn bad_option_lengths_are_errors_not_panics() {
    let xid = 7;
    let ok = reply(DpType::Ack, xid, &MAC, full_opts());
    for (code, len) in [
        (1u8, 3u8),
        (1, 5),
        (3, 0),
        (3, 5),
        (6, 7),
        (51, 2),
        (53, 0),
        (54, 200),
        (12, 255),
    ] {
        let bad = with_option_length(&ok, code, len);
        match parse_reply(&bad, xid, &MAC) {
            Err(DhcpError::Malformed(_)) => {}
            // A shorter length can still frame valid options; then the values
            // must come out as what the bytes say, never garbage from elsewhere.
            Ok(r) => assert!(len < 4 || code == 12, "option {code} len {len}: {r:?}"),
            Err(e) => panic!("option {code} len {len}: {e}"),
        }
    }
}

#[test]
fn oversized_hardware_length_is_refused_not_a_panic() {
    // dhcproto 0.15 panics in `chaddr()` for hlen > 16.
    let mut p = reply(DpType::Ack, 3, &MAC, full_opts());
    p[2] = 200;
    assert!(
        parse_reply(&p, 3, &MAC)
            .unwrap_err()
            .to_string()
            .contains("hardware address")
    );
}

#[test]
fn missing_subnet_mask_uses_the_classful_prefix() {
    let xid = 9;
    let r = parse_reply(
        &reply(
            DpType::Ack,
            xid,
            &MAC,
            vec![DhcpOption::ServerIdentifier(SERVER)],
        ),
        xid,
        &MAC,
    )
    .unwrap();
    assert_eq!(r.into_lease(SERVER).prefix_len, 8);
}

#[test]
fn backoff_doubles_and_caps() {
    let c = cfg();
    let secs: Vec<u64> = (0..7).map(|n| backoff(&c, n).as_secs()).collect();
    assert_eq!(secs, [2, 4, 8, 16, 16, 16, 16]);
    assert!(backoff(&c, 100) < Duration::from_millis(16_500));
}

proptest! {
    #[test]
    fn parse_reply_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = parse_reply(&bytes, 1, &MAC);
    }

    #[test]
    fn mutated_replies_never_panic(
        idx in prop::collection::vec(0usize..400, 1..8),
        val in prop::collection::vec(any::<u8>(), 8),
        cut in 0usize..400,
    ) {
        let mut p = reply(DpType::Ack, 5, &MAC, full_opts());
        for (i, v) in idx.iter().zip(val.iter()) {
            if let Some(b) = p.get_mut(*i) { *b = *v; }
        }
        p.truncate(cut.max(1));
        let _ = parse_reply(&p, 5, &MAC);
    }
}

fn bound_lease() -> Lease {
    Lease {
        address: OFFERED,
        prefix_len: 24,
        routers: vec![],
        dns: vec![],
        domain: None,
        hostname: None,
        lease_secs: Some(600),
        server: SERVER,
    }
}

#[test]
fn renewal_sends_ciaddr_and_returns_the_extended_lease() {
    let mut t = Fake::new(|m: &Message| {
        let mut opts = full_opts();
        opts.push(DhcpOption::AddressLeaseTime(7200));
        vec![reply(DpType::Ack, m.xid(), m.chaddr(), opts)]
    });
    let lease = renew(&mut t, &cfg(), &bound_lease()).unwrap();
    assert_eq!(lease.lease_secs, Some(7200));
    let r = &t.sent[0];
    assert_eq!(r.opts().msg_type(), Some(DpType::Request));
    assert_eq!(r.ciaddr(), OFFERED);
    assert!(r.opts().get(OptionCode::RequestedIpAddress).is_none());
    assert!(r.opts().get(OptionCode::ServerIdentifier).is_none());
}

#[test]
fn renewal_nak_is_refused_and_silence_times_out() {
    let mut t = Fake::new(|m: &Message| vec![reply(DpType::Nak, m.xid(), m.chaddr(), vec![])]);
    let e = renew(&mut t, &cfg(), &bound_lease()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "eth0: DHCP: the server refused to extend the lease of 10.9.0.50 (NAK)"
    );
    let mut t = Fake::new(|_: &Message| vec![]);
    let mut c = cfg();
    c.timeout = Duration::from_secs(10);
    assert!(matches!(
        renew(&mut t, &c, &bound_lease()),
        Err(DhcpError::Timeout { .. })
    ));
    assert_eq!(t.sent.len(), 3, "2 s, 4 s, then the 10 s are up");
}
