//! Rehearsal, then cutover: a second `p2xen send` of the same server updates
//! the receiver's earlier copy in place, sending only the chunks that
//! changed, and must leave exactly what a fresh full copy would.

mod common;
mod copy_harness;

use common::fixtures::{at_offset, patch, run};
use copy_harness::*;
use std::path::Path;
use std::process::Command;

/// Changes the source the way a day of service does: a file removed (its
/// blocks freed), a file written, a log appended.
fn change_source(img: &Path, dir: &Path) {
    let new = dir.join("new.bin");
    std::fs::write(&new, noise(1 << 20, 4242)).unwrap();
    let fs = at_offset(img, PART1_START);
    for req in [
        "rm /random.bin".to_string(),
        format!("write {} /new.bin", new.display()),
        "mkdir /srv".to_string(),
    ] {
        run(Command::new("debugfs").args(["-w", "-R", &req, &fs]));
    }
    e2fsck_ok(img, PART1_START);
}

fn u64_at(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut at = v;
    for p in path {
        at = match p.parse::<usize>() {
            Ok(i) => &at[i],
            Err(_) => &at[*p],
        };
    }
    at.as_u64().unwrap_or_else(|| panic!("{path:?} in {v}"))
}

#[test]
fn a_cutover_sends_only_what_changed_and_equals_a_fresh_copy() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_ext4_swap(d.path());
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);

    // The rehearsal: a full copy.
    let before = blake3_file(&src);
    let (ok, first, err) = r.send("web", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(blake3_file(&src), before, "the source changed");
    let full_data = u64_at(&first, &["report", "disks", "0", "data_bytes"]);
    let img = store.join("web/disk0.img");
    // What happened to the copy since: a rehearsal guest or the conversion
    // wrote into a planned chunk and into space the source does not use.
    patch(&img, 600, b"written by the rehearsal guest");
    patch(&img, 60 << 20, &noise(4096, 5));

    change_source(&src, d.path());
    let changed = blake3_file(&src);
    let (ok, last, err) = r.send("web", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(blake3_file(&src), changed, "the source changed");
    let rep = &last["report"];
    assert_eq!(rep["receiver_report"]["cutover"], true, "{last}");
    let plan = u64_at(rep, &["disks", "0", "plan_bytes"]);
    let data = u64_at(rep, &["disks", "0", "data_bytes"]);
    let unchanged = u64_at(rep, &["disks", "0", "unchanged_bytes"]);
    println!(
        "cutover: plan {} KiB, sent {} KiB of data (full copy: {} KiB), {} KiB unchanged",
        plan >> 10,
        data >> 10,
        full_data >> 10,
        unchanged >> 10
    );
    assert!(unchanged > plan / 2, "{last}");
    assert!(data < full_data / 2, "{last}");
    let receiver_report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("web/report.json")).unwrap()).unwrap();
    assert_eq!(receiver_report["state"], "complete");
    assert_eq!(receiver_report["cutover"], true);
    assert!(u64_at(&receiver_report, &["disks", "0", "unchanged_chunks"]) > 0);
    assert!(!store.join("web/disk0.img.incomplete").exists());

    // The same source sent fresh under another name: byte for byte the same.
    let (ok, _, err) = r.send("fresh", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        blake3_file(&img),
        blake3_file(&store.join("fresh/disk0.img")),
        "the cutover's result differs from a fresh copy"
    );
    e2fsck_ok(&img, PART1_START);
    dump_fs(&src, PART1_START, &d.path().join("a"));
    dump_fs(&img, PART1_START, &d.path().join("b"));
    let files = tree_hashes(&d.path().join("a"));
    assert!(files.iter().any(|(p, _)| p == "new.bin"), "{files:?}");
    assert_eq!(files, tree_hashes(&d.path().join("b")));
}

#[test]
fn another_server_under_the_same_name_is_refused_and_the_copy_kept() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let src = mbr_ext4_swap(&a);
    // Same layout, but mke2fs gives its filesystem another UUID.
    let other = mbr_ext4_swap(&b);
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);
    let (ok, _, err) = r.send("db", &[&src], &[]);
    assert!(ok, "{err}");
    let img = store.join("db/disk0.img");
    let copy = blake3_file(&img);
    let (ok, _, err) = r.send("db", &[&other], &["--retry-for", "1"]);
    assert!(!ok, "another server's disk was accepted for a cutover");
    assert!(
        err.contains("not a copy of this server")
            && err.contains("filesystem UUIDs")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(blake3_file(&img), copy, "the earlier copy was touched");
}

#[test]
fn no_cutover_while_something_holds_the_copy() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_ext4_swap(d.path());
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);
    let (ok, _, err) = r.send("app", &[&src], &[]);
    assert!(ok, "{err}");
    let img = store.join("app/disk0.img");
    let copy = blake3_file(&img);
    // A rehearsal guest left running: here a process with the image open.
    let mut guest = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 3<>'{}'; echo up; exec sleep 60",
            img.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(guest.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    change_source(&src, d.path());
    let (ok, _, err) = r.send("app", &[&src], &["--retry-for", "1"]);
    let _ = guest.kill();
    let _ = guest.wait();
    assert!(!ok, "the cutover ran under a process holding the copy");
    assert!(
        err.contains(&format!("is in use by process {}", guest.id()))
            && err.contains("xl shutdown"),
        "{err}"
    );
    assert_eq!(blake3_file(&img), copy, "the copy was written while in use");
    // Once it is let go, the same cutover goes through.
    let (ok, last, err) = r.send("app", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(last["report"]["receiver_report"]["cutover"], true, "{last}");
}

#[test]
fn a_warm_pre_copy_is_never_converted_and_the_cutover_finishes_it() {
    let d = tempfile::tempdir().unwrap();
    // An ext4 disk without an OS: a conversion, if it ran, would fail.
    let src = mbr_ext4_swap(d.path());
    let store = d.path().join("store");
    let xen = d.path().join("xen");
    std::fs::create_dir_all(&xen).unwrap();
    let xen_arg = xen.display().to_string();
    let r = Receiver::start(&store, &d.path().join("state"), &["--xen-dir", &xen_arg]);
    let (ok, last, err) = r.send("mail", &[&src], &["--warm"]);
    assert!(ok, "the pre-copy was converted or failed: {err}");
    assert_eq!(
        last["report"]["receiver_report"]["state"], "pre_copy",
        "{last}"
    );
    let marker = store.join("mail/disk0.img.incomplete");
    let text = std::fs::read_to_string(&marker).unwrap();
    assert!(text.contains("pre-copy from the running server"), "{text}");
    assert!(dir_is_empty(&xen), "a pre-copy was converted");
    let out = Command::new(BIN)
        .args(["convert", "--name", "mail", "--store"])
        .arg(&store)
        .args(["--xen-dir", &xen_arg])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pre-copy from the running server"),
        "{stderr}"
    );
    assert!(dir_is_empty(&xen), "p2xen convert converted a pre-copy");

    // The cutover from the live image: consistent, so it is converted.
    change_source(&src, d.path());
    let (ok, _, err) = r.send("mail", &[&src], &[]);
    assert!(
        !ok && err.contains("copy verified, but the guest conversion failed"),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("mail/report.json")).unwrap()).unwrap();
    assert_eq!(report["state"], "complete", "{report}");
    assert_eq!(report["cutover"], true, "{report}");
    assert!(!marker.exists());
}

/// A loop device over `image` (a filesystem without a partition table:
/// this container has no udev to make partition nodes), mounted read-only;
/// both undone on drop.
struct MountedDisk {
    dev: String,
    point: tempfile::TempDir,
}

impl MountedDisk {
    fn new(image: &Path) -> MountedDisk {
        let dev = run(Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(image))
        .trim()
        .to_string();
        let m = MountedDisk {
            dev,
            point: tempfile::tempdir().unwrap(),
        };
        run(Command::new("mount")
            .args(["-o", "ro,noload", &m.dev])
            .arg(m.point.path()));
        m
    }
}

impl Drop for MountedDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.point.path()).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn a_mounted_source_is_refused_unless_warm() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "live\n").unwrap();
    let src = d.path().join("root.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&src)
        .arg("16M"));
    let before = blake3_file(&src);
    let disk = MountedDisk::new(&src);
    let store = d.path().join("store");
    let r = Receiver::start(&store, &d.path().join("state"), &[]);
    let dev = Path::new(&disk.dev);
    let (ok, _, err) = r.send("live", &[dev], &[]);
    assert!(!ok, "a mounted disk was sent as a consistent copy");
    assert!(
        err.contains(&format!("is mounted at {}", disk.point.path().display()))
            && err.contains("--warm"),
        "{err}"
    );
    assert!(dir_is_empty(&store), "the refusal created something");
    let (ok, last, err) = r.send("live", &[dev], &["--warm"]);
    assert!(ok, "{err}");
    assert_eq!(
        last["report"]["receiver_report"]["state"], "pre_copy",
        "{last}"
    );
    drop(disk);
    assert_eq!(blake3_file(&src), before, "the source changed");
}

#[test]
fn a_cutover_survives_a_cut_connection_and_a_killed_receiver() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_ext4_swap(d.path());
    let store = d.path().join("store");
    let state = d.path().join("state");
    let mut r1 = Receiver::start(&store, &state, &[]);
    let (ok, _, err) = r1.send("erp", &[&src], &[]);
    assert!(ok, "{err}");
    // Much changed: 12 MiB of new data to send in the cutover.
    let big = d.path().join("big.bin");
    std::fs::write(&big, noise(12 << 20, 99)).unwrap();
    let req = format!("write {} /big.bin", big.display());
    run(Command::new("debugfs")
        .args(["-w", "-R", &req])
        .arg(at_offset(&src, PART1_START)));
    let changed = blake3_file(&src);
    // First connection stalls mid-pass (then the receiver is killed), the
    // second is cut, the third goes through.
    let proxy = Proxy::start(r1.addr().parse().unwrap(), |n| match n {
        0 => Fault::StallAt(6 << 20),
        1 => Fault::CutAt(2 << 20),
        _ => Fault::Pass,
    });
    let (addr, token, fp, s) = (
        proxy.addr(),
        r1.token.clone(),
        r1.fingerprint.clone(),
        src.clone(),
    );
    let sender =
        std::thread::spawn(move || send(&addr, &token, &fp, "erp", &[&s], &["--retry-for", "60"]));
    let journal = state.join("journal/erp/disk0.journal");
    let t = std::time::Instant::now();
    while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) < 48 {
        assert!(t.elapsed().as_secs() < 60, "the cutover never committed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    r1.kill9();
    // Until a pass finishes, the copy says it is not to be used.
    let marker = store.join("erp/disk0.img.incomplete");
    assert!(marker.exists(), "a half-updated copy looks finished");
    let r2 = Receiver::start(&store, &state, &[]);
    *proxy.target.lock().unwrap() = r2.addr().parse().unwrap();
    proxy
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, last, err) = sender.join().unwrap();
    assert!(ok, "{err}\n{}", r2.stderr.lock().unwrap());
    let rep = &last["report"];
    assert!(u64_at(rep, &["connections"]) >= 3, "{last}");
    assert_eq!(rep["receiver_report"]["cutover"], true, "{last}");
    assert!(u64_at(rep, &["receiver_report", "sessions"]) >= 2, "{last}");
    assert!(!marker.exists());
    assert_eq!(blake3_file(&src), changed, "the source changed");
    let (ok, _, err) = r2.send("fresh", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        blake3_file(&store.join("erp/disk0.img")),
        blake3_file(&store.join("fresh/disk0.img")),
        "the resumed cutover differs from a fresh copy"
    );
}
