//! One connection to the receiver: TCP, TLS pinned to its fingerprint,
//! hello and start; and how a connection's failures are told apart (retry
//! or give up). Every message read is checked against `wire::sequence`.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::{SendError, SendOptions, paced};
use crate::wire::frame::{self, Frame, FrameError};
use crate::wire::message::{DiskResume, Message};
use crate::wire::sequence::{Phase, Side};
use crate::wire::{PROTOCOL_VERSION, tls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) type Tls = StreamOwned<ClientConnection, paced::PacedStream>;

/// The receiver's answer to Start.
pub(super) struct Accepted {
    /// What each disk has committed already.
    pub(super) resume: Vec<DiskResume>,
    pub(super) resumed: bool,
    /// The receiver holds an earlier copy: offer hashes, send what it wants.
    pub(super) cutover: bool,
}

/// Why one connection attempt ended.
pub(super) enum Attempt {
    Retry(String),
    Fatal(SendError),
}

/// Classifies a connection-level error: a wrong certificate is fatal,
/// anything else (cut connection, corrupted record) is worth a reconnect.
pub(super) fn classify(server: &str, e: FrameError) -> Attempt {
    if let FrameError::Io(io) = &e {
        if let Some(tls_err) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            let reason = match tls::fingerprint_mismatch(tls_err) {
                Some(mismatch) => Some(mismatch.to_string()),
                None if matches!(tls_err, rustls::Error::InvalidCertificate(_)) => {
                    Some(tls_err.to_string())
                }
                None => None,
            };
            if let Some(reason) = reason {
                return Attempt::Fatal(SendError::WrongReceiver {
                    server: server.to_string(),
                    reason,
                });
            }
        }
    }
    Attempt::Retry(e.to_string())
}

/// The receiver's next message, legal in `phase`; a refusal becomes the
/// attempt's end (fatal or retried, as the receiver said).
pub(super) fn read_message(server: &str, tls: &mut Tls, phase: Phase) -> Result<Message, Attempt> {
    match read_any(server, tls, phase)? {
        Message::Refused { reason, fatal } => Err(refused(server, reason, fatal)),
        m => Ok(m),
    }
}

/// The receiver's next message, legal in `phase`, a refusal included.
fn read_any(server: &str, tls: &mut Tls, phase: Phase) -> Result<Message, Attempt> {
    let m: Message = match frame::read_frame(tls) {
        Ok(Frame::Control(j)) => serde_json::from_slice(&j)
            .map_err(|e| Attempt::Retry(format!("bad message from receiver: {e}")))?,
        Ok(Frame::Chunk(_)) => return Err(Attempt::Retry("unexpected data from receiver".into())),
        Err(e) => return Err(classify(server, e)),
    };
    phase
        .check(Side::Receiver, &m)
        .map_err(|e| Attempt::Retry(e.to_string()))?;
    Ok(m)
}

/// A message the phase allows but this step did not wait for.
pub(super) fn unexpected(m: &Message) -> Attempt {
    Attempt::Retry(format!("unexpected {m:?}"))
}

/// Writes one control message and flushes it.
pub(super) fn write_message(server: &str, tls: &mut Tls, m: &Message) -> Result<(), Attempt> {
    m.write(tls)
        .and_then(|_| tls.flush().map_err(FrameError::from))
        .map_err(|e| classify(server, e))
}

fn refused(server: &str, reason: String, fatal: bool) -> Attempt {
    if fatal {
        Attempt::Fatal(SendError::Refused {
            server: server.to_string(),
            reason,
        })
    } else {
        Attempt::Retry(format!("receiver: {reason}"))
    }
}

/// The first address of `server` that answers within [`CONNECT_TIMEOUT`].
fn dial(server: &str) -> Result<TcpStream, Attempt> {
    let addrs: Vec<_> = server
        .to_socket_addrs()
        .map_err(|e| Attempt::Retry(format!("resolving {server}: {e}")))?
        .collect();
    let mut last = format!("{server}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(t) => return Ok(t),
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    Err(Attempt::Retry(last))
}

/// TCP + TLS + hello + start; returns what the receiver already has.
pub(super) fn connect(
    opts: &SendOptions,
    cfg: &Arc<ClientConfig>,
    start: &Message,
) -> Result<(Tls, Accepted), Attempt> {
    let server = opts.server.as_str();
    let tcp = dial(server)?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let conn = ClientConnection::new(cfg.clone(), tls::server_name())
        .map_err(|e| Attempt::Fatal(SendError::Tls(e.into())))?;
    let mut tls = StreamOwned::new(conn, paced::PacedStream::new(tcp, opts.limit));
    let hello = Message::Hello {
        protocol: PROTOCOL_VERSION,
        software: crate::wire::software(),
        token: opts.token.clone(),
    };
    write_message(server, &mut tls, &hello)?;
    match read_message(server, &mut tls, Phase::Hello)? {
        Message::Welcome { .. } => {}
        other => return Err(unexpected(&other)),
    }
    write_message(server, &mut tls, start)?;
    match read_message(server, &mut tls, Phase::Start)? {
        Message::Ready {
            resumed,
            disks,
            cutover,
        } => Ok((
            tls,
            Accepted {
                resume: disks,
                resumed,
                cutover,
            },
        )),
        other => Err(unexpected(&other)),
    }
}

/// Is there something to read (a refusal) on the socket right now?
pub(super) fn peer_spoke(tls: &Tls) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(tls.sock.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// After a failed write in `phase`, the receiver may have said why before
/// closing.
pub(super) fn refusal_or(server: &str, tls: &mut Tls, phase: Phase, fallback: Attempt) -> Attempt {
    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(2)));
    match read_any(server, tls, phase) {
        Ok(Message::Refused { reason, fatal }) => refused(server, reason, fatal),
        _ => fallback,
    }
}
