//! JSON control messages. Every message is an object with a `"type"` tag.

use serde::{Deserialize, Serialize};

use super::PROTOCOL_VERSION;
use super::digest::ChunkRecord;
use super::frame::{self, FrameError};
use super::machine::MachineDescription;
use super::report::CopyReport;

/// What the sender announces about one disk before sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskAnnounce {
    pub disk: u16,
    /// Source path on the sender (for the report).
    pub source: String,
    pub size_bytes: u64,
    /// Number of chunks and bytes in the copy plan.
    pub chunks: u64,
    pub plan_bytes: u64,
    /// [`super::digest::plan_digest`] of the plan's chunk ranges.
    pub plan_digest: String,
    /// Notes on how the plan was made ("ext4 at 1048576 not clean: copied whole").
    #[serde(default)]
    pub notes: Vec<String>,
    /// BLAKE3 of the disk's first [`HEAD_LEN`] bytes (partition table and
    /// boot code): a resume continues only a copy of the same disk, so two
    /// servers sent under one name are never mixed into one image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_digest: Option<String>,
}

/// Bytes at the start of a disk that [`DiskAnnounce::head_digest`] covers.
pub const HEAD_LEN: u64 = 64 << 10;

/// The most disks one migration announces (the receiver refuses more).
pub const MAX_DISKS: usize = 64;

/// Ranges (offset, length) the receiver has already committed for one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskResume {
    pub disk: u16,
    pub committed: Vec<(u64, u64)>,
}

/// One chunk of an [`Message::Offer`]: its place and the BLAKE3 of its
/// bytes as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedChunk {
    pub offset: u64,
    pub len: u32,
    pub hash: String,
}

impl OfferedChunk {
    pub fn of(r: &ChunkRecord) -> Self {
        OfferedChunk {
            offset: r.offset,
            len: r.len,
            hash: blake3::Hash::from_bytes(r.hash).to_hex().to_string(),
        }
    }

    /// The record it offers; `None` for a hash that is not 64 hex digits.
    pub fn record(&self) -> Option<ChunkRecord> {
        let hash = blake3::Hash::from_hex(&self.hash).ok()?;
        Some(ChunkRecord {
            offset: self.offset,
            len: self.len,
            hash: *hash.as_bytes(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Sender → receiver, first message. `protocol` is checked before anything else.
    Hello {
        protocol: u32,
        software: String,
        token: String,
    },
    /// Receiver → sender: token accepted.
    Welcome { protocol: u32, software: String },
    /// Either side: the request is refused. `fatal` tells the sender that
    /// reconnecting cannot help (bad token, bad name, target full).
    Refused { reason: String, fatal: bool },
    /// Sender → receiver: what to create.
    Start {
        name: String,
        machine: Box<MachineDescription>,
        disks: Vec<DiskAnnounce>,
        /// A pre-copy from the running server (`send --warm`): the copy is
        /// not consistent and is neither converted nor reported complete.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        warm: bool,
    },
    /// Receiver → sender: targets ready; skip what is already committed.
    /// `cutover`: the targets hold an earlier copy of this server, so the
    /// sender offers chunk hashes ([`Message::Offer`]) and sends only the
    /// chunks the receiver asks for. A sender that ignores it and sends
    /// every chunk still produces the same, correct copy.
    Ready {
        resumed: bool,
        disks: Vec<DiskResume>,
        #[serde(default)]
        cutover: bool,
    },
    /// Sender → receiver (cutover only): the hashes of planned chunks of
    /// `disk`, whose bytes the sender holds until the answer.
    Offer {
        disk: u16,
        chunks: Vec<OfferedChunk>,
    },
    /// Receiver → sender: of the last unanswered offer, the chunks (by
    /// offset) whose bytes on the target differ; the others are committed.
    Want { disk: u16, offsets: Vec<u64> },
    /// Sender → receiver: every chunk of `disk` has been sent.
    DiskEnd { disk: u16, content_digest: String },
    /// Sender → receiver: all disks sent; verify and report.
    Finish,
    /// Receiver → sender: verified; the report as written to report.json.
    Done { report: Box<CopyReport> },
}

impl Message {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn write(&self, w: &mut impl std::io::Write) -> Result<(), FrameError> {
        frame::write_control(w, &self.to_json())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error(
        "peer speaks p2xen protocol version {0}, this build speaks version {PROTOCOL_VERSION}: use matching p2xen versions on both ends"
    )]
    Version(u64),
    #[error("first message is not a p2xen hello: {0}")]
    NotHello(String),
}

/// Parses the first message. The version is read before the rest, so a peer
/// of another version gets a version error and not a confusing field error.
pub fn parse_hello(json: &[u8]) -> Result<(String, String), HelloError> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| HelloError::NotHello(e.to_string()))?;
    let protocol = v
        .get("protocol")
        .and_then(|p| p.as_u64())
        .ok_or_else(|| HelloError::NotHello("no protocol version".into()))?;
    if protocol != u64::from(PROTOCOL_VERSION) {
        return Err(HelloError::Version(protocol));
    }
    match serde_json::from_value::<Message>(v) {
        Ok(Message::Hello {
            software, token, ..
        }) => Ok((software, token)),
        Ok(_) => Err(HelloError::NotHello("wrong message type".into())),
        Err(e) => Err(HelloError::NotHello(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_versions_are_checked_first() {
        let ok = Message::Hello {
            protocol: PROTOCOL_VERSION,
            software: "t".into(),
            token: "abc".into(),
        };
        assert_eq!(parse_hello(&ok.to_json()).unwrap().1, "abc");
        let other = br#"{"type":"hello","protocol":2,"whatever":true}"#;
        let e = parse_hello(other).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        assert!(matches!(
            parse_hello(b"GET / HTTP/1.0"),
            Err(HelloError::NotHello(_))
        ));
    }
}
