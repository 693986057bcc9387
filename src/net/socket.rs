//! The DHCP client's socket: UDP port 68 bound to one interface
//! (`SO_BINDTODEVICE`) with `SO_BROADCAST`, so DISCOVERs go out of that
//! interface to 255.255.255.255 before it has an address, and only that
//! interface's replies come back. The server is asked to broadcast its
//! replies (flag in the message), which the kernel delivers to this socket
//! although the interface has no address yet. `SO_REUSEADDR` lets one socket
//! per interface share port 68 while interfaces are configured in parallel.
//!
//! One limit of a UDP socket compared with a packet socket: once another
//! interface has an address, the kernel uses it as the source address of a
//! DISCOVER instead of 0.0.0.0. Servers answer by `chaddr` and the broadcast
//! flag, not by source, so this is harmless; configuring all interfaces at
//! once keeps it rare.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::Instant;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt,
    socket, sockopt,
};
use std::os::fd::AsRawFd;

use super::dhcp::Transport;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;

pub struct UdpTransport {
    socket: UdpSocket,
}

impl UdpTransport {
    /// Opens the client socket on interface `iface`.
    pub fn open(iface: &str) -> io::Result<UdpTransport> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        setsockopt(&fd, sockopt::Broadcast, &true)?;
        // Bound to the device before bind(), so sockets of different
        // interfaces do not conflict on port 68.
        setsockopt(&fd, sockopt::BindToDevice, &OsString::from(iface))?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT)),
        )?;
        Ok(UdpTransport {
            socket: UdpSocket::from(fd),
        })
    }
}

impl Transport for UdpTransport {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.socket
            .send_to(packet, SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT))
            .map(drop)
    }

    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        // Only a server port can answer; anything else on port 68 is noise.
        recv_from_port(&self.socket, SERVER_PORT, buf, deadline)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The DHCPv6 client's socket: UDP port 546 bound to one interface, sending
/// to All_DHCP_Relay_Agents_and_Servers on that link (the scope id picks
/// the interface; the source is its link-local address, which must have
/// passed duplicate address detection first).
pub struct Udp6Transport {
    socket: UdpSocket,
    index: u32,
}

impl Udp6Transport {
    pub fn open(iface: &str, index: u32) -> io::Result<Udp6Transport> {
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        setsockopt(&fd, sockopt::BindToDevice, &OsString::from(iface))?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn6::from(SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                super::dhcp6::CLIENT_PORT,
                0,
                0,
            )),
        )?;
        Ok(Udp6Transport {
            socket: UdpSocket::from(fd),
            index,
        })
    }
}

impl Transport for Udp6Transport {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        let to = SocketAddrV6::new(
            super::dhcp6::SERVERS,
            super::dhcp6::SERVER_PORT,
            0,
            self.index,
        );
        self.socket.send_to(packet, to).map(drop)
    }

    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        recv_from_port(&self.socket, super::dhcp6::SERVER_PORT, buf, deadline)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The next datagram on `socket` sent from UDP port `port`, or `None` at
/// `deadline`; datagrams from other ports are dropped.
fn recv_from_port(
    socket: &UdpSocket,
    port: u16,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(buf) {
            Ok((n, from)) if from.port() == port => return Ok(Some(n)),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}
