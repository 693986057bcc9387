//! Linux software RAID (md) member superblocks: 0.90 (64 KiB-aligned, near
//! the end), 1.0 (8 KiB before the end), 1.1 (at 0) and 1.2 (at 4 KiB).

use super::bytes::{bytes, label_string, le32, le64, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::ReadAt;

const MD_MAGIC: u32 = 0xa92b_4efc;
/// 0.90 reserves the last 64 KiB (aligned) of each member.
const MD0_RESERVED: u64 = 64 * 1024;
/// Bytes read for a superblock: the 0.90 one is 4 KiB; a 1.x one is 256
/// bytes plus two per possible device (at most 4 KiB in practice).
const SB_LEN: usize = 4096;

fn level_name(level: i32) -> String {
    match level {
        -1 => "linear".into(),
        -4 => "multipath".into(),
        -5 => "faulty".into(),
        n if n >= 0 => format!("raid{n}"),
        n => format!("level{n}"),
    }
}

/// mdadm's spelling: four groups of 8 hex digits separated by colons.
fn mdadm_uuid(u: &[u8; 16]) -> String {
    u.chunks(4)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

fn member(kind_version: &str) -> Filesystem {
    let mut fs = Filesystem::new(FsKind::LinuxRaidMember);
    fs.details.md_metadata = Some(kind_version.to_string());
    fs
}

fn probe_090(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let size = part.size();
    if size <= MD0_RESERVED {
        return Ok(None);
    }
    let off = (size & !(MD0_RESERVED - 1)) - MD0_RESERVED;
    let Some(b) = read_if_fits(part, off, SB_LEN)? else {
        return Ok(None);
    };
    if le32(&b, 0) != MD_MAGIC || le32(&b, 4) != 0 {
        return Ok(None);
    }
    // The UUID is four host-order (little-endian) words; both blkid and
    // mdadm print each word as a big-endian hex number.
    let mut uuid = [0u8; 16];
    for (i, off) in [20usize, 52, 56, 60].into_iter().enumerate() {
        uuid[i * 4..i * 4 + 4].copy_from_slice(&le32(&b, off).to_be_bytes());
    }
    let mut fs = member("0.90");
    fs.uuid = uuid_string(&uuid);
    fs.details.md_array_uuid = Some(mdadm_uuid(&uuid));
    fs.details.md_level = Some(level_name(le32(&b, 28) as i32));
    fs.details.md_raid_disks = Some(le32(&b, 40));
    // this_disk descriptor at word 992: number, major, minor, raid_disk, state.
    let raid_disk = le32(&b, 3968 + 12);
    let state = le32(&b, 3968 + 16);
    fs.details.md_role = Some(if state & 1 != 0 {
        "faulty".into()
    } else if state & 0b110 != 0 {
        raid_disk.to_string()
    } else {
        "spare".into()
    });
    Ok(Some(fs))
}

fn probe_1x(part: &dyn ReadAt, off: u64, version: &str) -> Result<Option<Filesystem>, ProbeError> {
    let Some(b) = read_if_fits(part, off, SB_LEN)? else {
        return Ok(None);
    };
    if le32(&b, 0) != MD_MAGIC || le32(&b, 4) != 1 {
        return Ok(None);
    }
    // A 1.x superblock records where it lives; a copy found elsewhere (an
    // array inside an array, a stale image) is not this device's.
    if le64(&b, 144) != off / 512 {
        return Ok(None);
    }
    let set_uuid: [u8; 16] = bytes(&b, 16);
    let mut fs = member(version);
    fs.uuid = uuid_string(&set_uuid);
    fs.label = label_string(&bytes::<32>(&b, 32));
    fs.details.md_array_uuid = Some(mdadm_uuid(&set_uuid));
    fs.details.md_device_uuid = uuid_string(&bytes(&b, 168));
    fs.details.md_level = Some(level_name(le32(&b, 72) as i32));
    fs.details.md_raid_disks = Some(le32(&b, 92));
    fs.size_bytes = le64(&b, 136).checked_mul(512);
    let dev_number = le32(&b, 160);
    let max_dev = le32(&b, 220);
    let role_off = (dev_number < max_dev)
        .then(|| 256usize.checked_add((dev_number as usize).checked_mul(2)?))
        .flatten()
        .filter(|&o| o + 2 <= SB_LEN);
    fs.details.md_role = match role_off.map(|o| super::bytes::le16(&b, o)) {
        Some(0xffff) => Some("spare".into()),
        Some(0xfffe) => Some("faulty".into()),
        Some(n) => Some(n.to_string()),
        None => {
            return Err(ProbeError::corrupt(
                part,
                FsKind::LinuxRaidMember,
                off,
                format!("md {version} device number {dev_number} is not below max_dev {max_dev}"),
            ));
        }
    };
    Ok(Some(fs))
}

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    if let Some(fs) = probe_090(part)? {
        return Ok(Some(fs));
    }
    let size = part.size();
    if size > MD0_RESERVED {
        let off = (size & !4095) - 8192;
        if let Some(fs) = probe_1x(part, off, "1.0")? {
            return Ok(Some(fs));
        }
    }
    if let Some(fs) = probe_1x(part, 0, "1.1")? {
        return Ok(Some(fs));
    }
    probe_1x(part, 4096, "1.2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(level_name(1), "raid1");
        assert_eq!(level_name(-1), "linear");
        let u: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(mdadm_uuid(&u), "00010203:04050607:08090a0b:0c0d0e0f");
    }
}
