//! A work-around for 32-bit kernels in netlink-packet-route: the kernel's
//! `struct rtnl_link_ifmap` (three `__u64`, a `__u16`, two `__u8`) is 28
//! bytes on i386, where a `__u64` is 4-byte aligned, and 32 on x86_64; the
//! crate (0.34) refuses anything shorter than 32, so a link dump from the
//! 32-bit live image fails as a whole. p2xen never reads the map (ISA-era
//! I/O port and IRQ numbers), so the attribute is dropped from such a
//! message before the crate parses it.

/// `nlmsghdr`, then `ifinfomsg`, each 16 bytes.
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const RTM_NEWLINK: u16 = 16;
const IFLA_MAP: u16 = 14;
/// What the crate wants: the x86_64 size of the struct.
const IFMAP_LEN_64: usize = 32;

fn ne16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn ne32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The first message of `buf` without a short IFLA_MAP attribute, when it
/// is an RTM_NEWLINK that has one; `None` when it needs no change (or is
/// too malformed to touch: the crate's parser reports that).
pub fn without_short_ifmap(buf: &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(ne32(buf, 0)?).ok()?;
    let msg = buf.get(..len)?;
    if ne16(msg, 4)? != RTM_NEWLINK {
        return None;
    }
    let attrs_at = NLMSG_HDR.checked_add(IFINFOMSG)?;
    let mut out = msg.get(..attrs_at)?.to_vec();
    let mut at = attrs_at;
    let mut dropped = false;
    while at < msg.len() {
        let alen = usize::from(ne16(msg, at)?);
        if alen < 4 {
            return None;
        }
        let next = at.checked_add(alen.checked_add(3)? & !3)?.min(msg.len());
        if ne16(msg, at.checked_add(2)?)? == IFLA_MAP && alen - 4 < IFMAP_LEN_64 {
            dropped = true;
        } else {
            out.extend_from_slice(msg.get(at..next)?);
        }
        at = next;
    }
    if !dropped {
        return None;
    }
    let new_len = u32::try_from(out.len()).ok()?;
    out.get_mut(..4)?.copy_from_slice(&new_len.to_ne_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkMessage;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::LinkAttribute;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    /// RTM_NEWLINK for "eth0" as an i386 kernel sends it: IFLA_IFNAME,
    /// a 28-byte IFLA_MAP, IFLA_MTU.
    fn i386_newlink() -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG];
        body[4..8].copy_from_slice(&2i32.to_ne_bytes());
        body.extend(attr(3, b"eth0\0"));
        body.extend(attr(IFLA_MAP, &[0u8; 28]));
        body.extend(attr(4, &1500u32.to_ne_bytes()));
        let mut m = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend(body);
        m
    }

    #[test]
    fn a_32_bit_link_message_parses_once_the_short_map_is_dropped() {
        let raw = i386_newlink();
        assert!(
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw).is_err(),
            "the crate now takes the 28-byte map: this work-around can go"
        );
        let fixed = without_short_ifmap(&raw).unwrap();
        assert_eq!(fixed.len(), raw.len() - 32);
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&fixed).unwrap();
        let netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) =
            msg.payload
        else {
            panic!("not a link message: {msg:?}");
        };
        assert_eq!(l.header.index, 2);
        assert!(l.attributes.contains(&LinkAttribute::IfName("eth0".into())));
        assert!(l.attributes.contains(&LinkAttribute::Mtu(1500)));
    }

    #[test]
    fn other_messages_and_garbage_are_left_alone() {
        let mut raw = i386_newlink();
        raw[4] = 20; // RTM_NEWADDR
        assert_eq!(without_short_ifmap(&raw), None);
        assert_eq!(without_short_ifmap(&[]), None);
        assert_eq!(without_short_ifmap(&[255; 40]), None);
        let mut short_attr = i386_newlink();
        short_attr[32] = 1; // an attribute length below its own header
        short_attr[33] = 0;
        assert_eq!(without_short_ifmap(&short_attr), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = without_short_ifmap(&b);
        }
    }
}
