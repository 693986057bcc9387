//! Who may hold a connection before showing the token.
//!
//! The receiver listens on the migration network, where anything can
//! connect, and dom0 has little memory to spare. Every connection that has
//! not yet authenticated holds a thread, a TLS state and a small buffer, so
//! their number is capped overall and per source address; the excess is
//! closed at once, and every unauthenticated connection has a deadline
//! ([`Deadline`]) for its TLS handshake and hello together. A socket read
//! timeout alone is no deadline: a client sending one byte every minute
//! would reset it forever.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits on unauthenticated connections (`p2xen receive` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Unauthenticated connections at once, all addresses together.
    pub total: usize,
    /// Unauthenticated connections at once from one address.
    pub per_address: usize,
    /// Time for the TLS handshake plus the hello.
    pub hello_deadline: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            total: 64,
            per_address: 8,
            hello_deadline: Duration::from_secs(15),
        }
    }
}

/// Why a connection was closed before its handshake began.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "{held} unauthenticated connections from {addr} already (limit {limit}, --max-unauthenticated-per-address)"
    )]
    PerAddress {
        addr: IpAddr,
        held: usize,
        limit: usize,
    },
    #[error(
        "{held} unauthenticated connections in all already (limit {limit}, --max-unauthenticated)"
    )]
    Total { held: usize, limit: usize },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<IpAddr, usize>,
}

/// The receiver's count of unauthenticated connections.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: AdmissionLimits,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            counts: Arc::default(),
        }
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// A place for one more unauthenticated connection from `addr`, held
    /// until the returned ticket is dropped (authenticated or gone).
    pub fn admit(&self, addr: IpAddr) -> Result<Ticket, AdmissionError> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let held = c.by_addr.get(&addr).copied().unwrap_or(0);
        if held >= self.limits.per_address {
            return Err(AdmissionError::PerAddress {
                addr,
                held,
                limit: self.limits.per_address,
            });
        }
        if c.total >= self.limits.total {
            return Err(AdmissionError::Total {
                held: c.total,
                limit: self.limits.total,
            });
        }
        c.total += 1;
        *c.by_addr.entry(addr).or_insert(0) += 1;
        Ok(Ticket {
            addr,
            counts: self.counts.clone(),
        })
    }
}

/// One admitted unauthenticated connection.
#[derive(Debug)]
pub struct Ticket {
    addr: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_addr.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_addr.remove(&self.addr);
            }
        }
    }
}

/// Shuts a socket down when the time runs out before [`Deadline::disarm`]
/// (or drop): the session's blocked read then fails and the thread ends.
pub struct Deadline {
    disarm: Option<Sender<()>>,
    expired: Arc<AtomicBool>,
}

impl Deadline {
    pub fn arm(tcp: &TcpStream, after: Duration) -> std::io::Result<Deadline> {
        let sock = tcp.try_clone()?;
        let (tx, rx) = mpsc::channel::<()>();
        let expired = Arc::new(AtomicBool::new(false));
        let flag = expired.clone();
        std::thread::Builder::new()
            .name("hello-deadline".into())
            .spawn(move || {
                if rx.recv_timeout(after) == Err(RecvTimeoutError::Timeout) {
                    flag.store(true, Ordering::SeqCst);
                    let _ = sock.shutdown(Shutdown::Both);
                }
            })?;
        Ok(Deadline {
            disarm: Some(tx),
            expired,
        })
    }

    /// Whether the time ran out (and the socket was shut down).
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    /// The peer authenticated in time: the socket stays open.
    pub fn disarm(mut self) {
        if let Some(tx) = self.disarm.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // Dropping the sender also wakes the watcher (Disconnected), which
        // then leaves the socket alone: the session is over anyway.
        self.disarm.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Instant;

    fn limits(total: usize, per_address: usize) -> AdmissionLimits {
        AdmissionLimits {
            total,
            per_address,
            ..AdmissionLimits::default()
        }
    }

    #[test]
    fn per_address_and_total_caps_and_release_on_drop() {
        let adm = Admission::new(limits(3, 2));
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let t1 = adm.admit(a).expect("first from a");
        let _t2 = adm.admit(a).expect("second from a");
        assert_eq!(
            adm.admit(a).unwrap_err().to_string(),
            "2 unauthenticated connections from 127.0.0.2 already (limit 2, --max-unauthenticated-per-address)"
        );
        let _t3 = adm.admit(b).expect("first from b");
        assert_eq!(
            adm.admit(b).unwrap_err(),
            AdmissionError::Total { held: 3, limit: 3 }
        );
        drop(t1);
        adm.admit(a).expect("a place is free again");
    }

    #[test]
    fn deadline_closes_a_silent_peer_and_disarm_keeps_it_open() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _c1 = TcpStream::connect(addr).unwrap();
        let _c2 = TcpStream::connect(addr).unwrap();
        let (mut s1, _) = l.accept().unwrap();
        let (mut s2, _) = l.accept().unwrap();
        s2.set_read_timeout(Some(Duration::from_millis(600)))
            .unwrap();
        let start = Instant::now();
        let d1 = Deadline::arm(&s1, Duration::from_millis(200)).unwrap();
        Deadline::arm(&s2, Duration::from_millis(200))
            .unwrap()
            .disarm();
        let mut buf = [0u8; 1];
        // Shut down: the read returns end-of-file instead of blocking.
        assert_eq!(s1.read(&mut buf).unwrap(), 0);
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(d1.expired());
        // Disarmed: still open, so the read times out.
        let e = s2.read(&mut buf).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        );
    }
}
