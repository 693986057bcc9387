//! Digests both ends compute the same way, so agreement proves the copy.
//!
//! The *plan digest* covers which byte ranges are transferred; the *content
//! digest* covers those ranges plus each chunk's BLAKE3, in offset order. With
//! the per-chunk hashes verified on read-back, equal content digests mean the
//! image holds exactly the sender's bytes over the whole transferred map.

/// One transferred chunk: where it lies and the BLAKE3 of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChunkRecord {
    pub offset: u64,
    pub len: u32,
    pub hash: [u8; 32],
}

/// Digest over the chunk ranges only. `records` must be sorted by offset.
pub fn plan_digest(ranges: impl IntoIterator<Item = (u64, u32)>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"p2xen-plan-v1");
    for (offset, len) in ranges {
        h.update(&offset.to_le_bytes());
        h.update(&len.to_le_bytes());
    }
    format!("blake3:{}", h.finalize().to_hex())
}

/// Digest over ranges and chunk hashes. `records` must be sorted by offset.
pub fn content_digest<'a>(records: impl IntoIterator<Item = &'a ChunkRecord>) -> String {
    let mut h = ContentHasher::new();
    for r in records {
        h.add(r);
    }
    h.finish()
}

/// Streaming form of [`content_digest`], fed in offset order; the sender
/// keeps one per disk across reconnects so nothing is hashed twice.
#[derive(Debug, Clone)]
pub struct ContentHasher(blake3::Hasher);

impl Default for ContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ContentHasher {
    pub fn new() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"p2xen-content-v1");
        ContentHasher(h)
    }

    pub fn add(&mut self, r: &ChunkRecord) {
        self.0.update(&r.offset.to_le_bytes());
        self.0.update(&r.len.to_le_bytes());
        self.0.update(&r.hash);
    }

    pub fn finish(&self) -> String {
        format!("blake3:{}", self.0.finalize().to_hex())
    }
}

/// BLAKE3 of `len` zero bytes; the common full-chunk case is computed once.
pub fn zero_hash(len: u32) -> [u8; 32] {
    use std::sync::OnceLock;
    static FULL: OnceLock<[u8; 32]> = OnceLock::new();
    let compute = |len: u32| {
        let mut h = blake3::Hasher::new();
        let block = [0u8; 64 * 1024];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(block.len());
            h.update(&block[..n]);
            left -= n;
        }
        *h.finalize().as_bytes()
    };
    if u64::from(len) == super::CHUNK_SIZE {
        *FULL.get_or_init(|| compute(len))
    } else {
        compute(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_hash_matches_plain_blake3() {
        for len in [0u32, 1, 4096, 70_000, super::super::CHUNK_SIZE as u32] {
            let z = vec![0u8; len as usize];
            assert_eq!(zero_hash(len), *blake3::hash(&z).as_bytes());
        }
    }

    #[test]
    fn content_digest_depends_on_every_field() {
        let a = ChunkRecord {
            offset: 0,
            len: 10,
            hash: [1; 32],
        };
        let mut b = a;
        let d = content_digest([&a]);
        b.offset = 1;
        assert_ne!(d, content_digest([&b]));
        b = a;
        b.hash[31] = 0;
        assert_ne!(d, content_digest([&b]));
        assert_ne!(plan_digest([(0, 10)]), plan_digest([(0, 11)]));
    }
}
