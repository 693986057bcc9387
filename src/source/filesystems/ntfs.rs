//! NTFS: the boot sector ("NTFS    " OEM id) for size and serial, and the
//! $Volume MFT record (number 3) for the label.

use super::bytes::{has_magic, le16, le32, le64, read_if_fits, u8_at};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::ReadAt;

const VOLUME_RECORD: u64 = 3;
const ATTR_VOLUME_NAME: u32 = 0x60;
const ATTR_END: u32 = 0xFFFF_FFFF;
/// Fix-up stride: NTFS protects each 512-byte stretch of a record.
const FIXUP_STRIDE: usize = 512;

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(b) = read_if_fits(part, 0, 512)? else {
        return Ok(None);
    };
    if !has_magic(&b, 3, b"NTFS    ") {
        return Ok(None);
    }
    let sector = u64::from(le16(&b, 11));
    let spc_raw = u8_at(&b, 13);
    // Values above 0x80 encode 2^(256 - n) sectors per cluster.
    let spc = if spc_raw > 0x80 {
        1u64.checked_shl(256 - u32::from(spc_raw)).unwrap_or(0)
    } else {
        u64::from(spc_raw)
    };
    let cluster = sector.saturating_mul(spc);
    if !(256..=4096).contains(&sector)
        || !sector.is_power_of_two()
        || spc == 0
        || cluster > 2 * 1024 * 1024
    {
        return Err(ProbeError::corrupt(
            part,
            FsKind::Ntfs,
            0,
            format!("absurd geometry: {sector}-byte sectors, {spc} sectors per cluster"),
        ));
    }
    let mut fs = Filesystem::new(FsKind::Ntfs);
    fs.uuid = Some(format!("{:016X}", le64(&b, 72)));
    fs.size_bytes = le64(&b, 40).checked_mul(sector);
    fs.details.block_size = Some(cluster);

    let rec_raw = u8_at(&b, 64) as i8;
    let record = if rec_raw > 0 {
        u64::from(rec_raw as u8) * cluster
    } else {
        1u64.checked_shl(u32::from(rec_raw.unsigned_abs()))
            .unwrap_or(0)
    };
    fs.label = volume_label(part, le64(&b, 48), cluster, record)?;
    Ok(Some(fs))
}

/// The label from $Volume's VOLUME_NAME attribute; `None` if anything on
/// the way does not look right (the label is a nicety, not worth an error).
fn volume_label(
    part: &dyn ReadAt,
    mft_lcn: u64,
    cluster: u64,
    record: u64,
) -> Result<Option<String>, ProbeError> {
    if !(1024..=65536).contains(&record) {
        return Ok(None);
    }
    let Some(off) = mft_lcn
        .checked_mul(cluster)
        .and_then(|o| o.checked_add(VOLUME_RECORD * record))
    else {
        return Ok(None);
    };
    #[expect(clippy::cast_possible_truncation, reason = "record is 1024..=65536")]
    let Some(mut r) = read_if_fits(part, off, record as usize)? else {
        return Ok(None);
    };
    if !has_magic(&r, 0, b"FILE") || !apply_fixups(&mut r) {
        return Ok(None);
    }
    let mut pos = usize::from(le16(&r, 0x14));
    while pos.checked_add(24).is_some_and(|end| end <= r.len()) {
        let kind = le32(&r, pos);
        let len = le32(&r, pos + 4) as usize;
        if kind == ATTR_END || len < 24 {
            break;
        }
        if kind == ATTR_VOLUME_NAME && u8_at(&r, pos + 8) == 0 {
            let vlen = le32(&r, pos + 0x10) as usize;
            let voff = usize::from(le16(&r, pos + 0x14));
            let Some(v) = pos
                .checked_add(voff)
                .and_then(|s| Some((s, s.checked_add(vlen)?)))
                .and_then(|(s, e)| r.get(s..e))
            else {
                return Ok(None);
            };
            let units: Vec<u16> = v
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let s = String::from_utf16_lossy(&units);
            return Ok((!s.is_empty()).then_some(s));
        }
        pos = match pos.checked_add(len) {
            Some(p) => p,
            None => break,
        };
    }
    Ok(None)
}

/// Restores the last two bytes of each 512-byte stretch from the update
/// sequence array; false if the record is torn or the array is absurd.
fn apply_fixups(r: &mut [u8]) -> bool {
    let usa = usize::from(le16(r, 4));
    let count = usize::from(le16(r, 6));
    if count == 0 || (count - 1) * FIXUP_STRIDE > r.len() {
        return false;
    }
    let check = le16(r, usa);
    for i in 1..count {
        let end = i * FIXUP_STRIDE;
        let Some(fix) = usa.checked_add(2 * i).map(|o| le16(r, o).to_le_bytes()) else {
            return false;
        };
        match r.get_mut(end - 2..end) {
            Some(tail) if u16::from_le_bytes([tail[0], tail[1]]) == check => {
                tail.copy_from_slice(&fix);
            }
            _ => return false,
        }
    }
    true
}
