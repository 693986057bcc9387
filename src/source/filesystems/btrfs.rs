//! Btrfs: the primary superblock at 64 KiB ("_BHRfS_M" at byte 64 of it).

use super::bytes::{bytes, has_magic, label_string, le32, le64, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::ReadAt;

const SUPER_OFFSET: u64 = 64 * 1024;
const LABEL: usize = 299;

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(b) = read_if_fits(part, SUPER_OFFSET, 4096)? else {
        return Ok(None);
    };
    if !has_magic(&b, 64, b"_BHRfS_M") {
        return Ok(None);
    }
    if le64(&b, 48) != SUPER_OFFSET {
        // A superblock copy that does not know it lives here is stale.
        return Ok(None);
    }
    let sectorsize = le32(&b, 144);
    if !(512..=65536).contains(&sectorsize) || !sectorsize.is_power_of_two() {
        return Err(ProbeError::corrupt(
            part,
            FsKind::Btrfs,
            SUPER_OFFSET,
            format!("absurd sector size {sectorsize}"),
        ));
    }
    let mut fs = Filesystem::new(FsKind::Btrfs);
    fs.uuid = uuid_string(&bytes(&b, 32));
    fs.label = label_string(&bytes::<256>(&b, LABEL));
    fs.size_bytes = Some(le64(&b, 112));
    // bytes_used covers all devices of the filesystem: exact only for one.
    if le64(&b, 136) == 1 {
        fs.used_bytes = Some(le64(&b, 120));
    }
    fs.details.block_size = Some(u64::from(sectorsize));
    Ok(Some(fs))
}
