//! What `p2xen send` reports when it is done: per disk and in total, with
//! the receiver's own report as it answered.

use serde::Serialize;

use super::disks::SourceDisk;
use crate::wire::report::{CopyReport, CopyState};

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskSendReport {
    pub disk: u16,
    pub source: String,
    pub size_bytes: u64,
    pub plan_bytes: u64,
    pub chunks: u64,
    /// Bytes left out by the plan (unused filesystem blocks, swap body).
    pub skipped_unused_bytes: u64,
    /// Planned bytes that were all-zero (sent as zero records).
    pub zero_bytes: u64,
    /// Planned bytes found already committed on the receiver after a reconnect.
    pub resumed_bytes: u64,
    /// Cutover: planned bytes the receiver's copy held already (their hashes
    /// matched), so they were not sent.
    pub unchanged_bytes: u64,
    /// Uncompressed bytes of the data chunks sent.
    pub data_bytes: u64,
    /// Chunk payload bytes put on the wire.
    pub wire_bytes: u64,
    /// Chunks sent zstd-compressed, by level (see `send/level.rs`).
    pub zstd_levels: std::collections::BTreeMap<i32, u64>,
    pub content_digest: String,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SendReport {
    pub name: String,
    pub server: String,
    pub connections: u32,
    pub seconds: f64,
    pub disks: Vec<DiskSendReport>,
    pub wire_bytes: u64,
    /// data_bytes / wire_bytes over all disks.
    pub compression_ratio: f64,
    /// The receiver's report.json, as it answered.
    pub receiver_report: CopyReport,
}

impl SendReport {
    /// The per-disk figures and their totals.
    pub(super) fn of_disks(disks: Vec<SourceDisk>, receiver_report: CopyReport) -> SendReport {
        let wire: u64 = disks.iter().map(|d| d.report.wire_bytes).sum();
        let data: u64 = disks.iter().map(|d| d.report.data_bytes).sum();
        SendReport {
            disks: disks.into_iter().map(|d| d.report).collect(),
            wire_bytes: wire,
            compression_ratio: if wire == 0 {
                1.0
            } else {
                data as f64 / wire as f64
            },
            receiver_report,
            ..SendReport::default()
        }
    }

    pub fn summary(&self) -> String {
        let m = |b: u64| b as f64 / 1048576.0;
        let sum = |f: fn(&DiskSendReport) -> u64| self.disks.iter().map(f).sum::<u64>();
        let digests: Vec<String> = self
            .disks
            .iter()
            .map(|d| format!("disk{} {}", d.disk, d.content_digest))
            .collect();
        let cutover = if self.receiver_report.cutover {
            format!(
                ", cutover: {:.1} MiB unchanged on the receiver",
                m(sum(|d| d.unchanged_bytes))
            )
        } else {
            String::new()
        };
        let pre_copy = match self.receiver_report.state {
            CopyState::PreCopy => {
                "pre-copy (not consistent until the cutover from the live image) "
            }
            _ => "",
        };
        format!(
            "{pre_copy}done in {:.1} s over {} connection(s): sent {:.1} MiB of data as {:.1} MiB on the wire (ratio {:.2}), skipped {:.1} MiB unused, {:.1} MiB zero, {:.1} MiB already there{cutover}; {}",
            self.seconds,
            self.connections,
            m(sum(|d| d.data_bytes)),
            m(self.wire_bytes),
            self.compression_ratio,
            m(sum(|d| d.skipped_unused_bytes)),
            m(sum(|d| d.zero_bytes)),
            m(sum(|d| d.resumed_bytes)),
            digests.join(", ")
        )
    }
}
