//! `--guest-kernel`: the guest boots a Xen-capable kernel supplied on dom0
//! instead of its own, for servers whose kernels cannot run under Xen (no
//! `CONFIG_XEN`, or 32-bit: Linux dropped 32-bit PV guests in 5.9; a 64-bit
//! PV kernel runs a 32-bit userland through IA32 emulation).
//!
//! This is the seed recipe's answer: boot the guest with the host's Xen
//! kernel and `cp -a /lib/modules/<kernel> /mnt/lib/modules` so that its
//! userland finds the modules of the kernel it runs. The kernel and initrd
//! are copied into the store (`STORE/NAME/boot/`) so that a dom0 kernel
//! upgrade does not take the guest's kernel away.

use std::fs;
use std::path::{Path, PathBuf};

use super::FixupKind;
use super::GuestError;
use super::change::Fixup;
use super::guestfs::GuestFs;

/// `--guest-kernel dom0`: the kernel dom0 runs.
pub const DOM0: &str = "dom0";

/// A kernel on dom0 with its modules, checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppliedKernel {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// `.../lib/modules/VERSION`, holding modules.dep.
    pub modules: PathBuf,
    /// The modules directory's name: the kernel's `uname -r`.
    pub version: String,
}

fn invalid(msg: String) -> GuestError {
    GuestError::Invalid(msg)
}

impl SuppliedKernel {
    /// `kernel`: a path, or [`DOM0`] for dom0's running kernel (with its
    /// `/boot/initrd.img-V` and `/lib/modules/V` when not given).
    pub fn resolve(
        kernel: &str,
        initrd: Option<&Path>,
        modules: Option<&Path>,
    ) -> Result<Self, GuestError> {
        let (kernel, initrd, modules) = if kernel == DOM0 {
            let v = nix::sys::utsname::uname()
                .map_err(|e| invalid(format!("--guest-kernel dom0: uname: {e}")))?
                .release()
                .to_string_lossy()
                .into_owned();
            let default_initrd = PathBuf::from(format!("/boot/initrd.img-{v}"));
            (
                PathBuf::from(format!("/boot/vmlinuz-{v}")),
                initrd
                    .map(Path::to_path_buf)
                    .or_else(|| default_initrd.is_file().then_some(default_initrd)),
                modules
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(format!("/lib/modules/{v}"))),
            )
        } else {
            let Some(m) = modules else {
                return Err(invalid(format!(
                    "--guest-kernel {kernel}: also give --guest-modules /lib/modules/VERSION \
                     (the modules of that kernel, which go into the guest)"
                )));
            };
            (
                PathBuf::from(kernel),
                initrd.map(Path::to_path_buf),
                m.to_path_buf(),
            )
        };
        for (what, p) in
            std::iter::once(("kernel", &kernel)).chain(initrd.iter().map(|i| ("initrd", i)))
        {
            if !p.is_file() {
                return Err(invalid(format!(
                    "--guest-{what} {}: not a readable file",
                    p.display()
                )));
            }
        }
        if !modules.join("modules.dep").is_file() {
            return Err(invalid(format!(
                "--guest-modules {}: no modules.dep in it; give the kernel's /lib/modules/VERSION \
                 (run depmod -b ROOT VERSION for an unpacked tree)",
                modules.display()
            )));
        }
        let version = modules
            .file_name()
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            .ok_or_else(|| {
                invalid(format!(
                    "--guest-modules {}: the directory's name must be the kernel version",
                    modules.display()
                ))
            })?;
        Ok(SuppliedKernel {
            kernel,
            initrd,
            modules,
            version,
        })
    }

    /// The guest directory the modules go to.
    pub fn guest_dir(&self) -> String {
        format!("/lib/modules/{}", self.version)
    }
}

/// Files and directories below `dir` (relative paths), depth first, and
/// the bytes of the regular files. Symlinks are entries of their own.
fn walk(dir: &Path) -> Result<(Vec<PathBuf>, u64), GuestError> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let here = dir.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&here)
            .map_err(io_at(&here))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_at(&here))?;
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let meta = fs::symlink_metadata(dir.join(&r)).map_err(io_at(&dir.join(&r)))?;
            if meta.is_dir() {
                todo.push(r.clone());
            } else if meta.is_file() {
                bytes = bytes.saturating_add(meta.len());
            }
            out.push(r);
        }
    }
    Ok((out, bytes))
}

/// The copy of the supplied kernel's modules into the guest, checked
/// before any fix-up is applied.
#[derive(Debug)]
pub struct ModulesInstall {
    from: PathBuf,
    entries: Vec<PathBuf>,
    bytes: u64,
    guest_dir: String,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> GuestError {
    let path = path.to_path_buf();
    move |source| GuestError::Io { path, source }
}

/// Plans the copy and checks the guest's free space: a root that fills up
/// half-way would leave a guest that boots with half its modules.
pub fn plan_modules(gfs: &GuestFs, sk: &SuppliedKernel) -> Result<ModulesInstall, GuestError> {
    let (entries, bytes) = walk(&sk.modules)?;
    let guest_dir = sk.guest_dir();
    let target = gfs.resolve(&guest_dir)?;
    let existing = target
        .ancestors()
        .find(|a| a.is_dir())
        .unwrap_or(gfs.root());
    // fsblkcnt_t and c_ulong are u32 on i686, where p2xen is built too.
    #[allow(clippy::useless_conversion)]
    let free = nix::sys::statvfs::statvfs(existing)
        .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
        .map_err(|e| io_at(existing)(e.into()))?;
    // Some room for the directories and for the guest to go on writing logs.
    let needed = bytes.saturating_add(bytes / 20).saturating_add(8 << 20);
    if free < needed {
        return Err(invalid(format!(
            "{guest_dir}: the guest's filesystem has {} MiB free, the modules of {} need {} MiB; \
             grow the guest's root (or remove its old kernels' modules) and convert again",
            free >> 20,
            sk.version,
            needed.div_ceil(1 << 20)
        )));
    }
    Ok(ModulesInstall {
        from: sk.modules.clone(),
        entries,
        bytes,
        guest_dir,
    })
}

impl ModulesInstall {
    pub fn describe(&self) -> Fixup {
        Fixup {
            kind: FixupKind::XenDrivers,
            file: self.guest_dir.clone(),
            action: "create".to_string(),
            note: format!(
                "{} entries, {} MiB from {} (the modules of the kernel dom0 boots the guest with)",
                self.entries.len(),
                self.bytes.div_ceil(1 << 20),
                self.from.display()
            ),
            diff: format!("cp -a {} {}\n", self.from.display(), self.guest_dir),
        }
    }

    /// Copies the modules (`cp -a`, the seed's step), replacing what a
    /// former run or an older copy left there.
    pub fn apply(&self, gfs: &GuestFs) -> Result<(), GuestError> {
        let target = gfs.resolve(&self.guest_dir)?;
        copy_tree(&self.from, &target, &self.entries)
    }
}

/// Copies `entries` (relative to `from`) into `to`, symlinks as symlinks.
/// A symlink already at a target name is removed first: writing through it
/// could land outside the guest.
fn copy_tree(from: &Path, to: &Path, entries: &[PathBuf]) -> Result<(), GuestError> {
    if fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(to).map_err(io_at(to))?;
    }
    fs::create_dir_all(to).map_err(io_at(to))?;
    for rel in entries {
        let (src, dst) = (from.join(rel), to.join(rel));
        let meta = fs::symlink_metadata(&src).map_err(io_at(&src))?;
        let existing = fs::symlink_metadata(&dst).ok();
        if meta.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                fs::remove_file(&dst).map_err(io_at(&dst))?;
            }
            fs::create_dir_all(&dst).map_err(io_at(&dst))?;
            continue;
        }
        match existing {
            Some(m) if m.is_dir() => fs::remove_dir_all(&dst).map_err(io_at(&dst))?,
            Some(_) => fs::remove_file(&dst).map_err(io_at(&dst))?,
            None => {}
        }
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&src).map_err(io_at(&src))?;
            std::os::unix::fs::symlink(&link, &dst).map_err(io_at(&dst))?;
        } else if meta.is_file() {
            fs::copy(&src, &dst).map_err(io_at(&dst))?;
        }
        // Device nodes and sockets have no place in a modules tree: skipped.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules_tree(dir: &Path) -> PathBuf {
        let m = dir.join("lib/modules/6.1.0-57-amd64");
        fs::create_dir_all(m.join("kernel/drivers/block")).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/drivers/block/xen-blkfront.ko:\n",
        )
        .unwrap();
        fs::write(
            m.join("kernel/drivers/block/xen-blkfront.ko"),
            b"\x7fELF blkfront",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/src/linux-headers-6.1.0-57-amd64", m.join("build"))
            .unwrap();
        m
    }

    #[test]
    fn resolve_names_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let m = modules_tree(tmp.path());
        let k = tmp.path().join("vmlinuz");
        fs::write(&k, b"kernel").unwrap();
        let ks = k.to_str().unwrap();
        let e = SuppliedKernel::resolve(ks, None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("also give --guest-modules"), "{e}");
        let e = SuppliedKernel::resolve("/nonexistent/vmlinuz", None, Some(&m))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--guest-kernel /nonexistent/vmlinuz: not a readable file"
        );
        let e = SuppliedKernel::resolve(ks, None, Some(tmp.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no modules.dep in it"), "{e}");
        let sk = SuppliedKernel::resolve(ks, None, Some(&m)).unwrap();
        assert_eq!(sk.version, "6.1.0-57-amd64");
        assert_eq!(sk.guest_dir(), "/lib/modules/6.1.0-57-amd64");
    }

    #[test]
    fn install_copies_files_and_links_and_never_writes_through_a_guest_link() {
        let tmp = tempfile::tempdir().unwrap();
        let m = modules_tree(&tmp.path().join("dom0"));
        let k = tmp.path().join("vmlinuz");
        fs::write(&k, b"kernel").unwrap();
        let sk = SuppliedKernel::resolve(k.to_str().unwrap(), None, Some(&m)).unwrap();
        let guest = tmp.path().join("guest");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        let target = guest.join("lib/modules/6.1.0-57-amd64");
        fs::create_dir_all(&target).unwrap();
        // A hostile or stale guest: modules.dep is a link out of the guest.
        std::os::unix::fs::symlink(outside.join("victim"), target.join("modules.dep")).unwrap();
        let gfs = GuestFs::new(&guest);

        let plan = plan_modules(&gfs, &sk).unwrap();
        let f = plan.describe();
        assert_eq!(f.file, "/lib/modules/6.1.0-57-amd64");
        assert!(!target.join("kernel").exists(), "planning copied");
        plan.apply(&gfs).unwrap();
        assert!(f.note.starts_with("6 entries, 1 MiB from "), "{}", f.note);
        assert_eq!(
            fs::read(target.join("kernel/drivers/block/xen-blkfront.ko")).unwrap(),
            b"\x7fELF blkfront"
        );
        assert_eq!(
            fs::read_to_string(target.join("modules.dep")).unwrap(),
            "kernel/drivers/block/xen-blkfront.ko:\n"
        );
        assert!(
            !outside.join("victim").exists(),
            "wrote through the guest's link"
        );
        assert_eq!(
            fs::read_link(target.join("build")).unwrap(),
            Path::new("/usr/src/linux-headers-6.1.0-57-amd64")
        );
    }
}
