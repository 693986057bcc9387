//! End-to-end harness checks under QEMU (TCG): the demo source servers boot on
//! their "physical" machine, and hand-converted copies of them boot under a
//! real Xen 4.17 (Debian's hypervisor, Debian's kernel as PV dom0, the xl
//! toolstack). The scripts doing the work live in `tests/e2e/`; these tests
//! drive them and assert the marker line the demo servers print at boot.
//!
//! The full path (`*_migrated_by_p2xen_boots_under_xen`): the live image
//! (`build/live`) boots in QEMU as the source server with the demo disk
//! attached read-only and sends it to `p2xen receive --once` on 127.0.0.1;
//! the receiver verifies the copy and converts it; the xl config it wrote
//! boots under Xen with only its paths changed (run-xen-guest).
//! The hand-converted tests prove the harness on its own.
//!
//! The LVM store (`seed_received_into_lvm_on_dom0_boots_under_xen`): sender
//! and receiver run inside the Xen host's dom0 with `--store lvm:VG` on a PV
//! full of garbage (tests/e2e/xen-host.d/lvm-store), and the guest boots from
//! its LV.

mod common;

use common::qemu::{Arch, DiskBus};
use common::receiver::Receiver;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Builds (or takes from the cache) the demo servers into `dir`; returns
/// the image of demo server `name` (seed, modern, hostonly).
fn demo_server(dir: &Path, name: &str) -> PathBuf {
    run(Command::new(e2e("build-demo-servers")).arg(dir));
    let img = dir.join(format!("{name}.img"));
    assert!(
        img.is_file(),
        "build-demo-servers made no {} in {}",
        img.display(),
        dir.display()
    );
    img
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The line a demo server's /sbin/init prints once fstab is mounted:
/// `P2XEN-MARKER host=H root=DEV mounts=MNT:DEV:TYPE,... swap=DEV,...|none fstab_errors=N [home=TEXT]`
/// (home= only where /home/p2xen-home exists: the btrfs server's @home;
/// `net=IF:ADDR/LEN,... ping=GW:ok|fail` only where the server has
/// /etc/init.d/networking: the netstatic server).
#[derive(Debug, PartialEq)]
struct Marker {
    host: String,
    root: String,
    mounts: Vec<String>,
    swap: String,
    fstab_errors: u32,
    home: Option<String>,
    net: Option<String>,
    ping: Option<String>,
}

impl Marker {
    /// What the seed prints when its disk is `disk` (sda on its own IDE
    /// hardware, xvda under Xen): root on 1, swap on 2, no fstab errors.
    fn seed(disk: &str) -> Marker {
        Marker {
            host: "seed".into(),
            root: format!("/dev/{disk}1"),
            mounts: vec![format!("/:/dev/{disk}1:ext3")],
            swap: format!("/dev/{disk}2"),
            fstab_errors: 0,
            home: None,
            net: None,
            ping: None,
        }
    }

    /// The 32-bit server: the seed's layout under its own name.
    fn i386(disk: &str) -> Marker {
        Marker {
            host: "i386".into(),
            ..Marker::seed(disk)
        }
    }

    /// What the modern server prints: /boot on 2, root on 3, swap on 4.
    fn modern(disk: &str) -> Marker {
        Marker::gpt("modern", disk)
    }

    /// The hostonly server: the modern layout under another name.
    fn hostonly(disk: &str) -> Marker {
        Marker::gpt("hostonly", disk)
    }

    fn gpt(host: &str, disk: &str) -> Marker {
        Marker {
            host: host.into(),
            root: format!("/dev/{disk}3"),
            mounts: vec![
                format!("/:/dev/{disk}3:ext4"),
                format!("/boot:/dev/{disk}2:ext4"),
            ],
            swap: format!("/dev/{disk}4"),
            fstab_errors: 0,
            home: None,
            net: None,
            ping: None,
        }
    }

    /// The btrfs server: root subvolume @ and /home subvolume @home of
    /// partition 3 (whose file says so), /boot on 2, swap on 4.
    fn btrfs(disk: &str) -> Marker {
        Marker {
            host: "btrfs".into(),
            root: format!("/dev/{disk}3"),
            mounts: vec![
                format!("/:/dev/{disk}3:btrfs"),
                format!("/home:/dev/{disk}3:btrfs"),
                format!("/boot:/dev/{disk}2:ext4"),
            ],
            swap: format!("/dev/{disk}4"),
            fstab_errors: 0,
            home: Some("subvol-@home".into()),
            net: None,
            ping: None,
        }
    }

    /// The LVM server: root and swap LVs of VG vgdemo, /boot on 2.
    fn lvm(disk: &str) -> Marker {
        Marker {
            host: "lvm".into(),
            root: "/dev/mapper/vgdemo-root".into(),
            mounts: vec![
                "/:/dev/mapper/vgdemo-root:xfs".into(),
                format!("/boot:/dev/{disk}2:ext4"),
            ],
            swap: "/dev/mapper/vgdemo-swap".into(),
            fstab_errors: 0,
            home: None,
            net: None,
            ping: None,
        }
    }

    /// The UEFI server: root and swap LVs of VG vguefi, /boot on 2, the
    /// ESP on /boot/efi.
    fn uefi(disk: &str) -> Marker {
        Marker {
            host: "uefi".into(),
            root: "/dev/mapper/vguefi-root".into(),
            mounts: vec![
                "/:/dev/mapper/vguefi-root:ext4".into(),
                format!("/boot:/dev/{disk}2:ext4"),
                format!("/boot/efi:/dev/{disk}1:vfat"),
            ],
            swap: "/dev/mapper/vguefi-swap".into(),
            ..Marker::lvm(disk)
        }
    }

    /// The md RAID1 server once its arrays are flattened: root (md0) on
    /// partition 1, swap (md1) on 2, of its first disk.
    fn mdraid(disk: &str) -> Marker {
        Marker {
            host: "mdraid".into(),
            mounts: vec![format!("/:/dev/{disk}1:ext4")],
            ..Marker::seed(disk)
        }
    }

    fn parse(text: &str) -> Marker {
        let line = text
            .lines()
            .find_map(|l| l.find("P2XEN-MARKER ").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no P2XEN-MARKER line in {text:?}"));
        let optional = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
        };
        let field = |key: &str| optional(key).unwrap_or_else(|| panic!("no {key}= in {line:?}"));
        Marker {
            host: field("host"),
            root: field("root"),
            mounts: field("mounts").split(',').map(str::to_owned).collect(),
            swap: field("swap"),
            fstab_errors: field("fstab_errors")
                .parse()
                .unwrap_or_else(|e| panic!("fstab_errors in {line:?}: {e}")),
            home: optional("home"),
            net: optional("net"),
            ping: optional("ping"),
        }
    }
}

/// Boots a demo image the way its source hardware would (IDE or AHCI disk)
/// and returns its marker; asserts the image itself was not written.
fn boot_source(img: &Path, bus: &str, test: &str) -> Marker {
    boot_source_on("amd64", "bios", img, bus, test)
}

/// [`boot_source`] on a PC of `arch` (i386: qemu-system-i386, no long mode)
/// with `firmware` (bios: the kernel taken out of the image; uefi: OVMF
/// boots the image's own loader).
fn boot_source_on(arch: &str, firmware: &str, img: &Path, bus: &str, test: &str) -> Marker {
    let before = sha256(img);
    let out = run(Command::new(e2e("boot-source"))
        .args(["--arch", arch, "--firmware", firmware, "--bus", bus])
        .args(["--timeout", "180", "--disk"])
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
    let seed = demo_server(tmp.path(), "seed");
    let m = boot_source(&seed, "ide", "source-seed");
    // fstab says /dev/hda1: the seed's initramfs offers the old IDE names.
    assert_eq!(m, Marker::seed("sda"));
}

/// The 32-bit server on a Core Duo (qemu-system-i386): its 686 kernel
/// from grub legacy's menu.lst, busybox init from /etc/inittab.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn demo_i386_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = demo_server(tmp.path(), "i386");
    // Its userland is 32-bit (ELFCLASS32), the point of this server.
    let busybox = tmp.path().join("busybox");
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /bin/busybox {}", busybox.display()))
        .arg(format!("{}?offset={}", img.display(), 2048 * 512)));
    let elf = std::fs::read(&busybox).expect("busybox dumped from the i386 image");
    assert_eq!(
        (&elf[..4], elf[4], elf[18]),
        (&b"\x7fELF"[..], 1, 3),
        "not an i386 ELF"
    );
    let m = boot_source_on("i386", "bios", &img, "ide", "source-i386");
    assert_eq!(m, Marker::i386("sda"));
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn demo_modern_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let modern = demo_server(tmp.path(), "modern");
    let m = boot_source(&modern, "ahci", "source-modern");
    assert_eq!(m, Marker::modern("sda"));
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
    let seed = demo_server(tmp.path(), "seed");
    // Its fstab and grub.cfg say /dev/hda1: hand-convert renames to xvda.
    let m = boot_under_xen("seed", &seed, tmp.path());
    assert_eq!(m, Marker::seed("xvda"));
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hand_converted_modern_boots_under_xen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let modern = demo_server(tmp.path(), "modern");
    // fstab and root= use UUID=: hand-convert finds nothing to rename.
    let m = boot_under_xen("modern", &modern, tmp.path());
    assert_eq!(m, Marker::modern("xvda"));
}

/// The harness must tell a broken migration from a good one: the seed copied
/// as it is (fstab and root= still /dev/hda1) cannot find its root under
/// Xen, so run-xen-guest fails and the guest's console says why.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn unconverted_seed_fails_under_xen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = demo_server(tmp.path(), "seed");
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

/// The whole migration of demo server `name`: live image in QEMU with the
/// demo disk on `bus` (read-only) sends to `p2xen receive --once`, which
/// converts; then the guest boots under Xen from the store with the config
/// p2xen wrote (run-xen-guest changes its paths only). Returns the marker
/// printed inside Xen.
fn migrate_and_boot(name: &str, bus: DiskBus, extra: &str) -> Marker {
    migrate_and_boot_with_report(name, bus, extra).0
}

/// What a migration runs beyond the defaults (the amd64 live image, the
/// receiver without conversion options).
#[derive(Clone, Copy, Default)]
struct Setup {
    /// The 32-bit live image (out/i386) on a Core Duo.
    i386: bool,
    /// `p2xen receive --guest-kernel` with build-demo-servers' xen-kernel/
    /// (the amd64 kernel the test dom0 runs, an initrd and its modules).
    supplied_kernel: bool,
    /// The server's further disks (build-demo-servers' images by name),
    /// attached after its first on the same bus, in this order.
    more_disks: &'static [&'static str],
    /// The live image booted by OVMF (its kernel loaded by the firmware
    /// through QEMU's -kernel), so the live system sees /sys/firmware/efi
    /// as on a UEFI server.
    uefi: bool,
}

/// [`migrate_and_boot`], also returning the store's report.json.
fn migrate_and_boot_with_report(
    name: &str,
    bus: DiskBus,
    extra: &str,
) -> (Marker, serde_json::Value) {
    migrate_and_boot_checked(name, bus, extra, Setup::default(), |_, _| {})
}

/// [`migrate_and_boot_with_report`], also running `check` on the source
/// images (the server's first disk first) and the guest's store directory
/// after the boot under Xen (before the temporary directory holding them
/// goes).
fn migrate_and_boot_checked(
    name: &str,
    bus: DiskBus,
    extra: &str,
    setup: Setup,
    check: impl FnOnce(&[PathBuf], &Path),
) -> (Marker, serde_json::Value) {
    let tmp = tempfile::tempdir().expect("tempdir");
    demo_server(tmp.path(), name);
    // IDE and AHCI cannot be read-only in QEMU: the VM gets copies, whose
    // hashes must not change (the live system sets them BLKROSET, never
    // writes).
    let imgs: Vec<PathBuf> = std::iter::once(name)
        .chain(setup.more_disks.iter().copied())
        .map(|n| {
            let source = tmp.path().join(format!("{n}.img"));
            assert!(source.is_file(), "build-demo-servers made no {n}.img");
            let img = tmp.path().join(format!("{n}-source.img"));
            run(Command::new("cp")
                .arg("--sparse=always")
                .arg(&source)
                .arg(&img));
            img
        })
        .collect();
    let before: Vec<String> = imgs.iter().map(|i| sha256(i)).collect();
    let logs = log_dir(&format!("migrate-{name}{}", extra.replace([' ', '='], "-")));

    let xk = tmp.path().join("xen-kernel");
    let kv = std::fs::read_dir(xk.join("modules"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_default();
    let supplied = [
        format!(
            "--guest-kernel={}",
            xk.join(format!("vmlinuz-{kv}")).display()
        ),
        format!(
            "--guest-initrd={}",
            xk.join(format!("initrd.img-{kv}")).display()
        ),
        format!("--guest-modules={}", xk.join("modules").join(&kv).display()),
    ];
    let receiver_args: Vec<&str> = if setup.supplied_kernel {
        supplied.iter().map(String::as_str).collect()
    } else {
        Vec::new()
    };
    let mut receiver = Receiver::start(tmp.path(), &receiver_args);
    let params = format!(
        // fail=poweroff: a failed migration ends the VM now instead of
        // waiting in the rescue shell for the hard timeout.
        "quiet {} p2xen.name={name} p2xen.fail=poweroff {extra}",
        receiver.guest_params()
    );
    let arch = if setup.i386 { Arch::I386 } else { Arch::Amd64 };
    let mut live = arch.live_vm().append(&params);
    if setup.uefi {
        let vars = tmp.path().join("OVMF_VARS_4M.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap_or_else(|e| {
            panic!("/usr/share/OVMF/OVMF_VARS_4M.fd: {e} (apt-get install ovmf)")
        });
        live = live
            .arg("-drive")
            .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
            .arg("-drive")
            .arg(&format!("if=pflash,format=raw,file={}", vars.display()));
    }
    let vm = imgs
        .iter()
        .fold(live, |vm, img| vm.disk(img, bus, false))
        .nic("e1000")
        .hard_timeout(Duration::from_secs(900))
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let status = vm.wait_exit(Duration::from_secs(900));
    std::fs::write(logs.join("live.log"), vm.log()).expect("live console log");
    if let Some(at) = receiver.first_contact() {
        eprintln!(
            "{name}: first bytes at the receiver {:.1} s after QEMU started; VM off after {:.1} s",
            at.duration_since(started).as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    assert!(
        status.success(),
        "live VM: {status} (serial log printed below)"
    );
    let received = receiver.wait(Duration::from_secs(120));
    assert!(
        received.success(),
        "p2xen receive --once: {received}; live VM ({status}):\n{}",
        vm.log()
    );
    drop(vm);
    for (img, before) in imgs.iter().zip(&before) {
        assert_eq!(
            &sha256(img),
            before,
            "the migration changed the source image {}",
            img.display()
        );
    }

    let cfg = receiver.xen_dir.join(format!("{name}.cfg"));
    // The images in the order of the config's disk list: run-xen-guest maps
    // them to dom0's /dev/vda, /dev/vdb, ... (layout=partitions: one a partition).
    let text = std::fs::read_to_string(&cfg)
        .unwrap_or_else(|e| panic!("p2xen wrote no {}: {e}", cfg.display()));
    let mut disks: Vec<PathBuf> = text
        .split(['\'', '"', ','])
        .filter_map(|w| w.trim().strip_prefix("target="))
        .map(PathBuf::from)
        .collect();
    assert!(
        !disks.is_empty(),
        "no disk target in {}:\n{text}",
        cfg.display()
    );
    let mut cmd = Command::new(e2e("run-xen-guest"));
    cmd.arg("--cfg").arg(&cfg);
    for d in disks.drain(..) {
        cmd.arg("--disk").arg(d);
    }
    // Direct boot (no pvgrub2): the kernel and initrd p2xen extracted into
    // the store go into dom0 too.
    let store = &receiver.store;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if ["kernel", "ramdisk"].contains(&key.trim()) && Path::new(value).starts_with(store) {
            cmd.arg("--file").arg(value);
        }
    }
    cmd.args(["--expect", "P2XEN-MARKER", "--timeout", "400", "--log"])
        .arg(logs.join("xen"));
    let marker = Marker::parse(&run(&mut cmd));
    let report_path = store.join(name).join("report.json");
    let report = std::fs::read(&report_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no readable {}", report_path.display()));
    check(&imgs, &store.join(name));
    (marker, report)
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn modern_migrated_by_p2xen_boots_under_xen() {
    let m = migrate_and_boot("modern", DiskBus::Ahci, "");
    assert_eq!(m, Marker::modern("xvda"));
}

/// A host-only initrd (initramfs-tools style, no xen-blkfront): it boots
/// its own hardware, and under Xen only because the conversion appended
/// the guest's xen-blkfront to it.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hostonly_initrd_server_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = demo_server(tmp.path(), "hostonly");
    assert_eq!(
        boot_source(&img, "ahci", "source-hostonly"),
        Marker::hostonly("sda")
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hostonly_initrd_server_migrated_by_p2xen_boots_under_xen() {
    let (m, report) = migrate_and_boot_with_report("hostonly", DiskBus::Ahci, "");
    assert_eq!(m, Marker::hostonly("xvda"));
    let conv = &report["conversion"];
    assert_eq!(conv["kernels"][0]["blkfront"], "added_to_initrd", "{conv}");
    let appended = conv["fixups"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["action"] == "append"))
        .unwrap_or_else(|| panic!("no initrd append in {conv}"));
    let what = appended["diff"].as_str().unwrap_or_default();
    assert!(
        what.contains("kernel/drivers/block/xen-blkfront.ko") && what.contains("conf/modules"),
        "{what}"
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn btrfs_server_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = demo_server(tmp.path(), "btrfs");
    assert_eq!(
        boot_source(&img, "ahci", "source-btrfs"),
        Marker::btrfs("sda")
    );
}

/// Partition `number` (1-based) of a GPT/MBR image copied out to `out`,
/// for the Btrfs tools, which read a file but not a window of one.
fn partition_file(img: &Path, number: usize, out: &Path) -> PathBuf {
    let table: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("-J").arg(img)))
            .expect("sfdisk -J output");
    let p = &table["partitiontable"]["partitions"][number - 1];
    let (start, size) = (
        p["start"].as_u64().expect("start"),
        p["size"].as_u64().expect("size"),
    );
    run(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=512", "conv=sparse", "status=none"])
        .arg(format!("skip={start}"))
        .arg(format!("count={size}")));
    out.to_path_buf()
}

/// Root on Btrfs subvolume @ and /home on @home, the top level the default
/// subvolume (Ubuntu's and SUSE's layout): the conversion reads and edits
/// the fstab inside @ and the guest under Xen mounts both subvolumes.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn btrfs_subvolume_server_migrated_by_p2xen_boots_under_xen() {
    let started = Instant::now();
    let mut used = 0u64;
    let mut check_out = String::new();
    let setup = Setup::default();
    let (m, report) = migrate_and_boot_checked("btrfs", DiskBus::Ahci, "", setup, |src, store| {
        let part = partition_file(&src[0], 3, &store.join("source-p3.img"));
        let sup = run(Command::new("btrfs")
            .args(["inspect-internal", "dump-super"])
            .arg(&part));
        used = sup
            .lines()
            .find_map(|l| l.strip_prefix("bytes_used"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no bytes_used in {sup}"));
        std::fs::remove_file(&part).expect("rm source-p3.img");
        let copy = partition_file(&store.join("disk0.img"), 3, &store.join("copy-p3.img"));
        let out = Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(&copy)
            .output()
            .expect("btrfs check");
        // The verdict goes to stdout, the steps to stderr.
        check_out = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "btrfs check of the copy: {check_out}");
        std::fs::remove_file(&copy).expect("rm copy-p3.img");
    });
    assert_eq!(m, Marker::btrfs("xvda"));
    assert!(check_out.contains("no error found"), "{check_out}");
    let disk = &report["disks"][0];
    eprintln!(
        "btrfs server: {} of {} bytes sent (plan {}), Btrfs bytes_used {used}; {:.0} s in all",
        disk["committed_bytes"],
        disk["size_bytes"],
        disk["plan_bytes"],
        started.elapsed().as_secs_f64()
    );
}

/// The LVM server boots its own hardware: its host-only initramfs (no
/// xen-blkfront) activates root and swap with Debian's lvm2.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn lvm_xfs_server_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = demo_server(tmp.path(), "lvm");
    assert_eq!(boot_source(&img, "ahci", "source-lvm"), Marker::lvm("sda"));
}

/// Where LV `lv` of the PV on partition `part` of `img` lies (byte offset
/// in the image, size), by p2xen's own reading of the PV's metadata; the
/// test asserts the LV is one run of the PV, as lvcreate made it.
fn lv_window(img: &Path, part: usize, lv: &str) -> (u64, u64) {
    use p2xen::source::device::{Device, ReadAt, Window};
    use p2xen::source::filesystems::lvm::{self, LvMap};
    let table: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("-J").arg(img)))
            .expect("sfdisk -J output");
    let p = &table["partitiontable"]["partitions"][part - 1];
    let (start, size) = (
        p["start"].as_u64().expect("start") * 512,
        p["size"].as_u64().expect("size") * 512,
    );
    let dev = Device::open(img).unwrap_or_else(|e| panic!("{e}"));
    let win = Window::new(&dev, start, size);
    let pv = lvm::read(&win)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no PV on partition {part} of {}", img.display()));
    let vg = pv.vg.as_ref().expect("the PV's VG");
    let me = pv.in_vg().expect("PV in VG").expect("PV in VG");
    let l = vg
        .logical_volumes
        .iter()
        .find(|l| l.name == lv)
        .unwrap_or_else(|| panic!("no LV {lv} in {vg:?}"));
    let map = LvMap::new(vg, l, me, win.size()).unwrap_or_else(|e| panic!("{e}"));
    let (at, len) = map.contiguous().expect("a linear LV");
    (start + at, len)
}

/// A read-only loop device over a window of an image, detached on drop.
struct RoLoop(String);

impl RoLoop {
    fn new(img: &Path, (offset, size): (u64, u64)) -> RoLoop {
        let dev = run(Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--offset"])
            .arg(offset.to_string())
            .arg("--sizelimit")
            .arg(size.to_string())
            .arg(img));
        RoLoop(dev.trim().to_owned())
    }
}

impl Drop for RoLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Issue 12 (a), the RHEL layout: XFS root and swap on LVs of VG vgdemo,
/// /boot on a partition, a host-only initramfs. The live image sends only
/// the LVs' used blocks; the conversion opens the root LV as a window of
/// the copy (no VG activated on dom0), leaves fstab's /dev/mapper names
/// (LVM stays inside the guest's disk) and appends xen-blkfront to the
/// initramfs; under Xen the guest activates its LVs and mounts them.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn lvm_xfs_server_migrated_by_p2xen_boots_under_xen() {
    let started = Instant::now();
    let (mut used, mut repair) = (0u64, String::new());
    let setup = Setup::default();
    let (m, report) = migrate_and_boot_checked("lvm", DiskBus::Ahci, "", setup, |srcs, store| {
        let src = &srcs[0];
        // What the source's filesystems use: the XFS root's allocated
        // blocks (xfs_db), /boot's (dumpe2fs), the swap header.
        let root = RoLoop::new(src, lv_window(src, 3, "root"));
        let sb = run(Command::new("xfs_db")
            .args(["-r", "-c", "sb 0", "-c", "p dblocks fdblocks blocksize"])
            .arg(&root.0));
        let field = |k: &str| -> u64 {
            sb.lines()
                .find_map(|l| {
                    l.strip_prefix(k)?
                        .trim()
                        .strip_prefix('=')?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no {k} in {sb}"))
        };
        let xfs_used = (field("dblocks") - field("fdblocks")) * field("blocksize");
        drop(root);
        let boot = partition_file(src, 2, &store.join("source-p2.img"));
        let boot_used = ext_used(&boot);
        std::fs::remove_file(&boot).expect("rm source-p2.img");
        used = xfs_used + boot_used + 4096;
        eprintln!("lvm server: XFS root uses {xfs_used} bytes, /boot {boot_used}");
        // The copy's root LV, where the conversion found it.
        let copy = RoLoop::new(&store.join("disk0.img"), lv_window(src, 3, "root"));
        let out = Command::new("xfs_repair")
            .arg("-n")
            .arg(&copy.0)
            .output()
            .expect("xfs_repair");
        repair = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "xfs_repair -n of the copy's root LV: {repair}"
        );
    });
    assert_eq!(m, Marker::lvm("xvda"));
    assert!(repair.contains("No modify flag set"), "{repair}");
    let conv = &report["conversion"];
    assert_eq!(conv["root_device"], "/dev/mapper/vgdemo-root", "{conv}");
    assert_eq!(conv["kernels"][0]["blkfront"], "added_to_initrd", "{conv}");
    // Metadata sent whole: the first MiB (protective MBR, GPT, the gap
    // before partition 1), the 1 MiB BIOS boot partition, the PV's first
    // MiB (label, metadata area up to pe_start); the XFS log is counted as
    // used already.
    assert_sent_within("lvm server", &report, used, 3 * 1024 * 1024, started);
}

/// The report's first fix-up whose file satisfies `file` (panics naming
/// `what` where there is none).
fn fixup_on<'a>(
    conv: &'a serde_json::Value,
    what: &str,
    file: impl Fn(&str) -> bool,
) -> &'a serde_json::Value {
    conv["fixups"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["file"].as_str().is_some_and(&file)))
        .unwrap_or_else(|| panic!("no {what} fix-up in {conv}"))
}

/// The first disk's bytes sent (report.json) stay below `used` +
/// `metadata` + 2 MiB of margin for the rest (the backup GPT, ext4
/// metadata the used map keeps); prints the figures.
fn assert_sent_within(
    what: &str,
    report: &serde_json::Value,
    used: u64,
    metadata: u64,
    started: Instant,
) {
    let disk = &report["disks"][0];
    let sent = disk["committed_bytes"].as_u64().expect("committed_bytes");
    let limit = used + metadata + 2 * 1024 * 1024;
    eprintln!(
        "{what}: {sent} of {} bytes sent (plan {}), used {used}, limit {limit}; {:.0} s in all",
        disk["size_bytes"],
        disk["plan_bytes"],
        started.elapsed().as_secs_f64()
    );
    assert!(sent < limit, "{what}: {sent} bytes sent, used {used}");
}

/// The UEFI server boots its own hardware: OVMF runs grub-efi from the
/// ESP (its NVRAM entry stood in for by the ESP's startup.nsh), whose stub
/// grub.cfg finds /boot by UUID; the host-only initramfs activates the LVs.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn uefi_lvm_server_boots_on_its_source_hardware() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = demo_server(tmp.path(), "uefi");
    let m = boot_source_on("amd64", "uefi", &img, "ahci", "source-uefi");
    assert_eq!(m, Marker::uefi("sda"));
}

/// Used bytes of the ext2/3/4 filesystem in `dev` (dumpe2fs -h).
fn ext_used(dev: &Path) -> u64 {
    let d = run(Command::new("dumpe2fs").arg("-h").arg(dev));
    let ext = |k: &str| -> u64 {
        d.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {d}"))
    };
    (ext("Block count:") - ext("Free blocks:")) * ext("Block size:")
}

/// `tool args... dev` succeeds; returns its output (for the message).
fn check_clean(tool: &str, args: &[&str], dev: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(dev)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{tool} {args:?} {}: {text}",
        dev.display()
    );
    text
}

/// Issue 12 (d): a UEFI server (GPT, ESP with grub-efi and Debian's stub
/// grub.cfg, ext4 /boot, ext4 root and swap on LVs of VG vguefi). The live
/// image sends only used blocks (the ESP's from its FAT); the conversion
/// follows the ESP's stub to /boot's grub.cfg for pvgrub2, writes the
/// fallback \EFI\BOOT\BOOTX64.EFI into the copy's ESP and reports UEFI;
/// under Xen the guest mounts its LVs, /boot and the ESP.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn uefi_lvm_server_migrated_by_p2xen_boots_under_xen() {
    let started = Instant::now();
    let mut used = 0u64;
    let setup = Setup {
        uefi: true,
        ..Setup::default()
    };
    let (m, report) = migrate_and_boot_checked("uefi", DiskBus::Ahci, "", setup, |srcs, store| {
        let src = &srcs[0];
        let root = RoLoop::new(src, lv_window(src, 3, "root"));
        let root_used = ext_used(Path::new(&root.0));
        drop(root);
        let boot = partition_file(src, 2, &store.join("source-p2.img"));
        let boot_used = ext_used(&boot);
        std::fs::remove_file(&boot).expect("rm source-p2.img");
        // The ESP's used clusters, as fsck.fat counts them.
        let esp = partition_file(src, 1, &store.join("source-p1.img"));
        let v = check_clean("fsck.vfat", &["-n", "-v"], &esp);
        std::fs::remove_file(&esp).expect("rm source-p1.img");
        // "N bytes per cluster" and "IMG: F files, USED/TOTAL clusters".
        let cluster: Option<u64> = v.lines().find_map(|l| {
            l.trim()
                .strip_suffix("bytes per cluster")?
                .trim()
                .parse()
                .ok()
        });
        let clusters: Option<u64> = v.lines().find_map(|l| {
            let (_, rest) = l.rsplit_once(" files, ")?;
            rest.split('/').next()?.parse().ok()
        });
        let esp_used = match (cluster, clusters) {
            (Some(c), Some(n)) => c * n,
            _ => panic!("no cluster size or count in fsck.vfat -v: {v}"),
        };
        used = root_used + boot_used + esp_used + 4096;
        eprintln!(
            "uefi server: ext4 root LV uses {root_used} bytes, /boot {boot_used}, ESP {esp_used}"
        );
        // The copy: root LV, /boot and the ESP (with the fallback loader).
        let copy = store.join("disk0.img");
        let root = RoLoop::new(&copy, lv_window(src, 3, "root"));
        check_clean("e2fsck", &["-fn"], Path::new(&root.0));
        drop(root);
        let boot = partition_file(&copy, 2, &store.join("copy-p2.img"));
        check_clean("e2fsck", &["-fn"], &boot);
        std::fs::remove_file(&boot).expect("rm copy-p2.img");
        let esp = partition_file(&copy, 1, &store.join("copy-p1.img"));
        check_clean("fsck.vfat", &["-n"], &esp);
        let dir = run(Command::new("mdir")
            .args(["-b", "-i"])
            .arg(&esp)
            .arg("::/EFI/BOOT"));
        std::fs::remove_file(&esp).expect("rm copy-p1.img");
        assert!(dir.to_ascii_uppercase().contains("BOOTX64.EFI"), "{dir}");
    });
    assert_eq!(m, Marker::uefi("xvda"));
    let conv = &report["conversion"];
    assert_eq!(conv["firmware"], "uefi", "{conv}");
    assert_eq!(conv["root_device"], "/dev/mapper/vguefi-root", "{conv}");
    let fallback = fixup_on(conv, "fallback loader", |p| {
        p.ends_with(":/EFI/BOOT/BOOTX64.EFI")
    });
    assert_eq!(fallback["kind"], "efi", "{fallback}");
    let diff = fallback["diff"].as_str().unwrap_or_default();
    assert!(
        diff.starts_with("copied /EFI/debian/grubx64.efi "),
        "{diff}"
    );
    // Metadata sent whole: the first MiB (protective MBR, GPT, the gap
    // before partition 1), the FATs and root directory of the ESP, the
    // PV's first MiB (label, metadata area up to pe_start).
    assert_sent_within("uefi server", &report, used, 3 * 1024 * 1024, started);
}

/// Bytes `[at, at + len)` of `path` are all zero.
fn zero_range(path: &Path, at: u64, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = at;
    while pos < at + len {
        let n = usize::try_from((at + len - pos).min(1 << 20)).expect("chunk");
        f.read_exact_at(&mut buf[..n], pos)
            .unwrap_or_else(|e| panic!("{} at {pos}: {e}", path.display()));
        if buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        pos += n as u64;
    }
    true
}

/// Issue 12 (b): two disks mirrored by md RAID1 (metadata 1.2), root on
/// md0 and swap on md1, fstab `/dev/md0`/`/dev/md1`, mdadm.conf ARRAY
/// lines, `root=/dev/md0 rd.md.uuid=...`. The live image reads both disks;
/// each array travels once, flattened onto the first disk's partitions
/// (its filesystem written where the member was, only used blocks sent),
/// the second disk's members are not sent; the conversion maps the md
/// names and drops the md boot arguments, and the guest boots under Xen
/// without md.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn md_raid1_server_of_two_disks_migrated_by_p2xen_boots_under_xen() {
    const MIB: u64 = 1 << 20;
    let started = Instant::now();
    let setup = Setup {
        more_disks: &["mdraid-b"],
        ..Setup::default()
    };
    let (mut used, mut e2fsck, mut cfg) = (0u64, String::new(), String::new());
    let (mut mdadm_conf, mut grub_cfg) = (String::new(), String::new());
    let mut store_images = Vec::new();
    let (m, report) = migrate_and_boot_checked("mdraid", DiskBus::Ahci, "", setup, |src, store| {
        // The root filesystem inside md0: 1 MiB (the 1.2 reserve) into
        // partition 1 (at 1 MiB) of the source's first disk; dumpe2fs, not
        // p2xen, says how much of it is used.
        let inner = format!("{}?offset={}", src[0].display(), 2 * MIB);
        let sup = run(Command::new("dumpe2fs").arg("-h").arg(&inner));
        let field = |k: &str| -> u64 {
            sup.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {k} in dumpe2fs -h {inner}:\n{sup}"))
        };
        used = (field("Block count:") - field("Free blocks:")) * field("Block size:");
        // The copy's root is a plain ext4 at partition 1's start.
        let root = format!("{}?offset={MIB}", store.join("disk0.img").display());
        let out = Command::new("e2fsck")
            .arg("-fn")
            .arg(&root)
            .output()
            .expect("e2fsck");
        e2fsck = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "e2fsck -fn {root}: {e2fsck}");
        mdadm_conf = run(Command::new("debugfs")
            .args(["-R", "cat /etc/mdadm/mdadm.conf"])
            .arg(&root));
        grub_cfg = run(Command::new("debugfs")
            .args(["-R", "cat /boot/grub/grub.cfg"])
            .arg(&root));
        // The second disk's members were not sent: its partitions are zero
        // on the receiver (the data of each array is on disk 0 only).
        let disk1 = store.join("disk1.img");
        if disk1.exists() {
            assert!(
                zero_range(&disk1, MIB, 113 * MIB),
                "{}: the second member's partitions hold data (a pair sent twice?)",
                disk1.display()
            );
        }
        store_images = std::fs::read_dir(store)
            .expect("store dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".img"))
            .collect();
        store_images.sort();
        let xen = store.ancestors().nth(2).expect("work dir").join("xen");
        cfg = std::fs::read_to_string(xen.join("mdraid.cfg")).unwrap_or_default();
    });
    assert_eq!(m, Marker::mdraid("xvda"));
    assert!(
        e2fsck.contains("Pass 5"),
        "e2fsck -fn of the copy's root: {e2fsck}"
    );
    assert!(
        mdadm_conf
            .lines()
            .filter(|l| l.contains("ARRAY"))
            .all(|l| l.starts_with('#'))
            && mdadm_conf.contains("ARRAY /dev/md0"),
        "the copy's mdadm.conf still assembles arrays:\n{mdadm_conf}"
    );
    // The array boot arguments go with the arrays; root is the plain partition.
    let linux = grub_cfg
        .lines()
        .find(|l| l.trim_start().starts_with("linux"))
        .unwrap_or_else(|| panic!("no linux line in the copy's grub.cfg:\n{grub_cfg}"));
    assert!(
        linux.contains(" root=/dev/xvda1 ")
            && !linux.contains("rd.md")
            && !linux.contains("/dev/md"),
        "the copy's kernel line: {linux}"
    );
    let disks = report["disks"].as_array().expect("report disks");
    let sent: u64 = disks
        .iter()
        .map(|d| d["committed_bytes"].as_u64().expect("committed_bytes"))
        .sum();
    let size: u64 = disks
        .iter()
        .map(|d| d["size_bytes"].as_u64().expect("size_bytes"))
        .sum();
    // Outside the arrays: the MBR gap of each disk (1 MiB, sent whole).
    // Of md1's swap only its header page goes.
    let bound = used + 2 * MIB + 4096 + MIB;
    eprintln!(
        "mdraid server: {sent} of {size} bytes sent ({} disks, store {store_images:?}), \
         root ext4 used {used}, bound {bound}; {:.0} s in all",
        disks.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(sent <= bound, "{sent} bytes sent for {used} used: {report}");
    assert!(
        disks
            .iter()
            .skip(1)
            .all(|d| d["committed_bytes"].as_u64().is_some_and(|b| b <= MIB)),
        "a second member was sent: {report}"
    );
    let targets = cfg.matches("target=").count();
    eprintln!("xl config:\n{cfg}");
    assert!(targets >= 1, "{cfg}");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn seed_migrated_by_p2xen_boots_under_xen() {
    let m = migrate_and_boot("seed", DiskBus::Ide, "");
    assert_eq!(m, Marker::seed("xvda"));
}

/// A 32-bit server (686 kernel, i386 busybox, busybox init, /dev/hda fstab,
/// grub legacy) migrated by the 32-bit live image on a Core Duo: Linux has
/// no 32-bit PV guests since 5.9, so `p2xen receive --guest-kernel` boots
/// it PV with the amd64 kernel the Xen host's dom0 runs, whose modules go
/// into the copy's /lib/modules; the 32-bit userland runs on it through
/// IA32 emulation.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn i386_server_migrated_by_the_32bit_live_image_boots_a_supplied_kernel_under_xen() {
    let started = Instant::now();
    let mut modules_dep = String::new();
    let setup = Setup {
        i386: true,
        supplied_kernel: true,
        ..Setup::default()
    };
    let (m, report) = migrate_and_boot_checked("i386", DiskBus::Ide, "", setup, |_, store| {
        let root = format!(
            "{}?offset={}",
            store.join("disk0.img").display(),
            2048 * 512
        );
        let ls = run(Command::new("debugfs")
            .args(["-R", "ls -p /lib/modules"])
            .arg(&root));
        let kv = ls
            .split('/')
            .find(|w| w.ends_with("-amd64"))
            .unwrap_or_else(|| panic!("no amd64 modules in the copy's /lib/modules: {ls}"))
            .to_owned();
        modules_dep = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat /lib/modules/{kv}/modules.dep"))
            .arg(&root));
    });
    assert_eq!(m, Marker::i386("xvda"));
    assert!(
        modules_dep.contains("kernel/drivers/block/xen-blkfront.ko"),
        "copy's modules.dep: {modules_dep}"
    );
    let conv = &report["conversion"];
    assert_eq!(conv["boot_route"], "supplied-kernel", "{conv}");
    assert_eq!(conv["type"], "pv", "{conv}");
    let installed = fixup_on(conv, "modules install", |p| p.starts_with("/lib/modules/"));
    assert!(
        installed["diff"]
            .as_str()
            .is_some_and(|d| d.starts_with("cp -a ") && d.contains("xen-kernel/modules/")),
        "{installed}"
    );
    let disk = &report["disks"][0];
    eprintln!(
        "i386 server: {} of {} bytes sent (plan {}); {:.0} s in all",
        disk["committed_bytes"],
        disk["size_bytes"],
        disk["plan_bytes"],
        started.elapsed().as_secs_f64()
    );
}

/// Issue 15 item 3: a static address on a NIC with a physical-style name
/// comes up on the vif under Xen. The netstatic server's
/// /etc/network/interfaces gives 192.0.2.10/24 (gateway 192.0.2.1) to
/// enp3s0f1; the live system names its NIC so by MAC (`ifname=`, QEMU's
/// first NIC), so the machine description has it under that name. The
/// conversion makes it vif eth0 with that MAC and rewrites the file; under
/// Xen the guest's busybox `ifup -a` reads the rewritten file, and dom0 is
/// 192.0.2.1 on the vif's bridge (tests/e2e/xen-host.d/init), so the
/// guest's ping of its gateway crosses netfront, netback and the bridge.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn static_address_on_a_renamed_nic_answers_under_xen() {
    let mac = "52:54:00:12:34:56";
    let mut interfaces = String::new();
    let mut cfg = String::new();
    let (m, _) = migrate_and_boot_checked(
        "netstatic",
        DiskBus::Ide,
        &format!("ifname=enp3s0f1:{mac}"),
        Setup::default(),
        |_, store| {
            let root = format!(
                "{}?offset={}",
                store.join("disk0.img").display(),
                2048 * 512
            );
            interfaces = run(Command::new("debugfs")
                .args(["-R", "cat /etc/network/interfaces"])
                .arg(&root));
            // STORE/netstatic → WORK/xen/netstatic.cfg (Receiver's layout).
            let xen = store.ancestors().nth(2).expect("work dir").join("xen");
            cfg = std::fs::read_to_string(xen.join("netstatic.cfg")).unwrap_or_default();
        },
    );
    assert!(
        interfaces.contains("auto eth0\niface eth0 inet static\n")
            && !interfaces.contains("enp3s0f1"),
        "rewritten /etc/network/interfaces:\n{interfaces}"
    );
    assert_eq!(
        m,
        Marker {
            host: "netstatic".into(),
            net: Some("eth0:192.0.2.10/24".into()),
            ping: Some("192.0.2.1:ok".into()),
            ..Marker::seed("xvda")
        }
    );
    assert!(
        cfg.contains(&format!("vif = [\n    'mac={mac}, bridge=xenbr0',\n]")),
        "not one vif with the NIC's MAC:\n{cfg}"
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn seed_migrated_with_layout_partitions_boots_under_xen() {
    let m = migrate_and_boot("seed", DiskBus::Ide, "p2xen.layout=partitions");
    // One image a partition, attached as xvda1 and xvda2 (direct kernel boot).
    assert_eq!(m, Marker::seed("xvda"));
}

/// The `P2XEN-LVM NAME key=value ...` line the dom0 script printed for a name.
struct LvmCheck(std::collections::HashMap<String, String>);

impl LvmCheck {
    fn find(console: &str, name: &str) -> LvmCheck {
        let prefix = format!("P2XEN-LVM {name} ");
        let line = console
            .lines()
            .find_map(|l| l.find(&prefix).map(|i| &l[i + prefix.len()..]))
            .unwrap_or_else(|| panic!("no {prefix:?} line on the Xen host console"));
        LvmCheck(
            line.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl std::ops::Index<&str> for LvmCheck {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.0))
    }
}

/// `p2xen receive --store lvm:VG` on a Xen dom0, as Xen hosts are run: the
/// dom0 (Debian's kernel, lvm2 from Debian) gets the demo seed image as
/// /dev/vda and a PV full of random garbage as /dev/vdb, and runs
/// tests/e2e/xen-host.d/lvm-store: two migrations over 127.0.0.1 with the
/// static p2xen (`build/live` builds it), one `--all-blocks` and one sending
/// used blocks only (its receiver killed -9 mid-copy and restarted), a
/// refused one onto a foreign LV, then `p2xen convert` of the second; the
/// guest then boots under Xen from its LV. Old PV data left anywhere on an LV would change its
/// hash, since the source's unused space is zeros.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn seed_received_into_lvm_on_dom0_boots_under_xen() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = demo_server(tmp.path(), "seed");
    let img = tmp.path().join("seed-source.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&seed)
        .arg(&img));
    let before = sha256(&img);
    let md5 = run(Command::new("md5sum").arg(&img))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let size = std::fs::metadata(&img).expect("source image").len();

    let pv = tmp.path().join("pv.img");
    let mut garbage = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    let mut out = std::fs::File::create(&pv).expect("PV image");
    std::io::copy(&mut std::io::Read::take(&mut garbage, 256 << 20), &mut out).expect("PV garbage");
    drop(out);

    // The root filesystem's offset, for e2fsck and mount in dom0.
    let table: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("-J").arg(&img)))
            .expect("sfdisk -J output");
    let start = table["partitiontable"]["partitions"][0]["start"]
        .as_u64()
        .expect("partition 1 start");
    let conf = tmp.path().join("lvm-store.conf");
    std::fs::write(&conf, format!("ROOT_OFFSET={}\n", start * 512)).expect("conf");

    let musl = Path::new(env!("CARGO_BIN_EXE_p2xen"))
        .ancestors()
        .nth(2)
        .expect("target dir")
        .join("x86_64-unknown-linux-musl/release/p2xen");
    assert!(
        musl.is_file(),
        "{} missing: run build/live (it builds the static p2xen)",
        musl.display()
    );
    let logs = log_dir("xen-lvm-store");
    let marker = run(Command::new(e2e("run-xen-guest"))
        .arg("--script")
        .arg(e2e("xen-host.d/lvm-store"))
        .args(["--guest", "seed", "--disk"])
        .arg(&img)
        .arg("--disk")
        .arg(&pv)
        .arg("--file")
        .arg(&musl)
        .arg("--file")
        .arg(&conf)
        .args(["--expect", "P2XEN-MARKER", "--timeout", "500", "--log"])
        .arg(&logs));
    let console = std::fs::read_to_string(logs.join("xen-host.log")).expect("Xen host console");
    assert_eq!(sha256(&img), before, "the migrations changed the source");

    let exact = LvmCheck::find(&console, "exact");
    assert_eq!(exact["size"], size.to_string());
    assert_eq!(exact["lv_md5"], md5, "--all-blocks LV differs");
    let lv_size: u64 = exact["lv_size"].parse().expect("lv_size");
    assert!(
        lv_size >= size && lv_size % (4 << 20) == 0 && lv_size - size < 4 << 20,
        "LV of {lv_size} bytes for {size}: not the disk rounded up to 4 MiB extents"
    );
    assert_eq!(exact["tail_nonzero"], "0", "old data past the disk's end");

    let used = LvmCheck::find(&console, "seed");
    let plan: u64 = used["plan_bytes"].parse().expect("plan_bytes");
    assert!(plan < size / 2, "unused blocks were sent: {plan} of {size}");
    assert_eq!(used["lv_md5"], md5, "skipped blocks not zero on the LV");
    assert_eq!(used["e2fsck"], "0", "e2fsck -fn of the LV's root");
    assert_eq!(used["files_identical"], "yes");
    assert!(used["files"].parse::<u32>().expect("files") > 10);
    assert_eq!(
        used["resumed"], "yes",
        "receiver killed mid-copy: no resume"
    );
    assert_eq!(
        LvmCheck::find(&console, "other")["refused"],
        "yes",
        "an LV that is no migration's was not refused"
    );
    assert!(
        console.contains("P2XEN-LVM config target=/dev/p2xenvg/seed-disk0"),
        "xl config does not name the LV"
    );

    let m = Marker::parse(&marker);
    assert_eq!(m, Marker::seed("xvda"));
    eprintln!(
        "lvm store test: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}
