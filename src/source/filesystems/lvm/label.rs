//! The PV label: "LABELONE" in one of the first four sectors, then the PV
//! header (UUID, device size, and two zero-terminated lists of data and
//! metadata areas).

use super::LvmError;
use crate::source::device::ReadAt;
use crate::source::filesystems::bytes::{has_magic, le32, le64, read_if_fits};

pub const SECTOR: u64 = 512;
/// lvm2 looks for the label in the first four sectors only.
const LABEL_SCAN_SECTORS: u64 = 4;

/// A byte range of the PV as the PV header lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskArea {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// Byte offset of the label sector.
    pub offset: u64,
    /// pvs's spelling, 6-4-4-4-4-4-6 (the metadata writes ids the same way).
    pub uuid: String,
    /// Bytes; 0 when the header does not say.
    pub dev_size: u64,
    pub data_areas: Vec<DiskArea>,
    pub metadata_areas: Vec<DiskArea>,
}

/// pvs's spelling of a PV UUID: 32 characters grouped 6-4-4-4-4-4-6.
pub fn pv_uuid(raw: &[u8]) -> String {
    let mut s = String::with_capacity(38);
    for (i, &c) in raw.iter().take(32).enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            s.push('-');
        }
        s.push(char::from(c));
    }
    s
}

/// The label, `Ok(None)` if there is none.
pub fn find(part: &dyn ReadAt) -> Result<Option<PvLabel>, LvmError> {
    for sector in 0..LABEL_SCAN_SECTORS {
        let off = sector * SECTOR;
        #[expect(clippy::cast_possible_truncation, reason = "a 512-byte sector")]
        let Some(b) = read_if_fits(part, off, SECTOR as usize)? else {
            return Ok(None);
        };
        if !has_magic(&b, 0, b"LABELONE") || !has_magic(&b, 24, b"LVM2 001") {
            continue;
        }
        // A label copied to another sector (an image of a PV inside a PV)
        // records the sector it was written for.
        if le64(&b, 8) != sector {
            continue;
        }
        return parse(off, &b).map(Some);
    }
    Ok(None)
}

fn parse(off: u64, b: &[u8]) -> Result<PvLabel, LvmError> {
    let corrupt = |what: String| LvmError::Label { offset: off, what };
    let hdr = le32(b, 20) as usize;
    // uuid (32) + device size (8) + at least the two list terminators.
    if hdr < 32 || hdr.checked_add(72).is_none_or(|end| end > b.len()) {
        return Err(corrupt(format!(
            "PV header offset {hdr} outside the label sector"
        )));
    }
    let uuid_raw = b.get(hdr..hdr + 32).unwrap_or_default();
    if !uuid_raw.iter().all(u8::is_ascii_alphanumeric) {
        return Err(corrupt("PV UUID is not 32 alphanumeric characters".into()));
    }
    let mut pos = hdr + 40;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            if pos + 16 > b.len() {
                return Err(corrupt("PV area lists run past the label sector".into()));
            }
            let (offset, size) = (le64(b, pos), le64(b, pos + 8));
            pos += 16;
            if offset == 0 {
                break;
            }
            list.push(DiskArea { offset, size });
        }
    }
    let [data_areas, metadata_areas] = lists;
    Ok(PvLabel {
        offset: off,
        uuid: pv_uuid(uuid_raw),
        dev_size: le64(b, hdr + 32),
        data_areas,
        metadata_areas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pv_uuid_grouping() {
        assert_eq!(
            pv_uuid(b"abcdefghijklmnopqrstuvwxyz012345"),
            "abcdef-ghij-klmn-opqr-stuv-wxyz-012345"
        );
    }

    #[test]
    fn header_offset_outside_the_sector() {
        let mut b = vec![0u8; 512];
        b[20..24].copy_from_slice(&480u32.to_le_bytes());
        let e = parse(512, &b).unwrap_err().to_string();
        assert!(e.contains("offset 512") && e.contains("480"), "{e}");
    }
}
