//! Consoles and the init's logger: every message goes to every `console=`
//! device, to the kernel log (`/dev/kmsg`) and to `/run/p2xen.log`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

static LOGGER: std::sync::OnceLock<&'static InitLogger> = std::sync::OnceLock::new();

/// Reopens the consoles of the installed init logger, if there is one.
pub fn reopen() {
    if let Some(l) = LOGGER.get() {
        l.reopen();
    }
}

struct Sinks {
    /// Consoles asked for, so they can be reopened after a hangup.
    wanted: Vec<PathBuf>,
    consoles: Vec<(PathBuf, File)>,
    /// `attach(&[])`: no console output at all while the menu owns the
    /// terminals. Falling back to stderr (as when no console could be
    /// opened) would write to /dev/console, one of the menu's terminals,
    /// and a log line there scrolls the menu's screen away.
    silent: bool,
    kmsg: Option<File>,
    file: Option<File>,
}

/// The init's `log::Log`: consoles + kmsg + /run/p2xen.log.
pub struct InitLogger {
    sinks: Mutex<Sinks>,
    level: log::LevelFilter,
}

fn open_write(path: &PathBuf) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC)
        .open(path)
        .ok()
}

impl InitLogger {
    /// Installs the logger; until [`InitLogger::attach`] runs (no /dev yet)
    /// messages go to stderr, which the kernel opened on /dev/console.
    pub fn install(level: log::LevelFilter) -> &'static InitLogger {
        let logger: &'static InitLogger = Box::leak(Box::new(InitLogger {
            sinks: Mutex::new(Sinks {
                wanted: Vec::new(),
                consoles: Vec::new(),
                silent: false,
                kmsg: None,
                file: None,
            }),
            level,
        }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(level);
            let _ = LOGGER.set(logger);
        }
        logger
    }

    /// Opens the consoles again. Needed after a session leader that had a
    /// console as its controlling tty (the rescue shell) exits: the kernel
    /// hangs that tty up, and every descriptor opened before fails with EIO.
    pub fn reopen(&self) {
        let wanted = match self.sinks.lock() {
            Ok(s) => s.wanted.clone(),
            Err(poisoned) => poisoned.into_inner().wanted.clone(),
        };
        self.attach(&wanted);
    }

    /// Opens the consoles, /dev/kmsg and the log file; call again after /run
    /// is mounted. Returns the consoles that could be opened.
    pub fn attach(&self, consoles: &[PathBuf]) -> Vec<PathBuf> {
        let mut sinks = match self.sinks.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sinks.wanted = consoles.to_vec();
        sinks.silent = consoles.is_empty();
        sinks.consoles = consoles
            .iter()
            .filter_map(|p| open_write(p).map(|f| (p.clone(), f)))
            .collect();
        sinks.kmsg = open_write(&PathBuf::from("/dev/kmsg"));
        sinks.file = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open("/run/p2xen.log")
            .ok();
        sinks.consoles.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Writes text as is to every console (for prompts and summaries).
    pub fn console_write(&self, text: &str) {
        let mut sinks = match self.sinks.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if sinks.consoles.is_empty() && !sinks.silent {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        for (_, f) in sinks.consoles.iter_mut() {
            let _ = f.write_all(text.as_bytes());
        }
        if let Some(f) = sinks.file.as_mut() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

impl log::Log for InitLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match record.level() {
            log::Level::Info => format!("p2xen: {}\n", record.args()),
            level => format!(
                "p2xen: {}: {}\n",
                level.as_str().to_lowercase(),
                record.args()
            ),
        };
        let mut sinks = match self.sinks.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if sinks.consoles.is_empty() && !sinks.silent {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        for (_, f) in sinks.consoles.iter_mut() {
            let _ = f.write_all(line.as_bytes());
        }
        if let Some(f) = sinks.file.as_mut() {
            let _ = f.write_all(line.as_bytes());
        }
        // Priority 7 (debug) keeps the kernel from echoing the record to the
        // consoles a second time at the default loglevel; `dmesg` has it.
        if let Some(f) = sinks.kmsg.as_mut() {
            let _ = f.write_all(format!("<7>{line}").as_bytes());
        }
    }

    fn flush(&self) {}
}

/// The kernel's console log level (`/proc/sys/kernel/printk`, first field).
const PRINTK: &str = "/proc/sys/kernel/printk";

/// Keeps the kernel's own messages (a NIC's "link is up", a USB stick
/// plugged in) off the consoles while the menu owns them: a line there
/// scrolls the menu's screen. They still reach the kernel log (`dmesg`).
/// The previous level comes back on drop.
pub struct QuietKernel {
    saved: Option<String>,
}

impl QuietKernel {
    /// Only emergencies (level 0) reach the consoles from now on.
    pub fn start() -> QuietKernel {
        let saved = std::fs::read_to_string(PRINTK)
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_string));
        if let Err(e) = std::fs::write(PRINTK, "1") {
            log::warn!("{PRINTK}: {e}; kernel messages may scribble over the menu");
        }
        QuietKernel { saved }
    }
}

impl Drop for QuietKernel {
    fn drop(&mut self) {
        if let Some(level) = self.saved.take() {
            let _ = std::fs::write(PRINTK, level);
        }
    }
}
