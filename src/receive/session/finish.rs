//! The last stages: what was not sent is zeroed, every disk read back and
//! verified, the copy recorded, converted to a guest and reported.

use std::fs;
use std::path::Path;

use super::super::report;
use super::super::verify::verify_disk;
use super::super::writer::{DiskSink, Writer};
use super::{Ctx, Outcome, Session, SessionError, Tls, refuse, send};
use crate::wire::message::Message;
use crate::wire::report::{CopyReport, CopyState, DiskCopyReport};

impl Session<'_> {
    /// Zeroes what was not sent (LVM), verifies by reading back, and
    /// records the copy as complete.
    pub(super) fn verify(
        &self,
        s: &mut Tls,
        writer: &mut Writer,
        digests: &[Option<String>],
        rep: &mut CopyReport,
    ) -> Result<(), SessionError> {
        let name = self.name;
        let mut verified = Vec::new();
        let mut failure = None;
        for (i, d) in writer.disks.iter_mut().enumerate() {
            let written = d.journal().ranges();
            if let Err(e) = d.target.fill_gaps(&written).and_then(|_| d.target.sync()) {
                let msg = format!("disk {i}: {e}");
                log::error!("{name}: {msg}");
                rep.error = Some(msg.clone());
                save_report(self.dir, rep);
                refuse(s, msg.clone(), e.is_full());
                return Err(if e.is_full() {
                    SessionError::Failed(msg)
                } else {
                    SessionError::Interrupted(msg)
                });
            }
            match verify_disk(d, digests.get(i).and_then(|x| x.as_deref())) {
                Ok(digest) => verified.push(Some(digest)),
                Err(e) => {
                    verified.push(None);
                    failure.get_or_insert(e.to_string());
                }
            }
        }
        rep.disks = disk_reports(self.ctx, name, &writer.disks, digests, &verified);
        rep.finished_unix = report::now_unix();
        if let Some(msg) = failure {
            log::error!("{name}: verification failed: {msg}");
            rep.error = Some(msg.clone());
            save_report(self.dir, rep);
            refuse(s, msg.clone(), false);
            return Err(SessionError::Interrupted(msg));
        }
        rep.error = None;
        if self.warm {
            // The marker stays, saying why: `p2xen convert` refuses such a copy.
            rep.state = CopyState::PreCopy;
            for i in 0..writer.disks.len() {
                let marker = self.dir.join(format!("disk{i}.img.incomplete"));
                let _ = fs::write(&marker, PRE_COPY_MARKER);
            }
        } else {
            rep.state = CopyState::Complete;
            for i in 0..writer.disks.len() {
                let _ = fs::remove_file(self.dir.join(format!("disk{i}.img.incomplete")));
            }
        }
        save_report(self.dir, rep);
        Ok(())
    }

    /// The guest conversion on the verified copy (which is recorded before
    /// the conversion touches it), then Done with the report.
    pub(super) fn convert_and_report(&self, s: &mut Tls, mut rep: CopyReport) -> Outcome {
        let name = self.name;
        let mut converted = true;
        if self.warm {
            log::info!(
                "{name}: pre-copy of the running server verified; it is not consistent: shut the server down, boot the p2xen live image and send again under --name {name} (the cutover) to finish it"
            );
        } else if let Some(xen_dir) = &self.ctx.xen_dir {
            // A cutover converts the new state again, over its own earlier
            // config and partition images.
            let replace = self.cutover;
            match super::super::conversion::after_verified_copy(
                self.dir,
                name,
                xen_dir,
                &self.ctx.policy,
                replace,
            ) {
                Ok(conv) => rep.conversion = Some(conv),
                Err(msg) => {
                    let msg = format!(
                        "copy verified, but the guest conversion failed: {msg}; fix it and run p2xen convert --name {name} --store {}",
                        self.ctx.store.meta_root.display()
                    );
                    log::error!("{name}: {msg}");
                    rep.error = Some(msg);
                    save_report(self.dir, &rep);
                    converted = false;
                }
            }
        }
        send(
            s,
            &Message::Done {
                report: Box::new(rep.clone()),
            },
        );
        s.conn.send_close_notify();
        let _ = std::io::Write::flush(s);
        match rep.error.clone() {
            Some(msg) if !converted => Outcome::Failed(msg),
            _ => Outcome::Completed(Box::new(rep)),
        }
    }
}

/// What `diskN.img.incomplete` says after a verified pre-copy.
const PRE_COPY_MARKER: &[u8] = b"pre-copy from the running server: verified, but not consistent; \
boot the server from the p2xen live image and send again under the same name (the cutover) to finish it\n";

pub(super) fn disk_reports(
    ctx: &Ctx,
    name: &str,
    disks: &[DiskSink],
    digests: &[Option<String>],
    verified: &[Option<String>],
) -> Vec<DiskCopyReport> {
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let ok = verified.get(i).and_then(|v| v.clone());
            DiskCopyReport {
                disk: d.announce.disk,
                source: d.announce.source.clone(),
                target: ctx.store.disk_path(name, i).display().to_string(),
                size_bytes: d.announce.size_bytes,
                plan_bytes: d.announce.plan_bytes,
                chunks: d.announce.chunks,
                committed_bytes: d.journal().committed_bytes(),
                zero_chunks: d.zero_chunks,
                unchanged_chunks: d.unchanged_chunks,
                unchanged_bytes: d.unchanged_bytes,
                verified: ok.is_some(),
                content_digest: ok.or_else(|| digests.get(i).cloned().flatten()),
                notes: d.announce.notes.clone(),
            }
        })
        .collect()
}

pub(super) fn save_report(dir: &Path, rep: &CopyReport) {
    if let Err(e) = report::write(dir, rep) {
        log::error!("{}/report.json: {e}", dir.display());
    }
}
