//! LVM2 physical volumes: the "LABELONE" label in one of the first four
//! sectors, the PV header after it, and the VG name from the newest text
//! metadata in the first metadata area.

use super::bytes::{has_magic, le32, le64, read_if_fits};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::{ReadAt, read_vec};

const SECTOR: u64 = 512;
const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
/// The metadata area's circular buffer starts after its 512-byte header.
const MDA_HEADER_SIZE: u64 = 512;
/// Largest VG metadata text p2xen reads (lvm2's own default limit is 1 MiB
/// per copy; real ones are a few KiB).
const MAX_METADATA: u64 = 1 << 20;

/// pvs's spelling of a PV UUID: 32 characters grouped 6-4-4-4-4-4-6.
fn pv_uuid(raw: &[u8]) -> String {
    let mut s = String::with_capacity(38);
    for (i, &c) in raw.iter().take(32).enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            s.push('-');
        }
        s.push(char::from(c));
    }
    s
}

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    for sector in 0..4u64 {
        let off = sector * SECTOR;
        let Some(b) = read_if_fits(part, off, SECTOR as usize)? else {
            return Ok(None);
        };
        if !has_magic(&b, 0, b"LABELONE") || !has_magic(&b, 24, b"LVM2 001") {
            continue;
        }
        if le64(&b, 8) != sector {
            continue;
        }
        return parse_label(part, off, &b).map(Some);
    }
    Ok(None)
}

fn parse_label(part: &dyn ReadAt, off: u64, b: &[u8]) -> Result<Filesystem, ProbeError> {
    let corrupt = |what: String| ProbeError::corrupt(part, FsKind::Lvm2Pv, off, what);
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
    let mut fs = Filesystem::new(FsKind::Lvm2Pv);
    fs.uuid = Some(pv_uuid(uuid_raw));
    fs.size_bytes = Some(le64(b, hdr + 32)).filter(|&n| n > 0);

    // Two zero-terminated lists of (offset, size): data areas, then metadata areas.
    let mut pos = hdr + 40;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            if pos + 16 > b.len() {
                return Err(corrupt("PV area lists run past the label sector".into()));
            }
            let (o, s) = (le64(b, pos), le64(b, pos + 8));
            pos += 16;
            if o == 0 {
                break;
            }
            list.push((o, s));
        }
    }
    if let Some(&(mda_off, mda_size)) = lists[1].first() {
        fs.details.vg_name = vg_name(part, mda_off, mda_size)?;
    }
    Ok(fs)
}

/// The VG name from the newest metadata in the area at `mda_off`; `None`
/// if the PV belongs to no VG yet (an empty area).
fn vg_name(part: &dyn ReadAt, mda_off: u64, mda_size: u64) -> Result<Option<String>, ProbeError> {
    let corrupt = |what: String| ProbeError::corrupt(part, FsKind::Lvm2Pv, mda_off, what);
    let Some(h) = read_if_fits(part, mda_off, MDA_HEADER_SIZE as usize)? else {
        return Err(corrupt(
            "metadata area lies past the end of the device".into(),
        ));
    };
    if !has_magic(&h, 4, MDA_MAGIC) {
        return Err(corrupt("metadata area header has no LVM2 magic".into()));
    }
    // raw_locn[0]: offset of the newest metadata in the buffer, its size.
    let (rel, len) = (le64(&h, 40), le64(&h, 48));
    if rel == 0 || len == 0 {
        return Ok(None);
    }
    if len > MAX_METADATA || rel >= mda_size || rel < MDA_HEADER_SIZE || mda_size > part.size() {
        return Err(corrupt(format!(
            "metadata text of {len} bytes at {rel} does not fit the {mda_size}-byte area"
        )));
    }
    // The buffer is circular: text running past the area's end continues
    // right after the header.
    let first = len.min(mda_size - rel);
    let mut text = read_vec(part, mda_off + rel, first as usize)?;
    if first < len {
        let rest = read_vec(part, mda_off + MDA_HEADER_SIZE, (len - first) as usize)?;
        text.extend_from_slice(&rest);
    }
    let text = String::from_utf8_lossy(&text);
    let name = text.split(" {").next().unwrap_or_default().trim();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    if !valid {
        return Err(corrupt(
            "metadata text does not start with a VG name".into(),
        ));
    }
    Ok(Some(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;

    /// A PV whose metadata area (at 4 KiB, 8 KiB long) holds `text` at
    /// `rel` bytes into the area, wrapping past its end if it must.
    fn pv(text: &[u8], rel: u64) -> MemDisk {
        let mut d = vec![0u8; 64 * 1024];
        let put = |d: &mut Vec<u8>, o: usize, v: &[u8]| d[o..o + v.len()].copy_from_slice(v);
        put(&mut d, 512, b"LABELONE");
        put(&mut d, 512 + 8, &1u64.to_le_bytes());
        put(&mut d, 512 + 20, &32u32.to_le_bytes());
        put(&mut d, 512 + 24, b"LVM2 001");
        put(&mut d, 512 + 32, b"abcdefghijklmnopqrstuvwxyz012345");
        put(&mut d, 512 + 64, &(64u64 * 1024).to_le_bytes());
        // data area list: one area, then the terminator
        put(&mut d, 512 + 72, &(1u64 << 20).to_le_bytes());
        // metadata area list: (4096, 8192), then the terminator
        put(&mut d, 512 + 104, &4096u64.to_le_bytes());
        put(&mut d, 512 + 112, &8192u64.to_le_bytes());
        put(&mut d, 4096 + 4, MDA_MAGIC);
        put(&mut d, 4096 + 40, &rel.to_le_bytes());
        put(&mut d, 4096 + 48, &(text.len() as u64).to_le_bytes());
        let first = text.len().min(8192usize.saturating_sub(rel as usize));
        if first > 0 {
            put(&mut d, 4096 + rel as usize, &text[..first]);
        }
        put(&mut d, 4096 + 512, &text[first..]);
        MemDisk::new(d)
    }

    #[test]
    fn vg_name_from_plain_and_wrapped_metadata() {
        let text = b"vg_root {\nid = \"x\"\n}\n";
        for rel in [512u64, 8192 - 4] {
            let fs = probe(&pv(text, rel)).unwrap().unwrap();
            assert_eq!(
                fs.uuid.as_deref(),
                Some("abcdef-ghij-klmn-opqr-stuv-wxyz-012345")
            );
            assert_eq!(fs.details.vg_name.as_deref(), Some("vg_root"), "rel {rel}");
            assert_eq!(fs.size_bytes, Some(64 * 1024));
        }
        let e = probe(&pv(text, 9000)).unwrap_err().to_string();
        assert!(
            e.contains("lvm2_pv header at offset 4096: metadata text"),
            "{e}"
        );
    }

    #[test]
    fn pv_uuid_grouping() {
        assert_eq!(
            pv_uuid(b"abcdefghijklmnopqrstuvwxyz012345"),
            "abcdef-ghij-klmn-opqr-stuv-wxyz-012345"
        );
    }
}
