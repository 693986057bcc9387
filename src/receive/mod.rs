//! `p2xen receive`: the dom0 end of the copy.

pub mod admission;
pub mod cli;
pub mod conversion;
pub mod delta;
pub mod direct;
pub mod in_use;
pub mod journal;
pub mod limit;
pub mod report;
pub mod session;
pub mod store;
pub mod verify;
pub mod writer;

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use admission::AdmissionLimits;
use session::{Ctx, Outcome};
use store::{Store, StoreSpec};

use crate::wire::{auth, tls};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/p2xen";

#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub listen: String,
    pub store: String,
    pub state_dir: PathBuf,
    pub token_file: Option<PathBuf>,
    pub once: bool,
    pub force: bool,
    pub json: bool,
    /// Run the guest conversion after a verified copy, writing xl configs
    /// here (`--xen-dir`, default /etc/xen); `None` with `--no-convert`.
    pub xen_dir: Option<PathBuf>,
    /// `--no-fixup`, `--vif-per-nic`, `--guest-kernel` for every conversion.
    pub policy: crate::guest::ConversionPolicy,
    /// Caps and deadline before authentication.
    pub admission: AdmissionLimits,
    /// Bandwidth limit of each session (`--limit RATE`); a migration's own
    /// (`p2xen receive --limit NAME RATE`) overrides it.
    pub limit: Option<crate::wire::rate::Rate>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("state directory {path}: {source}")]
    State { path: PathBuf, source: io::Error },
    #[error("token file {path}: {msg}")]
    Token { path: PathBuf, msg: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("migration failed: {0}")]
    Failed(String),
}

/// The receiver's credentials, as printed for the user.
pub struct Credentials {
    pub identity: tls::Identity,
    pub token: String,
    pub fingerprint: String,
}

/// Creates or loads the certificate, key and token in the state directory,
/// and writes `STATE/fingerprint`.
pub fn credentials(
    state_dir: &Path,
    token_file: Option<&Path>,
) -> Result<Credentials, ReceiveError> {
    session::create_private_dir(state_dir).map_err(|source| ReceiveError::State {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let identity = tls::Identity::load_or_create(state_dir)?;
    let fingerprint = identity.fingerprint();
    tls::write_private(
        &state_dir.join("fingerprint"),
        format!("{fingerprint}\n").as_bytes(),
    )?;
    let token_path = token_file.map_or_else(|| state_dir.join("token"), Path::to_path_buf);
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let t = auth::generate_token().map_err(tls::TlsError::from)?;
            tls::write_private(&token_path, format!("{t}\n").as_bytes())?;
            t
        }
        Err(e) => {
            return Err(ReceiveError::Token {
                path: token_path,
                msg: e.to_string(),
            });
        }
    };
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ReceiveError::Token {
            path: token_path,
            msg: "token must be at least 16 characters without spaces".into(),
        });
    }
    Ok(Credentials {
        identity,
        token,
        fingerprint,
    })
}

/// The address senders should use: the listen address, or for a wildcard
/// listen the first non-loopback IPv4 address of this host.
fn advertised(addr: SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let ip = nix::ifaddrs::getifaddrs().ok().and_then(|mut it| {
        it.find_map(|i| {
            let sin = i.address?.as_sockaddr_in().copied()?;
            let ip = IpAddr::V4(sin.ip());
            (!ip.is_loopback()).then_some(ip)
        })
    });
    match ip {
        Some(ip) => SocketAddr::new(ip, addr.port()).to_string(),
        None => format!("HOST:{}", addr.port()),
    }
}

/// Runs the receiver until killed, or with `--once` until one migration ends.
pub fn run(opts: &ReceiveOptions) -> Result<(), ReceiveError> {
    let creds = credentials(&opts.state_dir, opts.token_file.as_deref())?;
    let store = Store::new(StoreSpec::parse(&opts.store)?, &opts.state_dir);
    store.check()?;
    if let StoreSpec::Dir(d) = &store.spec {
        std::fs::create_dir_all(d).map_err(|source| ReceiveError::State {
            path: d.clone(),
            source,
        })?;
    }
    let listen_error = |source| ReceiveError::Listen {
        addr: opts.listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&opts.listen).map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    print_listening(opts.json, local, &creds);
    let ctx = Arc::new(Ctx::new(
        tls::server_config(&creds.identity)?,
        creds.token,
        store,
        opts.state_dir.clone(),
        opts,
    ));
    let (done_tx, done_rx) = mpsc::channel::<Outcome>();
    std::thread::spawn(move || accept(listener, ctx, done_tx));
    for outcome in done_rx.iter() {
        match outcome {
            Outcome::Refused(r) => log::warn!("refused: {r}"),
            Outcome::Interrupted(r) => log::warn!("interrupted (resumable): {r}"),
            Outcome::Completed(rep) => {
                if opts.json {
                    println!(
                        "{}",
                        serde_json::json!({"event": "complete", "report": rep})
                    );
                }
                if opts.once {
                    return Ok(());
                }
            }
            Outcome::Failed(r) => {
                log::error!("failed: {r}");
                if opts.once {
                    return Err(ReceiveError::Failed(r));
                }
            }
        }
    }
    Ok(())
}

/// What the administrator needs to start the live image: address,
/// fingerprint, token, and all three as kernel parameters.
fn print_listening(json: bool, local: SocketAddr, creds: &Credentials) {
    let server = advertised(local);
    let params = format!(
        "p2xen.server={server} p2xen.token={} p2xen.fingerprint={}",
        creds.token, creds.fingerprint
    );
    let mut out = io::stdout().lock();
    if json {
        let ev = serde_json::json!({"event": "listening", "address": local.to_string(), "server": server,
            "fingerprint": creds.fingerprint, "token": creds.token, "kernel_parameters": params});
        let _ = writeln!(out, "{ev}");
    } else {
        let _ = writeln!(out, "p2xen receiver listening on {local}");
        let _ = writeln!(out, "fingerprint: {}", creds.fingerprint);
        let _ = writeln!(out, "token: {}", creds.token);
        let _ = writeln!(out, "kernel parameters: {params}");
    }
    let _ = out.flush();
}

/// Accepts connections for ever, one session thread each; every session's
/// outcome goes to `done`.
fn accept(listener: TcpListener, ctx: Arc<Ctx>, done: mpsc::Sender<Outcome>) {
    for conn in listener.incoming() {
        let tcp = match conn {
            Ok(t) => t,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        // Over the cap: closed before any TLS state or thread exists.
        let ticket = match tcp.peer_addr().map(|a| (a, ctx.admission.admit(a.ip()))) {
            Ok((_, Ok(t))) => t,
            Ok((addr, Err(e))) => {
                log::warn!("refused: {addr}: {e}");
                continue;
            }
            Err(e) => {
                log::warn!("accept: no peer address: {e}");
                continue;
            }
        };
        let ctx = ctx.clone();
        let tx = done.clone();
        // One thread per session: several sources migrate at once.
        std::thread::spawn(move || {
            let outcome = session::serve(tcp, &ctx, ticket);
            let _ = tx.send(outcome);
        });
    }
}

/// Whether a session is writing an unfinished migration now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Nobody writes it: the sender resumes it when it reconnects.
    Interrupted,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
        })
    }
}

/// An unfinished migration found in the state directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unfinished {
    pub name: String,
    pub state: RunState,
    pub store: PathBuf,
    pub sessions: u32,
    pub disks: usize,
    pub committed_bytes: u64,
    pub plan_bytes: u64,
    /// A running session's last progress record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<session::Progress>,
}

/// `p2xen receive --status` / `--list`: migrations with a journal but no
/// verified report, by name.
pub fn list_unfinished(state_dir: &Path) -> Vec<Unfinished> {
    let Ok(dir) = std::fs::read_dir(state_dir.join("journal")) else {
        return Vec::new();
    };
    let mut out: Vec<Unfinished> = dir
        .flatten()
        .filter_map(|e| {
            let jdir = e.path();
            let meta: session::Meta =
                serde_json::from_slice(&std::fs::read(jdir.join("meta.json")).ok()?).ok()?;
            let committed_bytes = (0..meta.disks.len())
                .filter_map(|i| journal::Journal::open(&jdir.join(format!("disk{i}.journal"))).ok())
                .map(|j| j.committed_bytes())
                .sum();
            let state = match session::is_running(&jdir) {
                true => RunState::Running,
                false => RunState::Interrupted,
            };
            let progress = (state == RunState::Running)
                .then(|| std::fs::read(session::progress_path(&jdir)).ok())
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok());
            Some(Unfinished {
                name: meta.name,
                state,
                store: meta.store,
                sessions: meta.sessions,
                disks: meta.disks.len(),
                committed_bytes,
                plan_bytes: meta.disks.iter().map(|d| d.plan_bytes).sum(),
                progress,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
