//! md RAID1 members: the copy of one mirror half is a plain filesystem with
//! an md superblock at its end (metadata 0.90 and 1.0). Zeroing that
//! superblock (`mdadm --zero-superblock` without needing mdadm or the md
//! driver in dom0) lets the guest mount the filesystem directly; the array is
//! then dropped from mdadm.conf so the guest does not wait for it.
//!
//! Metadata 1.1/1.2 put the superblock before the data, which then starts at
//! an offset: zeroing would not make a plain filesystem, so it is reported
//! and left alone.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::FixupKind;
use super::change::{Planned, edit, map_lines};
use super::guestfs::{GuestFs, GuestFsError};

const MD_MAGIC: u32 = 0xa92b_4efc;
const SB_ZERO_LEN: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdVersion {
    V090,
    V10,
    V11,
    V12,
}

impl MdVersion {
    pub fn name(self) -> &'static str {
        match self {
            MdVersion::V090 => "0.90",
            MdVersion::V10 => "1.0",
            MdVersion::V11 => "1.1",
            MdVersion::V12 => "1.2",
        }
    }
    /// The filesystem starts at the member's first byte.
    pub fn data_at_start(self) -> bool {
        matches!(self, MdVersion::V090 | MdVersion::V10)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("{path}: md superblock at byte {offset}: {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
}

/// Where each metadata version keeps its superblock in a member of `size` bytes.
fn candidates(size: u64) -> Vec<(MdVersion, u64)> {
    let mut v = vec![(MdVersion::V11, 0), (MdVersion::V12, 4096)];
    if size >= 0x10000 {
        v.push((MdVersion::V090, (size & !0xffff) - 0x10000));
    }
    if size >= 8192 {
        v.push((MdVersion::V10, (size - 8192) & !4095));
    }
    v
}

/// Finds the superblock in the member at `start..start+size` of `image`.
/// Returns the version and its absolute offset in the image.
pub fn find_superblock(
    image: &Path,
    start: u64,
    size: u64,
) -> Result<Option<(MdVersion, u64)>, MdError> {
    let f = std::fs::File::open(image).map_err(|source| MdError::Io {
        path: image.to_path_buf(),
        offset: start,
        source,
    })?;
    for (ver, rel) in candidates(size) {
        let Some(abs) = start.checked_add(rel) else {
            continue;
        };
        let mut b = [0u8; 8];
        if f.read_exact_at(&mut b, abs).is_err() {
            continue;
        }
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let major = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let ok = match ver {
            MdVersion::V090 => major == 0,
            _ => major == 1,
        };
        if magic == MD_MAGIC && ok {
            return Ok(Some((ver, abs)));
        }
    }
    Ok(None)
}

/// The RAID level the superblock of `ver` at `abs` of `image` records (1
/// for RAID1, 0, 5, 6, 10; -1 linear). `None`: the image is too short.
pub fn superblock_level(image: &Path, abs: u64, ver: MdVersion) -> Result<Option<i32>, MdError> {
    let io = |source| MdError::Io {
        path: image.to_path_buf(),
        offset: abs,
        source,
    };
    let f = std::fs::File::open(image).map_err(io)?;
    // 0.90: word 7 of the generic constant part; 1.x: byte 72.
    let at = abs + if ver == MdVersion::V090 { 28 } else { 72 };
    let mut b = [0u8; 4];
    match f.read_exact_at(&mut b, at) {
        Ok(()) => Ok(Some(i32::from_le_bytes(b))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// Zeroes the superblock at `abs` (4 KiB, clipped to the member's end).
pub fn zero_superblock(image: &Path, abs: u64, member_end: u64) -> Result<(), MdError> {
    let io = |source| MdError::Io {
        path: image.to_path_buf(),
        offset: abs,
        source,
    };
    let len = SB_ZERO_LEN.min(member_end.saturating_sub(abs));
    let f = OpenOptions::new().write(true).open(image).map_err(io)?;
    let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
    f.write_all_at(&zeros, abs).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Comments out the ARRAY lines (and their continuation lines) of mdadm.conf.
pub fn plan_mdadm_conf(gfs: &GuestFs) -> Result<Vec<Planned>, GuestFsError> {
    let mut out = Vec::new();
    for path in ["/etc/mdadm/mdadm.conf", "/etc/mdadm.conf"] {
        if let Some(old) = gfs.read(path)? {
            let mut in_array = false;
            let new = map_lines(&old, |l| {
                let cont = in_array && l.starts_with(char::is_whitespace) && !l.trim().is_empty();
                in_array = l.trim_start().starts_with("ARRAY") || cont;
                if in_array && !l.trim_start().starts_with('#') {
                    format!("# p2xen: array flattened into a plain disk: {l}")
                } else {
                    l.to_string()
                }
            });
            out.extend(edit(
                FixupKind::MdRaid,
                path,
                &old,
                new,
                "array no longer exists: its mirror half is now a plain Xen disk",
            ));
        }
    }
    Ok(out)
}

/// An ARRAY line of mdadm.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfArray {
    /// The md device name (`md0`; `/dev/md/0` also reads `md0`).
    pub name: String,
    /// Its `UUID=`, lower case, if the line has one.
    pub uuid: Option<String>,
}

/// The ARRAY lines of mdadm.conf, in file order.
pub fn arrays(gfs: &GuestFs) -> Result<Vec<ConfArray>, GuestFsError> {
    let mut v = Vec::new();
    for path in ["/etc/mdadm/mdadm.conf", "/etc/mdadm.conf"] {
        if let Some(text) = gfs.read(path)? {
            v.extend(conf_arrays(&text));
        }
    }
    Ok(v)
}

fn conf_arrays(text: &str) -> Vec<ConfArray> {
    let mut v: Vec<ConfArray> = Vec::new();
    let mut in_array = false;
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let first = w.next();
        // A line starting with white space continues the ARRAY line above.
        let cont = in_array && l.starts_with(char::is_whitespace) && first.is_some();
        in_array = first == Some("ARRAY") || cont;
        let words: Vec<&str> = if first == Some("ARRAY") {
            let Some(dev) = w.next() else { continue };
            let name = dev.trim_start_matches("/dev/").replace("md/", "md");
            v.push(ConfArray { name, uuid: None });
            w.collect()
        } else if cont {
            l.split_whitespace().collect()
        } else {
            continue;
        };
        let uuid = words
            .iter()
            .find_map(|t| t.strip_prefix("UUID=").or_else(|| t.strip_prefix("uuid=")));
        if let (Some(u), Some(a)) = (uuid, v.last_mut()) {
            a.uuid = Some(u.to_ascii_lowercase());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_lines_with_their_uuids() {
        let conf = "DEVICE partitions\nARRAY /dev/md/0 metadata=1.2 name=h:0\n   UUID=3A1F229C:445d6e70:8192a3b4:c5d6e7f8\n\
                    ARRAY /dev/md1 UUID=aa:bb:cc:dd devices=/dev/sda2\nMAILADDR root\n  UUID=ee\n";
        assert_eq!(
            conf_arrays(conf),
            vec![
                ConfArray {
                    name: "md0".into(),
                    uuid: Some("3a1f229c:445d6e70:8192a3b4:c5d6e7f8".into())
                },
                ConfArray {
                    name: "md1".into(),
                    uuid: Some("aa:bb:cc:dd".into())
                },
            ]
        );
    }

    #[test]
    fn superblock_offsets() {
        let size = 100 * 1024 * 1024 + 512;
        let c = candidates(size);
        assert!(c.contains(&(MdVersion::V090, 100 * 1024 * 1024 - 65536)));
        assert!(c.contains(&(MdVersion::V10, 100 * 1024 * 1024 - 8192)));
        assert_eq!(candidates(100).len(), 2);
    }
}
