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

/// One entry of an initrd archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As stored, without a leading `./` or `/`.
    pub name: String,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every entry of every archive, in archive order (a later entry of the
    /// same name replaces an earlier one when the kernel unpacks).
    pub entries: Vec<Entry>,
    /// The contents of the files `keep` selected, last copy of each name.
    pub files: Vec<(String, Vec<u8>)>,
    /// How each segment was stored, in order: "cpio", "gzip", "xz", "zstd".
    pub segments: Vec<&'static str>,
}

impl Listing {
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// The kept content of `name`, as the kernel would leave it.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.name == name)
    }
}

/// Largest file [`read`] keeps the content of (config files, lists).
const MAX_KEPT_BYTES: u64 = 1 << 20;

/// All file names in an initrd image.
pub fn list_names(data: &[u8]) -> Result<Vec<String>, InitrdError> {
    read(data, &|_| false).map(|l| l.names())
}

/// Walks an initrd the way the kernel unpacks it: uncompressed archives and
/// compressed segments in any order and number (an appended segment, like
/// the one [`super::initrd_drivers`] adds, follows the compressed main one).
/// Keeps the content of the files `keep` names.
pub fn read(data: &[u8], keep: &dyn Fn(&str) -> bool) -> Result<Listing, InitrdError> {
    let mut out = Listing::default();
    let mut pos = 0usize;
    loop {
        // Archives are padded with zeros to a 512-byte or 4-byte boundary.
        while data.get(pos) == Some(&0) {
            pos += 1;
        }
        let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) else {
            return Ok(out);
        };
        let fmt = |e: std::io::Error| InitrdError::Format {
            offset: pos,
            what: e.to_string(),
        };
        // Each branch returns how many bytes of `rest` its segment took.
        let used = if rest.starts_with(b"0707") {
            // One archive only, read exactly: what follows may be compressed.
            let mut cur = Cursor::new(rest);
            read_archive(&mut cur, keep, &mut out).map_err(fmt)?;
            out.segments.push("cpio");
            usize::try_from(cur.position()).unwrap_or(rest.len())
        } else if rest.starts_with(&[0x1f, 0x8b]) {
            let mut r = flate2::bufread::GzDecoder::new(rest);
            read_archives(&mut (&mut r).take(MAX_UNPACKED_BYTES), keep, &mut out).map_err(fmt)?;
            out.segments.push("gzip");
            rest.len() - r.into_inner().len()
        } else if rest.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            let mut r = xz2::bufread::XzDecoder::new(rest);
            read_archives(&mut (&mut r).take(MAX_UNPACKED_BYTES), keep, &mut out).map_err(fmt)?;
            out.segments.push("xz");
            rest.len() - r.into_inner().len()
        } else if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let mut r = zstd::stream::read::Decoder::with_buffer(rest)
                .map_err(fmt)?
                .single_frame();
            read_archives(&mut (&mut r).take(MAX_UNPACKED_BYTES), keep, &mut out).map_err(fmt)?;
            out.segments.push("zstd");
            rest.len() - r.finish().len()
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
        };
        pos = pos.saturating_add(used.max(1));
    }
}

/// Reads one archive up to its trailer.
fn read_archive<R: Read>(
    mut r: R,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Listing,
) -> std::io::Result<R> {
    loop {
        let mut entry = cpio::newc::Reader::new(r)?;
        if entry.entry().is_trailer() {
            return entry.finish();
        }
        if out.entries.len() >= MAX_ENTRIES {
            return Err(std::io::Error::other("too many entries"));
        }
        let e = Entry {
            name: clean_name(entry.entry().name()).to_string(),
            mode: entry.entry().mode(),
        };
        if keep(&e.name) && !e.is_dir() {
            let mut data = Vec::new();
            (&mut entry).take(MAX_KEPT_BYTES).read_to_end(&mut data)?;
            out.files.push((e.name.clone(), data));
        }
        out.entries.push(e);
        r = entry.finish()?;
    }
}

/// Reads the archives of one segment (a decompressed stream may hold
/// several, each padded with zeros), then the rest of the segment, so that
/// a compressed segment is consumed to its end.
fn read_archives<R: Read>(
    r: R,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Listing,
) -> std::io::Result<()> {
    let mut r = std::io::BufReader::new(r);
    loop {
        r = read_archive(r, keep, out)?;
        loop {
            let buf = std::io::BufRead::fill_buf(&mut r)?;
            let Some(first) = buf.first() else {
                return Ok(());
            };
            if *first != 0 {
                break;
            }
            let zeros = buf.iter().take_while(|b| **b == 0).count();
            std::io::BufRead::consume(&mut r, zeros);
        }
        if !std::io::BufRead::fill_buf(&mut r)?.starts_with(b"0707") {
            return Err(std::io::Error::other("data after an archive's trailer"));
        }
    }
}

fn clean_name(n: &str) -> &str {
    let n = n.strip_prefix("./").unwrap_or(n);
    n.trim_start_matches('/')
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

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn archive_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = cpio::newc::Builder::new(name)
            .mode(0o100644)
            .write(&mut out, data.len() as u32);
        w.write_all(data).unwrap();
        w.finish().unwrap();
        cpio::newc::trailer(&mut out).unwrap();
        out
    }

    #[test]
    fn an_appended_segment_overrides_and_each_segment_is_listed() {
        let mut img = archive(&["kernel/x86/microcode/AuthenticAMD.bin"]);
        // Two archives in one zstd stream, padded as the kernel allows.
        let mut main = archive_with("./conf/modules", b"ext4\n");
        main.resize(main.len().div_ceil(512) * 512, 0);
        main.extend(archive(&["bin/sh"]));
        img.extend(zstd::encode_all(&main[..], 3).unwrap());
        img.extend(gzip(&archive_with("conf/modules", b"ext4\nxen-blkfront\n")));
        img.extend([0u8; 7]);
        let l = read(&img, &|n| n == "conf/modules").unwrap();
        assert_eq!(l.segments, ["cpio", "zstd", "gzip"]);
        assert_eq!(l.file("conf/modules"), Some(&b"ext4\nxen-blkfront\n"[..]));
        assert_eq!(l.files.len(), 2);
        assert_eq!(l.entry("bin/sh").map(|e| e.is_dir()), Some(false));
        assert_eq!(l.entries.len(), 4);
    }

    #[test]
    fn a_damaged_appended_segment_names_its_offset() {
        let mut img = zstd::encode_all(&archive(&["init"])[..], 3).unwrap();
        let at = img.len();
        let mut tail = gzip(&archive(&["conf/modules"]));
        tail.truncate(tail.len() / 2);
        img.extend(tail);
        let err = read(&img, &|_| false).unwrap_err().to_string();
        assert!(err.starts_with(&format!("initrd at byte {at}: ")), "{err}");
        let mut junk = zstd::encode_all(&archive(&["init"])[..], 3).unwrap();
        junk.extend(b"BZh91AY&SY");
        let err = read(&junk, &|_| false).unwrap_err().to_string();
        assert!(err.contains("bzip2 compression is not supported"), "{err}");
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
