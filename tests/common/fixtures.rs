//! Disk-image fixtures built with the real tools (sfdisk, mke2fs -d,
//! debugfs), plus helpers to hash images and run the p2xen binary.
//!
//! A missing tool is a loud failure naming the Debian package to install.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const MIB: u64 = 1 << 20;
pub const SECTOR: u64 = 512;

/// Panics with the package to install when `tool` is not on PATH.
pub fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
    assert!(
        found,
        "{tool} not found: install the Debian package {package}"
    );
}

/// Runs a command, panics with its stderr when it fails, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_output(cmd).stdout).into_owned()
}

/// Runs a command, panics with its stderr when it fails, returns its whole
/// output (for tools that report on stderr even when they succeed).
pub fn run_output(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    succeeded(cmd, out)
}

/// `out` of `cmd`, after panicking with its stderr if it failed.
fn succeeded(cmd: &Command, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd ARGS` after checking it is installed (from `package`).
pub fn tool(cmd: &str, package: &str, args: &[&str]) -> Output {
    need(cmd, package);
    run_output(Command::new(cmd).args(args))
}

/// Like [`tool`], returning its stdout.
pub fn tool_stdout(cmd: &str, package: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&tool(cmd, package, args).stdout).into_owned()
}

/// Writes a tree of files under `root`: (path, content), paths relative or
/// absolute inside the tree; content "->TARGET" makes a symlink.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (p, content) in files {
        let dst = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        match content.strip_prefix("->") {
            Some(target) => std::os::unix::fs::symlink(target, &dst).unwrap(),
            None => fs::write(&dst, content).unwrap(),
        }
    }
}

/// A sparse file of `size` bytes.
pub fn sparse_image(path: &Path, size: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

/// Cuts (or sparsely extends) an existing image to `size` bytes.
pub fn resize(path: &Path, size: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

/// Runs a command with `input` on its stdin (written from a thread, so a
/// child that answers before reading all of it cannot deadlock us); panics
/// with its stderr when it fails.
pub fn run_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    succeeded(cmd, out)
}

/// Writes a partition table with an `sfdisk` script.
pub fn sfdisk(image: &Path, script: &str) {
    need("sfdisk", "fdisk");
    run_stdin(
        Command::new("sfdisk")
            .arg("--quiet")
            .arg("--no-reread")
            .arg("--no-tell-kernel")
            .arg(image),
        script.as_bytes(),
    );
}

/// `sfdisk -J` of an image, parsed.
pub fn sfdisk_json(image: &Path) -> serde_json::Value {
    need("sfdisk", "fdisk");
    let out = run(Command::new("sfdisk").arg("-J").arg(image));
    serde_json::from_str(&out).expect("sfdisk -J prints JSON")
}

/// Files of a small Linux root: /etc/os-release, hostname, fstab, a kernel
/// and initrd in /boot (unless `boot_in_root` is false), grub.cfg, systemd.
pub struct RootTree {
    pub hostname: String,
    pub pretty_name: String,
    pub fstab: String,
    pub kernels: Vec<String>,
    pub boot_in_root: bool,
}

impl RootTree {
    pub fn debian(hostname: &str) -> Self {
        RootTree {
            hostname: hostname.to_string(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".to_string(),
            fstab: "# /etc/fstab: static file system information.\n\
                    UUID=0b5e4e2a-6c1b-4f59-9c43-2f9d3c7e0a11 / ext4 errors=remount-ro 0 1\n\
                    /dev/sda1 /boot ext2 defaults 0 2\n\
                    /dev/sda5 none swap sw 0 0\n\
                    proc /proc proc defaults 0 0\n"
                .to_string(),
            kernels: vec!["6.1.0-18-amd64".to_string(), "6.1.0-17-amd64".to_string()],
            boot_in_root: true,
        }
    }

    /// Writes the tree under `dir`.
    pub fn write(&self, dir: &Path) {
        let os_release = format!(
            "PRETTY_NAME=\"{}\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
            self.pretty_name
        );
        write_tree(
            dir,
            &[
                ("usr/lib/os-release", &os_release),
                // Like Debian: /etc/os-release is a relative symlink into /usr/lib.
                ("etc/os-release", "->../usr/lib/os-release"),
                ("etc/hostname", &format!("{}\n", self.hostname)),
                ("etc/fstab", &self.fstab),
                ("usr/lib/systemd/systemd", "\x7fELF"),
            ],
        );
        if self.boot_in_root {
            BootTree {
                kernels: self.kernels.clone(),
            }
            .write(&dir.join("boot"));
        } else {
            fs::create_dir_all(dir.join("boot")).unwrap();
        }
    }
}

/// Contents of a /boot: kernels, initrds, grub/grub.cfg.
pub struct BootTree {
    pub kernels: Vec<String>,
}

impl BootTree {
    pub fn write(&self, dir: &Path) {
        fs::create_dir_all(dir.join("grub")).unwrap();
        fs::write(dir.join("grub/grub.cfg"), "set default=0\n").unwrap();
        for k in &self.kernels {
            fs::write(dir.join(format!("vmlinuz-{k}")), "kernel").unwrap();
            fs::write(dir.join(format!("initrd.img-{k}")), "initrd").unwrap();
            fs::write(dir.join(format!("config-{k}")), "CONFIG_EXT4_FS=m\n").unwrap();
        }
    }
}

/// Makes an ext2/3/4 filesystem of `size` bytes at byte `offset` of `image`
/// (in place, with `mke2fs -E offset=`), populated from `dir` if given.
pub fn mke2fs_at(
    image: &Path,
    fstype: &str,
    offset: u64,
    size: u64,
    dir: Option<&Path>,
    label: &str,
) {
    need("mke2fs", "e2fsprogs");
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", fstype, "-L", label, "-b", "1024"])
        .arg("-E")
        .arg(format!("offset={offset}"));
    if let Some(d) = dir {
        cmd.arg("-d").arg(d);
    }
    cmd.arg(image).arg(format!("{}k", size / 1024));
    run(&mut cmd);
}

/// `image?offset=N` as e2fsprogs tools accept it.
pub fn at_offset(image: &Path, offset: u64) -> String {
    format!("{}?offset={offset}", image.display())
}

/// `debugfs -R REQUEST` on the ext filesystem at `offset` (read-only, no
/// mount). debugfs exits 0 even when the request fails: its complaint is on
/// stderr.
pub fn debugfs(image: &Path, offset: u64, request: &str) -> Output {
    tool(
        "debugfs",
        "e2fsprogs",
        &["-R", request, &at_offset(image, offset)],
    )
}

/// A file's content read by `debugfs` (independent of p2xen's reader).
pub fn debugfs_cat(image: &Path, offset: u64, path: &str) -> String {
    String::from_utf8_lossy(&debugfs(image, offset, &format!("cat {path}")).stdout).into_owned()
}

/// File names in a directory, by `debugfs ls -l` (regular files only).
pub fn debugfs_ls_files(image: &Path, offset: u64, dir: &str) -> Vec<String> {
    let out = debugfs(image, offset, &format!("ls -l {dir}"));
    let out = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _inode = f.next()?;
            let mode = f.next()?;
            let name = l.split_whitespace().last()?;
            mode.starts_with("100").then(|| name.to_string())
        })
        .collect();
    names.sort();
    names
}

/// Overwrites bytes of an image in place.
pub fn patch(image: &Path, offset: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(image).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// A 16-byte MBR/EBR partition entry: `kind` at byte 4, the start LBA (relative
/// as the table it sits in defines) and the sector count little-endian.
pub fn mbr_entry(kind: u8, start_lba: u32, sectors: u32) -> [u8; 16] {
    let mut entry = [0u8; 16];
    entry[4] = kind;
    entry[8..12].copy_from_slice(&start_lba.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    entry
}

/// Reads bytes of an image.
pub fn peek(image: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

/// Copies `src` into `image` at `offset` like `dd conv=notrunc,sparse`.
pub fn dd_into(image: &Path, offset: u64, src: &Path) {
    run(Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", image.display()))
        .args([
            "bs=512",
            "conv=notrunc,sparse",
            "status=none",
            "oflag=seek_bytes",
        ])
        .arg(format!("seek={offset}")));
}

/// blake3 of `len` bytes at `offset` of a file, hex.
pub fn hash_range(path: &Path, offset: u64, len: usize) -> String {
    blake3::hash(&peek(path, offset, len)).to_hex().to_string()
}

/// blake3 of a whole file, hex.
pub fn hash_file(path: &Path) -> String {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().to_hex().to_string()
}

/// Runs the p2xen binary.
pub fn p2xen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_p2xen"))
        .args(args)
        .output()
        .expect("run p2xen")
}

/// `p2xen inspect --json IMAGES...`: (report, exit code, stderr).
pub fn inspect_json(images: &[&Path]) -> (serde_json::Value, i32, String) {
    let mut args = vec!["inspect", "--json"];
    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = p2xen(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json printed no JSON ({e}); stderr: {stderr}"));
    (v, out.status.code().unwrap_or(-1), stderr)
}

/// [`inspect_json`] of one image, asserting the image is unchanged afterwards.
pub fn inspect_unchanged(image: &Path) -> (serde_json::Value, i32, String) {
    let before = hash_file(image);
    let r = inspect_json(&[image]);
    assert_eq!(
        hash_file(image),
        before,
        "inspect changed {}",
        image.display()
    );
    r
}

/// Partition `number` of a disk in an `inspect --json` report.
pub fn partition(disk: &serde_json::Value, number: u64) -> &serde_json::Value {
    disk["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["number"] == number)
        .unwrap_or_else(|| panic!("no partition {number} in {disk:#}"))
}

/// An MBR disk like an old server's: /boot (ext2, primary 1, bootable),
/// swap (primary 2), an extended partition 3 holding logical 5 (ext4 root
/// with a Debian tree) and logical 6 (ext3 /srv), all built by the tools.
pub struct MbrServer {
    pub image: PathBuf,
    pub boot_offset: u64,
    pub root_offset: u64,
    pub srv_offset: u64,
    pub kernels: Vec<String>,
}

pub fn mbr_server(dir: &Path) -> MbrServer {
    let image = dir.join("mbr.img");
    sparse_image(&image, 64 * MIB);
    sfdisk(
        &image,
        "label: dos\nlabel-id: 0x2ab1c0de\n\
         start=2048, size=16384, type=83, bootable\n\
         start=18432, size=8192, type=82\n\
         start=26624, size=104448, type=5\n\
         start=28672, size=40960, type=83\n\
         start=71680, size=20480, type=83\n",
    );
    let kernels = vec!["6.1.0-18-amd64".to_string(), "6.1.0-17-amd64".to_string()];
    let boot_dir = dir.join("boot-tree");
    BootTree {
        kernels: kernels.clone(),
    }
    .write(&boot_dir);
    let root_dir = dir.join("root-tree");
    RootTree {
        boot_in_root: false,
        ..RootTree::debian("oldserver")
    }
    .write(&root_dir);
    let boot_offset = 2048 * SECTOR;
    let root_offset = 28672 * SECTOR;
    let srv_offset = 71680 * SECTOR;
    mke2fs_at(
        &image,
        "ext2",
        boot_offset,
        16384 * SECTOR,
        Some(&boot_dir),
        "boot",
    );
    mke2fs_at(
        &image,
        "ext4",
        root_offset,
        40960 * SECTOR,
        Some(&root_dir),
        "root",
    );
    mke2fs_at(&image, "ext3", srv_offset, 20480 * SECTOR, None, "srv");
    MbrServer {
        image,
        boot_offset,
        root_offset,
        srv_offset,
        kernels,
    }
}

/// A GPT disk: BIOS boot (1), ESP (2), ext4 root named "root" with the
/// legacy-BIOS-bootable attribute (3), swap (4), /home (5).
pub struct GptServer {
    pub image: PathBuf,
    pub root_offset: u64,
}

pub fn gpt_server(dir: &Path) -> GptServer {
    let image = dir.join("gpt.img");
    sparse_image(&image, 64 * MIB);
    sfdisk(
        &image,
        "label: gpt\nlabel-id: 5D9A37C4-1B0E-4B6A-9F3B-3B7E2C1D0A01\n\
         start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\n\
         start=4096, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System\"\n\
         start=20480, size=61440, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\", attrs=\"RequiredPartition LegacyBIOSBootable\"\n\
         start=81920, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=\"swap\"\n\
         start=90112, size=20480, type=933AC7E1-2EB4-4F13-B844-0E14E2AEF915, name=\"home\"\n",
    );
    let root_dir = dir.join("gpt-root-tree");
    RootTree::debian("gpthost").write(&root_dir);
    let root_offset = 20480 * SECTOR;
    mke2fs_at(
        &image,
        "ext4",
        root_offset,
        61440 * SECTOR,
        Some(&root_dir),
        "gptroot",
    );
    GptServer { image, root_offset }
}

/// Makes swap of `size` bytes at `offset` of `image` (mkswap on a separate
/// file, then copied into place sparsely), labelled if `label` is given.
pub fn mkswap_at(image: &Path, offset: u64, size: u64, label: Option<&str>) {
    need("mkswap", "util-linux");
    let tmp = image.with_extension(format!("swap{offset}.tmp"));
    sparse_image(&tmp, size);
    let mut cmd = Command::new("mkswap");
    cmd.arg("-q");
    if let Some(label) = label {
        cmd.arg("-L").arg(label);
    }
    run(cmd.arg(&tmp));
    dd_into(image, offset, &tmp);
    fs::remove_file(&tmp).unwrap();
}

/// `blkid -p -o export --offset N image` as key/value pairs.
pub fn blkid_probe(image: &Path, offset: u64) -> std::collections::BTreeMap<String, String> {
    need("blkid", "util-linux");
    let out = run(Command::new("blkid")
        .args(["-p", "-o", "export", "--offset"])
        .arg(offset.to_string())
        .arg(image));
    // export format escapes blanks in values (labels) as `\ `.
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("\\ ", " ")))
        .collect()
}

/// `dumpe2fs -h` of the ext filesystem at `offset`, as key/value pairs.
pub fn dumpe2fs_header(image: &Path, offset: u64) -> std::collections::BTreeMap<String, String> {
    need("dumpe2fs", "e2fsprogs");
    let out = run(Command::new("dumpe2fs")
        .arg("-h")
        .arg(at_offset(image, offset)));
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
