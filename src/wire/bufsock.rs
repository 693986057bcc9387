//! A TCP stream with a read buffer under rustls.
//!
//! rustls pulls TLS bytes 4 KiB per `read` call; for a multi-gigabyte copy
//! that is a syscall every 4 KiB on the receiver. Buffering 256 KiB below it
//! turns most of those into memory copies. Writes go straight to the socket.
//!
//! The buffer starts small ([`BufSock::SMALL`]) and grows to
//! [`BufSock::LARGE`] only when [`BufSock::grow`] is called, after the peer
//! authenticated: 200 idle unauthenticated connections then hold 3 MiB, not
//! 50 MiB. `std::io::BufReader` cannot change its capacity without losing
//! what it holds, hence these few lines by hand.

use std::io::{self, Read, Write};
use std::net::TcpStream;

pub struct BufSock {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// `buf[pos..filled]` is read from the socket and not yet handed out.
    pos: usize,
    filled: usize,
}

impl BufSock {
    pub const SMALL: usize = 16 << 10;
    pub const LARGE: usize = 256 << 10;

    pub fn new(tcp: TcpStream) -> Self {
        BufSock {
            tcp,
            buf: vec![0; Self::SMALL],
            pos: 0,
            filled: 0,
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Large buffer from now on; buffered bytes are kept.
    pub fn grow(&mut self) {
        if self.buf.len() < Self::LARGE {
            self.buf.resize(Self::LARGE, 0);
        }
    }
}

impl Read for BufSock {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            // A read as large as the buffer gains nothing from copying.
            if out.len() >= self.buf.len() {
                return self.tcp.read(out);
            }
            self.filled = self.tcp.read(&mut self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for BufSock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Bytes buffered while small survive the growth, in order.
    #[test]
    fn grow_keeps_buffered_bytes_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        // 100 kB fit in loopback's socket buffers: all of it is there
        // before the first read, so that read fills the small buffer.
        c.write_all(&data).unwrap();
        let mut b = BufSock::new(s);
        let mut got = vec![0u8; 10];
        b.read_exact(&mut got).unwrap();
        assert!(b.filled > b.pos, "something is buffered before growing");
        b.grow();
        assert_eq!(b.buf.len(), BufSock::LARGE);
        let sent = data;
        let mut rest = vec![0u8; sent.len() - 10];
        b.read_exact(&mut rest).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got, sent);
    }
}
