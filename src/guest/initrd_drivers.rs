//! Xen's block frontend for a host-only initrd.
//!
//! dracut's host-only mode (the RHEL family's default) and initramfs-tools'
//! `MODULES=dep` put only the drivers of the machine they ran on into the
//! initrd: no xen-blkfront, so under Xen the guest never finds its root disk.
//! The fix is made on dom0, because the guest cannot boot to make it itself.
//!
//! Rebuilding the initrd with the guest's own dracut or update-initramfs
//! would run the guest's binaries on dom0 in a chroot: another libc, perhaps
//! another architecture, and scripts that probe the hardware they run on,
//! which is dom0's. Instead a gzip cpio segment is appended, which the kernel
//! unpacks over the original (initramfs is a concatenation of archives and
//! a later file replaces an earlier one). It holds
//! - the guest's own module files for that kernel (xen-blkfront and what
//!   modules.dep says it needs) that the initrd lacks;
//! - the guest's module indexes for that kernel (modules.dep, .alias and
//!   their .bin forms, written by the guest's own depmod for all its
//!   modules), so the initrd's modprobe and udev find the new module;
//! - the generator's own way to load a module early: initramfs-tools'
//!   `conf/modules`, dracut's `rd.driver.pre=` (`etc/cmdline.d`) and
//!   `etc/modules-load.d`.
//!
//! The original is kept as `NAME.p2xen-orig`, the result is read back and
//! checked, and the guest's generator configuration gains the driver too, so
//! a later rebuild inside the guest keeps it.

use std::collections::BTreeSet;
use std::io::Write;

use super::FixupKind;
use super::change::{Change, Planned, append_line};
use super::guestfs::{GuestFs, GuestFsError, gjoin};
use super::initrd::{self, Listing, MAX_INITRD_BYTES};
use super::xencheck::KernelInfo;

/// The driver root on a Xen disk needs.
pub const BLKFRONT: &str = "xen-blkfront";
/// Largest module file copied into the initrd (real ones: < 1 MiB).
const MAX_MODULE_BYTES: u64 = 64 << 20;
/// The guest's module index files, copied when present.
const INDEXES: [&str; 13] = [
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.softdep",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.builtin.modinfo",
    "modules.devname",
    "modules.order",
];
const ITOOLS_MODULES: &str = "conf/modules";
const DRACUT_CMDLINE: &str = "etc/cmdline.d/90-p2xen-xen.conf";
const DRACUT_MODULES_LOAD: &str = "etc/modules-load.d/90-p2xen-xen.conf";

#[derive(Debug, thiserror::Error)]
pub enum InitrdFixError {
    #[error(transparent)]
    Guest(#[from] GuestFsError),
    #[error("guest {path}: {source}")]
    Initrd {
        path: String,
        source: initrd::InitrdError,
    },
    #[error("guest has no /lib/modules/{version}/modules.dep")]
    NoModules { version: String },
    #[error("guest {dir}: no {module} for kernel {version}")]
    NoModule {
        dir: String,
        module: String,
        version: String,
    },
    #[error("guest {path}: after adding {module}, the initrd still lacks it ({why})")]
    CheckFailed {
        path: String,
        module: String,
        why: String,
    },
    #[error("building the initrd segment: {0}")]
    Build(std::io::Error),
}

/// Which tool built the initrd, from what it leaves inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    InitramfsTools,
    Dracut,
    Unknown,
}

impl Generator {
    fn of(l: &Listing) -> Generator {
        let has = |n: &str| l.entry(n).is_some();
        if has("conf/initramfs.conf") || has("scripts/init-top") || has(ITOOLS_MODULES) {
            Generator::InitramfsTools
        } else if l
            .entries
            .iter()
            .any(|e| e.name.starts_with("usr/lib/dracut") || e.name.starts_with("etc/cmdline.d"))
        {
            Generator::Dracut
        } else {
            Generator::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Generator::InitramfsTools => "initramfs-tools",
            Generator::Dracut => "dracut",
            Generator::Unknown => "an unknown generator",
        }
    }
}

/// The planned fix for one kernel's initrd.
#[derive(Debug)]
pub struct InitrdFix {
    /// The initrd change first, then the generator configuration's.
    pub planned: Vec<Planned>,
    /// Files the appended segment holds, as the initrd names them.
    pub added: Vec<String>,
    pub generator: Generator,
    /// Where the guest's initrd is (guest path).
    pub initrd: String,
}

/// Plans adding xen-blkfront to `k`'s initrd; `None` if it has no initrd
/// or holds the driver already.
pub fn plan(gfs: &GuestFs, k: &KernelInfo) -> Result<Option<InitrdFix>, InitrdFixError> {
    let Some(path) = k.initrd.clone() else {
        return Ok(None);
    };
    let Some(data) = gfs.read_bytes(&path, MAX_INITRD_BYTES)? else {
        return Ok(None);
    };
    let listing =
        initrd::read(&data, &|n| n == ITOOLS_MODULES).map_err(|source| InitrdFixError::Initrd {
            path: path.clone(),
            source,
        })?;
    if initrd::has_module(&listing.names(), BLKFRONT) {
        return Ok(None);
    }
    let generator = Generator::of(&listing);
    let v = &k.version;
    let mut seg = Segment::new(&listing);
    add_modules(&mut seg, gfs, &listing, v)?;
    add_load_config(&mut seg, &listing, generator);
    let added = seg.names();
    let bytes = seg.finish().map_err(InitrdFixError::Build)?;
    let summary = format!(
        "appended a {} KiB gzip cpio segment to {path} (built by {}), original kept as \
         {path}.p2xen-orig; it holds:\n{}",
        bytes.len().div_ceil(1024),
        generator.as_str(),
        added.iter().map(|n| format!("  {n}\n")).collect::<String>()
    );
    let mut planned = vec![Planned::new(
        FixupKind::XenDrivers,
        Change::Append {
            path: path.clone(),
            backup: format!("{path}.p2xen-orig"),
            data: bytes,
            summary,
        },
        format!("initrd of kernel {v} lacked {BLKFRONT} (host-only): root on a Xen disk"),
    )];
    planned.extend(plan_generator_config(gfs, generator)?);
    Ok(Some(InitrdFix {
        planned,
        added,
        generator,
        initrd: path,
    }))
}

/// Adds xen-blkfront and the modules it needs that the initrd lacks, from
/// the guest's module tree for kernel `v`, and that tree's indexes.
fn add_modules(
    seg: &mut Segment<'_>,
    gfs: &GuestFs,
    listing: &Listing,
    v: &str,
) -> Result<(), InitrdFixError> {
    let moddir = ["/lib/modules", "/usr/lib/modules"]
        .iter()
        .map(|d| gjoin(d, v))
        .find(|d| gfs.exists(&gjoin(d, "modules.dep")))
        .ok_or_else(|| InitrdFixError::NoModules {
            version: v.to_string(),
        })?;
    let dep = gfs
        .read(&gjoin(&moddir, "modules.dep"))?
        .unwrap_or_default();
    let no_module = |module: &str| InitrdFixError::NoModule {
        dir: moddir.clone(),
        module: module.to_string(),
        version: v.to_string(),
    };
    let needed = module_closure(&dep, BLKFRONT).ok_or_else(|| no_module(BLKFRONT))?;
    let prefix = module_prefix(listing, v);
    for rel in &needed {
        // Old module-init-tools wrote absolute paths into modules.dep.
        let rel = rel
            .strip_prefix(&format!("{moddir}/"))
            .or_else(|| rel.strip_prefix(&format!("/lib/modules/{v}/")))
            .unwrap_or(rel);
        let name = format!("{prefix}/{rel}");
        if listing.entry(&name).is_some() {
            continue;
        }
        let bytes = gfs
            .read_bytes(&gjoin(&moddir, rel), MAX_MODULE_BYTES)?
            .ok_or_else(|| no_module(rel))?;
        seg.file(&name, 0o100644, bytes);
    }
    for idx in INDEXES {
        if let Some(bytes) = gfs.read_bytes(&gjoin(&moddir, idx), MAX_MODULE_BYTES)? {
            seg.file(&format!("{prefix}/{idx}"), 0o100644, bytes);
        }
    }
    Ok(())
}

/// The generator's own way to load the driver early.
fn add_load_config(seg: &mut Segment<'_>, listing: &Listing, generator: Generator) {
    match generator {
        Generator::InitramfsTools => {
            let old = listing
                .file(ITOOLS_MODULES)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let new = if lists_module(&old, BLKFRONT) {
                old
            } else {
                append_line(&old, BLKFRONT)
            };
            seg.file(ITOOLS_MODULES, 0o100644, new.into_bytes());
        }
        Generator::Dracut => {
            seg.file(
                DRACUT_CMDLINE,
                0o100644,
                format!("rd.driver.pre={BLKFRONT}\n").into_bytes(),
            );
            seg.file(
                DRACUT_MODULES_LOAD,
                0o100644,
                format!("{BLKFRONT}\n").into_bytes(),
            );
        }
        Generator::Unknown => {}
    }
}

/// Reads the changed initrd back: it must list the driver and every added
/// file, as the kernel will unpack it.
pub fn verify(gfs: &GuestFs, fix: &InitrdFix) -> Result<(), InitrdFixError> {
    let failed = |why: String| InitrdFixError::CheckFailed {
        path: fix.initrd.clone(),
        module: BLKFRONT.to_string(),
        why,
    };
    let data = gfs
        .read_bytes(&fix.initrd, MAX_INITRD_BYTES)?
        .ok_or_else(|| failed("it is gone".to_string()))?;
    let listing = initrd::read(&data, &|_| false).map_err(|e| failed(e.to_string()))?;
    if !initrd::has_module(&listing.names(), BLKFRONT) {
        return Err(failed("no module file".to_string()));
    }
    if let Some(missing) = fix.added.iter().find(|n| listing.entry(n).is_none()) {
        return Err(failed(format!("{missing} is missing")));
    }
    Ok(())
}

/// The guest's own generator configuration, so an initrd rebuilt later in
/// the guest keeps the driver.
fn plan_generator_config(gfs: &GuestFs, g: Generator) -> Result<Vec<Planned>, GuestFsError> {
    let note = "a rebuilt initrd keeps Xen's block and network frontends";
    let planned = match g {
        Generator::InitramfsTools => {
            let path = "/etc/initramfs-tools/modules";
            let old = gfs.read(path)?.unwrap_or_default();
            let mut new = old.clone();
            for m in [BLKFRONT, "xen-netfront"] {
                if !lists_module(&new, m) {
                    new = append_line(&new, m);
                }
            }
            super::change::edit(FixupKind::XenDrivers, path, &old, new, note)
                .into_iter()
                .collect()
        }
        Generator::Dracut => {
            let path = "/etc/dracut.conf.d/90-p2xen-xen.conf";
            let new = "# Written by p2xen: the guest runs under Xen.\n\
                       add_drivers+=\" xen-blkfront xen-netfront \"\n"
                .to_string();
            match gfs.read(path)? {
                Some(old) if old == new => Vec::new(),
                old => vec![Planned::new(
                    FixupKind::XenDrivers,
                    Change::Write {
                        path: path.to_string(),
                        old,
                        new,
                    },
                    note,
                )],
            }
        }
        Generator::Unknown => Vec::new(),
    };
    Ok(planned)
}

/// Whether a module list (one name a line, `#` comments) names `module`.
fn lists_module(text: &str, module: &str) -> bool {
    let alt = module.replace('-', "_");
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|m| m == module || m == alt)
}

/// `module`'s file and its dependencies' files (paths as modules.dep
/// writes them, dependencies first), or `None` if modules.dep lacks it.
pub fn module_closure(modules_dep: &str, module: &str) -> Option<Vec<String>> {
    let alt = module.replace('-', "_");
    modules_dep.lines().find_map(|line| {
        let (file, deps) = line.split_once(':')?;
        let base = file.rsplit('/').next()?;
        let stem = base.split(".ko").next()?;
        if stem != module && stem != alt {
            return None;
        }
        // modules.dep lists every dependency, the directly needed first;
        // loading them in reverse order satisfies each before its users.
        let mut files: Vec<String> = deps.split_whitespace().rev().map(str::to_string).collect();
        files.push(file.trim().to_string());
        Some(files)
    })
}

/// Where the initrd keeps kernel `version`'s modules (`usr/lib/modules/V`
/// or `lib/modules/V`), from the modules it holds already.
fn module_prefix(l: &Listing, version: &str) -> String {
    let marker = format!("lib/modules/{version}/");
    l.entries
        .iter()
        .find_map(|e| {
            let at = e.name.find(&marker)?;
            e.name.get(..at + marker.len() - 1).map(str::to_string)
        })
        .unwrap_or_else(|| {
            // Merged /usr: `lib` is a symlink, and a directory entry of that
            // name would make the kernel replace the link with a directory.
            let lib_is_dir = l.entry("lib").is_none_or(|e| e.is_dir());
            if lib_is_dir {
                format!("lib/modules/{version}")
            } else {
                format!("usr/lib/modules/{version}")
            }
        })
}

/// The appended archive: files with the directories the initrd lacks.
struct Segment<'a> {
    listing: &'a Listing,
    dirs: BTreeSet<String>,
    files: Vec<(String, u32, Vec<u8>)>,
}

impl<'a> Segment<'a> {
    fn new(listing: &'a Listing) -> Self {
        Segment {
            listing,
            dirs: BTreeSet::new(),
            files: Vec::new(),
        }
    }

    fn file(&mut self, name: &str, mode: u32, data: Vec<u8>) {
        let mut at = 0;
        while let Some(i) = name.get(at..).and_then(|r| r.find('/')) {
            let dir = &name[..at + i];
            // Only directories the initrd does not have: an entry over an
            // existing symlink would replace the link.
            if self.listing.entry(dir).is_none() {
                self.dirs.insert(dir.to_string());
            }
            at += i + 1;
        }
        self.files.push((name.to_string(), mode, data));
    }

    fn names(&self) -> Vec<String> {
        self.files.iter().map(|(n, _, _)| n.clone()).collect()
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        let mut cpio = Vec::new();
        let mut ino = 0x7032_0000u32;
        // BTreeSet order puts each parent before its children.
        for d in &self.dirs {
            ino += 1;
            let w = cpio::newc::Builder::new(d)
                .mode(0o040755)
                .ino(ino)
                .nlink(2)
                .write(&mut cpio, 0);
            w.finish()?;
        }
        for (name, mode, data) in &self.files {
            ino += 1;
            let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
            let mut w = cpio::newc::Builder::new(name)
                .mode(*mode)
                .ino(ino)
                .nlink(1)
                .write(&mut cpio, len);
            w.write_all(data)?;
            w.finish()?;
        }
        cpio::newc::trailer(&mut cpio)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&cpio)?;
        gz.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_lists_dependencies_first_and_takes_both_spellings() {
        let dep = "kernel/drivers/block/loop.ko.xz:\n\
                   kernel/drivers/block/xen-blkfront.ko.xz: kernel/a.ko kernel/b.ko\n";
        assert_eq!(
            module_closure(dep, "xen-blkfront").unwrap(),
            [
                "kernel/b.ko",
                "kernel/a.ko",
                "kernel/drivers/block/xen-blkfront.ko.xz"
            ]
        );
        let old = "/lib/modules/2.6.18/kernel/drivers/xen/blkfront/xen_blkfront.ko:\n";
        assert_eq!(module_closure(old, "xen-blkfront").unwrap().len(), 1);
        assert!(module_closure(dep, "xen-netfront").is_none());
    }

    #[test]
    fn module_lists_ignore_comments_and_options() {
        assert!(lists_module(
            "# xen-blkfront\nxen_blkfront opt=1\n",
            "xen-blkfront"
        ));
        assert!(!lists_module("# xen-blkfront\n", "xen-blkfront"));
    }
}
