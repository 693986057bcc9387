//! The sender's half of a cutover pass: offer the hashes of planned chunks
//! in small batches, hold their bytes until the receiver answers, and send
//! only the chunks it asks for.
//!
//! Two batches are in flight at once, so the receiver hashes one while the
//! sender reads the next and the link's round trip is not paid per batch;
//! memory stays at a few batches of chunks whatever the disk size.

use std::collections::VecDeque;

use super::compress::{Encoder, LinkState};
use crate::wire::digest::ChunkRecord;
use crate::wire::message::OfferedChunk;

/// Chunks per offer: 4 × 4 MiB keeps memory low and an offer's answer
/// (hashing 16 MiB on dom0) quick.
pub const BATCH_CHUNKS: usize = 4;
/// Offers sent and not yet answered, at most.
pub const IN_FLIGHT: usize = 2;

/// One planned chunk whose bytes wait for the receiver's answer.
pub struct Held {
    pub record: ChunkRecord,
    pub data: Vec<u8>,
}

/// An offer on the wire, waiting for its [`crate::wire::message::Message::Want`].
pub struct Offered {
    pub disk: u16,
    pub chunks: Vec<Held>,
}

impl Offered {
    pub fn hashes(&self) -> Vec<OfferedChunk> {
        self.chunks
            .iter()
            .map(|h| OfferedChunk::of(&h.record))
            .collect()
    }
}

/// The batches of a cutover: being filled (one per disk) and in flight.
pub struct Offers {
    filling: Vec<Offered>,
    pub in_flight: VecDeque<Offered>,
    pub encoder: Encoder,
}

impl Offers {
    pub fn new() -> std::io::Result<Self> {
        Ok(Offers {
            filling: Vec::new(),
            in_flight: VecDeque::new(),
            encoder: Encoder::new()?,
        })
    }

    /// Adds a chunk; returns its disk's batch when that is full.
    pub fn hold(&mut self, disk: u16, held: Held) -> Option<Offered> {
        let i = match self.filling.iter().position(|b| b.disk == disk) {
            Some(i) => i,
            None => {
                self.filling.push(Offered {
                    disk,
                    chunks: Vec::new(),
                });
                self.filling.len() - 1
            }
        };
        let batch = self.filling.get_mut(i)?;
        batch.chunks.push(held);
        (batch.chunks.len() >= BATCH_CHUNKS).then(|| self.filling.swap_remove(i))
    }

    /// The partly filled batches, once the disks are read.
    pub fn drain_filling(&mut self) -> Vec<Offered> {
        std::mem::take(&mut self.filling)
    }

    /// Encodes a wanted chunk as a fresh copy would have sent it.
    pub fn encode(&mut self, data: Vec<u8>) -> super::compress::Encoded {
        // The connection thread encodes these itself: the cheapest level, so
        // a cutover never waits for compression.
        self.encoder.encode(data, LinkState::Normal, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(offset: u64) -> Held {
        Held {
            record: ChunkRecord {
                offset,
                len: 1,
                hash: [0; 32],
            },
            data: vec![0],
        }
    }

    #[test]
    fn batches_fill_per_disk_and_the_rest_drains() {
        let mut o = Offers::new().unwrap();
        for i in 0..BATCH_CHUNKS as u64 - 1 {
            assert!(o.hold(0, held(i)).is_none());
            assert!(o.hold(1, held(i)).is_none());
        }
        let full = o.hold(1, held(99)).unwrap();
        assert_eq!(full.disk, 1);
        assert_eq!(full.chunks.len(), BATCH_CHUNKS);
        let rest = o.drain_filling();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].disk, 0);
        assert_eq!(rest[0].chunks.len(), BATCH_CHUNKS - 1);
    }
}
