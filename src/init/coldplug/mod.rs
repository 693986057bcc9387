//! Coldplug: load the kernel modules the machine's devices ask for.
//!
//! Every device with a `modalias` in sysfs is matched against
//! `modules.alias`; the matching modules are loaded with their dependencies
//! (`modules.dep`) by `finit_module`. Loading a driver creates new devices
//! (an HBA's SCSI disks want `sd_mod`), so the walk repeats until nothing new
//! appears and the uevent stream has gone quiet, bounded by a timeout; then a
//! thread keeps listening to uevents for devices that come later.

pub mod alias;
pub mod deps;
pub mod glob;
pub mod uevent;

use alias::AliasTable;
use deps::ModuleDeps;
use nix::kmod::{ModuleInitFlags, finit_module};
use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uevent::UeventSocket;

#[derive(Debug, thiserror::Error)]
pub enum ColdplugError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Deps {
        path: PathBuf,
        source: deps::DepsError,
    },
    #[error("{path}: finit_module failed: {errno}")]
    Load { path: PathBuf, errno: nix::Error },
}

pub struct Coldplug {
    moddir: PathBuf,
    aliases: AliasTable,
    deps: ModuleDeps,
    builtin: HashSet<String>,
    loaded: HashSet<String>,
    failed: HashSet<String>,
    seen: HashSet<(PathBuf, String)>,
}

/// What one pass over the devices did.
#[derive(Debug, Default)]
pub struct Pass {
    pub new_devices: usize,
    pub loaded: Vec<String>,
}

fn read_text(path: &Path) -> Result<String, ColdplugError> {
    std::fs::read_to_string(path).map_err(|source| ColdplugError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `/lib/modules/$(uname -r)`.
pub fn running_moddir() -> PathBuf {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// Every `modalias` under `root` (normally /sys/devices), with its device directory.
/// Symlinks are not followed: sysfs is full of loops.
pub fn scan_modaliases(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    let alias = text.trim();
                    if !alias.is_empty() {
                        out.push((dir.clone(), alias.to_string()));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Driver bound to the device directory, if any (`driver` symlink's name).
fn bound_driver(devdir: &Path) -> Option<String> {
    std::fs::read_link(devdir.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

impl Coldplug {
    /// Reads modules.alias, modules.dep and modules.builtin from `moddir`.
    pub fn open(moddir: &Path) -> Result<Self, ColdplugError> {
        let aliases = AliasTable::parse(&read_text(&moddir.join("modules.alias"))?);
        let dep_path = moddir.join("modules.dep");
        let deps =
            ModuleDeps::parse(&read_text(&dep_path)?).map_err(|source| ColdplugError::Deps {
                path: dep_path.clone(),
                source,
            })?;
        // Builtins are present from the start; a missing file means none.
        let builtin = std::fs::read_to_string(moddir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(deps::module_name)
            .collect();
        Ok(Coldplug {
            moddir: moddir.to_path_buf(),
            aliases,
            deps,
            builtin,
            loaded: HashSet::new(),
            failed: HashSet::new(),
            seen: HashSet::new(),
        })
    }

    fn present(&self, name: &str) -> bool {
        self.loaded.contains(name)
            || self.builtin.contains(name)
            || Path::new("/sys/module")
                .join(name)
                .join("initstate")
                .exists()
    }

    /// Loads `name` and its dependencies; returns the modules actually inserted.
    pub fn load(&mut self, name: &str) -> Result<Vec<String>, ColdplugError> {
        let order = self
            .deps
            .load_order(name)
            .map_err(|source| ColdplugError::Deps {
                path: self.moddir.join("modules.dep"),
                source,
            })?;
        let mut inserted = Vec::new();
        for m in order {
            if self.present(&m) || self.failed.contains(&m) {
                continue;
            }
            let Some(rel) = self.deps.path(&m) else {
                continue;
            };
            let path = self.moddir.join(rel);
            let file = File::open(&path).map_err(|source| ColdplugError::Read {
                path: path.clone(),
                source,
            })?;
            match finit_module(&file, &CString::default(), ModuleInitFlags::empty()) {
                Ok(()) | Err(nix::Error::EEXIST) => {
                    self.loaded.insert(m.clone());
                    inserted.push(m);
                }
                Err(errno) => {
                    // Remember it: a driver whose init fails (ENODEV: no
                    // hardware it supports) is not retried on every pass.
                    self.failed.insert(m);
                    return Err(ColdplugError::Load { path, errno });
                }
            }
        }
        Ok(inserted)
    }

    /// Loads the modules for one device's modalias; logs what bound.
    fn plug(&mut self, devdir: &Path, modalias: &str, pass: &mut Pass) {
        let modules: Vec<String> = self
            .aliases
            .lookup(modalias)
            .into_iter()
            .map(str::to_string)
            .collect();
        for module in modules {
            match self.load(&module) {
                Ok(inserted) if !inserted.is_empty() => {
                    log::info!(
                        "{} ({modalias}): loaded {}; driver: {}",
                        devdir.display(),
                        inserted.join(" "),
                        bound_driver(devdir).unwrap_or_else(|| "none yet".into())
                    );
                    pass.loaded.extend(inserted);
                }
                Ok(_) => {}
                Err(e) => log::warn!("{} ({modalias}): {e}", devdir.display()),
            }
        }
    }

    /// One walk over `sys_devices`, loading modules for devices not seen before.
    pub fn pass(&mut self, sys_devices: &Path) -> Pass {
        let mut pass = Pass::default();
        for (devdir, modalias) in scan_modaliases(sys_devices) {
            if !self.seen.insert((devdir.clone(), modalias.clone())) {
                continue;
            }
            pass.new_devices += 1;
            self.plug(&devdir, &modalias, &mut pass);
        }
        pass
    }

    /// Repeats passes until one finds no new device and the uevent stream is
    /// quiet for `quiet`, or `timeout` passes. Returns the modules loaded.
    pub fn settle(
        &mut self,
        events: Option<&UeventSocket>,
        quiet: Duration,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut loaded = Vec::new();
        loop {
            let pass = self.pass(Path::new("/sys/devices"));
            let busy = pass.new_devices > 0;
            loaded.extend(pass.loaded);
            // Drain events until the kernel has been quiet for `quiet`.
            let mut heard = false;
            if let Some(sock) = events {
                while Instant::now() < deadline && sock.next(quiet).is_some() {
                    heard = true;
                }
            } else if busy {
                std::thread::sleep(quiet);
            }
            if (!busy && !heard) || Instant::now() >= deadline {
                if Instant::now() >= deadline {
                    log::warn!("coldplug: devices still appearing after {timeout:?}; going on");
                }
                return loaded;
            }
        }
    }

    /// After settling: a thread that loads modules for devices that appear later.
    pub fn spawn_hotplug(mut self, events: UeventSocket) {
        let spawned = std::thread::Builder::new()
            .name("hotplug".into())
            .spawn(move || {
                loop {
                    let Some(ev) = events.next(Duration::from_secs(60)) else {
                        continue;
                    };
                    let (Some(modalias), "add") = (ev.modalias.clone(), ev.action.as_str()) else {
                        continue;
                    };
                    let devdir = Path::new("/sys").join(ev.devpath.trim_start_matches('/'));
                    if self.seen.insert((devdir.clone(), modalias.clone())) {
                        let mut pass = Pass::default();
                        self.plug(&devdir, &modalias, &mut pass);
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the hotplug thread: {e}");
        }
    }
}
