//! `source::filesystems` against the real tools: images built here with
//! mke2fs, mkswap, pvcreate, mkfs.*, checked against blkid, dumpe2fs,
//! pvs and mdadm --examine.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::{
    blkid_probe, dumpe2fs_header, hash_file, patch, resize, sparse_image, tool_stdout,
};
use p2xen::source::device::{Device, MemDisk, Window};
use p2xen::source::extent::ExtentList;
use p2xen::source::filesystems::{Filesystem, FsKind, ProbeError, probe, used_extents};
use proptest::prelude::*;
use tempfile::TempDir;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn image(dir: &TempDir, name: &str, size: u64) -> PathBuf {
    let p = dir.path().join(name);
    sparse_image(&p, size);
    p
}

/// Probes an image file read-only and proves it was not modified.
fn probe_image(path: &Path) -> Result<Option<Filesystem>, ProbeError> {
    let before = hash_file(path);
    let dev = Device::open(path).unwrap();
    let r = probe(&dev);
    if let Ok(Some(fs)) = &r {
        if fs.kind.is_ext() {
            let map = used_extents(&dev, fs).unwrap().unwrap();
            assert_eq!(Some(map.total_bytes()), fs.used_bytes);
        }
    }
    assert_eq!(before, hash_file(path), "source image changed");
    r
}

/// blkid's TYPE for our kinds.
fn blkid_type(k: FsKind) -> &'static str {
    match k {
        FsKind::Lvm2Pv => "LVM2_member",
        k => k.as_str(),
    }
}

fn assert_like_blkid(path: &Path, fs: &Filesystem) {
    let b = blkid_probe(path, 0);
    assert_eq!(
        b.get("TYPE").map(String::as_str),
        Some(blkid_type(fs.kind)),
        "{b:?}"
    );
    assert_eq!(b.get("UUID"), fs.uuid.as_ref(), "UUID vs blkid {b:?}");
    assert_eq!(b.get("LABEL"), fs.label.as_ref(), "LABEL vs blkid {b:?}");
}

// ---------------------------------------------------------------- ext2/3/4

fn populate(dir: &TempDir) -> PathBuf {
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("etc/default")).unwrap();
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::write(root.join("etc/hostname"), "seed\n").unwrap();
    fs::write(
        root.join("etc/fstab"),
        "UUID=0a1b2c3d-1111-2222-3333-444455556666 / ext4 errors=remount-ro 0 1\n",
    )
    .unwrap();
    fs::write(root.join("etc/default/grub"), "GRUB_TIMEOUT=5\n").unwrap();
    // Incompressible-ish data spread over several groups.
    let mut data = Vec::with_capacity(3 << 20);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..(3 << 20) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push(x as u8);
    }
    fs::write(root.join("boot/vmlinuz-6.1.0-13-amd64"), &data).unwrap();
    root
}

fn mke2fs(path: &Path, kind: &str, extra: &[&str]) {
    let mut args = vec![
        "-q",
        "-F",
        "-t",
        kind,
        "-L",
        "lbl-x",
        "-U",
        "0a1b2c3d-1111-2222-3333-444455556666",
    ];
    args.extend_from_slice(extra);
    args.push(path_str(path));
    tool_stdout("mke2fs", "e2fsprogs", &args);
}

fn check_ext(path: &Path, want_kind: FsKind) -> Filesystem {
    let fs = probe_image(path).unwrap().expect("ext filesystem found");
    assert_eq!(fs.kind, want_kind);
    assert_like_blkid(path, &fs);
    let h = dumpe2fs_header(path, 0);
    let num = |k: &str| -> u64 { h[k].parse().unwrap_or_else(|_| panic!("{k}: {}", h[k])) };
    let (blocks, free, bs) = (num("Block count"), num("Free blocks"), num("Block size"));
    assert_eq!(fs.details.blocks_count, Some(blocks));
    assert_eq!(fs.details.free_blocks, Some(free));
    assert_eq!(fs.details.block_size, Some(bs));
    assert_eq!(fs.size_bytes, Some(blocks * bs));
    assert_eq!(fs.details.inodes_count, Some(num("Inode count")));
    assert_eq!(fs.details.free_inodes, Some(num("Free inodes")));
    assert_eq!(fs.details.features.join(" "), h["Filesystem features"]);
    assert_eq!(h["Filesystem state"], "clean");
    assert_eq!(fs.state.as_deref(), Some("clean"));
    // The JSON contract `inspect --json` exposes.
    let v = serde_json::to_value(&fs).unwrap();
    assert_eq!(v["type"], want_kind.as_str());
    assert_eq!(v["uuid"], "0a1b2c3d-1111-2222-3333-444455556666");
    assert_eq!(v["label"], "lbl-x");
    assert_eq!(v["state"], "clean");
    assert_eq!(v["block_size"], bs);
    assert_eq!(v["used_bytes"], serde_json::json!(fs.used_bytes));
    assert_eq!(
        fs.used_bytes,
        Some((blocks - free) * bs),
        "used bytes vs dumpe2fs (blocks {blocks}, free {free}, bs {bs})"
    );
    fs
}

#[test]
fn ext_variants_match_blkid_and_dumpe2fs() {
    let dir = TempDir::new().unwrap();
    let root = populate(&dir);
    let root = path_str(&root);
    let cases: &[(&str, &str, u64, &[&str], FsKind)] = &[
        ("ext2-small", "ext2", 4 << 20, &[], FsKind::Ext2),
        ("ext2-groups", "ext2", 40 << 20, &["-d", root], FsKind::Ext2),
        ("ext3", "ext3", 24 << 20, &["-d", root], FsKind::Ext3),
        ("ext4-1k", "ext4", 40 << 20, &["-d", root], FsKind::Ext4),
        (
            "ext4-4k",
            "ext4",
            1 << 30,
            &["-b", "4096", "-d", root],
            FsKind::Ext4,
        ),
        (
            "ext4-bigalloc",
            "ext4",
            400 << 20,
            &["-b", "1024", "-O", "bigalloc", "-C", "16384", "-d", root],
            FsKind::Ext4,
        ),
        (
            "ext4-noflex",
            "ext4",
            40 << 20,
            &["-O", "^flex_bg", "-d", root],
            FsKind::Ext4,
        ),
        (
            "ext4-metabg",
            "ext4",
            80 << 20,
            &["-O", "meta_bg,^resize_inode", "-d", root],
            FsKind::Ext4,
        ),
        (
            "ext4-64bit",
            "ext4",
            40 << 20,
            &["-O", "64bit", "-d", root],
            FsKind::Ext4,
        ),
        (
            "ext4-uninit",
            "ext4",
            40 << 20,
            &["-O", "^metadata_csum,uninit_bg", "-d", root],
            FsKind::Ext4,
        ),
        (
            "ext4-sparse2",
            "ext4",
            80 << 20,
            &["-O", "sparse_super2", "-d", root],
            FsKind::Ext4,
        ),
    ];
    let mut with_uninit = Vec::new();
    for (name, kind, size, extra, want) in cases {
        let img = image(&dir, &format!("{name}.img"), *size);
        mke2fs(&img, kind, extra);
        let fs = check_ext(&img, *want);
        if *name == "ext4-bigalloc" {
            assert_eq!(fs.details.cluster_size, Some(16384));
        }
        let dump = tool_stdout("dumpe2fs", "e2fsprogs", &[path_str(&img)]);
        if dump.contains("BLOCK_UNINIT") {
            with_uninit.push(*name);
        }
    }
    // The computed bitmaps of BLOCK_UNINIT groups were exercised (and agreed).
    for name in [
        "ext4-1k",
        "ext4-4k",
        "ext4-bigalloc",
        "ext4-metabg",
        "ext4-uninit",
        "ext4-sparse2",
    ] {
        assert!(
            with_uninit.contains(&name),
            "{name} has no BLOCK_UNINIT group: {with_uninit:?}"
        );
    }
}

/// Free extents (byte ranges) as `dumpe2fs` lists them per group, merged.
/// With bigalloc a range "a-b" ends at the first block of its last cluster.
fn dumpe2fs_free_extents(path: &Path, bs: u64, ratio: u64) -> ExtentList {
    let out = tool_stdout("dumpe2fs", "e2fsprogs", &[path_str(path)]);
    let mut l = ExtentList::new();
    for line in out.lines() {
        // Group lines are indented; the header has its own "Free blocks:".
        let Some(ranges) = line.strip_prefix("  Free blocks: ") else {
            continue;
        };
        for r in ranges.split(", ").filter(|r| !r.is_empty()) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            l.push(a * bs, (b - a + ratio) * bs);
        }
    }
    l
}

fn complement(used: &ExtentList, end: u64) -> ExtentList {
    let mut l = ExtentList::new();
    let mut pos = 0;
    for e in used.as_slice() {
        l.push(pos, e.offset - pos);
        pos = e.end();
    }
    l.push(pos, end - pos);
    l
}

#[test]
fn ext_used_map_is_exactly_the_complement_of_dumpe2fs_free_ranges() {
    let dir = TempDir::new().unwrap();
    let root = populate(&dir);
    for (name, size, extra) in [
        ("flex", 40 << 20, vec!["-d", path_str(&root)]),
        (
            "metabg",
            80 << 20,
            vec!["-O", "meta_bg,^resize_inode", "-d", path_str(&root)],
        ),
        ("4k", 1 << 30, vec!["-b", "4096", "-d", path_str(&root)]),
        (
            "bigalloc",
            1600 << 20,
            vec!["-b", "4096", "-O", "bigalloc", "-C", "16384"],
        ),
        (
            "bigalloc-1k",
            400 << 20,
            vec!["-b", "1024", "-O", "bigalloc", "-C", "16384"],
        ),
    ] {
        let img = image(&dir, &format!("{name}.img"), size);
        mke2fs(&img, "ext4", &extra);
        let dev = Device::open(&img).unwrap();
        let fs = probe(&dev).unwrap().unwrap();
        let used = used_extents(&dev, &fs).unwrap().unwrap();
        let bs = fs.details.block_size.unwrap();
        let free = complement(&used, fs.size_bytes.unwrap());
        assert!(used.as_slice().len() > 2, "{name}: {used:?}");
        let ratio = fs.details.cluster_size.unwrap_or(bs) / bs;
        assert_eq!(free, dumpe2fs_free_extents(&img, bs, ratio), "{name}");
    }
}

/// A mount point unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Bitmaps and counters written by the kernel's ext4 driver (allocations,
/// a delete, BLOCK_UNINIT groups initialised on demand) rather than mke2fs.
#[test]
fn ext4_written_by_the_kernel_matches_dumpe2fs() {
    let dir = TempDir::new().unwrap();
    let img = image(&dir, "kernel.img", 64 << 20);
    mke2fs(&img, "ext4", &[]);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    tool_stdout(
        "mount",
        "mount",
        &["-o", "loop", path_str(&img), path_str(&mnt)],
    );
    {
        let m = Mount(mnt.clone());
        let chunk: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for i in 0..12 {
            fs::write(m.0.join(format!("f{i}")), &chunk).unwrap();
        }
        fs::create_dir(m.0.join("d")).unwrap();
        for i in 0..200 {
            fs::write(m.0.join(format!("d/s{i}")), format!("{i}\n")).unwrap();
        }
        for i in (0..12).step_by(3) {
            fs::remove_file(m.0.join(format!("f{i}"))).unwrap();
        }
        tool_stdout("sync", "coreutils", &[]);
    }
    let fs = check_ext(&img, FsKind::Ext4);
    let dev = Device::open(&img).unwrap();
    let used = used_extents(&dev, &fs).unwrap().unwrap();
    let bs = fs.details.block_size.unwrap();
    let free = complement(&used, fs.size_bytes.unwrap());
    assert_eq!(free, dumpe2fs_free_extents(&img, bs, 1));
    assert!(fs.used_bytes.unwrap() > 8 << 20, "{fs:?}");
}

#[test]
fn ext_inside_a_window_uses_window_offsets() {
    let dir = TempDir::new().unwrap();
    let img = image(&dir, "disk.img", 20 << 20);
    let off = 1 << 20;
    tool_stdout(
        "mke2fs",
        "e2fsprogs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-E",
            &format!("offset={off}"),
            path_str(&img),
            "16M",
        ],
    );
    let dev = Device::open(&img).unwrap();
    assert!(
        probe(&dev).unwrap().is_none(),
        "nothing at the disk's start"
    );
    let part = Window::new(&dev, off, 16 << 20);
    let fs = probe(&part).unwrap().unwrap();
    assert_eq!(fs.kind, FsKind::Ext4);
    let used = used_extents(&part, &fs).unwrap().unwrap();
    assert_eq!(used.as_slice()[0].offset, 0);
    assert_eq!(Some(used.total_bytes()), fs.used_bytes);
}

fn probe_err(path: &Path) -> String {
    match probe_image(path) {
        Err(e) => e.to_string(),
        Ok(fs) => panic!("{}: expected an error, got {fs:?}", path.display()),
    }
}

#[test]
fn corrupt_ext_images_give_clear_errors() {
    let dir = TempDir::new().unwrap();
    let fresh = |name: &str| {
        let img = image(&dir, name, 16 << 20);
        mke2fs(&img, "ext4", &["-b", "1024"]);
        img
    };

    let img = fresh("bs.img");
    patch(&img, 1024 + 24, &20u32.to_le_bytes());
    let e = probe_err(&img);
    assert!(
        e.contains("bs.img") && e.contains("absurd block size 2^(10+20)"),
        "{e}"
    );

    let img = fresh("short.img");
    resize(&img, 8 << 20);
    let e = probe_err(&img);
    assert!(
        e.contains("16384 blocks of 1024 bytes do not fit in the 8388608-byte partition"),
        "{e}"
    );

    // 1 KiB blocks: the descriptor table is block 2.
    let img = fresh("gdt.img");
    patch(&img, 2048, &[0u8; 1024]);
    let e = probe_err(&img);
    assert!(
        e.contains("group 0 (descriptor at byte 2048): block bitmap at block 0"),
        "{e}"
    );

    // Mark one free block of group 0 as used in its bitmap.
    let img = fresh("bitmap.img");
    let h = dumpe2fs_header(&img, 0);
    let free: u64 = h["Free blocks"].parse().unwrap();
    let out = tool_stdout("dumpe2fs", "e2fsprogs", &[path_str(&img)]);
    let bitmap_block: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Block bitmap at "))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap()
        .parse()
        .unwrap();
    let last_free_in_group0: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("  Free blocks: "))
        .and_then(|s| s.split(", ").last())
        .and_then(|r| r.split('-').next_back())
        .unwrap()
        .parse()
        .unwrap();
    let bit = last_free_in_group0 - 1; // first data block is 1
    let byte_off = bitmap_block * 1024 + bit / 8;
    let mut b = [0u8];
    {
        use std::os::unix::fs::FileExt;
        fs::File::open(&img)
            .unwrap()
            .read_exact_at(&mut b, byte_off)
            .unwrap();
    }
    patch(&img, byte_off, &[b[0] | 1 << (bit % 8)]);
    let e = probe_err(&img);
    assert!(
        e.contains(&format!(
            "block bitmaps count {} free blocks but the superblock says {free}",
            free - 1
        )),
        "{e}"
    );
}

#[test]
fn ext_state_follows_superblock_flags_like_dumpe2fs() {
    let dir = TempDir::new().unwrap();
    // ext3: no superblock checksum, so dumpe2fs reads the patched flags.
    // (s_state at 58, s_feature_incompat at 96; ext3 sets filetype = 0x2.)
    let cases: &[(&str, u16, u32, &str, &str)] = &[
        ("clean", 1, 0x2, "clean", "clean"),
        ("dirty", 0, 0x2, "not_clean", "not clean"),
        ("errors", 3, 0x2, "errors", "clean with errors"),
        ("journal", 1, 0x2 | 0x4, "needs_recovery", "clean"),
    ];
    for (name, state, incompat, want, dumpe2fs_state) in cases {
        let img = image(&dir, &format!("{name}.img"), 8 << 20);
        mke2fs(&img, "ext3", &[]);
        patch(&img, 1024 + 58, &state.to_le_bytes());
        patch(&img, 1024 + 96, &incompat.to_le_bytes());
        let fs = probe_image(&img).unwrap().unwrap();
        assert_eq!(fs.state.as_deref(), Some(*want), "{name}");
        let h = dumpe2fs_header(&img, 0);
        assert_eq!(h["Filesystem state"], *dumpe2fs_state, "{name}");
        if *want == "needs_recovery" {
            assert!(h["Filesystem features"].contains("needs_recovery"));
        }
    }
}

// ------------------------------------------------------------------ others

#[test]
fn swap_matches_blkid_and_maps_only_its_header() {
    let dir = TempDir::new().unwrap();
    let img = image(&dir, "swap.img", 8 << 20);
    tool_stdout(
        "mkswap",
        "util-linux",
        &[
            "-L",
            "swp1",
            "-U",
            "5c8d7b3a-0d7e-4f7e-9a51-2b0a9c1d2e3f",
            path_str(&img),
        ],
    );
    let fs = probe_image(&img).unwrap().unwrap();
    assert_like_blkid(&img, &fs);
    assert_eq!(fs.details.swap_version, Some(1));
    assert_eq!(fs.size_bytes, Some(8 << 20));
    let dev = Device::open(&img).unwrap();
    let used = used_extents(&dev, &fs).unwrap().unwrap();
    assert_eq!(used.as_slice().len(), 1);
    assert_eq!(
        (used.as_slice()[0].offset, used.as_slice()[0].len),
        (0, 4096)
    );
}

#[test]
fn xfs_btrfs_vfat_ntfs_match_blkid() {
    let dir = TempDir::new().unwrap();
    // (image, mkfs tool, its package, size, arguments, expected kind)
    type Case<'a> = (&'a str, &'a str, &'a str, u64, &'a [&'a str], FsKind);
    let cases: &[Case] = &[
        (
            "xfs.img",
            "mkfs.xfs",
            "xfsprogs",
            320 << 20,
            &["-q", "-L", "xfslbl"],
            FsKind::Xfs,
        ),
        (
            "btrfs.img",
            "mkfs.btrfs",
            "btrfs-progs",
            128 << 20,
            &["-q", "-L", "btrlbl"],
            FsKind::Btrfs,
        ),
        (
            "fat12.img",
            "mkfs.vfat",
            "dosfstools",
            2 << 20,
            &["-n", "SMALL", "-i", "1234abcd"],
            FsKind::Vfat,
        ),
        (
            "fat16.img",
            "mkfs.vfat",
            "dosfstools",
            64 << 20,
            &["-F", "16", "-n", "MIDDLE"],
            FsKind::Vfat,
        ),
        (
            "fat32.img",
            "mkfs.vfat",
            "dosfstools",
            64 << 20,
            &["-F", "32", "-n", "EFI"],
            FsKind::Vfat,
        ),
        (
            "ntfs.img",
            "mkntfs",
            "ntfs-3g",
            16 << 20,
            &["-F", "-f", "-q", "-L", "WinData"],
            FsKind::Ntfs,
        ),
    ];
    for (name, tool, pkg, size, args, kind) in cases {
        let img = image(&dir, name, *size);
        let mut a = args.to_vec();
        a.push(path_str(&img));
        tool_stdout(tool, pkg, &a);
        let fs = probe_image(&img)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: nothing found"));
        assert_eq!(fs.kind, *kind, "{name}");
        assert_like_blkid(&img, &fs);
        let b = blkid_probe(&img, 0);
        if *kind == FsKind::Vfat {
            assert_eq!(b.get("VERSION"), fs.details.fat_type.as_ref(), "{name}");
        }
        let dev = Device::open(&img).unwrap();
        let used = used_extents(&dev, &fs).unwrap();
        if matches!(kind, FsKind::Xfs | FsKind::Btrfs | FsKind::Vfat) {
            // Mapped from the free-space btrees, the device tree or the FAT
            // (tests/xfs_used_map.rs, tests/btrfs_used_map.rs,
            // tests/vfat_used_map.rs).
            let used = used.unwrap_or_else(|| panic!("{name}: no map"));
            assert_eq!(fs.used_bytes, Some(used.total_bytes()), "{name}");
            if *kind != FsKind::Vfat {
                assert_eq!(fs.state.as_deref(), Some("clean"), "{name}");
            }
        } else {
            assert!(used.is_none(), "{name}: copy all");
        }
    }
}

/// A loop device over an image, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(img: &Path) -> Self {
        let dev = tool_stdout("losetup", "util-linux", &["-f", "--show", path_str(img)]);
        Loop(dev.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A volume group removed on drop (before its loop device goes).
struct Vg(String);

impl Drop for Vg {
    fn drop(&mut self) {
        let _ = Command::new("vgremove").args(["-f", &self.0]).output();
    }
}

#[test]
fn lvm_pv_uuid_and_vg_name_match_pvs() {
    let dir = TempDir::new().unwrap();
    let img = image(&dir, "pv.img", 24 << 20);
    let lo = Loop::attach(&img);
    tool_stdout("pvcreate", "lvm2", &["-q", "-y", &lo.0]);
    let vg_name = format!("p2xt{}", std::process::id());
    tool_stdout("vgcreate", "lvm2", &["-q", &vg_name, &lo.0]);
    let _vg = Vg(vg_name.clone());
    let pvs = tool_stdout(
        "pvs",
        "lvm2",
        &["--noheadings", "-o", "pv_uuid,vg_name", &lo.0],
    );
    let mut words = pvs.split_whitespace();
    let (uuid, vg) = (words.next().unwrap(), words.next().unwrap());

    let dev = Device::open(Path::new(&lo.0)).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.kind, FsKind::Lvm2Pv);
    assert_eq!(fs.uuid.as_deref(), Some(uuid));
    assert_eq!(fs.details.vg_name.as_deref(), Some(vg));
    assert_eq!(vg, vg_name);
    assert_like_blkid(Path::new(&lo.0), &fs);
}

// ---------------------------------------------------------------- md RAID
//
// This machine's kernel has no md driver, so `mdadm --create` cannot run.
// The members are written here byte by byte, and mdadm --examine and blkid
// (both read the superblock without the kernel) are the judges.

fn md1_member(size: u64, version: &'static str, role: u16) -> Vec<u8> {
    let mut d = vec![0u8; size as usize];
    let (off, sb) = common::md::Sb1::raid1(version, size, u32::from(role)).build(size);
    d[off as usize..off as usize + sb.len()].copy_from_slice(&sb);
    d
}

fn md090_member(size: u64, raid_disk: u32) -> Vec<u8> {
    let mut d = vec![0u8; size as usize];
    let uuid = common::md::Sb1::raid1("1.2", size, 0).set_uuid;
    let (off, sb) = common::md::sb090_raid1(size, uuid, raid_disk);
    d[off as usize..off as usize + sb.len()].copy_from_slice(&sb);
    d
}

#[test]
fn md_members_match_mdadm_examine_and_blkid() {
    let dir = TempDir::new().unwrap();
    let size = 4 << 20;
    let cases = [
        ("0.90", md090_member(size, 1), "1"),
        ("1.0", md1_member(size, "1.0", 1), "1"),
        ("1.1", md1_member(size, "1.1", 0), "0"),
        ("1.2", md1_member(size, "1.2", 1), "1"),
    ];
    for (version, data, role) in cases {
        let img = dir.path().join(format!("md{version}.img"));
        fs::write(&img, &data).unwrap();
        let fs = probe_image(&img)
            .unwrap()
            .unwrap_or_else(|| panic!("md {version}: nothing"));
        assert_eq!(fs.kind, FsKind::LinuxRaidMember);
        assert_eq!(fs.details.md_metadata.as_deref(), Some(version));
        assert_eq!(fs.details.md_level.as_deref(), Some("raid1"));
        assert_eq!(fs.details.md_role.as_deref(), Some(role));
        assert_like_blkid(&img, &fs);
        let ex = tool_stdout("mdadm", "mdadm", &["--examine", path_str(&img)]);
        let field = |k: &str| {
            ex.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(k)
                        .map(|v| v.trim_start_matches([' ', ':']).trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {k} in {ex}"))
        };
        let uuid_key = if version == "0.90" {
            "UUID"
        } else {
            "Array UUID"
        };
        assert_eq!(Some(field(uuid_key)), fs.details.md_array_uuid, "{ex}");
        assert_eq!(field("Raid Level"), "raid1");
        assert_eq!(field("Raid Devices"), "2");
        if version != "0.90" {
            assert_eq!(field("Device Role"), format!("Active device {role}"));
            assert_eq!(field("Name").split_whitespace().next(), Some("seed:root"));
        }
        assert!(
            !ex.contains("expected"),
            "bad checksum in the fixture: {ex}"
        );
        let disk = MemDisk::new(data);
        assert!(used_extents(&disk, &fs).unwrap().is_none());
    }
}

// ------------------------------------------------------------- properties

fn real_ext4() -> Vec<u8> {
    let dir = TempDir::new().unwrap();
    let img = image(&dir, "p.img", 2 << 20);
    mke2fs(&img, "ext4", &["-b", "1024", "-N", "64"]);
    fs::read(&img).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Mutating the superblock, descriptors and bitmaps of a real ext4
    /// never makes probe or used_extents panic.
    #[test]
    fn mutated_real_ext4_never_panics(
        muts in proptest::collection::vec((1024usize..40 * 1024, any::<u8>()), 1..12)
    ) {
        thread_local!(static BASE: Vec<u8> = real_ext4());
        let mut data = BASE.with(Clone::clone);
        for (pos, val) in muts {
            data[pos] = val;
        }
        let disk = MemDisk::new(data);
        if let Ok(Some(fs)) = probe(&disk) {
            let _ = used_extents(&disk, &fs);
        }
    }
}

#[test]
fn absurd_superblock_fields_each_named() {
    let base = real_ext4();
    let cases: &[(usize, &[u8], &str)] = &[
        (1024 + 24, &9u32.to_le_bytes(), "absurd block size"),
        (1024 + 32, &0u32.to_le_bytes(), "absurd group size"),
        (1024 + 40, &0u32.to_le_bytes(), "absurd 0 inodes per group"),
        (1024 + 4, &u32::MAX.to_le_bytes(), "do not fit"),
        (
            1024 + 254,
            &48u16.to_le_bytes(),
            "absurd group descriptor size 48",
        ),
        (1024 + 12, &u32::MAX.to_le_bytes(), "free blocks out of"),
    ];
    for (off, bytes, want) in cases {
        let mut d = base.clone();
        d[*off..off + bytes.len()].copy_from_slice(bytes);
        let e = probe(&MemDisk::new(d)).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(e.contains("ext2/3/4 filesystem"), "{e}");
    }
}
