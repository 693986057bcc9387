//! System tests of the live environment under QEMU (TCG): Debian's kernel with
//! our initramfs (`build/live` → out/vmlinuz, out/initramfs.img) boots, loads
//! the right drivers by coldplug, sets the source disk read-only, reaches the
//! ready marker and powers off cleanly from the rescue shell.

mod common;

use common::fixtures;
use common::qemu::{DiskBus, Vm};
use std::path::{Path, PathBuf};
use std::time::Duration;

const READY: &str = p2xen::init::READY_MARKER;

fn out(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("out").join(name)
}

/// A 64 MiB disk with an MBR and one ext4 partition holding a small root.
fn fixture_disk(dir: &Path) -> PathBuf {
    let img = dir.join("source.img");
    fixtures::sparse_image(&img, 64 << 20);
    fixtures::sfdisk(&img, "label: dos\nstart=2048, type=83\n");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "seed\n").unwrap();
    fixtures::mke2fs_at(&img, "ext4", 1 << 20, 62 << 20, Some(&tree), "seedroot");
    img
}

/// Boots with the source disk on `bus`, checks coldplug loaded `module`, the
/// disk `dev` (and partition `part`) is read-only, and powers off from the shell.
fn boot_and_check(bus: DiskBus, module: &str, dev: &str, part: &str, nic: Option<(&str, &str)>) {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixture_disk(tmp.path());
    let before = fixtures::hash_file(&img);
    let mut builder = Vm::builder(out("vmlinuz"), out("initramfs.img"))
        .append("quiet p2xen.mode=shell")
        .disk(&img, bus, false);
    if let Some((model, _)) = nic {
        builder = builder.nic(model);
    }
    let mut vm = builder.start().unwrap();
    let ready = vm.wait_for(READY, Duration::from_secs(240));
    eprintln!(
        "{bus:?}: ready marker after {:.1} s (TCG)",
        ready.as_secs_f64()
    );
    let log = vm.log();
    let coldplug = log
        .lines()
        .find(|l| l.contains("coldplug:") && l.contains("module(s) loaded"))
        .unwrap_or_else(|| panic!("no coldplug summary; log:\n{log}"));
    assert!(
        coldplug.split_whitespace().any(|w| w == module),
        "{module} not loaded: {coldplug}\n{log}"
    );
    if let Some((_, driver)) = nic {
        assert!(
            coldplug.split_whitespace().any(|w| w == driver),
            "NIC driver {driver} not loaded: {coldplug}\n{log}"
        );
    }
    for d in [dev, part] {
        assert!(
            log.contains(&format!("read-only: /dev/{d} (getro=1)")),
            "/dev/{d} not set read-only; log:\n{log}"
        );
    }
    vm.wait_for("p2xen rescue shell", Duration::from_secs(60));
    vm.send(&format!(
        "echo GETRO=$(blockdev --getro /dev/{dev})$(blockdev --getro /dev/{part}); ls /sys/class/net | tr '\\n' ' '; echo NETS\n"
    ));
    vm.wait_for("GETRO=11", Duration::from_secs(60));
    if nic.is_some() {
        // `ls` sorts: the NIC's eth0 comes before lo.
        vm.wait_for("eth0 lo NETS", Duration::from_secs(60));
    }
    // A write attempt must fail: the kernel refuses writes to a read-only disk.
    vm.send(&format!(
        "dd if=/dev/zero of=/dev/{dev} bs=512 count=1 conv=notrunc 2>/dev/null && echo WRITE=ok || echo WRITE=refused\n"
    ));
    vm.wait_for("WRITE=refused", Duration::from_secs(60));
    vm.send("poweroff\n");
    let status = vm.wait_exit(Duration::from_secs(120));
    let log = vm.log();
    assert!(status.success(), "qemu exit {status}; log:\n{log}");
    assert!(
        log.contains("poweroff: now"),
        "no clean poweroff; log:\n{log}"
    );
    assert!(
        log.contains("reboot: Power down"),
        "kernel did not power down; log:\n{log}"
    );
    assert_eq!(fixtures::hash_file(&img), before, "source image changed");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_virtio_blk() {
    boot_and_check(DiskBus::Virtio, "virtio_blk", "vda", "vda1", None);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_ahci() {
    boot_and_check(DiskBus::Ahci, "ahci", "sda", "sda1", None);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_ide() {
    boot_and_check(DiskBus::Ide, "ata_piix", "sda", "sda1", None);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_nvme() {
    boot_and_check(DiskBus::Nvme, "nvme", "nvme0n1", "nvme0n1p1", None);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_megasas() {
    boot_and_check(DiskBus::Megasas, "megaraid_sas", "sda", "sda1", None);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_nic_e1000() {
    boot_and_check(
        DiskBus::Virtio,
        "virtio_blk",
        "vda",
        "vda1",
        Some(("e1000", "e1000")),
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_nic_e1000e() {
    boot_and_check(
        DiskBus::Virtio,
        "virtio_blk",
        "vda",
        "vda1",
        Some(("e1000e", "e1000e")),
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_nic_rtl8139() {
    boot_and_check(
        DiskBus::Virtio,
        "virtio_blk",
        "vda",
        "vda1",
        Some(("rtl8139", "8139cp")),
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_nic_virtio_net() {
    boot_and_check(
        DiskBus::Virtio,
        "virtio_blk",
        "vda",
        "vda1",
        Some(("virtio-net-pci", "virtio_net")),
    );
}

/// Ctrl-Alt-Del is not a hard reset: it reaches PID 1 as SIGINT and ends in
/// the same clean shutdown (a reboot; QEMU's -no-reboot turns it into an exit).
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_ctrl_alt_del_reboots_cleanly() {
    let mut vm = Vm::builder(out("vmlinuz"), out("initramfs.img"))
        .append("quiet p2xen.mode=shell")
        .start()
        .unwrap();
    vm.wait_for("p2xen rescue shell", Duration::from_secs(240));
    // busybox `reboot` sends SIGTERM to PID 1, the path Ctrl-Alt-Del's
    // SIGINT shares; the serial line cannot send the key combination.
    vm.send("kill -INT 1\n");
    vm.wait_exit(Duration::from_secs(120));
    let log = vm.log();
    assert!(log.contains("Ctrl-Alt-Del pressed"), "{log}");
    assert!(log.contains("reboot: now"), "{log}");
}

/// An unattended run that cannot reach its server ends in `p2xen.fail=`
/// (here poweroff) with a message naming the server, not a kernel panic.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_bad_server_ends_in_fail_action() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixture_disk(tmp.path());
    let before = fixtures::hash_file(&img);
    let vm = Vm::builder(out("vmlinuz"), out("initramfs.img"))
        .append("quiet p2xen.server=10.0.2.2:9 p2xen.fail=poweroff")
        .disk(&img, DiskBus::Virtio, false)
        .nic("virtio-net-pci")
        .start()
        .unwrap();
    vm.wait_for(READY, Duration::from_secs(240));
    let status = vm.wait_exit(Duration::from_secs(180));
    let log = vm.log();
    assert!(status.success(), "qemu exit {status}; log:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("p2xen: error:") && l.contains("10.0.2.2:9")),
        "no error naming the server; log:\n{log}"
    );
    assert!(
        log.contains("/dev/vda 64 MiB, table mbr, 1 partition(s)"),
        "no summary; log:\n{log}"
    );
    assert!(
        log.contains("#1 63 MiB ext4 \"seedroot\""),
        "no partition line; log:\n{log}"
    );
    assert!(
        log.contains("poweroff: now"),
        "no clean poweroff; log:\n{log}"
    );
    assert!(!log.contains("Kernel panic"), "{log}");
    assert_eq!(fixtures::hash_file(&img), before, "source image changed");
}
