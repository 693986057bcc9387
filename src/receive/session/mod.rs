//! One sender connection, in the stages of docs/protocol.md: handshake and
//! token (`handshake.rs`), targets created or reopened (`prepare.rs`),
//! chunks (`chunks.rs`), verification, conversion and report (`finish.rs`).
//! Which message is legal when is `wire::sequence`'s, shared with the sender.

mod chunks;
mod ctx;
mod finish;
mod handshake;
mod meta;
mod prepare;

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::admission::Ticket;
use super::report;
use crate::wire::PROTOCOL_VERSION;
use crate::wire::bufsock::BufSock;
use crate::wire::message::{DiskResume, Message};
use crate::wire::report::{CopyReport, CopyState};
pub use ctx::Ctx;
pub use meta::{Meta, Progress, create_private_dir, is_running, journal_dir, progress_path};
use prepare::Prepared;

/// A sender that sends nothing for this long is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How a session ended.
#[derive(Debug)]
pub enum Outcome {
    /// Refused before anything was created or written.
    Refused(String),
    /// Connection lost or a retryable error; the journal allows resuming.
    Interrupted(String),
    /// Verified and reported.
    Completed(Box<CopyReport>),
    /// Stopped by an error reconnecting cannot fix (target full, ...).
    Failed(String),
}

/// How a stage of a session ended it early; becomes the session's
/// [`Outcome`]. The sender has been told already where it can be.
enum SessionError {
    Refused(String),
    Interrupted(String),
    Failed(String),
}

impl From<SessionError> for Outcome {
    fn from(e: SessionError) -> Outcome {
        match e {
            SessionError::Refused(r) => Outcome::Refused(r),
            SessionError::Interrupted(r) => Outcome::Interrupted(r),
            SessionError::Failed(r) => Outcome::Failed(r),
        }
    }
}

/// Why the receiver turns a sender away, and whether the sender may retry
/// (a busy name, a guest still running) or must stop (another server's
/// copy, a changed token).
struct Refusal {
    reason: String,
    fatal: bool,
}

impl Refusal {
    fn fatal(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            fatal: true,
        }
    }

    fn retry(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            fatal: false,
        }
    }

    /// Tells the sender, and ends the session as refused.
    fn tell(self, s: &mut Tls) -> SessionError {
        SessionError::Refused(refuse(s, self.reason, self.fatal))
    }
}

type Tls = StreamOwned<ServerConnection, BufSock>;

fn send(s: &mut Tls, m: &Message) {
    if let Err(e) = m
        .write(s)
        .and_then(|_| std::io::Write::flush(s).map_err(Into::into))
    {
        log::debug!("could not send {m:?}: {e}");
    }
}

fn refuse(s: &mut Tls, reason: String, fatal: bool) -> String {
    send(
        s,
        &Message::Refused {
            reason: reason.clone(),
            fatal,
        },
    );
    reason
}

/// One connection, from TLS handshake to report. `ticket` is its place
/// among the unauthenticated connections, given back once the token matched.
/// Every refusal names the peer's address.
pub fn serve(tcp: TcpStream, ctx: &Ctx, ticket: Ticket) -> Outcome {
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    match serve_peer(tcp, ctx, ticket, &peer) {
        Ok(outcome) => outcome,
        Err(SessionError::Refused(r)) => Outcome::Refused(format!("{peer}: {r}")),
        Err(e) => e.into(),
    }
}

/// The stages in the order of docs/protocol.md: hello, start, ready, chunks,
/// verification, conversion and report.
fn serve_peer(
    tcp: TcpStream,
    ctx: &Ctx,
    ticket: Ticket,
    peer: &str,
) -> Result<Outcome, SessionError> {
    let mut s = handshake::handshake(tcp, ctx, ticket)?;
    let start = handshake::read_start(&mut s)?;
    let name = start.name.as_str();
    let _guard = ctx
        .lock_name(name, &start.disks)
        .map_err(|r| r.tell(&mut s))?;
    let Prepared {
        sinks,
        meta,
        dir,
        lock: _lock,
    } = prepare::prepare(ctx, &start).map_err(|r| r.tell(&mut s))?;
    log_start(name, &meta, peer, start.disks.len());
    let ready = Message::Ready {
        resumed: meta.sessions > 1,
        disks: sinks
            .iter()
            .map(|d| DiskResume {
                disk: d.announce.disk,
                committed: d.journal().ranges(),
            })
            .collect(),
        cutover: meta.cutover,
    };
    send(&mut s, &ready);
    let mut rep = incomplete_report(name, &meta);
    let session = Session {
        ctx,
        name,
        dir: &dir,
        cutover: meta.cutover,
        warm: meta.warm,
    };
    let (mut writer, digests) = session.receive_chunks(&mut s, sinks, &mut rep)?;
    session.verify(&mut s, &mut writer, &digests, &mut rep)?;
    // Verified and recorded: the journal (closed with the writer) is no
    // longer needed.
    drop(writer);
    let _ = fs::remove_dir_all(journal_dir(&ctx.state_dir, name));
    log::info!(
        "{name}: copy complete and verified ({} disk(s)) in {}",
        rep.disks.len(),
        dir.display()
    );
    Ok(session.convert_and_report(&mut s, rep))
}

fn log_start(name: &str, meta: &Meta, peer: &str, disks: usize) {
    if meta.sessions > 1 {
        log::info!("{name}: resuming (session {}) from {peer}", meta.sessions);
    } else if meta.cutover {
        log::info!(
            "{name}: cutover from {peer}: updating the earlier copy in place, only changed chunks are sent"
        );
    } else {
        log::info!("{name}: new migration from {peer}, {disks} disk(s)");
    }
}

/// The report as it stands before the first chunk: saved as it is when
/// the session ends early.
fn incomplete_report(name: &str, meta: &Meta) -> CopyReport {
    CopyReport {
        name: name.to_string(),
        state: CopyState::Incomplete,
        protocol: PROTOCOL_VERSION,
        receiver_version: crate::wire::software(),
        started_unix: meta.started_unix,
        finished_unix: report::now_unix(),
        sessions: meta.sessions,
        cutover: meta.cutover,
        disks: Vec::new(),
        error: None,
        conversion: None,
    }
}

/// One migration's session after it was prepared.
struct Session<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    /// STORE/NAME.
    dir: &'a Path,
    /// The targets hold an earlier copy: answer the sender's offers.
    cutover: bool,
    /// A pre-copy from the running server: verified, never converted.
    warm: bool,
}

/// Closes after a refusal mid-copy without resetting the connection: the
/// sender is still streaming, and closing with unread input would send a RST
/// that can destroy the refusal before the sender reads it.
fn linger(s: &mut Tls) {
    use std::io::Read;
    s.conn.send_close_notify();
    let _ = std::io::Write::flush(s);
    let _ = s.sock.tcp().shutdown(std::net::Shutdown::Write);
    let _ = s
        .sock
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match s.sock.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

/// A socket read timeout (std reports it as either kind).
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
