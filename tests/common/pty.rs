//! A pseudo-terminal for driving the menu: the menu opens the slave side
//! by path; a thread reads the master side into a VT100 emulator (the
//! `vt100` crate), so tests assert on the screen a user would see.

use nix::fcntl::{FcntlArg, FdFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pseudo-terminal whose slave side the menu opens by path; the master
/// side is read into a VT100 emulator by a thread.
pub struct Pty {
    master: File,
    _slave: OwnedFd,
    pub path: PathBuf,
    parser: Arc<Mutex<vt100::Parser>>,
    /// Set on drop: the reader thread lets go of its master fd, so the
    /// menu's side sees the terminal close (EIO).
    stop: Arc<AtomicBool>,
    /// How long `wait_for` waits for a text.
    wait: Duration,
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Pty {
    /// Opens a pty whose `wait_for` gives up after `wait`.
    pub fn open(wait: Duration) -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pty.slave).expect("ttyname of the pty slave");
        // openpty's fds are inheritable: a spawned `p2xen menu` would keep
        // the master open and never see the terminal close.
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .expect("FD_CLOEXEC");
        }
        let master = File::from(pty.master);
        let mut reader = master.try_clone().expect("clone master");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0)));
        let p = parser.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::SeqCst) {
                let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(50u16)) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(_) => break,
                }
                // EIO once every slave fd is closed: the end.
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => p.lock().unwrap().process(&buf[..n]),
                }
            }
        });
        Pty {
            master,
            _slave: pty.slave,
            path,
            parser,
            stop,
            wait,
        }
    }

    pub fn name(&self) -> String {
        self.path
            .to_string_lossy()
            .trim_start_matches("/dev/")
            .to_string()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
        // The menu handles keys in batches; give it a moment per batch so
        // screens are asserted in order.
        std::thread::sleep(Duration::from_millis(120));
    }

    /// Feeds `bytes` to the emulator as if they had come over the line:
    /// line noise that garbles the screen.
    pub fn garble(&self, bytes: &[u8]) {
        self.parser.lock().unwrap().process(bytes);
    }

    /// The whole 80x24 screen, one line per row, trailing blanks removed.
    pub fn screen(&self) -> String {
        let p = self.parser.lock().unwrap();
        p.screen()
            .rows(0, 80)
            .map(|r| r.trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            if start.elapsed() > self.wait {
                panic!("screen never showed {text:?}; it shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}
