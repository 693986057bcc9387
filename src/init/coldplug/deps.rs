//! The `modules.dep` table: module → file and the modules it needs first.

use super::alias::normalize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("modules.dep line {line}: expected `PATH: DEPS...`, got {text:?}")]
    Syntax { line: usize, text: String },
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("module {module} needs {missing}, which is not in modules.dep")]
    MissingDep { module: String, missing: String },
    #[error("modules.dep has a dependency cycle through {0}")]
    Cycle(String),
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    deps: Vec<String>,
}

/// Parsed `modules.dep` (paths relative to /lib/modules/VERSION).
#[derive(Debug, Default)]
pub struct ModuleDeps {
    by_name: HashMap<String, Entry>,
    /// Lines in file order, for writing a subset back out.
    order: Vec<String>,
}

/// Module name of a path in modules.dep: basename without `.ko[.xz|.zst|.gz]`,
/// dashes as underscores (`kernel/drivers/net/virtio_net.ko` → `virtio_net`).
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split_once(".ko").map(|(s, _)| s).unwrap_or(base);
    normalize(stem)
}

impl ModuleDeps {
    pub fn parse(text: &str) -> Result<Self, DepsError> {
        let mut t = ModuleDeps::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                return Err(DepsError::Syntax {
                    line: i + 1,
                    text: line.chars().take(120).collect(),
                });
            };
            let name = module_name(path.trim());
            t.order.push(name.clone());
            t.by_name.insert(
                name,
                Entry {
                    path: path.trim().to_string(),
                    deps: deps.split_whitespace().map(module_name).collect(),
                },
            );
        }
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(&normalize(name))
    }

    /// Path relative to /lib/modules/VERSION.
    pub fn path(&self, name: &str) -> Option<&str> {
        self.by_name.get(&normalize(name)).map(|e| e.path.as_str())
    }

    /// Names of all modules whose path starts with `dir` (e.g. `kernel/drivers/net/ethernet`).
    pub fn under_dir(&self, dir: &str) -> Vec<String> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        self.order
            .iter()
            .filter(|n| {
                self.by_name
                    .get(*n)
                    .is_some_and(|e| e.path.starts_with(&dir))
            })
            .cloned()
            .collect()
    }

    /// `name` and everything it needs, dependencies first: the order to load in.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, DepsError> {
        let mut out = Vec::new();
        let mut done = HashSet::new();
        self.visit(&normalize(name), &mut Vec::new(), &mut done, &mut out)?;
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), DepsError> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(DepsError::Cycle(name.to_string()));
        }
        let entry = self.by_name.get(name).ok_or_else(|| match stack.last() {
            Some(parent) => DepsError::MissingDep {
                module: parent.clone(),
                missing: name.to_string(),
            },
            None => DepsError::Unknown(name.to_string()),
        })?;
        stack.push(name.to_string());
        for dep in &entry.deps {
            self.visit(dep, stack, done, out)?;
        }
        stack.pop();
        done.insert(name.to_string());
        out.push(name.to_string());
        Ok(())
    }

    /// modules.dep text restricted to `keep` (which must be closed under dependencies).
    pub fn subset_text(&self, keep: &HashSet<String>) -> String {
        let mut s = String::new();
        for name in &self.order {
            if !keep.contains(name) {
                continue;
            }
            if let Some(e) = self.by_name.get(name) {
                let deps: Vec<&str> = e
                    .deps
                    .iter()
                    .filter_map(|d| self.by_name.get(d).map(|x| x.path.as_str()))
                    .collect();
                s.push_str(&format!("{}: {}\n", e.path, deps.join(" ")));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
        kernel/drivers/virtio/virtio.ko:\n\
        kernel/drivers/virtio/virtio_ring.ko:\n\
        kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
        kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n\
        kernel/fs/a-b.ko: kernel/fs/missing.ko\n";

    #[test]
    fn order_is_dependencies_first() {
        let d = ModuleDeps::parse(SAMPLE).unwrap();
        assert_eq!(d.len(), 6);
        assert_eq!(
            d.load_order("virtio-blk").unwrap(),
            vec!["virtio", "virtio_ring", "virtio_blk"]
        );
        assert_eq!(d.path("a-b"), Some("kernel/fs/a-b.ko"));
        assert_eq!(
            d.load_order("a_b").unwrap_err().to_string(),
            "module a_b needs missing, which is not in modules.dep"
        );
        assert!(matches!(d.load_order("nope"), Err(DepsError::Unknown(_))));
        assert_eq!(d.under_dir("kernel/drivers/virtio").len(), 4);
    }

    #[test]
    fn cycle_detected() {
        let d = ModuleDeps::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert!(matches!(d.load_order("a"), Err(DepsError::Cycle(_))));
    }

    #[test]
    fn subset_keeps_paths() {
        let d = ModuleDeps::parse(SAMPLE).unwrap();
        let keep: HashSet<String> = d.load_order("virtio_blk").unwrap().into_iter().collect();
        let text = d.subset_text(&keep);
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with("kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"));
    }
}
