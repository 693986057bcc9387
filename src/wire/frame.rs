//! Framing: every message on the wire is `kind: u8 | len: u32 BE | payload`.
//!
//! kind 1 carries a JSON control message, kind 2 a data chunk whose payload
//! starts with a fixed 48-byte [`ChunkHeader`]. Lengths are bounded before
//! anything is allocated, so a hostile peer cannot make us allocate more than
//! one chunk's worth.

use std::io::{self, Read, Write};

use super::CHUNK_SIZE;
use super::digest::zero_hash;

pub const KIND_CONTROL: u8 = 1;
pub const KIND_CHUNK: u8 = 2;
/// Largest control message (the committed-ranges list of a huge disk fits).
pub const MAX_CONTROL_LEN: u32 = 16 << 20;
pub const CHUNK_HEADER_LEN: usize = 48;
/// Largest chunk frame: header plus a chunk that zstd expanded slightly.
#[expect(
    clippy::cast_possible_truncation,
    reason = "CHUNK_SIZE is 4 MiB (asserted in wire)"
)]
pub const MAX_CHUNK_FRAME_LEN: u32 = (CHUNK_SIZE as u32) + (CHUNK_SIZE as u32 / 64) + 4096;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("unknown frame kind {0} (not a p2xen peer, or another protocol version)")]
    UnknownKind(u8),
    #[error("frame of {len} bytes exceeds the limit of {max} for kind {kind}")]
    TooLong { kind: u8, len: u32, max: u32 },
    #[error("chunk frame too short for its header ({0} bytes)")]
    ShortChunk(usize),
    #[error("chunk at disk {disk} offset {offset}: unknown encoding {encoding}")]
    UnknownEncoding {
        disk: u16,
        offset: u64,
        encoding: u8,
    },
    #[error(
        "chunk at disk {disk} offset {offset}: length {len} is not inside one {CHUNK_SIZE}-byte cell"
    )]
    BadChunkLength { disk: u16, offset: u64, len: u32 },
    #[error(
        "chunk at disk {disk} offset {offset}: payload does not decode to {len} bytes: {reason}"
    )]
    Decode {
        disk: u16,
        offset: u64,
        len: u32,
        reason: String,
    },
    #[error("chunk at disk {disk} offset {offset}: BLAKE3 mismatch (corrupted in transit)")]
    HashMismatch { disk: u16, offset: u64 },
    #[error("control message is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// True when every byte is zero (compared in blocks the compiler vectorises).
pub fn is_zero(data: &[u8]) -> bool {
    const Z: [u8; 256] = [0u8; 256];
    let mut it = data.chunks_exact(256);
    let full = it.by_ref().all(|c| c == Z);
    full && it.remainder().iter().all(|b| *b == 0)
}

/// How a chunk's bytes are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    Raw = 0,
    Zstd = 1,
    /// All bytes are zero; no payload.
    Zero = 2,
}

impl Encoding {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Encoding::Raw),
            1 => Some(Encoding::Zstd),
            2 => Some(Encoding::Zero),
            _ => None,
        }
    }
}

/// Fixed chunk header: `disk u16 | encoding u8 | reserved u8 | len u32 |
/// offset u64 | blake3 [32]`, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub disk: u16,
    pub encoding: Encoding,
    /// Uncompressed length.
    pub len: u32,
    pub offset: u64,
    /// BLAKE3 of the uncompressed bytes.
    pub hash: [u8; 32],
}

impl ChunkHeader {
    pub fn to_bytes(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[0..2].copy_from_slice(&self.disk.to_le_bytes());
        b[2] = self.encoding as u8;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..48].copy_from_slice(&self.hash);
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, FrameError> {
        let h: &[u8; CHUNK_HEADER_LEN] = b
            .get(..CHUNK_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FrameError::ShortChunk(b.len()))?;
        let disk = u16::from_le_bytes([h[0], h[1]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&h[8..16]);
        let offset = u64::from_le_bytes(off);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&h[16..48]);
        let encoding = Encoding::from_u8(h[2]).ok_or(FrameError::UnknownEncoding {
            disk,
            offset,
            encoding: h[2],
        })?;
        // A chunk never crosses a grid cell, so resume offsets stay comparable.
        let cell_end = (offset / CHUNK_SIZE)
            .checked_add(1)
            .and_then(|c| c.checked_mul(CHUNK_SIZE));
        let end = offset.checked_add(u64::from(len));
        match (cell_end, end) {
            (Some(c), Some(e)) if len > 0 && e <= c => {}
            _ => return Err(FrameError::BadChunkLength { disk, offset, len }),
        }
        Ok(ChunkHeader {
            disk,
            encoding,
            len,
            offset,
            hash,
        })
    }
}

/// A received chunk, not yet decoded.
#[derive(Debug)]
pub struct Chunk {
    pub header: ChunkHeader,
    pub payload: Vec<u8>,
}

/// Decoded chunk content.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkData {
    Zero,
    Bytes(Vec<u8>),
}

impl Chunk {
    /// Decodes the payload and checks it against the header's BLAKE3. This is
    /// the only way the receiver gets at chunk bytes, so an unverified chunk
    /// can never be written.
    pub fn decode_verified(self) -> Result<ChunkData, FrameError> {
        let h = self.header;
        let decode_err = |reason: String| FrameError::Decode {
            disk: h.disk,
            offset: h.offset,
            len: h.len,
            reason,
        };
        let (data, hash) = match h.encoding {
            Encoding::Zero => {
                if !self.payload.is_empty() {
                    return Err(decode_err("zero record with payload".into()));
                }
                (ChunkData::Zero, zero_hash(h.len))
            }
            Encoding::Raw => {
                if self.payload.len() != h.len as usize {
                    return Err(decode_err(format!("{} raw bytes", self.payload.len())));
                }
                let hash = *blake3::hash(&self.payload).as_bytes();
                (ChunkData::Bytes(self.payload), hash)
            }
            Encoding::Zstd => {
                // Capacity is the header's length, bounded by CHUNK_SIZE in
                // parse(); zstd refuses to write past it.
                let out = zstd::bulk::decompress(&self.payload, h.len as usize)
                    .map_err(|e| decode_err(e.to_string()))?;
                if out.len() != h.len as usize {
                    return Err(decode_err(format!("{} bytes", out.len())));
                }
                let hash = *blake3::hash(&out).as_bytes();
                (ChunkData::Bytes(out), hash)
            }
        };
        if hash != h.hash {
            return Err(FrameError::HashMismatch {
                disk: h.disk,
                offset: h.offset,
            });
        }
        Ok(data)
    }
}

/// One frame read off the wire.
#[derive(Debug)]
pub enum Frame {
    Control(Vec<u8>),
    Chunk(Chunk),
}

/// How large a frame of each kind may be. Before the peer has shown the token
/// only a hello can come, so [`FrameLimits::PRE_AUTH`] refuses anything
/// larger than one (and every data chunk) before a byte of it is read or
/// allocated: an unauthenticated client costs the receiver a few KiB at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub control: u32,
    pub chunk: u32,
}

impl FrameLimits {
    /// Before authentication: a hello (version and token) fits in 8 KiB.
    pub const PRE_AUTH: FrameLimits = FrameLimits {
        control: MAX_HELLO_LEN,
        chunk: 0,
    };
    /// After authentication.
    pub const SESSION: FrameLimits = FrameLimits {
        control: MAX_CONTROL_LEN,
        chunk: MAX_CHUNK_FRAME_LEN,
    };
}

/// Largest hello frame accepted before the token is checked.
pub const MAX_HELLO_LEN: u32 = 8 << 10;

pub fn read_frame(r: &mut impl Read) -> Result<Frame, FrameError> {
    read_frame_within(r, FrameLimits::SESSION)
}

/// Reads one frame, refusing (from its 5-byte prefix alone) a kind or
/// length `limits` does not allow.
pub fn read_frame_within(r: &mut impl Read, limits: FrameLimits) -> Result<Frame, FrameError> {
    let mut prefix = [0u8; 5];
    r.read_exact(&mut prefix)?;
    let kind = prefix[0];
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    let max = match kind {
        KIND_CONTROL => limits.control,
        KIND_CHUNK => limits.chunk,
        other => return Err(FrameError::UnknownKind(other)),
    };
    if len > max {
        return Err(FrameError::TooLong { kind, len, max });
    }
    if kind == KIND_CONTROL {
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload)?;
        return Ok(Frame::Control(payload));
    }
    let data_len = (len as usize)
        .checked_sub(CHUNK_HEADER_LEN)
        .ok_or(FrameError::ShortChunk(len as usize))?;
    let mut head = [0u8; CHUNK_HEADER_LEN];
    r.read_exact(&mut head)?;
    let header = ChunkHeader::parse(&head)?;
    let mut payload = vec![0u8; data_len];
    r.read_exact(&mut payload)?;
    Ok(Frame::Chunk(Chunk { header, payload }))
}

pub fn write_control(w: &mut impl Write, json: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(json.len())
        .ok()
        .filter(|l| *l <= MAX_CONTROL_LEN)
        .ok_or(FrameError::TooLong {
            kind: KIND_CONTROL,
            len: u32::MAX,
            max: MAX_CONTROL_LEN,
        })?;
    let mut prefix = [KIND_CONTROL, 0, 0, 0, 0];
    prefix[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&prefix)?;
    w.write_all(json)?;
    Ok(())
}

pub fn write_chunk(
    w: &mut impl Write,
    header: &ChunkHeader,
    payload: &[u8],
) -> Result<(), FrameError> {
    let total = payload.len() + CHUNK_HEADER_LEN;
    let len = u32::try_from(total)
        .ok()
        .filter(|l| *l <= MAX_CHUNK_FRAME_LEN)
        .ok_or(FrameError::TooLong {
            kind: KIND_CHUNK,
            len: u32::MAX,
            max: MAX_CHUNK_FRAME_LEN,
        })?;
    let mut head = [0u8; 5 + CHUNK_HEADER_LEN];
    head[0] = KIND_CHUNK;
    head[1..5].copy_from_slice(&len.to_be_bytes());
    head[5..].copy_from_slice(&header.to_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the 5-byte prefix is there: a reader that would read (or allocate
    /// for) the payload would fail with end-of-file instead of `TooLong`.
    #[test]
    fn pre_auth_limits_refuse_from_the_prefix_alone() {
        for (kind, len) in [
            (KIND_CONTROL, MAX_HELLO_LEN + 1),
            (KIND_CONTROL, (16 << 20) - 1),
            (KIND_CHUNK, 100),
        ] {
            let mut prefix = vec![kind];
            prefix.extend_from_slice(&len.to_be_bytes());
            match read_frame_within(&mut &prefix[..], FrameLimits::PRE_AUTH) {
                Err(FrameError::TooLong {
                    kind: k,
                    len: l,
                    max,
                }) => {
                    assert_eq!((k, l), (kind, len));
                    assert_eq!(
                        max,
                        if kind == KIND_CONTROL {
                            MAX_HELLO_LEN
                        } else {
                            0
                        }
                    );
                }
                other => panic!("kind {kind} len {len}: {other:?}"),
            }
        }
        let mut hello = vec![KIND_CONTROL];
        hello.extend_from_slice(&3u32.to_be_bytes());
        hello.extend_from_slice(b"{ }");
        assert!(matches!(
            read_frame_within(&mut &hello[..], FrameLimits::PRE_AUTH),
            Ok(Frame::Control(p)) if p == b"{ }"
        ));
    }

    fn header_for(data: &[u8], encoding: Encoding) -> ChunkHeader {
        ChunkHeader {
            disk: 1,
            encoding,
            len: data.len() as u32,
            offset: CHUNK_SIZE * 3,
            hash: *blake3::hash(data).as_bytes(),
        }
    }

    fn roundtrip(header: &ChunkHeader, payload: &[u8]) -> Chunk {
        let mut buf = Vec::new();
        write_chunk(&mut buf, header, payload).unwrap();
        match read_frame(&mut buf.as_slice()).unwrap() {
            Frame::Chunk(c) => c,
            Frame::Control(_) => panic!("expected a chunk"),
        }
    }

    #[test]
    fn chunks_roundtrip_in_every_encoding() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let raw = roundtrip(&header_for(&data, Encoding::Raw), &data);
        assert_eq!(
            raw.decode_verified().unwrap(),
            ChunkData::Bytes(data.clone())
        );
        let z = zstd::bulk::compress(&data, 1).unwrap();
        let c = roundtrip(&header_for(&data, Encoding::Zstd), &z);
        assert_eq!(c.decode_verified().unwrap(), ChunkData::Bytes(data.clone()));
        let zeros = vec![0u8; 8192];
        let zr = roundtrip(&header_for(&zeros, Encoding::Zero), &[]);
        assert_eq!(zr.decode_verified().unwrap(), ChunkData::Zero);
    }

    #[test]
    fn a_corrupted_chunk_is_detected_not_returned() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 31) as u8).collect();
        let mut c = roundtrip(&header_for(&data, Encoding::Raw), &data);
        c.payload[4242] ^= 0x10;
        assert!(matches!(
            c.decode_verified(),
            Err(FrameError::HashMismatch { disk: 1, offset }) if offset == CHUNK_SIZE * 3
        ));
        // Compressed: a flipped byte either breaks zstd or the hash.
        let z = zstd::bulk::compress(&data, 1).unwrap();
        let mut c = roundtrip(&header_for(&data, Encoding::Zstd), &z);
        let mid = c.payload.len() / 2;
        c.payload[mid] ^= 0x01;
        assert!(matches!(
            c.decode_verified(),
            Err(FrameError::HashMismatch { .. } | FrameError::Decode { .. })
        ));
        // A "zero" record claiming the hash of non-zero data.
        let zr = roundtrip(&header_for(&data, Encoding::Zero), &[]);
        assert!(matches!(
            zr.decode_verified(),
            Err(FrameError::HashMismatch { .. })
        ));
    }

    /// A zstd payload that claims 4 KiB but inflates to 64 MiB: zstd stops at
    /// the declared length, so the receiver never holds more than that.
    #[test]
    fn a_zstd_bomb_is_refused_by_its_declared_length() {
        let claimed = vec![0u8; 4096];
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let c = roundtrip(&header_for(&claimed, Encoding::Zstd), &bomb);
        match c.decode_verified() {
            Err(FrameError::Decode {
                len: 4096, reason, ..
            }) => {
                assert!(reason.to_lowercase().contains("destination"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_and_cross_cell_chunks_are_refused_before_allocation() {
        let mut buf = vec![KIND_CHUNK];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_frame(&mut buf.as_slice()),
            Err(FrameError::TooLong { .. })
        ));
        let mut h = header_for(&[1, 2, 3], Encoding::Raw);
        h.offset = CHUNK_SIZE - 1;
        assert!(matches!(
            ChunkHeader::parse(&h.to_bytes()),
            Err(FrameError::BadChunkLength { .. })
        ));
        assert!(matches!(
            read_frame(&mut [9u8, 0, 0, 0, 0].as_slice()),
            Err(FrameError::UnknownKind(9))
        ));
    }

    proptest::proptest! {
        #[test]
        fn read_frame_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(Frame::Chunk(c)) = read_frame(&mut bytes.as_slice()) {
                let _ = c.decode_verified();
            }
        }
    }
}
