//! Progress events of a send: what the CLI prints and the menu draws.

use serde::Serialize;

use super::SendReport;

#[derive(Debug, Clone, Serialize)]
pub struct DiskProgress {
    pub disk: u16,
    pub source: String,
    /// Bytes of the plan done (sent, or found committed on the receiver).
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The plan: per disk what will be sent.
    Plan {
        disks: Vec<DiskProgress>,
        skipped_unused_bytes: u64,
    },
    Connecting {
        server: String,
        attempt: u32,
    },
    Connected {
        server: String,
        resumed: bool,
        already_committed_bytes: u64,
    },
    Progress {
        disks: Vec<DiskProgress>,
        done_bytes: u64,
        total_bytes: u64,
        bytes_per_sec: f64,
        eta_secs: Option<f64>,
        wire_bytes: u64,
    },
    ConnectionLost {
        error: String,
        retry_in_secs: f64,
        gives_up_in_secs: f64,
    },
    /// All sent; the receiver verifies by reading back.
    Verifying,
    Finished {
        report: Box<SendReport>,
    },
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// The one-line text form for stderr.
pub fn text(ev: &ProgressEvent) -> String {
    match ev {
        ProgressEvent::Plan {
            disks,
            skipped_unused_bytes,
        } => {
            let mut s = format!(
                "plan: skipping {:.0} MiB unused;",
                mib(*skipped_unused_bytes)
            );
            for d in disks {
                s.push_str(&format!(
                    " disk{} {} {:.0} MiB",
                    d.disk,
                    d.source,
                    mib(d.total_bytes)
                ));
            }
            s
        }
        ProgressEvent::Connecting { server, attempt } => {
            format!("connecting to {server} (attempt {attempt})")
        }
        ProgressEvent::Connected {
            server,
            resumed,
            already_committed_bytes,
        } => {
            if *resumed {
                format!(
                    "connected to {server}: resuming, {:.0} MiB already on the receiver",
                    mib(*already_committed_bytes)
                )
            } else {
                format!("connected to {server}")
            }
        }
        ProgressEvent::Progress {
            disks,
            done_bytes,
            total_bytes,
            bytes_per_sec,
            eta_secs,
            ..
        } => {
            let mut s = format!(
                "total {:.0}/{:.0} MiB ({:.0}%), {:.1} MiB/s, ETA {}",
                mib(*done_bytes),
                mib(*total_bytes),
                100.0 * *done_bytes as f64 / (*total_bytes).max(1) as f64,
                bytes_per_sec / 1048576.0,
                eta_secs.map_or("?".to_string(), |e| format!("{e:.0} s"))
            );
            for d in disks {
                s.push_str(&format!(
                    "; disk{} {:.0}/{:.0} MiB",
                    d.disk,
                    mib(d.done_bytes),
                    mib(d.total_bytes)
                ));
            }
            s
        }
        ProgressEvent::ConnectionLost {
            error,
            retry_in_secs,
            gives_up_in_secs,
        } => format!(
            "connection lost ({error}); retrying in {retry_in_secs:.1} s (giving up in {gives_up_in_secs:.0} s)"
        ),
        ProgressEvent::Verifying => "all sent; receiver is reading back and verifying".into(),
        ProgressEvent::Finished { report } => report.summary(),
    }
}
