//! Damaged disks: every problem is reported with device, partition and
//! offset, inspection carries on, the exit status is 1 when something was
//! unreadable, and the source image is never modified.

mod common;

use common::fixtures::*;
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

fn partition_layout(disk: &Value) -> Vec<(u64, u64, u64, String)> {
    disk["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["number"].as_u64().unwrap(),
                p["start_bytes"].as_u64().unwrap(),
                p["size_bytes"].as_u64().unwrap(),
                p["type_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn truncated_mbr_image_reports_partitions_past_the_end_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    resize(&f.image, 40 * MIB);
    let (v, code, stderr) = inspect_unchanged(&f.image);
    assert_eq!(code, 1, "{v:#}");
    let disk = &v["disks"][0];
    let path = f.image.display().to_string();
    // The table's verdict comes first; a filesystem probe may add its own.
    let e6 = strings(&partition(disk, 6)["errors"]);
    assert_eq!(
        e6[0],
        format!(
            "{path}: partition 6 (bytes 36700160..47185920) extends past the end of the disk (41943040 bytes); is the image truncated?"
        )
    );
    assert!(
        strings(&partition(disk, 3)["errors"])[0]
            .contains("partition 3 (bytes 13631488..67108864) extends past the end")
    );
    // The root filesystem before the cut is still fully inspected.
    assert_eq!(partition(disk, 5)["os"]["hostname"], "oldserver");
    assert_eq!(partition(disk, 5)["errors"], serde_json::json!([]));
    assert!(
        stderr.contains("partition 6 (bytes"),
        "errors are logged: {stderr}"
    );
}

#[test]
fn truncated_gpt_image_warns_about_the_missing_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    resize(&f.image, 48 * MIB);
    let (v, code, _) = inspect_unchanged(&f.image);
    assert_eq!(code, 1);
    let disk = &v["disks"][0];
    let path = f.image.display().to_string();
    // The primary header names the backup's LBA, now past the end.
    assert_eq!(
        strings(&disk["warnings"]),
        [format!(
            "{path}: backup GPT header at offset {} is damaged or missing (no \"EFI PART\" signature); the primary header is used (truncated image?)",
            48 * MIB - 512
        )]
    );
    assert!(strings(&partition(disk, 5)["errors"])[0].contains(
        "partition 5 (bytes 46137344..56623104) extends past the end of the disk (50331648 bytes)"
    ));
    assert_eq!(partition(disk, 3)["os"]["hostname"], "gpthost");
}

#[test]
fn garbage_mbr_is_an_error_naming_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("garbage.img");
    sparse_image(&image, 4 * MIB);
    let mut sector: Vec<u8> = (0..512u32).map(|i| (i * 37 + 11) as u8).collect();
    sector[446] = 0x37; // boot flag of entry 1: neither 0x00 nor 0x80
    sector[510] = 0x55;
    sector[511] = 0xaa;
    patch(&image, 0, &sector);
    let (v, code, _) = inspect_unchanged(&image);
    assert_eq!(code, 1);
    let disk = &v["disks"][0];
    assert_eq!(disk["table"], "none");
    assert_eq!(
        strings(&disk["errors"]),
        [format!(
            "{}: the MBR at offset 0 is not a valid partition table: an entry has a boot flag other than 0x00 or 0x80",
            image.display()
        )]
    );
}

#[test]
fn overlapping_partitions_are_reported_on_both() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    // Move primary 2 (swap, 8192 sectors) to LBA 10000, inside partition 1.
    patch(&f.image, 446 + 16 + 8, &10000u32.to_le_bytes());
    let (v, code, _) = inspect_unchanged(&f.image);
    assert_eq!(code, 1);
    let disk = &v["disks"][0];
    let msg = format!(
        "{}: partitions 1 and 2 overlap (bytes 5120000..9314304 belong to both)",
        f.image.display()
    );
    assert_eq!(
        strings(&partition(disk, 1)["errors"]),
        std::slice::from_ref(&msg)
    );
    assert_eq!(strings(&partition(disk, 2)["errors"]), [msg]);
    assert_eq!(partition(disk, 5)["errors"], serde_json::json!([]));
}

#[test]
fn gpt_with_bad_primary_crc_is_read_from_the_backup_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    let (good, _, _) = inspect_json(&[&f.image]);
    let byte = peek(&f.image, 512 + 56, 1)[0];
    patch(&f.image, 512 + 56, &[byte ^ 0xff]);
    let (v, code, stderr) = inspect_unchanged(&f.image);
    assert_eq!(
        code, 0,
        "a usable backup is a warning, not an error: {stderr}"
    );
    let disk = &v["disks"][0];
    let w = strings(&disk["warnings"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "{}: primary GPT header at offset 512 is damaged (header CRC32 mismatch (stored 0x",
            f.image.display()
        )),
        "{}",
        w[0]
    );
    assert!(w[0].ends_with(&format!(
        "using the backup header at offset {}",
        64 * MIB - 512
    )));
    assert_eq!(partition_layout(disk), partition_layout(&good["disks"][0]));
    assert_eq!(disk["disk_id"], good["disks"][0]["disk_id"]);
}

#[test]
fn gpt_with_damaged_primary_entries_uses_the_backup_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    let (good, _, _) = inspect_json(&[&f.image]);
    // A byte of partition 1's name in the primary entry array (LBA 2).
    patch(&f.image, 1024 + 56, b"X");
    let (v, code, _) = inspect_unchanged(&f.image);
    assert_eq!(code, 0);
    let disk = &v["disks"][0];
    assert_eq!(
        strings(&disk["warnings"]),
        [format!(
            "{}: GPT partition entries at offset 1024 are damaged (partition table CRC mismatch); using the backup entries at offset {}",
            f.image.display(),
            64 * MIB - 33 * 512
        )]
    );
    assert_eq!(partition_layout(disk), partition_layout(&good["disks"][0]));
    assert_eq!(partition(disk, 1)["name"], "bios");
}

#[test]
fn gpt_with_both_headers_bad_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    patch(&f.image, 512 + 56, b"\xff\xff");
    patch(&f.image, 64 * MIB - 512 + 56, b"\xff\xff");
    let (v, code, _) = inspect_unchanged(&f.image);
    assert_eq!(code, 1);
    let disk = &v["disks"][0];
    assert_eq!(disk["table"], "gpt");
    assert_eq!(disk["partitions"], serde_json::json!([]));
    let e = strings(&disk["errors"]);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!(
            "{}: no readable GPT: primary header at offset 512: header CRC32 mismatch",
            f.image.display()
        )),
        "{}",
        e[0]
    );
    assert!(e[0].contains(&format!(
        "backup header at offset {}: header CRC32 mismatch",
        64 * MIB - 512
    )));
}

#[test]
fn ebr_loop_is_cut_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    // The second EBR (LBA 69632, 43008 into the extended partition) gets a
    // link entry pointing at itself.
    patch(
        &f.image,
        69632 * SECTOR + 446 + 16,
        &mbr_entry(0x05, 43008, 22528),
    );
    let (v, code, _) = inspect_unchanged(&f.image);
    assert_eq!(code, 1);
    let disk = &v["disks"][0];
    assert_eq!(
        strings(&disk["errors"]),
        [format!(
            "{}: the EBR chain loops: link 2 points back to the extended boot record at offset {}, already read; the chain is cut there",
            f.image.display(),
            69632 * SECTOR
        )]
    );
    let numbers: Vec<u64> = partition_layout(disk).iter().map(|p| p.0).collect();
    assert_eq!(numbers, [1, 2, 3, 5, 6]);
}

#[test]
fn absurd_ext4_superblock_is_reported_on_its_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let f = mbr_server(tmp.path());
    // s_log_block_size (superblock offset 24) = 30: a 1 TiB block size.
    patch(&f.image, f.root_offset + 1024 + 24, &30u32.to_le_bytes());
    let (v, code, _) = inspect_unchanged(&f.image);
    assert_eq!(code, 1);
    let disk = &v["disks"][0];
    let e = strings(&partition(disk, 5)["errors"]);
    assert!(
        e.iter().any(|m| m.starts_with(&format!(
            "partition 5: {}: ext filesystem at offset {} cannot be read by ext4-view:",
            f.image.display(),
            f.root_offset
        ))),
        "{e:?}"
    );
    // The other partitions are unaffected.
    assert_eq!(partition(disk, 1)["errors"], serde_json::json!([]));
    assert_eq!(partition(disk, 6)["errors"], serde_json::json!([]));
}

#[test]
fn unopenable_path_is_reported_and_other_disks_still_inspected() {
    let tmp = tempfile::tempdir().unwrap();
    let f = gpt_server(tmp.path());
    let missing = tmp.path().join("missing.img");
    let (v, code, _) = inspect_json(&[&missing, &f.image]);
    assert_eq!(code, 1);
    let disks = v["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 2);
    assert!(
        disks[0]["errors"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}: cannot open read-only:", missing.display()))
    );
    assert_eq!(disks[1]["table"], "gpt");
    assert_eq!(disks[1]["errors"], serde_json::json!([]));
}
