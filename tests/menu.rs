//! The menu driven through pseudo-terminals with scripted keystrokes; the
//! output is interpreted by a VT100 emulator (the `vt100` crate) and the
//! assertions are on the screen text, as a user would see it.

mod common;

use common::pty::Pty;

use p2xen::menu::{
    self, Backend, BackendError, DiskBar, DiskEntry, MachineInfo, MenuOutcome, MenuPrefill,
    MigrationEvent, MigrationPlan, MigrationResult, NetChoice, NicInfo, ResultDisk,
};
use p2xen::net::NetRequest;
use p2xen::source::inspect::{DiskReport, PartitionReport};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

const FP: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A backend that records what the menu asked for; the migration reports
/// half-way and then waits for the test to let it finish.
struct Fake {
    net: Mutex<Vec<NetChoice>>,
    plans: Mutex<Vec<MigrationPlan>>,
    gate: Mutex<Option<Receiver<()>>>,
    /// The migration fails at once with this error.
    fail: Option<String>,
    shells: Mutex<usize>,
    /// The conversion's warnings in the result.
    warnings: Vec<String>,
}

impl Fake {
    fn new() -> (Arc<Fake>, Sender<()>) {
        let (tx, rx) = mpsc::channel();
        (
            Arc::new(Fake {
                net: Mutex::new(Vec::new()),
                plans: Mutex::new(Vec::new()),
                gate: Mutex::new(Some(rx)),
                fail: None,
                shells: Mutex::new(0),
                warnings: vec!["grub-legacy: kernel line rewritten".into()],
            }),
            tx,
        )
    }
}

fn fake_disk() -> DiskReport {
    let fs: p2xen::source::filesystems::Filesystem = serde_json::from_value(serde_json::json!({
        "type": "ext4", "label": null, "uuid": null, "size_bytes": 3221225472u64,
        "used_bytes": 1288490188u64, "state": "clean"
    }))
    .expect("a Filesystem from JSON");
    DiskReport {
        path: "/dev/sda".into(),
        size_bytes: 4 << 30,
        model: Some("QEMU HARDDISK".into()),
        table: "mbr".into(),
        partitions: vec![PartitionReport {
            number: 1,
            start_bytes: 1 << 20,
            size_bytes: 3 << 30,
            type_id: "83".into(),
            type_name: "Linux".into(),
            filesystem: Some(fs),
            os: Some(p2xen::source::inspect::OsInfo {
                pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
                hostname: Some("seed".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl Backend for Fake {
    fn machine(&self) -> MachineInfo {
        MachineInfo {
            cpus: 2,
            memory_bytes: 1 << 30,
            nics: vec![
                NicInfo {
                    name: "eth0".into(),
                    mac: "52:54:00:12:34:56".into(),
                    driver: Some("e1000".into()),
                    link: Some(true),
                    addresses: vec![],
                },
                NicInfo {
                    name: "eth1".into(),
                    mac: "52:54:00:12:34:57".into(),
                    driver: Some("e1000".into()),
                    link: Some(true),
                    addresses: vec![],
                },
            ],
        }
    }
    fn disks(&self) -> Vec<DiskEntry> {
        vec![DiskEntry {
            path: "/dev/sda".into(),
            report: Ok(fake_disk()),
        }]
    }
    fn configure_network(&self, c: &NetChoice) -> Result<Vec<String>, BackendError> {
        self.net.lock().unwrap().push(c.clone());
        Ok(vec!["eth0: 10.0.2.15/24 by DHCP, gateway 10.0.2.2".into()])
    }
    fn test_receiver(&self, server: &str) -> Result<String, BackendError> {
        Ok(format!("{server} answered in 1 ms"))
    }
    fn receiver_fingerprint(&self, _server: &str) -> Result<String, BackendError> {
        Ok(FP.into())
    }
    fn start_migration(
        &self,
        plan: &MigrationPlan,
        events: Sender<MigrationEvent>,
    ) -> Result<(), BackendError> {
        self.plans.lock().unwrap().push(plan.clone());
        if let Some(e) = &self.fail {
            let _ = events.send(MigrationEvent::Failed(e.clone()));
            return Ok(());
        }
        let gate = self.gate.lock().unwrap().take();
        let name = plan.name.clone();
        let warnings = self.warnings.clone();
        std::thread::spawn(move || {
            let bar = |done| DiskBar {
                source: "/dev/sda".into(),
                done_bytes: done,
                total_bytes: 1 << 30,
            };
            let _ = events.send(MigrationEvent::Plan {
                disks: vec![bar(0)],
            });
            let _ = events.send(MigrationEvent::Log("connected to the receiver".into()));
            let _ = events.send(MigrationEvent::Progress {
                disks: vec![bar(1 << 29)],
                bytes_per_sec: 50.0 * 1048576.0,
                eta_secs: Some(10.0),
            });
            if let Some(g) = gate {
                let _ = g.recv_timeout(WAIT);
            }
            let _ = events.send(MigrationEvent::Finished(MigrationResult {
                name: name.clone(),
                disks: vec![ResultDisk {
                    source: "/dev/sda".into(),
                    image: Some(format!("/srv/p2xen/{name}/disk0.img")),
                    digest: "blake3:feedface".into(),
                }],
                config_path: Some(format!("/etc/xen/{name}.cfg")),
                warnings,
            }));
        });
        Ok(())
    }
    fn shell(&self, _tty: &Path) -> Result<(), BackendError> {
        *self.shells.lock().unwrap() += 1;
        Ok(())
    }
}

fn start_menu(
    ptys: &[&Pty],
    prefill: MenuPrefill,
    backend: Arc<Fake>,
) -> JoinHandle<Result<MenuOutcome, menu::MenuError>> {
    let paths: Vec<PathBuf> = ptys.iter().map(|p| p.path.clone()).collect();
    std::thread::spawn(move || menu::run(&paths, prefill, backend.as_ref()))
}

fn join(
    h: JoinHandle<Result<MenuOutcome, menu::MenuError>>,
) -> Result<MenuOutcome, menu::MenuError> {
    let start = Instant::now();
    while !h.is_finished() {
        assert!(start.elapsed() < WAIT, "the menu did not end");
        std::thread::sleep(Duration::from_millis(30));
    }
    h.join().expect("the menu thread panicked")
}

const ENTER: &[u8] = b"\r";
const ESC: &[u8] = b"\x1b";
const DOWN: &[u8] = b"\x1b[B";

#[test]
fn interactive_migration_with_a_fake_backend() {
    let mut t = Pty::open(WAIT);
    let (fake, gate) = Fake::new();
    let h = start_menu(&[&t], MenuPrefill::default(), fake.clone());
    let s = t.wait_for("1/7 Overview");
    assert!(s.contains("Machine: 2 CPU(s), 1.0 GiB memory"), "{s}");
    assert!(
        s.contains("NIC eth0 52:54:00:12:34:56 e1000 link up"),
        "{s}"
    );
    assert!(
        s.contains("Disk /dev/sda 4.0 GiB QEMU HARDDISK table mbr"),
        "{s}"
    );
    assert!(
        s.contains("1   3.0 GiB ext4 used 1.2 GiB  OS: Debian GNU/Linux 12 (bookworm) (seed)"),
        "{s}"
    );

    // Help on the overview, then back.
    t.send(b"?");
    t.wait_for("Ctrl-L         repaint a garbled screen");
    t.send(b"x");
    t.wait_for("1/7 Overview");

    // Network: apply DHCP (item 6 with IPv4 dhcp, IPv6 none).
    t.send(b"n");
    t.wait_for("2/7 Network");
    for _ in 0..4 {
        t.send(DOWN);
    }
    t.send(b"\x1bOB");
    t.send(ENTER);
    let s = t.wait_for("eth0: 10.0.2.15/24 by DHCP");
    assert!(s.contains("network configured"), "{s}");
    assert_eq!(fake.net.lock().unwrap().len(), 1);

    // Target: the address without a port gets the default one.
    t.send(b"n");
    t.wait_for("3/7 Target");
    t.send(b"1");
    t.send(b"127.0.0.1");
    t.send(ENTER);
    t.wait_for("127.0.0.1:7460");
    // Continue without a token: refused with a message.
    t.send(b"n");
    t.wait_for("! token: empty (`p2xen receive` prints it)");
    t.send(b"2");
    t.send(b"s3cret");
    t.send(ENTER);
    // No fingerprint given: the receiver's is shown and must be confirmed;
    // a "no" keeps the user on the Target screen.
    t.send(b"n");
    let s = t.wait_for("Trust this receiver and continue?");
    assert!(s.contains(FP), "{s}");
    t.send(b"n");
    t.wait_for("! fingerprint not trusted; nothing will be sent");
    t.send(b"5");
    t.wait_for("Trust this receiver and continue?");
    t.send(b"y");
    t.wait_for("4/7 Guest");

    // Invalid values: a message, no change.
    let s = t.screen();
    assert!(s.contains("1) Name                  seed"), "{s}");
    assert!(s.contains("2) Memory (MiB)          1024"), "{s}");
    t.send(b"2");
    t.send(b"\x7f\x7f\x7f\x7fabc");
    t.wait_for("! memory: \"abc\" does not start with a number (MiB, or 512M, 2G)");
    t.send(ENTER);
    t.wait_for("! memory: \"abc\"");
    t.send(ESC);
    let s = t.wait_for("2) Memory (MiB)          1024");
    assert!(!s.contains("abc"), "{s}");
    t.send(b"1");
    t.send(b"\x7f\x7f\x7f\x7f../x");
    t.wait_for("! name: \"../x\" contains '/', '\"' or control characters");
    t.send(ENTER);
    t.send(ESC);
    t.wait_for("1) Name                  seed");
    // A valid memory with a unit.
    t.send(b"2");
    t.send(b"\x7f\x7f\x7f\x7f2G");
    t.send(ENTER);
    t.wait_for("2) Memory (MiB)          2G");

    t.send(b"n");
    let review = t.wait_for("5/7 Review");
    let expected = [
        format!(
            " p2xen  5/7 Review{}{}",
            " ".repeat(80 - 18 - t.name().len() - 1),
            t.name()
        ),
        String::new(),
        ">1) Start the migration".into(),
        String::new(),
        " Receiver 127.0.0.1:7460  name seed".into(),
        " Fingerprint".into(),
        format!("  {FP}"),
        " Memory 2048 MiB  vCPUs 2  layout disk  type auto  bridge default".into(),
        " Disks /dev/sda".into(),
        String::new(),
        " Next time, boot with: p2xen.server=127.0.0.1:7460 p2xen.token=s3cret".into(),
        " p2xen.fingerprint=sha256:0123456789abcdef0123456789abcdef0123456789abcdef01234".into(),
        " 56789abcdef p2xen.name=seed p2xen.memory=2048M p2xen.vcpus=2 p2xen.disks=sda".into(),
    ];
    let mut want: Vec<String> = expected.to_vec();
    want.resize(23, String::new());
    want.push(
        "Up/Dn j/k move  Enter/1-9 choose  n next  Esc/b back  l log  ! shell  ? help".into(),
    );
    assert_eq!(review, want.join("\n"));

    // Start; the run goes on while the user looks elsewhere.
    t.send(ENTER);
    let s = t.wait_for("6/7 Progress");
    let s = if s.contains("50%") {
        s
    } else {
        t.wait_for("50%")
    };
    assert!(s.contains("disk0 /dev/sda"), "{s}");
    assert!(
        s.contains("[############............]  50% 512.0 MiB/1.0 GiB"),
        "{s}"
    );
    assert!(s.contains("ETA 0:00:10"), "{s}");
    assert!(s.contains("connected to the receiver"), "{s}");
    t.send(ESC);
    let s = t.wait_for("5/7 Review");
    assert!(s.contains("migration running (p)"), "{s}");
    assert!(s.contains("1) Show the running migration"), "{s}");
    t.send(b"l");
    t.wait_for("next time, boot with: p2xen.server=127.0.0.1:7460");
    t.send(b"q");
    t.send(b"p");
    t.wait_for("6/7 Progress");
    gate.send(()).unwrap();
    let s = t.wait_for("7/7 Result");
    assert!(s.contains("Guest seed copied and verified."), "{s}");
    assert!(
        s.contains("disk0 /dev/sda -> /srv/p2xen/seed/disk0.img"),
        "{s}"
    );
    assert!(s.contains("blake3:feedface"), "{s}");
    assert!(
        s.contains("Config /etc/xen/seed.cfg; on dom0 run: xl create /etc/xen/seed.cfg"),
        "{s}"
    );
    assert!(
        s.contains("warning: grub-legacy: kernel line rewritten"),
        "{s}"
    );
    assert!(
        s.contains("Next time, boot with: p2xen.server=127.0.0.1:7460"),
        "{s}"
    );
    let plans = fake.plans.lock().unwrap().clone();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].memory_mib, 2048);
    assert_eq!(plans[0].fingerprint, FP);
    t.send(b"1");
    assert_eq!(join(h).unwrap(), MenuOutcome::PowerOff);
}

#[test]
fn garbage_keys_and_ctrl_l_leave_a_consistent_screen() {
    let mut t = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let prefill = MenuPrefill {
        server: Some("dom0".into()),
        token: Some("tok".into()),
        fingerprint: Some(FP.into()),
        ..MenuPrefill::default()
    };
    let h = start_menu(&[&t], prefill, fake);
    let clean = t.wait_for("1/7 Overview");
    // Deterministic noise: escape fragments, 8-bit bytes, control codes,
    // over-long sequences; everything but keys that leave the screen.
    let mut seed: u32 = 7;
    let mut noise = Vec::new();
    for _ in 0..400 {
        seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
        let b = (seed >> 16) as u8;
        // Skip bytes that are meaningful keys: the test is about garbage.
        if b.is_ascii_graphic() || matches!(b, b'\r' | b'\n' | 0x7f | 0x08 | 0x1b | b' ' | b'\t') {
            continue;
        }
        noise.push(b);
    }
    noise.extend_from_slice(b"\x1b[999;999;999;999;999;999;999H\x1b[15~\x1b[<0;1;1M\x1bO");
    t.send(&noise);
    // Garble the emulator as line noise on the way out would.
    t.garble(b"\x1b[5;5Hgarbage garbage\x1b[2J");
    t.send(b"\x0c");
    let s = t.wait_for("1/7 Overview");
    assert_eq!(s, clean);
    // The Target screen shows the pre-filled values, port added.
    t.send(b"nn");
    let s = t.wait_for("3/7 Target");
    assert!(s.contains("1) Receiver              dom0:7460"), "{s}");
    assert!(s.contains("2) Token                 tok"), "{s}");
    // Unknown letters get a message, not a crash.
    t.send(b"z");
    t.wait_for("! key 'z' does nothing here; ? shows the keys");
    drop(t);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

#[test]
fn closed_terminal_ends_the_menu_cleanly() {
    let t = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let h = start_menu(&[&t], MenuPrefill::default(), fake);
    t.wait_for("1/7 Overview");
    drop(t);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

#[test]
fn first_console_with_a_key_takes_control() {
    let mut a = Pty::open(WAIT);
    let mut b = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let h = start_menu(&[&a, &b], MenuPrefill::default(), fake);
    a.wait_for("1/7 Overview");
    b.wait_for("1/7 Overview");
    b.send(b"n");
    b.wait_for("2/7 Network");
    let s = a.wait_for(&format!("menu in use on {}", b.name()));
    assert!(s.contains("Press t to take control here."), "{s}");
    // Keys other than t on the watching console do nothing.
    a.send(b"n");
    b.wait_for("2/7 Network");
    a.send(b"t");
    a.wait_for("2/7 Network");
    b.wait_for(&format!("menu in use on {}", a.name()));
    drop(a);
    // The remaining console can take control back.
    b.send(b"t");
    b.wait_for("2/7 Network");
    drop(b);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

#[test]
fn p2xen_menu_on_an_image_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::fixtures::mbr_server(dir.path());
    let before = common::fixtures::hash_file(&server.image);
    let mut t = Pty::open(WAIT);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_p2xen"))
        .args(["menu", "--tty"])
        .arg(&t.path)
        .arg("--disk")
        .arg(&server.image)
        .env("SHELL", "/bin/sh")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start p2xen menu");
    let s = t.wait_for("1/7 Overview");
    assert!(
        s.contains(&format!(
            "Disk {} 64.0 MiB  table mbr",
            server.image.display()
        )),
        "{s}"
    );
    assert!(s.contains("(oldserver)"), "{s}");
    // Guest name defaults to the source's hostname.
    t.send(b"nn");
    t.send(b"1");
    t.send(b"127.0.0.1:1");
    t.send(ENTER);
    t.send(b"2tok\r");
    t.send(b"n");
    t.wait_for("! receiver 127.0.0.1:1: cannot connect to 127.0.0.1:1");
    t.send(b"3");
    t.send(FP.as_bytes());
    t.send(ENTER);
    t.send(b"n");
    let s = t.wait_for("4/7 Guest");
    assert!(s.contains("1) Name                  oldserver"), "{s}");
    // The rescue shell runs on the same terminal; the menu comes back.
    t.send(b"!");
    t.wait_for("Rescue shell; exit returns to the menu.");
    let marker = dir.path().join("shell-ran");
    t.send(format!("echo $((6*7)) > {}; exit\r", marker.display()).as_bytes());
    t.wait_for("4/7 Guest");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "42\n");
    let mut out = String::new();
    drop(t);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < WAIT, "p2xen menu did not exit on EOF");
        std::thread::sleep(Duration::from_millis(50));
    };
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success());
    assert_eq!(out.trim(), "menu: ConsolesClosed");
    assert_eq!(common::fixtures::hash_file(&server.image), before);
}

#[test]
fn failed_migration_offers_retry_power_off_and_shell() {
    let mut t = Pty::open(WAIT);
    let fake = Arc::new(Fake {
        net: Mutex::new(Vec::new()),
        plans: Mutex::new(Vec::new()),
        gate: Mutex::new(None),
        fail: Some("connection refused by 127.0.0.1:7460".into()),
        shells: Mutex::new(0),
        warnings: Vec::new(),
    });
    let prefill = MenuPrefill {
        server: Some("127.0.0.1".into()),
        token: Some("tok".into()),
        fingerprint: Some(FP.into()),
        memory: Some("512M".into()),
        ..MenuPrefill::default()
    };
    let h = start_menu(&[&t], prefill, fake.clone());
    t.wait_for("1/7 Overview");
    t.send(b"nnnn");
    let s = t.wait_for("5/7 Review");
    assert!(s.contains("Memory 512 MiB  vCPUs 2"), "{s}");
    t.send(ENTER);
    let s = t.wait_for("7/7 Result");
    assert!(
        s.contains("Migration FAILED: connection refused by 127.0.0.1:7460"),
        "{s}"
    );
    assert!(s.contains(">1) Back to the review (try again)"), "{s}");
    // The rescue shell is reachable from here and the menu comes back.
    t.send(b"!");
    let s = t.wait_for("7/7 Result");
    assert!(s.contains("4) Rescue shell"), "{s}");
    assert_eq!(*fake.shells.lock().unwrap(), 1);
    t.send(b"1");
    t.wait_for(">1) Start the migration");
    t.send(b"\x1b");
    t.wait_for("4/7 Guest");
    t.send(b"p");
    t.wait_for("! key 'p' does nothing here; ? shows the keys");
    t.send(b"nn");
    t.wait_for("7/7 Result");
    t.send(b"4");
    assert_eq!(join(h).unwrap(), MenuOutcome::Shell);
    assert_eq!(fake.plans.lock().unwrap().len(), 2);
}

#[test]
fn a_stalled_console_does_not_block_the_others() {
    // Nobody reads this terminal's output, as on a serial line held by flow
    // control; keys still arrive on it and it has control.
    let stalled = nix::pty::openpty(None, None).expect("openpty");
    let stalled_path = nix::unistd::ttyname(&stalled.slave).expect("ttyname");
    let mut keys = File::from(stalled.master);
    let b = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let paths = vec![stalled_path.clone(), b.path.clone()];
    let h = std::thread::spawn(move || menu::run(&paths, MenuPrefill::default(), fake.as_ref()));
    b.wait_for("1/7 Overview");
    // Each Ctrl-L (the menu reads them one by one, 5 ms apart) is a full
    // repaint queued on the stalled console: far more than a pty buffer
    // holds, so a blocking write would hang the menu here.
    for _ in 0..100 {
        keys.write_all(b"\x0c").unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    keys.write_all(b"nn").unwrap();
    let name = stalled_path
        .to_string_lossy()
        .trim_start_matches("/dev/")
        .to_string();
    b.wait_for(&format!("The menu is in use on {name} (Target screen)."));
    drop(keys);
    drop(stalled.slave);
    drop(b);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

/// 26 disks: the Guest screen's items scroll with the selection.
struct ManyDisks(Arc<Fake>);

impl Backend for ManyDisks {
    fn machine(&self) -> MachineInfo {
        self.0.machine()
    }
    fn disks(&self) -> Vec<DiskEntry> {
        (0..26)
            .map(|i| DiskEntry {
                path: format!("/dev/vd{}", (b'a' + i as u8) as char).into(),
                report: Err("no medium".into()),
            })
            .collect()
    }
    fn configure_network(&self, c: &NetChoice) -> Result<Vec<String>, BackendError> {
        self.0.configure_network(c)
    }
    fn test_receiver(&self, s: &str) -> Result<String, BackendError> {
        self.0.test_receiver(s)
    }
    fn receiver_fingerprint(&self, s: &str) -> Result<String, BackendError> {
        self.0.receiver_fingerprint(s)
    }
    fn start_migration(
        &self,
        p: &MigrationPlan,
        e: Sender<MigrationEvent>,
    ) -> Result<(), BackendError> {
        self.0.start_migration(p, e)
    }
    fn shell(&self, t: &Path) -> Result<(), BackendError> {
        self.0.shell(t)
    }
}

#[test]
fn many_disks_scroll_on_the_guest_screen() {
    let mut t = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let paths = vec![t.path.clone()];
    let prefill = MenuPrefill {
        server: Some("dom0".into()),
        token: Some("tok".into()),
        fingerprint: Some(FP.into()),
        ..MenuPrefill::default()
    };
    let h = std::thread::spawn(move || menu::run(&paths, prefill, &ManyDisks(fake)));
    let s = t.wait_for("1/7 Overview");
    assert!(
        s.contains("Disk /dev/vda: cannot be read: no medium"),
        "{s}"
    );
    t.send(b"nnn");
    let s = t.wait_for("4/7 Guest");
    assert!(s.contains(">1) Name"), "{s}");
    assert!(!s.contains("Continue to the review"), "{s}");
    assert!(s.lines().nth(22).unwrap_or("").is_empty(), "{s}");
    for _ in 0..40 {
        t.send(b"j");
    }
    let s = t.wait_for(">   Continue to the review");
    assert!(s.contains("    Disk /dev/vdz"), "{s}");
    assert!(!s.contains("1) Name"), "{s}");
    drop(t);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

/// A conversion with more warnings than the result screen has rows: the
/// "next time" line stays on screen, the cut is said, the log has them all.
#[test]
fn many_warnings_keep_the_next_time_line_on_the_result_screen() {
    let mut t = Pty::open(WAIT);
    let (rx_gate, fake) = {
        let (fake, gate) = Fake::new();
        let Ok(mut f) = Arc::try_unwrap(fake) else {
            panic!("the fake backend is shared already")
        };
        f.warnings = (1..=12)
            .map(|i| format!("warning number {i} about the guest"))
            .collect();
        (gate, Arc::new(f))
    };
    rx_gate.send(()).unwrap();
    let prefill = MenuPrefill {
        server: Some("127.0.0.1".into()),
        token: Some("tok".into()),
        fingerprint: Some(FP.into()),
        ..MenuPrefill::default()
    };
    let h = start_menu(&[&t], prefill, fake);
    t.wait_for("1/7 Overview");
    t.send(b"nnnn");
    t.wait_for("5/7 Review");
    t.send(ENTER);
    let s = t.wait_for("7/7 Result");
    assert!(
        s.contains("Next time, boot with: p2xen.server=127.0.0.1:7460"),
        "{s}"
    );
    assert!(
        s.contains("warning: warning number 1 about the guest"),
        "{s}"
    );
    assert!(!s.contains("warning number 12 "), "{s}");
    assert!(s.contains("more line(s): l shows the full log)"), "{s}");
    t.send(b"l");
    t.wait_for("conversion: warning number 12 about the guest");
    t.send(b"q");
    t.send(b"3");
    assert_eq!(join(h).unwrap(), MenuOutcome::Shell);
}

/// `ip=` from the kernel command line pre-fills the Network screen; Apply
/// asks for exactly that configuration.
#[test]
fn kernel_ip_parameter_prefills_the_network_screen() {
    let mut t = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let cmdline = p2xen::bootparams::Cmdline::parse(
        "ip=192.0.2.10::192.0.2.1:255.255.255.0::eth0:off:192.0.2.53",
    )
    .unwrap();
    let h = start_menu(&[&t], MenuPrefill::from_cmdline(&cmdline), fake.clone());
    t.wait_for("1/7 Overview");
    t.send(b"n");
    let s = t.wait_for("2/7 Network");
    for want in [
        item(1, "Interface", "eth0"),
        item(2, "Bond", "none"),
        item(3, "VLAN id", "(untagged)"),
        item(4, "IPv4", "static"),
        item(5, "Address/prefix", "192.0.2.10/24"),
        item(6, "Gateway", "192.0.2.1"),
        item(7, "DNS servers", "192.0.2.53"),
        item(8, "IPv6", "none"),
    ] {
        assert!(s.contains(&want), "lacks {want:?}:\n{s}");
    }
    t.send(b"9");
    t.wait_for("network configured");
    let net = fake.net.lock().unwrap().clone();
    assert_eq!(
        net,
        vec![NetChoice {
            interface: Some("eth0".into()),
            method: p2xen::menu::NetMethod::Static {
                address: [192, 0, 2, 10].into(),
                prefix_len: 24,
                gateway: Some([192, 0, 2, 1].into()),
                dns: vec![[192, 0, 2, 53].into()],
            },
            ..NetChoice::default()
        }]
    );
    assert_eq!(net[0].to_request(), NetRequest::from_cmdline(&cmdline));
    drop(t);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

/// One line of a screen's item list as `draw` lays it out.
fn item(n: usize, label: &str, value: &str) -> String {
    format!("{n}) {label:<22}{value}")
}

fn last_choice(fake: &Fake) -> NetChoice {
    fake.net
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the menu applied no network choice")
}

/// Bond, VLAN and static IPv6 typed on the Network screen: errors name the
/// field, and what is applied is the request the same `bond=`, `vlan=`,
/// `ip=` give at boot.
#[test]
fn network_screen_makes_a_bond_with_a_vlan_and_static_ipv6() {
    let mut t = Pty::open(WAIT);
    let (fake, _gate) = Fake::new();
    let h = start_menu(&[&t], MenuPrefill::default(), fake.clone());
    t.wait_for("1/7 Overview");
    t.send(b"n");
    t.wait_for(&item(5, "IPv6", "none"));
    // A VLAN id out of range, then one that needs a parent link.
    t.send(b"3");
    t.send(b"4095");
    t.wait_for("! VLAN id: \"4095\" is not 1 to 4094 (empty: untagged)");
    t.send(b"\x7f\x7f\x7f\x7f20");
    t.send(ENTER);
    t.wait_for(&item(3, "VLAN id", "20"));
    t.send(b"6");
    t.wait_for("! VLAN id: choose one interface or a bond to carry VLAN 20");
    assert!(fake.net.lock().unwrap().is_empty());
    // The bond: active-backup first, its NICs in item 1.
    t.send(b"2");
    t.wait_for(&item(2, "Bond", "active-backup"));
    t.wait_for(&item(1, "Bond NICs", "eth0,eth1"));
    t.send(b"1");
    t.send(b",eth7");
    t.wait_for("! bond NICs: \"eth7\" is not a NIC here (eth0, eth1)");
    t.send(ESC);
    // IPv4 off (dhcp -> static -> off), IPv6 static (none -> auto6 -> static).
    t.send(b"4");
    t.send(b"4");
    t.wait_for(&item(4, "IPv4", "off"));
    t.send(b"5");
    t.wait_for(&item(5, "IPv6", "auto6 (SLAAC)"));
    t.send(b"5");
    t.wait_for("6) IPv6 address/prefix");
    t.send(b"6");
    t.send(b"2001:db8:7::5");
    t.wait_for("! IPv6 address: \"2001:db8:7::5\" is not ADDRESS/PREFIX (e.g. 2001:db8::10/64)");
    t.send(b"/64");
    t.send(ENTER);
    t.wait_for(&item(6, "IPv6 address/prefix", "2001:db8:7::5/64"));
    t.send(b"7");
    t.send(b"2001:db8:7::1");
    t.send(ENTER);
    t.wait_for(&item(7, "IPv6 gateway", "2001:db8:7::1"));
    t.send(b"8");
    t.wait_for("network configured");
    let got = last_choice(&fake);
    assert_eq!(got.device().as_deref(), Some("bond0.20"));
    let boot = p2xen::bootparams::Cmdline::parse(
        "bond=bond0:eth0,eth1:mode=active-backup vlan=bond0.20:bond0 \
         ip=[2001:db8:7::5]::[2001:db8:7::1]:64::bond0.20:none",
    )
    .unwrap();
    assert_eq!(got.to_request(), NetRequest::from_cmdline(&boot));
    // IPv4 off and IPv6 none together is refused, naming both.
    t.send(b"5");
    t.send(b"5");
    t.wait_for(&item(5, "IPv6", "none"));
    t.send(b"6");
    t.wait_for("! IPv4: off and IPv6: none leave the network down; choose one");
    drop(t);
    assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
}

/// `bond=`, `vlan=` and IPv6 `ip=` from the kernel pre-fill the screen;
/// Apply asks for what the kernel line asks for.
#[test]
fn kernel_bond_vlan_and_ipv6_prefill_the_network_screen() {
    for (line, want) in [
        (
            "bond=bond0:eth1,eth0:mode=802.3ad vlan=bond0.30:bond0 \
             ip=bond0.30:dhcp ip=bond0.30:dhcp6",
            [
                item(1, "Bond NICs", "eth1,eth0"),
                item(2, "Bond", "802.3ad"),
                item(3, "VLAN id", "30"),
                item(4, "IPv4", "dhcp"),
                item(5, "IPv6", "dhcp6"),
            ],
        ),
        (
            "vlan=eth1.7:eth1 ip=eth1.7:auto6",
            [
                item(1, "Interface", "eth1"),
                item(2, "Bond", "none"),
                item(3, "VLAN id", "7"),
                item(4, "IPv4", "off"),
                item(5, "IPv6", "auto6 (SLAAC)"),
            ],
        ),
    ] {
        let cmdline = p2xen::bootparams::Cmdline::parse(line).unwrap();
        let mut t = Pty::open(WAIT);
        let (fake, _gate) = Fake::new();
        let h = start_menu(&[&t], MenuPrefill::from_cmdline(&cmdline), fake.clone());
        t.wait_for("1/7 Overview");
        t.send(b"n");
        let s = t.wait_for("2/7 Network");
        for w in &want {
            assert!(s.contains(w), "{line}: lacks {w:?}:\n{s}");
        }
        t.send(b"6");
        t.wait_for("network configured");
        assert_eq!(
            last_choice(&fake).to_request(),
            NetRequest::from_cmdline(&cmdline),
            "{line}"
        );
        drop(t);
        assert_eq!(join(h).unwrap(), MenuOutcome::ConsolesClosed);
    }
}
