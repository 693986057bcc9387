//! The fourth stage: chunks handed to the writer thread in order, offers
//! answered in a cutover, each disk's content digest taken, until Finish.

use std::sync::mpsc::{SyncSender, sync_channel};

use super::super::delta::{self, TargetReader};
use super::super::limit::SessionLimit;
use super::super::store;
use super::super::writer::{DiskSink, Input, Writer};
use std::path::Path;

use super::super::report;
use super::finish::{disk_reports, save_report};
use super::meta::{Progress, progress_path, write_progress};
use super::{Session, SessionError, Tls, journal_dir, linger, refuse, send};
use crate::wire::frame::{Frame, read_frame};
use crate::wire::message::Message;
use crate::wire::report::CopyReport;
use crate::wire::sequence::{Phase, Side};

impl Session<'_> {
    /// Chunks, handed to the writer thread in order, until Finish. Returns
    /// the writer with its disks and each disk's announced content digest.
    pub(super) fn receive_chunks(
        &self,
        s: &mut Tls,
        sinks: Vec<DiskSink>,
        rep: &mut CopyReport,
    ) -> Result<(Writer, Vec<Option<String>>), SessionError> {
        let name = self.name;
        let (tx, rx) = sync_channel(4);
        let json = self.ctx.json;
        let pname = name.to_string();
        let n = sinks.len();
        let mut readers = if self.cutover {
            cutover_readers(&sinks).map_err(|e| {
                let msg = e.to_string();
                SessionError::Failed(refuse(s, msg, true))
            })?
        } else {
            Vec::new()
        };
        let writer = Writer::new(sinks);
        let jdir = journal_dir(&self.ctx.state_dir, name);
        let handle = std::thread::spawn(move || {
            writer.run(
                rx,
                Box::new(move |d, secs| {
                    progress(&pname, d, secs, json);
                    record_progress(&jdir, d, secs);
                }),
            )
        });
        let mut digests: Vec<Option<String>> = vec![None; n];
        let read_result = self.read_until_finish(s, &tx, &mut readers, &mut digests);
        drop(tx);
        let (writer, write_result) = handle
            .join()
            .map_err(|_| SessionError::Failed("writer thread panicked".into()))?;
        if let Err(e) = write_result {
            let msg = e.to_string();
            log::error!("{name}: {msg}");
            rep.disks = disk_reports(self.ctx, name, &writer.disks, &digests, &[]);
            rep.error = Some(msg.clone());
            save_report(self.dir, rep);
            refuse(s, msg.clone(), e.is_fatal());
            linger(s);
            return Err(if e.is_fatal() {
                SessionError::Failed(msg)
            } else {
                SessionError::Interrupted(msg)
            });
        }
        if let Err(msg) = read_result {
            log::warn!("{name}: {msg}; committed data is kept for resume");
            return Err(SessionError::Interrupted(msg));
        }
        Ok((writer, digests))
    }

    /// Reads frames until Finish. Ok also when the writer stopped: its own
    /// error says why. Err: why the connection cannot go on.
    fn read_until_finish(
        &self,
        s: &mut Tls,
        tx: &SyncSender<Input>,
        readers: &mut [TargetReader],
        digests: &mut [Option<String>],
    ) -> Result<(), String> {
        let mut limit = SessionLimit::new(&self.ctx.state_dir, self.name, self.ctx.limit);
        loop {
            let j = match read_frame(s) {
                Ok(Frame::Chunk(c)) => {
                    let len = c.payload.len() as u64;
                    if tx.send(Input::Chunk(c)).is_err() {
                        return Ok(());
                    }
                    limit.after(len);
                    continue;
                }
                Ok(Frame::Control(j)) => j,
                Err(e) => return Err(format!("connection lost: {e}")),
            };
            let m = serde_json::from_slice::<Message>(&j)
                .map_err(|e| format!("bad control message: {e}"))?;
            Phase::Copy
                .check(Side::Sender, &m)
                .map_err(|e| e.to_string())?;
            match m {
                Message::Offer { disk, chunks } if self.cutover => {
                    let keep = |i| tx.send(i).is_ok();
                    let offsets =
                        delta::answer(readers, disk, &chunks, keep).map_err(|e| e.to_string())?;
                    send(s, &Message::Want { disk, offsets });
                }
                Message::DiskEnd {
                    disk,
                    content_digest,
                } => {
                    if let Some(slot) = digests.get_mut(usize::from(disk)) {
                        *slot = Some(content_digest);
                    }
                }
                Message::Finish => return Ok(()),
                other => return Err(format!("unexpected message {other:?} outside a cutover")),
            }
        }
    }
}

/// A reader beside each target, for hashing what it holds.
fn cutover_readers(sinks: &[DiskSink]) -> Result<Vec<TargetReader>, store::StoreError> {
    sinks
        .iter()
        .map(|d| TargetReader::open(d.target.path(), d.announce.size_bytes))
        .collect()
}

fn progress(name: &str, disks: &[DiskSink], secs: f64, json: bool) {
    for d in disks {
        let done = d.journal().committed_bytes().max(d.received_bytes);
        let total = d.announce.plan_bytes;
        if json {
            let ev = serde_json::json!({"event": "progress", "name": name, "disk": d.announce.disk,
                "done_bytes": done, "total_bytes": total, "received_this_session": d.received_bytes, "seconds": secs});
            println!("{ev}");
        } else {
            let rate = d.received_bytes as f64 / secs.max(0.001) / 1048576.0;
            log::info!(
                "{name} disk{}: {} of {} MiB ({:.0}%), {rate:.1} MiB/s",
                d.announce.disk,
                done >> 20,
                total >> 20,
                100.0 * done as f64 / (total.max(1)) as f64
            );
        }
    }
}

/// For `p2xen receive --status`, beside the journal.
fn record_progress(jdir: &Path, disks: &[DiskSink], secs: f64) {
    let received: u64 = disks.iter().map(|d| d.received_bytes).sum();
    let p = Progress {
        updated_unix: report::now_unix(),
        received_bytes: received,
        bytes_per_sec: received as f64 / secs.max(0.001),
    };
    if let Err(e) = write_progress(jdir, &p) {
        log::debug!("{}: {e}", progress_path(jdir).display());
    }
}
