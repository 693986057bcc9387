//! Coldplug: load the kernel modules the machine's devices ask for.
//!
//! Every device with a `modalias` in sysfs is matched against
//! `modules.alias`; the matching modules are loaded with their dependencies
//! (`modules.dep`) by `finit_module`. Loading a driver creates new devices
//! (an HBA's SCSI disks want `sd_mod`), so the walk repeats until nothing new
//! appears and the uevent stream has gone quiet, bounded by a timeout; then a
//! thread keeps listening to uevents for devices that come later.
//!
//! Each load waits at most a timeout ([`timed`]): a driver whose probe
//! blocks is reported as stuck, naming the device, and the boot goes on
//! without it and without the modules that need it. Modules named by
//! `p2xen.blacklist=` are never loaded.

pub mod alias;
pub mod deps;
pub mod glob;
pub mod options;
pub mod timed;
pub mod uevent;

use alias::AliasTable;
use deps::ModuleDeps;
use options::ModuleOptions;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timed::{LoadFn, Outcome, TimedLoader};
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
    #[error("{path}: module parameters {params:?} contain a NUL byte")]
    Params { path: PathBuf, params: String },
    #[error("{path}: cannot start a thread to load it: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the loading thread panicked (a bug)")]
    Panicked { path: PathBuf },
    /// `module` (needed by `wanted`, or `wanted` itself) has been loading
    /// for `waited`; `first` for the request that found it overrunning.
    #[error(
        "module {module}{} has not finished loading after {} s",
        needed_by(module, wanted),
        waited.as_secs()
    )]
    Stuck {
        module: String,
        wanted: String,
        waited: Duration,
        first: bool,
    },
    #[error(
        "module {module}{} is not loaded: p2xen.blacklist",
        needed_by(module, wanted)
    )]
    Blacklisted { module: String, wanted: String },
}

fn needed_by(module: &str, wanted: &str) -> String {
    if module == wanted {
        String::new()
    } else {
        format!(" (needed by {wanted})")
    }
}

/// What the kernel command line asks of coldplug.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `p2xen.blacklist=`: modules never loaded, nor anything that needs them.
    pub blacklist: Vec<String>,
    /// `p2xen.settle=`: the longest wait for one module's load.
    pub load_timeout: Duration,
    /// `MODULE.PARAM=VALUE` of the command line, after p2xen's defaults.
    pub options: ModuleOptions,
}

pub struct Coldplug {
    moddir: PathBuf,
    aliases: AliasTable,
    deps: ModuleDeps,
    builtin: HashSet<String>,
    options: ModuleOptions,
    loaded: HashSet<String>,
    failed: HashSet<String>,
    seen: HashSet<(PathBuf, String)>,
    loader: TimedLoader,
    blacklist: HashSet<String>,
    /// Blacklisted modules some device asked for.
    refused: BTreeSet<String>,
    /// Stuck modules → the devices that wanted them (`path (modalias)`).
    stuck_for: BTreeMap<String, Vec<String>>,
}

/// What one pass over the devices did.
#[derive(Debug, Default)]
pub struct Pass {
    pub new_devices: usize,
    pub loaded: Vec<String>,
    /// Time spent waiting for loads that overran.
    pub stalled: Duration,
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
    /// Reads modules.alias, modules.dep and modules.builtin from `moddir`;
    /// modules are loaded with `finit_module` ([`Coldplug::with_loader`] for tests).
    pub fn open(moddir: &Path, policy: &Policy) -> Result<Self, ColdplugError> {
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
            options: policy.options.clone(),
            loaded: HashSet::new(),
            failed: HashSet::new(),
            seen: HashSet::new(),
            loader: TimedLoader::new(Arc::new(timed::finit), policy.load_timeout),
            blacklist: policy
                .blacklist
                .iter()
                .map(|m| alias::normalize(m))
                .collect(),
            refused: BTreeSet::new(),
            stuck_for: BTreeMap::new(),
        })
    }

    /// Replaces the loader (a fake in tests), keeping the timeout.
    pub fn with_loader(mut self, load: Arc<LoadFn>) -> Self {
        self.loader = TimedLoader::new(load, self.loader.timeout());
        self
    }

    fn present(&self, name: &str) -> bool {
        self.loaded.contains(name)
            || self.builtin.contains(name)
            || Path::new("/sys/module")
                .join(name)
                .join("initstate")
                .exists()
    }

    /// Loads `name` and its dependencies, appending each module it inserts
    /// to `inserted`. Stops at the first that fails, is stuck or is
    /// blacklisted: what follows needs it.
    pub fn load(&mut self, name: &str, inserted: &mut Vec<String>) -> Result<(), ColdplugError> {
        let order = self
            .deps
            .load_order(name)
            .map_err(|source| ColdplugError::Deps {
                path: self.moddir.join("modules.dep"),
                source,
            })?;
        for m in order {
            // A stuck module shows in /sys/module already: ask the loader first.
            if !self.loader.is_pending(&m) && (self.present(&m) || self.failed.contains(&m)) {
                continue;
            }
            if self.blacklist.contains(&m) {
                self.refused.insert(m.clone());
                return Err(ColdplugError::Blacklisted {
                    module: m,
                    wanted: alias::normalize(name),
                });
            }
            let Some(rel) = self.deps.path(&m) else {
                continue;
            };
            let path = self.moddir.join(rel);
            let params = self.options.for_module(&m);
            let (waited, first) = match self.loader.load(&m, &path, &params) {
                Outcome::Loaded => {
                    self.loaded.insert(m.clone());
                    inserted.push(m);
                    continue;
                }
                Outcome::Failed(e) => {
                    // Remember it: a driver whose init fails (ENODEV: no
                    // hardware it supports) is not retried on every pass.
                    self.failed.insert(m);
                    return Err(e);
                }
                Outcome::Overran { waited } => (waited, true),
                Outcome::StillStuck { since } => (since, false),
            };
            return Err(ColdplugError::Stuck {
                module: m,
                wanted: alias::normalize(name),
                waited,
                first,
            });
        }
        Ok(())
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
            let mut inserted = Vec::new();
            let result = self.load(&module, &mut inserted);
            if !inserted.is_empty() {
                log::info!(
                    "{} ({modalias}): loaded {}; driver: {}",
                    devdir.display(),
                    inserted.join(" "),
                    bound_driver(devdir).unwrap_or_else(|| "none yet".into())
                );
                pass.loaded.extend(inserted);
            }
            match result {
                Ok(()) => {}
                Err(ColdplugError::Stuck {
                    module,
                    wanted,
                    waited,
                    first,
                }) => {
                    let device = format!("{} ({modalias})", devdir.display());
                    let needed = needed_by(&module, &wanted);
                    if first {
                        log::error!(
                            "coldplug: STUCK: module {module}{needed}, loading for {device}, \
                             has not finished after {} s: its probe is blocked (driver or \
                             hardware). Going on without it and what needs it; its devices \
                             may be missing. To skip it next boot: p2xen.blacklist={module}",
                            waited.as_secs()
                        );
                        pass.stalled += waited;
                    } else {
                        log::warn!(
                            "{device}: module {module}{needed} not loaded: stuck loading for {} s",
                            waited.as_secs()
                        );
                    }
                    self.stuck_for.entry(module).or_default().push(device);
                }
                Err(e @ ColdplugError::Blacklisted { .. }) => {
                    log::info!("{} ({modalias}): {e}", devdir.display())
                }
                Err(e) => log::warn!("{} ({modalias}): {e}", devdir.display()),
            }
        }
    }

    /// Modules still stuck and those refused by the blacklist, for the
    /// summary line: empty when there are none, else ` | stuck: ... `.
    pub fn problems(&self) -> String {
        let mut out = String::new();
        let stuck = self.loader.stuck();
        if !stuck.is_empty() {
            let list: Vec<String> = stuck
                .iter()
                .map(|(m, t)| {
                    let devices = self.stuck_for.get(m).map_or(0, Vec::len);
                    format!("{m} ({} s, {devices} device(s))", t.as_secs())
                })
                .collect();
            out.push_str(&format!(" | stuck: {}", list.join(", ")));
        }
        if !self.refused.is_empty() {
            let list: Vec<&str> = self.refused.iter().map(String::as_str).collect();
            out.push_str(&format!(" | blacklisted: {}", list.join(" ")));
        }
        out
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
        self.settle_in(Path::new("/sys/devices"), events, quiet, timeout)
    }

    fn settle_in(
        &mut self,
        sys_devices: &Path,
        events: Option<&UeventSocket>,
        quiet: Duration,
        timeout: Duration,
    ) -> Vec<String> {
        let mut deadline = Instant::now() + timeout;
        let mut loaded = Vec::new();
        loop {
            let pass = self.pass(sys_devices);
            let busy = pass.new_devices > 0;
            loaded.extend(pass.loaded);
            // A stuck driver's wait is not the other devices' settle time.
            deadline += pass.stalled;
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

#[cfg(test)]
mod tests;
