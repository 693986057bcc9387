//! IPv6 on the live image: stateless autoconfiguration (the kernel does
//! SLAAC itself from router advertisements; p2xen switches it on and waits
//! for the address), static addresses from `ip=[...]`, and the address a
//! DHCPv6 server leases (`ip=dhcp6`, [`super::dhcp6`]).

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bootparams::StaticIp6;

use super::netlink::{Address, NetlinkError, Origin, RouteSpec, Rtnl};

/// Duplicate address detection takes one second per probe by default.
pub const DAD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Ipv6Error {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(
        "{path}: cannot write {value}: {source} (is IPv6 disabled on the kernel command line?)"
    )]
    Sysctl {
        path: PathBuf,
        value: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{iface}: no router advertisement gave an address within {secs} s (is a router sending RAs on this link?)"
    )]
    NoRouterAdvertisement { iface: String, secs: u64 },
    #[error(transparent)]
    Dhcp6(#[from] super::dhcp6::Dhcp6Error),
    #[error(
        "{iface}: no usable link-local address within {secs} s, so DHCPv6 cannot send (is IPv6 disabled on this interface?)"
    )]
    NoLinkLocal { iface: String, secs: u64 },
    #[error(
        "{iface}: {address} is still tentative after {secs} s: another host may use it (duplicate address detection)"
    )]
    Tentative {
        iface: String,
        address: Ipv6Addr,
        secs: u64,
    },
}

fn sysctl(iface: &str, key: &str, value: &'static str) -> Result<(), Ipv6Error> {
    let path = PathBuf::from("/proc/sys/net/ipv6/conf")
        .join(iface)
        .join(key);
    std::fs::write(&path, value).map_err(|source| Ipv6Error::Sysctl {
        path,
        value,
        source,
    })
}

/// Polls the link's addresses until `done` finds what it waits for.
fn wait_for<T>(
    rtnl: &mut Rtnl,
    index: u32,
    timeout: Duration,
    mut done: impl FnMut(&[Address]) -> Option<T>,
) -> Result<Option<T>, Ipv6Error> {
    let start = Instant::now();
    loop {
        let addrs = rtnl.addresses(index)?;
        if let Some(t) = done(&addrs) {
            return Ok(Some(t));
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn global_v6(addrs: &[Address]) -> Vec<(Ipv6Addr, u8)> {
    addrs
        .iter()
        .filter(|a| a.global && !a.tentative)
        .filter_map(|a| match a.address {
            IpAddr::V6(v6) => Some((v6, a.prefix_len)),
            IpAddr::V4(_) => None,
        })
        .collect()
}

/// Turns on router advertisements and address autoconfiguration for
/// `iface` (already up) and waits for a usable global address. The kernel
/// adds the default route from the advertisement itself.
pub fn autoconf(
    rtnl: &mut Rtnl,
    index: u32,
    iface: &str,
    timeout: Duration,
) -> Result<Vec<(Ipv6Addr, u8)>, Ipv6Error> {
    sysctl(iface, "accept_ra", "1")?;
    sysctl(iface, "autoconf", "1")?;
    log::info!("network: {iface}: waiting up to {timeout:?} for a router advertisement");
    wait_for(rtnl, index, timeout, |a| {
        let g = global_v6(a);
        (!g.is_empty()).then_some(g)
    })?
    .ok_or_else(|| Ipv6Error::NoRouterAdvertisement {
        iface: iface.to_string(),
        secs: timeout.as_secs(),
    })
}

/// Adds `address` and waits for duplicate address detection: a tentative
/// address cannot be a connection's source.
fn add_and_wait(
    rtnl: &mut Rtnl,
    index: u32,
    iface: &str,
    address: Ipv6Addr,
    prefix_len: u8,
) -> Result<(), Ipv6Error> {
    rtnl.add_address(index, iface, IpAddr::V6(address), prefix_len)?;
    let ready = wait_for(rtnl, index, DAD_TIMEOUT, |a| {
        global_v6(a)
            .iter()
            .any(|(addr, _)| *addr == address)
            .then_some(())
    })?;
    if ready.is_none() {
        return Err(Ipv6Error::Tentative {
            iface: iface.to_string(),
            address,
            secs: DAD_TIMEOUT.as_secs(),
        });
    }
    Ok(())
}

/// `ip=dhcp6`: waits for the link-local address (the source of every
/// DHCPv6 message), leases an address and adds it as a /128, as RFC 8415
/// wants: DHCPv6 says nothing of prefixes or routes, so router
/// advertisements (accepted here) give the on-link prefix and the default
/// route, as on every DHCPv6 network.
pub fn dhcp6(
    rtnl: &mut Rtnl,
    index: u32,
    iface: &str,
    cfg: &super::dhcp6::Dhcp6Config,
) -> Result<super::dhcp6::Lease6, Ipv6Error> {
    sysctl(iface, "accept_ra", "1")?;
    let ll = wait_for(rtnl, index, DAD_TIMEOUT, |a| {
        a.iter()
            .any(|a| a.address.is_ipv6() && !a.global && !a.tentative)
            .then_some(())
    })?;
    if ll.is_none() {
        return Err(Ipv6Error::NoLinkLocal {
            iface: iface.to_string(),
            secs: DAD_TIMEOUT.as_secs(),
        });
    }
    let mut t = super::socket::Udp6Transport::open(iface, index).map_err(|source| {
        super::dhcp6::Dhcp6Error::Io {
            iface: iface.to_string(),
            what: "open UDP port 546",
            source,
        }
    })?;
    let lease = super::dhcp6::acquire(&mut t, cfg)?;
    add_and_wait(rtnl, index, iface, lease.address, 128)?;
    Ok(lease)
}

/// Adds the static address, waits for duplicate address detection, then
/// the default route through the gateway.
pub fn apply_static(
    rtnl: &mut Rtnl,
    index: u32,
    iface: &str,
    st: &StaticIp6,
    metric: u32,
) -> Result<(), Ipv6Error> {
    add_and_wait(rtnl, index, iface, st.address, st.prefix_len)?;
    if let Some(gw) = st.gateway {
        let default = RouteSpec {
            index,
            destination: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix_len: 0,
            gateway: Some(IpAddr::V6(gw)),
            metric,
            origin: Origin::Static,
        };
        rtnl.add_route(&default, iface)?;
    }
    Ok(())
}
