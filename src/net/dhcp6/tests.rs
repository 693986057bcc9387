use super::*;
use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, OptionCode, Status, StatusCode,
};
use dhcproto::{Decodable, Encodable, Name};
use std::collections::VecDeque;
use std::io;
use std::str::FromStr;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const SERVER_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];

/// A scripted server on a virtual clock (as in the DHCPv4 tests): `respond`
/// sees every sent message, decoded by dhcproto, and returns datagrams.
struct Fake<F: FnMut(&Message) -> Vec<Vec<u8>>> {
    start: Instant,
    elapsed: Duration,
    queue: VecDeque<Vec<u8>>,
    sent: Vec<(Duration, Message)>,
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
    fn kinds(&self) -> Vec<MessageType> {
        self.sent.iter().map(|(_, m)| m.msg_type()).collect()
    }
}

impl<F: FnMut(&Message) -> Vec<Vec<u8>>> Transport for Fake<F> {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        let msg = Message::from_bytes(packet).expect("dhcproto reads what we send");
        self.queue.extend((self.respond)(&msg));
        self.sent.push((self.elapsed, msg));
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

fn cfg() -> Dhcp6Config {
    Dhcp6Config {
        iface: "eth0".into(),
        mac: MAC,
        timeout: Duration::from_secs(60),
        max_retry: Duration::from_secs(16),
    }
}

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The server's answer to `m`, with the address and extras in `extra`.
fn answer(m: &Message, kind: MessageType, address: &str, extra: Vec<DhcpOption>) -> Vec<u8> {
    let mut r = Message::new_with_id(kind, m.xid());
    let opts = r.opts_mut();
    if let Some(c) = m.opts().get(OptionCode::ClientId) {
        opts.insert(c.clone());
    }
    opts.insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
    let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
        panic!("no IA_NA in {m:?}");
    };
    let mut ia_opts = DhcpOptions::new();
    ia_opts.insert(DhcpOption::IAAddr(IAAddr {
        addr: addr(address),
        preferred_life: 1800,
        valid_life: 3600,
        opts: DhcpOptions::new(),
    }));
    opts.insert(DhcpOption::IANA(IANA {
        id: ia.id,
        t1: 900,
        t2: 1440,
        opts: ia_opts,
    }));
    for o in extra {
        opts.insert(o);
    }
    r.to_vec().unwrap()
}

#[test]
fn solicit_advertise_request_reply() {
    let mut t = Fake::new(|m| match m.msg_type() {
        MessageType::Solicit => vec![answer(m, MessageType::Advertise, "2001:db8:7::100", vec![])],
        MessageType::Request => vec![answer(
            m,
            MessageType::Reply,
            "2001:db8:7::100",
            vec![
                DhcpOption::DomainNameServers(vec![addr("2001:db8:7::53")]),
                DhcpOption::DomainSearchList(vec![Name::from_str("lab.example.").unwrap()]),
            ],
        )],
        _ => vec![],
    });
    let lease = acquire(&mut t, &cfg()).unwrap();
    assert_eq!(lease.address, addr("2001:db8:7::100"));
    assert_eq!((lease.preferred_secs, lease.valid_secs), (1800, 3600));
    assert_eq!(lease.dns, [addr("2001:db8:7::53")]);
    assert_eq!(lease.search, ["lab.example"]);
    assert_eq!(lease.server_duid, "00030001020000000001");
    assert_eq!(t.kinds(), [MessageType::Solicit, MessageType::Request]);
    // What we send, as dhcproto reads it: our DUID-LL, elapsed time, the
    // options we want, IA_NA; the Request names the chosen server.
    let (_, sol) = &t.sent[0];
    assert_eq!(
        sol.opts().get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(vec![
            0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56
        ]))
    );
    assert!(matches!(
        sol.opts().get(OptionCode::ElapsedTime),
        Some(DhcpOption::ElapsedTime(0))
    ));
    let Some(DhcpOption::ORO(oro)) = sol.opts().get(OptionCode::ORO) else {
        panic!("no ORO in {sol:?}")
    };
    assert_eq!(
        oro.opts,
        [OptionCode::DomainNameServers, OptionCode::DomainSearchList]
    );
    assert!(
        matches!(sol.opts().get(OptionCode::IANA), Some(DhcpOption::IANA(ia)) if ia.id == 0x0012_3456)
    );
    let (_, req) = &t.sent[1];
    assert_eq!(
        req.opts().get(OptionCode::ServerId),
        Some(&DhcpOption::ServerId(SERVER_DUID.to_vec()))
    );
    assert_ne!(req.xid(), sol.xid(), "a Request is a new transaction");
}

/// RFC 8415 15: first RT 1 s ± 10 %, then doubling ± 10 %, capped at the
/// request's maximum; the whole exchange stops at the timeout.
#[test]
fn silence_retransmits_with_rfc_timers_until_the_timeout() {
    let mut t = Fake::new(|_| vec![]);
    let mut c = cfg();
    c.timeout = Duration::from_secs(30);
    c.max_retry = Duration::from_secs(8);
    let e = acquire(&mut t, &c).unwrap_err();
    let times: Vec<f64> = t.sent.iter().map(|(d, _)| d.as_secs_f64()).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let want = [1.0, 2.0, 4.0, 8.0];
    for (i, g) in gaps.iter().enumerate() {
        let w = want.get(i).copied().unwrap_or(8.0);
        // ±10 % per step, compounded over the doubling.
        assert!(
            (g - w).abs() <= w * 0.25 && *g <= 8.0 * 1.1 + 1e-9,
            "gap {i} is {g} s, want about {w}: {times:?}"
        );
    }
    assert!(times.iter().all(|t| *t < 30.0), "{times:?}");
    assert!(t.kinds().iter().all(|k| *k == MessageType::Solicit));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "eth0: DHCPv6: no address within 30 s ({} Solicit, 0 Advertise, 0 Request",
            times.len()
        )),
        "{msg}"
    );
    // Elapsed time grows in hundredths of a second.
    let Some(DhcpOption::ElapsedTime(cs)) = t.sent[1].1.opts().get(OptionCode::ElapsedTime) else {
        panic!()
    };
    assert!((90..=110).contains(cs), "{cs}");
}

#[test]
fn the_most_preferred_advertise_of_the_first_rt_wins_and_foreign_ones_are_ignored() {
    let mut t = Fake::new(|m| match m.msg_type() {
        MessageType::Solicit => {
            let mut foreign =
                Message::from_bytes(&answer(m, MessageType::Advertise, "2001:db8:7::66", vec![]))
                    .unwrap();
            foreign.set_xid_num(m.xid_num() ^ 1);
            let none = {
                let mut r = Message::new_with_id(MessageType::Advertise, m.xid());
                r.opts_mut()
                    .insert(m.opts().get(OptionCode::ClientId).unwrap().clone());
                r.opts_mut().insert(DhcpOption::ServerId(vec![9; 4]));
                r.opts_mut().insert(DhcpOption::StatusCode(StatusCode {
                    status: Status::NoAddrsAvail,
                    msg: "none left".into(),
                }));
                r.to_vec().unwrap()
            };
            vec![
                foreign.to_vec().unwrap(),
                none,
                answer(m, MessageType::Advertise, "2001:db8:7::101", vec![]),
                answer(
                    m,
                    MessageType::Advertise,
                    "2001:db8:7::102",
                    vec![DhcpOption::Preference(10)],
                ),
                vec![2, 0],
            ]
        }
        MessageType::Request => {
            let Some(DhcpOption::ServerId(_)) = m.opts().get(OptionCode::ServerId) else {
                panic!()
            };
            vec![answer(m, MessageType::Reply, "2001:db8:7::102", vec![])]
        }
        _ => vec![],
    });
    let lease = acquire(&mut t, &cfg()).unwrap();
    assert_eq!(lease.address, addr("2001:db8:7::102"));
}

#[test]
fn a_refused_request_starts_over_with_a_solicit() {
    let mut refused = false;
    let mut t = Fake::new(move |m| match m.msg_type() {
        MessageType::Solicit => vec![answer(m, MessageType::Advertise, "2001:db8:7::100", vec![])],
        MessageType::Request if !refused => {
            refused = true;
            let mut r =
                Message::from_bytes(&answer(m, MessageType::Reply, "2001:db8:7::100", vec![]))
                    .unwrap();
            r.opts_mut().insert(DhcpOption::StatusCode(StatusCode {
                status: Status::NoAddrsAvail,
                msg: String::new(),
            }));
            vec![r.to_vec().unwrap()]
        }
        MessageType::Request => vec![answer(m, MessageType::Reply, "2001:db8:7::100", vec![])],
        _ => vec![],
    });
    acquire(&mut t, &cfg()).unwrap();
    assert_eq!(
        t.kinds(),
        [
            MessageType::Solicit,
            MessageType::Request,
            MessageType::Solicit,
            MessageType::Request
        ]
    );
}

#[test]
fn malformed_replies_are_errors_not_panics() {
    let good = {
        let m =
            Message::from_bytes(&encode(SOLICIT, 0x0abcde, &MAC, Duration::ZERO, None)).unwrap();
        answer(&m, MessageType::Reply, "2001:db8:7::100", vec![])
    };
    assert!(parse_reply(&good, 0x0abcde, &MAC).is_ok());
    for n in 0..good.len() {
        let _ = parse_reply(&good[..n], 0x0abcde, &MAC);
    }
    let mut long = good.clone();
    long[6] = 0xff; // the first option's length, high byte
    assert!(matches!(
        parse_reply(&long, 0x0abcde, &MAC),
        Err(Dhcp6Error::Malformed(_))
    ));
    assert!(matches!(
        parse_reply(&good, 0x0abcdf, &MAC),
        Err(Dhcp6Error::NotOurs(_))
    ));
    let mut other = MAC;
    other[5] ^= 1;
    assert!(matches!(
        parse_reply(&good, 0x0abcde, &other),
        Err(Dhcp6Error::NotOurs(_))
    ));
}

proptest::proptest! {
    #[test]
    fn parse_reply_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let _ = parse_reply(&bytes, 0x0abcde, &MAC);
        let _ = domains(&bytes);
    }
}
