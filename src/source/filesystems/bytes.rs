//! Field access and formatting shared by the signature parsers.
//!
//! Every parser reads a fixed-size buffer whose length the code chose, then
//! picks fields at constant offsets. These helpers use `get` so that a wrong
//! offset can never panic; a field outside the buffer reads as zero, which
//! every caller treats as an invalid value.

use crate::source::device::{DeviceError, ReadAt, read_vec};

fn array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(array(b, off))
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(array(b, off))
}

pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(array(b, off))
}

pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(array(b, off))
}

pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(array(b, off))
}

pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(array(b, off))
}

pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// `N` bytes at `off` (zeros if outside the buffer).
pub(crate) fn bytes<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    array(b, off)
}

/// True if `b[off..off+magic.len()]` equals `magic`.
pub(crate) fn has_magic(b: &[u8], off: usize, magic: &[u8]) -> bool {
    off.checked_add(magic.len())
        .and_then(|end| b.get(off..end))
        .is_some_and(|s| s == magic)
}

/// A UUID in the usual 8-4-4-4-12 lower-case form (as blkid prints it);
/// `None` for the all-zero UUID, which means "not set".
pub(crate) fn uuid_string(u: &[u8; 16]) -> Option<String> {
    if u.iter().all(|&b| b == 0) {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    Some(s)
}

/// A fixed-size on-disk label: up to the first NUL, trailing blanks cut;
/// `None` if empty.
pub(crate) fn label_string(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(b.get(..end).unwrap_or_default());
    let s = s.trim_end_matches(' ');
    (!s.is_empty()).then(|| s.to_string())
}

/// Reads `len` bytes at `offset`, or `None` if the source is too small to
/// hold them: a signature that cannot fit is simply absent, while a real
/// I/O error is still an error.
pub(crate) fn read_if_fits(
    part: &dyn ReadAt,
    offset: u64,
    len: usize,
) -> Result<Option<Vec<u8>>, DeviceError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= part.size() => read_vec(part, offset, len).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_outside_the_buffer_read_as_zero() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(le32(&b, 1), 0);
        assert_eq!(be64(&b, usize::MAX), 0);
        assert!(!has_magic(&b, usize::MAX, b"x"));
    }

    #[test]
    fn uuid_and_label_formatting() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7,
        ];
        assert_eq!(
            uuid_string(&u).as_deref(),
            Some("12345678-9abc-def0-0001-020304050607")
        );
        assert_eq!(uuid_string(&[0; 16]), None);
        assert_eq!(label_string(b"ROOT\0xx").as_deref(), Some("ROOT"));
        assert_eq!(label_string(b"NO NAME    ").as_deref(), Some("NO NAME"));
        assert_eq!(label_string(b"\0\0"), None);
    }
}
