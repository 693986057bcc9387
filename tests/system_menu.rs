//! The serial-console menu under QEMU (TCG): Debian's kernel with our
//! initramfs (`build/live`) boots without `p2xen.server`, so the init starts
//! the menu on both serial consoles. The test is the administrator at ttyS1
//! (a Unix socket chardev, 115200 baud, keys as a VT100 sends them): it
//! looks at the machine, configures the network, types the receiver and its
//! token, compares and trusts the fingerprint the receiver presents, picks
//! two of the three disks, starts the copy and reads the result, against
//! `p2xen receive --once` on the host (10.0.2.2 from inside QEMU). On the
//! way its serial session drops and comes back (Ctrl-L repaints), and
//! ttyS0 (the log on stdio) shows the watcher's "menu in use on ttyS1"
//! screen with the progress.

mod common;
mod copy_harness;

use common::fixtures::{self, MIB, RootTree};
use common::qemu::{DiskBus, Vm};
use common::terminal::{BACKSPACE, CTRL_L, DOWN, ENTER, Terminal};
use copy_harness::{Receiver, noise};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn out(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("out").join(name)
}

/// Start of partition 1 in both fixture disks.
const PART1: u64 = MIB;

/// The server's system disk: MBR, one ext4 partition holding a Debian root
/// named "menuhost" (the receiver converts it).
fn os_disk(dir: &Path) -> PathBuf {
    let img = dir.join("os.img");
    fixtures::sparse_image(&img, 64 * MIB);
    fixtures::sfdisk(&img, "label: dos\nstart=2048, type=83, bootable\n");
    let tree = dir.join("root-tree");
    RootTree {
        fstab: "/dev/sda1 / ext4 errors=remount-ro 0 1\nproc /proc proc defaults 0 0\n".into(),
        kernels: vec!["6.1.0-18-amd64".into()],
        ..RootTree::debian("menuhost")
    }
    .write(&tree);
    fixtures::mke2fs_at(&img, "ext4", PART1, 63 * MIB, Some(&tree), "root");
    img
}

/// A data disk: MBR, one ext4 partition with 3 MiB of random data. The
/// conversion leaves it alone, so its image must equal it byte for byte.
fn data_disk(dir: &Path) -> PathBuf {
    let img = dir.join("data.img");
    fixtures::sparse_image(&img, 32 * MIB);
    fixtures::sfdisk(&img, "label: dos\nstart=2048, type=83\n");
    let tree = dir.join("data-tree");
    std::fs::create_dir_all(tree.join("srv")).unwrap();
    std::fs::write(tree.join("srv/blob"), noise(3 * MIB as usize, 11)).unwrap();
    fixtures::mke2fs_at(&img, "ext4", PART1, 31 * MIB, Some(&tree), "srv");
    img
}

/// `text` without any whitespace: the menu wraps long lines at 78 columns
/// and must cut the 89-character fingerprint parameter, so only the
/// characters can be compared. Every parameter starts with "p2xen.", so a
/// missing or extra one still shows.
fn squash(text: &str) -> String {
    text.split_whitespace().collect()
}

/// The "Next time, boot with:" block of the screen (up to an empty line,
/// a warning or the note of lines cut), squashed.
fn next_time_block(screen: &str) -> String {
    let lines: Vec<&str> = screen
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("Next time, boot with:"))
        .enumerate()
        .take_while(|(i, l)| {
            *i == 0 || !(l.is_empty() || l.starts_with("warning:") || l.starts_with('('))
        })
        .map(|(_, l)| l)
        .collect();
    squash(&lines.concat())
}

/// A menu item's row as the menu draws it: number, label padded to the
/// value column, value.
fn item(n: usize, label: &str, value: &str) -> String {
    format!("{n}) {label:<22}{value}")
}

fn e2fsck_clean(image: &Path, offset: u64) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(fixtures::at_offset(image, offset))
        .output()
        .expect("e2fsck (package e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}\n{}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn serial_menu_migrates_two_of_three_disks() {
    const STEP: Duration = Duration::from_secs(30);
    let tmp = tempfile::tempdir().unwrap();
    let os = os_disk(tmp.path());
    let data = data_disk(tmp.path());
    // A third disk the administrator leaves out (a scratch disk).
    let spare = tmp.path().join("spare.img");
    fixtures::sparse_image(&spare, 16 * MIB);
    let sources = [&os, &data, &spare];
    let before: Vec<String> = sources.iter().map(|p| fixtures::hash_file(p)).collect();

    let store = tmp.path().join("store");
    let xen = tmp.path().join("xen");
    let xen_arg = xen.to_string_lossy().into_owned();
    let mut receiver = Receiver::start(
        &store,
        &tmp.path().join("state"),
        &["--once", "--xen-dir", &xen_arg],
    );
    let server = format!("10.0.2.2:{}", receiver.port);

    let socket = tmp.path().join("ttyS1.sock");
    let vm = Vm::builder(out("vmlinuz"), out("initramfs.img"))
        // The menu runs on both. The kernel itself writes to ttyS0 only:
        // one 8250 driver is one kernel console, on the first `console=`.
        .consoles("console=ttyS0,115200 console=ttyS1,115200")
        // As the boot media's menu entry: no `quiet`, the kernel talks.
        .append("p2xen.mode=menu")
        .serial_socket(&socket)
        // Writable, as a server's disks are: the live system must not
        // write (the hashes below), not QEMU refuse it.
        // Mixed controllers, as on many servers: the system disk on
        // virtio (/dev/vda), the data and scratch disks on AHCI (sda, sdb).
        .disk(&os, DiskBus::Virtio, false)
        .disk(&data, DiskBus::Ahci, false)
        .disk(&spare, DiskBus::Ahci, false)
        .nic("e1000")
        .hard_timeout(Duration::from_secs(240))
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut t = Terminal::connect(&socket, Duration::from_secs(10));

    // Overview: the machine and its disks, as inspect found them.
    let s = t.wait_for("1/7 Overview", Duration::from_secs(120));
    let booted = vm.elapsed();
    for want in [
        "NIC eth0 52:54:00:12:34:56 e1000 link up",
        "Disk /dev/vda 64.0 MiB",
        "OS: Debian GNU/Linux 12 (bookworm) (menuhost)",
        "Disk /dev/sda 32.0 MiB QEMU HARDDISK",
        "Disk /dev/sdb 16.0 MiB QEMU HARDDISK",
        "ttyS1",
    ] {
        assert!(s.contains(want), "overview lacks {want:?}:\n{s}");
    }
    t.send(b"n");

    // Network: DHCP on every interface with a link (the defaults), applied.
    // Item 6 is Apply (Interface, Bond, VLAN id, IPv4, IPv6 come first).
    t.wait_for("2/7 Network", STEP);
    t.send(b"6");
    let s = t.wait_for("network configured", STEP);
    assert!(s.contains("10.0.2.15"), "no DHCP address shown:\n{s}");
    t.send(b"n");

    // Target: address and token typed; no fingerprint typed, so the
    // receiver's is shown and must be trusted explicitly.
    t.wait_for("3/7 Target", STEP);
    t.send(b"1");
    t.send(server.as_bytes());
    t.send(ENTER);
    t.send(b"2");
    t.send(receiver.token.as_bytes());
    t.send(ENTER);
    t.wait_for(&item(1, "Receiver", &server), STEP);
    // "Continue to the guest" is three rows below the token.
    t.send(DOWN);
    t.send(DOWN);
    t.send(DOWN);
    t.send(ENTER);
    let s = t.wait_for("Trust this receiver and continue?", STEP);
    assert!(
        s.contains(&format!("  {}", receiver.fingerprint)),
        "the presented fingerprint is not the receiver's {}:\n{s}",
        receiver.fingerprint
    );
    t.send(b"y");

    // Guest: the name comes from the source's hostname; memory is set to
    // 256 MiB after a rejected "abc"; the scratch disk is left out.
    t.wait_for("4/7 Guest", STEP);

    // The serial-over-LAN session drops and the administrator connects
    // again: a blank terminal until Ctrl-L repaints the whole screen.
    let first_session = t.received();
    drop(t);
    t = Terminal::connect(&socket, Duration::from_secs(10));
    t.send(CTRL_L);
    let s = t.wait_for("4/7 Guest", STEP);
    assert!(s.contains(&item(1, "Name", "menuhost")), "{s}");
    t.send(b"2");
    t.send(&BACKSPACE.repeat(8));
    t.send(b"abc");
    t.wait_for("! memory: ", STEP);
    t.send(&BACKSPACE.repeat(3));
    t.send(b"256");
    t.send(ENTER);
    t.wait_for(&item(2, "Memory (MiB)", "256"), STEP);
    t.send(b"5");
    let s = t.wait_for(&item(5, "Disk /dev/sdb", "[ ] skip"), STEP);
    assert!(s.contains(&item(4, "Disk /dev/sda", "[x] copy")), "{s}");
    assert!(s.contains(&item(6, "Disk /dev/vda", "[x] copy")), "{s}");
    t.send(b"n");

    // Review, then start.
    let next_time = format!(
        "p2xen.server={server} p2xen.token={} p2xen.fingerprint={} p2xen.name=menuhost \
         p2xen.memory=256M p2xen.vcpus=1 p2xen.disks=sda,vda",
        receiver.token, receiver.fingerprint
    );
    let want = squash(&format!("Next time, boot with: {next_time}"));
    let s = t.wait_for("5/7 Review", STEP);
    assert_eq!(next_time_block(&s), want, "{s}");
    t.send(ENTER);
    let copy_started = Instant::now();

    // Result: digests, images, config, and the line for the next server.
    let s = t.wait_for("7/7 Result", Duration::from_secs(120));
    let copied = copy_started.elapsed();
    for want in [
        "Guest menuhost copied and verified.",
        "disk0 /dev/sda -> ",
        "disk1 /dev/vda -> ",
    ] {
        assert!(s.contains(want), "result lacks {want:?}:\n{s}");
    }
    let cfg = xen.join("menuhost.cfg");
    let xl = format!("on dom0 run: xl create {}", cfg.display());
    assert!(
        squash(&s).contains(&squash(&xl)),
        "result lacks {xl:?}:\n{s}"
    );
    assert_eq!(next_time_block(&s), want, "{s}");
    assert_eq!(
        receiver.wait(Duration::from_secs(30)),
        Some(0),
        "p2xen receive --once failed:\n{}",
        receiver
            .stderr
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    );

    // The other console watched: who has the menu, and the progress (the
    // copy takes a second or two, too short to catch the Progress screen).
    let log = vm.log();
    assert!(log.contains("Linux version"), "no kernel console on ttyS0");
    // The NIC came up while the menu ran; the kernel's message about it
    // must stay in dmesg, off the menu's consoles.
    assert!(
        !log.contains("NIC Link is Up"),
        "a kernel message reached the menu's console"
    );
    let mut watcher = vt100::Parser::new(24, 80, 0);
    watcher.process(log.as_bytes());
    let w = watcher.screen().contents();
    for want in [
        "menu in use on ttyS1",
        "(Result screen)",
        "Guest menuhost -> ",
        "disk0 /dev/sda",
        "disk1 /dev/vda",
        "Total 100%",
        "Finished and verified.",
    ] {
        assert!(w.contains(want), "ttyS0 lacks {want:?}:\n{w}");
    }

    // Power off from the result screen: a clean shutdown, QEMU exits 0.
    t.send(b"1");
    let status = vm.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "qemu: {status}");
    assert!(
        vm.log().contains("reboot: Power down"),
        "no clean power-off"
    );
    eprintln!(
        "menu on ttyS1 after {:.1} s; copy {:.1} s; VM off after {:.1} s (TCG); \
         {} bytes over ttyS1 from boot to power-off",
        booted.as_secs_f64(),
        copied.as_secs_f64(),
        vm.elapsed().as_secs_f64(),
        first_session + t.received()
    );
    drop(t);
    drop(vm);

    // The images: the data disk byte for byte; the converted system disk
    // has the source's partition table and a clean filesystem with the
    // source's files; the scratch disk was not sent.
    let guest = store.join("menuhost");
    assert_eq!(
        fixtures::hash_file(&guest.join("disk0.img")),
        before[1],
        "the data disk's image differs from the source"
    );
    let os_img = guest.join("disk1.img");
    assert_eq!(
        std::fs::metadata(&os_img).unwrap().len(),
        64 * MIB,
        "system disk image size"
    );
    assert_eq!(
        fixtures::peek(&os_img, 0, 512),
        fixtures::peek(&os, 0, 512),
        "MBR differs"
    );
    e2fsck_clean(&os_img, PART1);
    assert_eq!(
        fixtures::debugfs_cat(&os_img, PART1, "/etc/hostname"),
        "menuhost\n"
    );
    assert!(
        !guest.join("disk2.img").exists(),
        "the skipped disk was sent"
    );
    assert!(cfg.is_file(), "no xl config written");
    let after: Vec<String> = sources.iter().map(|p| fixtures::hash_file(p)).collect();
    assert_eq!(after, before, "a source image changed");
}
