//! What an initrd holds: the names of its files. An initrd is a newc cpio
//! archive, possibly preceded by uncompressed ones (early microcode) and
//! compressed as a whole with gzip, xz or zstd. The `cpio` crate reads the
//! archives; this module only walks the concatenation, which no crate does.

use std::io::{Cursor, Read};

/// Largest initrd read: real ones are tens of MiB.
pub const MAX_INITRD_BYTES: u64 = 512 * 1024 * 1024;
/// Bound on what the decompressor may produce.
const MAX_UNPACKED_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Bound on the number of entries (a kernel's module tree is ~6000 files).
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error("initrd at byte {offset}: {what}")]
    Format { offset: usize, what: String },
    #[error("initrd at byte {offset}: {compression} compression is not supported here")]
    Unsupported {
        offset: usize,
        compression: &'static str,
    },
}

/// All file names in an initrd image.
pub fn list_names(data: &[u8]) -> Result<Vec<String>, InitrdError> {
    let mut names = Vec::new();
    let mut pos = 0usize;
    loop {
        // Archives are padded with zeros to a 512-byte or 4-byte boundary.
        while data.get(pos) == Some(&0) {
            pos += 1;
        }
        let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) else {
            return Ok(names);
        };
        if rest.starts_with(b"0707") {
            let mut cur = Cursor::new(rest);
            read_archive(&mut cur, &mut names).map_err(|e| InitrdError::Format {
                offset: pos,
                what: e.to_string(),
            })?;
            let used = usize::try_from(cur.position()).unwrap_or(rest.len());
            pos = pos.saturating_add(used.max(1));
            continue;
        }
        let fmt = |e: std::io::Error| InitrdError::Format {
            offset: pos,
            what: e.to_string(),
        };
        if rest.starts_with(&[0x1f, 0x8b]) {
            let r = flate2::read::MultiGzDecoder::new(rest).take(MAX_UNPACKED_BYTES);
            read_archives(r, &mut names).map_err(fmt)?;
        } else if rest.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            let r = xz2::read::XzDecoder::new_multi_decoder(rest).take(MAX_UNPACKED_BYTES);
            read_archives(r, &mut names).map_err(fmt)?;
        } else if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let r = zstd::stream::read::Decoder::new(rest)
                .map_err(fmt)?
                .take(MAX_UNPACKED_BYTES);
            read_archives(r, &mut names).map_err(fmt)?;
        } else {
            let compression = if rest.starts_with(b"BZh") {
                "bzip2"
            } else if rest.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
                "lz4"
            } else if rest.starts_with(&[0x5d, 0, 0]) {
                "lzma"
            } else {
                return Err(InitrdError::Format {
                    offset: pos,
                    what: "neither a cpio archive nor gzip/xz/zstd data".to_string(),
                });
            };
            return Err(InitrdError::Unsupported {
                offset: pos,
                compression,
            });
        }
        // The compressed archive is the last part of an initrd.
        return Ok(names);
    }
}

/// Reads one archive up to its trailer.
fn read_archive<R: Read>(mut r: R, names: &mut Vec<String>) -> std::io::Result<R> {
    loop {
        let entry = cpio::newc::Reader::new(r)?;
        if entry.entry().is_trailer() {
            return entry.finish();
        }
        if names.len() >= MAX_ENTRIES {
            return Err(std::io::Error::other("too many entries"));
        }
        names.push(entry.entry().name().to_string());
        r = entry.finish()?;
    }
}

/// Reads the archive(s) in a decompressed stream.
fn read_archives<R: Read>(r: R, names: &mut Vec<String>) -> std::io::Result<()> {
    read_archive(r, names).map(|_| ())
}

/// Whether `names` holds the module `module` (e.g. "xen-blkfront"), plain or
/// compressed as the kernel's module loader accepts it.
pub fn has_module(names: &[String], module: &str) -> bool {
    let alt = module.replace('-', "_");
    names.iter().any(|n| {
        let base = n.rsplit('/').next().unwrap_or(n);
        let stem = base
            .strip_suffix(".ko")
            .or_else(|| base.strip_suffix(".ko.xz"))
            .or_else(|| base.strip_suffix(".ko.zst"))
            .or_else(|| base.strip_suffix(".ko.gz"));
        stem.is_some_and(|s| s == module || s == alt)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(files: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in files {
            let w = cpio::newc::Builder::new(f)
                .mode(0o100644)
                .write(&mut out, 3);
            let mut w = w;
            w.write_all(b"abc").unwrap();
            w.finish().unwrap();
        }
        cpio::newc::trailer(&mut out).unwrap();
        out
    }

    #[test]
    fn microcode_then_compressed() {
        let mut img = archive(&["kernel/x86/microcode/GenuineIntel.bin"]);
        img.resize(img.len().div_ceil(512) * 512, 0);
        let main = archive(&["usr/lib/modules/6.1/kernel/drivers/block/xen-blkfront.ko"]);
        for comp in ["gz", "xz", "zst"] {
            let mut full = img.clone();
            match comp {
                "gz" => {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                    e.write_all(&main).unwrap();
                    full.extend(e.finish().unwrap());
                }
                "xz" => {
                    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
                    e.write_all(&main).unwrap();
                    full.extend(e.finish().unwrap());
                }
                _ => full.extend(zstd::encode_all(&main[..], 1).unwrap()),
            }
            let names = list_names(&full).unwrap();
            assert_eq!(names.len(), 2, "{comp}");
            assert!(has_module(&names, "xen-blkfront"), "{comp}");
            assert!(!has_module(&names, "xen-netfront"), "{comp}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = list_names(&data);
            let mut d = b"070701".to_vec();
            d.extend(&data);
            let _ = list_names(&d);
        }
    }
}
