//! Hashing, zero detection and adaptive zstd for one chunk.
//!
//! Compression is only worth its CPU when it shrinks the chunk and when the
//! link, not the CPU, is the bottleneck. A 64 KiB sample at level 1 predicts
//! whether the chunk shrinks; the fill level of the send queue tells whether
//! the link is waiting for us (compress less) or we are waiting for the link
//! (compress harder).

use crate::wire::frame::{Encoding, is_zero};

const SAMPLE: usize = 64 * 1024;
/// A chunk must shrink to this fraction to be sent compressed.
const MUST_SHRINK: f64 = 0.9;
/// With an idle link, only clearly compressible chunks are worth the CPU.
const IDLE_LINK_SHRINK: f64 = 0.6;

/// How busy the link is, from the send queue's fill level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The sender thread is waiting for chunks: CPU is the bottleneck.
    Idle,
    Normal,
    /// The send queue is full: the link is the bottleneck.
    Saturated,
}

pub struct Encoder {
    /// Level 1 for the sample that predicts whether a chunk shrinks.
    sampler: zstd::bulk::Compressor<'static>,
    /// The chunk's compressor, at the level asked for.
    compressor: zstd::bulk::Compressor<'static>,
    level: i32,
    out: Vec<u8>,
}

/// The result of encoding one chunk.
pub struct Encoded {
    pub hash: [u8; 32],
    pub encoding: Encoding,
    /// Empty for zero records; the raw bytes for raw chunks.
    pub payload: Vec<u8>,
    /// The zstd level of a zstd chunk, else 0.
    pub level: i32,
}

impl Encoder {
    pub fn new() -> std::io::Result<Self> {
        Ok(Encoder {
            sampler: zstd::bulk::Compressor::new(1)?,
            compressor: zstd::bulk::Compressor::new(1)?,
            level: 1,
            out: Vec::new(),
        })
    }

    /// Hashes `data` and picks its encoding, compressing at `level` (from
    /// [`super::level::LevelControl`]; one higher when the send queue is
    /// full right now). Takes ownership so a raw chunk is passed on without
    /// a copy.
    pub fn encode(&mut self, data: Vec<u8>, link: LinkState, level: i32) -> Encoded {
        let hash = *blake3::hash(&data).as_bytes();
        if is_zero(&data) {
            return Encoded {
                hash,
                encoding: Encoding::Zero,
                payload: Vec::new(),
                level: 0,
            };
        }
        let needed = if link == LinkState::Idle {
            IDLE_LINK_SHRINK
        } else {
            MUST_SHRINK
        };
        let sample = &data[..data.len().min(SAMPLE)];
        let predicted = match self.sampler.compress(sample) {
            Ok(c) => c.len() as f64 / sample.len() as f64,
            Err(_) => 1.0,
        };
        if predicted > needed {
            return raw(hash, data);
        }
        let level = match link {
            LinkState::Saturated => level.saturating_add(1),
            _ => level,
        }
        .clamp(1, zstd::zstd_safe::max_c_level());
        if level != self.level && self.compressor.set_compression_level(level).is_ok() {
            self.level = level;
        }
        self.out.clear();
        self.out
            .reserve(zstd::zstd_safe::compress_bound(data.len()));
        match self.compressor.compress_to_buffer(&data, &mut self.out) {
            Ok(n) if (n as f64) <= MUST_SHRINK * data.len() as f64 => Encoded {
                hash,
                encoding: Encoding::Zstd,
                payload: std::mem::take(&mut self.out),
                level: self.level,
            },
            _ => raw(hash, data),
        }
    }
}

fn raw(hash: [u8; 32], data: Vec<u8>) -> Encoded {
    Encoded {
        hash,
        encoding: Encoding::Raw,
        payload: data,
        level: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_the_content() {
        let mut e = Encoder::new().unwrap();
        let zeros = vec![0u8; 300_001];
        assert_eq!(
            e.encode(zeros, LinkState::Normal, 1).encoding,
            Encoding::Zero
        );
        let mut almost = vec![0u8; 300_001];
        almost[300_000] = 1;
        assert!(!is_zero(&almost));
        let text: Vec<u8> = b"the quick brown fox "
            .iter()
            .cycle()
            .take(1 << 20)
            .copied()
            .collect();
        let t = e.encode(text.clone(), LinkState::Idle, 1);
        assert_eq!(t.encoding, Encoding::Zstd);
        assert_eq!(t.level, 1);
        // A higher level is used when asked for, and decodes the same.
        let t9 = e.encode(text.clone(), LinkState::Normal, 9);
        assert_eq!(t9.level, 9);
        assert_eq!(
            zstd::bulk::decompress(&t9.payload, text.len()).unwrap(),
            text
        );
        assert_eq!(
            zstd::bulk::decompress(&t.payload, text.len()).unwrap(),
            text
        );
        assert_eq!(t.hash, *blake3::hash(&text).as_bytes());
        // Pseudo-random bytes do not shrink: sent raw, no wasted full compression.
        let mut x = 0x9E3779B97F4A7C15u64;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let n = e.encode(noise.clone(), LinkState::Saturated, 3);
        assert_eq!(n.encoding, Encoding::Raw);
        assert_eq!(n.payload, noise);
    }
}
