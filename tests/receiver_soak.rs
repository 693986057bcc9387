//! The receiver under hostile and broken clients (loopback only, bounded in
//! count and time): idle TCP connections, TLS handshakes one byte at a time,
//! oversized frames before the token, wrong tokens and garbage, all while a
//! real migration runs. Attackers connect from their own 127.x addresses so
//! the per-address cap applies to them and not to the legitimate sender.

mod common;
mod copy_harness;

use copy_harness::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2xen::wire::{frame, tls};

const HELLO_TIMEOUT: u64 = 2;
const IDLE_CLIENTS: u8 = 200;
const SLOW_CLIENTS: u8 = 20;
/// The receiver's default per-address cap.
const PER_ADDRESS: u8 = 8;

/// A TCP connection to `to` from the loopback address `from` (all of
/// 127.0.0.0/8 is local on Linux).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddr::V4(SocketAddrV4::new(from, 0))).unwrap();
    connect(&fd, &to).unwrap();
    TcpStream::from(fd)
}

/// Reads until the receiver closes the connection; the time that took, or
/// `None` when it was still open after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while t.elapsed() < limit {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => return Some(t.elapsed()),
        }
    }
    None
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// What a client thread needs of the receiver (the child process stays
/// with the test's main thread).
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    fingerprint: String,
}

/// A TLS session to the receiver (certificate pinned), not yet handshaken.
fn tls_to(r: &Target, tcp: TcpStream) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let cfg = tls::client_config(tls::parse_fingerprint(&r.fingerprint).unwrap()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, tls::server_name()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[derive(Clone, Copy, Debug)]
enum Bad {
    /// A control frame prefix of 16 MiB - 1 bytes and 64 KiB of it.
    Oversized,
    WrongToken,
    /// Plain HTTP where TLS is expected.
    Garbage,
}

/// One hostile client; returns what the receiver's log must say about it.
fn bad_client(r: &Target, from: Ipv4Addr, kind: Bad) -> (SocketAddr, &'static str) {
    let tcp = connect_from(from, r.addr);
    let me = tcp.local_addr().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let expect = match kind {
        Bad::Oversized => {
            let mut s = tls_to(r, tcp);
            let mut prefix = vec![frame::KIND_CONTROL];
            prefix.extend_from_slice(&((16u32 << 20) - 1).to_be_bytes());
            // The receiver may close while we write: that is the point.
            let _ = s.write_all(&prefix);
            let _ = s.write_all(&vec![b'x'; 64 << 10]);
            let _ = closed_within(&mut s.sock, Duration::from_secs(10));
            "exceeds the limit of 8192"
        }
        Bad::WrongToken => {
            let mut s = tls_to(r, tcp);
            let hello = r#"{"type":"hello","protocol":1,"software":"x","token":"0123456789abcdef0123456789abcdef"}"#;
            let _ = frame::write_control(&mut s, hello.as_bytes());
            let reply = frame::read_frame(&mut s);
            assert!(
                matches!(&reply, Ok(frame::Frame::Control(j)) if String::from_utf8_lossy(j).contains("wrong token")),
                "{reply:?}"
            );
            "wrong token"
        }
        Bad::Garbage => {
            let mut tcp = tcp;
            let _ = tcp.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let _ = closed_within(&mut tcp, Duration::from_secs(10));
            "no valid hello"
        }
    };
    (me, expect)
}

/// Lines of `log` that name exactly this client (address and port).
fn lines_naming<'a>(log: &'a str, who: &SocketAddr) -> Vec<&'a str> {
    let tag = format!("{who}: ");
    log.lines().filter(|l| l.contains(&tag)).collect()
}

#[test]
fn hostile_clients_are_bounded_and_a_real_migration_goes_through() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    std::fs::write(&src, noise(32 << 20, 11)).unwrap();
    let before = blake3_file(&src);
    let store = d.path().join("store");
    let state = d.path().join("state");
    let timeout = HELLO_TIMEOUT.to_string();
    // The total cap is raised so the 220 attackers on distinct addresses fit
    // under it; the per-address cap stays at its default.
    let r = Receiver::start(
        &store,
        &state,
        &["--hello-timeout", &timeout, "--max-unauthenticated", "256"],
    );
    let to: SocketAddr = r.addr().parse().unwrap();
    let pid = r.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = status_kib(pid, "VmRSS:");

    // Every attacker connection and what the log must say about it.
    let expected: Arc<Mutex<Vec<(SocketAddr, &'static str)>>> = Arc::default();

    // 200 idle TCP clients, 8 per address: the per-address cap is full.
    let idle_from = |i: u8| Ipv4Addr::new(127, 0, 1, 1 + i / PER_ADDRESS);
    let mut idle: Vec<(TcpStream, Instant)> = (0..IDLE_CLIENTS)
        .map(|i| (connect_from(idle_from(i), to), Instant::now()))
        .collect();
    for (s, _) in &idle {
        expected.lock().unwrap().push((
            s.local_addr().unwrap(),
            "no hello within 2 s (--hello-timeout)",
        ));
    }
    // One more from each of three full addresses: refused at once, not at
    // the deadline.
    let mut over_cap = Vec::new();
    for a in 0..3u8 {
        let mut s = connect_from(idle_from(a * PER_ADDRESS), to);
        let me = s.local_addr().unwrap();
        let t = closed_within(&mut s, Duration::from_secs(HELLO_TIMEOUT)).unwrap_or_else(|| {
            panic!("{me}: over the per-address cap but not refused before the deadline")
        });
        over_cap.push(t);
        expected
            .lock()
            .unwrap()
            .push((me, "--max-unauthenticated-per-address"));
    }

    // 20 TLS clients sending their ClientHello one byte every 300 ms.
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|i| {
            let mut tcp = connect_from(Ipv4Addr::new(127, 0, 2, 1 + i), to);
            expected.lock().unwrap().push((
                tcp.local_addr().unwrap(),
                "no hello within 2 s (--hello-timeout)",
            ));
            let cfg = tls::client_config([0u8; 32]).unwrap();
            let mut conn = rustls::ClientConnection::new(cfg, tls::server_name()).unwrap();
            let mut client_hello = Vec::new();
            conn.write_tls(&mut client_hello).unwrap();
            std::thread::spawn(move || {
                let t = Instant::now();
                tcp.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 64];
                for b in client_hello {
                    if tcp.write_all(&[b]).is_err() {
                        return Some(t.elapsed());
                    }
                    match tcp.read(&mut buf) {
                        Ok(0) => return Some(t.elapsed()),
                        Err(e) if !timed_out(&e) => {
                            return Some(t.elapsed());
                        }
                        _ => {}
                    }
                }
                None
            })
        })
        .collect();

    // A loop of oversized frames, wrong tokens and garbage until the
    // migration is over.
    let stop = Arc::new(AtomicBool::new(false));
    let bad_loop = {
        let (stop, expected) = (stop.clone(), expected.clone());
        let target = Target {
            addr: to,
            fingerprint: r.fingerprint.clone(),
        };
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) || n < 90 {
                let kind = [Bad::Oversized, Bad::WrongToken, Bad::Garbage][n as usize % 3];
                let from = Ipv4Addr::new(127, 0, 3, 1 + (n % 200) as u8);
                let got = bad_client(&target, from, kind);
                expected.lock().unwrap().push(got);
                n += 1;
            }
            n
        })
    };

    let (ok, _, err) = r.send("soak", &[&src], &[]);
    stop.store(true, Ordering::SeqCst);
    assert!(ok, "the legitimate sender failed: {err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("soak/report.json")).unwrap()).unwrap();
    assert_eq!(report["state"], "complete", "{report}");
    assert_eq!(report["disks"][0]["verified"], true, "{report}");
    let bad_clients = bad_loop.join().unwrap();

    // Idle and slow clients were closed by the deadline.
    let mut idle_closed = Duration::ZERO;
    for (s, t0) in &mut idle {
        let me = s.local_addr().unwrap();
        closed_within(s, Duration::from_secs(HELLO_TIMEOUT + 10))
            .unwrap_or_else(|| panic!("{me}: idle client still open"));
        idle_closed = idle_closed.max(t0.elapsed());
    }
    let mut slow_closed = Duration::ZERO;
    for (i, h) in slow.into_iter().enumerate() {
        let t = h
            .join()
            .unwrap()
            .unwrap_or_else(|| panic!("slow client {i} finished its handshake"));
        slow_closed = slow_closed.max(t);
    }

    // The copy is the source, which is untouched.
    assert_eq!(blake3_file(&store.join("soak/disk0.img")), before);
    assert_eq!(blake3_file(&src), before);
    // Nothing was created for anyone else.
    let names: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["soak"], "the store holds more than the migration");
    if let Ok(j) = std::fs::read_dir(state.join("journal")) {
        let left: Vec<_> = j.map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "journals left: {left:?}");
    }

    // Every refused client is logged once, with its address and why.
    let expected = expected.lock().unwrap().clone();
    let t = Instant::now();
    let log = loop {
        let log = r.stderr.lock().unwrap().clone();
        if expected
            .iter()
            .all(|(who, _)| !lines_naming(&log, who).is_empty())
            || t.elapsed() > Duration::from_secs(15)
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (who, why) in &expected {
        let lines = lines_naming(&log, who);
        assert_eq!(
            lines.len(),
            1,
            "{who} logged {} times: {lines:?}",
            lines.len()
        );
        assert!(
            lines[0].contains(why),
            "{who}: {:?} lacks {why:?}",
            lines[0]
        );
    }

    // Memory: bounded while it lasted, and given back afterwards.
    let peak = status_kib(pid, "VmHWM:");
    std::thread::sleep(Duration::from_millis(500));
    let after = status_kib(pid, "VmRSS:");
    println!(
        "receiver RSS: idle {} KiB, peak {} KiB (+{} KiB), after {} KiB (+{} KiB); \
         {} idle + {} slow + {} hostile clients; over-cap refused in {:?} (slowest), \
         idle closed after {:?}, slow after {:?} (slowest)",
        idle_rss,
        peak,
        peak.saturating_sub(idle_rss),
        after,
        after.saturating_sub(idle_rss),
        IDLE_CLIENTS,
        SLOW_CLIENTS,
        bad_clients,
        over_cap.iter().max().unwrap(),
        idle_closed,
        slow_closed,
    );
    assert!(
        peak < idle_rss + (64 << 10),
        "peak RSS {peak} KiB is more than 64 MiB above idle {idle_rss} KiB"
    );
    assert!(
        after < idle_rss + (16 << 10),
        "RSS {after} KiB after the attack is more than 16 MiB above idle {idle_rss} KiB"
    );
}
