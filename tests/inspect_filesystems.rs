//! Filesystem fields of `inspect --json` against blkid and dumpe2fs.
//!
//! These need the real `source::filesystems` from branch `filesystems`;
//! on branch `partitions` alone (placeholder probe) they fail by design.
//! The lead runs them after merging both branches.

mod common;

use common::fixtures::*;
use serde_json::Value;
use std::path::Path;

/// type/label/uuid against blkid, sizes and state against dumpe2fs.
fn assert_ext_matches_tools(fs: &Value, image: &Path, offset: u64) {
    let b = blkid_probe(image, offset);
    assert_eq!(
        fs["type"].as_str(),
        b.get("TYPE").map(String::as_str),
        "{fs:#}"
    );
    assert_eq!(fs["label"].as_str(), b.get("LABEL").map(String::as_str));
    assert_eq!(fs["uuid"].as_str(), b.get("UUID").map(String::as_str));
    let d = dumpe2fs_header(image, offset);
    let num = |k: &str| d[k].parse::<u64>().unwrap();
    let block = num("Block size");
    assert_eq!(
        fs["size_bytes"].as_u64().unwrap(),
        num("Block count") * block
    );
    assert_eq!(
        fs["used_bytes"].as_u64().unwrap(),
        (num("Block count") - num("Free blocks")) * block,
        "used bytes vs dumpe2fs free-block count"
    );
    assert_eq!(fs["state"], d["Filesystem state"].as_str());
}

#[test]
fn mbr_server_filesystems_match_blkid_and_dumpe2fs() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    let swap_offset = 18432 * SECTOR;
    mkswap_at(&f.image, swap_offset, 8192 * SECTOR, Some("swap0"));
    let before = hash_file(&f.image);
    let (v, code, stderr) = inspect_json(&[&f.image]);
    assert_eq!(code, 0, "{stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_ext_matches_tools(&partition(disk, 1)["filesystem"], &f.image, f.boot_offset);
    assert_ext_matches_tools(&partition(disk, 5)["filesystem"], &f.image, f.root_offset);
    assert_ext_matches_tools(&partition(disk, 6)["filesystem"], &f.image, f.srv_offset);
    let swap = &partition(disk, 2)["filesystem"];
    let b = blkid_probe(&f.image, swap_offset);
    assert_eq!(swap["type"], "swap");
    assert_eq!(swap["label"].as_str(), b.get("LABEL").map(String::as_str));
    assert_eq!(swap["uuid"].as_str(), b.get("UUID").map(String::as_str));
    assert_eq!(
        partition(disk, 3)["filesystem"],
        Value::Null,
        "extended container"
    );
    assert_eq!(hash_file(&f.image), before);
}

#[test]
fn gpt_root_filesystem_matches_blkid_and_dumpe2fs() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    let (v, code, stderr) = inspect_json(&[&f.image]);
    assert_eq!(code, 0, "{stderr}\n{v:#}");
    assert_ext_matches_tools(
        &partition(&v["disks"][0], 3)["filesystem"],
        &f.image,
        f.root_offset,
    );
}

#[test]
fn whole_disk_filesystem_matches_blkid_and_dumpe2fs() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("whole.img");
    sparse_image(&image, 16 * MIB);
    mke2fs_at(&image, "ext4", 0, 16 * MIB, None, "wholefs");
    let (v, code, stderr) = inspect_json(&[&image]);
    assert_eq!(code, 0, "{stderr}\n{v:#}");
    let disk = &v["disks"][0];
    assert_eq!(disk["table"], "none");
    assert_ext_matches_tools(&disk["filesystem"], &image, 0);
}
