//! The INI-like files of NetworkManager (keyfiles) and systemd-networkd:
//! `[Section]` headers and `key=value` lines, rewritten value by value.

use crate::guest::change::map_lines;

/// Maps each `key=value` line through `f(section, key, value)`; `Some`
/// replaces the value, spacing around `=` kept.
pub fn map_values(text: &str, mut f: impl FnMut(&str, &str, &str) -> Option<String>) -> String {
    let mut section = String::new();
    map_lines(text, |line| {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            section = t.trim_matches(['[', ']']).to_string();
            return line.to_string();
        }
        if t.starts_with('#') || t.starts_with(';') {
            return line.to_string();
        }
        let Some((k, v)) = line.split_once('=') else {
            return line.to_string();
        };
        match f(&section, k.trim(), v.trim()) {
            Some(nv) if nv != v.trim() => {
                let lead = &v[..v.len() - v.trim_start().len()];
                format!("{k}={lead}{nv}")
            }
            _ => line.to_string(),
        }
    })
}

/// The values of `key` in `section`.
pub fn values<'a>(text: &'a str, section: &str, key: &str) -> Vec<&'a str> {
    let mut cur = "";
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            cur = t.trim_matches(['[', ']']);
        } else if let Some((k, v)) = t.split_once('=') {
            if cur == section && k.trim() == key {
                out.push(v.trim());
            }
        }
    }
    out
}
