//! XFS: the primary superblock ("XFSB", big-endian) at byte 0.

use super::bytes::{be16, be32, be64, bytes, has_magic, label_string, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::ReadAt;

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(b) = read_if_fits(part, 0, 512)? else {
        return Ok(None);
    };
    if !has_magic(&b, 0, b"XFSB") {
        return Ok(None);
    }
    let block_size = be32(&b, 4);
    let dblocks = be64(&b, 8);
    let agblocks = be32(&b, 84);
    let agcount = be32(&b, 88);
    let sectsize = be16(&b, 102);
    let valid = (512..=65536).contains(&block_size)
        && block_size.is_power_of_two()
        && (512..=32768).contains(&sectsize)
        && sectsize.is_power_of_two()
        && agblocks > 0
        && agcount > 0
        && dblocks > 0;
    if !valid {
        return Err(ProbeError::corrupt(
            part,
            FsKind::Xfs,
            0,
            format!(
                "absurd geometry: block size {block_size}, sector size {sectsize}, \
                 {agcount} AGs of {agblocks} blocks, {dblocks} blocks"
            ),
        ));
    }
    let mut fs = Filesystem::new(FsKind::Xfs);
    fs.uuid = uuid_string(&bytes(&b, 32));
    fs.label = label_string(&bytes::<12>(&b, 108));
    fs.size_bytes = dblocks.checked_mul(u64::from(block_size));
    // sb_fdblocks is only a lazy counter (recomputed at mount), so no
    // used_bytes: it would not be exact.
    fs.details.block_size = Some(u64::from(block_size));
    fs.details.blocks_count = Some(dblocks);
    Ok(Some(fs))
}
