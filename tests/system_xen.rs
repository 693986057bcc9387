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

fn e2e(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(script)
}

/// Per-test directory for console logs, kept after the run for inspection.
fn log_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(test);
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
    assert!(
        seed.is_file() && modern.is_file(),
        "build-demo-servers made no images in {}",
        dir.display()
    );
    (seed, modern)
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
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
    assert_eq!(
        sha256(img),
        before,
        "booting {} changed the image",
        img.display()
    );
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

/// Converts a copy of a demo image by hand (tests/e2e/hand-convert: device
/// names in fstab/grub to xvd, an xl config) and boots it under Xen.
fn boot_under_xen(name: &str, img: &Path, work: &Path) -> Marker {
    let before = sha256(img);
    let out_dir = work.join(format!("{name}-converted"));
    let cfg = run(Command::new(e2e("hand-convert"))
        .args(["--name", name, "--disk"])
        .arg(img)
        .arg("--out")
        .arg(&out_dir));
    assert_eq!(sha256(img), before, "hand-convert changed the demo image");
    let out = run(Command::new(e2e("run-xen-guest"))
        .arg("--cfg")
        .arg(cfg.trim())
        .arg("--disk")
        .arg(out_dir.join("disk0.img"))
        .args(["--expect", "P2XEN-MARKER", "--timeout", "400", "--log"])
        .arg(log_dir(&format!("xen-{name}"))));
    Marker::parse(&out)
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hand_converted_seed_boots_under_xen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (seed, _) = demo_servers(tmp.path());
    // Its fstab and grub.cfg say /dev/hda1: hand-convert renames to xvda.
    let m = boot_under_xen("seed", &seed, tmp.path());
    assert_eq!(m.host, "seed");
    assert_eq!(m.root, "/dev/xvda1");
    assert_eq!(m.mounts, ["/:/dev/xvda1:ext3"]);
    assert_eq!(m.swap, "/dev/xvda2");
    assert_eq!(m.fstab_errors, 0);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hand_converted_modern_boots_under_xen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, modern) = demo_servers(tmp.path());
    // fstab and root= use UUID=: hand-convert finds nothing to rename.
    let m = boot_under_xen("modern", &modern, tmp.path());
    assert_eq!(m.host, "modern");
    assert_eq!(m.root, "/dev/xvda3");
    assert_eq!(m.mounts, ["/:/dev/xvda3:ext4", "/boot:/dev/xvda2:ext4"]);
    assert_eq!(m.swap, "/dev/xvda4");
    assert_eq!(m.fstab_errors, 0);
}

/// The harness must tell a broken migration from a good one: the seed copied
/// as it is (fstab and root= still /dev/hda1) cannot find its root under
/// Xen, so run-xen-guest fails and the guest's console says why.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn unconverted_seed_fails_under_xen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (seed, _) = demo_servers(tmp.path());
    let out_dir = tmp.path().join("seed-unconverted");
    let cfg = run(Command::new(e2e("hand-convert"))
        .args(["--no-fixup", "--name", "seed", "--disk"])
        .arg(&seed)
        .arg("--out")
        .arg(&out_dir));
    let logs = log_dir("xen-seed-unconverted");
    let status = Command::new(e2e("run-xen-guest"))
        .arg("--cfg")
        .arg(cfg.trim())
        .arg("--disk")
        .arg(out_dir.join("disk0.img"))
        .args(["--expect", "P2XEN-MARKER", "--timeout", "400", "--log"])
        .arg(&logs)
        .status()
        .expect("start run-xen-guest");
    assert_eq!(
        status.code(),
        Some(1),
        "run-xen-guest must fail without a marker"
    );
    let console = std::fs::read_to_string(logs.join("guest-seed.log")).expect("guest console log");
    assert!(
        console.contains("P2XEN-INITRD-ERROR cannot mount root=/dev/hda1"),
        "guest console: {console}"
    );
}
