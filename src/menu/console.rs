//! The menu on several consoles at once: raw mode, polling, who has
//! control, EOF/EIO handling, the rescue shell.

use super::app::{App, MenuOutcome, Request};
use super::backend::Backend;
use super::draw;
use super::keys::{Key, KeyDecoder};
use super::prefill::MenuPrefill;
use super::render::Renderer;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MenuError {
    #[error("no console given for the menu")]
    NoConsole,
    #[error("cannot open any console for the menu ({path}: {source})")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How long a lone ESC waits for the rest of an arrow key; serial lines
/// deliver a sequence's bytes within a few ms even at 9600 baud.
const ESC_WAIT: Duration = Duration::from_millis(60);
/// Repaint tick for progress.
const TICK: Duration = Duration::from_millis(250);
/// Output queued for one console at most: a few full screens.
const MAX_QUEUE: usize = 64 * 1024;

struct Console {
    path: PathBuf,
    name: String,
    file: File,
    saved: Option<Termios>,
    renderer: Renderer,
    decoder: KeyDecoder,
    alive: bool,
    /// Bytes not yet taken by the terminal. Writes never block: a serial
    /// line at 9600 baud (or one held by flow control) must not stall the
    /// other consoles or the keys; a new frame is only computed once the
    /// previous one is out, so slow consoles skip intermediate frames.
    out: Vec<u8>,
}

impl Console {
    fn open(path: &Path) -> std::io::Result<Console> {
        let mut c = Console {
            path: path.to_path_buf(),
            name: console_name(path),
            file: open_tty(path)?,
            saved: None,
            renderer: Renderer::new(),
            decoder: KeyDecoder::new(),
            alive: true,
            out: Vec::new(),
        };
        c.raw();
        Ok(c)
    }

    /// Opens the terminal again: a rescue shell that made it its
    /// controlling tty leaves it hung up when it exits, and every earlier
    /// descriptor then fails with EIO.
    fn reopen(&mut self) {
        match open_tty(&self.path) {
            Ok(f) => {
                self.file = f;
                self.alive = true;
                self.out.clear();
                self.decoder = KeyDecoder::new();
                self.raw();
            }
            Err(e) => {
                log::warn!("menu: cannot reopen {}: {e}", self.path.display());
                self.alive = false;
            }
        }
    }

    /// Raw mode: keys arrive one by one, no echo, no CR/LF translation.
    /// Not a terminal (a file in a test): left as it is.
    fn raw(&mut self) {
        if let Ok(t) = termios::tcgetattr(self.file.as_fd()) {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            if termios::tcsetattr(self.file.as_fd(), SetArg::TCSANOW, &raw).is_ok() {
                self.saved = Some(t);
            }
        }
    }

    fn restore(&mut self) {
        if let Some(t) = self.saved.take() {
            let _ = termios::tcsetattr(self.file.as_fd(), SetArg::TCSANOW, &t);
        }
    }

    /// Queues `bytes` and writes what the terminal takes now.
    fn write(&mut self, bytes: &[u8]) {
        if !self.alive {
            return;
        }
        if self.out.len().saturating_add(bytes.len()) > MAX_QUEUE {
            // Far behind (flow control held): drop the queue and repaint
            // everything once the line moves again.
            self.out.clear();
            self.renderer.invalidate();
            return;
        }
        self.out.extend_from_slice(bytes);
        self.flush();
    }

    fn flush(&mut self) {
        while self.alive && !self.out.is_empty() {
            match self.file.write(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n.min(self.out.len()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("menu: console {} closed on write: {e}", self.path.display());
                    self.alive = false;
                }
            }
        }
    }

    /// Waits (bounded) until the queue is out, e.g. before a shell takes
    /// over the terminal.
    fn drain(&mut self, limit: Duration) {
        let start = std::time::Instant::now();
        while self.alive && !self.out.is_empty() && start.elapsed() < limit {
            self.flush();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.alive {
            // Leave the terminal usable: plain video, cursor at the bottom.
            self.write(b"\x1b[0m\x1b[24;1H\r\n");
            self.drain(Duration::from_secs(1));
        }
        self.restore();
    }
}

/// Read-write, not as controlling tty, non-blocking (see `Console::out`).
fn open_tty(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path)?;
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        file.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(file)
}

/// "ttyS0" for /dev/ttyS0, "pts/3" for /dev/pts/3.
fn console_name(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.strip_prefix("/dev/").unwrap_or(&s).to_string()
}

/// Console `i` takes control: logged, and every screen repainted (the
/// others switch to "menu in use on ...").
fn take_control(app: &mut App, terms: &mut [Console], i: usize) -> usize {
    if let Some(t) = terms.get(i) {
        app.log(format!("menu: control taken on {}", console_name(&t.path)));
    }
    for t in terms.iter_mut() {
        t.renderer.invalidate();
    }
    i
}

/// Runs the menu on every console in `consoles` until the user chooses
/// power off, reboot or shell, or until every console is gone.
pub fn run(
    consoles: &[PathBuf],
    prefill: MenuPrefill,
    backend: &dyn Backend,
) -> Result<MenuOutcome, MenuError> {
    if consoles.is_empty() {
        return Err(MenuError::NoConsole);
    }
    let mut terms = Vec::new();
    let mut first_err = None;
    for p in consoles {
        match Console::open(p) {
            Ok(c) => terms.push(c),
            Err(e) => {
                log::warn!("menu: cannot open console {}: {e}", p.display());
                first_err.get_or_insert((p.clone(), e));
            }
        }
    }
    if terms.is_empty() {
        let (path, source) = first_err.ok_or(MenuError::NoConsole)?;
        return Err(MenuError::Open { path, source });
    }
    let mut app = App::new(prefill, backend);
    let mut controller: Option<usize> = None;
    loop {
        app.poll_migration();
        for (i, t) in terms.iter_mut().enumerate() {
            t.flush();
            if !t.out.is_empty() {
                continue;
            }
            let grid = match controller {
                Some(c) if c != i => {
                    draw::draw_watcher(&app, &console_name(consoles_path(c, consoles)))
                }
                _ => draw::draw(&app, &t.name),
            };
            let bytes = t.renderer.frame(&grid);
            t.write(&bytes);
        }
        if controller.is_some_and(|c| terms.get(c).is_none_or(|t| !t.alive)) {
            controller = None;
        }
        if terms.iter().all(|t| !t.alive) {
            return Ok(closed(&mut app));
        }
        let pending = terms.iter().any(|t| t.decoder.pending());
        let keys = wait_keys(&mut terms, if pending { ESC_WAIT } else { TICK });
        for (i, key) in keys {
            if controller.is_none() {
                controller = Some(take_control(&mut app, &mut terms, i));
            }
            if key == Key::Redraw {
                if let Some(t) = terms.get_mut(i) {
                    t.renderer.invalidate();
                }
                continue;
            }
            if controller != Some(i) {
                if key == Key::Char('t') || key == Key::Char('T') {
                    controller = Some(take_control(&mut app, &mut terms, i));
                }
                continue;
            }
            match app.key(key, backend) {
                None => {}
                Some(Request::Exit(o)) => return Ok(o),
                Some(Request::Shell) => {
                    if let Some(t) = terms.get_mut(i) {
                        shell(t, &mut app, backend);
                    }
                }
            }
        }
    }
}

fn consoles_path(i: usize, consoles: &[PathBuf]) -> &Path {
    consoles.get(i).map_or(Path::new("?"), |p| p.as_path())
}

/// Every console is gone: the migration must not be cut off by the
/// caller powering off, so wait for it.
fn closed(app: &mut App) -> MenuOutcome {
    log::warn!("menu: every console is closed");
    while app.migration_running() {
        std::thread::sleep(TICK);
        app.poll_migration();
    }
    MenuOutcome::ConsolesClosed
}

fn shell(t: &mut Console, app: &mut App, backend: &dyn Backend) {
    t.write(b"\x1b[0m\x1b[H\x1b[2JRescue shell; exit returns to the menu.\r\n");
    t.drain(Duration::from_secs(5));
    t.restore();
    if let Err(e) = backend.shell(&t.path) {
        app.log(format!("rescue shell on {}: {e}", t.path.display()));
    }
    t.reopen();
    t.renderer.invalidate();
}

/// Waits up to `timeout` for input and decodes it; (console index, key).
fn wait_keys(terms: &mut [Console], timeout: Duration) -> Vec<(usize, Key)> {
    let live: Vec<usize> = (0..terms.len())
        .filter(|&i| terms.get(i).is_some_and(|t| t.alive))
        .collect();
    let mut ready = vec![false; terms.len()];
    {
        let mut fds: Vec<PollFd> = live
            .iter()
            .filter_map(|&i| terms.get(i))
            .map(|t| {
                let mut ev = PollFlags::POLLIN;
                if !t.out.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                PollFd::new(t.file.as_fd(), ev)
            })
            .collect();
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => {
                for (slot, fd) in live.iter().zip(&fds) {
                    let input = PollFlags::POLLIN
                        | PollFlags::POLLHUP
                        | PollFlags::POLLERR
                        | PollFlags::POLLNVAL;
                    if fd.revents().is_some_and(|r| r.intersects(input)) {
                        if let Some(r) = ready.get_mut(*slot) {
                            *r = true;
                        }
                    }
                }
            }
            Err(e) => log::warn!("menu: poll: {e}"),
        }
    }
    let mut keys = Vec::new();
    for (i, t) in terms.iter_mut().enumerate() {
        if !t.alive {
            continue;
        }
        if !ready.get(i).copied().unwrap_or(false) {
            if t.decoder.pending() {
                if let Some(k) = t.decoder.timeout() {
                    keys.push((i, k));
                }
            }
            continue;
        }
        let mut buf = [0u8; 256];
        match t.file.read(&mut buf) {
            Ok(0) => {
                log::info!("menu: console {} closed (EOF)", t.path.display());
                t.alive = false;
            }
            Ok(n) => {
                for k in t.decoder.feed_all(buf.get(..n).unwrap_or(&[])) {
                    keys.push((i, k));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => {
                // EIO: the other end of a pty or a serial line went away.
                log::info!("menu: console {} closed: {e}", t.path.display());
                t.alive = false;
            }
        }
    }
    keys
}
