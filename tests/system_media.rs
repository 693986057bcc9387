//! System tests of the boot media (build/media) under QEMU TCG: every medium on
//! BIOS (SeaBIOS) and UEFI (OVMF) must start the kernel with the boot menu's
//! command line and reach the init on the serial console.
//!
//! The media are built around a stand-in (build/media-standin: Debian's kernel,
//! a busybox /init that prints `P2XEN-STANDIN: cmdline: ...` and powers off), so
//! these tests check the boot loaders, menus and command lines themselves and
//! do not depend on the live image. Two builds: one plain (default entry
//! "Migrate (menu)"), one with `--cmdline` baked in (default "Migrate unattended").
//! Both are hybrid: a second stand-in (`--arch i386`: Debian's 686 kernel, an
//! i386 busybox) is the 32-bit kernel, which the BIOS loaders and the iPXE
//! script must boot on a CPU without long mode (`qemu-system-i386 -cpu
//! pentium3`) and never on an x86_64 one: every boot checks the kernel's
//! banner.
//!
//! Four tests boot the real live image instead: USB images with the
//! parameters of a `p2xen receive --once` on the host baked in run a whole
//! unattended migration of a fixture disk on OVMF, on OVMF with Secure Boot
//! enforced (Microsoft's keys enrolled; there the ISO must boot too and an
//! unsigned loader must be refused) and on a 32-bit CPU, and a per-MAC
//! pxelinux config does on SeaBIOS.

mod common;

use common::fixtures::{MIB, hash_file, mbr_server, run};
use common::qemu::{DiskBus, Firmware, Vm, VmBuilder};
use common::receiver::Receiver;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CONSOLE: &str = "console=tty0 console=ttyS0,115200n8";
const BAKED: &str = "ip=dhcp p2xen.server=10.0.2.2:7777 p2xen.token=t0ken-baked p2xen.fingerprint=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// What build/media puts into the per-MAC PXE examples when nothing is baked in.
const EXAMPLE_MAC_PARAMS: &str =
    "ip=dhcp p2xen.server=192.0.2.10:7777 p2xen.token=EDIT_ME p2xen.fingerprint=sha256:EDIT_ME";
const MARKER: &str = "P2XEN-STANDIN: cmdline: ";
/// The kernel's first line: `Linux version 6.1.0-57-686 (debian-kernel@...) ...`.
const BANNER: &str = "Linux version ";
/// Hard limit per VM; TCG on a loaded 2-core machine boots each medium in 25-40 s.
const VM_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `build/media` with the p2xen binary this test was built with (no nested
/// cargo build, which would rebuild much of the tree).
fn build_media() -> Command {
    let mut cmd = Command::new(repo().join("build/media"));
    cmd.env("P2XEN_BIN", env!("CARGO_BIN_EXE_p2xen"));
    cmd
}

/// `build/media` around the stand-in in `standin`, into `out`.
/// `standin` holds the amd64 stand-in, `standin/i386` the 32-bit one.
fn build_standin_media(standin: &Path, out: &Path) -> Command {
    let mut cmd = build_media();
    cmd.arg("--kernel")
        .arg(standin.join("vmlinuz"))
        .arg("--initramfs")
        .arg(standin.join("initramfs.img"))
        .arg("--kernel32")
        .arg(standin.join("i386/vmlinuz"))
        .arg("--initramfs32")
        .arg(standin.join("i386/initramfs.img"))
        .arg("--out")
        .arg(out);
    cmd
}

/// Which of a hybrid medium's kernels must boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Debian's amd64 kernel (`/p2xen/vmlinuz`), on an x86_64 CPU.
    Amd64,
    /// Debian's 686 kernel (`/p2xen/vmlinuz32`), on a CPU without long mode.
    I686,
}

impl Kernel {
    /// Checks the banner line (after `Linux version `) names this kernel's flavour.
    fn check_banner(self, what: &str, banner: &str) {
        let release = banner.split_whitespace().next().unwrap_or_default();
        let flavour = match self {
            Kernel::Amd64 => "-amd64",
            Kernel::I686 => "-686",
        };
        assert!(
            release.ends_with(flavour),
            "{what}: booted kernel {release:?} is not the {flavour} one ({BANNER}{banner})"
        );
    }
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
        run(Command::new(repo().join("build/media-standin"))
            .args(["--arch", "i386"])
            .arg(standin.join("i386")));
        let build = |out: &Path, cmdline: Option<&str>| {
            let mut cmd = build_standin_media(&standin, out);
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

/// Starts a VM that boots through `firmware` with the media in `args`.
fn start(firmware: Firmware, args: &[&str]) -> Vm {
    start_on(Vm::firmware(firmware), args)
}

/// A BIOS PC whose CPU has no long mode: a Pentium III (1999), as the issue
/// names it. The stand-in's 686 kernel and i386 busybox run on it (the live
/// image's p2xen needs SSE2, so its migration test uses a Core Duo).
fn start32(args: &[&str]) -> Vm {
    start_on(Vm::firmware(Firmware::SeaBios).i386("pentium3"), args)
}

fn start_on(vm: VmBuilder, args: &[&str]) -> Vm {
    args.iter()
        .fold(vm.memory_mib(1024).hard_timeout(VM_TIMEOUT), |vm, a| {
            vm.arg(a)
        })
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Boots the 64-bit stand-in ([`assert_boots_kernel`]).
fn assert_boots(what: &str, vm: Vm, expect: &str) -> String {
    assert_boots_kernel(what, vm, expect, Kernel::Amd64)
}

/// Boots to the stand-in init, checks the kernel's banner names `kernel`,
/// the command line the boot loader passed and that the init powered the
/// VM off; reports the time and returns the serial log. A failed check
/// prints the serial log (the VM's drop does).
fn assert_boots_kernel(what: &str, vm: Vm, expect: &str, kernel: Kernel) -> String {
    let (banner, _) = vm.wait_for_line(BANNER, VM_TIMEOUT);
    kernel.check_banner(what, &banner);
    let (cmdline, took) = vm.wait_for_line(MARKER, VM_TIMEOUT);
    eprintln!(
        "{what}: {} init reached after {:.1} s (TCG)",
        banner.split_whitespace().next().unwrap_or_default(),
        took.as_secs_f64()
    );
    let status = vm.wait_exit(VM_TIMEOUT);
    assert!(status.success(), "{what}: QEMU exited with {status}");
    assert!(
        cmdline.contains(CONSOLE) && cmdline.ends_with(expect),
        "{what}: kernel command line {cmdline:?} lacks {CONSOLE:?} or does not end with {expect:?}"
    );
    // The initramfs belongs to the kernel booted (syslinux and iPXE name it
    // in the command line, GRUB does not).
    let initrd32 = cmdline.contains("initramfs32.img ");
    assert_eq!(
        initrd32,
        kernel == Kernel::I686,
        "{what}: kernel command line {cmdline:?} for the {kernel:?} kernel"
    );
    vm.log()
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
    let vm = start(Firmware::SeaBios, &["-nic", "none", "-drive", &drive]);
    assert_boots("USB, SeaBIOS", vm, BAKED);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_boots_as_cdrom_on_seabios_with_menu_entry() {
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let vm = start(Firmware::SeaBios, &["-nic", "none", "-cdrom", &iso]);
    assert_boots("ISO, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_boots_as_cdrom_on_ovmf_with_menu_entry() {
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let vm = start(Firmware::Ovmf, &["-nic", "none", "-cdrom", &iso]);
    assert_boots("ISO, OVMF", vm, "p2xen.mode=menu");
}

/// Starts a VM that boots `bootfile` from the media's pxe/ over QEMU's
/// built-in TFTP, its e1000 NIC with `nic_opts` (such as `,bootindex=1`).
fn start_pxe(firmware: Firmware, dir: &Path, bootfile: &str, nic_opts: &str, args: &[&str]) -> Vm {
    let net = format!(
        "user,id=n,tftp={},bootfile={bootfile}",
        path(&dir.join("pxe"))
    );
    let nic = format!("e1000,netdev=n{nic_opts}");
    let mut all = vec!["-netdev", &net, "-device", &nic];
    all.extend_from_slice(args);
    start(firmware, &all)
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_pxelinux_boots_on_seabios_with_menu_entry() {
    let vm = start_pxe(
        Firmware::SeaBios,
        &media().plain,
        "pxelinux.0",
        "",
        &["-boot", "n"],
    );
    assert_boots("PXE pxelinux, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_ipxe_script_boots_on_seabios_with_menu_entry() {
    let vm = start_pxe(
        Firmware::SeaBios,
        &media().plain,
        "p2xen.ipxe",
        "",
        &["-boot", "n"],
    );
    assert_boots("PXE iPXE script, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_grub_netboot_boots_on_ovmf_with_baked_entry() {
    let vm = start_pxe(
        Firmware::Ovmf,
        &media().baked,
        "grubnetx64.efi",
        ",bootindex=1",
        &[],
    );
    assert_boots("PXE GRUB, OVMF", vm, BAKED);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_grub_netboot_picks_the_per_mac_config() {
    let vm = start_pxe(
        Firmware::Ovmf,
        &media().plain,
        "grubnetx64.efi",
        ",mac=aa:bb:cc:dd:ee:ff,bootindex=1",
        &[],
    );
    assert_boots("PXE GRUB per-MAC, OVMF", vm, EXAMPLE_MAC_PARAMS);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_written_to_a_disk_boots_on_seabios() {
    // isohybrid: the ISO dd-ed to a stick boots through its MBR (isohdpfx.bin).
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let drive = format!("file={iso},format=raw,snapshot=on");
    let vm = start(Firmware::SeaBios, &["-nic", "none", "-drive", &drive]);
    assert_boots("ISO as disk, SeaBIOS", vm, "p2xen.mode=menu");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn usb_image_boots_the_686_kernel_without_long_mode_with_baked_entry() {
    let drive = usb(&media().baked);
    let vm = start32(&["-nic", "none", "-drive", &drive]);
    assert_boots_kernel("USB, SeaBIOS, Pentium III", vm, BAKED, Kernel::I686);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_boots_the_686_kernel_without_long_mode_with_menu_entry() {
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let vm = start32(&["-nic", "none", "-cdrom", &iso]);
    assert_boots_kernel(
        "ISO, SeaBIOS, Pentium III",
        vm,
        "p2xen.mode=menu",
        Kernel::I686,
    );
}

/// A Pentium III PC booting `bootfile` from the media's pxe/ over QEMU's TFTP.
fn start_pxe32(dir: &Path, bootfile: &str) -> Vm {
    let net = format!(
        "user,id=n,tftp={},bootfile={bootfile}",
        path(&dir.join("pxe"))
    );
    start32(&["-netdev", &net, "-device", "e1000,netdev=n", "-boot", "n"])
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_pxelinux_boots_the_686_kernel_without_long_mode_with_baked_entry() {
    let vm = start_pxe32(&media().baked, "pxelinux.0");
    let what = "PXE pxelinux, SeaBIOS, Pentium III";
    assert_boots_kernel(what, vm, BAKED, Kernel::I686);
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_ipxe_script_boots_the_686_kernel_without_long_mode_with_menu_entry() {
    let vm = start_pxe32(&media().plain, "p2xen.ipxe");
    let what = "PXE iPXE script, SeaBIOS, Pentium III";
    assert_boots_kernel(what, vm, "p2xen.mode=menu", Kernel::I686);
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
    let mut cmd = build_standin_media(&standin, &m.plain);
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

/// The skip stamps cover the 32-bit inputs: another 32-bit initramfs (one
/// byte appended) rebuilds the USB image and the ISO and replaces the PXE copy.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn rebuild_with_another_32bit_initramfs_redoes_the_media() {
    media();
    let standin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media/standin");
    let tmp = tempfile::tempdir().unwrap();
    let initrd32 = tmp.path().join("initramfs32.img");
    let out = tmp.path().join("media");
    let mut bytes = fs::read(standin.join("i386/initramfs.img")).unwrap();
    fs::write(&initrd32, &bytes).unwrap();
    let build = || {
        let mut cmd = build_standin_media(&standin, &out);
        // build/media takes the last --initramfs32.
        cmd.arg("--initramfs32").arg(&initrd32);
        let result = cmd.output().unwrap();
        let log = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(result.status.success(), "{cmd:?} failed:\n{log}");
        log
    };
    build();
    bytes.push(0);
    fs::write(&initrd32, &bytes).unwrap();
    let log = build();
    for step in ["media: USB image", "media: ISO"] {
        assert!(log.contains(step), "{step} did not run again:\n{log}");
    }
    assert_eq!(fs::read(out.join("pxe/initramfs32.img")).unwrap(), bytes);
}

/// A migration from a boot medium running the real live image (`out/`,
/// made by build/live, which build/media runs when it is missing): a fixture
/// source disk (attached writable over virtio: only p2xen's own read-only
/// discipline keeps it intact) and `p2xen receive --once` on this host.
///
/// The receiver runs with `--no-convert`, so the copy must equal the source
/// byte for byte: the fixture was made in a sparse file, so every block the
/// sender skips (unused, zero) is zero in the source too, and the whole-disk
/// hash proves the sent blocks exact. The guest conversion of a received
/// copy is tested by system_xen.
struct Migration {
    tmp: tempfile::TempDir,
    source: PathBuf,
    before: String,
    receiver: Receiver,
    /// The unattended parameters for the receiver, as the medium must pass them.
    params: String,
}

impl Migration {
    fn prepare() -> Migration {
        let tmp = tempfile::tempdir().unwrap();
        let source = mbr_server(tmp.path()).image;
        let before = hash_file(&source);
        let receiver = Receiver::start(tmp.path(), &["--no-convert"]);
        // fail=poweroff: a failed migration ends the VM at once, not at the timeout.
        let params = format!(
            "ip=dhcp {} p2xen.name=stick p2xen.fail=poweroff",
            receiver.guest_params()
        );
        Migration {
            tmp,
            source,
            before,
            receiver,
            params,
        }
    }

    /// Builds the media around the live image into a fresh directory,
    /// `--cmdline` baking the parameters in when `bake`; returns the directory.
    fn build_media(&self, bake: bool) -> PathBuf {
        let media = self.tmp.path().join("media");
        let started = Instant::now();
        let mut cmd = build_media();
        if bake {
            cmd.args(["--cmdline", &self.params]);
        }
        run(cmd.arg("--out").arg(&media));
        eprintln!(
            "build/media{} (live image, all three media): {:.1} s",
            if bake { " --cmdline" } else { "" },
            started.elapsed().as_secs_f64()
        );
        media
    }

    /// A VM booting through `firmware` with the fixture disk attached.
    fn vm(&self, firmware: Firmware) -> VmBuilder {
        self.vm_on(Vm::firmware(firmware))
    }

    /// Builds the USB image with the parameters baked in and starts `vm`
    /// with it and a NIC on user networking.
    fn start_stick(&self, vm: VmBuilder) -> Vm {
        let drive = usb(&self.build_media(true));
        // romfile=: no PXE ROM, so the firmware does not try network boot before the stick.
        vm.arg("-drive")
            .arg(&drive)
            .arg("-netdev")
            .arg("user,id=n")
            .arg("-device")
            .arg("e1000,netdev=n,romfile=")
            .start()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn vm_on(&self, vm: VmBuilder) -> VmBuilder {
        vm.memory_mib(1024)
            .hard_timeout(Duration::from_secs(600))
            .disk(&self.source, DiskBus::Virtio, false)
    }

    /// Follows the VM from the kernel's start to its poweroff and checks the
    /// migration: the kernel got the console and the parameters, the live
    /// init's ready marker says `disks`, the receiver exits 0 and reports
    /// exactly the fixture, the copy equals it, and the fixture is unchanged.
    /// Returns the serial log.
    fn check(self, what: &str, vm: Vm, disks: &str) -> String {
        self.check_kernel(what, vm, disks, Kernel::Amd64)
    }

    /// [`Migration::check`], the medium's `kernel` booted.
    fn check_kernel(mut self, what: &str, vm: Vm, disks: &str, kernel: Kernel) -> String {
        let (banner, _) = vm.wait_for_line(BANNER, VM_TIMEOUT);
        kernel.check_banner(what, &banner);
        // The boot loader booted the right entry: the kernel logs what it got.
        let (cmdline, took) = vm.wait_for_line("Kernel command line: ", VM_TIMEOUT);
        eprintln!(
            "{what}: kernel started after {:.1} s (TCG)",
            took.as_secs_f64()
        );
        assert!(
            cmdline.contains(CONSOLE) && cmdline.ends_with(&self.params),
            "{what}: kernel command line {cmdline:?} lacks {CONSOLE:?} or does not end with {:?}",
            self.params
        );
        let (ready, took) = vm.wait_for_line("p2xen-live: ready", VM_TIMEOUT);
        eprintln!(
            "{what}: live init ready after {:.1} s (TCG)",
            took.as_secs_f64()
        );
        assert!(
            ready.contains(disks),
            "{what}: wrong disks at the ready marker: {ready:?}"
        );
        let status = vm.wait_exit(Duration::from_secs(600));
        eprintln!(
            "{what}: migrated and powered off after {:.1} s (TCG)",
            vm.elapsed().as_secs_f64()
        );
        // p2xen.post defaults to poweroff; with -no-reboot QEMU then exits 0.
        assert!(status.success(), "{what}: live VM: {status}");
        assert!(
            vm.log()
                .lines()
                .any(|l| l.contains("migration to 10.0.2.2:") && l.contains(" finished")),
            "{what}: the live init did not report the finished migration"
        );
        let received = self.receiver.wait(Duration::from_secs(60));
        assert!(received.success(), "p2xen receive --once: {received}");
        let log = vm.log();
        drop(vm);
        assert_eq!(
            hash_file(&self.source),
            self.before,
            "the source disk changed"
        );

        let size = fs::metadata(&self.source).unwrap().len();
        assert_eq!(size, 64 * MIB, "mbr_server's size");
        let report_path = self.tmp.path().join("store/stick/report.json");
        let report: serde_json::Value = serde_json::from_slice(
            &fs::read(&report_path).unwrap_or_else(|e| panic!("{}: {e}", report_path.display())),
        )
        .unwrap();
        assert_eq!(report["state"], "complete", "{report:#}");
        let disks = report["disks"].as_array().unwrap();
        assert_eq!(disks.len(), 1, "one disk, not the boot medium: {report:#}");
        let disk = &disks[0];
        assert_eq!(disk["source"], "/dev/vda", "{report:#}");
        assert_eq!(disk["size_bytes"], size, "{report:#}");
        assert_eq!(disk["verified"], true, "{report:#}");
        // Only the used blocks travelled, not the whole disk.
        let sent = disk["plan_bytes"].as_u64().unwrap();
        assert!(
            sent > 0 && sent < size / 2,
            "plan of {sent} bytes: {report:#}"
        );
        let target = Path::new(disk["target"].as_str().unwrap());
        assert_eq!(
            fs::metadata(target).unwrap().len(),
            size,
            "{}",
            target.display()
        );
        assert_eq!(
            hash_file(target),
            self.before,
            "the received image differs from the source"
        );
        log
    }
}

/// A stick for one job on OVMF (see [`usb_image_migrates_unattended`]).
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn usb_image_with_baked_cmdline_migrates_unattended_on_ovmf_and_leaves_its_boot_medium_alone() {
    usb_image_migrates_unattended(Firmware::Ovmf, "USB with baked cmdline, OVMF");
}

/// The same stick on a PC with Secure Boot enforced (Microsoft's keys, as
/// sold with Windows): shim, GRUB and the kernel pass the firmware's and
/// shim's checks, and under the kernel's lockdown the live init still loads
/// its (Debian-signed) modules, reads the source disk and migrates it.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn usb_image_migrates_unattended_with_secure_boot_enforced() {
    let log = usb_image_migrates_unattended(
        Firmware::OvmfSecureBoot,
        "USB with baked cmdline, OVMF Secure Boot",
    );
    assert_secure_boot("USB with baked cmdline, OVMF Secure Boot", &log);
}

/// One stick prepared for one job: a USB image built with `build/media
/// --cmdline` carrying the receiver's parameters, booted by `firmware` next
/// to the fixture. Without a keypress the baked entry boots (its command
/// line is checked as in the stand-in tests, so this also stands for "USB
/// image, UEFI, baked entry"), the live init takes the fixture as the only
/// source and leaves its boot medium (/dev/sda) alone, migrates it and
/// powers off. Returns the serial log.
fn usb_image_migrates_unattended(firmware: Firmware, what: &str) -> String {
    let m = Migration::prepare();
    let vm = m.start_stick(m.vm(firmware));
    m.check(
        what,
        vm,
        "1 source disk(s), boot medium /dev/sda left alone",
    )
}

/// What Debian's kernel logs on the serial console when the firmware booted
/// it with Secure Boot on: its EFI stub sees it, and the kernel then locks
/// itself down (integrity mode: unsigned modules, /dev/mem, kexec of
/// unsigned kernels and the like are refused).
const SECURE_BOOT_LINES: [&str; 3] = [
    "EFI stub: UEFI Secure Boot is enabled.",
    "secureboot: Secure boot enabled",
    "Kernel is locked down from EFI Secure Boot",
];

/// The kernel in `log` ran with Secure Boot on, and nothing ran into its
/// lockdown but the kernel itself at boot: the kernel logs every refusal as
/// `Lockdown: COMM: WHAT is restricted`, and the only expected one is
/// `swapper/0: hibernation`, its own check while starting.
fn assert_secure_boot(what: &str, log: &str) {
    let missing: Vec<&str> = SECURE_BOOT_LINES
        .into_iter()
        .filter(|l| !log.contains(l))
        .collect();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Lockdown: ") && !l.contains("Lockdown: swapper/"))
        .collect();
    if !missing.is_empty() || !refused.is_empty() {
        eprintln!("--- {what}: serial log ---\n{log}");
    }
    assert!(missing.is_empty(), "{what}: no {missing:?} on the console");
    assert!(refused.is_empty(), "{what}: lockdown refused {refused:?}");
}

#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn iso_boots_as_cdrom_with_secure_boot_enforced() {
    let iso = path(&media().plain.join("p2xen-x86_64.iso"));
    let vm = start(Firmware::OvmfSecureBoot, &["-nic", "none", "-cdrom", &iso]);
    let log = assert_boots("ISO, OVMF Secure Boot", vm, "p2xen.mode=menu");
    assert_secure_boot("ISO, OVMF Secure Boot", &log);
}

const UNSIGNED_MARKER: &str = "P2XEN-UNSIGNED-LOADER-RAN";

/// A disk whose ESP holds an unsigned fallback loader: a GRUB made by
/// grub-mkimage, as build/media's UEFI loader was before the signed chain,
/// that prints [`UNSIGNED_MARKER`] and powers off.
fn unsigned_loader_disk(dir: &Path) -> PathBuf {
    let cfg = dir.join("embed.cfg");
    fs::write(&cfg, format!("echo {UNSIGNED_MARKER}\nhalt\n")).unwrap();
    let efi = dir.join("unsigned.efi");
    run(Command::new("grub-mkimage")
        .args([
            "-O",
            "x86_64-efi",
            "-d",
            "/usr/lib/grub/x86_64-efi",
            "-p",
            "/none",
            "-c",
        ])
        .arg(&cfg)
        .arg("-o")
        .arg(&efi)
        .args(["echo", "halt"]));
    let disk = dir.join("esp.img");
    run(Command::new("mkfs.vfat").arg("-C").arg(&disk).arg("4096"));
    let mtools = |tool: &str, args: &[&str]| {
        run(Command::new(tool)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&disk)
            .args(args));
    };
    mtools("mmd", &["::/EFI", "::/EFI/BOOT"]);
    mtools("mcopy", &[&path(&efi), "::/EFI/BOOT/BOOTX64.EFI"]);
    disk
}

/// The Secure Boot firmware of the tests above really checks signatures:
/// an unsigned loader that plain OVMF starts is refused, and the firmware
/// says why.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn secure_boot_firmware_refuses_an_unsigned_loader_that_plain_ovmf_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = unsigned_loader_disk(tmp.path());
    let drive = format!("file={},format=raw,snapshot=on", path(&disk));
    let args = ["-nic", "none", "-drive", &drive];

    // Without Secure Boot the loader runs: the disk is bootable, so the
    // refusal below comes from the signature check.
    let vm = start(Firmware::Ovmf, &args);
    let took = vm.wait_for(UNSIGNED_MARKER, VM_TIMEOUT);
    eprintln!(
        "unsigned loader, OVMF: ran after {:.1} s",
        took.as_secs_f64()
    );
    let status = vm.wait_exit(VM_TIMEOUT);
    assert!(
        status.success(),
        "unsigned loader, OVMF: QEMU exited with {status}"
    );

    let vm = start(Firmware::OvmfSecureBoot, &args);
    let took = vm.wait_for(
        "BdsDxe: No bootable option or device was found.",
        VM_TIMEOUT,
    );
    eprintln!(
        "unsigned loader, OVMF Secure Boot: no boot option left after {:.1} s",
        took.as_secs_f64()
    );
    let log = vm.log();
    let disk_line = log
        .lines()
        .find(|l| l.contains("BdsDxe: failed to load ") && l.contains("HARDDISK"));
    assert!(
        disk_line.is_some_and(|l| l.trim_end().ends_with(": Access Denied")),
        "OVMF Secure Boot: the disk's boot option was not denied: {disk_line:?}"
    );
    assert!(
        !log.contains(UNSIGNED_MARKER),
        "OVMF Secure Boot: the unsigned loader ran"
    );
}

/// A rack served by PXE: the plain bundle (default entry "Migrate (menu)")
/// plus one per-MAC pxelinux config made the documented way, from the
/// bundle's example with the receiver's parameters put in. SeaBIOS boots
/// over the network with that MAC; pxelinux must pick the per-MAC config
/// (the default one would start the menu and never migrate), and the live
/// init migrates the fixture.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn pxe_pxelinux_per_mac_config_migrates_unattended_on_seabios() {
    let m = Migration::prepare();
    let pxe = m.build_media(false).join("pxe");
    let example = fs::read_to_string(pxe.join("pxelinux.cfg/01-aa-bb-cc-dd-ee-ff")).unwrap();
    // Twice: the unattended entry for the 64-bit kernel and its 32-bit twin.
    assert_eq!(
        example.matches(EXAMPLE_MAC_PARAMS).count(),
        2,
        "the per-MAC example lacks {EXAMPLE_MAC_PARAMS:?}:\n{example}"
    );
    fs::write(
        pxe.join("pxelinux.cfg/01-52-54-00-12-34-56"),
        example.replace(EXAMPLE_MAC_PARAMS, &m.params),
    )
    .unwrap();
    let net = format!("user,id=n,tftp={},bootfile=pxelinux.0", path(&pxe));
    let vm = m
        .vm(Firmware::SeaBios)
        .arg("-netdev")
        .arg(&net)
        .arg("-device")
        .arg("e1000,netdev=n,mac=52:54:00:12:34:56")
        .arg("-boot")
        .arg("n")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    m.check("PXE pxelinux per-MAC, SeaBIOS", vm, "1 source disk(s)");
}

/// The same kind of stick on a 32-bit server: the hybrid USB image (the
/// live image's out/ and out/i386) with the receiver's parameters baked in,
/// on SeaBIOS and a Core Duo (no long mode; the 32-bit p2xen needs SSE2,
/// which a Pentium III lacks). ifcpu64.c32 must pick the baked entry's
/// 32-bit twin on timeout, and the 686 live image migrates the fixture.
#[test]
#[ignore = "system test (QEMU): run by build/test"]
fn hybrid_usb_image_with_baked_cmdline_migrates_unattended_on_a_32bit_cpu() {
    // build/media takes the 32-bit pair from there; without it the media are 64-bit only.
    for f in ["out/i386/vmlinuz", "out/i386/initramfs.img"] {
        assert!(
            repo().join(f).exists(),
            "{f} missing: run build/live --arch i386"
        );
    }
    let m = Migration::prepare();
    let vm = m.start_stick(m.vm_on(Vm::firmware(Firmware::SeaBios).i386("coreduo")));
    m.check_kernel(
        "hybrid USB with baked cmdline, SeaBIOS, Core Duo",
        vm,
        "1 source disk(s), boot medium /dev/sda left alone",
        Kernel::I686,
    );
}
