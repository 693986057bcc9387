//! The `modules.alias` table: modalias glob patterns → module names.

use super::glob;
use std::collections::HashMap;

/// Parsed `modules.alias`, indexed by the literal bus prefix ("pci", "usb",
/// "virtio", ...) so a lookup tries only the patterns of one bus.
#[derive(Debug, Default)]
pub struct AliasTable {
    entries: Vec<(String, String)>,
    by_bus: HashMap<String, Vec<usize>>,
    /// Patterns whose bus prefix itself has a wildcard (rare).
    any_bus: Vec<usize>,
}

/// Normalises a module name as kmod does: '-' and '_' are the same.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn bus_of(s: &str) -> Option<&str> {
    s.split_once(':').map(|(bus, _)| bus)
}

impl AliasTable {
    /// Parses `alias PATTERN MODULE` lines; other lines (comments, blanks) are skipped.
    pub fn parse(text: &str) -> Self {
        let mut table = AliasTable::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some("alias"), Some(pattern), Some(module)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let idx = table.entries.len();
            table.entries.push((pattern.to_string(), normalize(module)));
            match bus_of(pattern) {
                Some(bus) if !bus.contains(['*', '?', '[']) => {
                    table.by_bus.entry(bus.to_string()).or_default().push(idx)
                }
                _ => table.any_bus.push(idx),
            }
        }
        table
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Modules whose pattern matches `modalias`, in file order, each once.
    pub fn lookup(&self, modalias: &str) -> Vec<&str> {
        let bucket = bus_of(modalias)
            .and_then(|bus| self.by_bus.get(bus))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut idxs: Vec<usize> = bucket.iter().chain(&self.any_bus).copied().collect();
        idxs.sort_unstable();
        let mut out: Vec<&str> = Vec::new();
        for i in idxs {
            let Some((pattern, module)) = self.entries.get(i) else {
                continue;
            };
            if glob::matches(pattern.as_bytes(), modalias.as_bytes())
                && !out.contains(&module.as_str())
            {
                out.push(module);
            }
        }
        out
    }

    /// modules.alias text restricted to the modules in `keep`.
    pub fn subset_text(&self, keep: &std::collections::HashSet<String>) -> String {
        let mut s = String::new();
        for (pattern, module) in &self.entries {
            if keep.contains(module) {
                s.push_str(&format!("alias {pattern} {module}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Aliases extracted from modules themselves.\n\
        alias pci:v*d*sv*sd*bc01sc06i01* ahci\n\
        alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci\n\
        alias virtio:d00000002v* virtio_blk\n\
        alias scsi:t-0x00* sd_mod\n\
        alias fs-ext4 ext4\n\
        alias *:foo odd-module\n";

    #[test]
    fn lookup_by_bus() {
        let t = AliasTable::parse(SAMPLE);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t.lookup("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            vec!["ahci"]
        );
        assert_eq!(t.lookup("virtio:d00000002v00001AF4"), vec!["virtio_blk"]);
        assert_eq!(t.lookup("scsi:t-0x05"), Vec::<&str>::new());
        assert_eq!(t.lookup("acpi:foo"), vec!["odd_module"]);
        assert!(t.lookup("garbage").is_empty());
    }
}
