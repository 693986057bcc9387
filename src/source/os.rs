//! The installed OS, read from an ext2/3/4 filesystem through `ext4-view`
//! (never mounted): os-release, hostname, fstab, kernels and initrds,
//! bootloader configs and the init system.
//!
//! Every file is read only after checking its size against [`FILE_MAX`], so
//! a huge or corrupt file cannot make us allocate without bound.

use crate::source::device::ReadAt;
use ext4_view::{Ext4, Ext4Error, Ext4Read};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Largest file read from a source filesystem.
pub const FILE_MAX: u64 = 1 << 20;

const EXT_MAGIC_OFFSET: u64 = 1080;
const EXT_MAGIC: [u8; 2] = [0x53, 0xef];

/// The OS installed on a root filesystem. Part of the `inspect --json`
/// contract (docs/inspect-json.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    pub pretty_name: Option<String>,
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub hostname: Option<String>,
    pub fstab: Vec<FstabEntry>,
    /// File names in /boot, e.g. "vmlinuz-6.1.0-18-amd64".
    pub kernels: Vec<String>,
    pub initrds: Vec<String>,
    /// "grub2", "grub-legacy", "lilo": each at most once.
    pub bootloaders: Vec<String>,
    /// Paths of the bootloader configs found, as seen by the running OS
    /// (e.g. "/boot/grub/grub.cfg").
    #[serde(default)]
    pub bootloader_configs: Vec<String>,
    /// "systemd" or "sysvinit".
    pub init_system: Option<String>,
}

/// One line of /etc/fstab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FstabEntry {
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub options: String,
    pub freq: u32,
    pub passno: u32,
}

/// Kernels, initrds and bootloader configs of a /boot directory or of a
/// separate /boot partition (paths then as if mounted on /boot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootFiles {
    pub kernels: Vec<String>,
    pub initrds: Vec<String>,
    pub bootloaders: Vec<String>,
    pub bootloader_configs: Vec<String>,
}

/// What an ext filesystem holds that `inspect` cares about.
#[derive(Debug, Clone, Default)]
pub struct ExtScan {
    /// Set when the filesystem is a Linux root.
    pub os: Option<OsInfo>,
    /// Set when the filesystem is a separate /boot (kernels at its root).
    pub boot: Option<BootFiles>,
    /// Files that exist but could not be read.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OsError {
    #[error("{path}: ext filesystem at offset {offset} cannot be read by ext4-view: {reason}")]
    Load {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// A partition of a shared source, owned so that it can be boxed for
/// `Ext4::load` (which wants `Box<dyn Ext4Read>`, hence `'static`).
struct PartReader {
    disk: Arc<dyn ReadAt>,
    start: u64,
    len: u64,
}

impl Ext4Read for PartReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        start_byte
            .checked_add(dst.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                format!(
                    "read of {} bytes at {start_byte} is past the partition end ({})",
                    dst.len(),
                    self.len
                )
            })?;
        let abs = self
            .start
            .checked_add(start_byte)
            .ok_or("offset overflows")?;
        self.disk
            .read_exact_at(abs, dst)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
}

/// Whether the ext superblock magic is at its place in `part`.
pub fn has_ext_magic(disk: &dyn ReadAt, start: u64) -> bool {
    let mut m = [0u8; 2];
    start
        .checked_add(EXT_MAGIC_OFFSET)
        .is_some_and(|off| disk.read_exact_at(off, &mut m).is_ok() && m == EXT_MAGIC)
}

/// Reads the OS identity and /boot contents of the ext filesystem of `len`
/// bytes at `start` of `disk`. `Ok(None)` when there is no ext superblock.
pub fn scan(disk: Arc<dyn ReadAt>, start: u64, len: u64) -> Result<Option<ExtScan>, OsError> {
    if !has_ext_magic(disk.as_ref(), start) {
        return Ok(None);
    }
    let path = disk.name().to_path_buf();
    let fs = Ext4::load(Box::new(PartReader { disk, start, len })).map_err(|e| OsError::Load {
        path: path.clone(),
        offset: start,
        reason: e.to_string(),
    })?;
    let mut r = Reader {
        fs: &fs,
        warnings: Vec::new(),
        label: format!("{} (ext filesystem at offset {start})", path.display()),
    };
    let os = read_os(&mut r);
    let boot = if os.is_none() {
        let b = boot_files(&mut r, "/", "/boot");
        (!b.kernels.is_empty()).then_some(b)
    } else {
        None
    };
    Ok(Some(ExtScan {
        os,
        boot,
        warnings: r.warnings,
    }))
}

/// Bounded file access that turns unexpected errors into warnings.
struct Reader<'a> {
    fs: &'a Ext4,
    warnings: Vec<String>,
    label: String,
}

impl Reader<'_> {
    fn exists(&mut self, path: &str) -> bool {
        self.fs.exists(path).unwrap_or(false)
    }

    /// The text of `path`, or `None` if it does not exist or is unreadable.
    fn text(&mut self, path: &str) -> Option<String> {
        let meta = match self.fs.metadata(path) {
            Ok(m) => m,
            Err(Ext4Error::NotFound) | Err(Ext4Error::NotADirectory) => return None,
            Err(e) => {
                self.warnings.push(format!("{}: {path}: {e}", self.label));
                return None;
            }
        };
        if meta.is_dir() {
            return None;
        }
        if meta.len() > FILE_MAX {
            self.warnings.push(format!(
                "{}: {path} is {} bytes, more than the {FILE_MAX} p2xen reads; ignored",
                self.label,
                meta.len()
            ));
            return None;
        }
        match self.fs.read(path) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                self.warnings.push(format!("{}: {path}: {e}", self.label));
                None
            }
        }
    }

    /// Names of regular files in `dir` (symlinks and directories skipped).
    fn files(&mut self, dir: &str) -> Vec<String> {
        let entries = match self.fs.read_dir(dir) {
            Ok(e) => e,
            Err(Ext4Error::NotFound) | Err(Ext4Error::NotADirectory) => return Vec::new(),
            Err(e) => {
                self.warnings.push(format!("{}: {dir}: {e}", self.label));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        // A directory of absurd size is corrupt; stop listing rather than grow forever.
        for entry in entries.take(100_000) {
            let Ok(entry) = entry else {
                self.warnings
                    .push(format!("{}: {dir}: unreadable directory entry", self.label));
                break;
            };
            let Ok(name) = entry.file_name().as_str().map(str::to_string) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_regular_file()) {
                out.push(name);
            }
        }
        out.sort();
        out
    }
}

const ROOT_MARKERS: &[&str] = &[
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/fstab",
    "/etc/debian_version",
    "/etc/redhat-release",
    "/etc/SuSE-release",
    "/etc/inittab",
];

fn read_os(r: &mut Reader<'_>) -> Option<OsInfo> {
    if !ROOT_MARKERS.iter().any(|m| r.exists(m)) {
        return None;
    }
    let mut os = OsInfo::default();
    if let Some(text) = r
        .text("/etc/os-release")
        .or_else(|| r.text("/usr/lib/os-release"))
    {
        let kv = parse_os_release(&text);
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        os.pretty_name = get("PRETTY_NAME").or_else(|| get("NAME"));
        os.id = get("ID");
        os.version_id = get("VERSION_ID");
    } else if let Some(v) = r.text("/etc/debian_version") {
        let v = first_line(&v);
        os.pretty_name = Some(format!("Debian GNU/Linux {v}"));
        os.id = Some("debian".to_string());
        os.version_id = Some(v);
    } else if let Some(t) = r.text("/etc/redhat-release") {
        let line = first_line(&t);
        let lower = line.to_lowercase();
        os.id = Some(
            if lower.starts_with("centos") {
                "centos"
            } else if lower.starts_with("fedora") {
                "fedora"
            } else {
                "rhel"
            }
            .to_string(),
        );
        os.version_id = version_token(&line);
        os.pretty_name = Some(line);
    } else if let Some(t) = r.text("/etc/SuSE-release") {
        let line = first_line(&t);
        os.id = Some(
            if line.contains("Enterprise") {
                "sles"
            } else {
                "opensuse"
            }
            .to_string(),
        );
        os.version_id = t.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "VERSION").then(|| v.trim().to_string())
        });
        os.pretty_name = Some(line);
    }
    os.hostname = r
        .text("/etc/hostname")
        .or_else(|| r.text("/etc/HOSTNAME"))
        .and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
        })
        .or_else(|| {
            let t = r.text("/etc/sysconfig/network")?;
            let kv = parse_os_release(&t);
            kv.into_iter()
                .find(|(k, _)| k == "HOSTNAME")
                .map(|(_, v)| v)
        });
    if let Some(t) = r.text("/etc/fstab") {
        os.fstab = parse_fstab(&t);
    }
    let boot = boot_files(r, "/boot", "/boot");
    merge_boot(&mut os, &boot);
    if r.exists("/etc/lilo.conf") {
        push_unique(&mut os.bootloaders, "lilo");
        push_unique(&mut os.bootloader_configs, "/etc/lilo.conf");
    }
    os.init_system = if r.exists("/lib/systemd/systemd") || r.exists("/usr/lib/systemd/systemd") {
        Some("systemd".to_string())
    } else if r.exists("/etc/inittab") {
        Some("sysvinit".to_string())
    } else {
        None
    };
    Some(os)
}

/// Adds kernels, initrds and bootloaders from a /boot directory or a
/// separate /boot partition to `os`, without duplicates.
pub fn merge_boot(os: &mut OsInfo, boot: &BootFiles) {
    for k in &boot.kernels {
        push_unique(&mut os.kernels, k);
    }
    for i in &boot.initrds {
        push_unique(&mut os.initrds, i);
    }
    for b in &boot.bootloaders {
        push_unique(&mut os.bootloaders, b);
    }
    for c in &boot.bootloader_configs {
        push_unique(&mut os.bootloader_configs, c);
    }
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Kernels etc. in `dir` of this filesystem; config paths are reported
/// below `shown_as` (where the running OS sees `dir`).
fn boot_files(r: &mut Reader<'_>, dir: &str, shown_as: &str) -> BootFiles {
    let mut b = BootFiles::default();
    for name in r.files(dir) {
        if name.starts_with("vmlinuz") || name.starts_with("vmlinux") {
            b.kernels.push(name);
        } else if name.starts_with("initrd") || name.starts_with("initramfs") {
            b.initrds.push(name);
        }
    }
    let base = dir.trim_end_matches('/');
    let configs = [
        ("grub/grub.cfg", "grub2"),
        ("grub2/grub.cfg", "grub2"),
        ("grub/menu.lst", "grub-legacy"),
        ("grub/grub.conf", "grub-legacy"),
    ];
    for (rel, kind) in configs {
        if r.exists(&format!("{base}/{rel}")) {
            push_unique(&mut b.bootloaders, kind);
            b.bootloader_configs.push(format!("{shown_as}/{rel}"));
        }
    }
    b
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn version_token(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
}

/// `KEY=value` lines with shell-style quoting, as os-release(5) defines.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        out.push((k.trim().to_string(), unquote(v.trim())));
    }
    out
}

fn unquote(v: &str) -> String {
    let mut chars = v.chars();
    let quote = match v.chars().next() {
        Some(q @ ('"' | '\'')) => {
            chars.next();
            Some(q)
        }
        _ => None,
    };
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => break,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (None, '#') => break,
            _ => out.push(c),
        }
    }
    if quote.is_none() {
        out.truncate(out.trim_end().len());
    }
    out
}

/// fstab(5): whitespace-separated fields, `#` comments, octal escapes
/// (`\040` for a space) in the first two fields.
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut f = line.split_whitespace();
            let spec = unescape_octal(f.next()?);
            let file = unescape_octal(f.next()?);
            let vfstype = f.next().unwrap_or("auto").to_string();
            let options = f.next().unwrap_or("defaults").to_string();
            let freq = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let passno = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            Some(FstabEntry {
                spec,
                file,
                vfstype,
                options,
                freq,
                passno,
            })
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let esc = b
            .get(i + 1..i + 4)
            .filter(|d| b.get(i) == Some(&b'\\') && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match esc {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b.get(i).copied().unwrap_or(b'?'));
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quoting() {
        let kv = parse_os_release(
            "# c\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nNAME='My \"OS\"'\nX=\"a\\\"b\"\nY=plain # comment\n",
        );
        assert_eq!(
            kv[0],
            (
                "PRETTY_NAME".into(),
                "Debian GNU/Linux 12 (bookworm)".into()
            )
        );
        assert_eq!(kv[1], ("ID".into(), "debian".into()));
        assert_eq!(kv[2], ("NAME".into(), "My \"OS\"".into()));
        assert_eq!(kv[3], ("X".into(), "a\"b".into()));
        assert_eq!(kv[4], ("Y".into(), "plain".into()));
    }

    #[test]
    fn fstab_fields_defaults_and_escapes() {
        let t = "# /etc/fstab\nUUID=abc / ext4 errors=remount-ro 0 1\n/dev/sda2\tnone swap sw\n\n/dev/sdb1 /mnt/my\\040disk vfat\n";
        let e = parse_fstab(t);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            FstabEntry {
                spec: "UUID=abc".into(),
                file: "/".into(),
                vfstype: "ext4".into(),
                options: "errors=remount-ro".into(),
                freq: 0,
                passno: 1
            }
        );
        assert_eq!((e[1].options.as_str(), e[1].passno), ("sw", 0));
        assert_eq!(e[2].file, "/mnt/my disk");
        assert_eq!(e[2].options, "defaults");
    }

    #[test]
    fn octal_escape_at_the_end_of_a_field_does_not_panic() {
        assert_eq!(unescape_octal("a\\04"), "a\\04");
        assert_eq!(unescape_octal("\\777"), "?");
    }
}
