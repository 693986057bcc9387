//! A VT100 terminal on a VM's serial line (a Unix socket chardev, see
//! `VmBuilder::serial_socket`): keys go in as a real terminal sends them,
//! what comes out is interpreted by the `vt100` crate into an 80x24 screen
//! the test reads as text. The screen is printed when a wait fails.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys as a VT100 (and xterm in normal cursor mode) sends them.
pub const UP: &[u8] = b"\x1b[A";
pub const DOWN: &[u8] = b"\x1b[B";
pub const ENTER: &[u8] = b"\r";
pub const BACKSPACE: &[u8] = b"\x7f";
pub const CTRL_L: &[u8] = b"\x0c";

/// How long a screen must stay unchanged to count as completely drawn.
const SETTLED: Duration = Duration::from_millis(300);

pub struct Terminal {
    stream: UnixStream,
    parser: Arc<Mutex<vt100::Parser>>,
    /// Bytes received so far: what the menu costs on a slow line.
    received: Arc<AtomicUsize>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Connects to the socket QEMU listens on; it appears a moment after
    /// QEMU starts.
    pub fn connect(path: &Path, timeout: Duration) -> Terminal {
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if t0.elapsed() < timeout => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("serial socket {}: {e}", path.display()),
            }
        };
        let parser = Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0)));
        let mut input = stream.try_clone().expect("clone the serial socket");
        let received = Arc::new(AtomicUsize::new(0));
        let (p, count) = (Arc::clone(&parser), Arc::clone(&received));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = input.read(&mut buf) {
                let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
                    break;
                };
                if let Ok(mut p) = p.lock() {
                    p.process(bytes);
                }
                count.fetch_add(bytes.len(), Ordering::Relaxed);
            }
        });
        Terminal {
            stream,
            parser,
            received,
            reader: Some(reader),
        }
    }

    /// Types `bytes`, then gives the other side a moment, like a person
    /// between keys.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing to the serial line: {e}"));
        std::thread::sleep(Duration::from_millis(150));
    }

    /// The 80x24 screen as text, trailing blanks removed.
    pub fn screen(&self) -> String {
        self.parser
            .lock()
            .map(|p| {
                p.screen()
                    .rows(0, 80)
                    .map(|r| r.trim_end().to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// Bytes received from the VM so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until the screen shows `text`; returns the screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_until(text, timeout, |s| s.contains(text))
    }

    /// Waits until `ok(screen)` holds and the screen has stopped changing:
    /// a frame arrives over the line in pieces (the header first), so a
    /// screen that just began to show `what` may still hold half of the
    /// previous one. `what` names the condition for the panic.
    pub fn wait_until(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        let mut stable: Option<(String, Instant)> = None;
        loop {
            let s = self.screen();
            if ok(&s) {
                match &stable {
                    Some((prev, since)) if *prev == s => {
                        if since.elapsed() >= SETTLED {
                            return s;
                        }
                    }
                    _ => stable = Some((s.clone(), Instant::now())),
                }
            } else {
                stable = None;
            }
            assert!(
                t0.elapsed() < timeout,
                "the serial screen never showed {what:?} within {timeout:?}; it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- serial menu screen at drop ---\n{}", self.screen());
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
