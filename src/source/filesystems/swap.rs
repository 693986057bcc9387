//! Linux swap: a one-page header ending in "SWAPSPACE2" (or the old
//! "SWAP-SPACE"). Only that page is worth copying; the rest is scratch.

use super::bytes::{bytes, has_magic, label_string, le32, read_if_fits, uuid_string};
use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::ReadAt;
use crate::source::extent::ExtentList;

/// Page sizes mkswap may have used (blkid looks at the same ones).
const PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];

struct Header {
    page_size: u64,
    version: u32,
    last_page: u32,
    uuid: Option<String>,
    label: Option<String>,
}

fn find(part: &dyn ReadAt) -> Result<Option<Header>, ProbeError> {
    for page_size in PAGE_SIZES {
        let Some(tail) = read_if_fits(part, page_size - 10, 10)? else {
            break;
        };
        let version = if has_magic(&tail, 0, b"SWAPSPACE2") {
            1
        } else if has_magic(&tail, 0, b"SWAP-SPACE") {
            0
        } else {
            continue;
        };
        if version == 0 {
            return Ok(Some(Header {
                page_size,
                version,
                last_page: 0,
                uuid: None,
                label: None,
            }));
        }
        // The v1 header (union swap_header.info) starts at byte 1024.
        let Some(h) = read_if_fits(part, 1024, 44)? else {
            continue;
        };
        if le32(&h, 0) != 1 || le32(&h, 4) == 0 {
            log::debug!(
                "{}: swap magic with bad version/last_page",
                part.name().display()
            );
            continue;
        }
        return Ok(Some(Header {
            page_size,
            version,
            last_page: le32(&h, 4),
            uuid: uuid_string(&bytes(&h, 12)),
            label: label_string(&bytes::<16>(&h, 28)),
        }));
    }
    Ok(None)
}

pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(h) = find(part)? else {
        return Ok(None);
    };
    let mut fs = Filesystem::new(FsKind::Swap);
    fs.label = h.label;
    fs.uuid = h.uuid;
    fs.size_bytes = (h.version == 1).then(|| (u64::from(h.last_page) + 1) * h.page_size);
    // The header page is all that holds data worth keeping.
    fs.used_bytes = Some(h.page_size);
    fs.details.swap_version = Some(h.version);
    fs.details.page_size = Some(h.page_size);
    fs.details.last_page = (h.version == 1).then_some(u64::from(h.last_page));
    Ok(Some(fs))
}

pub(super) fn used_extents(part: &dyn ReadAt) -> Result<Option<ExtentList>, ProbeError> {
    Ok(find(part)?.map(|h| {
        let mut l = ExtentList::new();
        l.push(0, h.page_size);
        l
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;

    #[test]
    fn v1_header_with_label_and_uuid() {
        let mut d = vec![0u8; 8192];
        d[4086..4096].copy_from_slice(b"SWAPSPACE2");
        d[1024..1028].copy_from_slice(&1u32.to_le_bytes());
        d[1028..1032].copy_from_slice(&1u32.to_le_bytes());
        d[1036] = 0xab;
        d[1052..1056].copy_from_slice(b"swp\0");
        let disk = MemDisk::new(d);
        let fs = probe(&disk).unwrap().unwrap();
        assert_eq!(fs.label.as_deref(), Some("swp"));
        assert_eq!(
            fs.uuid.as_deref(),
            Some("ab000000-0000-0000-0000-000000000000")
        );
        assert_eq!(fs.size_bytes, Some(8192));
        let ext = used_extents(&disk).unwrap().unwrap();
        assert_eq!(ext.total_bytes(), 4096);
    }
}
