//! The protocol between `p2xen send` and `p2xen receive`.
//!
//! One TLS 1.3 connection per session; inside it, length-prefixed frames that
//! are either JSON control messages ([`message`]) or binary data chunks
//! ([`frame::ChunkHeader`]). `docs/protocol.md` is the reference.

pub mod auth;
pub mod bufsock;
pub mod digest;
pub mod frame;
pub mod identity;
pub mod keyword;
pub mod machine;
pub mod message;
pub mod name;
pub mod probe;
pub mod rate;
pub mod report;
pub mod sequence;
pub mod tls;

/// The software both ends announce (`Hello`, the report).
pub fn software() -> String {
    format!("p2xen {}", env!("CARGO_PKG_VERSION"))
}

/// Protocol version spoken by this build. Bumped on any incompatible change;
/// a peer announcing another version is refused with a clear message.
pub const PROTOCOL_VERSION: u32 = 1;

/// The copy's grid: every chunk lies inside one aligned cell of this size, so
/// chunk offsets are stable across runs and resume can match them.
pub const CHUNK_SIZE: u64 = 4 << 20;
/// [`CHUNK_SIZE`] as a buffer length.
pub const CHUNK_LEN: usize = 4 << 20;
const _: () = assert!(CHUNK_LEN as u64 == CHUNK_SIZE && CHUNK_SIZE <= u32::MAX as u64);
