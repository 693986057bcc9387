//! The DHCPv4 message on the wire (RFC 2131 §2, options RFC 2132): encoding
//! of the two requests the client sends and a bounds-checked decoder for the
//! replies it receives.
//!
//! Written by hand: `dhcproto` 0.15 (the kept crate) panics on malformed
//! input — `Message::chaddr()` slices by the untrusted `hlen`, and option 80
//! with a non-zero length trips a `debug_assert!` — both found by this
//! module's property tests. It also pulls a DNS library and Unicode tables
//! into PID 1 for a 300-byte message. It stays a dev-dependency: the tests
//! cross-check this codec against it.

use std::net::Ipv4Addr;

/// Fixed BOOTP header, then the magic cookie, then options.
const HEADER_LEN: usize = 236;
const OPTIONS_START: usize = HEADER_LEN + 4;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Many relays and old servers drop BOOTP messages shorter than this.
const MIN_LEN: usize = 300;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHER: u8 = 1;
const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes this client sends or reads.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<MessageType> {
        use MessageType::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// Largest datagram we accept (option 57 tells the server).
pub const MAX_MESSAGE: usize = 1500;

/// A DISCOVER or REQUEST from this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    pub secs: u16,
    /// Option 50 (REQUEST in SELECTING state).
    pub requested: Option<Ipv4Addr>,
    /// Option 54 (REQUEST in SELECTING state).
    pub server: Option<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<&'a str>,
    /// Our bound address when renewing a lease, else unspecified.
    pub ciaddr: Ipv4Addr,
}

/// Options asked for in every request (option 55).
pub const WANTED: [u8; 7] = [
    opt::SUBNET_MASK,
    opt::ROUTER,
    opt::DNS,
    opt::HOSTNAME,
    opt::DOMAIN_NAME,
    opt::LEASE_TIME,
    opt::SERVER_ID,
];

fn push_option(out: &mut Vec<u8>, code: u8, value: &[u8]) -> Result<(), String> {
    let len = u8::try_from(value.len())
        .map_err(|_| format!("option {code} is {} bytes, at most 255 fit", value.len()))?;
    out.push(code);
    out.push(len);
    out.extend_from_slice(value);
    Ok(())
}

impl ClientMessage<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(MIN_LEN);
        out.extend_from_slice(&[BOOTREQUEST, HTYPE_ETHER, 6, 0]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        // Without an address the kernel drops unicast replies to the offered
        // address, so ask the server to broadcast (RFC 2131 §4.1).
        out.extend_from_slice(&FLAG_BROADCAST.to_be_bytes());
        out.extend_from_slice(&self.ciaddr.octets());
        out.extend_from_slice(&[0u8; 12]); // yiaddr, siaddr, giaddr
        out.extend_from_slice(&self.mac);
        out.resize(HEADER_LEN, 0); // rest of chaddr, sname, file
        out.extend_from_slice(&MAGIC);
        push_option(&mut out, opt::MESSAGE_TYPE, &[self.kind as u8])?;
        let mut client_id = vec![HTYPE_ETHER];
        client_id.extend_from_slice(&self.mac);
        push_option(&mut out, opt::CLIENT_ID, &client_id)?;
        push_option(&mut out, opt::PARAMETER_LIST, &WANTED)?;
        push_option(
            &mut out,
            opt::MAX_MESSAGE_SIZE,
            &u16::try_from(MAX_MESSAGE).unwrap_or(u16::MAX).to_be_bytes(),
        )?;
        if let Some(a) = self.requested {
            push_option(&mut out, opt::REQUESTED_IP, &a.octets())?;
        }
        if let Some(a) = self.server {
            push_option(&mut out, opt::SERVER_ID, &a.octets())?;
        }
        if let Some(h) = self.hostname {
            push_option(&mut out, opt::HOSTNAME, h.as_bytes())?;
        }
        out.push(opt::END);
        if out.len() < MIN_LEN {
            out.resize(MIN_LEN, opt::PAD);
        }
        Ok(out)
    }
}

/// A server's reply, after framing checks; values not yet interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub xid: u32,
    pub hlen: u8,
    pub chaddr: [u8; 16],
    pub yiaddr: Ipv4Addr,
    /// Each option's value; repeated options are concatenated (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl RawReply {
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decodes a BOOTREPLY. Every length comes from the packet and is checked
/// against it before use.
pub fn decode_reply(b: &[u8]) -> Result<RawReply, String> {
    if b.len() < OPTIONS_START {
        return Err(format!(
            "truncated: {} bytes, a DHCP message has at least {OPTIONS_START}",
            b.len()
        ));
    }
    if b.first() != Some(&BOOTREPLY) {
        return Err(format!(
            "op {} is not BOOTREPLY",
            b.first().copied().unwrap_or(0)
        ));
    }
    if b.get(HEADER_LEN..OPTIONS_START) != Some(&MAGIC[..]) {
        return Err("no DHCP magic cookie".into());
    }
    let mut chaddr = [0u8; 16];
    chaddr.copy_from_slice(b.get(28..44).ok_or("truncated chaddr")?);
    let yiaddr = Ipv4Addr::from(be_u32(b, 16).ok_or("truncated yiaddr")?);
    let mut reply = RawReply {
        xid: be_u32(b, 4).ok_or("truncated xid")?,
        hlen: b.get(2).copied().unwrap_or(0),
        chaddr,
        yiaddr,
        options: Vec::new(),
    };
    let area = b.get(OPTIONS_START..).unwrap_or_default();
    parse_options(area, OPTIONS_START, &mut reply.options)?;
    // Option 52: the file and/or sname fields carry more options.
    if let Some(v) = reply.option(opt::OVERLOAD).map(<[u8]>::to_vec) {
        let which = match v.as_slice() {
            [w @ 1..=3] => *w,
            other => return Err(format!("option overload (52) value {other:?}")),
        };
        if which & 1 != 0 {
            parse_options(b.get(108..236).unwrap_or_default(), 108, &mut reply.options)?;
        }
        if which & 2 != 0 {
            parse_options(b.get(44..108).unwrap_or_default(), 44, &mut reply.options)?;
        }
    }
    Ok(reply)
}

/// Parses one option area (`base` is its offset in the packet, for errors).
fn parse_options(area: &[u8], base: usize, out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), String> {
    let mut i = 0usize;
    while let Some(&code) = area.get(i) {
        match code {
            opt::PAD => i += 1,
            opt::END => return Ok(()),
            _ => {
                let at = base + i;
                let len = *area
                    .get(i + 1)
                    .ok_or_else(|| format!("option {code} at offset {at} has no length byte"))?
                    as usize;
                let value = area.get(i + 2..i + 2 + len).ok_or_else(|| {
                    format!(
                        "option {code} at offset {at}: length {len} runs past the end of the message"
                    )
                })?;
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, v)) => v.extend_from_slice(value),
                    None => out.push((code, value.to_vec())),
                }
                i += 2 + len;
            }
        }
    }
    // A missing END is tolerated: some servers pad to the end instead.
    Ok(())
}

/// Option value readers: each names the option and the length it got.
pub fn ipv4(code: u8, v: &[u8]) -> Result<Ipv4Addr, String> {
    match v {
        [a, b, c, d] => Ok(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => Err(format!(
            "option {code}: length {}, an address needs 4",
            v.len()
        )),
    }
}

pub fn ipv4_list(code: u8, v: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    if v.is_empty() || v.len() % 4 != 0 {
        return Err(format!(
            "option {code}: length {}, a list of addresses needs a multiple of 4",
            v.len()
        ));
    }
    Ok(v.chunks_exact(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect())
}

pub fn u32_value(code: u8, v: &[u8]) -> Result<u32, String> {
    match v {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(format!(
            "option {code}: length {}, a 32-bit value needs 4",
            v.len()
        )),
    }
}

pub fn message_type(v: &[u8]) -> Result<MessageType, String> {
    match v {
        [t] => MessageType::from_u8(*t).ok_or_else(|| format!("unknown message type {t}")),
        _ => Err(format!("option 53: length {}, 1 needed", v.len())),
    }
}

/// A host or domain name, only if it is safe to write into resolv.conf and
/// to show: letters, digits, '-', '_' and '.'; trailing NULs (sent by some
/// servers) are dropped.
pub fn dns_name(v: &[u8]) -> Option<String> {
    let end = v.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
    let name = v.get(..end)?;
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    ok.then(|| String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::Decodable;
    use dhcproto::v4::{DhcpOption, Message, OptionCode};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    fn request() -> ClientMessage<'static> {
        ClientMessage {
            kind: MessageType::Request,
            xid: 0xdead_beef,
            mac: MAC,
            secs: 3,
            requested: Some(Ipv4Addr::new(10, 0, 0, 9)),
            server: Some(Ipv4Addr::new(10, 0, 0, 1)),
            hostname: Some("src1"),
            ciaddr: Ipv4Addr::UNSPECIFIED,
        }
    }

    #[test]
    fn encoded_request_reads_back_in_dhcproto() {
        let bytes = request().encode().unwrap();
        assert_eq!(bytes.len(), MIN_LEN);
        assert_eq!(&bytes[236..240], &MAGIC);
        let m = Message::from_bytes(&bytes).unwrap();
        assert_eq!(m.xid(), 0xdead_beef);
        assert_eq!(m.secs(), 3);
        assert!(m.flags().broadcast());
        assert_eq!(m.chaddr(), &MAC);
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(dhcproto::v4::MessageType::Request));
        assert_eq!(
            o.get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 9)))
        );
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("src1".into()))
        );
        assert_eq!(
            o.get(OptionCode::MaxMessageSize),
            Some(&DhcpOption::MaxMessageSize(1500))
        );
    }

    #[test]
    fn oversized_hostname_is_an_error() {
        let long = "a".repeat(256);
        let mut m = request();
        m.hostname = Some(&long);
        assert_eq!(
            m.encode().unwrap_err(),
            "option 12 is 256 bytes, at most 255 fit"
        );
    }

    /// A minimal BOOTREPLY with `options` after the cookie.
    fn raw(options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_START];
        b[0] = BOOTREPLY;
        b[2] = 6;
        b[4..8].copy_from_slice(&7u32.to_be_bytes());
        b[16..20].copy_from_slice(&[10, 0, 0, 9]);
        b[28..34].copy_from_slice(&MAC);
        b[HEADER_LEN..OPTIONS_START].copy_from_slice(&MAGIC);
        b.extend_from_slice(options);
        b
    }

    #[test]
    fn decodes_header_and_options() {
        let r = decode_reply(&raw(&[
            53, 1, 5, 0, 0, 3, 8, 10, 0, 0, 1, 10, 0, 0, 2, 255, 99,
        ]))
        .unwrap();
        assert_eq!(r.xid, 7);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(&r.chaddr[..6], &MAC);
        assert_eq!(r.option(53), Some(&[5u8][..]));
        assert_eq!(
            ipv4_list(3, r.option(3).unwrap()).unwrap(),
            [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
    }

    #[test]
    fn repeated_options_concatenate_and_missing_end_is_tolerated() {
        let r = decode_reply(&raw(&[6, 4, 1, 1, 1, 1, 6, 4, 2, 2, 2, 2])).unwrap();
        assert_eq!(r.option(6).unwrap(), &[1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn overloaded_file_field_carries_options() {
        let mut b = raw(&[52, 1, 1, 255]);
        b[108..110].copy_from_slice(&[54, 200]);
        assert_eq!(
            decode_reply(&b).unwrap_err(),
            "option 54 at offset 108: length 200 runs past the end of the message"
        );
        b[108..115].copy_from_slice(&[54, 4, 10, 0, 0, 1, 255]);
        let r = decode_reply(&b).unwrap();
        assert_eq!(
            ipv4(54, r.option(54).unwrap()).unwrap(),
            Ipv4Addr::new(10, 0, 0, 1)
        );
        let bad = raw(&[52, 1, 9]);
        assert!(decode_reply(&bad).unwrap_err().contains("overload"));
    }

    #[test]
    fn framing_errors_name_the_option_and_offset() {
        assert_eq!(
            decode_reply(&raw(&[53, 1, 5, 3, 9, 1])).unwrap_err(),
            "option 3 at offset 243: length 9 runs past the end of the message"
        );
        assert_eq!(
            decode_reply(&raw(&[53])).unwrap_err(),
            "option 53 at offset 240 has no length byte"
        );
        assert!(
            decode_reply(&[2; 239])
                .unwrap_err()
                .starts_with("truncated: 239 bytes")
        );
        let mut no_magic = raw(&[]);
        no_magic[236] = 0;
        assert_eq!(decode_reply(&no_magic).unwrap_err(), "no DHCP magic cookie");
    }

    #[test]
    fn value_readers_check_lengths() {
        assert!(ipv4(1, &[255, 255, 0]).unwrap_err().contains("length 3"));
        assert!(ipv4_list(6, &[]).is_err());
        assert!(
            ipv4_list(6, &[1, 2, 3, 4, 5])
                .unwrap_err()
                .contains("multiple of 4")
        );
        assert!(u32_value(51, &[1]).is_err());
        assert_eq!(message_type(&[2]), Ok(MessageType::Offer));
        assert!(message_type(&[9]).is_err());
        assert!(message_type(&[]).is_err());
        assert_eq!(dns_name(b"lan.example\0").as_deref(), Some("lan.example"));
        assert_eq!(dns_name(b"evil\nnameserver 6.6.6.6"), None);
        assert_eq!(dns_name(b""), None);
    }
}
