//! Btrfs used maps against btrfs-progs and the kernel: images made with
//! mkfs.btrfs, given subvolumes `@` and `@home` and files (some deleted)
//! through a loop mount, compared with the DEV_EXTENT items `btrfs
//! inspect-internal dump-tree -t dev` lists, copied from the map alone and
//! checked with `btrfs check --readonly` and file hashes; damaged images
//! must refuse the map by name and be copied whole.
//!
//! Skipped, with the reason printed, only when btrfs-progs or mount is
//! missing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use common::fixtures::{patch, resize, sparse_image, tool_stdout};
use common::used_map::{
    Mount, Mutated, assert_checker_clean, assert_copied_whole, assert_used_bytes_match_map,
    content, copy_from_map, hash, missing_tool, path_str,
};
use p2xen::source::device::Device;
use p2xen::source::extent::ExtentList;
use p2xen::source::filesystems::btrfs::BtrfsError;
use p2xen::source::filesystems::{FsKind, ProbeError, probe, used_extents};
use proptest::prelude::*;
use tempfile::TempDir;

const TOOLS: &[(&str, &str)] = &[
    ("mkfs.btrfs", "btrfs-progs"),
    ("btrfs", "btrfs-progs"),
    ("mount", "mount"),
    ("umount", "mount"),
];

const MIB: u64 = 1 << 20;

fn skip() -> bool {
    missing_tool(TOOLS)
}

fn mkfs(path: &Path, size: u64, args: &[&str]) {
    sparse_image(path, size);
    let mut all = vec!["-q", "-f"];
    all.extend(args);
    all.push(path_str(path));
    tool_stdout("mkfs.btrfs", "btrfs-progs", &all);
}

/// Subvolumes `@` and `@home` with files of 1 KiB to 3 MiB, a few large
/// ones deleted again (so allocated chunks hold free space and some of
/// them may go away). Returns the survivors' hashes by path.
fn fill(root: &Path) -> BTreeMap<String, String> {
    for sub in ["@", "@home"] {
        tool_stdout(
            "btrfs",
            "btrfs-progs",
            &["subvolume", "create", path_str(&root.join(sub))],
        );
    }
    let mut kept = BTreeMap::new();
    let mut doomed = Vec::new();
    for (i, dir) in ["@/etc", "@/usr/lib", "@home/user"].iter().enumerate() {
        fs::create_dir_all(root.join(dir)).unwrap();
        for f in 0..40 {
            let name = format!("{dir}/f{f}");
            let len = if f % 10 == 9 {
                3 << 20
            } else {
                1024 * (1 + f * 7)
            };
            let data = content(i * 1000 + f, len + f % 5);
            fs::write(root.join(&name), &data).unwrap();
            if f % 4 == 1 {
                doomed.push(name);
            } else {
                kept.insert(name, hash(&data));
            }
        }
    }
    tool_stdout("sync", "coreutils", &["-f", path_str(root)]);
    for name in doomed {
        fs::remove_file(root.join(name)).unwrap();
    }
    tool_stdout("sync", "coreutils", &["-f", path_str(root)]);
    kept
}

fn hashes(root: &Path, names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    names
        .keys()
        .map(|n| (n.clone(), hash(&fs::read(root.join(n)).unwrap())))
        .collect()
}

/// (physical start, length) of every DEV_EXTENT item of device 1 as
/// `dump-tree -t dev` prints them:
/// `item 0 key (1 DEV_EXTENT 13631488) ...` then
/// `chunk_objectid 256 chunk_offset 13631488 length 8388608`.
fn dump_tree_dev_extents(img: &Path) -> Vec<(u64, u64)> {
    let out = tool_stdout(
        "btrfs",
        "btrfs-progs",
        &["inspect-internal", "dump-tree", "-t", "dev", path_str(img)],
    );
    let mut found = Vec::new();
    let mut start = None;
    for l in out.lines().map(str::trim) {
        if let Some(rest) = l.split_once("key (1 DEV_EXTENT ").map(|(_, r)| r) {
            start = rest.split(')').next().and_then(|s| s.parse::<u64>().ok());
        } else if let (Some(s), Some(len)) = (start, l.split_once(" length ")) {
            found.push((s, len.1.trim().parse().unwrap()));
            start = None;
        }
    }
    found
}

/// "Device allocated" and "Used" of `btrfs filesystem usage -b` on a
/// mount.
fn usage(mnt: &Path) -> (u64, u64) {
    let out = tool_stdout(
        "btrfs",
        "btrfs-progs",
        &["filesystem", "usage", "-b", path_str(mnt)],
    );
    let field = |name: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("btrfs filesystem usage prints {name}:\n{out}"));
        line.split_whitespace()
            .nth(name.split(' ').count())
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("Device allocated:"), field("Used:"))
}

/// What the map must be: the first MiB, the superblock mirrors inside
/// the device, and the dev extents.
fn expected_map(dev_extents: &[(u64, u64)], size: u64) -> ExtentList {
    let mut pieces = vec![(0, MIB)];
    pieces.extend(
        [64 * MIB, 256 << 30]
            .into_iter()
            .filter(|m| m + 4096 <= size)
            .map(|m| (m, 4096)),
    );
    pieces.extend_from_slice(dev_extents);
    pieces.sort_unstable();
    let mut l = ExtentList::new();
    for (o, n) in pieces {
        l.push(o, n);
    }
    l
}

fn check_readonly_clean(img: &Path) {
    assert_checker_clean("btrfs", &["check", "--readonly"], img);
}

/// The default layout (DUP metadata, single data) written by the kernel:
/// the map is exactly the dump-tree dev extents plus the first MiB and
/// the 64 MiB mirror, the copy made from it alone passes `btrfs check`
/// and holds the same files and subvolumes.
#[test]
fn written_by_the_kernel_matches_dump_tree_and_copies() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("bt.img");
    let size = 1024 * MIB;
    mkfs(&img, size, &["-L", "root"]);
    let (kept, (allocated, fs_used)) = {
        let m = Mount::new(&img, &dir, "rw");
        let kept = fill(&m.0);
        tool_stdout("sync", "coreutils", &["-f", path_str(&m.0)]);
        (kept, usage(&m.0))
    };
    let dev = Device::open(&img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.kind, FsKind::Btrfs);
    assert_eq!(fs.label.as_deref(), Some("root"));
    assert_eq!(fs.state.as_deref(), Some("clean"), "{fs:?}");
    let used = used_extents(&dev, &fs).unwrap().unwrap();
    assert_eq!(fs.used_bytes, Some(used.total_bytes()));

    let extents = dump_tree_dev_extents(&img);
    assert!(extents.len() >= 4, "{extents:?}");
    assert_eq!(used, expected_map(&extents, size));
    let extent_bytes: u64 = extents.iter().map(|e| e.1).sum();
    assert_eq!(extent_bytes, allocated, "dev extents = Device allocated");
    eprintln!(
        "btrfs 1 GiB: {} dev extents; map {} KiB in {} extents; `btrfs filesystem usage`: \
         allocated {} KiB, used {} KiB; image {} KiB; {} files kept",
        extents.len(),
        used.total_bytes() >> 10,
        used.as_slice().len(),
        allocated >> 10,
        fs_used >> 10,
        size >> 10,
        kept.len(),
    );
    assert!(used.total_bytes() < size / 2, "most of the device left out");

    let copy = dir.path().join("copy.img");
    copy_from_map(&img, &copy, &used);
    drop(dev);
    check_readonly_clean(&copy);
    let mc = Mount::new(&copy, &dir, "ro");
    assert_eq!(hashes(&mc.0, &kept), kept);
    let subvols = tool_stdout(
        "btrfs",
        "btrfs-progs",
        &["subvolume", "list", path_str(&mc.0)],
    );
    assert!(
        subvols.lines().any(|l| l.ends_with(" path @"))
            && subvols.lines().any(|l| l.ends_with(" path @home")),
        "{subvols}"
    );
}

/// Other layouts mkfs makes: single metadata, mixed block groups, 64 KiB
/// nodes, a filesystem smaller than the 64 MiB mirror offset; each written
/// by the kernel, mapped exactly and copied clean. A checksum p2xen does
/// not verify (xxhash) refuses the map by name.
#[test]
fn mkfs_variants_match_dump_tree() {
    if skip() {
        return;
    }
    let variants: &[(&[&str], u64)] = &[
        (&["-m", "single"], 300 * MIB),
        (&["--mixed"], 200 * MIB),
        (&["-n", "65536"], 300 * MIB),
        (&["--mixed"], 60 * MIB),
    ];
    for &(args, size) in variants {
        let dir = TempDir::new().unwrap();
        let img = dir.path().join("v.img");
        mkfs(&img, size, args);
        let kept = {
            let m = Mount::new(&img, &dir, "rw");
            fill(&m.0)
        };
        let dev = Device::open(&img).unwrap();
        let fs = probe(&dev).unwrap().unwrap();
        let used = used_extents(&dev, &fs).unwrap().unwrap();
        let extents = dump_tree_dev_extents(&img);
        assert_eq!(used, expected_map(&extents, size), "{args:?}");
        eprintln!(
            "{args:?} {} MiB: {} dev extents, map {} KiB",
            size >> 20,
            extents.len(),
            used.total_bytes() >> 10
        );
        let copy = dir.path().join("copy.img");
        copy_from_map(&img, &copy, &used);
        drop(dev);
        check_readonly_clean(&copy);
        let mc = Mount::new(&copy, &dir, "ro");
        assert_eq!(hashes(&mc.0, &kept), kept, "{args:?}");
    }

    let dir = TempDir::new().unwrap();
    let img = dir.path().join("xx.img");
    mkfs(&img, 200 * MIB, &["--csum", "xxhash"]);
    let e = refused(&img);
    assert!(
        matches!(e, BtrfsError::ChecksumType { csum_type: 1 }),
        "{e}"
    );
}

/// A file fsync'ed after the last commit lives only in the tree log: an
/// image taken then (as after a power cut) says `needs_recovery`, maps
/// exactly, and its copy replays the log at mount and holds the file.
#[test]
fn tree_log_is_needs_recovery_and_travels() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("live.img");
    let cut = dir.path().join("cut.img");
    mkfs(&img, 300 * MIB, &[]);
    let data = content(9, 100_003);
    {
        // No periodic commit while the image is taken.
        let m = Mount::new(&img, &dir, "rw,commit=300");
        tool_stdout("sync", "coreutils", &["-f", path_str(&m.0)]);
        let f = m.0.join("logged");
        fs::write(&f, &data).unwrap();
        fs::File::open(&f).unwrap().sync_all().unwrap();
        fs::copy(&img, &cut).unwrap();
    }
    assert_ne!(
        super_field(&cut, "log_root"),
        0,
        "the fsync left a tree log"
    );
    let dev = Device::open(&cut).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.state.as_deref(), Some("needs_recovery"), "{fs:?}");
    let used = used_extents(&dev, &fs).unwrap().unwrap();
    assert_eq!(used, expected_map(&dump_tree_dev_extents(&cut), 300 * MIB));
    let copy = dir.path().join("copy.img");
    copy_from_map(&cut, &copy, &used);
    drop(dev);
    check_readonly_clean(&copy);
    // Replaying the log needs a writable device.
    let mc = Mount::new(&copy, &dir, "rw");
    assert!(fs::read(mc.0.join("logged")).unwrap() == data, "replayed");
}

/// Where a logical address lies on the device, from `dump-tree -t chunk`
/// (stripe 0 of the chunk holding it).
fn physical_of(img: &Path, logical: u64) -> u64 {
    let out = tool_stdout(
        "btrfs",
        "btrfs-progs",
        &[
            "inspect-internal",
            "dump-tree",
            "-t",
            "chunk",
            path_str(img),
        ],
    );
    let mut chunk: Option<(u64, u64)> = None;
    for l in out.lines().map(str::trim) {
        if let Some(rest) = l.split_once("CHUNK_ITEM ").map(|(_, r)| r) {
            let start: u64 = rest.split(')').next().unwrap().parse().unwrap();
            chunk = Some((start, 0));
        } else if let (Some((start, 0)), Some(rest)) = (chunk, l.strip_prefix("length ")) {
            let len: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            chunk = Some((start, len));
        } else if let (Some((start, len)), Some(rest)) =
            (chunk, l.strip_prefix("stripe 0 devid 1 offset "))
        {
            if (start..start + len).contains(&logical) {
                return rest.parse::<u64>().unwrap() + (logical - start);
            }
        }
    }
    panic!("logical {logical} is in no chunk:\n{out}");
}

/// A `dump-super` field.
fn super_field(img: &Path, name: &str) -> u64 {
    let out = tool_stdout(
        "btrfs",
        "btrfs-progs",
        &["inspect-internal", "dump-super", path_str(img)],
    );
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("dump-super has no {name}"))
}

/// The logical address of the device tree's root (the block `dump-tree
/// -t dev` starts with).
fn dev_root(img: &Path) -> u64 {
    let out = tool_stdout(
        "btrfs",
        "btrfs-progs",
        &["inspect-internal", "dump-tree", "-t", "dev", path_str(img)],
    );
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            matches!(w.next(), Some("leaf" | "node")).then(|| w.next().unwrap().parse().unwrap())
        })
        .expect("dump-tree prints the root block")
}

/// A small filled image and the device offsets of what the map reads.
struct Real {
    bytes: Vec<u8>,
    superblock: u64,
    chunk_root: u64,
    chunk_root_logical: u64,
    root: u64,
    dev_root: u64,
}

fn real() -> Option<&'static Real> {
    static IMG: OnceLock<Option<Real>> = OnceLock::new();
    IMG.get_or_init(|| {
        if skip() {
            return None;
        }
        let dir = TempDir::new().unwrap();
        let img = dir.path().join("r.img");
        mkfs(&img, 256 * MIB, &[]);
        {
            let m = Mount::new(&img, &dir, "rw");
            fs::write(m.0.join("f"), content(3, 200_000)).unwrap();
        }
        let chunk_root_logical = super_field(&img, "chunk_root");
        Some(Real {
            superblock: 64 * 1024,
            chunk_root: physical_of(&img, chunk_root_logical),
            chunk_root_logical,
            root: physical_of(&img, super_field(&img, "root")),
            dev_root: physical_of(&img, dev_root(&img)),
            bytes: fs::read(&img).unwrap(),
        })
    })
    .as_ref()
}

/// Probes `img` as a Btrfs whose map is refused (no used_bytes, no
/// state) and returns why.
fn refused(img: &Path) -> BtrfsError {
    let dev = Device::open(img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(
        (fs.kind, fs.used_bytes, fs.state.as_deref()),
        (FsKind::Btrfs, None, None)
    );
    match used_extents(&dev, &fs).unwrap_err() {
        ProbeError::Btrfs { source, .. } => source,
        other => panic!("not a btrfs error: {other}"),
    }
}

/// A chunk tree block with a byte changed fails its checksum: probe still
/// names the filesystem, the map is refused naming the block, and the
/// send layout copies the partition whole saying why.
#[test]
fn damaged_chunk_tree_is_refused_and_copied_whole() {
    let Some(r) = real() else { return };
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("bad.img");
    fs::write(&img, &r.bytes).unwrap();
    let at = r.chunk_root + 300;
    patch(&img, at, &[r.bytes[at as usize] ^ 0x5a]);
    let e = refused(&img);
    eprintln!("damaged chunk tree: {e}");
    assert!(
        matches!(&e, BtrfsError::Node { logical, why } if *logical == r.chunk_root_logical && why.contains("checksum")),
        "{e}"
    );
    assert_copied_whole(&img, (0, r.bytes.len() as u64), "btrfs", "checksum");
}

/// A magic overwritten after probing, and an image cut short: typed
/// errors with the place, no panic.
#[test]
fn bad_magic_and_truncation_are_typed() {
    let Some(r) = real() else { return };
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("t.img");
    fs::write(&img, &r.bytes).unwrap();
    let fs = probe(&Device::open(&img).unwrap()).unwrap().unwrap();
    patch(&img, r.superblock + 64, b"_BHRfS_X");
    let dev = Device::open(&img).unwrap();
    assert!(probe(&dev).unwrap().is_none());
    let e = used_extents(&dev, &fs).unwrap_err();
    assert!(
        matches!(
            e,
            ProbeError::Btrfs {
                source: BtrfsError::NoSuperblock,
                ..
            }
        ),
        "{e}"
    );

    fs::write(&img, &r.bytes).unwrap();
    resize(&img, 200 * MIB);
    let e = refused(&img);
    eprintln!("truncated: {e}");
    assert!(
        matches!(
            e,
            BtrfsError::BeyondDevice {
                dev_total_bytes,
                device_size
            } if dev_total_bytes == 256 * MIB && device_size == 200 * MIB
        ),
        "{e}"
    );
}

/// Two devices: refused as such, whatever the trees say.
#[test]
fn multi_device_is_refused() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    sparse_image(&b, 256 * MIB);
    mkfs(&a, 256 * MIB, &["-d", "single", "-m", "dup", path_str(&b)]);
    let e = refused(&a);
    assert!(
        matches!(e, BtrfsError::MultiDevice { num_devices: 2 }),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Changing bytes of a real image's superblock and tree roots never
    /// panics, and probe's used_bytes always agrees with the map.
    #[test]
    fn mutated_real_image_never_panics(
        muts in proptest::collection::vec((0usize..4, 0u64..16384, any::<u8>()), 1..12)
    ) {
        let Some(r) = real() else { return Ok(()) };
        let regions = [r.superblock, r.chunk_root, r.root, r.dev_root];
        let muts = muts
            .into_iter()
            .map(|(i, at, v)| {
                let span = if i == 0 { 4096 } else { 16384 };
                (regions[i] + at % span, v)
            })
            .collect();
        assert_used_bytes_match_map(&Mutated { base: &r.bytes, muts });
    }
}
