//! `--store dev:`: migrations into existing block devices (loop devices
//! here), and every refusal before a byte is written.

mod common;
mod copy_harness;

use common::fixtures::{MIB, hash_file, hash_range, mbr_server, mke2fs_at, need, run};
use copy_harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// `losetup -f` picks a free device and then binds it: two tests doing it
/// at once can pick the same one. One at a time within this binary; the
/// retry covers other processes.
static LOSETUP: Mutex<()> = Mutex::new(());

/// A loop device over a file of `size` bytes of noise; detached on drop.
struct Loop {
    dev: PathBuf,
    _file: tempfile::TempDir,
}

impl Loop {
    fn noise(size: u64, seed: u64) -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backing");
        std::fs::write(&file, noise(size as usize, seed)).unwrap();
        Loop::over(dir, &file)
    }

    fn over(dir: tempfile::TempDir, file: &Path) -> Loop {
        need("losetup", "mount");
        let _one = LOSETUP.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..5 {
            let out = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(file)
                .output()
                .unwrap();
            if out.status.success() {
                let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
                return Loop {
                    dev: dev.into(),
                    _file: dir,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("losetup -f --show {}: {last}", file.display());
    }

    fn path(&self) -> &Path {
        &self.dev
    }

    fn hash(&self) -> String {
        hash_file(&self.dev)
    }

    fn store(&self) -> PathBuf {
        PathBuf::from(format!("dev:{}", self.dev.display()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A read-only mount, unmounted on drop (before the loop device goes).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Starts `p2xen receive` expecting it to refuse at start; returns stderr.
fn receiver_refuses(store: &Path, state: &Path) -> String {
    let out = Command::new(BIN)
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--no-convert",
            "--store",
        ])
        .arg(store)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{err}"
    );
    err
}

/// Nothing of migration `name` exists in the state directory.
fn nothing_created(state: &Path, name: &str) {
    assert!(!state.join("dev").join(name).exists());
    assert!(!state.join("journal").join(name).exists());
}

#[test]
fn a_migration_fills_the_device_exactly_and_leaves_its_tail_alone() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_server(d.path()).image;
    let size = std::fs::metadata(&src).unwrap().len();
    let before = hash_file(&src);
    let lun = Loop::noise(size + 8 * MIB, 5);
    let tail = hash_range(lun.path(), size, (8 * MIB) as usize);
    let state = d.path().join("state");
    let mut r = Receiver::start(&lun.store(), &state, &["--once"]);
    let (ok, last, err) = r.send("lun", &[&src], &[]);
    assert!(ok, "{err}\n{}", r.stderr.lock().unwrap());
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(r.wait(Duration::from_secs(30)), Some(0));
    // Unused ext4 blocks were not sent; the noise under them was zeroed.
    assert_eq!(hash_range(lun.path(), 0, size as usize), before);
    assert_eq!(
        hash_range(lun.path(), size, (8 * MIB) as usize),
        tail,
        "the tail past the disk was touched"
    );
    let log = r.stderr.lock().unwrap().clone();
    assert!(
        log.contains(&format!(
            "{}: {} bytes for disk 0 of {size} bytes; the last {} bytes of the device are left as they are",
            lun.path().display(),
            size + 8 * MIB,
            8 * MIB
        )),
        "{log}"
    );
    // Metadata under the state dir; diskN.img names the device.
    let dir = state.join("dev/lun");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["state"], "complete");
    assert_eq!(
        report["disks"][0]["target"],
        lun.path().display().to_string()
    );
    assert_eq!(
        std::fs::read_link(dir.join("disk0.img")).unwrap(),
        lun.path()
    );
    assert!(dir.join("machine.json").is_file());
    assert!(!state.join("journal/lun").exists());
    assert_eq!(hash_file(&src), before, "the source image changed");
}

#[test]
fn a_cutover_updates_the_devices_copy_to_what_a_fresh_copy_holds() {
    let d = tempfile::tempdir().unwrap();
    let server = mbr_server(d.path());
    let src = server.image;
    let size = std::fs::metadata(&src).unwrap().len();
    let lun = Loop::noise(size, 6);
    let state = d.path().join("state");
    let r = Receiver::start(&lun.store(), &state, &[]);
    let (ok, _, err) = r.send("lun", &[&src], &[]);
    assert!(ok, "{err}\n{}", r.stderr.lock().unwrap());
    // A day of service on the source: a file written on /srv.
    let file = d.path().join("orders.db");
    std::fs::write(&file, noise((2 * MIB) as usize, 77)).unwrap();
    let fs = format!("{}?offset={}", src.display(), server.srv_offset);
    run(Command::new("debugfs")
        .args(["-w", "-R"])
        .arg(format!("write {} /orders.db", file.display()))
        .arg(&fs));
    let changed = hash_file(&src);
    let (ok, last, err) = r.send("lun", &[&src], &[]);
    assert!(ok, "{err}\n{}", r.stderr.lock().unwrap());
    assert_eq!(last["report"]["receiver_report"]["cutover"], true, "{last}");
    let unchanged = last["report"]["disks"][0]["unchanged_bytes"]
        .as_u64()
        .unwrap();
    assert!(unchanged > 0, "{last}");
    assert_eq!(hash_file(&src), changed, "the source image changed");
    // The same source sent fresh into an image: the device holds its bytes.
    let files = Receiver::start(&d.path().join("store"), &d.path().join("state2"), &[]);
    let (ok, _, err) = files.send("fresh", &[&src], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        hash_range(lun.path(), 0, size as usize),
        hash_file(&d.path().join("store/fresh/disk0.img")),
        "the device differs from a fresh copy"
    );
}

#[test]
fn a_broken_connection_resumes_onto_the_devices_own_partial_copy() {
    let d = tempfile::tempdir().unwrap();
    // Noise under the filesystems and --all-blocks: the device must end up
    // byte-identical, and the wire carries enough to stall mid-disk.
    let src = mbr_ext4_swap(d.path());
    let size = std::fs::metadata(&src).unwrap().len();
    let before = hash_file(&src);
    let lun = Loop::noise(size, 9);
    let state = d.path().join("state");
    let mut r = Receiver::start(&lun.store(), &state, &["--once"]);
    let proxy = Proxy::start(r.addr().parse().unwrap(), |n| {
        if n == 0 {
            Fault::StallAt(12 << 20)
        } else {
            Fault::Pass
        }
    });
    let (addr, token, fp) = (proxy.addr(), r.token.clone(), r.fingerprint.clone());
    let src2 = src.clone();
    let sender = std::thread::spawn(move || {
        send(
            &addr,
            &token,
            &fp,
            "cut",
            &[&src2],
            &["--all-blocks", "--retry-for", "60"],
        )
    });
    // The first session has written the partition table when the link
    // stalls: the second must not take it for someone else's data.
    let mbr = common::fixtures::peek(&src, 0, 512);
    let t = std::time::Instant::now();
    while common::fixtures::peek(lun.path(), 0, 512) != mbr {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the MBR never reached the device\n{}",
            r.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, last, err) = sender.join().unwrap();
    assert!(ok, "{err}\n{}", r.stderr.lock().unwrap());
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(r.wait(Duration::from_secs(30)), Some(0));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("dev/cut/report.json")).unwrap()).unwrap();
    assert!(report["sessions"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(hash_file(lun.path()), before);
    assert_eq!(hash_file(&src), before);
}

#[test]
fn a_device_smaller_than_its_disk_is_refused_untouched() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_server(d.path()).image;
    let size = std::fs::metadata(&src).unwrap().len();
    let lun = Loop::noise(32 * MIB, 11);
    let dev_hash = lun.hash();
    let state = d.path().join("state");
    let r = Receiver::start(&lun.store(), &state, &[]);
    let (ok, _, err) = r.send("small", &[&src], &[]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{} is {} bytes, smaller than the {size} bytes of disk 0: list a device of at least {size} bytes in --store dev:",
            lun.path().display(),
            32 * MIB
        )),
        "{err}"
    );
    assert_eq!(lun.hash(), dev_hash);
    nothing_created(&state, "small");
}

#[test]
fn fewer_devices_than_disks_is_refused_untouched() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_server(d.path()).image;
    let second = d.path().join("second.img");
    std::fs::write(&second, noise(4 << 20, 3)).unwrap();
    let lun = Loop::noise(80 * MIB, 12);
    let dev_hash = lun.hash();
    let state = d.path().join("state");
    let r = Receiver::start(&lun.store(), &state, &[]);
    let (ok, _, err) = r.send("two", &[&src, &second], &[]);
    assert!(!ok);
    assert!(
        err.contains(
            "--store dev: lists 1 device(s) but the migration has 2 disk(s): list one device per disk (disk N goes to the Nth device)"
        ),
        "{err}"
    );
    assert_eq!(lun.hash(), dev_hash);
    nothing_created(&state, "two");
}

#[test]
fn a_device_listed_twice_or_not_a_device_is_refused_at_start() {
    let d = tempfile::tempdir().unwrap();
    let lun = Loop::noise(8 * MIB, 13);
    let dev_hash = lun.hash();
    let state = d.path().join("state");
    let dev = lun.path().display().to_string();
    let err = receiver_refuses(Path::new(&format!("dev:{dev},{dev}")), &state);
    assert!(
        err.contains(&format!(
            "{dev} is listed twice in --store dev: (for disks 0 and 1): list each device once, one per disk"
        )),
        "{err}"
    );
    // The same device under another name.
    let alias = d.path().join("alias");
    std::os::unix::fs::symlink(lun.path(), &alias).unwrap();
    let err = receiver_refuses(Path::new(&format!("dev:{dev},{}", alias.display())), &state);
    assert!(
        err.contains(&format!(
            "{} is listed twice in --store dev: (for disks 0 and 1)",
            alias.display()
        )),
        "{err}"
    );
    let file = d.path().join("plain.img");
    std::fs::write(&file, b"not a disk").unwrap();
    let err = receiver_refuses(Path::new(&format!("dev:{}", file.display())), &state);
    assert!(
        err.contains(&format!(
            "{} is not a block device: --store dev: takes devices",
            file.display()
        )),
        "{err}"
    );
    let gone = d.path().join("sdz");
    let err = receiver_refuses(Path::new(&format!("dev:{}", gone.display())), &state);
    assert!(
        err.contains(&format!(
            "{} does not exist: list existing block devices in --store dev:",
            gone.display()
        )),
        "{err}"
    );
    assert_eq!(lun.hash(), dev_hash);
}

#[test]
fn a_mounted_device_is_refused_at_start() {
    let d = tempfile::tempdir().unwrap();
    let fs_dir = tempfile::tempdir().unwrap();
    let img = fs_dir.path().join("fs.img");
    std::fs::write(&img, vec![0u8; (8 * MIB) as usize]).unwrap();
    mke2fs_at(&img, "ext4", 0, 8 * MIB, None, "busy");
    let lun = Loop::over(fs_dir, &img);
    let mnt = d.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    need("mount", "mount");
    run(Command::new("mount")
        .args(["-o", "ro"])
        .arg(lun.path())
        .arg(&mnt));
    let _m = Mount(mnt.clone());
    let dev_hash = lun.hash();
    let err = receiver_refuses(&lun.store(), &d.path().join("state"));
    let name = lun
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        err.contains(&format!(
            "{} is mounted ({name} on {}): unmount it (umount {}) or list another device in --store dev:",
            lun.path().display(),
            mnt.display(),
            mnt.display()
        )),
        "{err}"
    );
    assert_eq!(lun.hash(), dev_hash);
}

#[test]
fn a_signature_is_refused_without_force_and_overwritten_with_it() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_server(d.path()).image;
    let size = std::fs::metadata(&src).unwrap().len();
    let before = hash_file(&src);
    let fs_dir = tempfile::tempdir().unwrap();
    let img = fs_dir.path().join("lun.img");
    std::fs::write(&img, noise((size + MIB) as usize, 17)).unwrap();
    mke2fs_at(&img, "ext4", 0, 16 * MIB, None, "olddata");
    let lun = Loop::over(fs_dir, &img);
    let dev_hash = lun.hash();
    let state = d.path().join("state");
    let r = Receiver::start(&lun.store(), &state, &[]);
    let (ok, _, err) = r.send("sig", &[&src], &[]);
    assert!(!ok);
    let dev = lun.path().display();
    assert!(
        err.contains(&format!(
            "{dev} is not empty: it carries ext4 labelled \"olddata\" (UUID "
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "maybe someone's data: wipe it (wipefs -a {dev}) or start the receiver with --force to overwrite it"
        )),
        "{err}"
    );
    assert_eq!(lun.hash(), dev_hash);
    nothing_created(&state, "sig");
    drop(r);
    let mut r = Receiver::start(&lun.store(), &state, &["--once", "--force"]);
    let (ok, _, err) = r.send("sig", &[&src], &[]);
    assert!(ok, "{err}\n{}", r.stderr.lock().unwrap());
    assert_eq!(r.wait(Duration::from_secs(30)), Some(0));
    assert_eq!(hash_range(lun.path(), 0, size as usize), before);
    assert!(
        r.stderr
            .lock()
            .unwrap()
            .contains(&format!("{dev}: overwriting ext4 labelled \"olddata\""))
    );
}

#[test]
fn a_device_open_exclusively_elsewhere_is_refused_at_start() {
    use std::os::unix::fs::OpenOptionsExt;
    let d = tempfile::tempdir().unwrap();
    let lun = Loop::noise(8 * MIB, 19);
    let dev_hash = lun.hash();
    // What a mount in another namespace or active swap does to it.
    let claim = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(lun.path())
        .unwrap();
    let err = receiver_refuses(&lun.store(), &d.path().join("state"));
    assert!(
        err.contains(&format!(
            "{} is in use (exclusive open: device busy; active swap, a mount elsewhere or another program): stop that or list another device in --store dev:",
            lun.path().display()
        )),
        "{err}"
    );
    drop(claim);
    assert_eq!(lun.hash(), dev_hash);
}

#[test]
fn the_conversion_names_the_device_in_the_xl_config() {
    let d = tempfile::tempdir().unwrap();
    let src = mbr_server(d.path()).image;
    let size = std::fs::metadata(&src).unwrap().len();
    let lun = Loop::noise(size, 23);
    let state = d.path().join("state");
    let xen = d.path().join("xen");
    std::fs::create_dir_all(&xen).unwrap();
    let xen_arg = xen.display().to_string();
    let mut r = Receiver::start(&lun.store(), &state, &["--once", "--xen-dir", &xen_arg]);
    let (ok, _, err) = r.send("web", &[&src], &[]);
    assert!(ok, "{err}\n{}", r.stderr.lock().unwrap());
    assert_eq!(r.wait(Duration::from_secs(60)), Some(0));
    let cfg = std::fs::read_to_string(xen.join("web.cfg")).unwrap();
    assert!(
        cfg.contains(&format!("target={}", lun.path().display())),
        "{cfg}"
    );
}
