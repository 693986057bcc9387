//! A metadata area: a 512-byte header (checksum, magic, and the location
//! of the newest metadata text), then a circular buffer holding the text.

use super::LvmError;
use super::label::DiskArea;
use crate::source::device::{ReadAt, read_vec};
use crate::source::filesystems::bytes::{has_magic, le32, le64, read_if_fits};

const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
/// The circular buffer starts after the header.
pub const MDA_HEADER_SIZE: u64 = 512;
/// Largest VG metadata text p2xen reads (lvm2's own default limit is 1 MiB
/// per copy; real ones are a few KiB).
pub const MAX_METADATA: u64 = 1 << 20;
/// raw_locn flag: this area is ignored (`pvchange --metadataignore`).
const RAW_LOCN_IGNORED: u32 = 1;

/// lvm2's calc_crc: CRC-32 (reflected 0xEDB88320) from 0xf597a6cf, with no
/// final inversion. The `crc` crate takes the initial value unreflected.
const LVM_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::Algorithm {
    width: 32,
    poly: 0x04c1_1db7,
    init: 0xf597_a6cf_u32.reverse_bits(),
    refin: true,
    refout: true,
    xorout: 0,
    check: 0,
    residue: 0,
});

pub fn lvm_crc(parts: &[&[u8]]) -> u32 {
    let mut d = LVM_CRC.digest();
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

/// The newest metadata text in `area`; `Ok(None)` when the area holds
/// none (a PV in no VG yet) or is marked ignored.
pub fn read_text(part: &dyn ReadAt, area: DiskArea) -> Result<Option<Vec<u8>>, LvmError> {
    let at = area.offset;
    let corrupt = |what: String| LvmError::Mda { offset: at, what };
    #[expect(clippy::cast_possible_truncation, reason = "a 512-byte header")]
    let Some(h) = read_if_fits(part, at, MDA_HEADER_SIZE as usize)? else {
        return Err(corrupt(
            "metadata area lies past the end of the device".into(),
        ));
    };
    if !has_magic(&h, 4, MDA_MAGIC) {
        return Err(corrupt("metadata area header has no LVM2 magic".into()));
    }
    let (stored, computed) = (le32(&h, 0), lvm_crc(&[h.get(4..).unwrap_or_default()]));
    if stored != computed {
        return Err(LvmError::Checksum {
            offset: at,
            what: "metadata area header",
            stored,
            computed,
        });
    }
    let size = area.size;
    if size <= MDA_HEADER_SIZE || at.checked_add(size).is_none_or(|end| end > part.size()) {
        return Err(corrupt(format!(
            "{size}-byte metadata area does not fit the {}-byte device",
            part.size()
        )));
    }
    // raw_locn[0]: offset of the newest text in the area, its size,
    // checksum and flags.
    let (rel, len) = (le64(&h, 40), le64(&h, 48));
    let (text_crc, flags) = (le32(&h, 56), le32(&h, 60));
    if rel == 0 || len == 0 || flags & RAW_LOCN_IGNORED != 0 {
        return Ok(None);
    }
    if len > MAX_METADATA || len > size - MDA_HEADER_SIZE || rel >= size || rel < MDA_HEADER_SIZE {
        return Err(corrupt(format!(
            "metadata text of {len} bytes at {rel} does not fit the {size}-byte area"
        )));
    }
    // The buffer is circular: text running past the area's end continues
    // right after the header.
    let first = len.min(size - rel);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "first <= len <= MAX_METADATA (1 MiB)"
    )]
    let (head_len, tail_len) = (first as usize, (len - first) as usize);
    let mut text = read_vec(part, at + rel, head_len)?;
    if first < len {
        let rest = read_vec(part, at + MDA_HEADER_SIZE, tail_len)?;
        text.extend_from_slice(&rest);
    }
    let computed = lvm_crc(&[&text]);
    if computed != text_crc {
        return Err(LvmError::Checksum {
            offset: at.saturating_add(rel),
            what: "metadata text",
            stored: text_crc,
            computed,
        });
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_lvm2() {
        // lvm2's calc_crc over no bytes is its initial value.
        assert_eq!(lvm_crc(&[]), 0xf597_a6cf);
        assert_eq!(lvm_crc(&[b"ab", b"c"]), lvm_crc(&[b"abc"]));
    }
}
