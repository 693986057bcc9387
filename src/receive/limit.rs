//! The receiver's bandwidth limit per migration: `--limit RATE` when it
//! starts, changed while a copy runs with `p2xen receive --limit NAME RATE`,
//! which writes `STATE/limits/NAME`; the session reads that file again every
//! second. A file rather than a signal: it names the migration, survives a
//! reconnect and a receiver restart, and needs no process id.
//!
//! The receiver paces its reads; TCP's flow control then slows the sender,
//! whatever its own `--limit` says.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::wire::rate::{Pacer, Rate};

const RECHECK: Duration = Duration::from_secs(1);

pub fn limit_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("limits").join(name)
}

/// Records `limit` for migration `name` (`None`: unlimited, which also
/// overrides the receiver's `--limit`).
pub fn set(state_dir: &Path, name: &str, limit: Option<Rate>) -> io::Result<PathBuf> {
    let path = limit_path(state_dir, name);
    if let Some(dir) = path.parent() {
        super::session::create_private_dir(dir)?;
    }
    let text = limit.map_or("off".to_string(), |r| r.bytes_per_sec().to_string());
    // Written aside and renamed: a session never reads half a number.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{text}\n"))?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// One session's pacer and where its limit may change.
pub struct SessionLimit {
    name: String,
    path: PathBuf,
    default: Option<Rate>,
    pacer: Pacer,
    /// The file's content last read (`None`: no file).
    seen: Option<String>,
    checked: Instant,
}

impl SessionLimit {
    pub fn new(state_dir: &Path, name: &str, default: Option<Rate>) -> Self {
        let mut l = SessionLimit {
            name: name.to_string(),
            path: limit_path(state_dir, name),
            default,
            pacer: Pacer::new(default),
            seen: None,
            checked: Instant::now(),
        };
        l.reread();
        if let Some(r) = l.pacer.rate() {
            log::info!("{}: bandwidth limit {r}", l.name);
        }
        l
    }

    /// After reading `bytes`: waits as the limit says, and picks up a
    /// changed limit once a second.
    pub fn after(&mut self, bytes: u64) {
        if self.checked.elapsed() >= RECHECK {
            self.checked = Instant::now();
            let before = self.pacer.rate();
            self.reread();
            let now = self.pacer.rate();
            if now != before {
                match now {
                    Some(r) => log::info!("{}: bandwidth limit now {r}", self.name),
                    None => log::info!("{}: bandwidth limit lifted", self.name),
                }
            }
        }
        self.pacer.pace(bytes);
    }

    fn reread(&mut self) {
        let text = fs::read_to_string(&self.path).ok();
        if text == self.seen {
            return;
        }
        let rate = match text.as_deref().map(Rate::parse_limit) {
            None => self.default,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                log::warn!("{}: {e}; keeping the limit as it was", self.path.display());
                self.seen = text;
                return;
            }
        };
        self.seen = text;
        self.pacer.set_rate(rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_overrides_the_default_and_off_lifts_it() {
        let d = tempfile::tempdir().unwrap();
        let ten = "10M".parse::<Rate>().unwrap();
        let mut l = SessionLimit::new(d.path(), "web", Some(ten));
        assert_eq!(l.pacer.rate(), Some(ten));
        let two = "2M".parse::<Rate>().unwrap();
        let path = set(d.path(), "web", Some(two)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "2097152\n");
        l.reread();
        assert_eq!(l.pacer.rate(), Some(two));
        set(d.path(), "web", None).unwrap();
        l.reread();
        assert_eq!(l.pacer.rate(), None);
        // A broken file keeps what was there; removing it restores the default.
        fs::write(&path, "lots\n").unwrap();
        l.reread();
        assert_eq!(l.pacer.rate(), None);
        fs::remove_file(&path).unwrap();
        l.reread();
        assert_eq!(l.pacer.rate(), Some(ten));
    }
}
