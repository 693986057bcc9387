//! `p2xen receive`: its arguments and the exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::admission::AdmissionLimits;
use crate::guest::cli::PolicyArgs;
use crate::wire::name::MigrationName;
use crate::wire::rate::Rate;

#[derive(Debug, Clone, clap::Args)]
pub struct ReceiveArgs {
    /// Address to listen on, ADDR:PORT.
    #[arg(long, required_unless_present_any = ["list", "status", "limit"])]
    pub listen: Option<String>,
    /// Where images go: a directory (sparse STORE/NAME/diskN.img), lvm:VG,
    /// or dev:/dev/X[,/dev/Y...] (disk N to the Nth existing device).
    #[arg(long, required_unless_present_any = ["list", "status", "limit"])]
    pub store: Option<String>,
    /// Bandwidth limit: `--limit RATE` for every session of this receiver;
    /// `--limit NAME RATE` (no --listen) changes migration NAME's limit,
    /// also while it runs, and exits. RATE: 50M (MiB/s), 800Mbit, or off.
    #[arg(long, num_args = 1..=2, value_names = ["NAME", "RATE"])]
    pub limit: Vec<String>,
    /// Certificate, key, token and resume journals.
    #[arg(long, default_value = super::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Take the token from FILE (created with a new token if missing).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Exit after the first migration finishes (0 = verified, 1 = failed).
    #[arg(long)]
    pub once: bool,
    /// Replace an existing migration of the same name; with dev:, also
    /// overwrite devices that carry a partition table or filesystem.
    #[arg(long)]
    pub force: bool,
    /// JSON events on stdout.
    #[arg(long)]
    pub json: bool,
    /// List interrupted migrations and exit.
    #[arg(long)]
    pub list: bool,
    /// Show running and interrupted migrations with their progress (a
    /// table, or JSON with --json) and exit; reads only the state directory.
    #[arg(long)]
    pub status: bool,
    /// Directory for the guests' xl configs written by the conversion.
    #[arg(long, default_value = "/etc/xen")]
    pub xen_dir: PathBuf,
    /// Only copy and verify; skip the guest conversion (run `p2xen convert` later).
    #[arg(long, conflicts_with_all = ["guest_kernel", "no_fixup", "vif_per_nic"])]
    pub no_convert: bool,
    /// Conversion settings for every conversion this receiver runs (as
    /// `p2xen convert`'s); `--guest-kernel` is the supplied-kernel route
    /// for servers whose own kernel cannot run under Xen, such as 32-bit ones.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Seconds a client has for its TLS handshake and hello together.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub hello_timeout: u64,
    /// Connections that have not shown the token yet, all addresses together.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_unauthenticated: u64,
    /// Connections that have not shown the token yet, from one address.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_unauthenticated_per_address: u64,
}

/// Serves migrations, or lists the interrupted ones with `--list`.
pub fn run(a: ReceiveArgs) -> ExitCode {
    if a.list || a.status {
        print_unfinished(&a);
        return ExitCode::SUCCESS;
    }
    if let [name, rate] = a.limit.as_slice() {
        return set_limit(&a.state_dir, name, rate);
    }
    let limit = match a.limit.first().map(|r| Rate::parse_limit(r)) {
        None => None,
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            log::error!("receive: --limit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(listen), Some(store)) = (a.listen, a.store) else {
        log::error!("--listen and --store are required");
        return ExitCode::FAILURE;
    };
    // Checked before listening: a missing kernel file would otherwise
    // surface only after a whole copy, as a failed conversion.
    let policy = match a.policy.resolve() {
        Ok(p) => p,
        Err(e) => {
            log::error!("receive: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = super::ReceiveOptions {
        listen,
        store,
        state_dir: a.state_dir,
        token_file: a.token_file,
        once: a.once,
        force: a.force,
        json: a.json,
        xen_dir: (!a.no_convert).then_some(a.xen_dir),
        policy,
        admission: AdmissionLimits {
            total: usize::try_from(a.max_unauthenticated).unwrap_or(usize::MAX),
            per_address: usize::try_from(a.max_unauthenticated_per_address).unwrap_or(usize::MAX),
            hello_deadline: Duration::from_secs(a.hello_timeout),
        },
        limit,
    };
    match super::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("receive: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `p2xen receive --limit NAME RATE`: records the limit where the running
/// session (or the next one of NAME) reads it.
fn set_limit(state_dir: &std::path::Path, name: &str, rate: &str) -> ExitCode {
    let checked = MigrationName::parse(name)
        .map_err(|e| e.to_string())
        .and_then(|_| Rate::parse_limit(rate).map_err(|e| e.to_string()));
    let limit = match checked {
        Ok(l) => l,
        Err(e) => {
            log::error!("receive --limit {name} {rate}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match super::limit::set(state_dir, name, limit) {
        Ok(path) => {
            let what = limit.map_or("no limit".to_string(), |r| r.to_string());
            println!(
                "{name}: {what} (in {}); a running copy applies it within a second",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!(
                "receive --limit {name} {rate}: {}: {e}",
                super::limit::limit_path(state_dir, name).display()
            );
            ExitCode::FAILURE
        }
    }
}

fn print_unfinished(a: &ReceiveArgs) {
    let mut list = super::list_unfinished(&a.state_dir);
    if !a.status {
        list.retain(|m| m.state == super::RunState::Interrupted);
    }
    if a.json {
        println!("{}", serde_json::to_string(&list).unwrap_or_default());
    } else if list.is_empty() {
        let what = if a.status {
            "unfinished"
        } else {
            "interrupted"
        };
        println!("no {what} migrations in {}", a.state_dir.display());
    } else if a.status {
        print!("{}", status_table(&list));
    } else {
        for m in list {
            println!(
                "{}: {} disk(s), {} of {} MiB committed, {} session(s), store {}",
                m.name,
                m.disks,
                m.committed_bytes >> 20,
                m.plan_bytes >> 20,
                m.sessions,
                m.store.display()
            );
        }
    }
}

/// One line per migration under a header, columns aligned.
fn status_table(list: &[super::Unfinished]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "DISKS".into(),
        "COMMITTED".into(),
        "RATE".into(),
        "SESSIONS".into(),
        "STORE".into(),
    ]];
    for m in list {
        let pct = 100.0 * m.committed_bytes as f64 / m.plan_bytes.max(1) as f64;
        let rate = m.progress.as_ref().map_or("-".to_string(), |p| {
            format!("{:.1} MiB/s", p.bytes_per_sec / 1048576.0)
        });
        rows.push([
            m.name.clone(),
            m.state.to_string(),
            m.disks.to_string(),
            format!(
                "{} of {} MiB ({pct:.0}%)",
                m.committed_bytes >> 20,
                m.plan_bytes >> 20
            ),
            rate,
            m.sessions.to_string(),
            m.store.display().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}
