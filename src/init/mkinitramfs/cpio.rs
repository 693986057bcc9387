//! Writer for the cpio "newc" format the kernel unpacks into its rootfs.
//!
//! Written by hand because the format is a 110-byte ASCII header plus padding
//! (Documentation/driver-api/early-userspace/buffer-format.rst), and the kernel
//! reads only what we emit: no crate needed for ~80 lines, and we control the
//! mtime (0) and inode numbers so the archive is reproducible.

use std::io::{self, Write};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// Kind of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
}

/// Errors while writing the archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("cpio entry {name}: {what} does not fit the 32-bit newc header field")]
    TooLarge { name: String, what: &'static str },
    #[error("cpio entry {name}: name is empty or contains a NUL byte")]
    BadName { name: String },
    #[error("writing the cpio archive failed: {0}")]
    Io(#[from] io::Error),
}

/// Streams newc entries to `out`; [`CpioWriter::finish`] writes the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: usize,
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        // Inode 0 is never used: the kernel treats equal (ino, dev) pairs with
        // nlink > 1 as hard links, so every entry gets its own number.
        Self {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    /// A directory; `name` without leading '/' (the kernel accepts both).
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(
            Header {
                name,
                mode: S_IFDIR | (perm & 0o7777),
                nlink: 2,
                size: 0,
                rdev: (0, 0),
            },
            &[],
        )
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(
            Header {
                name,
                mode: S_IFREG | (perm & 0o7777),
                nlink: 1,
                size: data.len(),
                rdev: (0, 0),
            },
            data,
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        self.entry(
            Header {
                name,
                mode: S_IFLNK | 0o777,
                nlink: 1,
                size: target.len(),
                rdev: (0, 0),
            },
            target.as_bytes(),
        )
    }

    pub fn node(
        &mut self,
        name: &str,
        perm: u32,
        kind: NodeKind,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        let fmt = match kind {
            NodeKind::Char => S_IFCHR,
            NodeKind::Block => S_IFBLK,
        };
        self.entry(
            Header {
                name,
                mode: fmt | (perm & 0o7777),
                nlink: 1,
                size: 0,
                rdev: (major, minor),
            },
            &[],
        )
    }

    /// Writes the trailer and returns the inner writer and the archive size.
    pub fn finish(mut self) -> Result<(W, u64), CpioError> {
        self.raw_entry(
            &Header {
                name: TRAILER,
                mode: 0,
                nlink: 1,
                size: 0,
                rdev: (0, 0),
            },
            0,
            &[],
        )?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn entry(&mut self, h: Header<'_>, data: &[u8]) -> Result<(), CpioError> {
        let name = h.name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(CpioError::BadName {
                name: h.name.to_string(),
            });
        }
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        self.raw_entry(&Header { name, ..h }, ino, data)
    }

    fn raw_entry(&mut self, h: &Header<'_>, ino: u32, data: &[u8]) -> Result<(), CpioError> {
        let too_large = |what| CpioError::TooLarge {
            name: h.name.to_string(),
            what,
        };
        let size = u32::try_from(h.size).map_err(|_| too_large("file size"))?;
        // The name size counts the terminating NUL.
        let namesize = u32::try_from(h.name.len() + 1).map_err(|_| too_large("name length"))?;
        let header = format!(
            "{MAGIC}{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}\
             {devmaj:08X}{devmin:08X}{rmaj:08X}{rmin:08X}{namesize:08X}{check:08X}",
            mode = h.mode,
            uid = 0,
            gid = 0,
            nlink = h.nlink,
            mtime = 0,
            devmaj = 0,
            devmin = 0,
            rmaj = h.rdev.0,
            rmin = h.rdev.1,
            check = 0,
        );
        self.put(header.as_bytes())?;
        self.put(h.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// newc aligns both the name and the data to 4 bytes.
    fn pad(&mut self) -> Result<(), CpioError> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn header_layout_and_padding() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("/a", 0o644, b"xyz").unwrap();
        let (buf, size) = w.finish().unwrap();
        assert_eq!(size as usize, buf.len());
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(&buf[..6], b"070701");
        // 110-byte header + "a\0" = 112, already aligned; then the data.
        assert_eq!(&buf[110..112], b"a\0");
        assert_eq!(&buf[112..115], b"xyz");
        assert_eq!(buf[115], 0);
        assert!(buf.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    /// GNU cpio (Debian package `cpio`) must read back exactly what we wrote.
    #[test]
    fn gnu_cpio_lists_our_archive() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/bin", 0o755).unwrap();
        w.file("/bin/hello", 0o755, b"#!/bin/sh\necho hi\n")
            .unwrap();
        w.symlink("/bin/sh", "busybox").unwrap();
        w.node("/dev/console", 0o600, NodeKind::Char, 5, 1).unwrap();
        let (buf, _) = w.finish().unwrap();
        let mut child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio missing: apt-get install cpio");
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"));
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].contains(" 18 "));
        assert!(lines[2].ends_with("bin/sh -> busybox"), "{}", lines[2]);
        assert!(lines[3].starts_with("crw-------") && lines[3].contains("5,"));
    }
}
