//! LVM2 PVs against lvm2's own tools: the VG/LV/segment model p2xen reads
//! from a PV equals vgcfgbackup's and lvs's, and a copy made from
//! `used_extents` alone (a zero image plus the used bytes) holds every LV's
//! ext4 intact (e2fsck -fn clean, the files' hashes unchanged).
//!
//! This machine's kernel has no device-mapper, so no LV can be activated.
//! lvm2 still writes metadata without it: `--driverloaded n` makes lvcreate
//! and lvextend skip device-mapper (with `--zero n`, nothing is written to
//! the LV). Two stripes on one PV are something lvm2's allocator refuses,
//! so that LV is added by `vgcfgrestore` of an edited vgcfgbackup, which
//! needs no device-mapper either. The filesystems are put into the LVs
//! through loop devices at the LV's offset (linear LV) or by copying an
//! ext4 image into the extents lvs reports (segmented and striped LVs).
//!
//! All lvm commands run with LVM_SYSTEM_DIR in a temp dir whose lvm.conf
//! accepts only this test's loop devices and keeps locks, backups and the
//! devices file away from the host's. The scenarios share one test function
//! so they never run concurrently.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::{MIB, hash_file, inspect_json, need, run, run_output, sparse_image};
use p2xen::source::device::{Device, ReadAt};
use p2xen::source::extent::ExtentList;
use p2xen::source::filesystems::lvm::{self, VolumeGroup, vg::SegmentKind};
use p2xen::source::filesystems::{FsKind, probe, used_extents};
use tempfile::TempDir;

/// True (after saying why) when an lvm2 tool this test needs is missing.
fn lvm2_missing() -> bool {
    for t in [
        "pvcreate",
        "vgcreate",
        "lvcreate",
        "lvextend",
        "lvs",
        "pvs",
        "vgcfgbackup",
        "vgcfgrestore",
        "vgremove",
    ] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(t).is_file());
        if !found {
            eprintln!("skipped: {t} not found (install the Debian package lvm2)");
            return true;
        }
    }
    false
}

struct Loop(String);

impl Loop {
    fn attach(img: &Path, offset: u64, len: u64) -> Loop {
        let mut cmd = Command::new("losetup");
        cmd.args(["-f", "--show"]);
        if len > 0 {
            cmd.arg("-o").arg(offset.to_string());
            cmd.arg("--sizelimit").arg(len.to_string());
        }
        Loop(run(cmd.arg(img)).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// lvm2 confined to a temp dir and to the given loop devices.
struct Lvm {
    sysdir: PathBuf,
}

impl Lvm {
    fn new(dir: &Path, loops: &[&Loop]) -> Lvm {
        let sysdir = dir.join("lvm-etc");
        fs::create_dir_all(sysdir.join("lock")).unwrap();
        let accept: Vec<String> = loops.iter().map(|l| format!("\"a|^{}$|\"", l.0)).collect();
        fs::write(
            sysdir.join("lvm.conf"),
            format!(
                "devices {{ filter = [ {}, \"r|.*|\" ] use_devicesfile = 0 \
                 obtain_device_list_from_udev = 0 scan_lvs = 0 hints = \"none\" }}\n\
                 activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }}\n\
                 global {{ locking_dir = \"{}\" use_lvmlockd = 0 }}\n\
                 backup {{ backup = 0 archive = 0 }}\n",
                accept.join(", "),
                sysdir.join("lock").display()
            ),
        )
        .unwrap();
        Lvm { sysdir }
    }

    fn cmd(&self, tool: &str, args: &[&str]) -> String {
        let mut c = Command::new(tool);
        c.env("LVM_SYSTEM_DIR", &self.sysdir)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .args(args);
        run(&mut c)
    }

    /// An LV-changing command, without device-mapper.
    fn lv_cmd(&self, tool: &str, args: &[&str]) {
        let mut a = vec!["--driverloaded", "n"];
        a.extend_from_slice(args);
        self.cmd(tool, &a);
    }

    /// `lvcreate` of LV `lv` in `vg` without device-mapper: not activated,
    /// not zeroed; `extra` adds size and striping.
    fn lvcreate(&self, vg: &str, lv: &str, extra: &[&str]) {
        let mut a = vec!["-q", "--activate", "n", "--zero", "n", "-n", lv];
        a.extend_from_slice(extra);
        a.push(vg);
        self.lv_cmd("lvcreate", &a);
    }

    fn backup(&self, vg: &str, dir: &Path) -> VolumeGroup {
        let f = dir.join(format!("{vg}.backup"));
        self.cmd("vgcfgbackup", &["-f", f.to_str().unwrap(), vg]);
        lvm::parse_metadata(&fs::read(&f).unwrap(), 0).unwrap()
    }

    /// lvs --segments: per LV, its segments as (start extent, extents,
    /// type, stripe size in bytes, [(device, first PE, last PE)]).
    fn segments(&self, vg: &str) -> BTreeMap<String, Vec<Seg>> {
        let out = self.cmd(
            "lvs",
            &[
                "-a",
                "--segments",
                "--noheadings",
                "--separator",
                "|",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "lv_name,seg_start_pe,seg_size_pe,segtype,stripe_size,seg_pe_ranges",
                vg,
            ],
        );
        let mut m: BTreeMap<String, Vec<Seg>> = BTreeMap::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.trim().split('|').collect();
            let ranges = f[5]
                .split_whitespace()
                .map(|r| {
                    let (dev, pes) = r.rsplit_once(':').unwrap();
                    let (a, b) = pes.split_once('-').unwrap();
                    (dev.to_string(), a.parse().unwrap(), b.parse().unwrap())
                })
                .collect();
            m.entry(f[0].to_string()).or_default().push(Seg {
                start: f[1].trim().parse().unwrap(),
                count: f[2].trim().parse().unwrap(),
                kind: f[3].to_string(),
                stripe_size: f[4].trim().parse().unwrap(),
                ranges,
            });
        }
        m
    }

    /// pvs: device → (PV UUID, first PE byte, PE count).
    fn pvs(&self, vg: &str) -> BTreeMap<String, (String, u64, u64)> {
        let out = self.cmd(
            "pvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "pv_name,pv_uuid,pe_start,pv_pe_count",
                "-S",
                &format!("vg_name={vg}"),
            ],
        );
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4).then(|| {
                    (
                        f[0].to_string(),
                        (
                            f[1].to_string(),
                            f[2].parse().unwrap(),
                            f[3].parse().unwrap(),
                        ),
                    )
                })
            })
            .collect()
    }
}

#[derive(Debug, PartialEq)]
struct Seg {
    start: u64,
    count: u64,
    kind: String,
    stripe_size: u64,
    ranges: Vec<(String, u64, u64)>,
}

/// A VG removed on drop, before its loop devices go.
struct Vg<'a>(&'a Lvm, String);

impl Drop for Vg<'_> {
    fn drop(&mut self) {
        let mut c = Command::new("vgremove");
        c.env("LVM_SYSTEM_DIR", &self.0.sysdir)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .args(["--driverloaded", "n", "-f", &self.1]);
        let _ = c.output();
    }
}

/// The model's segments in lvs's terms, given PV name → device.
fn model_segments(
    vg: &VolumeGroup,
    dev_of: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<Seg>> {
    vg.logical_volumes
        .iter()
        .map(|lv| {
            let segs = lv
                .segments
                .iter()
                .map(|s| {
                    let (stripe_size, ranges) = match &s.kind {
                        SegmentKind::Striped {
                            stripe_size,
                            stripes,
                        } => (
                            stripe_size * 512,
                            stripes
                                .iter()
                                .map(|a| {
                                    (
                                        dev_of[&a.pv].clone(),
                                        a.start_extent,
                                        a.start_extent + s.area_len() - 1,
                                    )
                                })
                                .collect(),
                        ),
                        SegmentKind::Other { .. } => (0, vec![]),
                    };
                    Seg {
                        start: s.start_extent,
                        count: s.extent_count,
                        kind: s.type_name().to_string(),
                        stripe_size,
                        ranges,
                    }
                })
                .collect();
            (lv.name.clone(), segs)
        })
        .collect()
}

/// Deterministic incompressible bytes.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Files for an LV's ext4: name → content.
fn files(seed: u32) -> Vec<(String, Vec<u8>)> {
    (0..3u32)
        .map(|i| {
            (
                format!("f{i}.bin"),
                noise(seed * 7 + i, (1 + i as usize) * 700 * 1024),
            )
        })
        .collect()
}

/// The PV bytes of LV byte `off`, by lvs's report (independent of p2xen's
/// mapping): per segment, chunks go round-robin over its ranges.
fn pv_offset(segs: &[Seg], dev: &str, pe_start: u64, extent: u64, off: u64) -> Option<u64> {
    for s in segs {
        let (a, len) = (s.start * extent, s.count * extent);
        if off < a || off >= a + len {
            continue;
        }
        let x = off - a;
        let n = s.ranges.len() as u64;
        let chunk = if n == 1 { len } else { s.stripe_size };
        let (c, r) = (x / chunk, x % chunk);
        let (d, first, _) = &s.ranges[(c % n) as usize];
        return (d == dev).then(|| pe_start + first * extent + (c / n) * chunk + r);
    }
    None
}

/// Copies `lv_img` into the PV image where lvs says the LV lies.
fn scatter(pv_img: &Path, lv_img: &Path, segs: &[Seg], dev: &str, pe_start: u64, extent: u64) {
    use std::os::unix::fs::FileExt;
    let data = fs::read(lv_img).unwrap();
    let pv = fs::OpenOptions::new().write(true).open(pv_img).unwrap();
    for (i, piece) in data.chunks(4096).enumerate() {
        let at = pv_offset(segs, dev, pe_start, extent, i as u64 * 4096).unwrap();
        pv.write_all_at(piece, at).unwrap();
    }
}

/// The LV's bytes gathered from a PV image by lvs's report.
fn gather(pv_img: &Path, out: &Path, segs: &[Seg], dev: &str, pe_start: u64, extent: u64) {
    use std::os::unix::fs::FileExt;
    let total: u64 = segs.iter().map(|s| s.count * extent).sum();
    let pv = fs::File::open(pv_img).unwrap();
    let mut data = vec![0u8; total as usize];
    for (i, piece) in data.chunks_mut(4096).enumerate() {
        let at = pv_offset(segs, dev, pe_start, extent, i as u64 * 4096).unwrap();
        pv.read_exact_at(piece, at).unwrap();
    }
    fs::write(out, data).unwrap();
}

/// A zero image of the source's size holding only `used`'s bytes of it.
fn copy_from_map(src: &Path, used: &ExtentList, out: &Path) {
    use std::os::unix::fs::FileExt;
    let len = fs::metadata(src).unwrap().len();
    sparse_image(out, len);
    let (s, o) = (
        fs::File::open(src).unwrap(),
        fs::OpenOptions::new().write(true).open(out).unwrap(),
    );
    for e in used.as_slice() {
        let mut buf = vec![0u8; e.len as usize];
        s.read_exact_at(&mut buf, e.offset).unwrap();
        o.write_all_at(&buf, e.offset).unwrap();
    }
}

fn mkfs_with(dir: &Path, name: &str, size: u64, content: &[(String, Vec<u8>)]) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    fs::create_dir_all(&root).unwrap();
    for (f, data) in content {
        fs::write(root.join(f), data).unwrap();
    }
    let img = dir.join(format!("{name}.ext4"));
    sparse_image(&img, size);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", name, "-d"])
        .arg(&root)
        .arg(&img));
    img
}

/// e2fsck -fn is clean and every file reads back identical (by debugfs).
fn assert_intact(img: &Path, content: &[(String, Vec<u8>)]) {
    let out = run_output(Command::new("e2fsck").arg("-fn").arg(img));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (f, data) in content {
        let got = debugfs_bytes(img, f);
        assert_eq!(
            blake3::hash(&got),
            blake3::hash(data),
            "{f} in {}",
            img.display()
        );
    }
}

fn debugfs_bytes(img: &Path, f: &str) -> Vec<u8> {
    run_output(
        Command::new("debugfs")
            .args(["-R", &format!("cat /{f}")])
            .arg(img),
    )
    .stdout
}

#[test]
fn pv_maps_match_lvm2_and_copies_keep_the_lvs() {
    if lvm2_missing() {
        return;
    }
    need("mkfs.ext4", "e2fsprogs");
    need("e2fsck", "e2fsprogs");
    let dir = TempDir::new().unwrap();
    let t0 = std::time::Instant::now();
    one_pv(dir.path());
    two_pvs(dir.path());
    eprintln!("lvm source tests: {:.1} s", t0.elapsed().as_secs_f64());
}

/// One 256 MiB PV: a linear LV, an LV of two segments (lvextend after
/// another LV took the next extents), and an LV striped twice over the PV.
fn one_pv(dir: &Path) {
    let pv_img = dir.join("pv.img");
    sparse_image(&pv_img, 256 * MIB);
    let lo = Loop::attach(&pv_img, 0, 0);
    let lvm = Lvm::new(dir, &[&lo]);
    let name = format!("p2xl{}", std::process::id());
    lvm.cmd("pvcreate", &["-q", "-y", &lo.0]);
    lvm.cmd("vgcreate", &["-q", "-s", "4m", &name, &lo.0]);
    let _vg = Vg(&lvm, name.clone());
    let new_lv = |lv: &str, size: &str| lvm.lvcreate(&name, lv, &["-L", size]);
    new_lv("lin", "32m");
    new_lv("two", "16m");
    new_lv("gap", "8m");
    lvm.lv_cmd("lvextend", &["-q", "-L", "+16m", &format!("{name}/two")]);

    // Two stripes on this one PV, by an edited backup.
    let backup = dir.join("edit.backup");
    lvm.cmd("vgcfgbackup", &["-f", backup.to_str().unwrap(), &name]);
    let text = fs::read_to_string(&backup).unwrap();
    let st = "\t\tst {\n\t\t\tid = \"stripe-d2ab-11cd-22ef-33gh-44ij-55klmn\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\t\t\tsegment_count = 1\n\t\t\tsegment1 {\n\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = 8\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 2\n\t\t\t\tstripe_size = 128\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", 24,\n\t\t\t\t\t\"pv0\", 36\n\t\t\t\t]\n\t\t\t}\n\t\t}\n";
    let at = text.find("\tlogical_volumes {\n").unwrap() + "\tlogical_volumes {\n".len();
    fs::write(&backup, format!("{}{st}{}", &text[..at], &text[at..])).unwrap();
    lvm.cmd("vgcfgrestore", &["-f", backup.to_str().unwrap(), &name]);

    // The model read from the PV equals vgcfgbackup's and lvs's.
    let truth = lvm.backup(&name, dir);
    let dev = Device::open(&pv_img).unwrap();
    let pv = lvm::read(&dev).unwrap().unwrap();
    let model = pv.vg.clone().unwrap();
    assert_eq!(model.logical_volumes, truth.logical_volumes);
    assert_eq!(model.physical_volumes, truth.physical_volumes);
    assert_eq!(
        (model.name.as_str(), &model.id, model.extent_size),
        (name.as_str(), &truth.id, 8192)
    );
    let pvs = lvm.pvs(&name);
    let (uuid, pe_start, pe_count) = pvs[&lo.0].clone();
    assert_eq!(pv.label.uuid, uuid);
    assert_eq!(model.physical_volumes[0].pe_start * 512, pe_start);
    assert_eq!(model.physical_volumes[0].pe_count, pe_count);
    let lvs = lvm.segments(&name);
    let dev_of = BTreeMap::from([("pv0".to_string(), lo.0.clone())]);
    assert_eq!(model_segments(&model, &dev_of), lvs);
    assert_eq!(lvs["two"].len(), 2, "{lvs:?}");
    assert_eq!(lvs["st"][0].kind, "striped");

    // ext4s in lin (through a loop device at its offset, files written by
    // a mount), two and st (images copied into lvs's extents).
    let extent = 4 * MIB;
    let lin_at = pe_start + lvs["lin"][0].ranges[0].1 * extent;
    let lin_files = files(1);
    {
        let l = Loop::attach(&pv_img, lin_at, 32 * MIB);
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", "lin", &l.0]));
        let mnt = dir.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        run(Command::new("mount").arg(&l.0).arg(&mnt));
        let m = Mount(mnt.clone());
        for (f, data) in &lin_files {
            fs::write(mnt.join(f), data).unwrap();
        }
        drop(m);
    }
    let two_files = files(2);
    let st_files = files(3);
    let two_img = mkfs_with(dir, "two", 32 * MIB, &two_files);
    let st_img = mkfs_with(dir, "st", 32 * MIB, &st_files);
    scatter(&pv_img, &two_img, &lvs["two"], &lo.0, pe_start, extent);
    scatter(&pv_img, &st_img, &lvs["st"], &lo.0, pe_start, extent);

    let dev = Device::open(&pv_img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.kind, FsKind::Lvm2Pv);
    let report: BTreeMap<&str, &lvm::LvReport> = fs
        .details
        .logical_volumes
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();
    for (lv, label) in [("lin", "lin"), ("two", "two"), ("st", "st")] {
        let f = report[lv]
            .filesystem
            .as_ref()
            .unwrap_or_else(|| panic!("{lv}: {:?}", report[lv]));
        assert_eq!((f.kind, f.label.as_deref()), (FsKind::Ext4, Some(label)));
        let blkid = if lv == "lin" {
            run(Command::new("blkid")
                .args(["-p", "-O", &lin_at.to_string(), "-o", "value", "-s", "UUID"])
                .arg(&pv_img))
        } else {
            run(Command::new("blkid")
                .args(["-o", "value", "-s", "UUID"])
                .arg(dir.join(format!("{lv}.ext4"))))
        };
        assert_eq!(f.uuid.as_deref(), Some(blkid.trim()), "{lv}");
    }
    assert_eq!(report["two"].segment_types, ["linear", "linear"]);
    assert_eq!(report["st"].segment_types, ["striped"]);
    assert_eq!(
        report["gap"].copied_whole.as_deref(),
        Some("no known filesystem")
    );

    // `p2xen inspect` shows the VG and its LVs.
    let (json, code, stderr) = inspect_json(&[&pv_img]);
    assert_eq!(code, 0, "{stderr}");
    let pvfs = &json["disks"][0]["filesystem"];
    assert_eq!(pvfs["type"], "lvm2_pv");
    assert_eq!(pvfs["vg_name"], name.as_str());
    assert_eq!(pvfs["vg_uuid"], truth.id.as_str());
    assert_eq!(pvfs["extent_size"], 4 * MIB);
    let names: Vec<&str> = pvfs["logical_volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["st", "lin", "two", "gap"]);
    assert_eq!(pvfs["logical_volumes"][2]["filesystem"]["label"], "two");
    assert_eq!(pvfs["logical_volumes"][2]["size_bytes"], 32 * MIB);
    let text = common::fixtures::p2xen(&["inspect", pv_img.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("VG {name} ({})", truth.id)),
        "{text}"
    );
    assert!(text.contains("LV st"), "{text}");

    let before = hash_file(&pv_img);
    let used = used_extents(&dev, &fs).unwrap().unwrap();
    assert_eq!(before, hash_file(&pv_img), "source changed");
    eprintln!(
        "PV of 256 MiB with 4 LVs (3 ext4 of 32 MiB holding 4.1 MiB of files each, 8 MiB blank): {:.1} MiB planned vs 256",
        used.total_bytes() as f64 / MIB as f64
    );
    // The blank LV's 8 MiB whole, the label area, and well under half of
    // the 96 MiB of ext4.
    assert!(used.total_bytes() < 60 * MIB, "{}", used.total_bytes());
    assert!(used.total_bytes() > 8 * MIB + 12 * MIB);

    let copy = dir.join("copy.img");
    copy_from_map(&pv_img, &used, &copy);
    // The copy is still the same PV to lvm2's reader and to p2xen.
    let copied = lvm::read(&Device::open(&copy).unwrap()).unwrap().unwrap();
    assert_eq!(copied.vg.unwrap(), model);
    for (lv, content) in [("lin", &lin_files), ("two", &two_files), ("st", &st_files)] {
        let out = dir.join(format!("{lv}.from-copy"));
        gather(&copy, &out, &lvs[lv], &lo.0, pe_start, extent);
        assert_intact(&out, content);
    }
}

/// Two 64 MiB PVs: a linear LV spanning both and one striped over both;
/// each PV's share of them is copied whole, and the report says why.
fn two_pvs(dir: &Path) {
    let (a_img, b_img) = (dir.join("a.img"), dir.join("b.img"));
    sparse_image(&a_img, 64 * MIB);
    sparse_image(&b_img, 64 * MIB);
    let (a, b) = (Loop::attach(&a_img, 0, 0), Loop::attach(&b_img, 0, 0));
    let sub = dir.join("two");
    fs::create_dir_all(&sub).unwrap();
    let lvm = Lvm::new(&sub, &[&a, &b]);
    let name = format!("p2xm{}", std::process::id());
    lvm.cmd("pvcreate", &["-q", "-y", &a.0, &b.0]);
    lvm.cmd("vgcreate", &["-q", "-s", "4m", &name, &a.0, &b.0]);
    let _vg = Vg(&lvm, name.clone());
    lvm.lvcreate(&name, "st", &["-i2", "-I64k", "-L", "16m"]);
    lvm.lvcreate(&name, "span", &["-L", "80m"]);

    let truth = lvm.backup(&name, &sub);
    let lvs = lvm.segments(&name);
    let pvs = lvm.pvs(&name);
    for (img, lo) in [(&a_img, &a), (&b_img, &b)] {
        let dev = Device::open(img).unwrap();
        let pv = lvm::read(&dev).unwrap().unwrap();
        let model = pv.vg.clone().unwrap();
        assert_eq!(model, truth);
        let dev_of: BTreeMap<String, String> = model
            .physical_volumes
            .iter()
            .map(|p| {
                let d = pvs.iter().find(|(_, v)| v.0 == p.id).unwrap().0;
                (p.name.clone(), d.clone())
            })
            .collect();
        assert_eq!(model_segments(&model, &dev_of), lvs);
        assert_eq!(pvs[&lo.0].0, pv.label.uuid);

        // Used: everything before the first extent, and this PV's extents
        // of both LVs, by lvs's ranges.
        let (_, pe_start, _) = pvs[&lo.0];
        let mut want: Vec<(u64, u64)> = vec![(0, pe_start)];
        for segs in lvs.values() {
            for s in segs {
                for (d, first, last) in &s.ranges {
                    if d == &lo.0 {
                        want.push((pe_start + first * 4 * MIB, (last - first + 1) * 4 * MIB));
                    }
                }
            }
        }
        want.sort();
        let mut expect = ExtentList::new();
        for (o, l) in want {
            expect.push(o, l);
        }
        let fs = probe(&dev).unwrap().unwrap();
        assert_eq!(
            used_extents(&dev, &fs).unwrap().unwrap(),
            expect,
            "{}",
            lo.0
        );
        for r in &fs.details.logical_volumes {
            let why = r.copied_whole.as_deref().unwrap_or_default();
            assert!(why.starts_with("has extents on pv"), "{}: {why:?}", r.name);
        }
        eprintln!(
            "PV {} of 64 MiB in a 2-PV VG: {} MiB planned (spanning and striped LVs whole)",
            lo.0,
            expect.total_bytes() >> 20
        );
        let _ = dev.size();
    }
}

/// A copy whose root is on an LV of the copied PV, as the conversion sees
/// it: STORE/NAME/disk0.img (GPT, the PV as partition 1) and machine.json.
/// `root_lv` gets the guest's root ext4: "root" is linear (one run of the
/// PV), "two" has two segments with another LV between them.
fn lv_root_store(dir: &Path, vg: &str, root_lv: &str) -> (PathBuf, String) {
    let pv_img = dir.join("pv.img");
    sparse_image(&pv_img, 90 * MIB);
    let segs = {
        let lo = Loop::attach(&pv_img, 0, 0);
        let lvm = Lvm::new(dir, &[&lo]);
        lvm.cmd("pvcreate", &["-q", "-y", &lo.0]);
        lvm.cmd("vgcreate", &["-q", "-s", "4m", vg, &lo.0]);
        lvm.lvcreate(vg, "root", &["-L", "32m"]);
        lvm.lvcreate(vg, "two", &["-L", "16m"]);
        lvm.lvcreate(vg, "gap", &["-L", "8m"]);
        lvm.lv_cmd("lvextend", &["-q", "-L", "+16m", &format!("{vg}/two")]);
        let segs = lvm.segments(vg);
        let (_, pe_start, _) = lvm.pvs(vg)[&lo.0].clone();
        // No Vg guard: vgremove would wipe the PV this copy is made of.
        (segs, pe_start, lo.0.clone())
    };
    let (segs, pe_start, dev) = segs;
    let root = dir.join("guest-root");
    let mapper = |lv: &str| format!("/dev/mapper/{vg}-{lv}");
    common::fixtures::write_tree(
        &root,
        &[
            (
                "/etc/fstab",
                &format!(
                    "{} / ext4 defaults 0 1\n{} /srv ext4 defaults 0 2\n/dev/{vg}/gap none swap sw 0 0\n",
                    mapper(root_lv),
                    mapper(if root_lv == "root" { "two" } else { "root" })
                ),
            ),
            ("/etc/hostname", "lvroot\n"),
            ("/boot/vmlinuz-6.1.0-13-amd64", "kernel"),
            (
                "/boot/config-6.1.0-13-amd64",
                "CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\nCONFIG_XEN_NETDEV_FRONTEND=y\n",
            ),
            (
                "/boot/grub/grub.cfg",
                &format!(
                    "menuentry 'Debian' {{\n\tlinux /boot/vmlinuz-6.1.0-13-amd64 root={} ro rd.lvm.lv={vg}/{root_lv}\n}}\n",
                    mapper(root_lv)
                ),
            ),
        ],
    );
    let fs_img = dir.join("guest-root.ext4");
    sparse_image(&fs_img, 32 * MIB);
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-U",
            "1f3a0b5e-0000-4000-8000-00000000000a",
            "-d",
        ])
        .arg(&root)
        .arg(&fs_img));
    scatter(&pv_img, &fs_img, &segs[root_lv], &dev, pe_start, 4 * MIB);

    let store = dir.join("store").join("lvroot");
    fs::create_dir_all(&store).unwrap();
    let disk = store.join("disk0.img");
    sparse_image(&disk, 92 * MIB);
    common::fixtures::sfdisk(
        &disk,
        "label: gpt\nstart=2048, size=184320, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n",
    );
    common::fixtures::dd_into(&disk, MIB, &pv_img);
    let machine = format!(
        r#"{{"name":"lvroot","hostname":"lvroot","disks":[{{"path":"/dev/sda","size_bytes":{},"table":"gpt",
  "partitions":[{{"number":1,"start_bytes":{MIB},"size_bytes":{},"filesystem":{{"type":"lvm2_pv",
    "vg_name":"{vg}","logical_volumes":[{{"name":"{root_lv}","filesystem":{{"type":"ext4"}}}}]}}}}]}}]}}"#,
        92 * MIB,
        90 * MIB
    );
    fs::write(store.join("machine.json"), machine).unwrap();
    fs::write(store.join("report.json"), r#"{"copy":{"verified":true}}"#).unwrap();
    let first = pe_start + segs[root_lv][0].ranges[0].1 * 4 * MIB;
    (store, format!("{}", MIB + first))
}

/// Issue 12 (a): the conversion finds a root on an LV without activating
/// the copy's VG: a linear LV is a loop window of the disk image; fstab's
/// LV names stay; an LV of two segments needs device-mapper, and without
/// it (this machine's kernel) the error names the LV and why.
#[test]
fn a_root_on_an_lv_converts_and_a_segmented_one_needs_device_mapper() {
    use p2xen::guest::{self, ConvertRequest, GuestError, lvm::LvError};
    if lvm2_missing() {
        return;
    }
    need("mkfs.ext4", "e2fsprogs");
    need("debugfs", "e2fsprogs");
    let t0 = std::time::Instant::now();
    let vg = format!("p2xc{}", std::process::id());

    let dir = TempDir::new().unwrap();
    let (store, root_at) = lv_root_store(dir.path(), &vg, "root");
    let xen = dir.path().join("xen");
    let req = ConvertRequest::from_store(store.clone(), "lvroot", xen.clone()).unwrap();
    let rep = guest::convert(&req).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rep.root_device, format!("/dev/mapper/{vg}-root"));
    assert!(
        !rep.warnings.iter().any(|w| w.contains("fstab")),
        "{:?}",
        rep.warnings
    );
    assert!(rep.config.contains("disk0.img"), "{}", rep.config);
    // fstab's /dev/mapper and /dev/VG names stay: LVM is still in the guest.
    let fstab = run(Command::new("debugfs")
        .args(["-R", "cat /etc/fstab"])
        .arg(format!(
            "{}?offset={root_at}",
            store.join("disk0.img").display()
        )));
    assert!(
        fstab.starts_with(&format!("/dev/mapper/{vg}-root / ext4")),
        "{fstab}"
    );
    assert!(
        fstab.contains(&format!("/dev/{vg}/gap none swap")),
        "{fstab}"
    );
    drop(dir);

    let dir = TempDir::new().unwrap();
    let (store, _) = lv_root_store(dir.path(), &vg, "two");
    let req = ConvertRequest::from_store(store, "lvroot", dir.path().join("xen")).unwrap();
    let got = guest::convert(&req);
    if guest::lvm::have_device_mapper() {
        let rep = got.unwrap_or_else(|e| panic!("with device-mapper: {e}"));
        assert_eq!(rep.root_device, format!("/dev/mapper/{vg}-two"));
    } else {
        let e = got.expect_err("a two-segment LV without device-mapper");
        let msg = e.to_string();
        assert!(
            matches!(&e, GuestError::Lvm(LvError::NoDeviceMapper { vg: v, lv, .. }) if *v == vg && lv == "two"),
            "{e:?}"
        );
        assert!(
            msg.contains(&format!("LV {vg}/two is not one contiguous run of its PV"))
                && msg.contains("needs device-mapper"),
            "{msg}"
        );
    }
    eprintln!("LV root conversions: {:.1} s", t0.elapsed().as_secs_f64());
}
