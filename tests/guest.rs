//! Guest conversion on fixture copies built here with the real tools:
//! (a) the seed's 2006 server (MBR, ext3 on hda1, sysvinit, grub legacy),
//! (b) a modern Debian (GPT, ext4 by UUID, systemd, grub2),
//! (c) one half of an md RAID1 (metadata 1.0, ext4 inside),
//! (d) a host-only initrd without xen-blkfront (initramfs-tools and dracut).
//! Every test keeps the "source" image apart and checks it is unchanged.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::{
    MIB, blkid_probe, dd_into, debugfs, hash_file, hash_range, mkswap_at, need, p2xen, patch, peek,
    run, run_stdin, sfdisk, sparse_image, tool, write_tree,
};
use p2xen::guest::{self, ConversionReport, ConvertRequest, FixupKind, Layout, Machine, XenType};

/// An initrd: an uncompressed early (microcode) cpio, then the main cpio
/// compressed with `compressor`, as Debian builds them.
fn initrd(dir: &Path, files: &[&str], compressor: &str) -> Vec<u8> {
    let files: Vec<(&str, &str)> = files.iter().map(|f| (*f, "module")).collect();
    initrd_with(dir, &files, compressor)
}

/// [`initrd`] with the content of each file given.
fn initrd_with(dir: &Path, files: &[(&str, &str)], compressor: &str) -> Vec<u8> {
    let cpio = |root: &Path, files: &[(&str, &str)]| -> Vec<u8> {
        for (n, data) in files {
            let p = root.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        }
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        need("cpio", "cpio");
        run_stdin(
            Command::new("cpio")
                .args(["-o", "-H", "newc", "--quiet"])
                .current_dir(root),
            names.join("\n").as_bytes(),
        )
        .stdout
    };
    let early = dir.join("early");
    let main = dir.join("main");
    let mut img = cpio(
        &early,
        &[("kernel/x86/microcode/GenuineIntel.bin", "ucode")],
    );
    let body = cpio(&main, files);
    // The Debian package is named like the compressor (gzip, zstd).
    need(compressor, compressor);
    let out = run_stdin(Command::new(compressor).arg("-c"), &body);
    img.extend(out.stdout);
    img
}

/// An ext filesystem of `size` bytes made from `dir` (mke2fs -d) with the
/// given UUID, then written into `disk` at `off`; `label` set with e2label.
fn mkfs_into(
    disk: &Path,
    off: u64,
    kind: &str,
    dir: &Path,
    size: u64,
    uuid: &str,
    label: Option<&str>,
) {
    let img = disk.with_extension(format!("part{off}.img"));
    tool(
        "mke2fs",
        "e2fsprogs",
        &[
            "-q",
            "-F",
            "-t",
            kind,
            "-U",
            uuid,
            "-d",
            &dir.to_string_lossy(),
            &img.to_string_lossy(),
            &format!("{}k", size / 1024),
        ],
    );
    if let Some(label) = label {
        tool("e2label", "e2fsprogs", &[&img.to_string_lossy(), label]);
    }
    dd_into(disk, off, &img);
    std::fs::remove_file(&img).unwrap();
}

/// A 64 MiB sparse source disk in `dir` partitioned by an sfdisk script.
fn source_disk(dir: &Path, table: &str) -> PathBuf {
    let src = dir.join("source.img");
    sparse_image(&src, 64 * MIB);
    sfdisk(&src, table);
    src
}

/// A file inside an ext filesystem of an image, read with debugfs (no mount).
fn guest_file(img: &Path, off: u64, path: &str) -> Option<String> {
    let out = debugfs(img, off, &format!("cat {path}"));
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("not found") {
        None
    } else {
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn guest_stat(img: &Path, off: u64, path: &str) -> String {
    let out = debugfs(img, off, &format!("stat {path}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// xl.cfg keys: `key = "string"`, `key = 123`, `key = [ 'a', 'b' ]`.
fn parse_xl(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut map = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("not key = value: {l}"));
        let (k, v) = (k.trim().to_string(), v.trim());
        if v.starts_with('[') {
            let mut body = v.trim_start_matches('[').to_string();
            while !body.contains(']') {
                body.push_str(lines.next().expect("unterminated list"));
            }
            let items = body
                .trim_end()
                .trim_end_matches(']')
                .split('\'')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s.to_string())
                .collect();
            map.insert(k, items);
        } else if let Some(s) = v.strip_prefix('"') {
            map.insert(
                k,
                vec![s.strip_suffix('"').expect("closing quote").to_string()],
            );
        } else {
            assert!(v.parse::<u64>().is_ok(), "{k}: {v}");
            map.insert(k, vec![v.to_string()]);
        }
    }
    map
}

struct Fixture {
    _tmp: tempfile::TempDir,
    source: PathBuf,
    source_sha: String,
    store: PathBuf,
    xen_dir: PathBuf,
}

impl Fixture {
    /// Copies the source image into STORE/NAME/disk0.img with machine.json.
    fn new(tmp: tempfile::TempDir, source: PathBuf, name: &str, machine: &str) -> Self {
        let store = tmp.path().join("store").join(name);
        std::fs::create_dir_all(&store).unwrap();
        std::fs::copy(&source, store.join("disk0.img")).unwrap();
        std::fs::write(store.join("machine.json"), machine).unwrap();
        std::fs::write(store.join("report.json"), r#"{"copy":{"verified":true}}"#).unwrap();
        let xen_dir = tmp.path().join("xen");
        Fixture {
            source_sha: hash_file(&source),
            source,
            store,
            xen_dir,
            _tmp: tmp,
        }
    }

    fn request(&self, name: &str) -> ConvertRequest {
        ConvertRequest::from_store(self.store.clone(), name, self.xen_dir.clone()).unwrap()
    }

    fn disk(&self) -> PathBuf {
        self.store.join("disk0.img")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        assert_eq!(
            hash_file(&self.source),
            self.source_sha,
            "source image changed"
        );
    }
}

/// The conversion run again over its own config (`--force`).
fn convert_again(fx: &Fixture, name: &str) -> ConversionReport {
    let mut req = fx.request(name);
    req.force = true;
    guest::convert(&req).unwrap()
}

fn diff_of<'a>(r: &'a ConversionReport, file: &str) -> &'a str {
    &r.fixups
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("no fix-up of {file}: {:#?}", r.fixups))
        .diff
}

// ---------------------------------------------------------------- (a) seed

const SEED_FSTAB: &str = "# /etc/fstab: static file system information.
proc            /proc           proc    defaults        0       0
/dev/hda1       /               ext3    defaults,errors=remount-ro 0       1
/dev/hda2       none            swap    sw              0       0
/dev/hdc        /media/cdrom0   udf,iso9660 user,noauto     0       0
/dev/fd0        /media/floppy0  auto    rw,user,noauto  0       0
";
const SEED_MENU: &str = "default 0
timeout 5
# kopt=root=/dev/hda1 ro
title Debian GNU/Linux, kernel 2.6.18-6-xen-686
root (hd0,0)
kernel /boot/vmlinuz-2.6.18-6-xen-686 root=/dev/hda1 ro
initrd /boot/initrd.img-2.6.18-6-xen-686
";
const SEED_INITTAB: &str = "id:2:initdefault:
si::sysinit:/etc/init.d/rcS
1:2345:respawn:/sbin/getty 38400 tty1
2:23:respawn:/sbin/getty 38400 tty2
";
const SEED_ROOT_UUID: &str = "5eed0000-0000-4000-8000-000000000001";
const P1: u64 = MIB;
const P1_SIZE: u64 = 40 * MIB;
const P2: u64 = 41 * MIB;
const P2_SIZE: u64 = 16 * MIB;

fn seed() -> Fixture {
    seed_with(
        SEED_FSTAB,
        SEED_MENU,
        "alias eth0 8139too\nalias scsi_hostadapter aha1740\nalias char-major-10-135 rtc\n",
    )
}

/// The seed server with its own fstab, menu.lst and modules.conf.
fn seed_with(fstab: &str, menu: &str, modules_conf: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let initrd_img = initrd(
        &tmp.path().join("ird"),
        &["lib/modules/2.6.18-6-xen-686/kernel/fs/ext3/ext3.ko"],
        "gzip",
    );
    write_tree(
        &root,
        &[
            ("/etc/fstab", fstab),
            ("/etc/modules.conf", modules_conf),
            ("/etc/inittab", SEED_INITTAB),
            ("/etc/securetty", "console\ntty1\ntty2\n"),
            (
                "/etc/udev/rules.d/z25_persistent-net.rules",
                "SUBSYSTEM==\"net\", ATTRS{address}==\"00:0c:29:ab:cd:ef\", NAME=\"eth0\"\n",
            ),
            ("/etc/init.d/smartmontools", "#!/bin/sh\n"),
            ("/etc/rc2.d/S20smartmontools", "->../init.d/smartmontools"),
            ("/etc/rc2.d/S10sysklogd", "->../init.d/sysklogd"),
            ("/boot/grub/menu.lst", menu),
            ("/boot/vmlinuz-2.6.18-6-xen-686", "kernel-image"),
            (
                "/boot/config-2.6.18-6-xen-686",
                "CONFIG_X86_32=y\nCONFIG_XEN=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\nCONFIG_XEN_NETDEV_FRONTEND=y\n",
            ),
            ("/sbin/init", "sysvinit"),
        ],
    );
    std::fs::write(root.join("boot/initrd.img-2.6.18-6-xen-686"), initrd_img).unwrap();
    let src = source_disk(
        tmp.path(),
        "label: dos\nstart=2048, size=81920, type=83, bootable\nstart=83968, size=32768, type=82\n",
    );
    mkfs_into(&src, P1, "ext3", &root, P1_SIZE, SEED_ROOT_UUID, None);
    mkswap_at(&src, P2, P2_SIZE, None);
    let machine = format!(
        r#"{{"name":"seed","hostname":"seed","cpus":1,"memory_bytes":268435456,
  "nics":[{{"name":"eth0","mac":"00:0C:29:AB:CD:EF","driver":"8139too"}}],
  "disks":[{{"path":"/dev/sda","size_bytes":{},"table":"mbr","model":"ST380011A",
    "partitions":[
      {{"number":1,"start_bytes":{P1},"size_bytes":{P1_SIZE},"type_id":"0x83","type_name":"Linux","bootable":true,
        "filesystem":{{"type":"ext3","uuid":"{SEED_ROOT_UUID}","label":null}},
        "os":{{"pretty_name":"Debian GNU/Linux 4.0","id":"debian","init_system":"sysvinit","fstab":[],"kernels":["vmlinuz-2.6.18-6-xen-686"]}}}},
      {{"number":2,"start_bytes":{P2},"size_bytes":{P2_SIZE},"type_id":"0x82","filesystem":{{"type":"swap"}}}}]}}],
  "options":{{"layout":"disk","type":null,"bridge":null,"memory_mib":null,"vcpus":null}}}}"#,
        64 * MIB
    );
    Fixture::new(tmp, src, "seed", &machine)
}

/// The seed's servers on Compaq/HP Smart Array (cciss, cpqarray) and
/// Mylex (DAC960) boards name their disks `/dev/cciss/c0d0p1`,
/// `/dev/ida/c0d0p1`, `/dev/rd/c0d0p1`: the guest's names are xvd ones.
#[test]
fn raid_controller_device_names_map_to_xvd() {
    for (dir, driver) in [("cciss", "cciss"), ("ida", "cpqarray"), ("rd", "DAC960")] {
        let fstab =
            format!("/dev/{dir}/c0d0p1 / ext3 defaults 0 1\n/dev/{dir}/c0d0p2 none swap sw 0 0\n");
        let menu = SEED_MENU.replace("/dev/hda1", &format!("/dev/{dir}/c0d0p1"));
        let fx = seed_with(&fstab, &menu, &format!("alias scsi_hostadapter {driver}\n"));
        guest::convert(&fx.request("seed")).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let img = fx.disk();
        assert_eq!(
            guest_file(&img, P1, "/etc/fstab").unwrap(),
            "/dev/xvda1 / ext3 defaults 0 1\n/dev/xvda2 none swap sw 0 0\n",
            "{dir}"
        );
        let menu = guest_file(&img, P1, "/boot/grub/menu.lst").unwrap();
        assert!(
            menu.contains(
                "kernel /boot/vmlinuz-2.6.18-6-xen-686 root=/dev/xvda1 ro console=hvc0\n"
            ),
            "{dir}: {menu}"
        );
        assert_eq!(
            guest_file(&img, P1, "/etc/modules.conf").unwrap(),
            format!("# p2xen: hardware not present under Xen: alias scsi_hostadapter {driver}\n"),
            "{dir}"
        );
    }
}

/// A dom0 kernel with its modules, as `--guest-kernel` takes it: the
/// files are stand-ins (the conversion copies, it does not run them).
fn supplied_kernel(dir: &Path, module_bytes: usize) -> guest::supplied_kernel::SuppliedKernel {
    let m = dir.join("lib/modules/6.1.0-57-amd64");
    std::fs::create_dir_all(m.join("kernel/drivers/block")).unwrap();
    std::fs::write(
        m.join("modules.dep"),
        "kernel/drivers/block/xen-blkfront.ko:\n",
    )
    .unwrap();
    std::fs::write(
        m.join("kernel/drivers/block/xen-blkfront.ko"),
        "blkfront".repeat(module_bytes / 8),
    )
    .unwrap();
    std::fs::write(dir.join("vmlinuz-6.1.0-57-amd64"), "dom0-kernel-image").unwrap();
    std::fs::write(dir.join("initrd.img-6.1.0-57-amd64"), "dom0-initrd").unwrap();
    guest::supplied_kernel::SuppliedKernel::resolve(
        dir.join("vmlinuz-6.1.0-57-amd64").to_str().unwrap(),
        Some(&dir.join("initrd.img-6.1.0-57-amd64")),
        Some(&m),
    )
    .unwrap()
}

/// The seed's 32-bit 2.6.18 kernel cannot run under today's Xen: dom0
/// boots a supplied kernel, whose modules go into the guest's /lib/modules.
#[test]
fn seed_server_boots_a_supplied_kernel() {
    let fx = seed();
    let dom0 = fx.store.parent().unwrap().join("dom0");
    let mut req = fx.request("seed");
    req.policy.guest_kernel = Some(supplied_kernel(&dom0, 4096));
    let rep = guest::convert(&req).unwrap();
    assert_eq!(rep.boot_route, "supplied-kernel");
    assert_eq!(rep.xen_type, XenType::Pv);
    assert!(
        rep.boot_reason.starts_with("--guest-kernel: dom0 boots ")
            && rep.boot_reason.contains(
                "(6.1.0-57-amd64), its modules installed into the guest's /lib/modules/6.1.0-57-amd64"
            ),
        "{}",
        rep.boot_reason
    );
    assert!(
        !rep.warnings.iter().any(|w| w.contains("2.6.18")),
        "warnings about the replaced kernel: {:?}",
        rep.warnings
    );
    let xl = parse_xl(&rep.config);
    let kernel = PathBuf::from(&xl["kernel"][0]);
    assert!(kernel.starts_with(std::path::absolute(&fx.store).unwrap().join("boot")));
    assert_eq!(std::fs::read(&kernel).unwrap(), b"dom0-kernel-image");
    assert_eq!(std::fs::read(&xl["ramdisk"][0]).unwrap(), b"dom0-initrd");
    assert_eq!(xl["root"], ["/dev/xvda1 ro"]);
    assert!(
        rep.config.contains("boot route supplied-kernel"),
        "{}",
        rep.config
    );
    let img = fx.disk();
    assert_eq!(
        guest_file(
            &img,
            P1,
            "/lib/modules/6.1.0-57-amd64/kernel/drivers/block/xen-blkfront.ko"
        )
        .unwrap(),
        "blkfront".repeat(512)
    );
    assert_eq!(
        diff_of(&rep, "/lib/modules/6.1.0-57-amd64"),
        format!(
            "cp -a {} /lib/modules/6.1.0-57-amd64\n",
            dom0.join("lib/modules/6.1.0-57-amd64").display()
        )
    );
    assert!(
        guest_file(&img, P1, "/etc/fstab")
            .unwrap()
            .contains("/dev/xvda1       /")
    );
}

/// Modules that do not fit the guest's root: refused before any file of
/// the copy is changed.
#[test]
fn supplied_kernel_modules_that_do_not_fit_change_nothing() {
    let fx = seed();
    let dom0 = fx.store.parent().unwrap().join("dom0");
    let mut req = fx.request("seed");
    req.policy.guest_kernel = Some(supplied_kernel(&dom0, 48 << 20));
    let e = guest::convert(&req).unwrap_err().to_string();
    assert!(
        e.starts_with("/lib/modules/6.1.0-57-amd64: the guest's filesystem has ")
            && e.contains(
                "MiB free, the modules of 6.1.0-57-amd64 need 59 MiB; grow the guest's root"
            ),
        "{e}"
    );
    // The mount itself updates the superblock; the files must be as they were.
    let img = fx.disk();
    assert_eq!(guest_file(&img, P1, "/etc/fstab").unwrap(), SEED_FSTAB);
    assert_eq!(
        guest_file(&img, P1, "/boot/grub/menu.lst").unwrap(),
        SEED_MENU
    );
    assert_eq!(
        guest_file(&img, P1, "/lib/modules/6.1.0-57-amd64/modules.dep"),
        None
    );
    assert!(!fx.xen_dir.join("seed.cfg").exists());
}

/// `p2xen receive --guest-kernel` checks the files before it listens: a
/// wrong path is one line naming it and exit 1, not a failed conversion
/// after the whole copy.
#[test]
fn receive_checks_the_guest_kernel_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dom0 = tmp.path().join("dom0");
    let sk = supplied_kernel(&dom0, 4096);
    let store = tmp.path().join("store").to_string_lossy().into_owned();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    let receive = |extra: &[&str]| {
        let mut args = vec![
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--state-dir",
            &state,
        ];
        args.extend_from_slice(extra);
        p2xen(&args)
    };
    let modules = sk.modules.to_string_lossy().into_owned();
    let missing = dom0.join("vmlinuz-6.1.0-99-amd64");
    let out = receive(&[
        "--guest-kernel",
        &missing.to_string_lossy(),
        "--guest-modules",
        &modules,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "receive: --guest-kernel {}: not a readable file",
            missing.display()
        )),
        "{stderr}"
    );
    let kernel = sk.kernel.to_string_lossy().into_owned();
    let out = receive(&["--guest-kernel", &kernel, "--guest-modules", &store]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("--guest-modules {store}: no modules.dep in it")),
        "{stderr}"
    );
    assert!(
        !Path::new(&state).exists(),
        "made state before checking its arguments"
    );
    // The route is for the conversion: with --no-convert it is a usage error.
    let out = receive(&["--no-convert", "--guest-kernel", &kernel]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn seed_server_disk_layout() {
    let fx = seed();
    let before = hash_file(&fx.disk());

    let mut req = fx.request("seed");
    req.dry_run = true;
    let dry = guest::convert(&req).unwrap();
    assert_eq!(hash_file(&fx.disk()), before, "dry run changed the image");
    assert!(
        !fx.xen_dir.join("seed.cfg").exists(),
        "dry run wrote a config"
    );
    assert!(diff_of(&dry, "/etc/fstab").contains("+/dev/xvda1       /"));

    let rep = guest::convert(&fx.request("seed")).unwrap();
    assert_ne!(hash_file(&fx.disk()), before);
    let img = fx.disk();
    assert_eq!(
        guest_file(&img, P1, "/etc/fstab").unwrap(),
        "# /etc/fstab: static file system information.
proc            /proc           proc    defaults        0       0
/dev/xvda1       /               ext3    defaults,errors=remount-ro 0       1
/dev/xvda2       none            swap    sw              0       0
# p2xen: not migrated (disk not migrated): /dev/hdc        /media/cdrom0   udf,iso9660 user,noauto     0       0
# p2xen: not migrated (CD-ROM/floppy device): /dev/fd0        /media/floppy0  auto    rw,user,noauto  0       0
"
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/modules.conf").unwrap(),
        "# p2xen: hardware not present under Xen: alias eth0 8139too
# p2xen: hardware not present under Xen: alias scsi_hostadapter aha1740
alias char-major-10-135 rtc
"
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/inittab").unwrap(),
        format!("{SEED_INITTAB}hvc0:2345:respawn:/sbin/getty 38400 hvc0\n")
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/securetty").unwrap(),
        "console\ntty1\ntty2\nhvc0\n"
    );
    assert_eq!(
        guest_file(&img, P1, "/boot/grub/menu.lst").unwrap(),
        "default 0
timeout 5
# kopt=root=/dev/xvda1 ro console=hvc0
title Debian GNU/Linux, kernel 2.6.18-6-xen-686
root (hd0,0)
kernel /boot/vmlinuz-2.6.18-6-xen-686 root=/dev/xvda1 ro console=hvc0
initrd /boot/initrd.img-2.6.18-6-xen-686
"
    );
    let cfg = guest_file(&img, P1, "/boot/grub/grub.cfg").expect("generated grub.cfg");
    assert!(
        cfg.starts_with("# Generated by p2xen from /boot/grub/menu.lst"),
        "{cfg}"
    );
    assert!(cfg.contains(
        "menuentry 'Debian GNU/Linux, kernel 2.6.18-6-xen-686' {\n\tinsmod part_msdos\n\tinsmod part_gpt\n\tinsmod ext2\n\tsearch --no-floppy --set=root --file /boot/vmlinuz-2.6.18-6-xen-686\n\tlinux /boot/vmlinuz-2.6.18-6-xen-686 root=/dev/xvda1 ro console=hvc0\n\tinitrd /boot/initrd.img-2.6.18-6-xen-686\n}\n"
    ), "{cfg}");
    assert_eq!(
        guest_file(&img, P1, "/etc/udev/rules.d/z25_persistent-net.rules"),
        None
    );
    assert!(
        guest_stat(&img, P1, "/etc/rc2.d/K80smartmontools").contains("../init.d/smartmontools")
    );
    assert!(guest_stat(&img, P1, "/etc/rc2.d/S20smartmontools").contains("not found"));
    assert!(guest_stat(&img, P1, "/etc/rc2.d/S10sysklogd").contains("../init.d/sysklogd"));
    // Everything the dry run promised was done, nothing more.
    assert_eq!(dry.fixups, rep.fixups);

    assert_eq!(rep.boot_route, "pvgrub2");
    assert_eq!(rep.xen_type, XenType::Pv);
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let text = std::fs::read_to_string(fx.xen_dir.join("seed.cfg")).unwrap();
    assert_eq!(text, rep.config);
    assert!(text.starts_with("# Xen domain config for seed, written by p2xen convert.\n# Migrated from physical server seed"));
    let xl = parse_xl(&text);
    let abs = std::path::absolute(fx.disk()).unwrap();
    let one = |k: &str| xl.get(k).unwrap_or_else(|| panic!("no {k} in {text}"))[0].clone();
    assert_eq!(one("name"), "seed");
    assert_eq!(one("type"), "pv");
    assert_eq!(one("kernel"), "/usr/lib/grub-xen/grub-x86_64-xen.bin");
    assert_eq!(one("memory"), "256");
    assert_eq!(one("vcpus"), "1");
    assert_eq!(
        xl["disk"],
        vec![format!(
            "format=raw, vdev=xvda, access=rw, target={}",
            abs.display()
        )]
    );
    assert_eq!(
        xl["vif"],
        vec!["mac=00:0c:29:ab:cd:ef, bridge=xenbr0".to_string()]
    );
    assert_eq!(one("on_poweroff"), "destroy");
    assert_eq!(one("on_reboot"), "restart");
    assert_eq!(one("on_crash"), "restart");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.store.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["copy"]["verified"], true, "copy report kept");
    assert_eq!(report["conversion"]["boot_route"], "pvgrub2");
    assert_eq!(report["conversion"]["layout"], "disk");
    assert_eq!(
        report["conversion"]["next_command"],
        format!("xl create {}", fx.xen_dir.join("seed.cfg").display())
    );

    // A second conversion at the same time is refused.
    {
        let lock = std::fs::File::open(fx.store.join(".p2xen-convert.lock")).unwrap();
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        let mut req = fx.request("seed");
        req.force = true;
        let err = guest::convert(&req).unwrap_err();
        assert!(
            err.to_string()
                .contains("another conversion of seed is running"),
            "{err}"
        );
    }
    // Never overwrite without --force; converting again changes nothing more.
    let err = guest::convert(&fx.request("seed")).unwrap_err();
    assert!(err.to_string().contains("exists; pass --force"), "{err}");
    let mut again = fx.request("seed");
    again.force = true;
    let rep2 = guest::convert(&again).unwrap();
    assert!(rep2.fixups.is_empty(), "not idempotent: {:#?}", rep2.fixups);
}

#[test]
fn seed_server_partitions_layout() {
    let fx = seed();
    let disk_before = hash_file(&fx.disk());
    let swap_sha = hash_range(&fx.source, P2, P2_SIZE as usize);
    let mut req = fx.request("seed");
    req.layout = Some(Layout::Partitions);
    req.memory_mib = Some(512);
    req.bridge = Some("br0".to_string());
    req.policy.skip = vec![FixupKind::Monitoring];
    let rep = guest::convert(&req).unwrap();
    assert_eq!(
        hash_file(&fx.disk()),
        disk_before,
        "layout partitions must not change disk0.img"
    );
    let p1 = fx.store.join("disk0-part1.img");
    let p2 = fx.store.join("disk0-part2.img");
    assert_eq!(std::fs::metadata(&p1).unwrap().len(), P1_SIZE);
    assert_eq!(
        hash_file(&p2),
        swap_sha,
        "swap partition image differs from the partition's bytes"
    );
    assert_eq!(
        guest_file(&p1, 0, "/etc/fstab").unwrap().lines().nth(2),
        Some("/dev/xvda1       /               ext3    defaults,errors=remount-ro 0       1")
    );
    // Monitoring skipped: the S link stays.
    assert!(guest_stat(&p1, 0, "/etc/rc2.d/S20smartmontools").contains("../init.d/smartmontools"));
    assert!(!rep.fixups.iter().any(|f| f.kind == FixupKind::Monitoring));
    assert_eq!(rep.boot_route, "dom0-kernel");

    let boot = std::path::absolute(fx.store.join("boot")).unwrap();
    assert_eq!(
        std::fs::read(boot.join("vmlinuz-2.6.18-6-xen-686")).unwrap(),
        b"kernel-image"
    );
    let xl = parse_xl(&rep.config);
    let one = |k: &str| xl[k][0].clone();
    assert_eq!(one("type"), "pv");
    assert_eq!(
        one("kernel"),
        boot.join("vmlinuz-2.6.18-6-xen-686").display().to_string()
    );
    assert_eq!(
        one("ramdisk"),
        boot.join("initrd.img-2.6.18-6-xen-686")
            .display()
            .to_string()
    );
    assert_eq!(one("root"), "/dev/xvda1 ro");
    assert_eq!(one("extra"), "console=hvc0");
    assert_eq!(one("memory"), "512");
    let abs = std::path::absolute(&fx.store).unwrap();
    assert_eq!(
        xl["disk"],
        vec![
            format!(
                "format=raw, vdev=xvda1, access=rw, target={}/disk0-part1.img",
                abs.display()
            ),
            format!(
                "format=raw, vdev=xvda2, access=rw, target={}/disk0-part2.img",
                abs.display()
            ),
        ]
    );
    assert_eq!(
        xl["vif"],
        vec!["mac=00:0c:29:ab:cd:ef, bridge=br0".to_string()]
    );
    assert!(!xl.contains_key("bootloader"));

    // Existing partition images are not overwritten without --force.
    let err = guest::convert(&req).unwrap_err();
    assert!(err.to_string().contains("exists; pass --force"), "{err}");
}

#[test]
fn sparse_partition_copy_keeps_bytes_and_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(b"start of partition", 4 * MIB).unwrap();
    f.write_all_at(&[0xa5; 8192], 20 * MIB + 4096).unwrap();
    f.write_all_at(b"end", 36 * MIB - 3).unwrap();
    f.write_all_at(b"after", 36 * MIB).unwrap();
    drop(f);
    let out = tmp.path().join("part.img");
    let data = p2xen::guest::split::copy_partition(&disk, 4 * MIB, 32 * MIB, &out).unwrap();
    assert!(data > 0 && data < 4 * MIB, "copied {data} bytes");
    assert_eq!(
        hash_file(&out),
        hash_range(&disk, 4 * MIB, 32 * MIB as usize)
    );
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        allocated < 4 * MIB,
        "holes not kept: {allocated} bytes allocated"
    );
    let err =
        p2xen::guest::split::copy_partition(&disk, 60 * MIB, 8 * MIB, &tmp.path().join("x.img"))
            .unwrap_err();
    assert!(err.to_string().contains("beyond the image end"), "{err}");
}

// ------------------------------------------------------- (b) modern Debian

const DEB_ROOT_UUID: &str = "d2b1e5a0-4c1e-4d6a-9a41-3c1f5b2e7a10";
const DEB_SWAP_UUID: &str = "0f3e6d1c-8b2a-4e59-a7c4-9d1e2f3a4b5c";
const DEB_GRUB_CFG: &str = "set default=0
menuentry 'Debian GNU/Linux' --class debian {
\tinsmod ext2
\tsearch --no-floppy --fs-uuid --set=root d2b1e5a0-4c1e-4d6a-9a41-3c1f5b2e7a10
\tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=d2b1e5a0-4c1e-4d6a-9a41-3c1f5b2e7a10 ro quiet
\tinitrd\t/boot/initrd.img-6.1.0-13-amd64
}
";

fn debian() -> Fixture {
    debian_with(&[])
}

/// The modern Debian with `extra` files in its root.
fn debian_with(extra: &[(&str, &str)]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let ird = initrd(
        &tmp.path().join("ird"),
        &[
            "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/block/xen-blkfront.ko",
            "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/net/xen-netfront.ko",
            "usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4/ext4.ko",
        ],
        "gzip",
    );
    let fstab = format!(
        "UUID={DEB_ROOT_UUID} /               ext4    errors=remount-ro 0       1\n\
         UUID={DEB_SWAP_UUID} none            swap    sw              0       0\n\
         /dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n"
    );
    write_tree(
        &root,
        &[
            ("/etc/fstab", &fstab),
            (
                "/etc/default/grub",
                "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n",
            ),
            ("/boot/grub/grub.cfg", DEB_GRUB_CFG),
            ("/boot/vmlinuz-6.1.0-13-amd64", "kernel"),
            (
                "/boot/config-6.1.0-13-amd64",
                "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_PVH=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\nCONFIG_XEN_NETDEV_FRONTEND=m\n",
            ),
            (
                "/etc/udev/rules.d/70-persistent-net.rules",
                "SUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:12:34:56\", NAME=\"eth0\"\n",
            ),
            ("/etc/modprobe.d/blacklist.conf", "blacklist pcspkr\n"),
            ("/lib/systemd/systemd", "systemd"),
            ("/lib/systemd/system/serial-getty@.service", "[Unit]\n"),
            ("/lib/systemd/system/smartmontools.service", "[Unit]\n"),
            (
                "/etc/systemd/system/multi-user.target.wants/smartd.service",
                "->/lib/systemd/system/smartmontools.service",
            ),
            (
                "/etc/systemd/system/multi-user.target.wants/cron.service",
                "->/lib/systemd/system/cron.service",
            ),
            ("/sbin/init", "->/lib/systemd/systemd"),
        ],
    );
    write_tree(&root, extra);
    std::fs::write(root.join("boot/initrd.img-6.1.0-13-amd64"), ird).unwrap();
    let src = source_disk(
        tmp.path(),
        "label: gpt\nstart=2048, size=81920, type=L\nstart=83968, size=32768, type=S\n",
    );
    mkfs_into(&src, P1, "ext4", &root, P1_SIZE, DEB_ROOT_UUID, None);
    let machine = format!(
        r#"{{"name":"web1","hostname":"web1","cpus":2,"memory_bytes":2147483648,
  "nics":[{{"name":"eno1","mac":"52:54:00:12:34:56","driver":"e1000e"}},{{"name":"eno2","mac":"52:54:00:12:34:57","driver":"e1000e"}}],
  "disks":[{{"path":"/dev/nvme0n1","size_bytes":{},"table":"gpt",
    "partitions":[
      {{"number":1,"start_bytes":{P1},"size_bytes":{P1_SIZE},"type_id":"0fc63daf-8483-4772-8e79-3d69d8477de4",
        "filesystem":{{"type":"ext4","uuid":"{DEB_ROOT_UUID}"}},"os":{{"id":"debian","init_system":"systemd"}}}},
      {{"number":2,"start_bytes":{P2},"size_bytes":{P2_SIZE},"type_id":"0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
        "filesystem":{{"type":"swap","uuid":"{DEB_SWAP_UUID}"}}}}]}}]}}"#,
        64 * MIB
    );
    Fixture::new(tmp, src, "web1", &machine)
}

#[test]
fn modern_debian() {
    let fx = debian();
    let rep = guest::convert(&fx.request("web1")).unwrap();
    let img = fx.disk();
    let fstab = guest_file(&img, P1, "/etc/fstab").unwrap();
    assert_eq!(
        fstab,
        format!(
            "UUID={DEB_ROOT_UUID} /               ext4    errors=remount-ro 0       1\n\
             UUID={DEB_SWAP_UUID} none            swap    sw              0       0\n\
             # p2xen: not migrated (CD-ROM/floppy device): /dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n"
        )
    );
    assert_eq!(
        guest_file(&img, P1, "/boot/grub/grub.cfg").unwrap(),
        DEB_GRUB_CFG.replace(" ro quiet\n", " ro quiet console=hvc0\n")
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/default/grub").unwrap(),
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=hvc0\"\n"
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/modprobe.d/blacklist.conf").unwrap(),
        "blacklist pcspkr\n"
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/udev/rules.d/70-persistent-net.rules"),
        None
    );
    let getty = guest_stat(
        &img,
        P1,
        "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
    );
    assert!(
        getty.contains("/lib/systemd/system/serial-getty@.service"),
        "{getty}"
    );
    assert!(
        guest_stat(
            &img,
            P1,
            "/etc/systemd/system/multi-user.target.wants/smartd.service"
        )
        .contains("not found")
    );
    assert!(
        guest_stat(
            &img,
            P1,
            "/etc/systemd/system/multi-user.target.wants/cron.service"
        )
        .contains("cron.service")
    );
    assert!(
        diff_of(
            &rep,
            "/etc/systemd/system/multi-user.target.wants/smartd.service"
        )
        .contains("removed symlink")
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/securetty"),
        None,
        "securetty created where none was"
    );
    assert!(guest_file(&img, P1, "/boot/grub/menu.lst").is_none());

    assert_eq!(rep.boot_route, "pvgrub2");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert_eq!(rep.kernels.len(), 1);
    assert_eq!(rep.kernels[0].version, "6.1.0-13-amd64");
    assert_eq!(
        rep.kernels[0].blkfront,
        p2xen::guest::xencheck::Driver::Module
    );
    assert!(rep.kernels[0].pv && rep.kernels[0].pvh);
    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("web1.cfg")).unwrap());
    assert_eq!(xl["type"], ["pv"]);
    assert_eq!(xl["kernel"], ["/usr/lib/grub-xen/grub-x86_64-xen.bin"]);
    assert_eq!(xl["memory"], ["2048"]);
    assert_eq!(xl["vcpus"], ["2"]);
    assert_eq!(
        xl["vif"],
        [
            "mac=52:54:00:12:34:56, bridge=xenbr0",
            "mac=52:54:00:12:34:57, bridge=xenbr0"
        ]
    );
}

#[test]
fn modern_debian_pvh_dry_run_via_cli() {
    let fx = debian();
    let before = hash_file(&fx.disk());
    let store = fx.store.parent().unwrap().to_string_lossy();
    let out = p2xen(&[
        "convert",
        "--name",
        "web1",
        "--store",
        &store,
        "--xen-dir",
        &fx.xen_dir.to_string_lossy(),
        "--type",
        "pvh",
        "--vcpus",
        "4",
        "--dry-run",
        "--no-fixup",
        "net-rules",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(hash_file(&fx.disk()), before, "dry run changed the image");
    assert!(!fx.xen_dir.exists());
    assert_eq!(
        std::fs::read_to_string(fx.store.join("report.json")).unwrap(),
        r#"{"copy":{"verified":true}}"#
    );
    assert!(
        stdout.contains("--- a/etc/default/grub\n+++ b/etc/default/grub\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-GRUB_CMDLINE_LINUX=\"\"\n+GRUB_CMDLINE_LINUX=\"console=hvc0\"\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("persistent-net"),
        "net-rules not skipped: {stdout}"
    );
    assert!(
        stdout.contains("kernel = \"/usr/lib/grub-xen/grub-i386-xen_pvh.bin\""),
        "{stdout}"
    );
    assert!(stdout.contains("type = \"pvh\""), "{stdout}");
    assert!(stdout.contains("vcpus = 4"), "{stdout}");

    // A missing store is one clear line and exit code 1.
    let out = p2xen(&["convert", "--name", "nosuch", "--store", &store]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch/machine.json"));
}

// ------------------------------------------------------------- (c) md RAID1

/// An md v1.0 superblock for a member of `size` bytes of a two-slot array
/// of RAID `level` (the second slot missing), with a valid checksum.
fn md10_superblock(size: u64, level: u32) -> (u64, Vec<u8>) {
    let mut sb = common::md::Sb1::raid1("1.0", size, 0);
    sb.level = level;
    let sb_off = common::md::sb1_offset("1.0", size);
    sb.set_uuid = [0x11; 16];
    sb.name = "srv:0";
    sb.size = sb_off / 512 - 16;
    sb.data_size = sb.size;
    sb.dev_uuid = [0x22; 16];
    sb.events = 10;
    sb.roles = vec![0, 0xffff];
    sb.build(size)
}

const MD_FSTAB: &str = "/dev/md0  /  ext4  errors=remount-ro  0  1\n";
const MD_CONF: &str = "DEVICE partitions\nARRAY /dev/md0 metadata=1.0 UUID=11111111:11111111:11111111:11111111 name=srv:0\n   devices=/dev/sda1,/dev/sdb1\nMAILADDR root\n";

fn md_member() -> Fixture {
    md_member_of_level(1)
}

fn md_member_of_level(level: u32) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let ird = initrd(
        &tmp.path().join("ird"),
        &["usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4/ext4.ko"],
        "zstd",
    );
    write_tree(
        &root,
        &[
            ("/etc/fstab", MD_FSTAB),
            ("/etc/mdadm/mdadm.conf", MD_CONF),
            (
                "/boot/grub/grub.cfg",
                "menuentry 'Debian' {\n\tlinux /boot/vmlinuz-6.1.0-13-amd64 root=/dev/md0 ro\n}\n",
            ),
            ("/boot/vmlinuz-6.1.0-13-amd64", "kernel"),
            (
                "/boot/config-6.1.0-13-amd64",
                "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\nCONFIG_XEN_NETDEV_FRONTEND=m\n",
            ),
            ("/etc/initramfs-tools/modules", "# modules\n"),
            ("/etc/inittab", "1:2345:respawn:/sbin/getty 38400 tty1\n"),
        ],
    );
    std::fs::write(root.join("boot/initrd.img-6.1.0-13-amd64"), ird).unwrap();
    let src = source_disk(tmp.path(), "label: dos\nstart=2048, size=81920, type=fd\n");
    mkfs_into(
        &src,
        P1,
        "ext4",
        &root,
        P1_SIZE - MIB,
        "3d3d3d3d-0000-4000-8000-000000000001",
        None,
    );
    let (sb_off, sb) = md10_superblock(P1_SIZE, level);
    patch(&src, P1 + sb_off, &sb);
    let machine = format!(
        r#"{{"name":"srv","cpus":4,"memory_bytes":1073741824,"nics":[],
  "disks":[{{"path":"/dev/sda","size_bytes":{},"table":"mbr",
    "partitions":[{{"number":1,"start_bytes":{P1},"size_bytes":{P1_SIZE},"type_id":"0xfd",
      "filesystem":{{"type":"linux_raid_member","details":{{"md_level":"raid{level}"}}}}}}]}}]}}"#,
        64 * MIB
    );
    Fixture::new(tmp, src, "srv", &machine)
}

fn part_file(img: &Path, off: u64, len: u64, out: &Path) -> PathBuf {
    std::fs::write(out, peek(img, off, len as usize)).unwrap();
    out.to_path_buf()
}

fn blkid_type(img: &Path) -> String {
    blkid_probe(img, 0).remove("TYPE").unwrap_or_default()
}

#[test]
fn md_raid1_member_is_flattened() {
    let fx = md_member();
    let tmp = tempfile::tempdir().unwrap();
    let member = part_file(&fx.disk(), P1, P1_SIZE, &tmp.path().join("before.img"));
    assert_eq!(blkid_type(&member), "linux_raid_member");
    tool("mdadm", "mdadm", &["--examine", &member.to_string_lossy()]);

    let before = hash_file(&fx.disk());
    let mut dry = fx.request("srv");
    dry.dry_run = true;
    dry.xen_type = Some(XenType::Pv);
    let d = guest::convert(&dry).unwrap();
    assert_eq!(hash_file(&fx.disk()), before, "dry run changed the image");
    assert!(
        d.fixups
            .iter()
            .any(|f| f.kind == FixupKind::MdRaid && f.action == "zero")
    );

    let mut req = fx.request("srv");
    req.xen_type = Some(XenType::Pv);
    let rep = guest::convert(&req).unwrap();
    let member = part_file(&fx.disk(), P1, P1_SIZE, &tmp.path().join("after.img"));
    assert_eq!(blkid_type(&member), "ext4");
    let ex = Command::new("mdadm")
        .arg("--examine")
        .arg(&member)
        .output()
        .unwrap();
    assert!(!ex.status.success());
    assert!(String::from_utf8_lossy(&ex.stderr).contains("No md superblock detected"));

    let img = fx.disk();
    assert_eq!(
        guest_file(&img, P1, "/etc/fstab").unwrap(),
        "/dev/xvda1  /  ext4  errors=remount-ro  0  1\n"
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/mdadm/mdadm.conf").unwrap(),
        "DEVICE partitions\n\
         # p2xen: array flattened into a plain disk: ARRAY /dev/md0 metadata=1.0 UUID=11111111:11111111:11111111:11111111 name=srv:0\n\
         # p2xen: array flattened into a plain disk:    devices=/dev/sda1,/dev/sdb1\n\
         MAILADDR root\n"
    );
    assert_eq!(
        guest_file(&img, P1, "/boot/grub/grub.cfg").unwrap(),
        "menuentry 'Debian' {\n\tlinux /boot/vmlinuz-6.1.0-13-amd64 root=/dev/xvda1 ro console=hvc0\n}\n"
    );
    assert_eq!(
        rep.warnings,
        vec![
            "initrd of kernel 6.1.0-13-amd64 lacks xen-blkfront and p2xen could not add it \
             (guest has no /lib/modules/6.1.0-13-amd64/modules.dep); in the guest run: \
             echo xen-blkfront >> /etc/initramfs-tools/modules && update-initramfs -u -k 6.1.0-13-amd64"
                .to_string()
        ]
    );
    let xl = parse_xl(&rep.config);
    assert_eq!(xl["vcpus"], ["4"]);
    assert_eq!(xl["memory"], ["1024"]);
    assert_eq!(xl["vif"], ["bridge=xenbr0"]);
}

/// A RAID0 member holds only stripes of the array: zeroing its superblock
/// would leave the guest no way to assemble it. It is left as it is, and
/// the report says what the guest needs.
#[test]
fn md_raid0_member_keeps_its_superblock_for_the_guest() {
    let fx = md_member_of_level(0);
    let sb_at = P1 + common::md::sb1_offset("1.0", P1_SIZE);
    let sb_before = hash_range(&fx.disk(), sb_at, 4096);
    let mut req = fx.request("srv");
    req.xen_type = Some(XenType::Pv);
    let rep = guest::convert(&req).unwrap();
    assert_eq!(
        hash_range(&fx.disk(), sb_at, 4096),
        sb_before,
        "the RAID0 member's superblock was changed"
    );
    assert!(
        !rep.fixups
            .iter()
            .any(|f| f.kind == FixupKind::MdRaid && f.action == "zero"),
        "{:?}",
        rep.fixups
    );
    assert!(
        rep.warnings.iter().any(|w| w
            == "md-raid: disk0 partition 1 is a member of an md 1.0 raid0 array: left as it \
                is (only RAID1 members are made plain filesystems); the guest assembles the \
                array itself, so its initrd must carry md and mdadm and every member disk \
                must be in the guest"),
        "{:?}",
        rep.warnings
    );
}

#[test]
fn md_member_without_pv_kernel_boots_hvm() {
    // The initrd lacks xen-blkfront: no PV route, so hvm with emulated disks.
    let fx = md_member();
    let mut req = fx.request("srv");
    req.dry_run = true;
    let rep = guest::convert(&req).unwrap();
    assert_eq!(rep.xen_type, XenType::Hvm);
    assert_eq!(rep.boot_route, "hvm");
    // Emulated disks: the flattened md0 is named by its filesystem UUID.
    assert!(
        diff_of(&rep, "/etc/fstab")
            .contains("\n+UUID=3d3d3d3d-0000-4000-8000-000000000001  /  ext4"),
        "{}",
        diff_of(&rep, "/etc/fstab")
    );
    assert!(
        diff_of(&rep, "/boot/grub/grub.cfg").contains(
            "+\tlinux /boot/vmlinuz-6.1.0-13-amd64 root=UUID=3d3d3d3d-0000-4000-8000-000000000001 ro console=ttyS0\n"
        ),
        "{}",
        diff_of(&rep, "/boot/grub/grub.cfg")
    );
    assert!(diff_of(&rep, "/etc/inittab").contains("+S0:2345:respawn:/sbin/getty 38400 ttyS0\n"));
    let xl = parse_xl(&rep.config);
    assert_eq!(xl["type"], ["hvm"]);
    assert_eq!(xl["serial"], ["pty"]);
    assert!(xl["disk"][0].contains("vdev=hda,"), "{:?}", xl["disk"]);
}

/// What the sender makes of a RAID1 1.2 member (see tests/md_source.rs):
/// the ext4 that was inside at the partition's start, described as such.
/// The guest still names the array (/dev/md1, its by-id md-uuid link, the
/// initrd's rd.md.uuid=) and mdadm.conf lists it after an array not copied.
fn md_flattened_by_sender() -> Fixture {
    md_flattened_by_sender_with(MD12_FSTAB, "")
}

/// [`md_flattened_by_sender`] with its own fstab and further machine.json
/// disks (`extra`: `,{...}` after disk 0).
fn md_flattened_by_sender_with(fstab: &str, extra: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let ird = initrd(
        &tmp.path().join("ird"),
        &["usr/lib/modules/6.1.0-13-amd64/kernel/fs/ext4/ext4.ko"],
        "zstd",
    );
    let grub_cfg = format!(
        "menuentry 'Debian' {{\n\tlinux /boot/vmlinuz-6.1.0-13-amd64 root=/dev/md1 ro \
         rd.md.uuid={MD12_UUID} quiet\n}}\n"
    );
    let default_grub =
        format!("GRUB_CMDLINE_LINUX=\"rd.md.uuid={MD12_UUID} md=1,/dev/sda1,/dev/sdb1\"\n");
    write_tree(
        &root,
        &[
            ("/etc/fstab", fstab),
            ("/etc/mdadm/mdadm.conf", MD12_CONF),
            ("/boot/grub/grub.cfg", &grub_cfg),
            ("/etc/default/grub", &default_grub),
            ("/boot/vmlinuz-6.1.0-13-amd64", "kernel"),
            (
                "/boot/config-6.1.0-13-amd64",
                "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\nCONFIG_XEN_NETDEV_FRONTEND=m\n",
            ),
            ("/etc/initramfs-tools/modules", "# modules\n"),
            ("/etc/inittab", "1:2345:respawn:/sbin/getty 38400 tty1\n"),
        ],
    );
    std::fs::write(root.join("boot/initrd.img-6.1.0-13-amd64"), ird).unwrap();
    let src = source_disk(tmp.path(), "label: dos\nstart=2048, size=81920, type=fd\n");
    mkfs_into(
        &src,
        P1,
        "ext4",
        &root,
        P1_SIZE - MIB,
        "3d3d3d3d-0000-4000-8000-000000000002",
        None,
    );
    let machine = format!(
        r#"{{"name":"srv","cpus":2,"memory_bytes":1073741824,"nics":[],
  "disks":[{{"path":"/dev/sda","size_bytes":{},"table":"mbr",
    "partitions":[{{"number":1,"start_bytes":{P1},"size_bytes":{P1_SIZE},"type_id":"0xfd",
      "filesystem":{{"type":"ext4","uuid":"3d3d3d3d-0000-4000-8000-000000000002",
        "md_flattened_from":"raid1 1.2 {MD12_UUID}"}}}}]}}{extra}]}}"#,
        64 * MIB
    );
    Fixture::new(tmp, src, "srv", &machine)
}

const MD12_UUID: &str = "3a1f229c:445d6e70:8192a3b4:c5d6e7f8";
const MD12_FSTAB: &str = "/dev/md1  /  ext4  errors=remount-ro  0  1\n\
    /dev/disk/by-id/md-uuid-3A1F229C:445d6e70:8192a3b4:c5d6e7f8  /srv  ext4  defaults  0  2\n";
const MD12_CONF: &str = "DEVICE partitions\n\
    ARRAY /dev/md0 metadata=1.2 UUID=aaaaaaaa:bbbbbbbb:cccccccc:dddddddd name=srv:0\n\
    ARRAY /dev/md1 metadata=1.2 name=srv:1\n   UUID=3a1f229c:445d6e70:8192a3b4:c5d6e7f8\n\
    MAILADDR root\n";

#[test]
fn sender_flattened_md_names_and_boot_arguments_are_mapped() {
    let fx = md_flattened_by_sender();
    let mut req = fx.request("srv");
    req.xen_type = Some(XenType::Pv);
    let rep = guest::convert(&req).unwrap();
    let img = fx.disk();
    // Matched by the array's UUID: md1, though mdadm.conf lists md0 first.
    assert_eq!(
        guest_file(&img, P1, "/etc/fstab").unwrap(),
        "/dev/xvda1  /  ext4  errors=remount-ro  0  1\n\
         /dev/xvda1  /srv  ext4  defaults  0  2\n"
    );
    assert_eq!(
        guest_file(&img, P1, "/boot/grub/grub.cfg").unwrap(),
        "menuentry 'Debian' {\n\tlinux /boot/vmlinuz-6.1.0-13-amd64 root=/dev/xvda1 ro quiet console=hvc0\n}\n"
    );
    let dg = guest_file(&img, P1, "/etc/default/grub").unwrap();
    assert!(!dg.contains("rd.md") && !dg.contains("md=1"), "{dg}");
    assert_eq!(
        guest_file(&img, P1, "/etc/mdadm/mdadm.conf").unwrap(),
        "DEVICE partitions\n\
         # p2xen: array flattened into a plain disk: ARRAY /dev/md0 metadata=1.2 UUID=aaaaaaaa:bbbbbbbb:cccccccc:dddddddd name=srv:0\n\
         # p2xen: array flattened into a plain disk: ARRAY /dev/md1 metadata=1.2 name=srv:1\n\
         # p2xen: array flattened into a plain disk:    UUID=3a1f229c:445d6e70:8192a3b4:c5d6e7f8\n\
         MAILADDR root\n"
    );
    // The report carries the diffs and says what the sender did.
    assert!(
        diff_of(&rep, "/etc/mdadm/mdadm.conf")
            .contains("\n+# p2xen: array flattened into a plain disk: ARRAY /dev/md1"),
        "{}",
        diff_of(&rep, "/etc/mdadm/mdadm.conf")
    );
    assert!(
        diff_of(&rep, "/etc/fstab").contains("\n-/dev/md1  /  ext4"),
        "{}",
        diff_of(&rep, "/etc/fstab")
    );
    assert!(
        rep.fixups.iter().any(|f| f.kind == FixupKind::MdRaid
            && f.action == "flattened"
            && f.diff.contains(MD12_UUID)),
        "{:?}",
        rep.fixups
    );
    assert!(
        !rep.warnings.iter().any(|w| w.contains("md-raid")),
        "{:?}",
        rep.warnings
    );
}

/// A RAID0 the sender assembled into a disk of its own (disk 1, no
/// table; see tests/md_source.rs): the guest's names of the array (md0
/// in mdadm.conf, its by-id link) become that disk's.
#[test]
fn sender_assembled_raid0_names_map_to_its_own_disk() {
    let fstab = format!(
        "{MD12_FSTAB}/dev/md0  /data  ext4  defaults  0  2\n\
         /dev/disk/by-id/md-uuid-aaaaaaaa:bbbbbbbb:cccccccc:dddddddd  /data2  ext4  defaults  0  2\n"
    );
    let extra = format!(
        r#",{{"path":"md raid0 array aaaaaaaa:bbbbbbbb:cccccccc:dddddddd","size_bytes":{},
    "table":"none","filesystem":{{"type":"ext4","uuid":"4e4e4e4e-0000-4000-8000-000000000004",
      "md_flattened_from":"raid0 1.2 aaaaaaaa:bbbbbbbb:cccccccc:dddddddd"}}}}"#,
        8 * MIB
    );
    let fx = md_flattened_by_sender_with(&fstab, &extra);
    let array = fx.store.join("disk1.img");
    sparse_image(&array, 8 * MIB);
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-U",
            "4e4e4e4e-0000-4000-8000-000000000004",
        ])
        .arg(&array));
    let mut req = fx.request("srv");
    req.xen_type = Some(XenType::Pv);
    let rep = guest::convert(&req).unwrap();
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/fstab").unwrap(),
        "/dev/xvda1  /  ext4  errors=remount-ro  0  1\n\
         /dev/xvda1  /srv  ext4  defaults  0  2\n\
         /dev/xvdb  /data  ext4  defaults  0  2\n\
         /dev/xvdb  /data2  ext4  defaults  0  2\n"
    );
    assert!(
        rep.fixups.iter().any(|f| f.kind == FixupKind::MdRaid
            && f.action == "assembled"
            && f.diff
                .contains("assembled md raid0 1.2 aaaaaaaa:bbbbbbbb:cccccccc:dddddddd")),
        "{:?}",
        rep.fixups
    );
    assert!(
        !rep.warnings.iter().any(|w| w.contains("md-raid")),
        "{:?}",
        rep.warnings
    );
}

#[test]
fn machine_json_from_the_sender_parses() {
    let m: Machine = serde_json::from_str(
        r#"{"name":"seed","hostname":"seed","cpus":2,"memory_bytes":1073741824,
            "nics":[{"name":"eth0","mac":"52:54:00:12:34:56","driver":"e1000"}],
            "disks":[],"options":{"layout":"partitions","type":null,"bridge":"xenbr1","memory_mib":null,"vcpus":null}}"#,
    )
    .unwrap();
    assert_eq!(
        m.options.unwrap().layout,
        Some(p2xen::wire::machine::Layout::Partitions)
    );
}

#[test]
fn failure_leaves_no_loop_device_or_mount() {
    // machine.json claims the OS is on the swap partition: mounting it fails
    // after its loop device was attached.
    let fx = seed();
    let m = std::fs::read_to_string(fx.store.join("machine.json")).unwrap();
    let m = m
        .replacen(r#""os":{"pretty_name""#, r#""os_moved":{"pretty_name""#, 1)
        .replacen(
            r#""filesystem":{"type":"swap"}"#,
            r#""filesystem":{"type":"ext4"},"os":{}"#,
            1,
        );
    std::fs::write(fx.store.join("machine.json"), m).unwrap();
    let before = hash_file(&fx.disk());
    let err = guest::convert(&fx.request("seed")).unwrap_err();
    assert!(err.to_string().contains("mount -t ext4"), "{err}");
    let out = tool(
        "losetup",
        "util-linux",
        &["-j", &fx.disk().to_string_lossy()],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "loop device left behind"
    );
    // Other tests convert in parallel, so only mounts of this disk count: a
    // mounted loop device whose backing file is this test's image.
    let disk = fx.disk().canonicalize().unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for source in mounts.lines().filter_map(|l| l.split(" - ").nth(1)) {
        let Some(dev) = source.split_whitespace().nth(1) else {
            continue;
        };
        let Some(name) = dev.strip_prefix("/dev/") else {
            continue;
        };
        let backing = std::path::Path::new("/sys/block")
            .join(name)
            .join("loop/backing_file");
        if let Ok(b) = std::fs::read_to_string(backing) {
            assert_ne!(Path::new(b.trim()), disk, "mount of {dev} left behind");
        }
    }
    assert_eq!(hash_file(&fx.disk()), before);
    assert!(!fx.xen_dir.join("seed.cfg").exists());
}

/// Xen's own config parser (libxlutil from xen-utils-4.17, the library `xl`
/// parses with) applied to a written config: `xl create -n` needs a running
/// hypervisor, the library does not.
mod xlutil {
    use nix::libc;
    use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
    use std::path::Path;

    type CfgInit = unsafe extern "C" fn(*mut libc::FILE, *const c_char) -> *mut c_void;
    type ReadFile = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
    type GetString =
        unsafe extern "C" fn(*const c_void, *const c_char, *mut *const c_char, c_int) -> c_int;
    type GetLong = unsafe extern "C" fn(*const c_void, *const c_char, *mut c_long, c_int) -> c_int;
    type GetList = unsafe extern "C" fn(
        *const c_void,
        *const c_char,
        *mut *mut c_void,
        *mut c_int,
        c_int,
    ) -> c_int;
    type ListItem = unsafe extern "C" fn(*const c_void, c_int) -> *const c_char;
    type DiskInit = unsafe extern "C" fn(*mut c_void);
    type DiskParse =
        unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char, *mut c_void) -> c_int;

    fn sym<T: Copy>(lib: *mut c_void, name: &str) -> T {
        let c = CString::new(name).unwrap();
        // SAFETY: lib is a live dlopen handle; the symbol's C type is the
        // one declared above, from libxlutil.h / libxl.h of Xen 4.17.
        let p = unsafe { libc::dlsym(lib, c.as_ptr()) };
        assert!(
            !p.is_null(),
            "{name} not found in libxlutil/libxenlight 4.17"
        );
        // SAFETY: T is a function pointer type of the same size as *mut c_void.
        unsafe { std::mem::transmute_copy(&p) }
    }

    fn open(name: &str) -> *mut c_void {
        let c = CString::new(name).unwrap();
        // SAFETY: dlopen with a valid C string; the handle is never closed,
        // which keeps the function pointers valid for the test's life.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
        assert!(
            !h.is_null(),
            "{name}: install Debian package xen-utils-4.17"
        );
        h
    }

    /// A disk spec as libxl understood it.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Disk {
        pub pdev_path: String,
        pub vdev: String,
    }

    pub struct Parsed {
        pub strings: std::collections::BTreeMap<String, String>,
        pub longs: std::collections::BTreeMap<String, i64>,
        pub disks: Vec<Disk>,
        pub vifs: Vec<String>,
    }

    pub fn parse(path: &Path) -> Parsed {
        let xlu = open("libxlutil.so.4.17");
        let xl = open("libxenlight.so.4.17");
        let init: CfgInit = sym(xlu, "xlu_cfg_init");
        let readfile: ReadFile = sym(xlu, "xlu_cfg_readfile");
        let get_string: GetString = sym(xlu, "xlu_cfg_get_string");
        let get_long: GetLong = sym(xlu, "xlu_cfg_get_long");
        let get_list: GetList = sym(xlu, "xlu_cfg_get_list");
        let listitem: ListItem = sym(xlu, "xlu_cfg_get_listitem");
        let disk_parse: DiskParse = sym(xlu, "xlu_disk_parse");
        let disk_init: DiskInit = sym(xl, "libxl_device_disk_init");
        let fname = CString::new(path.to_string_lossy().as_bytes()).unwrap();
        let mode = CString::new("w").unwrap();
        // SAFETY: plain libc calls; the FILE* is xl's error report (stderr).
        let report = unsafe { libc::fdopen(libc::dup(2), mode.as_ptr()) };
        // SAFETY: valid FILE* and C string.
        let cfg = unsafe { init(report, fname.as_ptr()) };
        assert!(!cfg.is_null());
        // SAFETY: cfg from xlu_cfg_init, valid file name.
        let rc = unsafe { readfile(cfg, fname.as_ptr()) };
        assert_eq!(rc, 0, "libxlutil rejects {}", path.display());
        let mut strings = std::collections::BTreeMap::new();
        for k in [
            "name",
            "type",
            "kernel",
            "ramdisk",
            "root",
            "extra",
            "bootloader",
            "serial",
            "bios",
            "on_poweroff",
            "on_reboot",
            "on_crash",
        ] {
            let key = CString::new(k).unwrap();
            let mut v: *const c_char = std::ptr::null();
            // SAFETY: cfg is live; v receives a string owned by cfg.
            if unsafe { get_string(cfg, key.as_ptr(), &mut v, 1) } == 0 && !v.is_null() {
                // SAFETY: NUL-terminated string owned by cfg, still alive.
                strings.insert(
                    k.to_string(),
                    unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned(),
                );
            }
        }
        let mut longs = std::collections::BTreeMap::new();
        for k in ["memory", "vcpus"] {
            let key = CString::new(k).unwrap();
            let mut v: c_long = 0;
            // SAFETY: cfg is live.
            if unsafe { get_long(cfg, key.as_ptr(), &mut v, 1) } == 0 {
                longs.insert(k.to_string(), v);
            }
        }
        let items = |k: &str| -> Vec<String> {
            let key = CString::new(k).unwrap();
            let mut list: *mut c_void = std::ptr::null_mut();
            let mut n: c_int = 0;
            // SAFETY: cfg is live; list and n are out-parameters.
            if unsafe { get_list(cfg, key.as_ptr(), &mut list, &mut n, 1) } != 0 {
                return Vec::new();
            }
            (0..n)
                .map(|i| {
                    // SAFETY: i < n entries of a list owned by cfg.
                    let p = unsafe { listitem(list, i) };
                    // SAFETY: NUL-terminated item owned by cfg.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                })
                .collect()
        };
        let vifs = items("vif");
        let mut disks = Vec::new();
        for spec in items("disk") {
            // libxl_device_disk is about 100 bytes in 4.17; 4 KiB of room.
            let mut buf = vec![0u64; 512];
            let d = buf.as_mut_ptr().cast::<c_void>();
            let cspec = CString::new(spec.as_str()).unwrap();
            let specs = [cspec.as_ptr()];
            // SAFETY: d points to zeroed memory larger than libxl_device_disk.
            unsafe { disk_init(d) };
            // SAFETY: cfg live, one valid spec, d initialised above.
            let rc = unsafe { disk_parse(cfg, 1, specs.as_ptr(), d) };
            assert_eq!(rc, 0, "libxlutil rejects disk spec {spec:?}");
            // struct libxl_device_disk { uint32_t backend_domid; char *backend_domname;
            // char *pdev_path; char *vdev; ... }
            let field = |i: usize| -> String {
                let p = buf[i] as *const c_char;
                assert!(!p.is_null(), "disk field {i} unset for {spec:?}");
                // SAFETY: a string libxl allocated for this field.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            };
            disks.push(Disk {
                pdev_path: field(2),
                vdev: field(3),
            });
        }
        Parsed {
            strings,
            longs,
            disks,
            vifs,
        }
    }
}

#[test]
fn xl_parses_the_written_configs() {
    let fx = seed();
    guest::convert(&fx.request("seed")).unwrap();
    let p = xlutil::parse(&fx.xen_dir.join("seed.cfg"));
    assert_eq!(p.strings["name"], "seed");
    assert_eq!(p.strings["type"], "pv");
    assert_eq!(p.strings["kernel"], "/usr/lib/grub-xen/grub-x86_64-xen.bin");
    assert_eq!(p.strings["on_crash"], "restart");
    assert_eq!(p.longs["memory"], 256);
    assert_eq!(p.longs["vcpus"], 1);
    let abs = std::path::absolute(fx.disk()).unwrap();
    assert_eq!(
        p.disks,
        vec![xlutil::Disk {
            pdev_path: abs.display().to_string(),
            vdev: "xvda".to_string()
        }]
    );
    assert_eq!(
        p.vifs,
        vec!["mac=00:0c:29:ab:cd:ef, bridge=xenbr0".to_string()]
    );

    let mut req = fx.request("seed");
    req.layout = Some(Layout::Partitions);
    req.xen_dir = fx.xen_dir.join("partitions");
    let rep = guest::convert(&req).unwrap();
    let p = xlutil::parse(&rep.config_path);
    assert_eq!(p.strings["root"], "/dev/xvda1 ro");
    assert_eq!(p.strings["extra"], "console=hvc0");
    assert!(p.strings["ramdisk"].ends_with("/boot/initrd.img-2.6.18-6-xen-686"));
    let vdevs: Vec<&str> = p.disks.iter().map(|d| d.vdev.as_str()).collect();
    assert_eq!(vdevs, ["xvda1", "xvda2"]);

    let md = md_member();
    let mut req = md.request("srv");
    req.dry_run = true;
    let rep = guest::convert(&req).unwrap();
    let hvm_cfg = md.xen_dir.with_file_name("hvm.cfg");
    std::fs::write(&hvm_cfg, &rep.config).unwrap();
    let p = xlutil::parse(&hvm_cfg);
    assert_eq!(p.strings["type"], "hvm");
    assert_eq!(p.strings["serial"], "pty");
    assert_eq!(p.disks[0].vdev, "hda");
    assert!(!p.strings.contains_key("bios"));

    let (efi, _, _) = uefi_debian("uefi");
    let mut req = efi.request("efi1");
    req.xen_type = Some(XenType::Hvm);
    req.dry_run = true;
    let rep = guest::convert(&req).unwrap();
    let efi_cfg = efi.xen_dir.with_file_name("efi.cfg");
    std::fs::write(&efi_cfg, &rep.config).unwrap();
    let p = xlutil::parse(&efi_cfg);
    assert_eq!(p.strings["type"], "hvm");
    assert_eq!(p.strings["bios"], "ovmf");
}

#[test]
fn separate_boot_partition_found_by_label() {
    // /boot on partition 1 (ext2, LABEL=boot; machine.json has no label, so
    // blkid supplies it), root on partition 2 with sysvinit and grub legacy.
    let tmp = tempfile::tempdir().unwrap();
    let boot = tmp.path().join("boot");
    let root = tmp.path().join("root");
    write_tree(
        &boot,
        &[
            (
                "/grub/menu.lst",
                "title Linux\nroot (hd0,0)\nkernel /vmlinuz-2.6.32-5-xen-amd64 root=/dev/sda2 ro\ninitrd /initrd.img-2.6.32-5-xen-amd64\n",
            ),
            ("/vmlinuz-2.6.32-5-xen-amd64", "kernel"),
            (
                "/config-2.6.32-5-xen-amd64",
                "CONFIG_XEN=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\nCONFIG_XEN_NETDEV_FRONTEND=y\n",
            ),
        ],
    );
    write_tree(
        &root,
        &[
            (
                "/etc/fstab",
                "/dev/sda2 / ext3 defaults 0 1\nLABEL=boot /boot ext2 defaults 0 2\n",
            ),
            ("/etc/inittab", "1:2345:respawn:/sbin/getty 38400 tty1\n"),
        ],
    );
    std::fs::create_dir_all(root.join("boot")).unwrap();
    let src = source_disk(
        tmp.path(),
        "label: dos\nstart=2048, size=32768, type=83\nstart=34816, size=81920, type=83\n",
    );
    let (b_off, b_size, r_off, r_size) = (MIB, 16 * MIB, 17 * MIB, 40 * MIB);
    mkfs_into(
        &src,
        b_off,
        "ext2",
        &boot,
        b_size,
        "b0000000-0000-4000-8000-000000000001",
        Some("boot"),
    );
    mkfs_into(
        &src,
        r_off,
        "ext3",
        &root,
        r_size,
        "b0000000-0000-4000-8000-000000000002",
        None,
    );
    let machine = format!(
        r#"{{"name":"old","cpus":1,"memory_bytes":536870912,"nics":[],
  "disks":[{{"table":"mbr","partitions":[
    {{"number":1,"start_bytes":{b_off},"size_bytes":{b_size},"type_id":"0x83"}},
    {{"number":2,"start_bytes":{r_off},"size_bytes":{r_size},"type_id":"0x83","filesystem":{{"type":"ext3"}},"os":{{}}}}]}}]}}"#
    );
    let fx = Fixture::new(tmp, src, "old", &machine);
    let rep = guest::convert(&fx.request("old")).unwrap();
    assert_eq!(rep.boot_route, "pvgrub2", "{:?}", rep.warnings);
    let img = fx.disk();
    assert_eq!(
        guest_file(&img, b_off, "/grub/menu.lst").unwrap(),
        "title Linux\nroot (hd0,0)\nkernel /vmlinuz-2.6.32-5-xen-amd64 root=/dev/xvda2 ro console=hvc0\ninitrd /initrd.img-2.6.32-5-xen-amd64\n"
    );
    let cfg = guest_file(&img, b_off, "/grub/grub.cfg").expect("grub.cfg on the boot partition");
    assert!(
        cfg.contains("\tsearch --no-floppy --set=root --file /vmlinuz-2.6.32-5-xen-amd64\n\tlinux /vmlinuz-2.6.32-5-xen-amd64 root=/dev/xvda2 ro console=hvc0\n"),
        "{cfg}"
    );
    assert_eq!(
        guest_file(&img, r_off, "/etc/fstab").unwrap(),
        "/dev/xvda2 / ext3 defaults 0 1\nLABEL=boot /boot ext2 defaults 0 2\n"
    );
    // Nothing was written into the root filesystem's own /boot directory.
    let ls = debugfs(&img, r_off, "ls /boot");
    let names = String::from_utf8_lossy(&ls.stdout);
    assert!(!names.contains("grub"), "{names}");
    assert_eq!(rep.kernels[0].version, "2.6.32-5-xen-amd64");
}

// ---------------------------------------------- (d) host-only initrd

const HO_KERNEL: &str = "6.1.0-13-amd64";
const HO_MODULES_DEP: &str = "kernel/fs/ext4/ext4.ko:\n\
kernel/drivers/block/xen-blkfront.ko: kernel/lib/crc-blk.ko\n\
kernel/lib/crc-blk.ko:\n\
kernel/drivers/net/xen-netfront.ko:\n";

/// A Debian-like guest whose initrd, built host-only by `generator`
/// ("initramfs-tools" or "dracut"), holds ext4 but not xen-blkfront; the
/// guest's /lib/modules has the driver and a dependency of it.
fn hostonly(generator: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let m = format!("usr/lib/modules/{HO_KERNEL}");
    let ext4 = format!("{m}/kernel/fs/ext4/ext4.ko");
    let mut files = vec![(ext4.as_str(), "ext4 module")];
    match generator {
        "initramfs-tools" => {
            files.push(("conf/initramfs.conf", "MODULES=dep\n"));
            files.push(("conf/modules", "ext4\n"));
        }
        _ => files.push(("usr/lib/dracut/modules.txt", "kernel-modules\n")),
    }
    let ird = initrd_with(&tmp.path().join("ird"), &files, "zstd");
    let lm = format!("/lib/modules/{HO_KERNEL}");
    let mut tree = vec![
        (
            "/etc/fstab".to_string(),
            format!("UUID={DEB_ROOT_UUID} / ext4 errors=remount-ro 0 1\n"),
        ),
        (
            "/boot/grub/grub.cfg".to_string(),
            format!(
                "menuentry 'Debian' {{\n\tlinux /boot/vmlinuz-{HO_KERNEL} \
                 root=UUID={DEB_ROOT_UUID} ro\n\tinitrd /boot/initrd.img-{HO_KERNEL}\n}}\n"
            ),
        ),
        (format!("/boot/vmlinuz-{HO_KERNEL}"), "kernel".to_string()),
        (
            format!("/boot/config-{HO_KERNEL}"),
            "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\nCONFIG_XEN_NETDEV_FRONTEND=m\n"
                .to_string(),
        ),
        (format!("{lm}/modules.dep"), HO_MODULES_DEP.to_string()),
        (format!("{lm}/modules.alias"), "alias xen:vbd xen_blkfront\n".to_string()),
        (format!("{lm}/kernel/drivers/block/xen-blkfront.ko"), "blkfront module".to_string()),
        (format!("{lm}/kernel/lib/crc-blk.ko"), "crc module".to_string()),
        ("/lib/systemd/systemd".to_string(), "systemd".to_string()),
        ("/lib/systemd/system/serial-getty@.service".to_string(), "[Unit]\n".to_string()),
        ("/sbin/init".to_string(), "->/lib/systemd/systemd".to_string()),
    ];
    if generator == "initramfs-tools" {
        tree.push((
            "/etc/initramfs-tools/modules".to_string(),
            "# modules\n".to_string(),
        ));
    } else {
        tree.push(("/etc/dracut.conf".to_string(), "hostonly=yes\n".to_string()));
    }
    let tree: Vec<(&str, &str)> = tree.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_tree(&root, &tree);
    std::fs::write(root.join(format!("boot/initrd.img-{HO_KERNEL}")), ird).unwrap();
    let src = source_disk(tmp.path(), "label: gpt\nstart=2048, size=81920, type=L\n");
    mkfs_into(&src, P1, "ext4", &root, P1_SIZE, DEB_ROOT_UUID, None);
    let machine = format!(
        r#"{{"name":"ho","cpus":1,"memory_bytes":1073741824,"nics":[],
  "disks":[{{"path":"/dev/sda","size_bytes":{},"table":"gpt",
    "partitions":[{{"number":1,"start_bytes":{P1},"size_bytes":{P1_SIZE},
      "type_id":"0fc63daf-8483-4772-8e79-3d69d8477de4",
      "filesystem":{{"type":"ext4","uuid":"{DEB_ROOT_UUID}"}},"os":{{"id":"debian","init_system":"systemd"}}}}]}}]}}"#,
        64 * MIB
    );
    Fixture::new(tmp, src, "ho", &machine)
}

/// A file's bytes inside an ext filesystem of an image (debugfs, no mount).
fn guest_bytes(img: &Path, off: u64, path: &str) -> Vec<u8> {
    let out = debugfs(img, off, &format!("cat {path}"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{path} not in the image"
    );
    out.stdout
}

/// Converts the host-only fixture: the dry run changes nothing, the real
/// run appends the driver; returns the report and the initrd's listing.
fn convert_hostonly(fx: &Fixture) -> (ConversionReport, p2xen::guest::initrd::Listing) {
    let img = fx.disk();
    let initrd_path = format!("/boot/initrd.img-{HO_KERNEL}");
    let original = guest_bytes(&img, P1, &initrd_path);
    let before = hash_file(&img);
    let mut dry = fx.request("ho");
    dry.dry_run = true;
    let d = guest::convert(&dry).unwrap();
    assert_eq!(hash_file(&img), before, "dry run changed the image");
    assert_eq!(d.boot_route, "pvgrub2");
    assert!(
        d.fixups
            .iter()
            .any(|f| f.file == initrd_path && f.action == "append"),
        "{:#?}",
        d.fixups
    );

    let rep = guest::convert(&fx.request("ho")).unwrap();
    assert_eq!(rep.boot_route, "pvgrub2");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert_eq!(
        rep.kernels[0].blkfront,
        p2xen::guest::xencheck::Driver::AddedToInitrd
    );
    let after = guest_bytes(&img, P1, &initrd_path);
    assert_eq!(
        guest_bytes(&img, P1, &format!("{initrd_path}.p2xen-orig")),
        original,
        "the original initrd is kept byte for byte"
    );
    assert_eq!(
        &after[..original.len()],
        &original[..],
        "appended, not rewritten"
    );
    let listing = p2xen::guest::initrd::read(&after, &|_| true).unwrap();
    assert_eq!(listing.segments, ["cpio", "zstd", "gzip"]);
    let m = format!("usr/lib/modules/{HO_KERNEL}");
    for (name, data) in [
        (
            format!("{m}/kernel/drivers/block/xen-blkfront.ko"),
            &b"blkfront module"[..],
        ),
        (format!("{m}/kernel/lib/crc-blk.ko"), b"crc module"),
        (format!("{m}/modules.dep"), HO_MODULES_DEP.as_bytes()),
        (format!("{m}/kernel/fs/ext4/ext4.ko"), b"ext4 module"),
    ] {
        assert_eq!(listing.file(&name), Some(data), "{name}");
    }
    // The segment adds no entry for a directory the initrd already has.
    let dirs: Vec<&str> = listing
        .entries
        .iter()
        .filter(|e| e.is_dir())
        .map(|e| e.name.as_str())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = dirs.iter().collect();
    assert_eq!(unique.len(), dirs.len(), "{dirs:?}");
    (rep, listing)
}

#[test]
fn hostonly_initramfs_tools_initrd_gains_xen_blkfront() {
    let fx = hostonly("initramfs-tools");
    let (_, listing) = convert_hostonly(&fx);
    assert_eq!(
        listing.file("conf/modules"),
        Some(&b"ext4\nxen-blkfront\n"[..])
    );
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/initramfs-tools/modules").unwrap(),
        "# modules\nxen-blkfront\nxen-netfront\n"
    );
    // A second conversion finds the driver and changes nothing more.
    let again = convert_again(&fx, "ho");
    assert!(
        !again.fixups.iter().any(|f| f.action == "append"),
        "{:#?}",
        again.fixups
    );
}

#[test]
fn hostonly_dracut_initrd_gains_xen_blkfront() {
    let fx = hostonly("dracut");
    let (_, listing) = convert_hostonly(&fx);
    assert_eq!(
        listing.file("etc/cmdline.d/90-p2xen-xen.conf"),
        Some(&b"rd.driver.pre=xen-blkfront\n"[..])
    );
    assert_eq!(
        listing.file("etc/modules-load.d/90-p2xen-xen.conf"),
        Some(&b"xen-blkfront\n"[..])
    );
    assert!(listing.file("conf/modules").is_none());
    assert!(
        guest_file(&fx.disk(), P1, "/etc/dracut.conf.d/90-p2xen-xen.conf")
            .unwrap()
            .contains("add_drivers+=\" xen-blkfront xen-netfront \"")
    );
}

#[test]
fn hostonly_fix_skipped_with_no_fixup_xen_drivers() {
    let fx = hostonly("initramfs-tools");
    let before = hash_file(&fx.disk());
    let mut req = fx.request("ho");
    req.dry_run = true;
    req.policy.skip.push(FixupKind::XenDrivers);
    let rep = guest::convert(&req).unwrap();
    assert_eq!(hash_file(&fx.disk()), before);
    assert!(!rep.fixups.iter().any(|f| f.action == "append"));
    assert_eq!(rep.boot_route, "hvm", "without the driver no PV route");
}

// ---------------------------------------------- (e) Btrfs root in subvolume @

/// A filesystem UUID for one Btrfs fixture: each call its own, since two
/// tests building theirs at once would otherwise share one, and
/// mkfs.btrfs refuses a UUID a device it can see already carries ("ERROR:
/// non-unique UUID").
fn btrfs_uuid() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "b7f5c0de-{:04x}-4000-8000-{n:012x}",
        std::process::id() & 0xffff
    )
}
const BT_SIZE: u64 = 120 * MIB;
const BT_SWAP: u64 = 121 * MIB;
const BT_FSTAB: &str = "/dev/sda1 /     btrfs subvol=@     0 0\n\
                        /dev/sda1 /home btrfs subvol=@home 0 0\n\
                        /dev/sda2 none  swap  sw           0 0\n";
/// A stale tree at the top level (as an in-place conversion leaves behind):
/// mounting the top level would find and edit this one.
const BT_DECOY_FSTAB: &str = "/dev/sda1 / btrfs defaults 0 0\n/dev/sdb1 /srv ext4 defaults 0 2\n";

/// The Btrfs on partition 1 of `img` mounted at its top level (subvolid 5),
/// through p2xen's own loop and mount guards, so a failing assertion
/// unwinds them.
fn btrfs_top(
    img: &Path,
    read_only: bool,
) -> (
    guest::mount::MountPoint,
    guest::mount::LoopDevice,
    guest::mount::Mounted,
) {
    need("mkfs.btrfs", "btrfs-progs");
    let mnt = guest::mount::MountPoint::new().unwrap();
    let lo = guest::mount::LoopDevice::attach(img, P1, BT_SIZE, read_only).unwrap();
    let mo = guest::mount::Mounted::mount_with(
        lo.path(),
        mnt.path(),
        "btrfs",
        read_only,
        Some("subvolid=5"),
    )
    .unwrap();
    (mnt, lo, mo)
}

/// GPT; Btrfs on 1 with subvolumes @ (root, its /boot inside) and @home,
/// the top level the default subvolume and holding a decoy /etc; swap on 2.
/// machine.json names no OS, so the conversion has to find the root itself.
fn btrfs_server() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ird = initrd(
        &tmp.path().join("ird"),
        &[
            "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/block/xen-blkfront.ko",
            "usr/lib/modules/6.1.0-13-amd64/kernel/fs/btrfs/btrfs.ko",
        ],
        "gzip",
    );
    let src = tmp.path().join("source.img");
    sparse_image(&src, 160 * MIB);
    sfdisk(
        &src,
        "label: gpt\nstart=2048, size=245760, type=L\nstart=247808, size=32768, type=S\n",
    );
    let part = tmp.path().join("p1.img");
    sparse_image(&part, BT_SIZE);
    let bt_uuid = btrfs_uuid();
    tool(
        "mkfs.btrfs",
        "btrfs-progs",
        &["-q", "-f", "-U", &bt_uuid, &part.to_string_lossy()],
    );
    {
        let mnt = guest::mount::MountPoint::new().unwrap();
        let lo = guest::mount::LoopDevice::attach(&part, 0, BT_SIZE, false).unwrap();
        let mo = guest::mount::Mounted::mount(lo.path(), mnt.path(), "btrfs", false).unwrap();
        let top = mnt.path();
        for sv in ["@", "@home"] {
            tool(
                "btrfs",
                "btrfs-progs",
                &["subvolume", "create", &top.join(sv).to_string_lossy()],
            );
        }
        write_tree(
            &top.join("@"),
            &[
                ("/etc/fstab", BT_FSTAB),
                ("/etc/hostname", "bt1\n"),
                (
                    "/boot/grub/grub.cfg",
                    "menuentry 'Debian' {\n\tlinux /@/boot/vmlinuz-6.1.0-13-amd64 \
                     root=/dev/sda1 rootflags=subvol=@ ro\n\tinitrd /@/boot/initrd.img-6.1.0-13-amd64\n}\n",
                ),
                ("/boot/vmlinuz-6.1.0-13-amd64", "kernel"),
                (
                    "/boot/config-6.1.0-13-amd64",
                    "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\n",
                ),
                ("/home/.keep", ""),
                ("/sbin/init", "init"),
            ],
        );
        std::fs::write(top.join("@/boot/initrd.img-6.1.0-13-amd64"), ird).unwrap();
        write_tree(&top.join("@home"), &[("/user/notes", "home\n")]);
        write_tree(
            top,
            &[("/etc/fstab", BT_DECOY_FSTAB), ("/etc/hostname", "decoy\n")],
        );
        mo.unmount().unwrap();
        lo.detach().unwrap();
    }
    dd_into(&src, P1, &part);
    std::fs::remove_file(&part).unwrap();
    mkswap_at(&src, BT_SWAP, 16 * MIB, None);
    let machine = format!(
        r#"{{"name":"bt1","cpus":1,"memory_bytes":1073741824,"nics":[],
  "disks":[{{"path":"/dev/sda","size_bytes":{},"table":"gpt",
    "partitions":[{{"number":1,"start_bytes":{P1},"size_bytes":{BT_SIZE},
      "type_id":"0fc63daf-8483-4772-8e79-3d69d8477de4","filesystem":{{"type":"btrfs","uuid":"{bt_uuid}"}}}},
      {{"number":2,"start_bytes":{BT_SWAP},"size_bytes":{},
      "type_id":"0657fd6d-a4ab-43c4-84e5-0933c84b4f4f","filesystem":{{"type":"swap"}}}}]}}]}}"#,
        160 * MIB,
        16 * MIB
    );
    Fixture::new(tmp, src, "bt1", &machine)
}

#[test]
fn btrfs_root_subvolume_is_converted_not_the_top_level() {
    let fx = btrfs_server();
    let rep = guest::convert(&fx.request("bt1")).unwrap();
    let (mnt, lo, mo) = btrfs_top(&fx.disk(), true);
    let top = mnt.path();
    let read = |p: &str| std::fs::read_to_string(top.join(p)).unwrap();
    assert_eq!(
        read("@/etc/fstab"),
        BT_FSTAB.replace("/dev/sda", "/dev/xvda"),
        "the fstab inside @ was not mapped"
    );
    assert_eq!(
        read("etc/fstab"),
        BT_DECOY_FSTAB,
        "the top level's decoy was edited"
    );
    assert_eq!(read("etc/hostname"), "decoy\n");
    assert!(
        read("@/boot/grub/grub.cfg").contains("root=/dev/xvda1 rootflags=subvol=@ ro console=hvc0"),
        "{}",
        read("@/boot/grub/grub.cfg")
    );
    assert_eq!(read("@home/user/notes"), "home\n");
    assert!(!top.join("boot").exists() && !top.join("@home/etc").exists());
    mo.unmount().unwrap();
    lo.detach().unwrap();
    drop(mnt);
    assert!(diff_of(&rep, "/etc/fstab").contains("/dev/xvda1 /     btrfs subvol=@"));
}

/// Layout partitions: dom0 boots the kernel itself, so the subvolume the
/// guest's boot menu passed must be in the config's kernel arguments.
#[test]
fn btrfs_root_subvolume_passed_as_rootflags_when_dom0_boots_the_kernel() {
    let fx = btrfs_server();
    let m = std::fs::read_to_string(fx.store.join("machine.json")).unwrap();
    let m = m.trim_end().trim_end_matches('}').to_string()
        + r#","options":{"layout":"partitions","type":null,"bridge":null,"memory_mib":null,"vcpus":null}}"#;
    std::fs::write(fx.store.join("machine.json"), m).unwrap();
    let rep = guest::convert(&fx.request("bt1")).unwrap();
    assert_eq!(rep.boot_route, "dom0-kernel");
    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("bt1.cfg")).unwrap());
    assert_eq!(xl["extra"], ["rootflags=subvol=@ console=hvc0"]);
    assert_eq!(xl["root"], ["/dev/xvda1 ro"]);
}

// ---------------------------------------------------------------- (f) UEFI

const EFI_ROOT_UUID: &str = "e1f10000-2b3c-4d5e-8f90-0123456789ab";
const EFI_ESP_UUID: &str = "5A1E-0C0A";
/// ESP: 10 MiB at 1 MiB; root: 40 MiB at 11 MiB.
const ESP_OFF: u64 = MIB;
const ESP_SIZE: u64 = 10 * MIB;
const EFI_ROOT_OFF: u64 = 11 * MIB;

/// Debian's grub-efi stub as grub-install writes it into the ESP.
fn debian_esp_stub() -> String {
    format!(
        "search.fs_uuid {EFI_ROOT_UUID} root hd0,gpt2 \n\
         set prefix=($root)'/boot/grub'\n\
         configfile $prefix/grub.cfg\n"
    )
}

/// The real grub.cfg: two kernels, the default (1) the older one.
fn efi_grub_cfg() -> String {
    let entry = |v: &str| {
        format!(
            "menuentry 'Debian GNU/Linux, with Linux {v}' --class debian {{\n\
             \tinsmod part_gpt\n\tinsmod ext2\n\
             \tsearch --no-floppy --fs-uuid --set=root {EFI_ROOT_UUID}\n\
             \tlinux\t/boot/vmlinuz-{v} root=UUID={EFI_ROOT_UUID} ro quiet\n\
             \tinitrd\t/boot/initrd.img-{v}\n}}\n"
        )
    };
    format!(
        "set default=\"1\"\n{}{}",
        entry("6.1.0-13-amd64"),
        entry("6.1.0-9-amd64")
    )
}

/// mtools on an image at a byte offset, as the conversion uses them.
fn mtool(cmd: &str, img: &Path, off: u64, args: &[&str]) -> std::process::Output {
    need(cmd, "mtools");
    let out = Command::new(cmd)
        .arg("-i")
        .arg(format!("{}@@{off}", img.display()))
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A file of the ESP at `off` in `img`, copied out with mcopy.
fn esp_file(img: &Path, off: u64, path: &str) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let local = out.path().to_string_lossy().to_string();
    mtool("mcopy", img, off, &["-n", &format!("::{path}"), &local]);
    std::fs::read(out.path()).unwrap()
}

/// `mdir -/ -b`; empty for an empty ESP (where mdir fails).
fn esp_listing(img: &Path, off: u64) -> String {
    need("mdir", "mtools");
    let out = Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@{off}", img.display()))
        .args(["-/", "-b", "::/"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("\"::/\" not found"),
        "mdir: {err}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pseudo-random bytes standing for a signed EFI binary.
fn efi_binary(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x9e37_0000;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A GPT source disk: an ESP (FAT made with mkfs.vfat --offset, `esp`
/// files put in with mtools) and an ext4 root made from `root`.
fn gpt_esp_disk(tmp: &Path, root: &Path, esp: &[(&str, &[u8])]) -> PathBuf {
    let src = source_disk(
        tmp,
        "label: gpt\nstart=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n\
         start=22528, size=81920, type=L\n",
    );
    mkfs_into(
        &src,
        EFI_ROOT_OFF,
        "ext4",
        root,
        P1_SIZE,
        EFI_ROOT_UUID,
        None,
    );
    tool(
        "mkfs.vfat",
        "dosfstools",
        &[
            "-F",
            "16",
            "-i",
            &EFI_ESP_UUID.replace('-', ""),
            "--offset",
            &(ESP_OFF / 512).to_string(),
            &src.to_string_lossy(),
            &(ESP_SIZE / 1024).to_string(),
        ],
    );
    let stage = tmp.join("esp-file");
    for (path, data) in esp {
        let mut dir = String::new();
        let parent = path.rsplit_once('/').map_or("", |(d, _)| d);
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            dir = format!("{dir}/{part}");
            let listing = esp_listing(&src, ESP_OFF);
            if !listing.lines().any(|l| l == format!("::{dir}/")) {
                mtool("mmd", &src, ESP_OFF, &[&format!("::{dir}")]);
            }
        }
        std::fs::write(&stage, data).unwrap();
        mtool(
            "mcopy",
            &src,
            ESP_OFF,
            &[&stage.to_string_lossy(), &format!("::{path}")],
        );
    }
    src
}

/// machine.json of the UEFI fixtures; `firmware` "" for an older sender.
fn efi_machine(firmware: &str) -> String {
    let firmware = match firmware {
        "" => String::new(),
        f => format!(r#","firmware":"{f}""#),
    };
    format!(
        r#"{{"name":"efi1","hostname":"efi1","cpus":2,"memory_bytes":2147483648,
  "nics":[{{"name":"eno1","mac":"52:54:00:12:34:60","driver":"e1000e"}}],
  "disks":[{{"path":"/dev/nvme0n1","size_bytes":{},"table":"gpt","serial":"S6JXNX0T123456",
    "partitions":[
      {{"number":1,"start_bytes":{ESP_OFF},"size_bytes":{ESP_SIZE},"type_id":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        "filesystem":{{"type":"vfat","uuid":"{EFI_ESP_UUID}"}}}},
      {{"number":2,"start_bytes":{EFI_ROOT_OFF},"size_bytes":{P1_SIZE},"type_id":"0fc63daf-8483-4772-8e79-3d69d8477de4",
        "filesystem":{{"type":"ext4","uuid":"{EFI_ROOT_UUID}"}},"os":{{"id":"debian","init_system":"systemd"}}}}]}}]{firmware}}}"#,
        64 * MIB
    )
}

/// Writes `files` into `root` with, per kernel version, a kernel, a config
/// with Xen PV support and an initrd (`/boot/{initrd_prefix}V[.img]`)
/// holding xen-blkfront.
fn xen_ready_tree(
    tmp: &Path,
    root: &Path,
    mut files: Vec<(String, String)>,
    versions: &[&str],
    initrd_prefix: &str,
) {
    let suffix = if initrd_prefix.starts_with("initramfs") {
        ".img"
    } else {
        ""
    };
    for v in versions {
        files.push((format!("/boot/vmlinuz-{v}"), format!("kernel {v}")));
        files.push((
            format!("/boot/config-{v}"),
            "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_PVH=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\nCONFIG_XEN_NETDEV_FRONTEND=m\n".into(),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_tree(root, &refs);
    for v in versions {
        let ird = initrd(
            &tmp.join(format!("ird-{v}")),
            &[&format!(
                "usr/lib/modules/{v}/kernel/drivers/block/xen-blkfront.ko"
            )],
            "gzip",
        );
        std::fs::write(root.join(format!("boot/{initrd_prefix}{v}{suffix}")), ird).unwrap();
    }
}

/// A UEFI Debian: GPT, an ESP (FAT made with mkfs.vfat --offset, filled
/// with mtools) holding shim, grub and the stub, ext4 root with the real
/// grub.cfg; LVM's devices file and SELinux on, for item 6.
fn uefi_debian(firmware: &str) -> (Fixture, Vec<u8>, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let fstab = format!(
        "UUID={EFI_ROOT_UUID} /         ext4 errors=remount-ro 0 1\n\
         UUID={EFI_ESP_UUID}  /boot/efi vfat umask=0077 0 1\n\
         /dev/disk/by-id/nvme-SAMSUNG_MZVL2512_S6JXNX0T123456-part2 /srv ext4 noauto 0 2\n"
    );
    let grub_cfg = efi_grub_cfg();
    let files: Vec<(String, String)> = vec![
        ("/etc/fstab".into(), fstab),
        ("/boot/grub/grub.cfg".into(), grub_cfg),
        ("/boot/efi/.keep".into(), String::new()),
        ("/etc/selinux/config".into(), "SELINUX=permissive\nSELINUXTYPE=default\n".into()),
        (
            "/etc/lvm/devices/system.devices".into(),
            "VERSION=1.1.1\nIDTYPE=sys_wwid IDNAME=eui.0025388b1234 DEVNAME=/dev/nvme0n1p3 PVID=x\n"
                .into(),
        ),
        ("/lib/systemd/systemd".into(), "systemd".into()),
        ("/sbin/init".into(), "->/lib/systemd/systemd".into()),
    ];
    xen_ready_tree(
        tmp.path(),
        &root,
        files,
        &["6.1.0-9-amd64", "6.1.0-13-amd64"],
        "initrd.img-",
    );
    let shim = efi_binary(1, 9000);
    let grub = efi_binary(2, 20000);
    let stub = debian_esp_stub();
    let src = gpt_esp_disk(
        tmp.path(),
        &root,
        &[
            ("/EFI/debian/shimx64.efi", &shim),
            ("/EFI/debian/grubx64.efi", &grub),
            ("/EFI/debian/grub.cfg", stub.as_bytes()),
        ],
    );
    let machine = efi_machine(firmware);
    (Fixture::new(tmp, src, "efi1", &machine), shim, grub)
}

#[test]
fn uefi_source_hvm_boots_ovmf_from_the_fallback_loader() {
    let (fx, shim, grub) = uefi_debian("uefi");
    let mut req = fx.request("efi1");
    req.xen_type = Some(XenType::Hvm);
    let rep = guest::convert(&req).unwrap();
    let img = fx.disk();

    assert_eq!(rep.firmware, guest::Firmware::Uefi);
    assert!(
        rep.firmware_reason.contains("/EFI/debian/shimx64.efi"),
        "{}",
        rep.firmware_reason
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.store.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(doc["conversion"]["firmware"], "uefi");

    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("efi1.cfg")).unwrap());
    assert_eq!(xl["type"], ["hvm"]);
    assert_eq!(xl["bios"], ["ovmf"]);

    // The fallback loader is the distro's shim, byte for byte, with its grub
    // beside it; the distro's own files are untouched.
    assert_eq!(esp_file(&img, ESP_OFF, "/EFI/BOOT/BOOTX64.EFI"), shim);
    assert_eq!(esp_file(&img, ESP_OFF, "/EFI/BOOT/grubx64.efi"), grub);
    assert_eq!(esp_file(&img, ESP_OFF, "/EFI/debian/shimx64.efi"), shim);
    let f = rep
        .fixups
        .iter()
        .find(|f| f.kind == FixupKind::Efi && f.file.ends_with(":/EFI/BOOT/BOOTX64.EFI"))
        .unwrap_or_else(|| panic!("{:#?}", rep.fixups));
    assert!(
        f.diff
            .starts_with("copied /EFI/debian/shimx64.efi (9000 bytes, sha256 "),
        "{}",
        f.diff
    );
    assert!(f.file.starts_with("ESP (disk0 partition 1)"), "{}", f.file);

    // Item 6: the by-id name is the root disk's (its serial), now by UUID;
    // LVM's devices file is gone; SELinux relabels at first boot.
    let fstab = guest_file(&img, EFI_ROOT_OFF, "/etc/fstab").unwrap();
    assert!(
        fstab.contains(&format!("UUID={EFI_ROOT_UUID} /srv ext4 noauto 0 2")),
        "{fstab}"
    );
    assert_eq!(
        guest_file(&img, EFI_ROOT_OFF, "/etc/lvm/devices/system.devices"),
        None
    );
    assert_eq!(
        guest_file(&img, EFI_ROOT_OFF, "/.autorelabel").as_deref(),
        Some("")
    );
    assert!(rep.fixups.iter().any(|f| f.kind == FixupKind::Selinux));

    // Again, with the fallback there: nothing more is written to the ESP.
    let before = hash_range(&img, ESP_OFF, usize::try_from(ESP_SIZE).unwrap());
    req.force = true;
    let again = guest::convert(&req).unwrap();
    assert!(
        !again.fixups.iter().any(|f| f.kind == FixupKind::Efi),
        "{:#?}",
        again.fixups
    );
    assert_eq!(
        hash_range(&img, ESP_OFF, usize::try_from(ESP_SIZE).unwrap()),
        before
    );
}

#[test]
fn uefi_source_pv_routes_boot_the_real_grub_cfg() {
    // No firmware in machine.json (an older sender): the ESP decides.
    let (fx, _, _) = uefi_debian("");
    let img = fx.disk();
    let esp_before = hash_range(&img, ESP_OFF, usize::try_from(ESP_SIZE).unwrap());
    let mut req = fx.request("efi1");
    req.policy.skip = vec![FixupKind::Efi];
    let rep = guest::convert(&req).unwrap();
    // --no-fixup efi: the ESP is as it was.
    assert_eq!(
        hash_range(&img, ESP_OFF, usize::try_from(ESP_SIZE).unwrap()),
        esp_before
    );
    assert!(!esp_listing(&img, ESP_OFF).contains("BOOT"));
    assert_eq!(rep.firmware, guest::Firmware::Uefi);
    assert!(
        rep.firmware_reason
            .starts_with("GPT disk with an ESP (disk0 partition 1)"),
        "{}",
        rep.firmware_reason
    );
    assert_eq!(rep.boot_route, "pvgrub2");
    // pvgrub2 reads the grub.cfg the stub hands over to, as it is.
    assert!(
        !rep.fixups
            .iter()
            .any(|f| f.file == "/boot/grub/grub.cfg" && f.action == "create"),
        "{:#?}",
        rep.fixups
    );
    assert!(!rep.config.contains("bios"), "{}", rep.config);

    // The command line says so too, and knows the new fix-up kinds.
    let store = fx.store.parent().unwrap().to_string_lossy().into_owned();
    let xen_dir = fx.xen_dir.to_string_lossy().into_owned();
    let out = p2xen(&[
        "convert",
        "--name",
        "efi1",
        "--store",
        &store,
        "--xen-dir",
        &xen_dir,
        "--force",
        "--dry-run",
        "--type",
        "hvm",
        "--no-fixup",
        "efi",
        "--no-fixup",
        "selinux",
        "--no-fixup",
        "device-caches",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\nfirmware: uefi (GPT disk with an ESP (disk0 partition 1) holding /EFI/debian/shimx64.efi)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("bios = \"ovmf\""), "{stdout}");
    assert!(!stdout.contains("== efi "), "{stdout}");

    // Layout partitions: dom0 boots the kernel the real grub.cfg boots by
    // default (entry 1, the older one), not the newest.
    let mut req = fx.request("efi1");
    req.layout = Some(Layout::Partitions);
    req.force = true;
    let rep = guest::convert(&req).unwrap();
    assert_eq!(rep.boot_route, "dom0-kernel");
    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("efi1.cfg")).unwrap());
    assert!(
        xl["kernel"][0].ends_with("/boot/vmlinuz-6.1.0-9-amd64"),
        "{:?}",
        xl["kernel"]
    );
    assert_eq!(
        std::fs::read_to_string(fx.store.join("boot/vmlinuz-6.1.0-9-amd64")).unwrap(),
        "kernel 6.1.0-9-amd64"
    );
    assert!(
        xl["ramdisk"][0].ends_with("/boot/initrd.img-6.1.0-9-amd64"),
        "{:?}",
        xl["ramdisk"]
    );
    // Layout partitions has no firmware boot: no fallback loader either.
    assert!(!rep.fixups.iter().any(|f| f.kind == FixupKind::Efi));
}

/// A RHEL 8 style UEFI guest: the full grub.cfg in the ESP boots BLS
/// entries (`blscfg`), no grub.cfg under /boot, and the distro's own
/// fallback loader already in `\EFI\BOOT`.
fn uefi_rhel(firmware: &str) -> (Fixture, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mid = "3c2a0f9e6b1d4e8fa1b2c3d4e5f60718";
    let mut files: Vec<(String, String)> = vec![
        (
            "/etc/fstab".into(),
            format!(
                "UUID={EFI_ROOT_UUID} / ext4 defaults 0 1\n\
                 UUID={EFI_ESP_UUID} /boot/efi vfat umask=0077,shortname=winnt 0 2\n"
            ),
        ),
        ("/etc/dracut.conf".into(), String::new()),
        (
            "/boot/grub2/grubenv".into(),
            "# GRUB Environment Block\n".into(),
        ),
        ("/lib/systemd/systemd".into(), "systemd".into()),
        ("/sbin/init".into(), "->/lib/systemd/systemd".into()),
    ];
    for v in ["4.18.0-305.el8.x86_64", "4.18.0-477.el8.x86_64"] {
        files.push((
            format!("/boot/loader/entries/{mid}-{v}.conf"),
            format!(
                "title Rocky Linux ({v}) 8\nversion {v}\nlinux /boot/vmlinuz-{v}\n\
                 initrd /boot/initramfs-{v}.img $tuned_initrd\n\
                 options root=UUID={EFI_ROOT_UUID} ro crashkernel=auto\nid rocky-{v}\n"
            ),
        ));
    }
    xen_ready_tree(
        tmp.path(),
        &root,
        files,
        &["4.18.0-305.el8.x86_64", "4.18.0-477.el8.x86_64"],
        "initramfs-",
    );
    let shim = efi_binary(3, 8000);
    let esp_cfg = "set default=\"${saved_entry}\"\nload_env -f ${config_directory}/grubenv\n\
                   insmod blscfg\nblscfg\n";
    let src = gpt_esp_disk(
        tmp.path(),
        &root,
        &[
            ("/EFI/redhat/shimx64.efi", &shim),
            ("/EFI/redhat/grubx64.efi", &efi_binary(4, 12000)),
            ("/EFI/redhat/grub.cfg", esp_cfg.as_bytes()),
            ("/EFI/BOOT/BOOTX64.EFI", &shim),
            ("/EFI/BOOT/fbx64.efi", &efi_binary(5, 3000)),
        ],
    );
    (Fixture::new(tmp, src, "efi1", &efi_machine(firmware)), shim)
}

#[test]
fn uefi_rhel_bls_entries_become_pvgrub2_menu() {
    let (fx, shim) = uefi_rhel("uefi");
    let img = fx.disk();
    let esp_before = hash_range(&img, ESP_OFF, usize::try_from(ESP_SIZE).unwrap());
    let rep = guest::convert(&fx.request("efi1")).unwrap();
    assert_eq!(rep.firmware, guest::Firmware::Uefi);
    assert_eq!(rep.boot_route, "pvgrub2");
    // The distro's own fallback loader stays; the ESP is unchanged.
    assert!(!rep.fixups.iter().any(|f| f.kind == FixupKind::Efi));
    assert_eq!(
        hash_range(&img, ESP_OFF, usize::try_from(ESP_SIZE).unwrap()),
        esp_before
    );
    assert_eq!(esp_file(&img, ESP_OFF, "/EFI/BOOT/BOOTX64.EFI"), shim);

    let cfg = guest_file(&img, EFI_ROOT_OFF, "/boot/grub/grub.cfg").unwrap();
    let (first, second) = (
        cfg.find("linux /boot/vmlinuz-4.18.0-477.el8.x86_64 root=UUID=")
            .unwrap_or_else(|| panic!("{cfg}")),
        cfg.find("linux /boot/vmlinuz-4.18.0-305.el8.x86_64 root=UUID=")
            .unwrap_or_else(|| panic!("{cfg}")),
    );
    assert!(first < second, "newest entry first: {cfg}");
    assert!(cfg.contains("set default=0\n"), "{cfg}");
    assert!(
        cfg.contains(&format!(
            "\tlinux /boot/vmlinuz-4.18.0-477.el8.x86_64 root=UUID={EFI_ROOT_UUID} ro crashkernel=auto console=hvc0\n\
             \tinitrd /boot/initramfs-4.18.0-477.el8.x86_64.img\n"
        )),
        "{cfg}"
    );
    let f = rep
        .fixups
        .iter()
        .find(|f| f.file == "/boot/grub/grub.cfg")
        .unwrap();
    assert_eq!(f.action, "create");
    assert!(
        f.note
            .ends_with("ESP (disk0 partition 1):/EFI/redhat/grub.cfg"),
        "{}",
        f.note
    );

    // A second run plans no further grub.cfg change.
    let again = convert_again(&fx, "efi1");
    assert!(
        !again.fixups.iter().any(|f| f.file == "/boot/grub/grub.cfg"),
        "{:#?}",
        again.fixups
    );
}

#[test]
fn recorded_bios_wins_over_an_esp_loader() {
    let (fx, _) = uefi_rhel("bios");
    let mut req = fx.request("efi1");
    req.xen_type = Some(XenType::Hvm);
    req.dry_run = true;
    let rep = guest::convert(&req).unwrap();
    assert_eq!(rep.firmware, guest::Firmware::Bios);
    assert!(
        rep.firmware_reason
            .starts_with("the live system booted by BIOS (no /sys/firmware/efi), though the ESP"),
        "{}",
        rep.firmware_reason
    );
    assert!(!rep.config.contains("bios ="), "{}", rep.config);
}

// ------------------------------------------------- (g) the guest's network

/// The Debian's two NICs (eno1, eno2 in machine.json) bonded, a VLAN on
/// the bond.
const DEB_BONDED: &str = "\
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eno1
iface eno1 inet manual
    bond-master bond0

auto eno2
iface eno2 inet manual
    bond-master bond0

auto bond0
iface bond0 inet static
    address 203.0.113.20/24
    gateway 203.0.113.1
    bond-slaves eno1 eno2
    bond-mode 802.3ad
    dns-nameservers 203.0.113.53

auto bond0.30
iface bond0.30 inet static
    address 10.30.0.20/24
    vlan-raw-device bond0
";

#[test]
fn debian_bond_of_two_nics_becomes_one_vif_with_its_addresses() {
    let fx = debian_with(&[
        ("/etc/network/interfaces", DEB_BONDED),
        ("/lib/systemd/systemd-udevd", "udevd"),
    ]);
    let rep = guest::convert(&fx.request("web1")).unwrap();
    let want = "\
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

# p2xen: auto eno1
# p2xen: iface eno1 inet manual
# p2xen:     bond-master bond0

# p2xen: auto eno2
# p2xen: iface eno2 inet manual
# p2xen:     bond-master bond0

auto eth0
iface eth0 inet static
    address 203.0.113.20/24
    gateway 203.0.113.1
# p2xen:     bond-slaves eno1 eno2
# p2xen:     bond-mode 802.3ad
    dns-nameservers 203.0.113.53

auto eth0.30
iface eth0.30 inet static
    address 10.30.0.20/24
    vlan-raw-device eth0
";
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/network/interfaces").unwrap(),
        want
    );
    assert_eq!(
        diff_of(&rep, "/etc/network/interfaces"),
        guest::change::unified_diff("/etc/network/interfaces", DEB_BONDED, want)
    );
    let f = rep
        .fixups
        .iter()
        .find(|f| f.file == "/etc/network/interfaces")
        .unwrap();
    assert_eq!((f.kind, f.action.as_str()), (FixupKind::NetConfig, "edit"));
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    // systemd's udevd would name the vif enX0: pinned to eth0, once.
    let pin = "/etc/systemd/network/90-p2xen-eth0.link";
    assert_eq!(
        guest_file(&fx.disk(), P1, pin).unwrap(),
        guest::netcfg::pin_link("eth0", "52:54:00:12:34:56")
    );
    assert!(
        guest::netcfg::pin_link("eth0", "52:54:00:12:34:56")
            .contains("[Match]\nMACAddress=52:54:00:12:34:56\nType=ether\n\n[Link]\nName=eth0\n")
    );
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/systemd/network/90-p2xen-eth1.link"),
        None
    );
    assert_eq!(diff_of(&rep, pin).lines().next(), Some("--- /dev/null"));
    // Run again over its own result: nothing more to change, the same vif.
    let again = convert_again(&fx, "web1");
    assert!(
        !again.fixups.iter().any(|f| f.kind == FixupKind::NetConfig),
        "{:#?}",
        again.fixups
    );
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/network/interfaces").unwrap(),
        want
    );
    // The bond's MAC is its first slave's: that NIC's vif alone, in the
    // first run's config and in the one the second run wrote.
    let written = std::fs::read_to_string(fx.xen_dir.join("web1.cfg")).unwrap();
    for config in [&rep.config, &written] {
        assert_eq!(
            parse_xl(config)["vif"],
            ["mac=52:54:00:12:34:56, bridge=xenbr0"]
        );
    }
}

#[test]
fn vif_per_nic_keeps_the_bond_and_ifcfg_files_are_renamed() {
    // RHEL's files beside Debian's: each format is rewritten on its own,
    // and the rename of an ifcfg file is what is checked on the image.
    let ifcfg = "DEVICE=eno2\nNAME=eno2\nTYPE=Ethernet\nBOOTPROTO=none\nIPADDR=192.0.2.10\nPREFIX=24\nHWADDR=52:54:00:12:34:57\nONBOOT=yes\n";
    let fx = debian_with(&[
        ("/etc/network/interfaces", DEB_BONDED),
        ("/etc/sysconfig/network-scripts/ifcfg-eno2", ifcfg),
    ]);
    let mut req = fx.request("web1");
    req.policy.vif_per_nic = true;
    let rep = guest::convert(&req).unwrap();
    let img = fx.disk();
    assert_eq!(
        guest_file(&img, P1, "/etc/network/interfaces").unwrap(),
        DEB_BONDED.replace("eno1", "eth0").replace("eno2", "eth1")
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/sysconfig/network-scripts/ifcfg-eno2"),
        None
    );
    assert_eq!(
        guest_file(&img, P1, "/etc/sysconfig/network-scripts/ifcfg-eth1").unwrap(),
        ifcfg.replace("=eno2", "=eth1")
    );
    assert_eq!(
        diff_of(&rep, "/etc/sysconfig/network-scripts/ifcfg-eno2"),
        "rename from /etc/sysconfig/network-scripts/ifcfg-eno2\n\
         rename to /etc/sysconfig/network-scripts/ifcfg-eth1\n"
    );
    assert_eq!(
        diff_of(&rep, "/etc/sysconfig/network-scripts/ifcfg-eth1"),
        "--- a/etc/sysconfig/network-scripts/ifcfg-eth1\n\
         +++ b/etc/sysconfig/network-scripts/ifcfg-eth1\n\
         @@ -1,5 +1,5 @@\n\
         -DEVICE=eno2\n\
         -NAME=eno2\n\
         +DEVICE=eth1\n\
         +NAME=eth1\n \
         TYPE=Ethernet\n \
         BOOTPROTO=none\n \
         IPADDR=192.0.2.10\n"
    );
    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("web1.cfg")).unwrap());
    assert_eq!(
        xl["vif"],
        [
            "mac=52:54:00:12:34:56, bridge=xenbr0",
            "mac=52:54:00:12:34:57, bridge=xenbr0"
        ]
    );
}

/// The receiver's `--vif-per-nic` and `--no-fixup` reach each conversion
/// it runs after a verified copy, as `p2xen convert`'s do; with
/// `--no-convert` they are a usage error.
#[test]
fn the_receivers_conversion_policy_applies_to_its_conversions() {
    let fx = debian_with(&[("/etc/network/interfaces", DEB_BONDED)]);
    let policy = guest::ConversionPolicy {
        skip: vec![FixupKind::Monitoring],
        vif_per_nic: true,
        guest_kernel: None,
    };
    let summary = p2xen::receive::conversion::after_verified_copy(
        &fx.store,
        "web1",
        &fx.xen_dir,
        &policy,
        false,
    )
    .unwrap();
    assert!(summary.next_command.contains("web1.cfg"), "{summary:?}");
    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("web1.cfg")).unwrap());
    assert_eq!(xl["vif"].len(), 2, "{xl:?}");
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/network/interfaces").unwrap(),
        DEB_BONDED.replace("eno1", "eth0").replace("eno2", "eth1")
    );
    let report = std::fs::read_to_string(fx.store.join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let kinds: Vec<&str> = report["conversion"]["fixups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"net-config"), "{kinds:?}");
    assert!(!kinds.contains(&"monitoring"), "{kinds:?}");

    for flag in [&["--vif-per-nic"][..], &["--no-fixup", "console"][..]] {
        let mut args = vec!["receive", "--listen", "127.0.0.1:0", "--no-convert"];
        args.extend_from_slice(flag);
        let out = p2xen(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{stderr}");
    }
}

#[test]
fn no_fixup_net_config_leaves_the_network_files_and_vifs() {
    let fx = debian_with(&[("/etc/network/interfaces", DEB_BONDED)]);
    let mut req = fx.request("web1");
    req.policy.skip = vec![FixupKind::NetConfig];
    let rep = guest::convert(&req).unwrap();
    assert_eq!(
        guest_file(&fx.disk(), P1, "/etc/network/interfaces").unwrap(),
        DEB_BONDED
    );
    assert!(
        !rep.fixups.iter().any(|f| f.kind == FixupKind::NetConfig),
        "{:#?}",
        rep.fixups
    );
    let xl = parse_xl(&std::fs::read_to_string(fx.xen_dir.join("web1.cfg")).unwrap());
    assert_eq!(xl["vif"].len(), 2);
}
