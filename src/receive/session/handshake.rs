//! The first two stages: TLS handshake and hello with the token, within
//! the deadline; then the Start message that names the migration and its
//! disks.

use std::net::TcpStream;
use std::time::Duration;

use rustls::{ServerConnection, StreamOwned};

use super::super::admission::{Deadline, Ticket};
use super::{Ctx, IDLE_TIMEOUT, Refusal, SessionError, Tls, is_timeout, send};
use crate::wire::PROTOCOL_VERSION;
use crate::wire::auth::token_matches;
use crate::wire::bufsock::BufSock;
use crate::wire::frame::{Frame, FrameError, FrameLimits, read_frame, read_frame_within};
use crate::wire::machine::MachineDescription;
use crate::wire::message::{DiskAnnounce, MAX_DISKS, Message, parse_hello};
use crate::wire::name::MigrationName;
use crate::wire::sequence::{Phase, Side};

const MAX_DISK_BYTES: u64 = 1 << 50;

/// What the sender's Start announced, checked.
pub(super) struct Start {
    pub(super) name: String,
    pub(super) machine: Box<MachineDescription>,
    pub(super) disks: Vec<DiskAnnounce>,
    /// A pre-copy from the running server (`send --warm`).
    pub(super) warm: bool,
}

/// TLS handshake and hello: version, then token, before anything else
/// happens, within the deadline and in one small frame. Answers Welcome.
pub(super) fn handshake(tcp: TcpStream, ctx: &Ctx, ticket: Ticket) -> Result<Tls, SessionError> {
    let deadline = ctx.admission.limits().hello_deadline;
    // The deadline's watcher closes the socket; the read timeout, a little
    // later, is only the fallback should that thread not run.
    let _ = tcp.set_read_timeout(Some((deadline + Duration::from_secs(1)).min(IDLE_TIMEOUT)));
    let _ = tcp.set_nodelay(true);
    let watch = Deadline::arm(&tcp, deadline)
        .map_err(|e| SessionError::Refused(format!("cannot watch the handshake: {e}")))?;
    let conn = ServerConnection::new(ctx.tls.clone())
        .map_err(|e| SessionError::Refused(format!("TLS: {e}")))?;
    let mut s = StreamOwned::new(conn, BufSock::new(tcp));
    let hello = match read_frame_within(&mut s, FrameLimits::PRE_AUTH) {
        Ok(Frame::Control(j)) => j,
        Ok(Frame::Chunk(_)) => return Err(Refusal::fatal("data before hello").tell(&mut s)),
        Err(e) => {
            let timed_out = matches!(&e, FrameError::Io(io) if is_timeout(io));
            let why = if watch.expired() || timed_out {
                format!("no hello within {} s (--hello-timeout)", deadline.as_secs())
            } else {
                format!("no valid hello: {e}")
            };
            return Err(SessionError::Refused(why));
        }
    };
    let token = match parse_hello(&hello) {
        Ok((_, token)) => token,
        Err(e) => return Err(Refusal::fatal(e.to_string()).tell(&mut s)),
    };
    if !token_matches(&ctx.token, &token) {
        return Err(
            Refusal::fatal("wrong token: use the token printed by p2xen receive").tell(&mut s),
        );
    }
    // Authenticated: no deadline now, the full buffer and frame sizes, and
    // the place among the unauthenticated connections is free again.
    watch.disarm();
    drop(ticket);
    let _ = s.sock.tcp().set_read_timeout(Some(IDLE_TIMEOUT));
    s.sock.grow();
    send(
        &mut s,
        &Message::Welcome {
            protocol: PROTOCOL_VERSION,
            software: crate::wire::software(),
        },
    );
    Ok(s)
}

/// The Start message: name, machine, disks, checked.
pub(super) fn read_start(s: &mut Tls) -> Result<Start, SessionError> {
    let m = match read_frame(s) {
        Ok(Frame::Control(j)) => match serde_json::from_slice::<Message>(&j) {
            Ok(m) => m,
            Err(e) => return Err(Refusal::fatal(format!("bad start message: {e}")).tell(s)),
        },
        Ok(Frame::Chunk(_)) => return Err(Refusal::fatal("data before start").tell(s)),
        Err(e) => return Err(SessionError::Refused(e.to_string())),
    };
    if let Err(e) = Phase::Start.check(Side::Sender, &m) {
        return Err(Refusal::fatal(e.to_string()).tell(s));
    }
    let Message::Start {
        name,
        machine,
        disks,
        warm,
    } = m
    else {
        return Err(Refusal::fatal("expected start").tell(s));
    };
    if let Err(e) = check_start(&name, &disks) {
        return Err(Refusal::fatal(e).tell(s));
    }
    Ok(Start {
        name,
        machine,
        disks,
        warm,
    })
}

fn check_start(name: &str, disks: &[DiskAnnounce]) -> Result<(), String> {
    MigrationName::parse(name).map_err(|e| e.to_string())?;
    if disks.is_empty() || disks.len() > MAX_DISKS {
        return Err(format!(
            "{} disks announced (1..={MAX_DISKS} allowed)",
            disks.len()
        ));
    }
    for (i, d) in disks.iter().enumerate() {
        if usize::from(d.disk) != i || d.size_bytes > MAX_DISK_BYTES || d.plan_bytes > d.size_bytes
        {
            return Err(format!("disk {i}: inconsistent announcement {d:?}"));
        }
    }
    Ok(())
}
