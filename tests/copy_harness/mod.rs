//! Helpers for the copy tests: fixture images made with the real tools, a
//! receiver child process, the sender, and a misbehaving TCP proxy.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// The disk-image helpers every test file shares: a test that includes this
// harness also declares `mod common;`.
use crate::common::fixtures::{self, at_offset, patch, run, sfdisk};
// menu_copy.rs calls it by this name.
pub use fixtures::hash_file as blake3_file;

pub const BIN: &str = env!("CARGO_BIN_EXE_p2xen");

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub const PART1_START: u64 = 1 << 20;

/// A 64 MiB MBR disk: garbage everywhere first, then p1 = 40 MiB ext4 with
/// binaries, text, a log and random data; p2 = 16 MiB swap.
pub fn mbr_ext4_swap(dir: &Path) -> PathBuf {
    let img = dir.join("source.img");
    std::fs::write(&img, noise(64 << 20, 7)).unwrap();
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("var/log")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::copy("/bin/ls", tree.join("bin/ls")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "seed\n").unwrap();
    let log: String = (0..60_000)
        .map(|i| format!("Nov 26 10:00:{:02} seed app[{i}]: event {i}\n", i % 60))
        .collect();
    std::fs::write(tree.join("var/log/syslog"), log).unwrap();
    std::fs::write(tree.join("random.bin"), noise(6 << 20, 99)).unwrap();
    std::fs::write(tree.join("empty"), b"").unwrap();
    sfdisk(
        &img,
        "label: dos\nstart=2048, size=81920, type=83\nstart=83968, size=32768, type=82\n",
    );
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-E"])
        .arg(format!("offset={PART1_START}"))
        .arg("-d")
        .arg(&tree)
        .arg(&img)
        .arg("40M"));
    let swap = dir.join("swap.part");
    std::fs::write(&swap, vec![0u8; 16 << 20]).unwrap();
    run(Command::new("mkswap").arg(&swap));
    // Every byte, zeros too: the disk under it is noise.
    patch(&img, 83968 * 512, &std::fs::read(&swap).unwrap());
    img
}

/// Dumps the ext4 at `offset` in `img` into `out` (read-only debugfs).
pub fn dump_fs(img: &Path, offset: u64, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(at_offset(img, offset)));
}

pub fn e2fsck_ok(img: &Path, offset: u64) {
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(at_offset(img, offset)));
}

/// Every regular file under `dir` with its BLAKE3, sorted.
pub fn tree_hashes(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(base, &p, out);
            } else if ft.is_file() {
                out.push((
                    p.strip_prefix(base).unwrap().display().to_string(),
                    blake3_file(&p),
                ));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// A `p2xen receive` child process; killed on drop.
pub struct Receiver {
    pub child: Child,
    pub port: u16,
    pub fingerprint: String,
    pub token: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Receiver {
    pub fn start(store: &Path, state: &Path, extra: &[&str]) -> Receiver {
        let mut child = Command::new(BIN)
            .args(["receive", "--listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .arg("--state-dir")
            .arg(state)
            // Fixture images hold no OS to convert (the guest tests cover
            // conversion); a test that wants it passes --xen-dir.
            .args(if extra.contains(&"--xen-dir") {
                &[][..]
            } else {
                &["--no-convert"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut get = |prefix: &str| {
            let l = lines.next().expect("receiver printed nothing").unwrap();
            l.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{l:?} lacks {prefix:?}"))
                .to_string()
        };
        let addr: SocketAddr = get("p2xen receiver listening on ").parse().unwrap();
        let fingerprint = get("fingerprint: ");
        let token = get("token: ");
        let params = get("kernel parameters: ");
        assert!(params.contains(&format!("p2xen.fingerprint={fingerprint}")));
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let buf = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                buf.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        Receiver {
            child,
            port: addr.port(),
            fingerprint,
            token,
            stderr,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// [`send`] straight to this receiver with its own credentials.
    pub fn send(
        &self,
        name: &str,
        sources: &[&Path],
        extra: &[&str],
    ) -> (bool, serde_json::Value, String) {
        send(
            &self.addr(),
            &self.token,
            &self.fingerprint,
            name,
            sources,
            extra,
        )
    }

    /// Waits for a `--once` receiver to exit; returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let t = std::time::Instant::now();
        while t.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill9(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `p2xen send --json`; returns (exit success, final JSON event, stderr).
pub fn send(
    server: &str,
    token: &str,
    fp: &str,
    name: &str,
    sources: &[&Path],
    extra: &[&str],
) -> (bool, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args([
            "send",
            "--json",
            "--server",
            server,
            "--token",
            token,
            "--fingerprint",
            fp,
            "--name",
            name,
        ])
        .args(extra)
        .args(sources)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let last = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        last,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// What the proxy does to one connection's client→server bytes.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Pass,
    /// XOR one byte at this position.
    FlipAt(u64),
    /// Close both sides after this many bytes.
    CutAt(u64),
    /// Forward this many bytes, then hold the connection until released.
    StallAt(u64),
}

/// A 127.0.0.1 TCP proxy applying a [`Fault`] chosen per connection.
pub struct Proxy {
    pub port: u16,
    pub target: Arc<Mutex<SocketAddr>>,
    pub connections: Arc<AtomicUsize>,
    pub release: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(
        target: SocketAddr,
        plan: impl Fn(usize) -> Fault + Send + Sync + 'static,
    ) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let target = Arc::new(Mutex::new(target));
        let connections = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (t, c, r) = (target.clone(), connections.clone(), release.clone());
        let plan = Arc::new(plan);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let fault = plan(n);
                let dst = *t.lock().unwrap();
                let Ok(server) = TcpStream::connect(dst) else {
                    continue;
                };
                let r = r.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server, fault, r));
                std::thread::spawn(move || {
                    pump(s2, c2, Fault::Pass, Arc::new(AtomicBool::new(false)))
                });
            }
        });
        Proxy {
            port,
            target,
            connections,
            release,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, fault: Fault, release: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        let end = pos + n as u64;
        match fault {
            Fault::FlipAt(at) if at >= pos && at < end => chunk[(at - pos) as usize] ^= 0x01,
            Fault::CutAt(at) if end > at => {
                let keep = (at - pos.min(at)) as usize;
                let _ = to.write_all(&chunk[..keep]);
                break;
            }
            Fault::StallAt(at) if end > at => {
                let keep = (at - pos.min(at)) as usize;
                let _ = to.write_all(&chunk[..keep]);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                break;
            }
            _ => {}
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        pos = end;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A small tmpfs mount, unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
