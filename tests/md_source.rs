//! md RAID1 sources through the real sender and receiver on loopback: the
//! array travels once, flattened (the filesystem that was inside written
//! where the member partition was, only its used blocks sent), and the
//! source images are never written.
//!
//! This machine's kernel has no md driver, so `mdadm --create` cannot run:
//! the member superblocks are written by `common::md` (metadata 1.2, as
//! mdadm 4 lays out a small array: superblock at 4 KiB, data at 1 MiB) and
//! `mdadm --examine` judges them before the copy.

mod common;
mod copy_harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::fixtures::{MIB, hash_file, hash_range, patch, peek, run, sfdisk, tool_stdout};
use common::md::Sb1;
use copy_harness::{Receiver, dump_fs, e2fsck_ok, noise, tree_hashes};

/// The member partition: 1 MiB into a 42 MiB disk, 40 MiB long.
const PART: u64 = MIB;
const PART_SIZE: u64 = 40 * MIB;
const DISK_SIZE: u64 = 42 * MIB;
/// What the 1.2 superblock reserves before the data (data_offset 2048).
const DATA_OFFSET: u64 = MIB;
const DATA_LEN: u64 = PART_SIZE - DATA_OFFSET;
/// The array's UUID as mdadm prints it (`Sb1::raid1`'s set_uuid).
const ARRAY_UUID: &str = "3a1f229c:445d6e70:8192a3b4:c5d6e7f8";

/// The ext4 that lives inside the array (`len`: the array's size), with files.
fn inner_fs(dir: &Path, len: u64) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("var/lib")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "mirror\n").unwrap();
    std::fs::write(tree.join("var/lib/data.bin"), noise(5 << 20, 41)).unwrap();
    let log: String = (0..20_000)
        .map(|i| format!("line {i} of the log\n"))
        .collect();
    std::fs::write(tree.join("var/log.txt"), log).unwrap();
    let img = dir.join(format!("inner-{len}.img"));
    std::fs::File::create(&img).unwrap().set_len(len).unwrap();
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "root"])
        .args(["-U", "5e5e5e5e-0000-4000-8000-00000000000a"])
        .arg("-d")
        .arg(&tree)
        .arg(&img));
    img
}

/// Bytes of the inner ext4 in use, by dumpe2fs (not p2xen's reader).
fn used_bytes(img: &Path) -> u64 {
    let out = tool_stdout("dumpe2fs", "e2fsprogs", &["-h", &img.display().to_string()]);
    let field = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .trim()
            .parse()
            .unwrap()
    };
    (field("Block count:") - field("Free blocks:")) * field("Block size:")
}

/// Where the array's data lies in a member of metadata `version`: (byte
/// offset, length). 0.90 and 1.0 keep the superblock after the data.
fn data_area(version: &str) -> (u64, u64) {
    match version {
        "0.90" => (0, PART_SIZE - 64 * 1024),
        "1.0" => (0, PART_SIZE - 8192),
        _ => (DATA_OFFSET, DATA_LEN),
    }
}

/// One member partition: noise (so a misplaced byte shows), the superblock
/// of `version` and the inner filesystem at the data offset; checked by
/// `mdadm --examine`.
fn member(dir: &Path, inner: &Path, version: &'static str, dev_number: u32, seed: u64) -> PathBuf {
    let p = dir.join(format!("member-{version}-{dev_number}.img"));
    std::fs::write(&p, noise(PART_SIZE as usize, seed)).unwrap();
    let (data_offset, data_len) = data_area(version);
    assert_eq!(std::fs::metadata(inner).unwrap().len(), data_len);
    patch(&p, data_offset, &std::fs::read(inner).unwrap());
    let template = Sb1::raid1("1.2", PART_SIZE, dev_number);
    let mut wants = vec![
        "Magic : a92b4efc".to_string(),
        "Raid Level : raid1".to_string(),
        "Raid Devices : 2".to_string(),
    ];
    let (off, bytes) = if version == "0.90" {
        wants.push("Version : 0.90.00".into());
        common::md::sb090_raid1(PART_SIZE, template.set_uuid, dev_number)
    } else {
        let mut sb = Sb1::raid1(version, PART_SIZE, dev_number);
        sb.dev_uuid = [0x20 + dev_number as u8; 16];
        wants.extend([
            format!("Version : {version}"),
            format!("Array UUID : {ARRAY_UUID}"),
            format!("Avail Dev Size : {} sectors", data_len / 512),
            format!(
                "Super Offset : {} sectors",
                common::md::sb1_offset(version, PART_SIZE) / 512
            ),
            format!("Device Role : Active device {dev_number}"),
        ]);
        // mdadm leaves the line out when the data starts at the member's start.
        if data_offset > 0 {
            wants.push(format!("Data Offset : {} sectors", data_offset / 512));
        }
        sb.build(PART_SIZE)
    };
    patch(&p, off, &bytes);
    let ex = tool_stdout("mdadm", "mdadm", &["--examine", &p.display().to_string()]);
    for want in &wants {
        assert!(
            ex.contains(want.as_str()),
            "no {want:?} in mdadm --examine:\n{ex}"
        );
    }
    assert!(
        ex.contains("Checksum : ") && ex.contains(" - correct"),
        "{ex}"
    );
    p
}

/// A disk holding `member` as partition 1 (type fd), noise around it.
fn disk(dir: &Path, member: &Path, name: &str, seed: u64) -> PathBuf {
    let d = dir.join(name);
    std::fs::write(&d, noise(DISK_SIZE as usize, seed)).unwrap();
    sfdisk(&d, "label: dos\nstart=2048, size=81920, type=fd\n");
    patch(&d, PART, &std::fs::read(member).unwrap());
    d
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn notes(v: &serde_json::Value) -> String {
    v["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {v}"))
        .iter()
        .filter_map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `sources` to a `--once` receiver; (sender's last event, store dir).
fn migrate(dir: &Path, name: &str, sources: &[&Path]) -> (serde_json::Value, PathBuf) {
    let store = dir.join(format!("store-{name}"));
    let mut r = Receiver::start(&store, &dir.join(format!("state-{name}")), &["--once"]);
    let (ok, last, err) = r.send(name, sources, &[]);
    assert!(ok, "{err}");
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(
        r.wait(Duration::from_secs(60)),
        Some(0),
        "{}",
        r.stderr.lock().unwrap()
    );
    (last, store.join(name))
}

/// The target's partition holds the inner filesystem (`data_len` bytes),
/// byte for byte, and zeros after it (no superblock); e2fsck and debugfs
/// read it.
fn assert_flattened(target: &Path, inner: &Path, data_len: u64, dir: &Path) {
    assert_eq!(
        hash_range(target, PART, data_len as usize),
        hash_file(inner),
        "the target partition is not the inner filesystem"
    );
    assert!(
        peek(target, PART + data_len, (PART_SIZE - data_len) as usize)
            .iter()
            .all(|&b| b == 0),
        "the partition's tail after the array's data is not zero"
    );
    e2fsck_ok(target, PART);
    let a = dir.join(format!("tree-target-{data_len}"));
    dump_fs(target, PART, &a);
    let got = tree_hashes(&a);
    let want = tree_hashes(&dir.join("tree"));
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(got, want);
}

#[test]
fn raid1_12_pair_travels_once_flattened_with_only_used_blocks() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, DATA_LEN);
    let used = used_bytes(&inner);
    let a = disk(dir, &member(dir, &inner, "1.2", 0, 11), "sda.img", 1);
    let b = disk(dir, &member(dir, &inner, "1.2", 1, 12), "sdb.img", 2);
    let (ha, hb) = (hash_file(&a), hash_file(&b));

    let (last, out) = migrate(dir, "mirror", &[&a, &b]);
    let sent = &last["report"]["disks"];
    let received = read_json(&out.join("report.json"));
    assert_eq!(received["state"], "complete", "{received}");

    // Disk 0 carries the array, flattened.
    let d0 = &sent[0];
    assert!(
        notes(d0).contains(&format!("md 1.2 RAID1 array {ARRAY_UUID} flattened")),
        "{d0}"
    );
    assert_flattened(&out.join("disk0.img"), &inner, DATA_LEN, dir);
    // Only the inner fs's used blocks, plus the disk outside the partition
    // (the MBR gap and the tail, 2 MiB of noise sent whole).
    let plan0 = d0["plan_bytes"].as_u64().unwrap();
    let outside = DISK_SIZE - PART_SIZE;
    eprintln!(
        "disk 0: plan {plan0} bytes, inner fs used {used}, partition {PART_SIZE}, outside {outside}"
    );
    assert!(plan0 >= used + outside, "{plan0} < {used} + {outside}");
    assert!(
        plan0 <= used + outside + MIB,
        "{plan0}: more than the used blocks ({used}) were sent"
    );
    assert!(plan0 < PART_SIZE / 2, "{plan0}");
    assert_eq!(received["disks"][0]["committed_bytes"], plan0, "{received}");

    // Disk 1's member is not sent: only what lies outside its partition.
    let d1 = &sent[1];
    let plan1 = d1["plan_bytes"].as_u64().unwrap();
    assert_eq!(plan1, outside, "{d1}");
    assert_eq!(received["disks"][1]["committed_bytes"], plan1, "{received}");
    assert!(
        notes(d1).contains("not sent (the array travels from disk 0 partition 1)"),
        "{d1}"
    );
    assert!(
        peek(&out.join("disk1.img"), PART, PART_SIZE as usize)
            .iter()
            .all(|&b| b == 0)
    );
    // Both members present: not degraded.
    assert!(!notes(d0).contains("degraded"), "{d0}");

    // The receiver's machine.json tells the conversion what is where now.
    let m = read_json(&out.join("machine.json"));
    let fs0 = &m["disks"][0]["partitions"][0]["filesystem"];
    assert_eq!(fs0["type"], "ext4", "{m}");
    assert_eq!(fs0["uuid"], "5e5e5e5e-0000-4000-8000-00000000000a", "{m}");
    assert_eq!(
        fs0["md_flattened_from"],
        format!("raid1 1.2 {ARRAY_UUID}"),
        "{m}"
    );
    assert!(
        m["disks"][1]["partitions"][0]["filesystem"].is_null(),
        "{m}"
    );

    assert_eq!(hash_file(&a), ha, "source disk 0 changed");
    assert_eq!(hash_file(&b), hb, "source disk 1 changed");
}

#[test]
fn degraded_raid1_migrates_and_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, DATA_LEN);
    let b = disk(dir, &member(dir, &inner, "1.2", 1, 13), "sdb.img", 3);
    let hb = hash_file(&b);

    let (last, out) = migrate(dir, "half", &[&b]);
    let d0 = &last["report"]["disks"][0];
    let n = notes(d0);
    assert!(
        n.contains(&format!(
            "partition 1: md array {ARRAY_UUID} is degraded: 1 of 2 members present"
        )),
        "{n}"
    );
    assert_flattened(&out.join("disk0.img"), &inner, DATA_LEN, dir);
    let m = read_json(&out.join("machine.json"));
    let warnings = m["disks"][0]["warnings"].to_string();
    assert!(warnings.contains("is degraded: 1 of 2"), "{m}");
    let received = read_json(&out.join("report.json"));
    assert!(
        notes(&received["disks"][0]).contains("is degraded"),
        "{received}"
    );
    assert_eq!(hash_file(&b), hb, "the source changed");
}

#[test]
fn corrupt_superblock_is_named_and_the_member_copied_whole() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, DATA_LEN);
    let m0 = member(dir, &inner, "1.2", 0, 14);
    // One byte of the array name changed after the checksum was computed.
    patch(&m0, 4096 + 40, b"X");
    let ex = Command::new("mdadm")
        .arg("--examine")
        .arg(&m0)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ex.stdout).contains("expected"),
        "mdadm does not see the bad checksum"
    );
    let a = disk(dir, &m0, "sda.img", 4);
    let ha = hash_file(&a);

    let (last, out) = migrate(dir, "broken", &[&a]);
    let d0 = &last["report"]["disks"][0];
    let n = notes(d0);
    assert!(
        n.contains(&format!(
            "partition 1: md member not flattened ({}: md 1.2 superblock at byte 4096: checksum",
            a.display()
        )) && n.contains("copied whole"),
        "{n}"
    );
    // The documented fallback: the partition as it is, superblock and all.
    assert_eq!(d0["plan_bytes"], DISK_SIZE, "{d0}");
    assert_eq!(
        hash_range(&out.join("disk0.img"), PART, PART_SIZE as usize),
        hash_range(&a, PART, PART_SIZE as usize)
    );
    assert_eq!(hash_file(&a), ha, "the source changed");
}

#[test]
fn every_metadata_version_flattens_to_the_inner_filesystem() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    for (i, version) in ["0.90", "1.0", "1.1", "1.2"].into_iter().enumerate() {
        let (_, data_len) = data_area(version);
        let inner = inner_fs(dir, data_len);
        let used = used_bytes(&inner);
        let seed = 20 + i as u64;
        let a = disk(
            dir,
            &member(dir, &inner, version, 0, seed),
            &format!("sda-{version}.img"),
            seed,
        );
        let b = disk(
            dir,
            &member(dir, &inner, version, 1, seed + 10),
            &format!("sdb-{version}.img"),
            seed + 10,
        );
        let (ha, hb) = (hash_file(&a), hash_file(&b));
        let (last, out) = migrate(dir, &format!("v{i}"), &[&a, &b]);
        let d0 = &last["report"]["disks"][0];
        assert!(
            notes(d0).contains(&format!("md {version} RAID1 array"))
                && notes(d0).contains("flattened"),
            "{version}: {d0}"
        );
        assert_flattened(&out.join("disk0.img"), &inner, data_len, dir);
        let plan0 = d0["plan_bytes"].as_u64().unwrap();
        let outside = DISK_SIZE - PART_SIZE;
        eprintln!("md {version}: plan {plan0} bytes, inner fs used {used}, partition {PART_SIZE}");
        assert!(
            plan0 >= used + outside && plan0 <= used + outside + MIB,
            "{version}: {plan0}"
        );
        assert_eq!(
            last["report"]["disks"][1]["plan_bytes"], outside,
            "{version}: the second member was sent"
        );
        assert_eq!(hash_file(&a), ha, "{version}: source disk 0 changed");
        assert_eq!(hash_file(&b), hb, "{version}: source disk 1 changed");
    }
}

#[test]
fn a_member_with_a_bad_checksum_leaves_the_array_to_the_healthy_one() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, DATA_LEN);
    let m0 = member(dir, &inner, "1.2", 0, 15);
    patch(&m0, 4096 + 40, b"X");
    let a = disk(dir, &m0, "sda.img", 5);
    let b = disk(dir, &member(dir, &inner, "1.2", 1, 16), "sdb.img", 6);
    let (ha, hb) = (hash_file(&a), hash_file(&b));

    let (last, out) = migrate(dir, "onegood", &[&a, &b]);
    let sent = &last["report"]["disks"];
    let outside = DISK_SIZE - PART_SIZE;
    // The damaged first member is not sent, and says why.
    let n0 = notes(&sent[0]);
    assert!(
        n0.contains("not sent (the array travels from disk 1 partition 1; this member's own: ")
            && n0.contains("md 1.2 superblock at byte 4096: checksum"),
        "{n0}"
    );
    assert_eq!(sent[0]["plan_bytes"], outside, "{}", sent[0]);
    assert!(
        peek(&out.join("disk0.img"), PART, PART_SIZE as usize)
            .iter()
            .all(|&b| b == 0)
    );
    // The healthy second one carries the array, flattened, once.
    assert!(
        notes(&sent[1]).contains("md 1.2 RAID1 array"),
        "{}",
        sent[1]
    );
    assert_flattened(&out.join("disk1.img"), &inner, DATA_LEN, dir);
    assert!(!notes(&sent[1]).contains("degraded"), "{}", sent[1]);
    assert_eq!(hash_file(&a), ha);
    assert_eq!(hash_file(&b), hb);
}

/// A linear array is not assembled: each member travels whole,
/// superblock and all, and the report names the array and what the guest
/// then needs.
#[test]
fn linear_members_are_copied_whole_and_named() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut disks = Vec::new();
    for n in 0..2u32 {
        let p = dir.join(format!("parity-{n}.img"));
        std::fs::write(&p, noise(PART_SIZE as usize, 30 + u64::from(n))).unwrap();
        let mut sb = Sb1::raid1("1.2", PART_SIZE, n);
        sb.level = u32::MAX; // -1: linear
        sb.dev_uuid = [0x40 + n as u8; 16];
        let (off, bytes) = sb.build(PART_SIZE);
        patch(&p, off, &bytes);
        let ex = tool_stdout("mdadm", "mdadm", &["--examine", &p.display().to_string()]);
        assert!(ex.contains("Raid Level : linear"), "{ex}");
        disks.push(disk(dir, &p, &format!("sd{n}.img"), 40 + u64::from(n)));
    }
    let hashes: Vec<String> = disks.iter().map(|d| hash_file(d)).collect();
    let (last, out) = migrate(dir, "parity", &[&disks[0], &disks[1]]);
    assert_eq!(last["report"]["disks"].as_array().map(Vec::len), Some(2));
    for (i, d) in disks.iter().enumerate() {
        let sent = &last["report"]["disks"][i];
        let n = notes(sent);
        assert!(
            n.contains(&format!(
                "partition 1: md 1.2 linear member of array {ARRAY_UUID}: copied whole (only \
                 RAID0/5/6/10 arrays are assembled, RAID1 flattened)"
            )),
            "{n}"
        );
        assert_eq!(sent["plan_bytes"], DISK_SIZE, "{sent}");
        assert_eq!(
            hash_range(&out.join(format!("disk{i}.img")), PART, PART_SIZE as usize),
            hash_range(d, PART, PART_SIZE as usize),
            "disk {i}: the member is not copied as it is"
        );
        assert_eq!(hash_file(d), hashes[i], "source disk {i} changed");
    }
}

/// RAID0 (chunk 512 KiB), RAID10 near=2 or RAID5 left-symmetric (chunk
/// 64 KiB) members holding `inner` striped by hand: array chunk g of RAID0
/// on member g % n, row g / n; RAID10 writes each chunk to the next two
/// positions of the rows; RAID5 puts stripe s's parity on member
/// n-1 - s % n and its data on the members after it, wrapping.
fn striped_members(dir: &Path, inner: &Path, level: u32, n: u32) -> Vec<PathBuf> {
    let chunk = if level == 0 { 512 * 1024 } else { 64 * 1024 };
    let data = std::fs::read(inner).unwrap();
    let want_len = match level {
        0 => DATA_LEN * u64::from(n),
        10 => DATA_LEN * u64::from(n) / 2,
        _ => DATA_LEN * u64::from(n - 1),
    };
    assert_eq!(data.len() as u64, want_len);
    let n_us = n as usize;
    let mut members: Vec<Vec<u8>> = (0..n)
        .map(|m| noise(PART_SIZE as usize, 60 + u64::from(m)))
        .collect();
    let mut put = |dev: usize, row: usize, c: &[u8]| {
        let at = DATA_OFFSET as usize + row * chunk;
        members[dev][at..at + chunk].copy_from_slice(c);
    };
    if level == 5 {
        for (s, stripe) in data.chunks(chunk * (n_us - 1)).enumerate() {
            let pd = n_us - 1 - s % n_us;
            let mut parity = vec![0u8; chunk];
            for (dd, c) in stripe.chunks(chunk).enumerate() {
                put((pd + 1 + dd) % n_us, s, c);
                parity.iter_mut().zip(c).for_each(|(p, b)| *p ^= b);
            }
            put(pd, s, &parity);
        }
    } else {
        let copies = if level == 0 { 1 } else { 2 };
        for (g, c) in data.chunks(chunk).enumerate() {
            for k in 0..copies {
                let pos = g * copies + k;
                put(pos % n_us, pos / n_us, c);
            }
        }
    }
    let mut out = Vec::new();
    for (m, bytes) in members.into_iter().enumerate() {
        let p = dir.join(format!("raid{level}-member-{m}.img"));
        std::fs::write(&p, bytes).unwrap();
        let mut sb = Sb1::raid1("1.2", PART_SIZE, m as u32);
        sb.level = level;
        sb.raid_disks = n;
        sb.roles = (0..n as u16).collect();
        sb.chunk_size = (chunk / 512) as u32;
        sb.layout = match level {
            0 => 2,
            10 => 0x102,
            _ => 2, // left-symmetric
        };
        sb.events = 7;
        sb.dev_uuid = [0x50 + m as u8; 16];
        let (off, sbytes) = sb.build(PART_SIZE);
        patch(&p, off, &sbytes);
        let ex = tool_stdout("mdadm", "mdadm", &["--examine", &p.display().to_string()]);
        let mut wants = vec![
            format!("Raid Level : raid{level}"),
            format!("Chunk Size : {}K", chunk / 1024),
            "Raid Devices : ".to_string() + &n.to_string(),
        ];
        match level {
            10 => wants.push("Layout : near=2".into()),
            5 => wants.push("Layout : left-symmetric".into()),
            _ => {}
        }
        for want in &wants {
            assert!(ex.contains(want), "no {want:?} in mdadm --examine:\n{ex}");
        }
        out.push(disk(dir, &p, &format!("sd{level}{m}.img"), 70 + m as u64));
    }
    out
}

/// The array's disk (after the source disks) holds the inner filesystem
/// byte for byte: its free blocks were zeros, and only used ones travel.
fn assert_assembled(last: &serde_json::Value, out: &Path, index: usize, inner: &Path, dir: &Path) {
    let target = out.join(format!("disk{index}.img"));
    assert_eq!(
        std::fs::metadata(&target).unwrap().len(),
        std::fs::metadata(inner).unwrap().len()
    );
    assert_eq!(
        hash_file(&target),
        hash_file(inner),
        "the array disk is not the inner ext4"
    );
    e2fsck_ok(&target, 0);
    let a = dir.join(format!("tree-array-{index}"));
    dump_fs(&target, 0, &a);
    assert_eq!(tree_hashes(&a), tree_hashes(&dir.join("tree")));
    let sent = &last["report"]["disks"][index];
    let used = used_bytes(inner);
    let plan = sent["plan_bytes"].as_u64().unwrap();
    println!("array disk: {plan} bytes planned for {used} bytes used");
    assert!(
        plan >= used && plan < used + 2 * MIB,
        "{plan} bytes planned, {used} used"
    );
}

#[test]
fn raid0_pair_is_assembled_into_one_disk_and_its_members_not_sent() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, 2 * DATA_LEN);
    let disks = striped_members(dir, &inner, 0, 2);
    let hashes: Vec<String> = disks.iter().map(|d| hash_file(d)).collect();
    let (last, out) = migrate(dir, "stripes", &[&disks[0], &disks[1]]);
    assert_eq!(
        last["report"]["disks"].as_array().map(Vec::len),
        Some(3),
        "{last}"
    );
    let n = notes(&last["report"]["disks"][2]);
    assert!(
        n.contains(&format!(
            "md 1.2 raid0 array {ARRAY_UUID} assembled (all 2 members present; chunk 512 KiB; \
             slot 0 from disk 0 partition 1, slot 1 from disk 1 partition 1): sent as disk 2"
        )),
        "{n}"
    );
    assert_assembled(&last, &out, 2, &inner, dir);
    for (i, d) in disks.iter().enumerate() {
        let n = notes(&last["report"]["disks"][i]);
        assert!(
            n.contains("partition 1: md 1.2 raid0 member of array")
                && n.contains("not sent (the array is assembled and sent as disk 2)"),
            "{n}"
        );
        let target = out.join(format!("disk{i}.img"));
        assert!(
            peek(&target, PART, PART_SIZE as usize)
                .iter()
                .all(|&b| b == 0),
            "disk {i}: the member partition is not left zero"
        );
        assert_eq!(
            hash_range(&target, 0, PART as usize),
            hash_range(d, 0, PART as usize)
        );
        assert_eq!(hash_file(d), hashes[i], "source disk {i} changed");
    }
    let machine = read_json(&out.join("machine.json"));
    let fs = &machine["disks"][2]["filesystem"];
    assert_eq!(
        fs["md_flattened_from"],
        format!("raid0 1.2 {ARRAY_UUID}"),
        "{fs}"
    );
    assert_eq!(fs["type"], "ext4", "{fs}");
}

#[test]
fn raid10_with_a_corrupt_member_is_assembled_degraded_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, 2 * DATA_LEN);
    let disks = striped_members(dir, &inner, 10, 4);
    // Slot 1's superblock no longer checks out: its pair, slot 0, carries.
    patch(&disks[1], PART + 4096 + 32, b"X");
    let (last, out) = migrate(dir, "ten", &[&disks[0], &disks[1], &disks[2], &disks[3]]);
    let n = notes(&last["report"]["disks"][4]);
    assert!(
        n.contains(&format!(
            "md 1.2 raid10 array {ARRAY_UUID} assembled (degraded: slots [1] of 4 missing; \
             chunk 64 KiB; slot 0 from disk 0 partition 1, slot 2 from disk 2 partition 1, \
             slot 3 from disk 3 partition 1): sent as disk 4"
        )) && n.contains("disk 1 partition 1 left out:")
            && n.contains("checksum"),
        "{n}"
    );
    assert_assembled(&last, &out, 4, &inner, dir);
    let machine = read_json(&out.join("machine.json"));
    let w = machine["disks"][4]["warnings"].to_string();
    assert!(w.contains("degraded: slots [1] of 4 missing"), "{w}");
}

#[test]
fn raid0_without_a_member_stops_the_send_naming_the_slot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, 2 * DATA_LEN);
    let disks = striped_members(dir, &inner, 0, 2);
    let store = dir.join("store");
    let r = Receiver::start(&store, &dir.join("state"), &["--once"]);
    let (ok, _, err) = r.send("half", &[&disks[0]], &[]);
    assert!(!ok, "a RAID0 without its second member was sent");
    assert!(
        err.contains(&format!(
            "md raid0 array {ARRAY_UUID}: slot 1 of 2 is missing (no member with role 1 among \
             the source disks); a RAID0 cannot be read without every member: attach the disk \
             holding that member, or pass --all-blocks"
        )),
        "{err}"
    );
}

/// A RAID5 of three with one member absent: its chunks are rebuilt from
/// the parity, and the array still arrives as its ext4, reported degraded.
#[test]
fn raid5_missing_a_member_is_rebuilt_from_parity() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inner = inner_fs(dir, 2 * DATA_LEN);
    let disks = striped_members(dir, &inner, 5, 3);
    let (last, out) = migrate(dir, "five", &[&disks[0], &disks[2]]);
    let n = notes(&last["report"]["disks"][2]);
    assert!(
        n.contains(&format!(
            "md 1.2 raid5 array {ARRAY_UUID} assembled (degraded: slots [1] of 3 missing; \
             chunk 64 KiB; slot 0 from disk 0 partition 1, slot 2 from disk 1 partition 1): \
             sent as disk 2"
        )),
        "{n}"
    );
    assert_assembled(&last, &out, 2, &inner, dir);
}
