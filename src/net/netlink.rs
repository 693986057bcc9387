//! The few rtnetlink requests the live init needs: list links and addresses,
//! set a link up, rename it, create VLAN and bond links, enslave, add an
//! address, add a route. Messages are built and parsed by
//! `netlink-packet-route`; the socket is `netlink-sys` used synchronously
//! (the `rtnetlink` crate would bring an async runtime into PID 1).

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoBond, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType,
    LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A failed rtnetlink request, naming what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: cannot open a NETLINK_ROUTE socket: {0}")]
    Open(io::Error),
    #[error("netlink: {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("netlink: {what}: the kernel refused: {source}")]
    Refused { what: String, source: io::Error },
    #[error("netlink: {what}: malformed reply: {reason}")]
    Malformed { what: String, reason: String },
}

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Hardware address, empty for links without one.
    pub mac: Vec<u8>,
    pub up: bool,
    pub carrier: bool,
    pub loopback: bool,
    /// Ethernet-like (ARPHRD_ETHER): the only kind DHCP is tried on.
    pub ethernet: bool,
    /// The bond this link is enslaved to (IFLA_MASTER).
    pub controller: Option<u32>,
}

/// An address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// Global scope (not link-local, not host).
    pub global: bool,
    /// Duplicate address detection has not finished: not usable yet.
    pub tentative: bool,
}

/// How a route came to be, recorded in the kernel as `proto dhcp|boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Dhcp,
    Static,
}

/// A synchronous rtnetlink connection.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Open)?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Every link in this network namespace, in index order.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let what = "list links";
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            what,
        )?;
        let mut links: Vec<Link> = replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(l)),
                _ => None,
            })
            .collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    pub fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.set_link(index, LinkFlags::Up, vec![], &format!("set {name} up"))
    }

    pub fn set_down(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.set_link(
            index,
            LinkFlags::empty(),
            vec![],
            &format!("set {name} down"),
        )
    }

    /// Renames a link; the kernel refuses while it is up (EBUSY).
    pub fn rename(&mut self, index: u32, from: &str, to: &str) -> Result<(), NetlinkError> {
        self.set_link(
            index,
            LinkFlags::empty(),
            vec![LinkAttribute::IfName(to.to_string())],
            &format!("rename {from} to {to}"),
        )
    }

    /// Enslaves a (down) link to a bond.
    pub fn enslave(
        &mut self,
        index: u32,
        name: &str,
        bond: u32,
        bond_name: &str,
    ) -> Result<(), NetlinkError> {
        self.set_link(
            index,
            LinkFlags::empty(),
            vec![LinkAttribute::Controller(bond)],
            &format!("enslave {name} to {bond_name}"),
        )
    }

    /// Sets the Up flag to `flags` (down when empty) and the given attributes.
    fn set_link(
        &mut self,
        index: u32,
        flags: LinkFlags,
        attributes: Vec<LinkAttribute>,
        what: &str,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = flags;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = attributes;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK, what)
            .map(drop)
    }

    /// Creates an 802.1Q link `name` with tag `id` on link `parent`.
    pub fn add_vlan(&mut self, name: &str, parent: u32, id: u16) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Link(parent),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id)])),
            ]),
        ];
        self.request_create(
            RouteNetlinkMessage::NewLink(msg),
            &format!("create VLAN {name} (id {id})"),
        )
    }

    /// Creates a bond link, or sets the mode of an existing one without
    /// slaves; slaves are added with [`Rtnl::enslave`].
    pub fn add_bond(
        &mut self,
        name: &str,
        mode: u8,
        miimon: u32,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bond),
                LinkInfo::Data(InfoData::Bond(vec![
                    InfoBond::Mode(mode.into()),
                    InfoBond::MiiMon(miimon),
                ])),
            ]),
        ];
        msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        // No NLM_F_EXCL: loading the bonding module creates a bond0 of its
        // own (balance-rr, max_bonds=1); an existing bond gets these settings.
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE,
            &format!("create bond {name}"),
        )
        .map(drop)
    }

    /// Sets the bond's preferred slave (after it is enslaved).
    pub fn set_bond_primary(
        &mut self,
        bond: u32,
        name: &str,
        primary: u32,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = bond;
        msg.attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bond),
            LinkInfo::Data(InfoData::Bond(vec![InfoBond::Primary(primary)])),
        ])];
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK,
            &format!("set the primary slave of {name}"),
        )
        .map(drop)
    }

    /// The addresses of link `index`.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<Address>, NetlinkError> {
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            "list addresses",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => Some(a),
                _ => None,
            })
            .filter_map(|a| {
                let mut tentative = a.header.flags.contains(AddressHeaderFlags::Tentative);
                let mut address = None;
                for attr in &a.attributes {
                    match attr {
                        AddressAttribute::Address(ip) => address = Some(*ip),
                        AddressAttribute::Flags(f) => {
                            tentative |= f.contains(AddressFlags::Tentative)
                        }
                        _ => {}
                    }
                }
                Some(Address {
                    address: address?,
                    prefix_len: a.header.prefix_len,
                    global: a.header.scope == AddressScope::Universe,
                    tentative,
                })
            })
            .collect())
    }

    /// Adds `address/prefix_len` to a link. An address that is already there
    /// is fine: configuring twice must not fail.
    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.prefix_len = prefix_len;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes = vec![AddressAttribute::Address(address)];
        if let IpAddr::V4(v4) = address {
            msg.attributes.push(AddressAttribute::Local(address));
            if prefix_len < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(broadcast(v4, prefix_len)));
            }
        }
        let what = format!("add {address}/{prefix_len} to {name}");
        self.request_create(RouteNetlinkMessage::NewAddress(msg), &what)
    }

    /// Adds a route to `dest/prefix_len` through `gateway` (or directly on the
    /// link when `None`) on link `index`, with `metric`.
    pub fn add_route(&mut self, route: &RouteSpec, name: &str) -> Result<(), NetlinkError> {
        let header = RouteHeader {
            address_family: match route.destination {
                IpAddr::V4(_) => AddressFamily::Inet,
                IpAddr::V6(_) => AddressFamily::Inet6,
            },
            destination_prefix_length: route.prefix_len,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: match route.origin {
                Origin::Dhcp => RouteProtocol::Dhcp,
                Origin::Static => RouteProtocol::Boot,
            },
            scope: if route.gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            },
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        let mut msg = RouteMessage::default();
        msg.header = header;
        if route.prefix_len > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route_address(
                    route.destination,
                )));
        }
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(route.index));
        msg.attributes.push(RouteAttribute::Priority(route.metric));
        let what = match route.gateway {
            Some(gw) => format!(
                "add route {}/{} via {gw} dev {name} metric {}",
                route.destination, route.prefix_len, route.metric
            ),
            None => format!(
                "add route {}/{} dev {name} metric {}",
                route.destination, route.prefix_len, route.metric
            ),
        };
        self.request_create(RouteNetlinkMessage::NewRoute(msg), &what)
    }

    fn request_create(&mut self, msg: RouteNetlinkMessage, what: &str) -> Result<(), NetlinkError> {
        match self.request(msg, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, what) {
            Err(NetlinkError::Refused { source, .. })
                if source.raw_os_error() == Some(nix::libc::EEXIST) =>
            {
                log::debug!("{what}: already present");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Sends one request and collects the replies up to its ACK (or, for a
    /// dump, its DONE). Replies to other sequence numbers are skipped.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let io_err = |source| NetlinkError::Io {
            what: what.to_string(),
            source,
        };
        self.socket.send(&buf, 0).map_err(io_err)?;

        // Compare the whole mask: NLM_F_EXCL shares a bit with NLM_F_DUMP.
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(io_err)?;
            let mut offset = 0usize;
            while offset < data.len() {
                let chunk = data.get(offset..).unwrap_or_default();
                let fixed = super::ifmap::without_short_ifmap(chunk);
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                    fixed.as_deref().unwrap_or(chunk),
                )
                .map_err(|e| NetlinkError::Malformed {
                    what: what.to_string(),
                    reason: e.to_string(),
                })?;
                // The length as received: the fixed copy may be shorter.
                let len = match chunk.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                    Some(b) => u32::from_ne_bytes(b) as usize,
                    None => reply.header.length as usize,
                };
                // Messages are 4-byte aligned; a zero length would loop forever.
                let step = len.checked_add(3).map(|l| l & !3).filter(|&l| l > 0);
                offset = match step.and_then(|s| offset.checked_add(s)) {
                    Some(o) => o,
                    None => {
                        return Err(NetlinkError::Malformed {
                            what: what.to_string(),
                            reason: format!("message length {len}"),
                        });
                    }
                };
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None if !dump => return Ok(out),
                        None => {}
                        Some(_) => {
                            return Err(NetlinkError::Refused {
                                what: what.to_string(),
                                source: e.to_io(),
                            });
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }
}

/// A route to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub index: u32,
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub metric: u32,
    pub origin: Origin,
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn link_from(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: Vec::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        carrier: msg.header.flags.contains(LinkFlags::LowerUp),
        loopback: msg.header.flags.contains(LinkFlags::Loopback)
            || msg.header.link_layer_type == LinkLayerType::Loopback,
        ethernet: msg.header.link_layer_type == LinkLayerType::Ether,
        controller: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = a,
            LinkAttribute::Carrier(c) => link.carrier = c != 0,
            LinkAttribute::Controller(c) => link.controller = Some(c),
            _ => {}
        }
    }
    link
}

/// The directed broadcast address of `address/prefix_len`.
pub fn broadcast(address: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(address) | host_bits)
}

/// Whether `other` lies in the subnet `address/prefix_len`.
pub fn same_subnet(address: Ipv4Addr, prefix_len: u8, other: Ipv4Addr) -> bool {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix_len)))
        .unwrap_or(0);
    u32::from(address) & mask == u32::from(other) & mask
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_arithmetic() {
        let a: Ipv4Addr = "10.1.2.3".parse().unwrap();
        assert_eq!(broadcast(a, 24), Ipv4Addr::new(10, 1, 2, 255));
        assert_eq!(broadcast(a, 32), a);
        assert_eq!(broadcast(a, 0), Ipv4Addr::BROADCAST);
        assert!(same_subnet(a, 24, Ipv4Addr::new(10, 1, 2, 1)));
        assert!(!same_subnet(a, 24, Ipv4Addr::new(10, 1, 3, 1)));
        assert!(same_subnet(a, 0, Ipv4Addr::new(8, 8, 8, 8)));
        assert!(!same_subnet(a, 32, Ipv4Addr::new(10, 1, 2, 1)));
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "52:54:00:12:34:56"
        );
    }

    #[test]
    fn link_flags_and_attributes() {
        let mut msg = LinkMessage::default();
        msg.header.index = 3;
        msg.header.link_layer_type = LinkLayerType::Ether;
        msg.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        msg.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
        ];
        let l = link_from(msg);
        assert_eq!(
            l,
            Link {
                index: 3,
                name: "eth0".into(),
                mac: vec![2, 0, 0, 0, 0, 1],
                up: true,
                carrier: true,
                loopback: false,
                ethernet: true,
                controller: None
            }
        );
    }
}
