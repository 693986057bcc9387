//! A TCP stream with a read buffer under rustls.
//!
//! rustls pulls TLS bytes 4 KiB per `read` call; for a multi-gigabyte copy
//! that is a syscall every 4 KiB on the receiver. Buffering 256 KiB below it
//! turns most of those into memory copies. Writes go straight to the socket.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;

pub struct BufSock(BufReader<TcpStream>);

impl BufSock {
    pub fn new(tcp: TcpStream) -> Self {
        BufSock(BufReader::with_capacity(256 * 1024, tcp))
    }

    pub fn tcp(&self) -> &TcpStream {
        self.0.get_ref()
    }
}

impl Read for BufSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for BufSock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}
