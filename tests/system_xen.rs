//! End-to-end harness checks under QEMU (TCG): the demo source servers boot on
//! their "physical" machine, and hand-converted copies of them boot under a
//! real Xen 4.17 (Debian's hypervisor, Debian's kernel as PV dom0, the xl
//! toolstack). The scripts doing the work live in `tests/e2e/`; these tests
//! drive them and assert the marker line the demo servers print at boot.
//!
//! The conversion here is done by hand, in the test only, to prove the
//! harness; p2xen's own conversion replaces it once it lands (`build/demo`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Sectors of 512 bytes: the demo images' partition tables are in those.
const SECTOR: u64 = 512;

fn e2e(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e").join(script)
}

/// Per-test directory for console logs, kept after the run for inspection.
fn log_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e").join(test);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Runs a tool; returns its stdout. Its stderr goes to the test's output, so
/// the consoles the scripts print on failure show up in `cargo test`.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (see build/apt-packages)"));
    assert!(out.status.success(), "{cmd:?} failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds (or takes from the cache) both demo servers into `dir`.
fn demo_servers(dir: &Path) -> (PathBuf, PathBuf) {
    run(Command::new(e2e("build-demo-servers")).arg(dir));
    let (seed, modern) = (dir.join("seed.img"), dir.join("modern.img"));
    assert!(seed.is_file() && modern.is_file(), "build-demo-servers made no images in {}", dir.display());
    (seed, modern)
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn copy_sparse(from: &Path, to: &Path) {
    run(Command::new("cp").arg("--sparse=always").arg(from).arg(to));
}

/// The line a demo server's /sbin/init prints once fstab is mounted:
/// `P2XEN-MARKER host=H root=DEV mounts=MNT:DEV:TYPE,... swap=DEV,...|none fstab_errors=N`.
#[derive(Debug)]
struct Marker {
    host: String,
    root: String,
    mounts: Vec<String>,
    swap: String,
    fstab_errors: u32,
}

impl Marker {
    fn parse(text: &str) -> Marker {
        let line = text
            .lines()
            .find_map(|l| l.find("P2XEN-MARKER ").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no P2XEN-MARKER line in {text:?}"));
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
                .to_owned()
        };
        Marker {
            host: field("host"),
            root: field("root"),
            mounts: field("mounts").split(',').map(str::to_owned).collect(),
            swap: field("swap"),
            fstab_errors: field("fstab_errors")
                .parse()
                .unwrap_or_else(|e| panic!("fstab_errors in {line:?}: {e}")),
        }
    }
}

/// Boots a demo image the way its source hardware would (IDE or AHCI disk)
/// and returns its marker; asserts the image itself was not written.
fn boot_source(img: &Path, bus: &str, test: &str) -> Marker {
    let before = sha256(img);
    let out = run(Command::new(e2e("boot-source"))
        .args(["--bus", bus, "--timeout", "180", "--disk"])
        .arg(img)
        .arg("--log")
        .arg(log_dir(test)));
    assert_eq!(sha256(img), before, "booting {} changed the image", img.display());
    Marker::parse(&out)
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn demo_seed_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (seed, _) = demo_servers(tmp.path());
    let m = boot_source(&seed, "ide", "source-seed");
    assert_eq!(m.host, "seed");
    // fstab says /dev/hda1: the seed's initramfs offers the old IDE names.
    assert_eq!(m.root, "/dev/sda1");
    assert_eq!(m.mounts, ["/:/dev/sda1:ext3"]);
    assert_eq!(m.swap, "/dev/sda2");
    assert_eq!(m.fstab_errors, 0);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn demo_modern_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, modern) = demo_servers(tmp.path());
    let m = boot_source(&modern, "ahci", "source-modern");
    assert_eq!(m.host, "modern");
    assert_eq!(m.root, "/dev/sda3");
    assert_eq!(m.mounts, ["/:/dev/sda3:ext4", "/boot:/dev/sda2:ext4"]);
    assert_eq!(m.swap, "/dev/sda4");
    assert_eq!(m.fstab_errors, 0);
}

/// Start of partition `number` (1-based) in bytes, from `sfdisk -J`.
fn partition_offset(img: &Path, number: usize) -> u64 {
    let json = run(Command::new("sfdisk").arg("-J").arg(img));
    let v: serde_json::Value = serde_json::from_str(&json).expect("sfdisk -J output is JSON");
    let start = v["partitiontable"]["partitions"]
        .get(number - 1)
        .and_then(|p| p["start"].as_u64())
        .unwrap_or_else(|| panic!("no partition {number} in {}", img.display()));
    start * SECTOR
}

/// The hand fix-up a 2006 admin did, applied to the copy only: the seed's
/// fstab and boot entries name /dev/hdaN, which Xen calls /dev/xvdaN.
/// Written with debugfs into the ext3 inside the image (nothing mounted).
fn hand_fix_seed(copy: &Path, work: &Path) {
    let fs = format!("{}?offset={}", copy.display(), partition_offset(copy, 1));
    let mut cmds = String::new();
    for file in ["/etc/fstab", "/boot/grub/grub.cfg", "/boot/grub/menu.lst"] {
        let text = run(Command::new("debugfs").args(["-R", &format!("cat {file}"), &fs]));
        assert!(text.contains("/dev/hda1"), "{file} in the seed names no /dev/hda1: {text:?}");
        let local = work.join(file.rsplit('/').next().unwrap_or("file"));
        std::fs::write(&local, text.replace("/dev/hda", "/dev/xvda")).expect("write fixed file");
        cmds.push_str(&format!("rm {file}\nwrite {} {file}\n", local.display()));
    }
    let script = work.join("debugfs.cmds");
    std::fs::write(&script, cmds).expect("write debugfs script");
    run(Command::new("debugfs").args(["-w", "-f"]).arg(&script).arg(&fs));
    let fstab = run(Command::new("debugfs").args(["-R", "cat /etc/fstab", &fs]));
    assert!(fstab.contains("/dev/xvda1") && !fstab.contains("/dev/hda1"), "fix-up not written: {fstab}");
}

/// An xl config as p2xen writes one (PV, pvgrub2 boots the guest's own
/// kernel, one disk, a vif on xenbr0); the path is where a receiver stores it.
fn hand_cfg(name: &str) -> String {
    format!(
        "name = \"{name}\"\ntype = \"pv\"\nmemory = 256\nvcpus = 1\n\
         kernel = \"/usr/lib/grub-xen/grub-x86_64-xen.bin\"\n\
         disk = [ \"file:/var/lib/p2xen/{name}/disk0.img,xvda,w\" ]\n\
         vif = [ \"mac=00:16:3e:00:00:01,bridge=xenbr0\" ]\n\
         on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n"
    )
}

fn boot_under_xen(name: &str, disk: &Path, work: &Path) -> Marker {
    let cfg = work.join(format!("{name}.cfg"));
    std::fs::write(&cfg, hand_cfg(name)).expect("write xl cfg");
    let out = run(Command::new(e2e("run-xen-guest"))
        .arg("--cfg")
        .arg(&cfg)
        .arg("--disk")
        .arg(disk)
        .args(["--expect", "P2XEN-MARKER", "--timeout", "400", "--log"])
        .arg(log_dir(&format!("xen-{name}"))));
    Marker::parse(&out)
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hand_converted_seed_boots_under_xen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (seed, _) = demo_servers(tmp.path());
    let copy = tmp.path().join("disk0.img");
    copy_sparse(&seed, &copy);
    hand_fix_seed(&copy, tmp.path());
    let m = boot_under_xen("seed", &copy, tmp.path());
    assert_eq!(m.host, "seed");
    assert_eq!(m.root, "/dev/xvda1");
    assert_eq!(m.mounts, ["/:/dev/xvda1:ext3"]);
    assert_eq!(m.swap, "/dev/xvda2");
    assert_eq!(m.fstab_errors, 0);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn modern_copy_boots_under_xen_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, modern) = demo_servers(tmp.path());
    // fstab and root= use UUID=: the copy needs no fix-up at all.
    let copy = tmp.path().join("disk0.img");
    copy_sparse(&modern, &copy);
    let m = boot_under_xen("modern", &copy, tmp.path());
    assert_eq!(m.host, "modern");
    assert_eq!(m.root, "/dev/xvda3");
    assert_eq!(m.mounts, ["/:/dev/xvda3:ext4", "/boot:/dev/xvda2:ext4"]);
    assert_eq!(m.swap, "/dev/xvda4");
    assert_eq!(m.fstab_errors, 0);
}
