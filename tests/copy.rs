//! End-to-end copies between two processes on loopback.

mod common;
mod copy_harness;

use copy_harness::*;
use std::time::Duration;

fn read_json(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

#[test]
fn migrates_mbr_ext4_swap_and_every_file_is_identical() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_ext4_swap(d.path());
    let before = blake3_file(&src);
    let store = d.path().join("store");
    let mut r = Receiver::start(&store, &d.path().join("state"), &["--once"]);
    let (ok, last, err) = r.send("seed", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(
        r.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        r.stderr.lock().unwrap()
    );
    let img = store.join("seed/disk0.img");
    e2fsck_ok(&img, PART1_START);
    dump_fs(&src, PART1_START, &d.path().join("a"));
    dump_fs(&img, PART1_START, &d.path().join("b"));
    let a = tree_hashes(&d.path().join("a"));
    assert!(a.len() >= 5, "{a:?}");
    assert_eq!(a, tree_hashes(&d.path().join("b")));
    let report = read_json(&store.join("seed/report.json"));
    assert_eq!(report["state"], "complete");
    assert_eq!(report["disks"][0]["verified"], true);
    assert_eq!(
        report["disks"][0]["content_digest"],
        last["report"]["disks"][0]["content_digest"]
    );
    assert!(!store.join("seed/disk0.img.incomplete").exists());
    let machine = read_json(&store.join("seed/machine.json"));
    assert_eq!(machine["name"], "seed");
    assert!(machine["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(machine["disks"].as_array().unwrap().len(), 1);
    // What the sender saw of its firmware reaches the conversion.
    let efi = std::path::Path::new("/sys/firmware/efi").is_dir();
    assert_eq!(machine["firmware"], if efi { "uefi" } else { "bios" });
    assert_eq!(blake3_file(&src), before, "the source image changed");
}

#[test]
fn all_blocks_copy_is_byte_identical_and_sparse() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    // Data, a long zero stretch, a chunk that is half zero, data at the end.
    let mut data = noise(3 << 20, 1);
    data.resize(20 << 20, 0);
    data.extend(noise(1 << 20, 2));
    data.resize(30 << 20, 0);
    data.extend(noise(123_457, 3));
    std::fs::write(&src, &data).unwrap();
    let before = blake3_file(&src);
    let store = d.path().join("store");
    let mut r = Receiver::start(&store, &d.path().join("state"), &["--once"]);
    let (ok, last, err) = r.send("forensic", &[&src], &["--all-blocks"]);
    assert!(ok, "{err}");
    assert_eq!(r.wait(Duration::from_secs(30)), Some(0));
    let img = store.join("forensic/disk0.img");
    assert_eq!(blake3_file(&img), before);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), data.len() as u64);
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(
        allocated < 6 << 20,
        "zeros were written, not left as holes: {allocated}"
    );
    let zero = last["report"]["disks"][0]["zero_bytes"].as_u64().unwrap();
    assert!(zero >= 16 << 20, "{last}");
    assert_eq!(blake3_file(&src), before);
}

#[test]
fn wrong_credentials_and_strangers_are_refused_before_anything_is_created() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    std::fs::write(&src, noise(1 << 20, 5)).unwrap();
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);

    let (ok, _, err) = send(
        &r.addr(),
        "0123456789abcdef0123456789abcdef",
        &r.fingerprint,
        "x",
        &[&src],
        &["--retry-for", "1"],
    );
    assert!(!ok);
    assert!(err.contains("wrong token"), "{err}");

    let other = format!("sha256:{}", "ab".repeat(32));
    let (ok, _, err) = send(
        &r.addr(),
        &r.token,
        &other,
        "x",
        &[&src],
        &["--retry-for", "1"],
    );
    assert!(!ok);
    assert!(
        err.contains("not the pinned one") && err.contains("fingerprint"),
        "{err}"
    );

    // A plain TCP client talking garbage.
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(r.addr()).unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let _ = std::io::Read::read(&mut tcp, &mut buf);

    // A TLS client with the right token but another protocol version.
    let reply = raw_session(
        &r,
        br#"{"type":"hello","protocol":99,"software":"future","token":"TOKEN"}"#,
        None,
    );
    assert_eq!(reply["type"], "refused", "{reply}");
    assert!(
        reply["reason"].as_str().unwrap().contains("version 99"),
        "{reply}"
    );

    assert!(dir_is_empty(&store), "something was created in the store");
    assert!(!d.path().join("state/journal").exists());
    drop(r);
}

/// Speaks to the receiver directly through the library's TLS client: sends
/// `hello` (TOKEN replaced) and optionally one more message; returns the last reply.
fn raw_session(r: &Receiver, hello: &[u8], second: Option<&[u8]>) -> serde_json::Value {
    use p2xen::wire::{frame, tls};
    let cfg = tls::client_config(tls::parse_fingerprint(&r.fingerprint).unwrap()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, tls::server_name()).unwrap();
    let tcp = std::net::TcpStream::connect(r.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let hello = String::from_utf8_lossy(hello).replace("TOKEN", &r.token);
    frame::write_control(&mut s, hello.as_bytes()).unwrap();
    let read = |s: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>| {
        match frame::read_frame(s).unwrap() {
            frame::Frame::Control(j) => serde_json::from_slice::<serde_json::Value>(&j).unwrap(),
            frame::Frame::Chunk(_) => panic!("chunk from receiver"),
        }
    };
    let first = read(&mut s);
    let Some(second) = second else { return first };
    assert_eq!(first["type"], "welcome", "{first}");
    frame::write_control(&mut s, second).unwrap();
    read(&mut s)
}

#[test]
fn a_message_out_of_its_phase_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);
    let hello = br#"{"type":"hello","protocol":1,"software":"t","token":"TOKEN"}"#;
    for (second, expected) in [
        (
            r#"{"type":"finish"}"#,
            "sender sent finish during the start phase: expected start",
        ),
        (
            r#"{"type":"disk_end","disk":0,"content_digest":"x"}"#,
            "sender sent disk_end during the start phase: expected start",
        ),
    ] {
        let reply = raw_session(&r, hello, Some(second.as_bytes()));
        assert_eq!(reply["type"], "refused", "{reply}");
        assert_eq!(reply["reason"], expected, "{reply}");
        assert_eq!(reply["fatal"], true, "{reply}");
    }
    assert!(dir_is_empty(&store), "something was created in the store");
}

#[test]
fn bad_and_existing_names_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);
    for bad in ["../etc", "a/b", "x\u{1}y", ".."] {
        let start = serde_json::json!({"type": "start", "name": bad,
            "machine": {"name": bad, "hostname": null, "cpus": 1, "memory_bytes": 1, "nics": [], "disks": [],
                "options": {"layout": "disk", "type": null, "bridge": null, "memory_mib": null, "vcpus": null}},
            "disks": [{"disk": 0, "source": "x", "size_bytes": 4096, "chunks": 1, "plan_bytes": 4096, "plan_digest": "x"}]});
        let hello = br#"{"type":"hello","protocol":1,"software":"t","token":"TOKEN"}"#;
        let reply = raw_session(&r, hello, Some(start.to_string().as_bytes()));
        assert_eq!(reply["type"], "refused", "{reply}");
        assert!(
            reply["reason"]
                .as_str()
                .unwrap()
                .contains("invalid migration name"),
            "{reply}"
        );
    }
    assert!(dir_is_empty(&store));
    // The sender checks names too.
    let src = d.path().join("src.img");
    std::fs::write(&src, noise(8192, 1)).unwrap();
    let (ok, _, err) = r.send("../x", &[&src], &[]);
    assert!(!ok && err.contains("invalid name"), "{err}");

    // An existing migration is not overwritten without --force.
    let (ok, _, err) = r.send("dup", &[&src], &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = r.send("dup", &[&src], &["--retry-for", "1"]);
    assert!(
        !ok && err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    drop(r);
    let r = Receiver::start(&store, &d.path().join("state"), &["--force"]);
    let (ok, _, err) = r.send("dup", &[&src], &[]);
    assert!(ok, "{err}");
}

#[test]
fn the_guest_conversion_runs_after_the_verified_copy_and_its_failure_is_reported() {
    let d = tempfile::tempdir().unwrap();
    // An ext4 disk without an OS: the copy verifies, the conversion cannot find a root.
    let src = mbr_ext4_swap(d.path());
    let store = d.path().join("store");
    let xen = d.path().join("xen");
    std::fs::create_dir_all(&xen).unwrap();
    let xen_arg = xen.display().to_string();
    let mut r = Receiver::start(
        &store,
        &d.path().join("state"),
        &["--once", "--xen-dir", &xen_arg],
    );
    let (ok, _, err) = r.send("noos", &[&src], &[]);
    assert!(!ok);
    assert!(
        err.contains("copy verified, but the guest conversion failed"),
        "{err}"
    );
    assert_eq!(r.wait(Duration::from_secs(60)), Some(1));
    let report = read_json(&store.join("noos/report.json"));
    assert_eq!(report["state"], "complete", "{report}");
    assert_eq!(report["disks"][0]["verified"], true);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("p2xen convert --name noos"),
        "{report}"
    );
    assert!(!store.join("noos/disk0.img.incomplete").exists());
}
