//! `--limit`: the sender paces what it writes, the receiver what it reads,
//! and the receiver's limit of a running copy can be changed from outside.

mod common;
mod copy_harness;

use copy_harness::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn wait_for_log(r: &Receiver, needle: &str, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if r.stderr.lock().unwrap().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_sender_holds_its_limit() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    std::fs::write(&src, noise(6 << 20, 3)).unwrap();
    let r = Receiver::start(&d.path().join("store"), &d.path().join("state"), &[]);
    let t = Instant::now();
    let (ok, _, err) = r.send("slow", &[&src], &["--all-blocks", "--limit", "16Mbit"]);
    let secs = t.elapsed().as_secs_f64();
    assert!(ok, "{err}");
    // 6 MiB of noise at 2 MB/s, the first second's worth at once: at least
    // 2 s however fast this machine is (a lower bound cannot flake).
    assert!(secs >= 2.0, "6 MiB at 16 Mbit/s took {secs:.2} s");
    assert_eq!(
        blake3_file(&src),
        blake3_file(&d.path().join("store/slow/disk0.img"))
    );
}

#[test]
fn the_receivers_limit_of_a_running_copy_can_be_lifted() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    std::fs::write(&src, noise(24 << 20, 4)).unwrap();
    let state = d.path().join("state");
    let r = Receiver::start(&d.path().join("store"), &state, &["--limit", "1M"]);
    let sender = {
        let (addr, token, fp, src) = (
            r.addr(),
            r.token.clone(),
            r.fingerprint.clone(),
            src.clone(),
        );
        std::thread::spawn(move || send(&addr, &token, &fp, "big", &[&src], &["--all-blocks"]))
    };
    assert!(
        wait_for_log(
            &r,
            "big: bandwidth limit 1.0 MiB/s",
            Duration::from_secs(20)
        ),
        "{}",
        r.stderr.lock().unwrap()
    );
    let out = Command::new(BIN)
        .args(["receive", "--limit", "big", "off", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("big: no limit (in "), "{stdout}");
    assert!(
        wait_for_log(&r, "big: bandwidth limit lifted", Duration::from_secs(10)),
        "{}",
        r.stderr.lock().unwrap()
    );
    let (ok, _, err) = sender.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        blake3_file(&src),
        blake3_file(&d.path().join("store/big/disk0.img"))
    );
}

#[test]
fn bad_rates_are_refused_with_the_syntax() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["receive", "--limit", "web", "fast", "--state-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bandwidth limit \"fast\"") && err.contains("800Mbit"),
        "{err}"
    );
    assert!(!d.path().join("limits").exists());
    let out = Command::new(BIN)
        .args(["receive", "--limit", "../x", "5M", "--state-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN)
        .args([
            "send",
            "--server",
            "x:1",
            "--token",
            "t",
            "--fingerprint",
            "sha256:00",
        ])
        .args(["--limit", "10X", "/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bandwidth limit \"10X\""), "{err}");
}

#[test]
fn a_slow_link_raises_the_compression_level() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("log.img");
    // A log: compressible, and better at higher levels.
    let log: String = (0..400_000u64)
        .map(|i| {
            format!(
                "Dec  6 10:{:02}:{:02} web01 app[{}]: request {} from 10.0.{}.{} took {} ms\n",
                (i / 60) % 60,
                i % 60,
                1000 + i % 97,
                i.wrapping_mul(2654435761) % 1_000_003,
                i % 251,
                (i * 7) % 253,
                (i * 13) % 997
            )
        })
        .collect();
    std::fs::write(&src, log).unwrap();
    let r = Receiver::start(&d.path().join("store"), &d.path().join("state"), &[]);
    let (ok, last, err) = r.send("logs", &[&src], &["--all-blocks", "--limit", "512K"]);
    assert!(ok, "{err}");
    let levels = last["report"]["disks"][0]["zstd_levels"]
        .as_object()
        .unwrap_or_else(|| panic!("{last}"));
    let top = levels
        .keys()
        .filter_map(|k| k.parse::<i32>().ok())
        .max()
        .unwrap_or(0);
    println!("zstd chunks by level on a 512 KiB/s link: {levels:?}");
    // One step a second while the link is the bottleneck; the chunks
    // compressed ahead of the link lag a step or two behind.
    assert!(top >= 3, "the level never rose on a slow link: {levels:?}");
    assert_eq!(
        blake3_file(&src),
        blake3_file(&d.path().join("store/logs/disk0.img"))
    );
}
