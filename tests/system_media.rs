//! System tests of the boot media (build/media) under QEMU TCG: every medium on
//! BIOS (SeaBIOS) and UEFI (OVMF) must start the kernel with the boot menu's
//! command line and reach the init on the serial console.
//!
//! The media are built around a stand-in (build/media-standin: Debian's kernel,
//! a busybox /init that prints `P2XEN-STANDIN: cmdline: ...` and powers off), so
//! these tests check the boot loaders, menus and command lines themselves and
//! do not depend on the live image. Two builds: one plain (default entry
//! "Migrate (menu)"), one with `--cmdline` baked in (default "Migrate unattended").
//!
//! The VM runner here is small on purpose; when `tests/common/qemu.rs` (branch
//! live) lands, it should replace `Vm`.

mod common;

use common::fixtures::{MIB, hash_file, run, sfdisk, sparse_image};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CONSOLE: &str = "console=tty0 console=ttyS0,115200n8";
const BAKED: &str = "ip=dhcp p2xen.server=10.0.2.2:7777 p2xen.token=t0ken-baked p2xen.fingerprint=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// What build/media puts into the per-MAC PXE examples when nothing is baked in.
const EXAMPLE_MAC_PARAMS: &str =
    "ip=dhcp p2xen.server=192.0.2.10:7777 p2xen.token=EDIT_ME p2xen.fingerprint=sha256:EDIT_ME";
const MARKER: &str = "P2XEN-STANDIN: cmdline: ";
/// Hard limit per VM; TCG on a loaded 2-core machine boots each medium in 25-40 s.
const VM_TIMEOUT: Duration = Duration::from_secs(300);
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Media {
    plain: PathBuf,
    baked: PathBuf,
}

/// Builds both media sets once per test process (build/media skips unchanged steps).
fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media");
        let standin = base.join("standin");
        run(Command::new(repo().join("build/media-standin")).arg(&standin));
        let build = |out: &Path, cmdline: Option<&str>| {
            let mut cmd = Command::new(repo().join("build/media"));
            cmd.arg("--kernel")
                .arg(standin.join("vmlinuz"))
                .arg("--initramfs")
                .arg(standin.join("initramfs.img"))
                .arg("--out")
                .arg(out);
            if let Some(c) = cmdline {
                cmd.args(["--cmdline", c]);
            }
            run(&mut cmd);
        };
        let media = Media {
            plain: base.join("plain"),
            baked: base.join("baked"),
        };
        build(&media.plain, None);
        build(&media.baked, Some(BAKED));
        media
    })
}

enum Firmware {
    SeaBios,
    Ovmf,
}

/// One QEMU VM; killed on drop, serial console logged to a file.
struct Vm {
    child: Child,
    log: PathBuf,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Vm {
    fn start(firmware: Firmware, args: &[&str]) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-monitor", "none", "-serial"])
        .arg(format!("file:{}", log.display()));
        if let Firmware::Ovmf = firmware {
            let vars = dir.path().join("OVMF_VARS.fd");
            fs::copy(OVMF_VARS, &vars)
                .unwrap_or_else(|e| panic!("{OVMF_VARS}: {e} (install Debian package ovmf)"));
            cmd.arg("-drive")
                .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {cmd:?}: {e} (install Debian package qemu-system-x86)")
        });
        Vm {
            child,
            log,
            started: Instant::now(),
            _dir: dir,
        }
    }

    fn serial(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why} after {:?}\n----- serial log -----\n{}\n----- end -----",
            self.started.elapsed(),
            self.serial()
        )
    }

    /// Waits until a serial line contains `needle` followed by a line break;
    /// returns the rest of that line and the time it took. Fails on exit or timeout.
    fn wait_for(&mut self, needle: &str) -> (String, Duration) {
        loop {
            let log = self.serial();
            if let Some((_, rest)) = log.split_once(needle) {
                if let Some((line, _)) = rest.split_once('\n') {
                    return (line.trim().to_string(), self.started.elapsed());
                }
            }
            match self.child.try_wait() {
                Ok(Some(status)) => self.fail(&format!("QEMU exited ({status}) before {needle:?}")),
                Ok(None) => {}
                Err(e) => self.fail(&format!("waiting for QEMU: {e}")),
            }
            if self.started.elapsed() > VM_TIMEOUT {
                self.fail(&format!("timeout waiting for {needle:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the stand-in init's command line, then for the VM to power off.
    fn boot_to_init(&mut self) -> (String, Duration) {
        let reached = self.wait_for(MARKER);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return reached,
                Ok(Some(status)) => self.fail(&format!("QEMU exited with {status}")),
                Ok(None) => {}
                Err(e) => self.fail(&format!("waiting for QEMU: {e}")),
            }
            if self.started.elapsed() > VM_TIMEOUT {
                self.fail("timeout: the init did not power off");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots, checks the command line the boot loader passed, reports the time.
fn assert_boots(what: &str, mut vm: Vm, expect: &str) {
    let (cmdline, took) = vm.boot_to_init();
    eprintln!(
        "{what}: init reached after {:.1} s (TCG)",
        took.as_secs_f64()
    );
    if !cmdline.contains(CONSOLE) || !cmdline.ends_with(expect) {
        vm.fail(&format!(
            "{what}: kernel command line {cmdline:?} lacks {CONSOLE:?} or does not end with {expect:?}"
        ));
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn usb(dir: &Path) -> String {
    // snapshot=on: the test never changes the built image.
    format!(
        "file={},format=raw,snapshot=on",
        path(&dir.join("p2xen-x86_64.img"))
    )
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn usb_image_boots_on_seabios_with_baked_unattended_entry() {
    let m = media();
    let drive = usb(&m.baked);
    let vm = Vm::start(Firmware::SeaBios, &["-nic", "none", "-drive", &drive]);
    assert_boots("USB, SeaBIOS", vm, BAKED);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn usb_image_boots_on_ovmf_with_baked_unattended_entry() {
    let m = media();
    let drive = usb(&m.baked);
    let vm = Vm::start(Firmware::Ovmf, &["-nic", "none", "-drive", &drive]);
    assert_boots("USB, OVMF", vm, BAKED);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_boots_as_cdrom_on_seabios_with_menu_entry() {
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let vm = Vm::start(Firmware::SeaBios, &["-nic", "none", "-cdrom", &iso]);
    assert_boots("ISO, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_boots_as_cdrom_on_ovmf_with_menu_entry() {
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let vm = Vm::start(Firmware::Ovmf, &["-nic", "none", "-cdrom", &iso]);
    assert_boots("ISO, OVMF", vm, "p2xen.mode=menu");
}

fn pxe_net(dir: &Path, bootfile: &str) -> String {
    format!(
        "user,id=n,tftp={},bootfile={bootfile}",
        path(&dir.join("pxe"))
    )
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_pxelinux_boots_on_seabios_with_menu_entry() {
    let net = pxe_net(&media().plain, "pxelinux.0");
    let vm = Vm::start(
        Firmware::SeaBios,
        &["-netdev", &net, "-device", "e1000,netdev=n", "-boot", "n"],
    );
    assert_boots("PXE pxelinux, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_pxelinux_picks_the_per_mac_config() {
    let net = pxe_net(&media().plain, "pxelinux.0");
    let vm = Vm::start(
        Firmware::SeaBios,
        &[
            "-netdev",
            &net,
            "-device",
            "e1000,netdev=n,mac=aa:bb:cc:dd:ee:ff",
            "-boot",
            "n",
        ],
    );
    assert_boots("PXE pxelinux per-MAC, SeaBIOS", vm, EXAMPLE_MAC_PARAMS);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_ipxe_script_boots_on_seabios_with_menu_entry() {
    let net = pxe_net(&media().plain, "p2xen.ipxe");
    let vm = Vm::start(
        Firmware::SeaBios,
        &["-netdev", &net, "-device", "e1000,netdev=n", "-boot", "n"],
    );
    assert_boots("PXE iPXE script, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_grub_netboot_boots_on_ovmf_with_baked_entry() {
    let net = pxe_net(&media().baked, "grubnetx64.efi");
    let vm = Vm::start(
        Firmware::Ovmf,
        &["-netdev", &net, "-device", "e1000,netdev=n,bootindex=1"],
    );
    assert_boots("PXE GRUB, OVMF", vm, BAKED);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_grub_netboot_picks_the_per_mac_config() {
    let net = pxe_net(&media().plain, "grubnetx64.efi");
    let vm = Vm::start(
        Firmware::Ovmf,
        &[
            "-netdev",
            &net,
            "-device",
            "e1000,netdev=n,mac=aa:bb:cc:dd:ee:ff,bootindex=1",
        ],
    );
    assert_boots("PXE GRUB per-MAC, OVMF", vm, EXAMPLE_MAC_PARAMS);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_written_to_a_disk_boots_on_seabios() {
    // isohybrid: the ISO dd-ed to a stick boots through its MBR (isohdpfx.bin).
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let drive = format!("file={iso},format=raw,snapshot=on");
    let vm = Vm::start(Firmware::SeaBios, &["-nic", "none", "-drive", &drive]);
    assert_boots("ISO as disk, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn rebuild_with_nothing_changed_skips_every_step() {
    let m = media();
    let before = fs::metadata(m.plain.join("p2xen-x86_64.img"))
        .and_then(|md| md.modified())
        .unwrap();
    let standin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media/standin");
    let started = Instant::now();
    let mut cmd = Command::new(repo().join("build/media"));
    cmd.arg("--kernel")
        .arg(standin.join("vmlinuz"))
        .arg("--initramfs")
        .arg(standin.join("initramfs.img"))
        .arg("--out")
        .arg(&m.plain);
    let result = cmd.output().unwrap();
    // Steps report on stderr, the size lines go to stdout.
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stderr),
        String::from_utf8_lossy(&result.stdout)
    );
    assert!(result.status.success(), "{cmd:?} failed:\n{out}");
    eprintln!(
        "no-change rebuild: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for step in ["media: USB image", "media: ISO", "media: GRUB"] {
        assert!(!out.contains(step), "{step} ran again:\n{out}");
    }
    let after = fs::metadata(m.plain.join("p2xen-x86_64.img"))
        .and_then(|md| md.modified())
        .unwrap();
    assert_eq!(before, after);
    assert!(out.contains("p2xen-x86_64.img  "), "no size line:\n{out}");
}

/// The real live image (build/live, which build/media runs when `out/` lacks
/// it) on the USB image next to a fixture source disk: SeaBIOS boots it to the
/// live init's ready marker, the init counts only the fixture as a source and
/// leaves its own boot medium alone, and the fixture is unchanged.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn usb_image_boots_the_live_environment_which_leaves_its_boot_medium_alone() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media/live");
    run(Command::new(repo().join("build/media"))
        .arg("--out")
        .arg(&out));
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.img");
    sparse_image(&source, 64 * MIB);
    sfdisk(&source, "label: dos\n,,L\n");
    let before = hash_file(&source);

    let disk = format!("file={},format=raw,if=virtio", path(&source));
    let drive = usb(&out);
    let mut vm = Vm::start(
        Firmware::SeaBios,
        &["-nic", "none", "-drive", &drive, "-drive", &disk],
    );
    let (ready, took) = vm.wait_for("p2xen-live: ready");
    eprintln!(
        "USB with live image, SeaBIOS: ready after {:.1} s (TCG)",
        took.as_secs_f64()
    );
    if !ready.contains("1 source disk(s), boot medium /dev/sda left alone") {
        vm.fail(&format!("wrong disks at the ready marker: {ready:?}"));
    }
    drop(vm);
    assert_eq!(hash_file(&source), before, "the source disk changed");
}
