//! `p2xen inspect --json` on images built by sfdisk and mke2fs: partition
//! tables against `sfdisk -J`, OS identity against `debugfs`, and the
//! source image untouched.

mod common;

use common::fixtures::*;
use serde_json::Value;
use std::path::Path;

/// Partition number from an sfdisk node name ("/tmp/x/mbr.img5" → 5).
fn node_number(node: &str) -> u64 {
    let digits: String = node
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap()
}

/// sfdisk's attribute words → p2xen flag names.
fn sfdisk_attrs(attrs: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in attrs.split_whitespace() {
        match word {
            "RequiredPartition" => out.push("required".to_string()),
            "NoBlockIOProtocol" => out.push("no_block_io".to_string()),
            "LegacyBIOSBootable" => out.push("legacy_bios_bootable".to_string()),
            w if w.starts_with("GUID:") => {
                for bit in w["GUID:".len()..].split(',') {
                    out.push(
                        match bit {
                            "60" => "read_only",
                            "62" => "hidden",
                            "63" => "no_automount",
                            other => panic!("unexpected GUID bit {other}"),
                        }
                        .to_string(),
                    );
                }
            }
            other => panic!("unexpected sfdisk attribute {other}"),
        }
    }
    out
}

/// Every field sfdisk -J reports equals what inspect reports.
fn assert_matches_sfdisk(disk: &Value, sf: &Value) {
    let t = &sf["partitiontable"];
    let ss = t["sectorsize"].as_u64().unwrap();
    let table = match t["label"].as_str().unwrap() {
        "dos" => "mbr",
        "gpt" => "gpt",
        other => panic!("unexpected label {other}"),
    };
    assert_eq!(disk["table"], table);
    assert_eq!(
        disk["disk_id"].as_str().unwrap().to_lowercase(),
        t["id"].as_str().unwrap().to_lowercase()
    );
    let sparts = t["partitions"].as_array().unwrap();
    let parts = disk["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), sparts.len(), "partition count: {disk:#}");
    for (p, s) in parts.iter().zip(sparts) {
        let n = node_number(s["node"].as_str().unwrap());
        assert_eq!(p["number"].as_u64().unwrap(), n);
        assert_eq!(
            p["start_bytes"].as_u64().unwrap(),
            s["start"].as_u64().unwrap() * ss,
            "start of {n}"
        );
        assert_eq!(
            p["size_bytes"].as_u64().unwrap(),
            s["size"].as_u64().unwrap() * ss,
            "size of {n}"
        );
        assert_eq!(p["type_id"], s["type"], "type of {n}");
        if table == "gpt" {
            let legacy_boot = s["attrs"]
                .as_str()
                .unwrap_or("")
                .contains("LegacyBIOSBootable");
            assert_eq!(
                p["bootable"].as_bool().unwrap(),
                legacy_boot,
                "boot flag of {n}"
            );
            assert_eq!(p["name"], s["name"], "name of {n}");
            assert_eq!(p["uuid"], s["uuid"], "uuid of {n}");
            let want = sfdisk_attrs(s["attrs"].as_str().unwrap_or(""));
            let got: Vec<String> = serde_json::from_value(p["flags"].clone()).unwrap();
            assert_eq!(got, want, "flags of {n}");
        } else {
            assert_eq!(
                p["bootable"].as_bool().unwrap(),
                s["bootable"].as_bool().unwrap_or(false),
                "boot flag of {n}"
            );
            assert_eq!(
                p["logical"].as_bool().unwrap(),
                n >= 5,
                "logical flag of {n}"
            );
        }
    }
}

/// The OS fields equal what debugfs reads from the same filesystem.
fn assert_os_matches_debugfs(os: &Value, image: &Path, root_offset: u64) {
    assert_eq!(
        os["hostname"].as_str().unwrap(),
        debugfs_cat(image, root_offset, "/etc/hostname").trim()
    );
    let release = debugfs_cat(image, root_offset, "/usr/lib/os-release");
    let pretty = release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap()
        .trim_matches('"');
    assert_eq!(os["pretty_name"].as_str().unwrap(), pretty);
    assert_eq!(os["id"], "debian");
    assert_eq!(os["version_id"], "12");
    let fstab = debugfs_cat(image, root_offset, "/etc/fstab");
    let want: Vec<Vec<String>> = fstab
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let got: Vec<Vec<String>> = os["fstab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            ["spec", "file", "vfstype", "options", "freq", "passno"]
                .iter()
                .map(|k| match &e[*k] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(os["init_system"], "systemd");
}

#[test]
fn mbr_with_logical_partitions_matches_sfdisk_and_debugfs() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    let (v, code, stderr) = inspect_unchanged(&f.image);
    assert_eq!(code, 0, "stderr: {stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(disk["path"], f.image.display().to_string());
    assert_eq!(disk["size_bytes"], 64 * MIB);
    assert_eq!(disk["logical_sector_size"], 512);
    assert_matches_sfdisk(disk, &sfdisk_json(&f.image));
    assert_eq!(partition(disk, 3)["extended"], true);
    assert_eq!(partition(disk, 3)["type_name"], "Extended");
    assert_eq!(partition(disk, 2)["type_name"], "Linux swap / Solaris");
    assert_eq!(partition(disk, 1)["flags"], serde_json::json!(["boot"]));

    let root = partition(disk, 5);
    let os = &root["os"];
    assert_os_matches_debugfs(os, &f.image, f.root_offset);
    // /boot is partition 1; its kernels are merged into the root's OS.
    let mut kernels: Vec<String> = debugfs_ls_files(&f.image, f.boot_offset, "/")
        .into_iter()
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    kernels.sort();
    assert_eq!(kernels.len(), f.kernels.len());
    assert_eq!(os["kernels"], serde_json::json!(kernels));
    assert_eq!(
        os["initrds"],
        serde_json::json!(["initrd.img-6.1.0-17-amd64", "initrd.img-6.1.0-18-amd64"])
    );
    assert_eq!(os["bootloaders"], serde_json::json!(["grub2"]));
    assert_eq!(
        os["bootloader_configs"],
        serde_json::json!(["/boot/grub/grub.cfg"])
    );
    // The /boot and /srv filesystems are no OS roots.
    assert_eq!(partition(disk, 1)["os"], Value::Null);
    assert_eq!(partition(disk, 6)["os"], Value::Null);
    assert_eq!(disk["errors"], serde_json::json!([]));
}

#[test]
fn gpt_matches_sfdisk_and_debugfs() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    let (v, code, stderr) = inspect_unchanged(&f.image);
    assert_eq!(code, 0, "stderr: {stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_matches_sfdisk(disk, &sfdisk_json(&f.image));
    assert_eq!(disk["pmbr"], "protective");
    let names: Vec<&str> = disk["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "BIOS boot",
            "EFI System",
            "Linux filesystem",
            "Linux swap",
            "Linux home"
        ]
    );
    let os = &partition(disk, 3)["os"];
    assert_os_matches_debugfs(os, &f.image, f.root_offset);
    assert_eq!(
        os["kernels"],
        serde_json::json!(["vmlinuz-6.1.0-17-amd64", "vmlinuz-6.1.0-18-amd64"])
    );
    assert_eq!(disk["warnings"], serde_json::json!([]));
}

#[test]
fn whole_disk_ext2_has_no_table_but_an_os() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("whole.img");
    let tree = tmp.path().join("tree");
    RootTree::debian("wholehost").write(&tree);
    sparse_image(&image, 16 * MIB);
    mke2fs_at(&image, "ext2", 0, 16 * MIB, Some(&tree), "whole");
    let (v, code, stderr) = inspect_unchanged(&image);
    assert_eq!(code, 0, "stderr: {stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(disk["table"], "none");
    assert_eq!(disk["partitions"], serde_json::json!([]));
    assert_os_matches_debugfs(&disk["os"], &image, 0);
}

fn grub_images() -> (Vec<u8>, Vec<u8>) {
    let dir = Path::new("/usr/lib/grub/i386-pc");
    assert!(
        dir.join("boot.img").is_file(),
        "GRUB images missing: install the Debian package grub-pc-bin"
    );
    (
        std::fs::read(dir.join("boot.img")).unwrap(),
        std::fs::read(dir.join("diskboot.img")).unwrap(),
    )
}

#[test]
fn grub_boot_img_and_core_img_in_the_post_mbr_gap() {
    let (boot, diskboot) = grub_images();
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("grub.img");
    sparse_image(&image, 8 * MIB);
    sfdisk(&image, "label: dos\nstart=2048, type=83, bootable\n");
    // What grub-install does: boot.img's code (not the table) into the MBR,
    // core.img (starting with diskboot.img) at LBA 1.
    patch(&image, 0, &boot[..440]);
    patch(&image, SECTOR, &diskboot);
    let (v, code, stderr) = inspect_json(&[&image]);
    assert_eq!(code, 0, "stderr: {stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(
        disk["boot_code"],
        "grub2 boot code in MBR; core.img at LBA 1 (post-MBR gap)"
    );
    assert_matches_sfdisk(disk, &sfdisk_json(&image));

    // boot.img whose core.img is gone: reported, not an error.
    patch(&image, SECTOR, &[0u8; 512]);
    let (v, code, _) = inspect_json(&[&image]);
    assert_eq!(code, 0);
    let w = v["disks"][0]["warnings"][0].as_str().unwrap();
    assert!(
        w.contains("loads core.img from LBA 1, but that sector holds no core.img"),
        "{w}"
    );
}

#[test]
fn grub_core_img_in_the_bios_boot_partition() {
    let (mut boot, diskboot) = grub_images();
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    // grub-install on GPT: boot.img's kernel sector (0x5c) points at the
    // BIOS boot partition (LBA 2048 in the fixture).
    boot[0x5c..0x64].copy_from_slice(&2048u64.to_le_bytes());
    patch(&f.image, 0, &boot[..440]);
    patch(&f.image, 2048 * SECTOR, &diskboot);
    let (v, code, stderr) = inspect_json(&[&f.image]);
    assert_eq!(code, 0, "stderr: {stderr}\n{v:#}");
    assert_eq!(
        v["disks"][0]["boot_code"],
        "grub2 boot code in MBR; core.img at LBA 2048 (BIOS boot partition 1)"
    );
}

#[test]
fn hybrid_mbr_is_recognised_and_the_gpt_used() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    // A second MBR entry mirroring GPT partition 3 (type 0x83, LBA 20480).
    patch(&f.image, 446 + 16, &mbr_entry(0x83, 20480, 61440));
    let (v, code, stderr) = inspect_json(&[&f.image]);
    assert_eq!(code, 0, "stderr: {stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(disk["pmbr"], "hybrid");
    assert!(disk["warnings"][0].as_str().unwrap().contains("hybrid MBR"));
    assert_matches_sfdisk(disk, &sfdisk_json(&f.image));
}

#[test]
fn text_output_is_a_table_per_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    let out = p2xen(&["inspect", f.image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("table mbr"), "{text}");
    assert!(
        text.contains("    5        14680064    20.0 MiB  83 Linux"),
        "{text}"
    );
    assert!(
        text.contains("OS: Debian GNU/Linux 12 (bookworm)  hostname: oldserver  init: systemd"),
        "{text}"
    );
}

/// A loop device over an image, detached on drop (even when a test fails).
struct Loop(String);

impl Loop {
    fn attach(image: &Path, sector_size: u32) -> Loop {
        need("losetup", "mount");
        let dev = run(std::process::Command::new("losetup")
            .args(["--sector-size", &sector_size.to_string(), "-f", "--show"])
            .arg(image));
        Loop(dev.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn gpt_image_of_a_4k_sector_disk_is_found() {
    // This sfdisk has no --sector-size: partition a 4096-byte-sector loop
    // device over the image instead (tests run as root).
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("4kn.img");
    sparse_image(&image, 32 * MIB);
    let sf = {
        let lo = Loop::attach(&image, 4096);
        sfdisk(
            Path::new(&lo.0),
            "label: gpt\nstart=256, size=2048, name=\"data\"\nstart=2304, size=1024\n",
        );
        sfdisk_json(Path::new(&lo.0))
    };
    let (v, code, stderr) = inspect_json(&[&image]);
    assert_eq!(code, 0, "{stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(disk["logical_sector_size"], 4096);
    assert_eq!(sf["partitiontable"]["sectorsize"], 4096);
    assert_matches_sfdisk(disk, &sf);
}

/// A 2006-era server: no os-release, sysvinit, GRUB legacy and LILO.
#[test]
fn old_debian_and_centos_roots_are_identified() {
    let tmp = tempfile::tempdir().unwrap();
    let debian = tmp.path().join("etch");
    write_tree(
        &debian,
        &[
            ("etc/debian_version", "4.0\n"),
            ("etc/hostname", "etch\n"),
            ("etc/inittab", "id:2:initdefault:\n"),
            (
                "etc/fstab",
                "/dev/hda1 / ext3 defaults,errors=remount-ro 0 1\n",
            ),
            ("etc/lilo.conf", "boot=/dev/hda\n"),
            ("boot/grub/menu.lst", "default 0\n"),
            ("boot/vmlinuz-2.6.18-6-686", "k"),
            ("boot/initrd.img-2.6.18-6-686", "i"),
        ],
    );
    let centos = tmp.path().join("centos");
    write_tree(
        &centos,
        &[
            ("etc/redhat-release", "CentOS release 5.11 (Final)\n"),
            (
                "etc/sysconfig/network",
                "NETWORKING=yes\nHOSTNAME=web1.example.com\n",
            ),
            ("etc/inittab", "id:3:initdefault:\n"),
            ("etc/fstab", "LABEL=/ / ext3 defaults 1 1\n"),
            ("boot/grub/grub.conf", "default=0\n"),
            ("boot/vmlinuz-2.6.18-398.el5", "k"),
            ("boot/initrd-2.6.18-398.el5.img", "i"),
        ],
    );
    let mut images = Vec::new();
    for (name, tree) in [("etch.img", &debian), ("centos.img", &centos)] {
        let image = tmp.path().join(name);
        sparse_image(&image, 8 * MIB);
        mke2fs_at(&image, "ext3", 0, 8 * MIB, Some(tree), "/");
        images.push(image);
    }
    let (v, code, stderr) = inspect_json(&[&images[0], &images[1]]);
    assert_eq!(code, 0, "{stderr}\n{v:#}");
    let etch = &v["disks"][0]["os"];
    assert_eq!(etch["pretty_name"], "Debian GNU/Linux 4.0");
    assert_eq!(
        (&etch["id"], &etch["version_id"]),
        (&"debian".into(), &"4.0".into())
    );
    assert_eq!(
        etch["hostname"],
        debugfs_cat(&images[0], 0, "/etc/hostname").trim()
    );
    assert_eq!(etch["init_system"], "sysvinit");
    assert_eq!(
        etch["bootloaders"],
        serde_json::json!(["grub-legacy", "lilo"])
    );
    assert_eq!(
        etch["bootloader_configs"],
        serde_json::json!(["/boot/grub/menu.lst", "/etc/lilo.conf"])
    );
    assert_eq!(etch["kernels"], serde_json::json!(["vmlinuz-2.6.18-6-686"]));
    assert_eq!(etch["fstab"][0]["spec"], "/dev/hda1");
    assert_eq!(etch["fstab"][0]["options"], "defaults,errors=remount-ro");

    let c5 = &v["disks"][1]["os"];
    assert_eq!(c5["pretty_name"], "CentOS release 5.11 (Final)");
    assert_eq!(
        (&c5["id"], &c5["version_id"]),
        (&"centos".into(), &"5.11".into())
    );
    assert_eq!(c5["hostname"], "web1.example.com");
    assert_eq!(c5["bootloaders"], serde_json::json!(["grub-legacy"]));
    assert_eq!(
        c5["initrds"],
        serde_json::json!(["initrd-2.6.18-398.el5.img"])
    );
    assert_eq!(c5["fstab"][0]["passno"], 1);
}

/// A block device: size and sector sizes from sysfs agree with blockdev.
#[test]
fn block_device_attributes_match_blockdev() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    let lo = Loop::attach(&f.image, 512);
    let dev = Path::new(&lo.0);
    need("blockdev", "util-linux");
    let bd = |flag: &str| -> u64 {
        run(std::process::Command::new("blockdev").arg(flag).arg(dev))
            .trim()
            .parse()
            .unwrap()
    };
    let (v, code, stderr) = inspect_json(&[dev]);
    assert_eq!(code, 0, "{stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(disk["path"], lo.0.as_str());
    assert_eq!(disk["size_bytes"], bd("--getsize64"));
    assert_eq!(disk["logical_sector_size"], bd("--getss"));
    assert_eq!(disk["physical_sector_size"], bd("--getpbsz"));
    let name = dev.file_name().unwrap().to_str().unwrap();
    let rot = std::fs::read_to_string(format!("/sys/block/{name}/queue/rotational")).unwrap();
    assert_eq!(disk["rotational"], rot.trim() == "1");
    assert_eq!(disk["removable"], false);
    assert_matches_sfdisk(disk, &sfdisk_json(&f.image));
}
