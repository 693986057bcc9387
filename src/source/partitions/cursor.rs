//! `Read + Seek` over a [`ReadAt`], because `mbrman` and `gpt` parse from
//! std I/O traits while every source read in p2xen goes through `ReadAt`.

use crate::source::device::ReadAt;
use std::io::{self, Read, Seek, SeekFrom};

pub struct Cursor<'a> {
    src: &'a dyn ReadAt,
    pos: u64,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a dyn ReadAt) -> Self {
        Cursor { src, pos: 0 }
    }
}

impl Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.src.size().saturating_sub(self.pos);
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let dst = buf
            .get_mut(..n)
            .ok_or_else(|| io::Error::other("short buffer"))?;
        self.src
            .read_exact_at(self.pos, dst)
            .map_err(io::Error::other)?;
        // n <= remaining = size - pos, so this cannot overflow.
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.src.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before start or past u64")
        })?;
        self.pos = new;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;

    #[test]
    fn reads_stop_at_the_end_and_seeks_are_checked() {
        let disk = MemDisk::new((0..10u8).collect());
        let mut c = Cursor::new(&disk);
        assert_eq!(c.seek(SeekFrom::End(-3)).unwrap(), 7);
        let mut b = [0u8; 8];
        assert_eq!(c.read(&mut b).unwrap(), 3);
        assert_eq!(&b[..3], &[7, 8, 9]);
        assert_eq!(c.read(&mut b).unwrap(), 0);
        assert!(c.seek(SeekFrom::Current(-11)).is_err());
    }
}
