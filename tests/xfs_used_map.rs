//! XFS used-block maps against xfsprogs and the kernel: images made with
//! mkfs.xfs, filled through a loop mount (or mkfs's prototype file for v4,
//! which this kernel no longer mounts), compared with `xfs_db freesp`,
//! copied from the map alone and checked with `xfs_repair -n` and file
//! hashes; a log left dirty by a shutdown must refuse the map.
//!
//! Skipped, with the reason printed, only when xfsprogs or mount is missing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::fixtures::{run_output, sparse_image, tool_stdout};
use common::used_map::{
    Mount, Mutated, assert_checker_clean, assert_copied_whole, assert_used_bytes_match_map,
    content, copy_from_map, missing_tool, path_str,
};
use p2xen::source::device::Device;
use p2xen::source::extent::ExtentList;
use p2xen::source::filesystems::xfs::XfsError;
use p2xen::source::filesystems::{FsKind, ProbeError, probe, used_extents};
use proptest::prelude::*;
use tempfile::TempDir;

const TOOLS: &[(&str, &str)] = &[
    ("mkfs.xfs", "xfsprogs"),
    ("xfs_db", "xfsprogs"),
    ("xfs_repair", "xfsprogs"),
    ("xfs_io", "xfsprogs"),
    ("xfs_logprint", "xfsprogs"),
    ("mount", "mount"),
    ("umount", "mount"),
];

/// True (after saying why) when a tool these tests drive is not installed.
fn skip() -> bool {
    missing_tool(TOOLS)
}

/// mkfs.xfs on a sparse file of `size` bytes. The fstests variables lift
/// mkfs's 300 MB minimum, so the images (and their logs) stay small and
/// the tests quick.
fn mkfs(path: &Path, size: u64, args: &[&str]) {
    sparse_image(path, size);
    run_output(
        Command::new("mkfs.xfs")
            .env("TEST_DIR", "1")
            .env("TEST_DEV", "1")
            .env("QA_CHECK_FS", "1")
            .args(["-q", "-f"])
            .args(args)
            .arg(path),
    );
}

/// Writes `dirs` directories (XFS puts each in another AG) of `files`
/// files of 1 to 3 blocks plus a larger one, then deletes every other
/// small file so free space is fragmented. Returns the survivors' hashes.
fn fill(root: &Path, dirs: usize, files: usize, bs: usize) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for d in 0..dirs {
        fs::create_dir(root.join(format!("d{d}"))).unwrap();
        for f in 0..files {
            let name = format!("d{d}/f{f}");
            let data = content(d * 10_000 + f, bs * (1 + f % 3) - f % 7);
            fs::write(root.join(&name), &data).unwrap();
            if f % 2 == 0 {
                kept.insert(name, blake3::hash(&data).to_hex().to_string());
            }
        }
        let big = format!("d{d}/big");
        let data = content(d, 300 * 1024 + 17);
        fs::write(root.join(&big), &data).unwrap();
        kept.insert(big, blake3::hash(&data).to_hex().to_string());
    }
    // Written out first: a file deleted while its blocks are still delayed
    // allocations never takes any, and would leave no hole.
    tool_stdout("sync", "coreutils", &["-f", path_str(root)]);
    for d in 0..dirs {
        for f in (1..files).step_by(2) {
            fs::remove_file(root.join(format!("d{d}/f{f}"))).unwrap();
        }
    }
    kept
}

fn hashes(root: &Path, names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    names
        .keys()
        .map(|n| {
            let data = fs::read(root.join(n)).unwrap();
            (n.clone(), blake3::hash(&data).to_hex().to_string())
        })
        .collect()
}

/// `xfs_db -r` with `cmds`, its "name = value" lines as numbers.
fn xfs_db_values(img: &Path, cmds: &[&str]) -> BTreeMap<String, u64> {
    let mut args = vec!["-r"];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(path_str(img));
    tool_stdout("xfs_db", "xfsprogs", &args)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            let v = v.trim();
            let n = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                None => v.parse().ok()?,
            };
            Some((k.trim().to_string(), n))
        })
        .collect()
}

struct Geometry {
    bs: u64,
    dblocks: u64,
    agblocks: u64,
    agcount: u64,
    fdblocks: u64,
}

fn geometry(img: &Path) -> Geometry {
    let v = xfs_db_values(
        img,
        &["sb 0", "p blocksize dblocks agblocks agcount fdblocks"],
    );
    Geometry {
        bs: v["blocksize"],
        dblocks: v["dblocks"],
        agblocks: v["agblocks"],
        agcount: v["agcount"],
        fdblocks: v["fdblocks"],
    }
}

/// Every record of every AG's bnobt as xfs_db lists it: (AG, block, len).
fn xfs_db_free_records(img: &Path) -> Vec<(u64, u64, u64)> {
    tool_stdout(
        "xfs_db",
        "xfsprogs",
        &["-r", "-c", "freesp -d", path_str(img)],
    )
    .lines()
    .filter_map(|l| {
        let n: Vec<u64> = l
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        match n[..] {
            [ag, bno, len] => Some((ag, bno, len)),
            _ => None,
        }
    })
    .collect()
}

/// The blocks on each AG's free list (AGFL), which `freesp` lists as free
/// one-block extents although the bnobt does not hold them: (AG, block).
fn xfs_db_agfl_blocks(img: &Path, agcount: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for ag in 0..agcount {
        let v = xfs_db_values(img, &[&format!("agf {ag}"), "p flfirst fllast flcount"]);
        let list = tool_stdout(
            "xfs_db",
            "xfsprogs",
            &[
                "-r",
                "-c",
                &format!("agfl {ag}"),
                "-c",
                "p bno",
                path_str(img),
            ],
        );
        // "bno[0-118] = 0:null 1:6 2:7 ..."
        let slots: Vec<Option<u64>> = list
            .split_once(" = ")
            .expect("xfs_db prints the AGFL")
            .1
            .split_whitespace()
            .map(|s| s.split_once(':').and_then(|(_, b)| b.parse().ok()))
            .collect();
        let (first, n) = (v["flfirst"] as usize, v["flcount"] as usize);
        for i in 0..n {
            let b = slots[(first + i) % slots.len()].expect("an AGFL slot in use");
            out.push((ag, b));
        }
        assert_eq!(
            (first + n.max(1) - 1) % slots.len(),
            v["fllast"] as usize,
            "AG {ag}: flfirst/fllast/flcount"
        );
    }
    out
}

/// The gaps of `used` inside `[0, end)`.
fn complement(used: &ExtentList, end: u64) -> ExtentList {
    let mut free = ExtentList::new();
    let mut at = 0;
    for e in used.as_slice() {
        free.push(at, e.offset - at);
        at = e.end();
    }
    free.push(at, end - at);
    free
}

fn logprint_state(img: &Path) -> String {
    let out = tool_stdout("xfs_logprint", "xfsprogs", &["-t", path_str(img)]);
    let at = out.find("state: <").expect("xfs_logprint prints the state") + 8;
    out[at..].split('>').next().unwrap_or_default().to_string()
}

struct Measured {
    used: ExtentList,
    records: usize,
    free_blocks: u64,
    deepest_bnobt: u64,
}

/// The map must be exactly what xfs_db says is not free, and probe's
/// figures must follow from it.
fn check_against_xfs_db(img: &Path) -> Measured {
    let dev = Device::open(img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.kind, FsKind::Xfs);
    assert_eq!(logprint_state(img), "CLEAN");
    assert_eq!(fs.state.as_deref(), Some("clean"), "{fs:?}");
    let used = used_extents(&dev, &fs).unwrap().unwrap();
    assert_eq!(fs.used_bytes, Some(used.total_bytes()));

    let g = geometry(img);
    // freesp lists the AGFL's blocks as free too; p2xen copies them (a few
    // blocks an AG, part of the AG's metadata), so they are taken out here.
    let agfl = xfs_db_agfl_blocks(img, g.agcount);
    let mut records = xfs_db_free_records(img);
    let listed = records.len();
    records.retain(|&(ag, bno, len)| !(len == 1 && agfl.contains(&(ag, bno))));
    assert_eq!(listed - records.len(), agfl.len(), "freesp lists the AGFL");
    let mut free = ExtentList::new();
    for &(ag, bno, len) in &records {
        free.push((ag * g.agblocks + bno) * g.bs, len * g.bs);
    }
    assert_eq!(complement(&used, g.dblocks * g.bs), free);
    let free_blocks: u64 = records.iter().map(|r| r.2).sum();
    assert_eq!(used.total_bytes(), (g.dblocks - free_blocks) * g.bs);

    // sb_fdblocks (exact after a clean unmount) counts more than the bnobt
    // holds: the AGFL's blocks and the free-space btrees' non-root blocks
    // are free to the allocator too. So the exact relation is
    // fdblocks = sum(agf_freeblks + agf_flcount + agf_btreeblks), and
    // used_bytes is dblocks minus sum(agf_freeblks), not minus fdblocks.
    let (mut freeblks, mut reusable, mut deepest) = (0, 0, 0);
    for ag in 0..g.agcount {
        let v = xfs_db_values(
            img,
            &[
                &format!("agf {ag}"),
                "p freeblks flcount btreeblks bnolevel",
            ],
        );
        freeblks += v["freeblks"];
        assert!(v["flcount"] > 0, "AG {ag}: an empty AGFL tests nothing");
        reusable += v["flcount"] + v["btreeblks"];
        deepest = deepest.max(v["bnolevel"]);
    }
    assert_eq!(freeblks, free_blocks);
    assert_eq!(g.fdblocks, freeblks + reusable);
    Measured {
        used,
        records: records.len(),
        free_blocks,
        deepest_bnobt: deepest,
    }
}

fn repair_n_clean(img: &Path) {
    // -n: check only; exit 1 when it finds anything to repair.
    assert_checker_clean("xfs_repair", &["-n"], img);
}

/// v5 (the default) with 4 AGs of 1 KiB blocks, filled and fragmented by
/// the kernel: the map equals xfs_db's, and a copy of only the mapped
/// bytes passes xfs_repair -n and holds the same files.
#[test]
fn v5_written_by_the_kernel_matches_xfs_db_and_copies() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("v5.img");
    mkfs(&img, 64 << 20, &["-d", "agcount=4", "-b", "size=1024"]);
    let kept = {
        let m = Mount::new(&img, &dir, "rw");
        // 4 x 300 files: over the 121 records a 1 KiB leaf holds, in at
        // least one AG, so the bnobt grows a node level.
        fill(&m.0, 4, 300, 1024)
    };
    let m = check_against_xfs_db(&img);
    eprintln!(
        "v5 agcount=4 bs=1024: {} bnobt records, {} free blocks (xfs_db equal), \
         bnobt depth {}, {} used extents, {} KiB used",
        m.records,
        m.free_blocks,
        m.deepest_bnobt,
        m.used.as_slice().len(),
        m.used.total_bytes() >> 10
    );
    assert!(m.deepest_bnobt >= 2, "the test should reach a btree node");
    assert!(m.records > 500, "{}", m.records);

    let copy = dir.path().join("copy.img");
    copy_from_map(&img, &copy, &m.used);
    assert!(m.used.total_bytes() < (64 << 20) / 2, "most of it left out");
    repair_n_clean(&copy);
    let got = {
        let mc = Mount::new(&copy, &dir, "ro,norecovery");
        hashes(&mc.0, &kept)
    };
    assert_eq!(got, kept);
}

/// Layouts that move what the map reads: 4 KiB sectors (the AG headers
/// fill the first blocks), a log stripe unit (padded records, two header
/// sectors), and the reverse-mapping btree (which takes its blocks from
/// the AGFL), each written by the kernel and unmounted.
#[test]
fn v5_variants_match_xfs_db() {
    if skip() {
        return;
    }
    let variants: &[&[&str]] = &[
        &["-s", "size=4096", "-d", "agcount=3"],
        &["-l", "su=65536", "-d", "agcount=2"],
        &["-m", "rmapbt=1", "-d", "agcount=2", "-b", "size=2048"],
    ];
    for args in variants {
        let dir = TempDir::new().unwrap();
        let img = dir.path().join("v.img");
        mkfs(&img, 48 << 20, args);
        {
            let m = Mount::new(&img, &dir, "rw");
            fill(&m.0, 3, 60, 4096);
        }
        let m = check_against_xfs_db(&img);
        eprintln!(
            "{args:?}: {} bnobt records, {} free blocks (xfs_db equal)",
            m.records, m.free_blocks
        );
    }
}

/// v4 (`-m crc=0`; 3 AGs of 4 KiB blocks) filled by mkfs's prototype file:
/// the map equals xfs_db's, the copy passes xfs_repair -n, and the files'
/// blocks, found by xfs_db's bmap, hold the same bytes in the copy.
#[test]
fn v4_matches_xfs_db_and_copies() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}"), content(i, 5000 * (i + 1) + 3)))
        .collect();
    let mut proto = String::from("/dev/null\n0 0\nd--755 0 0\n");
    for (name, data) in &files {
        let p = dir.path().join(name);
        fs::write(&p, data).unwrap();
        proto.push_str(&format!("{name} ---644 0 0 {}\n", p.display()));
    }
    proto.push_str("$\n");
    let proto_path = dir.path().join("proto");
    fs::write(&proto_path, proto).unwrap();
    let img = dir.path().join("v4.img");
    mkfs(
        &img,
        48 << 20,
        &[
            "-m",
            "crc=0",
            "-d",
            "agcount=3",
            "-p",
            path_str(&proto_path),
        ],
    );
    assert_eq!(geometry(&img).bs, 4096);
    let versionnum = xfs_db_values(&img, &["sb 0", "p versionnum"])["versionnum"];
    assert_eq!(versionnum & 0xf, 4, "{versionnum:#x}");
    let m = check_against_xfs_db(&img);
    eprintln!(
        "v4 agcount=3: {} bnobt records, {} free blocks (xfs_db equal), {} KiB used",
        m.records,
        m.free_blocks,
        m.used.total_bytes() >> 10
    );

    let copy = dir.path().join("copy.img");
    copy_from_map(&img, &copy, &m.used);
    repair_n_clean(&copy);
    let g = geometry(&img);
    let copy_file = fs::File::open(&copy).unwrap();
    for (name, data) in &files {
        let bmap = tool_stdout(
            "xfs_db",
            "xfsprogs",
            &[
                "-r",
                "-c",
                &format!("path /{name}"),
                "-c",
                "bmap",
                path_str(&copy),
            ],
        );
        // "data offset 0 startblock 18976 (1/2592) count 10 flag 0"
        let mut got = Vec::new();
        for l in bmap.lines().filter(|l| l.starts_with("data offset")) {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (off, start, count): (u64, u64, u64) = (
                w[2].parse().unwrap(),
                w[4].parse().unwrap(),
                w[7].parse().unwrap(),
            );
            // startblock is AG-encoded: (ag << agblklog) | agbno.
            let agblklog = 64 - (g.agblocks - 1).leading_zeros();
            let fsb = (start >> agblklog) * g.agblocks + (start & ((1 << agblklog) - 1));
            let mut buf = vec![0u8; (count * g.bs) as usize];
            copy_file.read_exact_at(&mut buf, fsb * g.bs).unwrap();
            got.resize(((off + count) * g.bs) as usize, 0);
            got[(off * g.bs) as usize..].copy_from_slice(&buf);
        }
        got.truncate(data.len());
        assert!(got == *data, "{name}: contents differ in the copy ({bmap})");
    }

    // The version 1 log format (v4 only): no h_size-sized header blocks.
    let v1 = dir.path().join("v1log.img");
    mkfs(
        &v1,
        32 << 20,
        &[
            "-m",
            "crc=0",
            "-l",
            "version=1",
            "-p",
            path_str(&proto_path),
        ],
    );
    let versionnum = xfs_db_values(&v1, &["sb 0", "p versionnum"])["versionnum"];
    assert_eq!(versionnum & 0x0400, 0, "no LOGV2 bit: {versionnum:#x}");
    check_against_xfs_db(&v1);
}

/// A shutdown after synced writes leaves transactions after the last
/// unmount record: the map is refused, by name, and the send layout copies
/// the filesystem whole saying why. A mount (which replays the log) and
/// unmount make it mappable again.
#[test]
fn dirty_log_is_refused_and_copied_whole() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("dirty.img");
    mkfs(&img, 32 << 20, &["-d", "agcount=2"]);
    {
        let m = Mount::new(&img, &dir, "rw");
        for i in 0..20 {
            let p = m.0.join(format!("f{i}"));
            fs::write(&p, content(i, 9000)).unwrap();
            fs::File::open(&p).unwrap().sync_all().unwrap();
        }
        tool_stdout(
            "xfs_io",
            "xfsprogs",
            &["-x", "-c", "shutdown", path_str(&m.0)],
        );
    }
    assert_eq!(logprint_state(&img), "DIRTY");
    let dev = Device::open(&img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.state.as_deref(), Some("needs_recovery"));
    assert_eq!(fs.used_bytes, None);
    let e = used_extents(&dev, &fs).unwrap_err();
    eprintln!("shut down: {e}");
    assert!(
        matches!(
            e,
            ProbeError::Xfs {
                source: XfsError::LogNotClean { .. },
                ..
            }
        ),
        "{e}"
    );

    assert_copied_whole(&img, (0, 32 << 20), "xfs", "log not clean at log sector");

    drop(dev);

    // The remedy the error suggests.
    drop(Mount::new(&img, &dir, "rw"));
    check_against_xfs_db(&img);
}

/// Enough metadata churn to wrap the log (head in its second pass, the
/// cycle numbers split 2 | 1): clean after unmount, dirty after a shutdown.
#[test]
fn wrapped_log_is_read_both_ways() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("wrap.img");
    mkfs(&img, 32 << 20, &["-d", "agcount=2"]);
    let churn = |root: &Path, rounds: usize| {
        for r in 0..rounds {
            let d = root.join(format!("r{r}"));
            fs::create_dir(&d).unwrap();
            for i in 0..1500 {
                fs::File::create(d.join(i.to_string())).unwrap();
            }
            tool_stdout("sync", "coreutils", &["-f", path_str(root)]);
            fs::remove_dir_all(&d).unwrap();
            tool_stdout("sync", "coreutils", &["-f", path_str(root)]);
        }
    };
    drop({
        let m = Mount::new(&img, &dir, "rw");
        churn(&m.0, 8);
        fs::write(m.0.join("kept"), content(7, 100_000)).unwrap();
        m
    });
    let log = tool_stdout("xfs_logprint", "xfsprogs", &[path_str(&img)]);
    assert!(
        log.lines().any(|l| l.starts_with("cycle: 2")),
        "the log should have wrapped"
    );
    check_against_xfs_db(&img);

    drop({
        let m = Mount::new(&img, &dir, "rw");
        churn(&m.0, 1);
        tool_stdout(
            "xfs_io",
            "xfsprogs",
            &["-x", "-c", "shutdown", path_str(&m.0)],
        );
        m
    });
    assert_eq!(logprint_state(&img), "DIRTY");
    let dev = Device::open(&img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.state.as_deref(), Some("needs_recovery"));
    let e = used_extents(&dev, &fs).unwrap_err();
    eprintln!("wrapped, shut down: {e}");
    assert!(e.to_string().contains("log not clean"), "{e}");
}

/// An external log cannot be checked from the data device alone.
#[test]
fn external_log_is_refused() {
    if skip() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log.img");
    sparse_image(&log, 16 << 20);
    let img = dir.path().join("data.img");
    mkfs(
        &img,
        32 << 20,
        &["-l", &format!("logdev={},size=8m", path_str(&log))],
    );
    let dev = Device::open(&img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.kind, FsKind::Xfs);
    assert_eq!(fs.used_bytes, None);
    let e = used_extents(&dev, &fs).unwrap_err();
    assert!(
        matches!(
            e,
            ProbeError::Xfs {
                source: XfsError::ExternalLog,
                ..
            }
        ),
        "{e}"
    );
}

// ------------------------------------------------------------- properties

/// A 32 MiB v5 image (2 AGs, the smallest mkfs makes) with a file, and the
/// byte offsets of what the map reads: each AG's first 8 KiB (headers,
/// btree roots) and the log's first 64 KiB (the unmount record is there).
fn real_v5() -> Option<&'static (Vec<u8>, Vec<u64>)> {
    static IMG: OnceLock<Option<(Vec<u8>, Vec<u64>)>> = OnceLock::new();
    IMG.get_or_init(|| {
        if skip() {
            return None;
        }
        let dir = TempDir::new().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, content(1, 50_000)).unwrap();
        let proto = dir.path().join("proto");
        fs::write(
            &proto,
            format!(
                "/dev/null\n0 0\nd--755 0 0\nf ---644 0 0 {}\n$\n",
                f.display()
            ),
        )
        .unwrap();
        let img = dir.path().join("p.img");
        mkfs(&img, 32 << 20, &["-d", "agcount=2", "-p", path_str(&proto)]);
        let g = geometry(&img);
        let logstart = xfs_db_values(&img, &["sb 0", "p logstart"])["logstart"];
        let agblklog = 64 - (g.agblocks - 1).leading_zeros();
        let log_fsb = (logstart >> agblklog) * g.agblocks + (logstart & ((1 << agblklog) - 1));
        let mut regions: Vec<u64> = (0..g.agcount).map(|ag| ag * g.agblocks * g.bs).collect();
        regions.push(log_fsb * g.bs);
        Some((fs::read(&img).unwrap(), regions))
    })
    .as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Changing bytes of a real image's AG headers, btree roots and log
    /// never panics, and probe's used_bytes always agrees with the map.
    #[test]
    fn mutated_real_v5_never_panics(
        muts in proptest::collection::vec((0usize..3, 0u64..64 * 1024, any::<u8>()), 1..12)
    ) {
        let Some((base, regions)) = real_v5() else { return Ok(()) };
        let muts = muts
            .into_iter()
            .map(|(r, at, v)| {
                let r = regions[r % regions.len()];
                // AG regions: first 8 KiB; the log: first 64 KiB.
                let span = if r == *regions.last().unwrap() { 64 * 1024 } else { 8 * 1024 };
                (r + at % span, v)
            })
            .collect();
        assert_used_bytes_match_map(&Mutated { base, muts });
    }
}
