//! A QEMU VM for system tests: TCG only (`/dev/kvm` hangs on these machines),
//! serial console on a pipe, a hard timeout, killed on drop, and the serial
//! log printed when a wait fails.
//!
//! ```ignore
//! let mut vm = Vm::builder("out/vmlinuz", "out/initramfs.img")
//!     .append("p2xen.debug")
//!     .drive("disk.img", "virtio")
//!     .start()?;
//! vm.wait_for("p2xen-live: ready", Duration::from_secs(120));
//! vm.send("poweroff\n");
//! vm.wait_exit(Duration::from_secs(60));
//! ```
//!
//! `Vm::firmware(Firmware::Ovmf)` boots through the firmware instead (no
//! `-kernel`): the boot media tests attach the medium with `arg`/`disk`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which live image (`build/live`) a VM boots.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arch {
    /// out/vmlinuz and out/initramfs.img.
    Amd64,
    /// out/i386 (`build/live --arch i386`) on a Core Duo: no long mode.
    I386,
}

impl Arch {
    /// A VM booting this live image's kernel and initramfs.
    pub fn live_vm(self) -> VmBuilder {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
        match self {
            Arch::Amd64 => Vm::builder(out.join("vmlinuz"), out.join("initramfs.img")),
            Arch::I386 => Vm::builder(out.join("i386/vmlinuz"), out.join("i386/initramfs.img"))
                .i386("coreduo"),
        }
    }
}

/// How a disk is attached; each maps to the QEMU devices that model it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Virtio,
    Ahci,
    Ide,
    Nvme,
    Megasas,
    VirtioScsi,
}

/// The firmware of a VM that boots from its media rather than `-kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default BIOS.
    SeaBios,
    /// UEFI, Debian's `ovmf` package.
    Ovmf,
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

enum Boot {
    Kernel { kernel: PathBuf, initrd: PathBuf },
    Firmware(Firmware),
}

pub struct VmBuilder {
    boot: Boot,
    append: Vec<String>,
    memory_mib: u32,
    args: Vec<String>,
    disks: usize,
    hard_timeout: Duration,
    consoles: String,
    serials: usize,
    /// The QEMU system binary and its `-cpu` model.
    system: (&'static str, String),
}

impl VmBuilder {
    /// A 32-bit PC with this CPU model (`qemu-system-i386 -cpu pentium3`:
    /// no long mode, as the servers of the seed's era).
    pub fn i386(mut self, cpu: &str) -> Self {
        self.system = ("qemu-system-i386", cpu.to_string());
        self
    }

    /// The kernel's `console=` words (default `console=ttyS0`); ignored on
    /// a firmware boot, where the boot loader chooses them.
    pub fn consoles(mut self, words: &str) -> Self {
        self.consoles = words.to_string();
        self
    }

    /// One more UART (ttyS1, ttyS2, ... in call order; ttyS0 is the log on
    /// stdio), connected to a Unix socket at `path` that QEMU listens on:
    /// [`super::terminal::Terminal::connect`] is the other end.
    pub fn serial_socket(mut self, path: &Path) -> Self {
        self.serials += 1;
        let id = format!("serial{}", self.serials);
        self.args.extend([
            "-chardev".into(),
            format!("socket,id={id},path={},server=on,wait=off", path.display()),
            "-serial".into(),
            format!("chardev:{id}"),
        ]);
        self
    }

    /// Extra words for the kernel command line (after the `console=` words);
    /// ignored on a firmware boot, where the boot loader chooses it.
    pub fn append(mut self, words: &str) -> Self {
        self.append.push(words.to_string());
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Kills the VM after this long no matter what (default 300 s).
    pub fn hard_timeout(mut self, t: Duration) -> Self {
        self.hard_timeout = t;
        self
    }

    /// Any extra QEMU arguments.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Attaches a raw image on `bus`. `readonly` makes QEMU refuse writes too.
    pub fn disk(mut self, image: &Path, bus: DiskBus, readonly: bool) -> Self {
        let n = self.disks;
        self.disks += 1;
        let ro = if readonly { ",readonly=on" } else { "" };
        let id = format!("disk{n}");
        let drive = format!("file={},format=raw,if=none,id={id}{ro}", image.display());
        self.args.extend(["-drive".into(), drive]);
        let dev: Vec<String> = match bus {
            DiskBus::Virtio => vec![format!("virtio-blk-pci,drive={id}")],
            DiskBus::Ahci => vec![
                format!("ahci,id=ahci{n}"),
                format!("ide-hd,drive={id},bus=ahci{n}.0"),
            ],
            // The i440fx machine's built-in PIIX IDE controller.
            DiskBus::Ide => vec![format!("ide-hd,drive={id},bus=ide.0")],
            DiskBus::Nvme => vec![format!("nvme,drive={id},serial=p2xen{n}")],
            DiskBus::Megasas => vec![
                format!("megasas,id=scsi{n}"),
                format!("scsi-hd,drive={id},bus=scsi{n}.0"),
            ],
            DiskBus::VirtioScsi => vec![
                format!("virtio-scsi-pci,id=scsi{n}"),
                format!("scsi-hd,drive={id},bus=scsi{n}.0"),
            ],
        };
        for d in dev {
            self.args.extend(["-device".into(), d]);
        }
        self
    }

    /// A NIC model (`e1000`, `e1000e`, `rtl8139`, `virtio-net-pci`) on user networking.
    pub fn nic(mut self, model: &str) -> Self {
        let n = self
            .args
            .iter()
            .filter(|a| a.starts_with("user,id=net"))
            .count();
        self.args.extend([
            "-netdev".into(),
            format!("user,id=net{n}"),
            "-device".into(),
            format!("{model},netdev=net{n}"),
        ]);
        self
    }

    pub fn start(self) -> Result<Vm, String> {
        let (qemu, cpu) = &self.system;
        let mut cmd = Command::new(qemu);
        cmd.args(["-accel", "tcg", "-machine", "pc", "-cpu", cpu, "-smp", "1"])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-no-reboot");
        let mut vars_dir = None;
        match &self.boot {
            Boot::Kernel { kernel, initrd } => {
                for f in [kernel, initrd] {
                    if !f.exists() {
                        return Err(format!("{} missing: run build/live first", f.display()));
                    }
                }
                let mut append = vec![self.consoles.clone(), "panic=-1".to_string()];
                append.extend(self.append.iter().cloned());
                cmd.arg("-nodefaults")
                    .arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .args(["-append", &append.join(" ")]);
            }
            // A firmware boot keeps QEMU's default devices (VGA above all):
            // the firmware and boot loaders expect a display adapter, as on
            // a real machine. Tests pass `-nic none` when they want no NIC.
            Boot::Firmware(Firmware::SeaBios) => {}
            Boot::Firmware(Firmware::Ovmf) => {
                // Each VM gets its own writable copy of the UEFI variables.
                let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                let vars = dir.path().join("OVMF_VARS.fd");
                std::fs::copy(OVMF_VARS, &vars)
                    .map_err(|e| format!("{OVMF_VARS}: {e} (apt-get install ovmf)"))?;
                cmd.arg("-drive")
                    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,file={}", vars.display()));
                vars_dir = Some(dir);
            }
        }
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{qemu}: {e} (apt-get install qemu-system-x86)"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            readers.push(std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut l) = log.lock() {
                        l.extend_from_slice(&buf[..n]);
                    }
                }
            }));
        }
        let stdin = child.stdin.take();
        let child = Arc::new(Mutex::new(child));
        // The watchdog kills a VM that outlives its hard timeout even if the
        // test itself is stuck somewhere else.
        let watchdog = Arc::clone(&child);
        let hard = self.hard_timeout;
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while t0.elapsed() < hard {
                std::thread::sleep(Duration::from_millis(500));
                match watchdog.lock() {
                    Ok(mut c) => {
                        if !matches!(c.try_wait(), Ok(None)) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            if let Ok(mut c) = watchdog.lock() {
                eprintln!("qemu: hard timeout of {hard:?} reached; killing the VM");
                let _ = c.kill();
            }
        });
        Ok(Vm {
            child,
            stdin,
            log,
            readers: Mutex::new(readers),
            started: Instant::now(),
            _vars: vars_dir,
        })
    }
}

pub struct Vm {
    child: Arc<Mutex<Child>>,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<Vec<u8>>>,
    /// Copy QEMU's output into `log`; joined once QEMU exits so the log is complete.
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    started: Instant,
    /// The OVMF variable store's directory, removed with the VM.
    _vars: Option<tempfile::TempDir>,
}

impl Vm {
    /// A VM that boots `kernel` and `initrd` directly (`-kernel`, `-nodefaults`).
    pub fn builder(kernel: impl AsRef<Path>, initrd: impl AsRef<Path>) -> VmBuilder {
        Self::with_boot(Boot::Kernel {
            kernel: kernel.as_ref().to_path_buf(),
            initrd: initrd.as_ref().to_path_buf(),
        })
    }

    /// A VM that boots through `firmware` from the media the test attaches.
    pub fn firmware(firmware: Firmware) -> VmBuilder {
        Self::with_boot(Boot::Firmware(firmware))
    }

    fn with_boot(boot: Boot) -> VmBuilder {
        VmBuilder {
            boot,
            append: Vec::new(),
            memory_mib: 512,
            args: Vec::new(),
            disks: 0,
            hard_timeout: Duration::from_secs(300),
            consoles: "console=ttyS0".to_string(),
            serials: 0,
            system: ("qemu-system-x86_64", "qemu64".to_string()),
        }
    }

    /// The serial output so far (console plus QEMU's own stderr).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .ok()
            .and_then(|mut c| c.try_wait().ok().flatten())
    }

    /// Waits until `marker` is in the log; panics (the log is printed on drop) on timeout or
    /// if the VM stops first. Returns the time since the VM started.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.log().contains(marker) {
                return self.started.elapsed();
            }
            if let Some(status) = self.exited() {
                std::thread::sleep(Duration::from_millis(200));
                if self.log().contains(marker) {
                    return self.started.elapsed();
                }
                panic!("VM exited ({status}) before {marker:?} (serial log printed below)");
            }
            if t0.elapsed() > timeout {
                panic!("no {marker:?} within {timeout:?} (serial log printed below)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Like [`Vm::wait_for`], then also waits for the end of that line;
    /// returns the rest of the line after `marker` (trimmed) and the time.
    pub fn wait_for_line(&self, marker: &str, timeout: Duration) -> (String, Duration) {
        let t0 = Instant::now();
        self.wait_for(marker, timeout);
        loop {
            let log = self.log();
            let rest = log.split_once(marker).map(|(_, r)| r).unwrap_or_default();
            if let Some((line, _)) = rest.split_once('\n') {
                return (line.trim().to_string(), self.started.elapsed());
            }
            // A VM that powered off has written its last byte: no line break
            // is coming, the line ends here.
            if self.exited().is_some() {
                std::thread::sleep(Duration::from_millis(200));
                let log = self.log();
                let rest = log.split_once(marker).map(|(_, r)| r).unwrap_or_default();
                let line = rest.split_once('\n').map_or(rest, |(l, _)| l);
                return (line.trim().to_string(), self.started.elapsed());
            }
            if t0.elapsed() > timeout {
                panic!(
                    "{marker:?} line not complete within {timeout:?} (serial log printed below)"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Waits for QEMU to exit (guest poweroff with -no-reboot); panics with
    /// the log on timeout.
    pub fn wait_exit(&self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                // The pipes are closed now; the readers end after the last byte.
                if let Ok(mut readers) = self.readers.lock() {
                    for r in readers.drain(..) {
                        let _ = r.join();
                    }
                }
                return s;
            }
            if t0.elapsed() > timeout {
                panic!("VM still running after {timeout:?} (serial log printed below)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- serial log at drop ---\n{}", self.log());
        }
    }
}
