//! A switch port configured for one tagged VLAN, between two QEMU `socket`
//! netdevs over UDP: frames from the trunk side (the live VM's NIC) pass
//! only when they carry an 802.1Q tag with the port's VLAN id, and leave
//! untagged on the access side (a hub with QEMU's user network); frames
//! from the access side get the tag on the way to the trunk. Frames
//! without the tag, or with another id, are dropped and counted.
//!
//! Written here because this host's kernel has no 8021q and QEMU has no
//! tagging filter: a user-space port is the only way to put a VLAN between
//! the live VM and the receiver without touching the host's network.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// 802.1Q's tag protocol identifier.
const TPID: [u8; 2] = [0x81, 0x00];
/// Destination and source MAC before the EtherType (or the tag).
const MACS: usize = 12;

/// What the port has seen.
#[derive(Default, Debug)]
pub struct Counts {
    /// Tagged frames with the port's VLAN id, passed to the access side.
    pub tagged_in: AtomicU64,
    /// Frames from the access side, passed to the trunk with the tag.
    pub tagged_out: AtomicU64,
    /// Frames from the trunk without an 802.1Q tag, dropped.
    pub untagged_dropped: AtomicU64,
    /// Frames from the trunk tagged with another VLAN id, dropped.
    pub other_vlan_dropped: AtomicU64,
}

/// The running port; its thread stops on drop.
pub struct VlanSwitch {
    /// `-netdev socket,...` for the live VM's NIC.
    pub trunk_netdev: String,
    /// `-netdev socket,...` to put on the hub with the user network.
    pub access_netdev: String,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A UDP port on 127.0.0.1 free now, for QEMU's end of a socket netdev.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port on 127.0.0.1")
        .port()
}

/// `frame` without its 802.1Q tag if the tag carries `vid`; `Err(true)` for
/// an untagged frame, `Err(false)` for another VLAN's.
fn untag(frame: &[u8], vid: u16) -> Result<Vec<u8>, bool> {
    if frame.len() < MACS + 4 || frame[MACS..MACS + 2] != TPID {
        return Err(true);
    }
    let tci = u16::from_be_bytes([frame[MACS + 2], frame[MACS + 3]]);
    if tci & 0x0fff != vid {
        return Err(false);
    }
    let mut out = frame[..MACS].to_vec();
    out.extend_from_slice(&frame[MACS + 4..]);
    Ok(out)
}

/// `frame` with an 802.1Q tag for `vid` (priority 0) after the MACs.
fn tag(frame: &[u8], vid: u16) -> Vec<u8> {
    let at = MACS.min(frame.len());
    let mut out = frame[..at].to_vec();
    out.extend_from_slice(&TPID);
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&frame[at..]);
    out
}

impl VlanSwitch {
    pub fn start(vid: u16) -> VlanSwitch {
        let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind the VLAN port's UDP socket");
        let (trunk, access) = (bind(), bind());
        let port = |s: &UdpSocket| s.local_addr().expect("local address").port();
        let (qemu_trunk, qemu_access) = (free_port(), free_port());
        let netdev = |id: &str, ours: u16, theirs: u16| {
            format!("socket,id={id},udp=127.0.0.1:{ours},localaddr=127.0.0.1:{theirs}")
        };
        let trunk_netdev = netdev("trunk", port(&trunk), qemu_trunk);
        let access_netdev = netdev("access", port(&access), qemu_access);
        for s in [&trunk, &access] {
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("UDP read timeout");
        }
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, halt) = (Arc::clone(&counts), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let to_trunk = ("127.0.0.1", qemu_trunk);
            let to_access = ("127.0.0.1", qemu_access);
            while !halt.load(Ordering::Relaxed) {
                // Drain whatever each side has; a timeout on one side is
                // the cue to look at the other.
                while let Ok(n) = trunk.recv(&mut buf) {
                    match untag(&buf[..n], vid) {
                        Ok(f) => {
                            let _ = access.send_to(&f, to_access);
                            c.tagged_in.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(true) => {
                            c.untagged_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(false) => {
                            c.other_vlan_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                while let Ok(n) = access.recv(&mut buf) {
                    let _ = trunk.send_to(&tag(&buf[..n], vid), to_trunk);
                    c.tagged_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        VlanSwitch {
            trunk_netdev,
            access_netdev,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// The counters as `(tagged_in, tagged_out, untagged_dropped, other_vlan_dropped)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        let c = &self.counts;
        (
            c.tagged_in.load(Ordering::Relaxed),
            c.tagged_out.load(Ordering::Relaxed),
            c.untagged_dropped.load(Ordering::Relaxed),
            c.other_vlan_dropped.load(Ordering::Relaxed),
        )
    }
}

impl Drop for VlanSwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
