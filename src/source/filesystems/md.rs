//! Linux software RAID (md) member superblocks: 0.90 (64 KiB-aligned, near
//! the end), 1.0 (8 KiB before the end), 1.1 (at 0) and 1.2 (at 4 KiB).

use std::path::{Path, PathBuf};

use super::bytes::{bytes, label_string, le16, le32, le64, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::{DeviceError, ReadAt};

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
    fs.details.md_data_offset = Some(0);
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
    fs.details.md_data_offset = le64(&b, 128).checked_mul(512);
    let role_off = (dev_number < max_dev)
        .then(|| 256usize.checked_add((dev_number as usize).checked_mul(2)?))
        .flatten()
        .filter(|&o| o + 2 <= SB_LEN);
    fs.details.md_role = match role_off.map(|o| le16(&b, o)) {
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

/// 1.x feature bit: a reshape is under way, so the data is in two layouts.
pub const MD_FEATURE_RESHAPE_ACTIVE: u32 = 4;
/// 0.90 keeps its checksum in word 38.
const SB0_CSUM_OFF: usize = 152;
const SB1_CSUM_OFF: usize = 216;

/// Where the array's data lies inside one member: what a RAID1 member is
/// reduced to when the array is flattened into a plain partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdData {
    /// Byte offset of the array's first byte in the member.
    pub offset: u64,
    /// The array's size in bytes (what the filesystem inside may use).
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MdDataError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{path}: no md superblock")]
    NoSuperblock { path: PathBuf },
    #[error(
        "{path}: md {version} superblock at byte {offset}: checksum {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        path: PathBuf,
        version: &'static str,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: md superblock at byte {offset}: a reshape is in progress")]
    Reshape { path: PathBuf, offset: u64 },
    #[error("{path}: md superblock at byte {offset}: level {level} is not a mirror (raid1)")]
    NotMirror {
        path: PathBuf,
        offset: u64,
        level: String,
    },
    #[error(
        "{path}: md superblock at byte {offset}: data of {len} bytes at byte {data_offset} does not fit \
         the member ({size} bytes, superblock excluded)"
    )]
    DataOutside {
        path: PathBuf,
        offset: u64,
        data_offset: u64,
        len: u64,
        size: u64,
    },
}

/// mdadm's and the kernel's superblock checksum: the sum of the
/// little-endian words (a trailing half word added as such), folded to 32
/// bits, with the checksum field itself read as zero.
pub fn superblock_csum(sb: &[u8], csum_off: usize) -> u32 {
    let mut sum = 0u64;
    let mut words = sb.chunks_exact(4);
    for (i, w) in words.by_ref().enumerate() {
        if i.checked_mul(4) != Some(csum_off) {
            sum += u64::from(le32(w, 0));
        }
    }
    if let [a, b] = words.remainder() {
        sum += u64::from(u16::from_le_bytes([*a, *b]));
    }
    let folded = (sum & 0xffff_ffff) + (sum >> 32);
    // A u32 plus at most 2^32 - 1 folds into 33 bits; the kernel keeps the low 32.
    (folded & 0xffff_ffff) as u32
}

/// A member's superblock, read again and its checksum checked: what the
/// array's data is located by. Sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdSuper {
    pub version: &'static str,
    /// Byte offset of the superblock in the member.
    pub sb_offset: u64,
    pub level: i32,
    pub layout: u32,
    /// Chunk size in bytes (0 for RAID1).
    pub chunk: u64,
    pub raid_disks: u32,
    /// This member's active slot; `None` for a spare or faulty one.
    pub role: Option<u32>,
    pub events: u64,
    /// Where the data area starts in the member.
    pub data_offset: u64,
    /// The member's data area (1.x `data_size`; 0.90: up to the superblock).
    pub data_len: u64,
    /// The array's size on each member (1.x `size`, 0.90 word 8): what
    /// mirrors and RAID10 use of the data area.
    pub dev_size: u64,
    /// 1.x feature bits (reshape, recovery offset); 0 for 0.90.
    pub features: u32,
    /// Shut down cleanly (1.x `resync_offset` all ones; 0.90 state bit
    /// "clean"): the parity of a RAID5/6 matches its data.
    pub clean: bool,
}

/// 1.x feature bit: the member is being rebuilt; only part of it is valid.
pub const MD_FEATURE_RECOVERY_OFFSET: u32 = 2;

/// Reads and checks the superblock of the md member `fs` (as [`probe`]
/// found it) in `part`. Bytes that are to be moved are never placed on an
/// unverified word.
pub fn read_super(part: &dyn ReadAt, fs: &Filesystem) -> Result<MdSuper, MdDataError> {
    let size = part.size();
    let path = || part.name().to_path_buf();
    let version = match fs.details.md_metadata.as_deref() {
        Some("0.90") => "0.90",
        Some("1.0") => "1.0",
        Some("1.1") => "1.1",
        Some("1.2") => "1.2",
        _ => return Err(MdDataError::NoSuperblock { path: path() }),
    };
    let sb_off = match version {
        "0.90" if size > MD0_RESERVED => (size & !(MD0_RESERVED - 1)) - MD0_RESERVED,
        "1.0" if size > MD0_RESERVED => (size & !4095) - 8192,
        "1.1" => 0,
        "1.2" => 4096,
        _ => return Err(MdDataError::NoSuperblock { path: path() }),
    };
    let Some(b) = read_if_fits(part, sb_off, SB_LEN)? else {
        return Err(MdDataError::NoSuperblock { path: path() });
    };
    let major = if version == "0.90" { 0 } else { 1 };
    if le32(&b, 0) != MD_MAGIC || le32(&b, 4) != major {
        return Err(MdDataError::NoSuperblock { path: path() });
    }
    let (sb_len, csum_off) = if major == 0 {
        (SB_LEN, SB0_CSUM_OFF)
    } else {
        let max_dev = usize::try_from(le32(&b, 220)).unwrap_or(usize::MAX);
        let len = max_dev
            .checked_mul(2)
            .and_then(|n| n.checked_add(256))
            .filter(|&n| n <= SB_LEN)
            .unwrap_or(SB_LEN);
        (len, SB1_CSUM_OFF)
    };
    let stored = le32(&b, csum_off);
    let computed = superblock_csum(&b[..sb_len], csum_off);
    if stored != computed {
        return Err(MdDataError::Checksum {
            path: path(),
            version,
            offset: sb_off,
            stored,
            computed,
        });
    }
    let role = fs
        .details
        .md_role
        .as_deref()
        .and_then(|r| r.parse::<u32>().ok());
    Ok(if major == 0 {
        MdSuper {
            version,
            sb_offset: sb_off,
            level: le32(&b, 28) as i32,
            // The personality section starts at word 64: layout, chunk_size (bytes).
            layout: le32(&b, 256),
            chunk: u64::from(le32(&b, 260)),
            raid_disks: le32(&b, 40),
            role,
            events: (u64::from(le32(&b, 156)) << 32) | u64::from(le32(&b, 160)),
            data_offset: 0,
            data_len: sb_off,
            dev_size: u64::from(le32(&b, 32)) * 1024,
            features: 0,
            clean: le32(&b, 132) & 1 != 0,
        }
    } else {
        let sectors = |o: usize| le64(&b, o).saturating_mul(512);
        MdSuper {
            version,
            sb_offset: sb_off,
            level: le32(&b, 72) as i32,
            layout: le32(&b, 76),
            chunk: u64::from(le32(&b, 88)) * 512,
            raid_disks: le32(&b, 92),
            role,
            events: le64(&b, 200),
            data_offset: sectors(128),
            data_len: sectors(136),
            dev_size: sectors(80),
            features: le32(&b, 8),
            clean: le64(&b, 208) == u64::MAX,
        }
    })
}

impl MdSuper {
    /// The member's data area: `len` bytes from `data_offset`, checked to
    /// lie inside the member of `size` bytes and clear of the superblock.
    pub fn data_area(&self, path: &Path, size: u64, len: u64) -> Result<MdData, MdDataError> {
        let outside = || MdDataError::DataOutside {
            path: path.to_path_buf(),
            offset: self.sb_offset,
            data_offset: self.data_offset,
            len,
            size,
        };
        // 1.0 and 0.90 put the superblock after the data; 1.1/1.2 before it.
        let limit = match self.version {
            "0.90" | "1.0" => self.sb_offset,
            _ if self.data_offset < self.sb_offset + 512 => return Err(outside()),
            _ => size,
        };
        match self.data_offset.checked_add(len) {
            Some(end) if len > 0 && end <= limit => Ok(MdData {
                offset: self.data_offset,
                len,
            }),
            _ => Err(outside()),
        }
    }

    pub fn level_name(&self) -> String {
        level_name(self.level)
    }
}

/// Where the data of the RAID1 member `fs` (as [`probe`] found it) lies in
/// `part`.
pub fn mirror_data(part: &dyn ReadAt, fs: &Filesystem) -> Result<MdData, MdDataError> {
    let sb = read_super(part, fs)?;
    let path = part.name().to_path_buf();
    if sb.level != 1 {
        return Err(MdDataError::NotMirror {
            path,
            offset: sb.sb_offset,
            level: level_name(sb.level),
        });
    }
    let len = if sb.version == "0.90" {
        sb.dev_size
    } else {
        if sb.features & MD_FEATURE_RESHAPE_ACTIVE != 0 {
            return Err(MdDataError::Reshape {
                path,
                offset: sb.sb_offset,
            });
        }
        // `size` (word 20) is the array's; data_size may be larger.
        if sb.dev_size != 0 && sb.dev_size <= sb.data_len {
            sb.dev_size
        } else {
            sb.data_len
        }
    };
    sb.data_area(&path, part.size(), len)
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
