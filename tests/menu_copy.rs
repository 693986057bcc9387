//! A whole interactive migration through the menu: `p2xen menu` on a
//! pseudo-terminal against `p2xen receive --once` on 127.0.0.1, with an
//! image file as the disk.

mod common;
mod copy_harness;

use common::pty::Pty;
use copy_harness::{Receiver, blake3_file, noise};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn interactive_migration_to_a_receiver_on_loopback() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    let mut data = noise(2 << 20, 7);
    data.resize(12 << 20, 0);
    data.extend(noise(1 << 20, 8));
    std::fs::write(&src, &data).unwrap();
    let before = blake3_file(&src);
    let store = d.path().join("store");
    let mut r = Receiver::start(&store, &d.path().join("state"), &["--once"]);

    let mut t = Pty::open(WAIT);
    let mut menu = Command::new(env!("CARGO_BIN_EXE_p2xen"))
        .args(["menu", "--tty"])
        .arg(&t.path)
        .arg("--disk")
        .arg(&src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let errlog = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = menu.stderr.take().unwrap();
    let sink = errlog.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        sink.lock().unwrap().push_str(&s);
    });

    t.wait_for("1/7 Overview");
    t.send(b"nn");
    t.wait_for("3/7 Target");
    t.send(b"1");
    t.send(r.addr().as_bytes());
    t.send(b"\r2");
    t.send(r.token.as_bytes());
    t.send(b"\r");
    // No fingerprint typed: the receiver's is shown for comparison.
    t.send(b"n");
    let s = t.wait_for("Trust this receiver and continue?");
    assert!(s.contains(&r.fingerprint), "{s}");
    t.send(b"y");
    t.wait_for("4/7 Guest");
    t.send(b"1\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7fmenutest\r");
    t.wait_for("1) Name                  menutest");
    t.send(b"n");
    let s = t.wait_for("5/7 Review");
    assert!(
        s.contains(&format!("Next time, boot with: p2xen.server={}", r.addr())),
        "{s}"
    );
    t.send(b"\r");
    let s = t.wait_for("7/7 Result");
    assert!(s.contains("Guest menutest copied and verified."), "{s}");
    assert!(s.contains("disk0 "), "{s}");
    assert_eq!(r.wait(Duration::from_secs(30)), Some(0));
    let img = store.join("menutest/disk0.img");
    assert_eq!(blake3_file(&img), before, "received image differs");
    assert_eq!(blake3_file(&src), before, "the source image changed");
    t.send(b"2");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = menu.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < WAIT, "p2xen menu did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    menu.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success());
    assert_eq!(out.trim(), "menu: Reboot");
    std::thread::sleep(Duration::from_millis(200));
    let log = errlog.lock().unwrap().clone();
    let want = format!(
        "next time, boot with: p2xen.server={} p2xen.token={} p2xen.fingerprint={} p2xen.name=menutest",
        r.addr(),
        r.token,
        r.fingerprint
    );
    assert!(log.contains(&want), "{log}");
}
