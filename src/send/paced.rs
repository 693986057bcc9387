//! The sender's TCP stream under `--limit`: every byte TLS writes (records,
//! headers and all, which is what the link carries) is paced.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;

use crate::wire::rate::{Pacer, Rate};

pub struct PacedStream {
    tcp: TcpStream,
    pacer: Pacer,
}

impl PacedStream {
    pub fn new(tcp: TcpStream, limit: Option<Rate>) -> Self {
        PacedStream {
            tcp,
            pacer: Pacer::new(limit),
        }
    }
}

/// The socket's own settings (timeouts, poll) stay reachable.
impl Deref for PacedStream {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.tcp
    }
}

impl Read for PacedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for PacedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.pacer.pace(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}
