//! UEFI sources: the EFI System Partition (ESP) of the copy read and
//! written without a vfat driver in dom0 (mtools, else a loop mount), the
//! grub-efi stub configs followed to the real grub.cfg, Boot Loader
//! Specification entries read, and the fallback `\EFI\BOOT\BOOTX64.EFI`
//! planned, because the source's NVRAM boot entries stay in its firmware.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::bootcfg::BootEntry;
use super::mount::{LoopDevice, MountPoint, Mounted};

/// GPT partition type of an EFI System Partition.
pub const ESP_TYPE_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Where UEFI firmware looks when no NVRAM entry names a loader (x86-64).
pub const FALLBACK_LOADER: &str = "/EFI/BOOT/BOOTX64.EFI";
/// Loaders and configs in an ESP are small; a bigger file is not one.
const MAX_ESP_FILE: u64 = 64 * 1024 * 1024;

const FIX: &str = "install mtools (Debian: apt-get install mtools) or load dom0's vfat module \
                   (modprobe vfat), then re-run p2xen convert";

#[derive(Debug, thiserror::Error)]
pub enum EfiError {
    #[error("ESP ({esp}): cannot open it: {reason}; {FIX}")]
    NoAccess { esp: String, reason: String },
    #[error("ESP ({esp}): {cmd} failed: {stderr}")]
    Tool {
        esp: String,
        cmd: String,
        stderr: String,
    },
    #[error("ESP ({esp}): {path}: {source}")]
    Io {
        esp: String,
        path: String,
        source: std::io::Error,
    },
    #[error("ESP ({esp}): {path} is {size} bytes, more than a boot loader ({MAX_ESP_FILE})")]
    TooBig {
        esp: String,
        path: String,
        size: u64,
    },
}

/// Where the copy's ESP is.
#[derive(Debug, Clone)]
pub struct Esp {
    pub image: PathBuf,
    pub offset: u64,
    pub size: u64,
    /// "disk0 partition 1", for messages and the report.
    pub what: String,
}

/// The ESP opened for reading and writing files by their ESP paths
/// (`/EFI/debian/grub.cfg`): by mtools, which needs no kernel support, or
/// else through a loop mount with dom0's vfat driver.
pub struct EspFiles {
    esp: Esp,
    /// In drop order: mount, loop device, mount point.
    mounted: Option<(Mounted, LoopDevice, MountPoint)>,
}

/// Whether mtools can be run.
pub fn have_mtools() -> bool {
    Command::new("mcopy")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl EspFiles {
    pub fn open(esp: Esp, read_only: bool) -> Result<Self, EfiError> {
        Self::open_with(esp, read_only, have_mtools())
    }

    /// `mtools`: use them (else mount).
    pub fn open_with(esp: Esp, read_only: bool, mtools: bool) -> Result<Self, EfiError> {
        if mtools {
            return Ok(EspFiles { esp, mounted: None });
        }
        let no_access = |reason: String| EfiError::NoAccess {
            esp: esp.what.clone(),
            reason: format!("mtools not found and {reason}"),
        };
        let mnt = MountPoint::new().map_err(|e| no_access(e.to_string()))?;
        let lo = LoopDevice::attach(&esp.image, esp.offset, esp.size, read_only)
            .map_err(|e| no_access(e.to_string()))?;
        let mo = Mounted::mount(lo.path(), mnt.path(), "vfat", read_only)
            .map_err(|e| no_access(e.to_string()))?;
        Ok(EspFiles {
            esp,
            mounted: Some((mo, lo, mnt)),
        })
    }

    pub fn esp(&self) -> &Esp {
        &self.esp
    }

    /// Unmounts (after a loop mount) and reports failures.
    pub fn close(self) -> Result<(), EfiError> {
        let what = self.esp.what.clone();
        if let Some((mo, lo, mnt)) = self.mounted {
            let fail = |e: super::mount::MountError| EfiError::NoAccess {
                esp: what.clone(),
                reason: e.to_string(),
            };
            mo.unmount().map_err(fail)?;
            lo.detach().map_err(fail)?;
            drop(mnt);
        }
        Ok(())
    }

    fn image_spec(&self) -> String {
        format!("{}@@{}", self.esp.image.display(), self.esp.offset)
    }

    fn mtool(&self, cmd: &str, args: &[&str]) -> Result<Vec<u8>, EfiError> {
        let spec = self.image_spec();
        let out = Command::new(cmd)
            .arg("-i")
            .arg(&spec)
            .args(args)
            // Images made without a partition-aware geometry fail mtools'
            // sanity check though the FAT itself is fine.
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .map_err(|e| EfiError::NoAccess {
                esp: self.esp.what.clone(),
                reason: format!("{cmd}: {e}"),
            })?;
        if !out.status.success() {
            return Err(EfiError::Tool {
                esp: self.esp.what.clone(),
                cmd: format!("{cmd} -i {spec} {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    fn io(&self, path: &str) -> impl FnOnce(std::io::Error) -> EfiError + '_ {
        let path = path.to_string();
        move |source| EfiError::Io {
            esp: self.esp.what.clone(),
            path,
            source,
        }
    }

    /// Every file and directory (directories end in `/`), by ESP path.
    pub fn list(&self) -> Result<Vec<String>, EfiError> {
        match &self.mounted {
            None => match self.mtool("mdir", &["-/", "-b", "::/"]) {
                Ok(out) => Ok(parse_mdir(&String::from_utf8_lossy(&out))),
                // mdir's bare listing of an empty root fails so; a
                // filesystem that is no FAT says "non DOS media".
                Err(EfiError::Tool { stderr, .. })
                    if stderr.trim() == "mdir: File \"::/\" not found" =>
                {
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            },
            Some((_, _, mnt)) => {
                let mut out = Vec::new();
                walk(mnt.path(), "", &mut out).map_err(self.io("/"))?;
                Ok(out)
            }
        }
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, EfiError> {
        match &self.mounted {
            None => {
                let tmp = tempfile::NamedTempFile::new().map_err(self.io(path))?;
                let local = tmp.path().to_string_lossy().to_string();
                self.mtool("mcopy", &["-n", &format!("::{path}"), &local])?;
                read_limited(tmp.path()).map_err(|e| self.limit_err(path, e))
            }
            Some((_, _, mnt)) => {
                let p = mnt.path().join(path.trim_start_matches('/'));
                read_limited(&p).map_err(|e| self.limit_err(path, e))
            }
        }
    }

    fn limit_err(&self, path: &str, e: ReadErr) -> EfiError {
        match e {
            ReadErr::Io(source) => EfiError::Io {
                esp: self.esp.what.clone(),
                path: path.to_string(),
                source,
            },
            ReadErr::TooBig(size) => EfiError::TooBig {
                esp: self.esp.what.clone(),
                path: path.to_string(),
                size,
            },
        }
    }

    /// Writes a file, creating its directory; an existing file is replaced.
    pub fn write(&self, path: &str, data: &[u8]) -> Result<(), EfiError> {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        match &self.mounted {
            None => {
                let existing = self.list()?;
                let mut sofar = String::new();
                for part in dir.split('/').filter(|p| !p.is_empty()) {
                    sofar = format!("{sofar}/{part}");
                    let want = format!("{sofar}/");
                    if !existing.iter().any(|e| e.eq_ignore_ascii_case(&want)) {
                        self.mtool("mmd", &[&format!("::{sofar}")])?;
                    }
                }
                let mut tmp = tempfile::NamedTempFile::new().map_err(self.io(path))?;
                std::io::Write::write_all(&mut tmp, data).map_err(self.io(path))?;
                let local = tmp.path().to_string_lossy().to_string();
                self.mtool("mcopy", &["-o", "-n", &local, &format!("::{path}")])?;
                Ok(())
            }
            Some((_, _, mnt)) => {
                let p = mnt.path().join(path.trim_start_matches('/'));
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(self.io(path))?;
                }
                std::fs::write(&p, data).map_err(self.io(path))
            }
        }
    }
}

enum ReadErr {
    Io(std::io::Error),
    TooBig(u64),
}

fn read_limited(p: &Path) -> Result<Vec<u8>, ReadErr> {
    let size = std::fs::metadata(p).map_err(ReadErr::Io)?.len();
    if size > MAX_ESP_FILE {
        return Err(ReadErr::TooBig(size));
    }
    std::fs::read(p).map_err(ReadErr::Io)
}

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel.trim_start_matches('/')))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let path = format!("{rel}/{name}");
        if e.file_type()?.is_dir() {
            out.push(format!("{path}/"));
            walk(root, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `mdir -/ -b` lines: `::/EFI/`, `::/EFI/debian/grubx64.efi`.
pub fn parse_mdir(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim_end().strip_prefix("::"))
        .filter(|p| p.starts_with('/') && *p != "/")
        .map(str::to_string)
        .collect()
}

/// A boot loader a distribution installed in the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// `/EFI/debian/shimx64.efi`.
    pub path: String,
    pub shim: bool,
}

/// The x86-64 loaders under `/EFI/<vendor>/` (not the fallback directory),
/// shims first, in listing order otherwise.
pub fn loaders(files: &[String]) -> Vec<Loader> {
    let mut out: Vec<Loader> = files
        .iter()
        .filter_map(|f| {
            let rest = strip_prefix_ci(f, "/EFI/")?;
            let (vendor, name) = rest.split_once('/')?;
            if vendor.eq_ignore_ascii_case("BOOT") || name.contains('/') {
                return None;
            }
            let n = name.to_ascii_lowercase();
            let x64 = !n.contains("ia32") && !n.contains("aa64") && n.ends_with(".efi");
            let shim = n.starts_with("shim") && x64;
            let grub = n.starts_with("grub") && x64;
            (shim || grub).then(|| Loader {
                path: f.clone(),
                shim,
            })
        })
        .collect();
    out.sort_by_key(|l| !l.shim);
    out
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn has_file_ci(files: &[String], path: &str) -> bool {
    files.iter().any(|f| f.eq_ignore_ascii_case(path))
}

/// Copies (from, to) that give the ESP a fallback loader: the distro's
/// shim as BOOTX64.EFI with its grub beside it (shim loads grubx64.efi from
/// its own directory), else its grub; nothing where a fallback loader is
/// already there or no loader is found.
pub fn plan_fallback(files: &[String]) -> Vec<(String, String)> {
    if has_file_ci(files, FALLBACK_LOADER) {
        return Vec::new();
    }
    let found = loaders(files);
    let Some(first) = found.first() else {
        return Vec::new();
    };
    let mut out = vec![(first.path.clone(), FALLBACK_LOADER.to_string())];
    if first.shim {
        let dir = first.path.rsplit_once('/').map_or("", |(d, _)| d);
        let grub = found
            .iter()
            .find(|l| !l.shim && l.path.rsplit_once('/').map(|(d, _)| d) == Some(dir));
        let to = "/EFI/BOOT/grubx64.efi";
        if let Some(g) = grub {
            if !has_file_ci(files, to) {
                out.push((g.path.clone(), to.to_string()));
            }
        }
    }
    out
}

/// What a grub.cfg in the ESP is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EspConfig {
    /// A stub handing over to the real config: `path` on the filesystem
    /// with `uuid` (`None`: the stub's own device).
    Stub { uuid: Option<String>, path: String },
    /// The real config itself (RHEL 8 and older keep it in the ESP).
    Full,
}

/// Classifies an ESP grub.cfg: Debian's stub (`search.fs_uuid UUID root`,
/// `set prefix=($root)'/boot/grub'`, `configfile $prefix/grub.cfg`), RHEL
/// 9's (`search --fs-uuid --set=dev UUID`, `set prefix=($dev)/grub2`), or
/// a full config with menu entries or `blscfg`.
pub fn classify_esp_config(text: &str) -> EspConfig {
    let mut uuid = None;
    let mut prefix = String::new();
    let mut target = None;
    let mut full = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [c, ..] if c.starts_with('#') => {}
            ["menuentry" | "submenu" | "blscfg", ..] => full = true,
            ["search.fs_uuid", u, ..] => uuid = Some(unquote(u)),
            ["search", args @ ..] if args.iter().any(|a| a.starts_with("--fs-uuid")) => {
                uuid = args
                    .iter()
                    .find(|a| !a.starts_with('-'))
                    .map(|u| unquote(u));
            }
            ["set", v] if v.starts_with("prefix=") => {
                prefix = strip_device(&unquote(v.trim_start_matches("prefix=")));
            }
            ["configfile", f] => {
                let f = unquote(f)
                    .replace("${prefix}", &prefix)
                    .replace("$prefix", &prefix);
                target = Some(strip_device(&f));
            }
            _ => {}
        }
    }
    match target {
        Some(path) if !full && path.starts_with('/') => EspConfig::Stub { uuid, path },
        _ => EspConfig::Full,
    }
}

/// `'/boot/grub'` and `"x"` → the bare word; quotes inside (`($root)'/x'`)
/// go too.
fn unquote(s: &str) -> String {
    s.replace(['\'', '"'], "")
}

/// `($root)/boot/grub` → `/boot/grub`.
fn strip_device(s: &str) -> String {
    match (s.starts_with('('), s.find(')')) {
        (true, Some(i)) => s.get(i + 1..).unwrap_or_default().to_string(),
        _ => s.to_string(),
    }
}

/// Whether a grub.cfg boots through `blscfg` (the entries are in
/// /boot/loader/entries) rather than its own menu entries.
pub fn uses_blscfg(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with("blscfg"))
        && !text
            .lines()
            .any(|l| l.trim_start().starts_with("menuentry"))
}

/// One Boot Loader Specification entry (`/boot/loader/entries/*.conf`).
/// Paths are on the filesystem holding /boot, as grub's blscfg reads them.
pub fn bls_entry(text: &str, file_name: &str) -> Option<BootEntry> {
    let mut title = None;
    let mut kernel = None;
    let mut args = String::new();
    let mut initrd: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let (k, v) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let v = v.trim();
        match k {
            "title" => title = Some(v.to_string()),
            "linux" => kernel = Some(v.to_string()),
            "options" => {
                if !args.is_empty() {
                    args.push(' ');
                }
                args.push_str(v);
            }
            // grub boots the first initrd line's images; one per line is
            // the common form.
            "initrd" if initrd.is_none() => {
                initrd = v.split_whitespace().next().map(str::to_string);
            }
            _ => {}
        }
    }
    let kernel = kernel?;
    Some(BootEntry {
        title: title.unwrap_or_else(|| file_name.trim_end_matches(".conf").to_string()),
        kernel,
        args,
        initrd,
    })
}

/// BLS entries in the order grub's blscfg shows them: newest version
/// first, by the entry file name (`MACHINEID-VERSION.conf`).
pub fn sort_bls(entries: &mut [(String, BootEntry)]) {
    entries.sort_by(|(a, _), (b, _)| version_cmp(b, a));
}

/// Compares version-bearing names by their runs of digits as numbers,
/// as rpm's vercmp does for the common cases (5.14.0-70 < 5.14.0-162).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((ld, run)) if *ld == d => run.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    };
    let (xa, xb) = (split(a), split(b));
    for (pa, pb) in xa.iter().zip(&xb) {
        let ord = match (pa, pb) {
            ((true, na), (true, nb)) => {
                let (na, nb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                na.len().cmp(&nb.len()).then_with(|| na.cmp(nb))
            }
            ((_, sa), (_, sb)) => sa.cmp(sb),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    xa.len().cmp(&xb.len())
}

/// A grub2 config's top-level menu items and the index of its default one,
/// counted as grub counts them: a submenu is an item (with no kernel here),
/// the entries inside it are not.
pub fn grub2_entries(text: &str) -> (Vec<BootEntry>, usize) {
    let mut entries: Vec<BootEntry> = Vec::new();
    let mut default: Option<String> = None;
    let mut depth = 0usize;
    let mut in_entry = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["set", v, ..] if depth == 0 && v.starts_with("default=") => {
                let value = t.trim_start_matches("set").trim_start();
                default = Some(unquote(value.trim_start_matches("default=")));
            }
            ["submenu", ..] if depth == 0 => entries.push(BootEntry {
                title: String::new(),
                kernel: String::new(),
                args: String::new(),
                initrd: None,
            }),
            ["menuentry", ..] if depth == 0 => {
                let title = t.split(['\'', '"']).nth(1).unwrap_or_default().to_string();
                entries.push(BootEntry {
                    title,
                    kernel: String::new(),
                    args: String::new(),
                    initrd: None,
                });
                in_entry = true;
            }
            ["linux" | "linuxefi" | "linux16", k, rest @ ..] if in_entry && depth == 1 => {
                if let Some(e) = entries.last_mut() {
                    e.kernel = strip_device(k);
                    e.args = rest.join(" ");
                }
            }
            ["initrd" | "initrdefi" | "initrd16", i, ..] if in_entry && depth == 1 => {
                if let Some(e) = entries.last_mut() {
                    e.initrd = Some(strip_device(i));
                }
            }
            _ => {}
        }
        // Braces of the grub script, as grub-mkconfig writes them: one
        // opening brace ending a menuentry/submenu/if line, closing ones
        // alone on their line.
        let opens = t.matches('{').count();
        let closes = t.matches('}').count();
        depth = (depth + opens).saturating_sub(closes);
        if depth == 0 {
            in_entry = false;
        }
    }
    let idx = default
        .and_then(|d| {
            d.parse::<usize>()
                .ok()
                .or_else(|| entries.iter().position(|e| e.title == d))
        })
        .filter(|i| *i < entries.len())
        .unwrap_or(0);
    (entries, idx)
}

/// A grub.cfg from an EFI platform made readable by pvgrub2 (the Xen
/// platform has no `linuxefi`/`initrdefi`).
pub fn efi_to_pv_commands(line: &str) -> String {
    let t = line.trim_start();
    let ws = &line[..line.len() - t.len()];
    for (efi, pv) in [("linuxefi", "linux"), ("initrdefi", "initrd")] {
        if let Some(rest) = t.strip_prefix(efi) {
            if rest.starts_with(char::is_whitespace) {
                return format!("{ws}{pv}{rest}");
            }
        }
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn debian_and_rhel9_stubs_are_followed() {
        for (stub, uuid, path) in [
            // Debian: the root filesystem's /boot/grub.
            (
                "search.fs_uuid 8d3e9f0a-1b2c-4d5e-8f90-123456789abc root hd0,gpt2 \n\
                 set prefix=($root)'/boot/grub'\n\
                 configfile $prefix/grub.cfg\n",
                "8d3e9f0a-1b2c-4d5e-8f90-123456789abc",
                "/boot/grub/grub.cfg",
            ),
            // RHEL 9: the separate /boot filesystem's /grub2.
            (
                "search --no-floppy --root-dev-only --fs-uuid --set=dev 1d2f-aa\n\
                 set prefix=($dev)/grub2\n\
                 export $prefix\n\
                 configfile $prefix/grub.cfg\n",
                "1d2f-aa",
                "/grub2/grub.cfg",
            ),
        ] {
            assert_eq!(
                classify_esp_config(stub),
                EspConfig::Stub {
                    uuid: Some(uuid.into()),
                    path: path.into()
                }
            );
        }
    }

    #[test]
    fn rhel8_esp_config_is_the_real_one() {
        let full = "set default=\"${saved_entry}\"\ninsmod blscfg\nblscfg\n";
        assert_eq!(classify_esp_config(full), EspConfig::Full);
        assert!(uses_blscfg(full));
        let menu = "menuentry 'CentOS' {\n\tlinuxefi /vmlinuz-3.10 root=/dev/sda2\n}\n";
        assert_eq!(classify_esp_config(menu), EspConfig::Full);
        assert!(!uses_blscfg(menu));
        assert_eq!(
            efi_to_pv_commands("\tlinuxefi /vmlinuz-3.10 ro"),
            "\tlinux /vmlinuz-3.10 ro"
        );
        assert_eq!(
            efi_to_pv_commands("\tinitrdefi /initramfs.img"),
            "\tinitrd /initramfs.img"
        );
        assert_eq!(efi_to_pv_commands("linuxefix a"), "linuxefix a");
    }

    #[test]
    fn bls_entries_parse_and_sort_newest_first() {
        let e = bls_entry(
            "title Rocky Linux (5.14.0-162.el9.x86_64) 9.1\nversion 5.14.0-162.el9.x86_64\n\
             linux /vmlinuz-5.14.0-162.el9.x86_64\ninitrd /initramfs-5.14.0-162.el9.x86_64.img $tuned_initrd\n\
             options root=/dev/mapper/rl-root ro crashkernel=auto\ngrub_users $grub_users\n",
            "abc-5.14.0-162.el9.x86_64.conf",
        )
        .unwrap();
        assert_eq!(e.kernel, "/vmlinuz-5.14.0-162.el9.x86_64");
        assert_eq!(
            e.initrd.as_deref(),
            Some("/initramfs-5.14.0-162.el9.x86_64.img")
        );
        assert_eq!(e.args, "root=/dev/mapper/rl-root ro crashkernel=auto");
        assert_eq!(e.title, "Rocky Linux (5.14.0-162.el9.x86_64) 9.1");
        assert!(bls_entry("title x\noptions a\n", "x.conf").is_none());

        let mut all: Vec<(String, BootEntry)> = [
            "m-5.14.0-70.el9.x86_64.conf",
            "m-5.14.0-162.el9.x86_64.conf",
            "m-0-rescue.conf",
        ]
        .iter()
        .map(|n| (n.to_string(), e.clone()))
        .collect();
        sort_bls(&mut all);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "m-5.14.0-162.el9.x86_64.conf",
                "m-5.14.0-70.el9.x86_64.conf",
                "m-0-rescue.conf"
            ]
        );
    }

    #[test]
    fn grub2_default_entry_and_submenus() {
        let cfg = "set default=\"2\"\n\
                   menuentry 'Debian 6.1.0-13' --class debian {\n\
                   \tif [ x$grub_platform = xxen ]; then insmod xzio; fi\n\
                   \tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=a ro quiet\n\
                   \tinitrd\t/boot/initrd.img-6.1.0-13-amd64\n}\n\
                   submenu 'Advanced' {\n\
                   \tmenuentry 'Debian 6.1.0-9 (recovery)' {\n\
                   \t\tlinux /boot/vmlinuz-6.1.0-9-amd64 single\n\t}\n}\n\
                   menuentry 'Debian 6.1.0-9' {\n\
                   \tlinuxefi /boot/vmlinuz-6.1.0-9-amd64 root=UUID=a ro\n\
                   \tinitrdefi /boot/initrd.img-6.1.0-9-amd64\n}\n";
        let (e, d) = grub2_entries(cfg);
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(d, 2);
        // The submenu is an item without a kernel of its own.
        assert_eq!(e[1].kernel, "");
        assert_eq!(e[2].kernel, "/boot/vmlinuz-6.1.0-9-amd64");
        assert_eq!(
            e[2].initrd.as_deref(),
            Some("/boot/initrd.img-6.1.0-9-amd64")
        );
        assert_eq!(e[0].args, "root=UUID=a ro quiet");
        let (_, d) = grub2_entries(&cfg.replace("\"2\"", "\"Debian 6.1.0-9\""));
        assert_eq!(d, 2);
        let (_, d) = grub2_entries(&cfg.replace("\"2\"", "\"${saved_entry}\""));
        assert_eq!(d, 0);
    }

    #[test]
    fn fallback_prefers_shim_with_its_grub_and_keeps_an_existing_one() {
        let debian = files(&[
            "/EFI/",
            "/EFI/debian/",
            "/EFI/debian/grubx64.efi",
            "/EFI/debian/shimx64.efi",
            "/EFI/debian/mmx64.efi",
            "/EFI/debian/grub.cfg",
        ]);
        assert_eq!(
            plan_fallback(&debian),
            [
                (
                    "/EFI/debian/shimx64.efi".to_string(),
                    "/EFI/BOOT/BOOTX64.EFI".to_string()
                ),
                (
                    "/EFI/debian/grubx64.efi".to_string(),
                    "/EFI/BOOT/grubx64.efi".to_string()
                ),
            ]
        );
        let grub_only = files(&["/EFI/ubuntu/grubx64.efi", "/EFI/ubuntu/grubia32.efi"]);
        assert_eq!(
            plan_fallback(&grub_only),
            [(
                "/EFI/ubuntu/grubx64.efi".to_string(),
                "/EFI/BOOT/BOOTX64.EFI".to_string()
            )]
        );
        let rhel = files(&["/EFI/redhat/shimx64.efi", "/EFI/BOOT/bootx64.efi"]);
        assert!(plan_fallback(&rhel).is_empty());
        assert!(plan_fallback(&files(&["/EFI/Microsoft/Boot/bootmgfw.efi"])).is_empty());
    }

    #[test]
    fn mdir_listing_parses() {
        assert_eq!(
            parse_mdir("::/EFI/\n::/EFI/debian/\n::/EFI/debian/shimx64.efi\n"),
            ["/EFI/", "/EFI/debian/", "/EFI/debian/shimx64.efi"]
        );
    }

    #[test]
    fn mtools_list_write_and_read_back_at_an_offset() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk0.img");
        std::fs::write(&img, vec![0u8; 5 << 20]).unwrap();
        let out = Command::new("mkfs.vfat")
            .args(["--offset", "2048"])
            .arg(&img)
            .arg("4096")
            .output()
            .expect("mkfs.vfat (dosfstools)");
        assert!(out.status.success(), "{out:?}");
        let esp = Esp {
            image: img,
            offset: 1 << 20,
            size: 4 << 20,
            what: "disk0 partition 1".into(),
        };
        assert!(have_mtools(), "mtools needed");
        let f = EspFiles::open_with(esp, false, true).unwrap();
        assert_eq!(f.list().unwrap(), Vec::<String>::new());
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        f.write("/EFI/BOOT/BOOTX64.EFI", &data).unwrap();
        f.write("/EFI/BOOT/grubx64.efi", b"grub").unwrap();
        assert_eq!(
            f.list().unwrap(),
            [
                "/EFI/",
                "/EFI/BOOT/",
                "/EFI/BOOT/BOOTX64.EFI",
                "/EFI/BOOT/grubx64.efi"
            ]
        );
        assert_eq!(f.read("/EFI/BOOT/BOOTX64.EFI").unwrap(), data);
        // The FAT is case-insensitive, as firmware reads it.
        assert_eq!(f.read("/efi/boot/GRUBX64.EFI").unwrap(), b"grub");
        let e = f.read("/EFI/none").unwrap_err().to_string();
        assert!(e.starts_with("ESP (disk0 partition 1): mcopy"), "{e}");
        f.close().unwrap();
    }

    #[test]
    fn without_mtools_and_vfat_the_error_names_the_esp_and_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk0.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let esp = Esp {
            image: img,
            offset: 0,
            size: 1 << 20,
            what: "disk0 partition 1".into(),
        };
        // Zeroes are no FAT: the mount fails here whether or not dom0 has
        // a vfat driver.
        let e = EspFiles::open_with(esp, true, false).err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.starts_with("ESP (disk0 partition 1): cannot open it"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install mtools"), "{msg}");
    }
}
