//! Faults in transit and on the receiver: flipped bytes, cut connections,
//! a receiver killed mid-copy, a full target.

mod common;
mod copy_harness;

use copy_harness::*;
use std::time::Duration;

fn random_image(dir: &std::path::Path, mib: usize) -> std::path::PathBuf {
    let p = dir.join("src.img");
    std::fs::write(&p, noise(mib << 20, 42)).unwrap();
    p
}

/// Copies a random `mib` MiB image as `name` to a `--once` receiver through
/// a proxy that applies `plan` to each connection, with `--retry-for
/// retry_for`. Asserts the copy succeeded over at least `min_connections`
/// connections and both the copy and the source equal the source's hash
/// before; returns the receiver's log.
fn copy_through_proxy(
    name: &str,
    mib: usize,
    retry_for: &str,
    min_connections: u64,
    plan: impl Fn(usize) -> Fault + Send + Sync + 'static,
) -> String {
    let d = tempfile::tempdir().unwrap();
    let src = random_image(d.path(), mib);
    let before = blake3_file(&src);
    let store = d.path().join("store");
    let mut r = Receiver::start(&store, &d.path().join("state"), &["--once"]);
    let proxy = Proxy::start(r.addr().parse().unwrap(), plan);
    let (ok, last, err) = send(
        &proxy.addr(),
        &r.token,
        &r.fingerprint,
        name,
        &[&src],
        &["--retry-for", retry_for],
    );
    assert!(ok, "{err}");
    assert!(
        last["report"]["connections"].as_u64().unwrap() >= min_connections,
        "{last}"
    );
    assert_eq!(r.wait(Duration::from_secs(30)), Some(0));
    assert_eq!(blake3_file(&store.join(name).join("disk0.img")), before);
    assert_eq!(blake3_file(&src), before);
    r.stderr.lock().unwrap().clone()
}

#[test]
fn a_flipped_byte_in_transit_is_caught_and_the_copy_recovers() {
    // First connection: one bit flipped well inside the data stream.
    let log = copy_through_proxy("flip", 24, "30", 2, |n| {
        if n == 0 {
            Fault::FlipAt(5 << 20)
        } else {
            Fault::Pass
        }
    });
    assert!(
        log.contains("connection lost"),
        "receiver did not notice: {log}"
    );
}

#[test]
fn connections_cut_at_random_points_still_give_an_identical_image() {
    // Eight cuts at pseudo-random offsets (handshake included), then a clean run.
    copy_through_proxy("cut", 40, "60", 9, |n| {
        if n < 8 {
            let x = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            Fault::CutAt(x % (12 << 20))
        } else {
            Fault::Pass
        }
    });
}

#[test]
fn receiver_killed_mid_copy_resumes_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let src = random_image(d.path(), 48);
    let before = blake3_file(&src);
    let store = d.path().join("store");
    let state = d.path().join("state");
    let mut r1 = Receiver::start(&store, &state, &[]);
    let proxy = Proxy::start(r1.addr().parse().unwrap(), |n| {
        if n == 0 {
            Fault::StallAt(30 << 20)
        } else {
            Fault::Pass
        }
    });
    let (addr, token, fp) = (proxy.addr(), r1.token.clone(), r1.fingerprint.clone());
    let sender = std::thread::spawn(move || {
        send(
            &addr,
            &token,
            &fp,
            "killed",
            &[&src],
            &["--retry-for", "60"],
        )
    });
    // Wait until the receiver has journalled a good part, then kill it hard.
    let journal = state.join("journal/killed/disk0.journal");
    let t = std::time::Instant::now();
    while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) < 48 * 5 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "receiver never committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let status = |json: bool| receive_status(&state, json);
    let running: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(running[0]["name"], "killed", "{running}");
    assert_eq!(running[0]["state"], "running", "{running}");
    assert!(
        running[0]["committed_bytes"].as_u64().unwrap() > 0,
        "{running}"
    );
    r1.kill9();
    let interrupted: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(interrupted[0]["state"], "interrupted", "{interrupted}");
    let table = status(false);
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        row.starts_with("killed ") && row.contains(" interrupted ") && row.contains(" MiB ("),
        "{table}"
    );
    let list = std::process::Command::new(BIN)
        .args(["receive", "--list", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("killed: 1 disk(s)"), "{list}");
    let mut r2 = Receiver::start(&store, &state, &["--once"]);
    assert_eq!(r2.fingerprint, r1.fingerprint);
    *proxy.target.lock().unwrap() = r2.addr().parse().unwrap();
    proxy
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, last, err) = sender.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(r2.wait(Duration::from_secs(30)), Some(0));
    let resumed = last["report"]["disks"][0]["resumed_bytes"]
        .as_u64()
        .unwrap();
    assert!(resumed >= 4 << 20, "nothing was resumed: {last}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("killed/report.json")).unwrap()).unwrap();
    assert_eq!(report["state"], "complete");
    assert!(report["sessions"].as_u64().unwrap() >= 2);
    assert_eq!(blake3_file(&store.join("killed/disk0.img")), before);
    assert_eq!(blake3_file(&d.path().join("src.img")), before);
    assert!(!state.join("journal/killed").exists());
}

#[test]
fn a_full_target_is_a_clear_error_and_never_a_success() {
    let d = tempfile::tempdir().unwrap();
    let src = random_image(d.path(), 24);
    let before = blake3_file(&src);
    let store = d.path().join("small");
    let _mnt = Tmpfs::mount(&store, "8m");
    let mut r = Receiver::start(&store, &d.path().join("state"), &["--once"]);
    let (ok, _, err) = r.send("full", &[&src], &["--retry-for", "5"]);
    assert!(!ok);
    assert!(
        err.contains("target full") && err.contains("disk0.img"),
        "{err}"
    );
    assert_eq!(r.wait(Duration::from_secs(30)), Some(1));
    assert!(store.join("full/disk0.img.incomplete").exists());
    if let Ok(b) = std::fs::read(store.join("full/report.json")) {
        let rep: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(rep["state"], "incomplete");
    }
    assert_eq!(blake3_file(&src), before);
}

#[test]
fn an_interrupted_migration_is_not_resumed_under_another_token() {
    let d = tempfile::tempdir().unwrap();
    let src = random_image(d.path(), 24);
    let store = d.path().join("store");
    let state = d.path().join("state");
    let r1 = Receiver::start(&store, &state, &[]);
    // Cut after 12 MiB and give up at once: an interrupted, resumable copy.
    let proxy = Proxy::start(r1.addr().parse().unwrap(), |_| Fault::CutAt(12 << 20));
    let (ok, _, err) = send(
        &proxy.addr(),
        &r1.token,
        &r1.fingerprint,
        "owned",
        &[&src],
        &["--retry-for", "0"],
    );
    assert!(!ok, "the cut copy succeeded: {err}");
    drop(r1);
    let partial = blake3_file(&store.join("owned/disk0.img"));

    // Same state (certificate, journal), new token.
    std::fs::remove_file(state.join("token")).unwrap();
    let r2 = Receiver::start(&store, &state, &[]);
    let (ok, _, err) = r2.send("owned", &[&src], &["--retry-for", "1"]);
    assert!(!ok, "resumed under another token: {err}");
    assert!(
        err.contains("migration owned was started with another token"),
        "{err}"
    );
    assert_eq!(blake3_file(&store.join("owned/disk0.img")), partial);
    assert!(state.join("journal/owned/meta.json").exists());
    drop(r2);

    // The administrator says so: started over, and complete.
    let r3 = Receiver::start(&store, &state, &["--force"]);
    let (ok, _, err) = r3.send("owned", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        blake3_file(&store.join("owned/disk0.img")),
        blake3_file(&src)
    );
}

/// Two servers of the same size sent under one name: the second is refused
/// while the first runs and while the first's copy is interrupted; the image
/// only ever holds the first server's bytes.
#[test]
fn two_servers_under_one_name_are_never_mixed_into_one_image() {
    let d = tempfile::tempdir().unwrap();
    let a = random_image(d.path(), 24);
    let b = d.path().join("b.img");
    std::fs::write(&b, noise(24 << 20, 100)).unwrap();
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);

    // While A's session runs (held after 8 MiB by the proxy).
    let proxy = Proxy::start(r.addr().parse().unwrap(), |n| {
        if n == 0 {
            Fault::StallAt(8 << 20)
        } else {
            Fault::Pass
        }
    });
    let (addr, token, fp, a2) = (
        proxy.addr(),
        r.token.clone(),
        r.fingerprint.clone(),
        a.clone(),
    );
    let sender_a = std::thread::spawn(move || {
        send(&addr, &token, &fp, "twin", &[&a2], &["--retry-for", "60"])
    });
    let t = std::time::Instant::now();
    while !store.join("twin/disk0.img").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "A never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, _, err) = r.send("twin", &[&b], &["--retry-for", "0"]);
    assert!(
        !ok && err.contains("migration twin is being received from another disk right now"),
        "{err}"
    );
    proxy
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, _, err) = sender_a.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(blake3_file(&store.join("twin/disk0.img")), blake3_file(&a));

    // While A's copy is interrupted (cut, sender gone).
    let cut = Proxy::start(r.addr().parse().unwrap(), |_| Fault::CutAt(12 << 20));
    let (ok, _, _) = send(
        &cut.addr(),
        &r.token,
        &r.fingerprint,
        "twin2",
        &[&a],
        &["--retry-for", "0"],
    );
    assert!(!ok);
    // The sender gives up as soon as the link is cut, while the receiver may
    // still be writing what it had buffered: hash once it lets go.
    wait_for_state(&d.path().join("state"), "twin2", "interrupted");
    let partial = blake3_file(&store.join("twin2/disk0.img"));
    let (ok, _, err) = r.send("twin2", &[&b], &["--retry-for", "0"]);
    assert!(
        !ok && err.contains("migration twin2 holds a partial copy of another disk"),
        "{err}"
    );
    assert_eq!(blake3_file(&store.join("twin2/disk0.img")), partial);
    let (ok, _, err) = r.send("twin2", &[&a], &[]);
    assert!(ok, "{err}");
    assert_eq!(blake3_file(&store.join("twin2/disk0.img")), blake3_file(&a));
}

/// Polls `p2xen receive --status --json` until migration `name` is in `state`.
fn wait_for_state(state_dir: &std::path::Path, name: &str, state: &str) {
    let t = std::time::Instant::now();
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&receive_status(state_dir, true)).unwrap();
        let now = list
            .as_array()
            .and_then(|l| l.iter().find(|m| m["name"] == name))
            .map(|m| m["state"].clone());
        if now.as_ref().and_then(|s| s.as_str()) == Some(state) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{name} never became {state}: {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `p2xen receive --status` (a table, or JSON) on `state_dir`.
fn receive_status(state_dir: &std::path::Path, json: bool) -> String {
    let out = std::process::Command::new(BIN)
        .args(["receive", "--status", "--state-dir"])
        .arg(state_dir)
        .args(if json { &["--json"][..] } else { &[][..] })
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}
