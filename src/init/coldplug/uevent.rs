//! Kernel uevents over netlink (NETLINK_KOBJECT_UEVENT, group 1): how late
//! devices (a disk behind a just-loaded HBA, a USB stick) announce themselves.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// One kernel uevent: `ACTION@DEVPATH` plus its KEY=VALUE environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub modalias: Option<String>,
    pub subsystem: Option<String>,
}

/// Parses one datagram; None for anything that is not a kernel uevent
/// (udev's own "libudev" messages on group 2 never reach us, but be strict).
pub fn parse(buf: &[u8]) -> Option<Uevent> {
    let mut fields = buf.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f));
    let head = fields.next()?;
    let (action, devpath) = head.split_once('@')?;
    let mut ev = Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        modalias: None,
        subsystem: None,
    };
    for f in fields {
        if let Some(v) = f.strip_prefix("MODALIAS=") {
            ev.modalias = Some(v.to_string());
        } else if let Some(v) = f.strip_prefix("SUBSYSTEM=") {
            ev.subsystem = Some(v.to_string());
        }
    }
    Some(ev)
}

pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    pub fn open() -> nix::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // A module load can emit hundreds of events at once; a small buffer
        // would drop them (ENOBUFS). Coldplug's sysfs rescan covers losses.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(4 << 20));
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1))?;
        Ok(UeventSocket { fd })
    }

    /// Next event, or None when nothing arrives within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Uevent> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        let mut buf = vec![0u8; 16384];
        match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => parse(buf.get(..n)?).or_else(|| {
                Some(Uevent {
                    action: "unknown".into(),
                    devpath: String::new(),
                    modalias: None,
                    subsystem: None,
                })
            }),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_uevent() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/virtio1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio1\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000002v00001AF4\0SEQNUM=812\0";
        let ev = parse(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.devpath, "/devices/pci0000:00/0000:00:04.0/virtio1");
        assert_eq!(ev.modalias.as_deref(), Some("virtio:d00000002v00001AF4"));
        assert_eq!(ev.subsystem.as_deref(), Some("virtio"));
        assert_eq!(parse(b"libudev\0\xfe\xed"), None);
        assert_eq!(parse(b""), None);
    }
}
