//! Is the server sending now the one whose copy the receiver holds? A
//! cutover pass rewrites an existing copy in place, so it must never run
//! against another server's disks that happen to share a migration name.
//!
//! The identity of a disk is what a reboot or a day of service does not
//! change: its size, its partition table (type, disk id, every partition's
//! place and type) and the UUIDs of the filesystems and volumes on it. File
//! contents, mount counts and free space may all differ: that is what the
//! cutover sends.

use super::machine::MachineDescription;
use crate::source::filesystems::Filesystem;
use crate::source::inspect::DiskReport;

/// Why `new` is not the machine `old` describes, or cannot be shown to be;
/// empty when every disk matches.
pub fn differences(old: &MachineDescription, new: &MachineDescription) -> Vec<String> {
    if old.disks.len() != new.disks.len() {
        return vec![format!(
            "the copy has {} disk(s), this server sends {}",
            old.disks.len(),
            new.disks.len()
        )];
    }
    let mut out = Vec::new();
    for (i, (a, b)) in old.disks.iter().zip(&new.disks).enumerate() {
        disk_differences(i, a, b, &mut out);
    }
    out
}

fn disk_differences(i: usize, a: &DiskReport, b: &DiskReport, out: &mut Vec<String>) {
    let mut differ = |what: &str, was: &dyn std::fmt::Debug, now: &dyn std::fmt::Debug| {
        out.push(format!("disk {i}: {what} was {was:?}, now {now:?}"));
    };
    if a.size_bytes != b.size_bytes {
        differ("size in bytes", &a.size_bytes, &b.size_bytes);
    }
    if a.table != b.table {
        differ("partition table", &a.table, &b.table);
    }
    if a.disk_id != b.disk_id {
        differ("disk id", &a.disk_id, &b.disk_id);
    }
    let places = |d: &DiskReport| -> Vec<(u32, u64, u64, String)> {
        d.partitions
            .iter()
            .map(|p| (p.number, p.start_bytes, p.size_bytes, p.type_id.clone()))
            .collect()
    };
    if places(a) != places(b) {
        differ(
            "partitions (number, start, size, type)",
            &places(a),
            &places(b),
        );
    }
    let ids = |d: &DiskReport| -> Vec<Option<String>> {
        std::iter::once(&d.filesystem)
            .chain(d.partitions.iter().map(|p| &p.filesystem))
            .map(|f| f.as_ref().and_then(fs_id))
            .collect()
    };
    if ids(a) != ids(b) {
        differ("filesystem UUIDs", &ids(a), &ids(b));
    }
    // Without a table or a filesystem UUID there is nothing to tell two
    // disks of the same size apart: better no cutover than a wrong one.
    if out.is_empty() && ids(a).iter().all(Option::is_none) && a.partitions.is_empty() {
        out.push(format!(
            "disk {i}: it has neither a partition table nor a filesystem UUID to recognise it by"
        ));
    }
}

/// A filesystem's own identity: its kind and UUID (an md member's array,
/// an LVM PV's VG when the PV has no UUID of its own).
fn fs_id(f: &Filesystem) -> Option<String> {
    let id = f
        .uuid
        .clone()
        .or_else(|| f.details.md_array_uuid.clone())
        .or_else(|| f.details.vg_uuid.clone())?;
    Some(format!("{} {id}", f.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::inspect::PartitionReport;

    fn machine(uuid: &str, start: u64) -> MachineDescription {
        let fs: Filesystem = serde_json::from_value(serde_json::json!({
            "type": "ext4", "label": null, "uuid": uuid, "size_bytes": null,
            "used_bytes": null, "state": null
        }))
        .unwrap();
        let part = PartitionReport {
            number: 1,
            start_bytes: start,
            size_bytes: 1 << 30,
            type_id: "83".into(),
            filesystem: Some(fs),
            ..PartitionReport::default()
        };
        MachineDescription {
            disks: vec![DiskReport {
                size_bytes: 2 << 30,
                table: "mbr".into(),
                disk_id: Some("0x1234abcd".into()),
                partitions: vec![part],
                ..DiskReport::default()
            }],
            ..MachineDescription::default()
        }
    }

    #[test]
    fn the_same_server_later_matches_and_another_does_not() {
        let a = machine("1111", 1 << 20);
        let mut later = a.clone();
        // What a day of service changes is not identity.
        later.hostname = Some("renamed".into());
        if let Some(f) = later.disks[0].partitions[0].filesystem.as_mut() {
            f.used_bytes = Some(12345);
            f.state = Some("not_clean".into());
        }
        assert!(differences(&a, &later).is_empty());
        let other = machine("2222", 1 << 20);
        let d = differences(&a, &other);
        assert!(
            d[0].contains("filesystem UUIDs") && d[0].contains("2222"),
            "{d:?}"
        );
        let moved = machine("1111", 2 << 20);
        assert!(differences(&a, &moved)[0].contains("partitions"));
        let mut two = a.clone();
        two.disks.push(DiskReport::default());
        assert!(differences(&a, &two)[0].contains("1 disk(s)"));
    }

    #[test]
    fn a_disk_without_anything_to_recognise_never_matches() {
        let blank = MachineDescription {
            disks: vec![DiskReport {
                size_bytes: 8192,
                table: "none".into(),
                ..DiskReport::default()
            }],
            ..MachineDescription::default()
        };
        let d = differences(&blank, &blank);
        assert!(
            d[0].contains("nothing") || d[0].contains("neither"),
            "{d:?}"
        );
    }
}
