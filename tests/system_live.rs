//! System tests of the live environment under QEMU (TCG): Debian's kernel with
//! our initramfs (`build/live` → out/vmlinuz, out/initramfs.img).
//!
//! Every disk bus and NIC the issue names carries a complete unattended
//! migration to `p2xen receive --once` on the host (AHCI and IDE with e1000
//! are migrated by tests/system_xen.rs, up to a boot under Xen). Buses and
//! NICs are paired so boots stay few; one VM has two source disks on two
//! buses, which the sender copies in one run. One boot goes to the rescue
//! shell to prove the kernel refuses a write to the source disk.

mod common;

use common::fixtures;
use common::qemu::{Arch, DiskBus, Vm, VmBuilder};
use common::qmp;
use common::receiver::Receiver;
use common::vlan_switch::VlanSwitch;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const READY: &str = p2xen::init::READY_MARKER;

/// A VM booting the live kernel and initramfs from out/.
fn live_vm() -> VmBuilder {
    Arch::Amd64.live_vm()
}

/// Bytes no compressor shrinks, different for every `seed` (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A 64 MiB disk with an MBR and one ext4 partition at 1 MiB holding a small
/// root: hostname, 1 MiB of incompressible data and a compressible log, all
/// different per `n` so two disks in one VM cannot be confused.
///
/// Everything the filesystem does not use is zero (a sparse file, mke2fs
/// writes only metadata), so a copy of the used blocks reproduces the image
/// byte for byte: the migration tests compare whole images.
fn fixture_disk(dir: &Path, n: usize) -> PathBuf {
    let img = dir.join(format!("source{n}.img"));
    fixtures::sparse_image(&img, 64 << 20);
    fixtures::sfdisk(&img, "label: dos\nstart=2048, type=83\n");
    let tree = dir.join(format!("tree{n}"));
    for d in ["etc", "srv", "var/log"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/hostname"), "seed\n").unwrap();
    std::fs::write(tree.join("srv/data.bin"), noise(n as u64 + 1, 1 << 20)).unwrap();
    let log: String = (0..20_000)
        .map(|i| format!("disk {n} line {i}: request served\n"))
        .collect();
    std::fs::write(tree.join("var/log/app.log"), log).unwrap();
    fixtures::mke2fs_at(
        &img,
        "ext4",
        1 << 20,
        63 << 20,
        Some(&tree),
        &format!("seedroot{n}"),
    );
    img
}

/// The modules of the init's `coldplug: N module(s) loaded in T s: a b c` line.
fn coldplug_modules(log: &str) -> Vec<String> {
    let line = log
        .lines()
        .find(|l| l.contains("coldplug:") && l.contains("module(s) loaded"))
        .unwrap_or_else(|| panic!("no coldplug summary (serial log printed below)"));
    // Stuck and blacklisted modules follow after ` | `.
    let line = line.split(" | ").next().unwrap_or_default();
    line.split_once(" s: ")
        .map(|(_, mods)| mods.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn assert_loaded(log: &str, modules: &[&str]) {
    let loaded = coldplug_modules(log);
    for m in modules {
        assert!(
            loaded.iter().any(|l| l == m),
            "coldplug did not load {m}; loaded: {}",
            loaded.join(" ")
        );
    }
}

/// The guest powered itself off through p2xen's clean shutdown.
fn assert_clean_poweroff(vm: &Vm, status: std::process::ExitStatus) {
    let log = vm.log();
    assert!(status.success(), "qemu exit {status} (serial log below)");
    assert!(log.contains("poweroff: now"), "no clean poweroff");
    assert!(
        log.contains("reboot: Power down"),
        "kernel did not power down"
    );
    assert!(!log.contains("Kernel panic"), "kernel panic");
}

/// A source disk of a migration VM: where QEMU attaches it, the driver
/// coldplug must load for it and the kernel's name for it.
struct Source {
    bus: DiskBus,
    module: &'static str,
    dev: &'static str,
}

/// How the live VM finds the receiver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    /// DHCP from QEMU's user network, the receiver by address.
    Dhcp,
    /// The kernel's static `ip=` with the host as DNS server (`dns0`), and
    /// the receiver by host name: resolv.conf and name resolution in the
    /// live system are then on the path.
    StaticByName,
    /// Two NICs in an active-backup bond (dracut's `bond=`), DHCP on the bond,
    /// the primary's cable pulled during the copy.
    Bond,
    /// The NIC on a switch port that passes only VLAN `VLAN_ID`'s tagged
    /// frames (dracut's `vlan=`), DHCP on the VLAN link.
    Vlan,
}

/// The VLAN of [`Net::Vlan`], and the live system's link on it.
const VLAN_ID: u16 = 42;
const VLAN: &str = "vlan=eth0.42:eth0 ip=eth0.42:dhcp";

/// QEMU's user network hands the guest's packets for 10.0.2.2 to the host's
/// loopback, UDP to port 53 included.
const STATIC_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0:source::off:10.0.2.2";
const RECEIVER_NAME: &str = "receiver.p2xen.test";

/// dnsmasq on the host's 127.0.0.1:53 answering for `RECEIVER_NAME` only;
/// killed on drop.
struct Dns(std::process::Child);

impl Dns {
    fn start() -> Dns {
        fixtures::need("dnsmasq", "dnsmasq-base");
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--port=53",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--log-queries",
                "--log-facility=-",
            ])
            // The domain is local, so AAAA gets "no data": a dnsmasq without
            // upstream servers would answer REFUSED, and musl's resolver
            // fails the whole lookup on REFUSED.
            .arg("--local=/p2xen.test/")
            .arg(format!("--host-record={RECEIVER_NAME},10.0.2.2"))
            .spawn()
            .expect("start dnsmasq");
        let mut dns = Dns(child);
        // dnsmasq exits at once when it cannot bind (port 53 taken).
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = dns.0.try_wait() {
            panic!("dnsmasq on 127.0.0.1:53 exited ({status}): is another DNS server bound there?");
        }
        dns
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One unattended migration: the live VM of `arch` boots with `sources` attached and
/// one NIC (`nic_model` in QEMU, `nic_driver` in Linux), migrates every disk
/// to `p2xen receive --once` on the host and powers off (`p2xen.post=`
/// default). Asserts the receiver verified the copy (exit 0), each received
/// image equals its source byte for byte, the sources are unchanged, the
/// drivers were loaded, the disks were set read-only, and the VM powered off.
fn migrate(
    arch: Arch,
    label: &str,
    sources: &[Source],
    nic_model: &str,
    nic_driver: &str,
    memory_mib: u32,
    net: Net,
) {
    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = (0..sources.len())
        .map(|n| fixture_disk(tmp.path(), n))
        .collect();
    let before: Vec<String> = images.iter().map(|i| fixtures::hash_file(i)).collect();
    // --no-convert: the guest fix-ups would change the copy, and the point
    // here is the copy itself (system_xen.rs covers the conversion).
    let mut receiver = Receiver::start(tmp.path(), &["--no-convert"]);
    let name = format!("live-{label}");
    let (params, _dns) = match net {
        Net::Dhcp => (receiver.guest_params(), None),
        Net::StaticByName => (
            format!(
                "{STATIC_IP} {}",
                receiver.guest_params().replace(
                    "p2xen.server=10.0.2.2:",
                    &format!("p2xen.server={RECEIVER_NAME}:")
                )
            ),
            Some(Dns::start()),
        ),
        Net::Bond => (
            format!("{BOND} ip=bond0:dhcp {}", receiver.guest_params()),
            None,
        ),
        Net::Vlan => (format!("{VLAN} {}", receiver.guest_params()), None),
    };
    let switch = (net == Net::Vlan).then(|| VlanSwitch::start(VLAN_ID));
    let server = params
        .split_whitespace()
        .find_map(|p| p.strip_prefix("p2xen.server="))
        .unwrap_or_default()
        .rsplit_once(':')
        .map_or(String::new(), |(host, _)| host.to_owned());
    let mut builder = arch
        .live_vm()
        // fail=poweroff: a failed run ends the VM now instead of waiting in
        // the rescue shell for the hard timeout.
        .append(&format!(
            "quiet {params} p2xen.name={name} p2xen.fail=poweroff"
        ))
        .memory_mib(memory_mib)
        .hard_timeout(Duration::from_secs(600));
    builder = match net {
        // Both ports on one switch: a QEMU hub in front of one user network.
        // (Two user networks would be two routers, each with its own TCP
        // state: a frame on the other port would reset the connection.)
        Net::Bond => ["user,id=up", "hubport,id=h0,hubid=0,netdev=up"]
            .into_iter()
            .chain(["hubport,id=h1,hubid=0", "hubport,id=h2,hubid=0"])
            .fold(builder, |b, n| b.arg("-netdev").arg(n))
            .arg("-device")
            .arg(&format!("{nic_model},netdev=h1,id=port0"))
            .arg("-device")
            .arg(&format!("{nic_model},netdev=h2,id=port1"))
            .arg("-qmp")
            .arg(&qmp::arg(&tmp.path().join("qmp"))),
        // The NIC on the switch's trunk side; the access side and the user
        // network on one hub.
        Net::Vlan => {
            let sw = switch.as_ref().expect("the VLAN switch");
            [
                "user,id=up",
                "hubport,id=h0,hubid=0,netdev=up",
                &sw.access_netdev,
                "hubport,id=h1,hubid=0,netdev=access",
                &sw.trunk_netdev,
            ]
            .into_iter()
            .fold(builder, |b, n| b.arg("-netdev").arg(n))
            .arg("-device")
            .arg(&format!("{nic_model},netdev=trunk"))
        }
        _ => builder.nic(nic_model),
    };
    for (img, s) in images.iter().zip(sources) {
        builder = builder.disk(img, s.bus, false);
    }
    let started = Instant::now();
    let vm = builder.start().unwrap_or_else(|e| panic!("{e}"));
    if net == Net::Bond {
        pull_the_active_port(&vm, &tmp.path().join("qmp"));
    }
    let status = vm.wait_exit(Duration::from_secs(600));
    let first_byte = receiver
        .first_contact()
        .map(|at| at.duration_since(started));
    eprintln!(
        "{label} ({nic_model}, -m {memory_mib}): first byte at the receiver {} after QEMU started (TCG); VM off after {:.1} s",
        first_byte.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        started.elapsed().as_secs_f64()
    );
    let log = vm.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("migration to {server}:")) && l.contains(" finished")),
        "the live VM did not finish the migration (serial log below)"
    );
    assert_clean_poweroff(&vm, status);
    let received = receiver.wait(Duration::from_secs(120));
    assert!(received.success(), "p2xen receive --once: {received}");
    let mut modules: Vec<&str> = sources.iter().map(|s| s.module).collect();
    modules.push(nic_driver);
    assert_loaded(&log, &modules);
    for s in sources {
        let line = format!("read-only: /dev/{} (getro=1)", s.dev);
        assert!(log.contains(&line), "no {line:?}");
    }

    // The sender copies the disks in its own order; match them by content.
    let dir = receiver.store.join(&name);
    let mut got: Vec<String> = (0..sources.len())
        .map(|i| {
            let img = dir.join(format!("disk{i}.img"));
            assert!(img.is_file(), "{} not received", img.display());
            fixtures::hash_file(&img)
        })
        .collect();
    got.sort();
    let mut want = before.clone();
    want.sort();
    assert_eq!(got, want, "received images differ from the sources");
    // An independent check of the first copy: e2fsprogs find it consistent.
    fixtures::need("e2fsck", "e2fsprogs");
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(fixtures::at_offset(&dir.join("disk0.img"), 1 << 20))
        .output()
        .expect("run e2fsck");
    assert!(
        fsck.status.success(),
        "e2fsck -fn on the received disk0: {}\n{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout)
    );
    if net == Net::Bond {
        assert!(
            log.contains("coldplug: bonding loaded for the command line's links"),
            "bonding was not loaded"
        );
        assert!(
            log.lines().any(|l| l.contains("network: bond0 (")
                && l.contains(" 10.0.2.15/24 via 10.0.2.2 DHCP from 10.0.2.2")),
            "bond0 did not get the lease"
        );
    }
    if let Some(sw) = &switch {
        let (tagged_in, tagged_out, untagged, other) = sw.snapshot();
        eprintln!(
            "vlan {VLAN_ID}: {tagged_in} tagged frames in, {tagged_out} out; dropped {untagged} untagged, {other} of other VLANs"
        );
        assert!(
            log.contains("coldplug: 8021q loaded for the command line's links"),
            "8021q was not loaded"
        );
        assert!(
            log.lines().any(|l| l.contains("network: eth0.42 (")
                && l.contains(" 10.0.2.15/24 via 10.0.2.2 DHCP from 10.0.2.2")),
            "eth0.42 did not get the lease"
        );
        // The port is the VM's only way out, so the copy's frames were
        // tagged: hundreds of them, not just the DHCP exchange (4 frames).
        assert!(
            tagged_in > 100 && tagged_out > 100,
            "{tagged_in} in, {tagged_out} out"
        );
    }
    let after: Vec<String> = images.iter().map(|i| fixtures::hash_file(i)).collect();
    assert_eq!(after, before, "the migration changed a source image");
}

/// Two e1000 ports bonded as dracut's `bond=` describes, eth0 preferred.
const BOND: &str = "bond=bond0:eth0,eth1:mode=active-backup,miimon=100,primary=eth0";

/// Once bond0 has its lease (over eth0, the primary), pulls eth0's cable
/// before the sender connects: the bond must fail over to eth1, which then
/// carries the whole copy.
fn pull_the_active_port(vm: &Vm, qmp_socket: &Path) {
    vm.wait_for("network: bond0 (", Duration::from_secs(300));
    qmp::set_link(qmp_socket, "port0", false).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "bond: eth0's cable pulled {:.1} s after QEMU started",
        vm.elapsed().as_secs_f64()
    );
    assert!(
        !vm.log().contains(" finished"),
        "the migration finished before the cable was pulled: the test proves nothing"
    );
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_migrates_over_an_active_backup_bond_of_two_nics() {
    migrate(
        Arch::Amd64,
        "bond",
        &[Source {
            bus: DiskBus::Virtio,
            module: "virtio_blk",
            dev: "vda",
        }],
        "e1000",
        "e1000",
        512,
        Net::Bond,
    );
}

/// Issue 15: the live system on a tagged VLAN (`vlan=eth0.42:eth0`), its
/// switch port passing only VLAN 42's frames; DHCP and the whole copy run
/// over the VLAN link.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_migrates_over_a_tagged_vlan() {
    migrate(
        Arch::Amd64,
        "vlan",
        &[Source {
            bus: DiskBus::Virtio,
            module: "virtio_blk",
            dev: "vda",
        }],
        "virtio-net-pci",
        "virtio_net",
        512,
        Net::Vlan,
    );
}

/// Two disks on two buses in one run (parallel disks), over virtio-net.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_migrates_virtio_blk_and_nvme_over_virtio_net() {
    migrate(
        Arch::Amd64,
        "virtio-nvme",
        &[
            Source {
                bus: DiskBus::Virtio,
                module: "virtio_blk",
                dev: "vda",
            },
            Source {
                bus: DiskBus::Nvme,
                module: "nvme",
                dev: "nvme0n1",
            },
        ],
        "virtio-net-pci",
        "virtio_net",
        512,
        Net::Dhcp,
    );
}

/// Also the memory floor the README states: 256 MiB.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_migrates_megasas_over_e1000e_in_256_mib() {
    migrate(
        Arch::Amd64,
        "megasas",
        &[Source {
            bus: DiskBus::Megasas,
            module: "megaraid_sas",
            dev: "sda",
        }],
        "e1000e",
        "e1000e",
        256,
        Net::Dhcp,
    );
}

/// Static `ip=` (no DHCP) and the receiver by host name through DNS.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_migrates_ide_over_rtl8139_to_a_receiver_named_in_dns() {
    migrate(
        Arch::Amd64,
        "ide",
        &[Source {
            bus: DiskBus::Ide,
            module: "ata_piix",
            dev: "sda",
        }],
        "rtl8139",
        "8139cp",
        512,
        Net::StaticByName,
    );
}

/// The 32-bit live image (`build/live --arch i386`: p2xen for i686, Debian's
/// 686 kernel) on a CPU without long mode (Core Duo, 2006: the seed's era;
/// SSE2 is the floor, see build/live), IDE disk, an e1000, 256 MiB;
/// migrated byte for byte.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_i386_migrates_ide_over_e1000_without_long_mode() {
    migrate(
        Arch::I386,
        "i386",
        &[Source {
            bus: DiskBus::Ide,
            module: "ata_piix",
            dev: "sda",
        }],
        "e1000",
        "e1000",
        256,
        Net::Dhcp,
    );
}

/// In the rescue shell the source disk and its partition are read-only in
/// the kernel (BLKROSET) and a write to them is refused; `poweroff` from the
/// shell shuts down cleanly. AHCI and e1000 (migrated in system_xen.rs).
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_shell_source_is_read_only_and_writes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixture_disk(tmp.path(), 0);
    let before = fixtures::hash_file(&img);
    let mut vm = live_vm()
        .append("quiet p2xen.mode=shell")
        .disk(&img, DiskBus::Ahci, false)
        .nic("e1000")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = vm.wait_for(READY, Duration::from_secs(240));
    eprintln!(
        "Ahci: ready marker after {:.1} s (TCG)",
        ready.as_secs_f64()
    );
    assert_loaded(&vm.log(), &["ahci", "e1000"]);
    for d in ["sda", "sda1"] {
        let line = format!("read-only: /dev/{d} (getro=1)");
        assert!(vm.log().contains(&line), "no {line:?}");
    }
    vm.wait_for("p2xen rescue shell", Duration::from_secs(60));
    vm.send(
        "echo GETRO=$(blockdev --getro /dev/sda)$(blockdev --getro /dev/sda1); ls /sys/class/net | tr '\\n' ' '; echo NETS\n",
    );
    vm.wait_for("GETRO=11", Duration::from_secs(60));
    // `ls` sorts: the NIC's eth0 comes before lo.
    vm.wait_for("eth0 lo NETS", Duration::from_secs(60));
    for d in ["sda", "sda1"] {
        vm.send(&format!(
            "dd if=/dev/zero of=/dev/{d} bs=512 count=1 conv=notrunc 2>/dev/null && echo WRITE-{d}=ok || echo WRITE-{d}=refused\n"
        ));
        vm.wait_for(&format!("WRITE-{d}=refused"), Duration::from_secs(60));
    }
    vm.send("poweroff\n");
    let status = vm.wait_exit(Duration::from_secs(120));
    assert_clean_poweroff(&vm, status);
    assert_eq!(fixtures::hash_file(&img), before, "source image changed");
}

/// Ctrl-Alt-Del is not a hard reset: it reaches PID 1 as SIGINT and ends in
/// the same clean shutdown (a reboot; QEMU's -no-reboot turns it into an exit).
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_ctrl_alt_del_reboots_cleanly() {
    let mut vm = live_vm().append("quiet p2xen.mode=shell").start().unwrap();
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
    let img = fixture_disk(tmp.path(), 0);
    let before = fixtures::hash_file(&img);
    let vm = live_vm()
        .append("quiet p2xen.server=10.0.2.2:9 p2xen.fail=poweroff")
        .disk(&img, DiskBus::Virtio, false)
        .nic("virtio-net-pci")
        .start()
        .unwrap();
    vm.wait_for(READY, Duration::from_secs(240));
    let status = vm.wait_exit(Duration::from_secs(180));
    let log = vm.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("p2xen: error:") && l.contains("10.0.2.2:9")),
        "no error naming the server"
    );
    assert!(
        log.contains("/dev/vda 64 MiB, table mbr, 1 partition(s)"),
        "no summary"
    );
    assert!(
        log.contains("#1 63 MiB ext4 \"seedroot0\""),
        "no partition line"
    );
    assert_clean_poweroff(&vm, status);
    assert_eq!(fixtures::hash_file(&img), before, "source image changed");
}

/// `p2xen.blacklist=e1000`: coldplug skips the NIC's driver, says so in its
/// summary, and the shell comes up without eth0.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_blacklisted_driver_is_not_loaded() {
    let mut vm = live_vm()
        .append("p2xen.mode=shell p2xen.blacklist=e1000")
        .nic("e1000")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for("p2xen rescue shell", Duration::from_secs(240));
    let log = vm.log();
    assert!(
        !coldplug_modules(&log).iter().any(|m| m == "e1000"),
        "e1000 loaded despite p2xen.blacklist"
    );
    let summary = log
        .lines()
        .find(|l| l.contains("module(s) loaded"))
        .unwrap_or_default();
    assert!(summary.ends_with(" | blacklisted: e1000"), "{summary}");
    assert!(log.contains("module e1000 is not loaded: p2xen.blacklist"));
    vm.send("echo $(ls /sys/class/net) NETS\n");
    vm.wait_for("\nlo NETS", Duration::from_secs(60));
    vm.send("poweroff\n");
    assert_clean_poweroff(&vm, vm.wait_exit(Duration::from_secs(60)));
}

/// A driver whose probe never returns: the third virtio disk is throttled to
/// 1 byte/s (QEMU monitor) once the kernel runs, so virtio_blk's probe blocks
/// in that disk's partition scan and `finit_module` never returns. PID 1
/// reports the stuck module and the disk that does not answer, and reaches
/// the shell with the two disks that did appear.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_stuck_driver_is_reported_and_boot_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let monitor = tmp.path().join("monitor.sock");
    let mut builder = live_vm()
        .append("p2xen.mode=shell p2xen.settle=3")
        .arg("-monitor")
        .arg(&format!("unix:{},server,nowait", monitor.display()));
    for n in 0..3 {
        let img = tmp.path().join(format!("d{n}.img"));
        fixtures::sparse_image(&img, 16 << 20);
        builder = builder.disk(&img, DiskBus::Virtio, false);
    }
    let mut vm = builder.start().unwrap_or_else(|e| panic!("{e}"));
    // Not from the start: SeaBIOS reads every disk and would hang itself.
    vm.wait_for("Linux version", Duration::from_secs(60));
    {
        use std::io::Write;
        let mut mon = std::os::unix::net::UnixStream::connect(&monitor)
            .unwrap_or_else(|e| panic!("{}: {e}", monitor.display()));
        mon.write_all(b"block_set_io_throttle disk2 1 0 0 0 0 0\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    vm.wait_for("p2xen rescue shell", Duration::from_secs(240));
    let log = vm.log();
    assert!(
        log.contains("coldplug: STUCK: module virtio_blk, loading for /sys/devices/pci0000:00/"),
        "no stuck report"
    );
    assert!(log.contains("To skip it next boot: p2xen.blacklist=virtio_blk"));
    let summary = log
        .lines()
        .find(|l| l.contains("module(s) loaded"))
        .unwrap_or_default();
    assert!(summary.contains(" | stuck: virtio_blk ("), "{summary}");
    assert!(
        log.contains("/dev/vdc: no answer after 3 s"),
        "vdc not left out"
    );
    for d in ["vda", "vdb"] {
        assert!(log.contains(&format!("read-only: /dev/{d} (getro=1)")));
    }
    assert!(log.contains(&format!("{READY} in ")));
    assert!(log.contains(": 2 source disk(s)"));
    // The machine stays usable: the shell answers.
    vm.send("echo SHELL-$((6*7))\n");
    vm.wait_for("SHELL-42", Duration::from_secs(60));
}

/// Rehearsal, then cutover: the live image migrates the server, the server
/// "runs" (a file is written on it), and the live image boots again and
/// sends only what changed; the copy then equals the source byte for byte.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_rehearsal_then_cutover_sends_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixture_disk(tmp.path(), 0);
    let fs = fixtures::at_offset(&img, 1 << 20);
    let debugfs_write = |file: &Path, to: &str| {
        let req = format!("write {} {to}", file.display());
        fixtures::run(Command::new("debugfs").args(["-w", "-R", &req]).arg(&fs));
    };
    // 16 MiB that stay as they are between the two passes.
    let bulk = tmp.path().join("bulk.bin");
    std::fs::write(&bulk, noise(77, 16 << 20)).unwrap();
    debugfs_write(&bulk, "/srv/bulk.bin");
    let name = "live-cutover";
    let boot = |receiver: &Receiver| {
        let vm = live_vm()
            .append(&format!(
                "quiet {} p2xen.name={name} p2xen.fail=poweroff",
                receiver.guest_params()
            ))
            .nic("virtio-net-pci")
            .disk(&img, DiskBus::Virtio, false)
            .hard_timeout(Duration::from_secs(600))
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = vm.wait_exit(Duration::from_secs(600));
        let log = vm.log();
        assert!(
            log.lines()
                .any(|l| l.contains("migration to 10.0.2.2:") && l.contains(" finished")),
            "the live VM did not finish the migration (serial log below)"
        );
        assert_clean_poweroff(&vm, status);
        log
    };
    let mut rehearsal = Receiver::start(tmp.path(), &["--no-convert"]);
    boot(&rehearsal);
    assert!(rehearsal.wait(Duration::from_secs(120)).success());

    // A day of service: 2 MiB of new data.
    let orders = tmp.path().join("orders.db");
    std::fs::write(&orders, noise(78, 2 << 20)).unwrap();
    debugfs_write(&orders, "/srv/orders.db");
    let changed = fixtures::hash_file(&img);

    let mut cutover = Receiver::start(tmp.path(), &["--no-convert"]);
    let log = boot(&cutover);
    assert!(cutover.wait(Duration::from_secs(120)).success());
    assert!(
        log.contains("cutover:"),
        "the second pass was not a cutover"
    );
    let dir = cutover.store.join(name);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["cutover"], true, "{report}");
    let disk = &report["disks"][0];
    let plan = disk["plan_bytes"].as_u64().unwrap();
    let unchanged = disk["unchanged_bytes"].as_u64().unwrap();
    let sent = plan - unchanged;
    eprintln!(
        "cutover: plan {} KiB, {} KiB sent, {} KiB unchanged",
        plan >> 10,
        sent >> 10,
        unchanged >> 10
    );
    // The new file, plus the chunks its metadata lives in (bitmaps, inode
    // table, directory, superblock): a few 4 MiB chunks at most.
    assert!(sent <= (2 << 20) + 3 * (4 << 20), "{report}");
    assert!(unchanged >= 12 << 20, "{report}");
    assert_eq!(
        fixtures::hash_file(&dir.join("disk0.img")),
        changed,
        "the cutover's copy differs from the source"
    );
    assert_eq!(
        fixtures::hash_file(&img),
        changed,
        "the cutover changed the source"
    );
}

/// The 32-bit live image on a Pentium III (no SSE2, which p2xen needs:
/// see src/init/cpu.rs): the console says why it stops and what to do,
/// instead of the kernel's "Attempted to kill init!" panic.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_i386_on_a_cpu_without_sse2_says_why_it_stops() {
    let vm = Arch::I386
        .live_vm()
        .i386("pentium3")
        .append("quiet")
        .hard_timeout(Duration::from_secs(240))
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let took = vm.wait_for("p2xen: this CPU has no SSE2", Duration::from_secs(200));
    eprintln!(
        "pentium3: the no-SSE2 message after {:.1} s (TCG)",
        took.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = vm.log();
    assert!(
        log.contains("Power the machine off now."),
        "the message is cut short"
    );
    assert!(
        !log.contains("Attempted to kill init"),
        "PID 1 died instead of waiting"
    );
}

/// Two source disks, each an MBR with partition 1 (type fd) holding one
/// member of an md 1.2 RAID0 (chunk 512 KiB, data after 1 MiB) whose ext4
/// the test stripes by hand: the live image assembles the array itself
/// (no kernel md) and sends it as a third disk. The received array disk
/// is the ext4 byte for byte (its free blocks were zeros), e2fsck finds it
/// clean, the members' partitions arrive zero, and the sources are unchanged.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn live_assembles_a_raid0_of_two_disks_into_one_guest_disk() {
    const MIB: u64 = 1 << 20;
    const PART: u64 = MIB;
    const PART_SIZE: u64 = 40 * MIB;
    const DATA_OFFSET: u64 = MIB;
    const CHUNK: usize = 512 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data_len = PART_SIZE - DATA_OFFSET;
    let inner = dir.join("inner.img");
    fixtures::sparse_image(&inner, 2 * data_len);
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("srv")).unwrap();
    std::fs::write(tree.join("srv/data.bin"), noise(7, 3 << 20)).unwrap();
    fixtures::mke2fs_at(&inner, "ext4", 0, 2 * data_len, Some(&tree), "stripes");
    let data = std::fs::read(&inner).unwrap();
    let mut members = vec![noise(21, PART_SIZE as usize), noise(22, PART_SIZE as usize)];
    for (g, c) in data.chunks(CHUNK).enumerate() {
        let at = DATA_OFFSET as usize + g / 2 * CHUNK;
        members[g % 2][at..at + CHUNK].copy_from_slice(c);
    }
    let mut images = Vec::new();
    for (m, bytes) in members.iter_mut().enumerate() {
        let mut sb = common::md::Sb1::raid1("1.2", PART_SIZE, m as u32);
        sb.level = 0;
        sb.chunk_size = (CHUNK / 512) as u32;
        sb.layout = 2;
        sb.dev_uuid = [0x60 + m as u8; 16];
        let (off, sbytes) = sb.build(PART_SIZE);
        bytes[off as usize..off as usize + sbytes.len()].copy_from_slice(&sbytes);
        let img = dir.join(format!("member-disk{m}.img"));
        fixtures::sparse_image(&img, 42 * MIB);
        fixtures::sfdisk(&img, "label: dos\nstart=2048, size=81920, type=fd\n");
        fixtures::patch(&img, PART, bytes);
        images.push(img);
    }
    drop(members);
    let before: Vec<String> = images.iter().map(|i| fixtures::hash_file(i)).collect();
    let mut receiver = Receiver::start(dir, &["--no-convert"]);
    let name = "live-raid0";
    let mut builder = live_vm()
        .append(&format!(
            "quiet {} p2xen.name={name} p2xen.fail=poweroff",
            receiver.guest_params()
        ))
        .memory_mib(512)
        .hard_timeout(Duration::from_secs(600))
        .nic("virtio-net-pci");
    for img in &images {
        builder = builder.disk(img, DiskBus::Virtio, false);
    }
    let vm = builder.start().unwrap_or_else(|e| panic!("{e}"));
    let status = vm.wait_exit(Duration::from_secs(600));
    assert_clean_poweroff(&vm, status);
    let received = receiver.wait(Duration::from_secs(120));
    assert!(received.success(), "p2xen receive --once: {received}");
    let out = receiver.store.join(name);
    let machine: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("machine.json")).unwrap()).unwrap();
    let array_desc = &machine["disks"][2];
    assert_eq!(
        array_desc["path"], "md raid0 array 3a1f229c:445d6e70:8192a3b4:c5d6e7f8",
        "{machine}"
    );
    assert_eq!(
        array_desc["filesystem"]["md_flattened_from"],
        "raid0 1.2 3a1f229c:445d6e70:8192a3b4:c5d6e7f8"
    );
    // The sender lists the source disks in its own order; the array comes after them.
    let array = out.join("disk2.img");
    assert_eq!(fixtures::hash_file(&array), fixtures::hash_file(&inner));
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&array)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    for i in 0..2 {
        let d = out.join(format!("disk{i}.img"));
        assert!(
            fixtures::peek(&d, PART, PART_SIZE as usize)
                .iter()
                .all(|&b| b == 0),
            "disk{i}: the member partition is not left zero"
        );
    }
    let after: Vec<String> = images.iter().map(|i| fixtures::hash_file(i)).collect();
    assert_eq!(after, before, "the migration changed a source image");
}
