//! `p2xen send`: its arguments and the exit status.

use super::{ProgressEvent, SendOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// Receiver address HOST:PORT.
    #[arg(long)]
    pub server: String,
    /// Token printed by `p2xen receive`.
    #[arg(long)]
    pub token: String,
    /// Receiver certificate fingerprint, sha256:HEX.
    #[arg(long)]
    pub fingerprint: String,
    /// Migration name on the receiver (default: the hostname).
    #[arg(long)]
    pub name: Option<String>,
    /// Send every block (forensic copy), not only used filesystem blocks.
    #[arg(long)]
    pub all_blocks: bool,
    /// Pre-copy from this running server (its disks may be mounted): the
    /// receiver verifies it but keeps it as not consistent, until the
    /// cutover (the same send from the live image) finishes it.
    #[arg(long)]
    pub warm: bool,
    /// Bandwidth limit on the wire: 50M (MiB/s), 800Mbit, or off.
    #[arg(long, value_name = "RATE")]
    pub limit: Option<crate::wire::rate::Limit>,
    /// One JSON event per line on stdout instead of text on stderr.
    #[arg(long)]
    pub json: bool,
    /// Keep reconnecting for this many seconds after a connection loss.
    #[arg(long, default_value_t = 600)]
    pub retry_for: u64,
    /// Disks or images to send (disk0, disk1, ... in this order); default:
    /// all fixed disks of this machine.
    pub sources: Vec<PathBuf>,
}

/// Sends; progress as text on stderr or JSON lines on stdout.
pub fn run(a: SendArgs) -> ExitCode {
    let mut opts = SendOptions::new(&a.server, &a.token, &a.fingerprint, a.sources);
    opts.name = a.name;
    opts.all_blocks = a.all_blocks;
    opts.warm = a.warm;
    opts.limit = a.limit.and_then(|l| l.0);
    opts.retry_for = std::time::Duration::from_secs(a.retry_for);
    let json = a.json;
    opts.progress = Some(std::sync::Arc::new(move |ev: &ProgressEvent| {
        if json {
            println!("{}", serde_json::to_string(ev).unwrap_or_default());
        } else {
            log::info!("{}", super::progress::text(ev));
        }
    }));
    match super::run(&opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "error", "error": e.to_string()})
                );
            }
            log::error!("send failed: {e}");
            ExitCode::FAILURE
        }
    }
}
