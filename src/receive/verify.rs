//! End-of-copy verification: the journal must cover exactly the announced
//! plan, every chunk must read back with its BLAKE3, and the content digest
//! must equal the sender's.

use super::writer::DiskSink;
use crate::wire::digest::{content_digest, plan_digest};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "disk {disk}: {have} of {want} chunks committed (plan digest differs): the copy is not finished"
    )]
    Missing { disk: u16, have: usize, want: u64 },
    #[error(
        "disk {disk}: {bad} chunk(s) read back with the wrong BLAKE3, first at offset {first}: they will be re-sent"
    )]
    ReadBack { disk: u16, bad: usize, first: u64 },
    #[error("disk {disk}: {source}")]
    Store {
        disk: u16,
        source: super::store::StoreError,
    },
    #[error("disk {disk}: content digest {ours} differs from the sender's {theirs}")]
    Digest {
        disk: u16,
        ours: String,
        theirs: String,
    },
    #[error("disk {disk}: the sender did not send its content digest")]
    NoDigest { disk: u16 },
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
}

/// Verifies one disk; returns its content digest.
pub fn verify_disk(
    sink: &mut DiskSink,
    sender_digest: Option<&str>,
) -> Result<String, VerifyError> {
    let disk = sink.announce.disk;
    let records: Vec<_> = sink.journal().committed.values().copied().collect();
    let plan = plan_digest(records.iter().map(|r| (r.offset, r.len)));
    if records.len() as u64 != sink.announce.chunks || plan != sink.announce.plan_digest {
        return Err(VerifyError::Missing {
            disk,
            have: records.len(),
            want: sink.announce.chunks,
        });
    }
    let mut buf = Vec::new();
    let mut bad = Vec::new();
    for r in &records {
        // r.len <= CHUNK_SIZE: the frame parser refused anything larger.
        buf.resize(r.len as usize, 0);
        sink.target
            .read_at(r.offset, &mut buf)
            .map_err(|source| VerifyError::Store { disk, source })?;
        if *blake3::hash(&buf).as_bytes() != r.hash {
            bad.push(r.offset);
        }
    }
    if let Some(first) = bad.first().copied() {
        let n = bad.len();
        sink.journal().drop_records(&bad)?;
        return Err(VerifyError::ReadBack {
            disk,
            bad: n,
            first,
        });
    }
    let ours = content_digest(records.iter());
    match sender_digest {
        None => Err(VerifyError::NoDigest { disk }),
        Some(theirs) if theirs != ours => Err(VerifyError::Digest {
            disk,
            ours,
            theirs: theirs.to_string(),
        }),
        Some(_) => Ok(ours),
    }
}
