//! `p2xen mkinitramfs`: writes the live environment's initramfs from
//! `initramfs/spec` as a zstd-compressed cpio "newc" archive.
//!
//! Kernel modules are taken from an unpacked kernel tree (`lib/modules/VERSION`
//! with a `modules.dep` from `depmod -b`); the subset named in the module list
//! is closed over its dependencies, and the archive gets `modules.dep` and
//! `modules.alias` restricted to that subset, so no depmod runs on the result.

pub mod cli;
pub mod cpio;
pub mod spec;

use crate::init::coldplug::alias::AliasTable;
use crate::init::coldplug::deps::{DepsError, ModuleDeps};
use cpio::{CpioError, CpioWriter, NodeKind};
use spec::{SpecEntry, SpecError};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum MkError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: `--list-full` failed; is it a busybox binary for this machine?")]
    Busybox { path: PathBuf },
    #[error("the spec has a `modules` line but no --modules-dir was given")]
    NoModulesDir,
    #[error("{list}:{line}: module {name} is not in {dep} (prefix it with ? if optional)")]
    UnknownModule {
        list: PathBuf,
        line: usize,
        name: String,
        dep: PathBuf,
    },
    #[error("{path}: {source}")]
    Deps { path: PathBuf, source: DepsError },
    #[error("{list}:{line}: directory {dir} holds no modules in modules.dep")]
    EmptyDir {
        list: PathBuf,
        line: usize,
        dir: String,
    },
}

pub struct Options {
    pub spec: PathBuf,
    /// `.../lib/modules/VERSION` of the kernel the image boots.
    pub modules_dir: Option<PathBuf>,
    pub output: PathBuf,
    pub vars: HashMap<String, String>,
    /// zstd level; 19 keeps the window at 8 MiB, which the kernel's unzstd handles.
    pub level: i32,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub entries: usize,
    pub modules: usize,
    pub cpio_bytes: u64,
    pub compressed_bytes: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, MkError> {
    fs::read(path).map_err(|source| MkError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, MkError> {
    fs::read_to_string(path).map_err(|source| MkError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Archive writer that creates missing parent directories first: the kernel's
/// unpacker does not create them and would drop the entry.
struct Tree<W: Write> {
    cpio: CpioWriter<W>,
    dirs: HashSet<String>,
    entries: usize,
}

impl<W: Write> Tree<W> {
    fn parents(&mut self, name: &str) -> Result<(), CpioError> {
        let trimmed = name.trim_matches('/');
        let mut acc = String::new();
        let parts: Vec<&str> = trimmed.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            acc.push('/');
            acc.push_str(part);
            if self.dirs.insert(acc.clone()) {
                self.cpio.dir(&acc, 0o755)?;
                self.entries += 1;
            }
        }
        Ok(())
    }

    fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.parents(name)?;
        let key = format!("/{}", name.trim_matches('/'));
        if self.dirs.insert(key.clone()) {
            self.cpio.dir(&key, perm)?;
            self.entries += 1;
        }
        Ok(())
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.parents(name)?;
        self.entries += 1;
        self.cpio.file(name, perm, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        self.parents(name)?;
        self.entries += 1;
        self.cpio.symlink(name, target)
    }

    fn node(
        &mut self,
        name: &str,
        perm: u32,
        kind: NodeKind,
        ma: u32,
        mi: u32,
    ) -> Result<(), CpioError> {
        self.parents(name)?;
        self.entries += 1;
        self.cpio.node(name, perm, kind, ma, mi)
    }
}

/// Builds the archive described by `opts.spec` and writes it atomically.
pub fn build(opts: &Options) -> Result<Summary, MkError> {
    let text = read_text(&opts.spec)?;
    let base = opts.spec.parent().unwrap_or(Path::new("."));
    let entries = spec::parse(&text, &opts.spec, base, &opts.vars)?;

    let tmp = opts.output.with_extension("tmp");
    let werr = |source| MkError::Write {
        path: tmp.clone(),
        source,
    };
    let file = File::create(&tmp).map_err(werr)?;
    let mut enc = zstd::stream::Encoder::new(BufWriter::new(file), opts.level).map_err(werr)?;
    enc.include_checksum(true).map_err(werr)?;
    let mut tree = Tree {
        cpio: CpioWriter::new(enc),
        dirs: HashSet::new(),
        entries: 0,
    };
    let mut modules = 0;
    for entry in &entries {
        match entry {
            SpecEntry::Dir { name, perm } => tree.dir(name, *perm)?,
            SpecEntry::File { name, source, perm } => tree.file(name, *perm, &read(source)?)?,
            SpecEntry::Symlink { name, target } => tree.symlink(name, target)?,
            SpecEntry::Node {
                name,
                perm,
                block,
                major,
                minor,
            } => {
                let kind = if *block {
                    NodeKind::Block
                } else {
                    NodeKind::Char
                };
                tree.node(name, *perm, kind, *major, *minor)?
            }
            SpecEntry::Busybox { name, source } => add_busybox(&mut tree, name, source)?,
            SpecEntry::Modules { dest, list } => {
                let dir = opts.modules_dir.as_deref().ok_or(MkError::NoModulesDir)?;
                modules += add_modules(&mut tree, dest, list, dir)?;
            }
        }
    }
    let entries = tree.entries;
    let (enc, cpio_bytes) = tree.cpio.finish()?;
    let mut inner = enc.finish().map_err(werr)?;
    inner.flush().map_err(werr)?;
    drop(inner);
    fs::rename(&tmp, &opts.output).map_err(|source| MkError::Write {
        path: opts.output.clone(),
        source,
    })?;
    let compressed_bytes = fs::metadata(&opts.output)
        .map_err(|source| MkError::Read {
            path: opts.output.clone(),
            source,
        })?
        .len();
    Ok(Summary {
        entries,
        modules,
        cpio_bytes,
        compressed_bytes,
    })
}

fn add_busybox<W: Write>(tree: &mut Tree<W>, name: &str, source: &Path) -> Result<(), MkError> {
    tree.file(name, 0o755, &read(source)?)?;
    // The binary is static and built for this architecture, so asking it
    // for its applets is the one authoritative list.
    let out = Command::new(source)
        .arg("--list-full")
        .output()
        .map_err(|source_err| MkError::Read {
            path: source.to_path_buf(),
            source: source_err,
        })?;
    if !out.status.success() {
        return Err(MkError::Busybox {
            path: source.to_path_buf(),
        });
    }
    let me = name.trim_start_matches('/');
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        // `init` and `linuxrc` would shadow p2xen as PID 1.
        if applet.is_empty() || applet == me || applet.ends_with("init") || applet == "linuxrc" {
            continue;
        }
        tree.symlink(&format!("/{applet}"), name)?;
    }
    Ok(())
}

/// The modules `list` (a modules.list) names, with their dependencies,
/// resolved against `deps` (read from `dep_path`); normalised names.
pub fn resolve_module_list(
    list: &Path,
    deps: &ModuleDeps,
    dep_path: &Path,
) -> Result<HashSet<String>, MkError> {
    let mut wanted: Vec<String> = Vec::new();
    for (i, raw) in read_text(list)?.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(d) = line.strip_prefix("dir ") {
            let found = deps.under_dir(d.trim());
            if found.is_empty() {
                return Err(MkError::EmptyDir {
                    list: list.to_path_buf(),
                    line: i + 1,
                    dir: d.trim().to_string(),
                });
            }
            wanted.extend(found);
        } else if let Some(opt) = line.strip_prefix('?') {
            if deps.contains(opt) {
                wanted.push(opt.to_string());
            }
        } else if deps.contains(line) {
            wanted.push(line.to_string());
        } else {
            return Err(MkError::UnknownModule {
                list: list.to_path_buf(),
                line: i + 1,
                name: line.to_string(),
                dep: dep_path.to_path_buf(),
            });
        }
    }
    let mut keep = HashSet::new();
    for name in &wanted {
        let order = deps.load_order(name).map_err(|source| MkError::Deps {
            path: dep_path.to_path_buf(),
            source,
        })?;
        keep.extend(order);
    }
    Ok(keep)
}

fn add_modules<W: Write>(
    tree: &mut Tree<W>,
    dest: &str,
    list: &Path,
    dir: &Path,
) -> Result<usize, MkError> {
    let dep_path = dir.join("modules.dep");
    let deps = ModuleDeps::parse(&read_text(&dep_path)?).map_err(|source| MkError::Deps {
        path: dep_path.clone(),
        source,
    })?;
    let keep = resolve_module_list(list, &deps, &dep_path)?;
    let version = dir
        .file_name()
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = format!("{}/{version}", dest.trim_end_matches('/'));
    let mut names: Vec<&String> = keep.iter().collect();
    names.sort();
    for name in names {
        if let Some(rel) = deps.path(name) {
            tree.file(&format!("{root}/{rel}"), 0o644, &read(&dir.join(rel))?)?;
        }
    }
    tree.file(
        &format!("{root}/modules.dep"),
        0o644,
        deps.subset_text(&keep).as_bytes(),
    )?;
    let alias = AliasTable::parse(&read_text(&dir.join("modules.alias"))?);
    tree.file(
        &format!("{root}/modules.alias"),
        0o644,
        alias.subset_text(&keep).as_bytes(),
    )?;
    // Builtins count as present for coldplug; copied whole.
    for extra in ["modules.builtin", "modules.softdep"] {
        let p = dir.join(extra);
        if p.exists() {
            tree.file(&format!("{root}/{extra}"), 0o644, &read(&p)?)?;
        }
    }
    Ok(keep.len())
}
