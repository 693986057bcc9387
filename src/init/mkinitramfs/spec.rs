//! The initramfs spec: a readable list of what goes into the archive.
//!
//! One entry a line, in the spirit of the kernel's `usr/gen_init_cpio`:
//!
//! ```text
//! dir     /proc 0755
//! file    /init ${P2XEN} 0755          # source path, relative to the spec's directory
//! slink   /lib64 lib                   # symlink NAME -> TARGET
//! nod     /dev/console 0600 c 5 1      # device node: c|b MAJOR MINOR
//! busybox /bin/busybox ${BUSYBOX}      # the binary plus a symlink per applet
//! modules /lib/modules modules.list    # kernel modules listed in that file (+ dependencies)
//! ```
//! `${NAME}` is replaced by a `--var NAME=VALUE` given on the command line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}:{line}: {msg}")]
    Syntax {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecEntry {
    Dir {
        name: String,
        perm: u32,
    },
    File {
        name: String,
        source: PathBuf,
        perm: u32,
    },
    Symlink {
        name: String,
        target: String,
    },
    Node {
        name: String,
        perm: u32,
        block: bool,
        major: u32,
        minor: u32,
    },
    Busybox {
        name: String,
        source: PathBuf,
    },
    Modules {
        dest: String,
        list: PathBuf,
    },
}

fn substitute(word: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {word:?}"))?;
        let key = &after[..end];
        let val = vars
            .get(key)
            .ok_or_else(|| format!("variable {key} is not set (pass --var {key}=VALUE)"))?;
        out.push_str(val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn perm(word: &str) -> Result<u32, String> {
    u32::from_str_radix(word, 8)
        .ok()
        .filter(|p| *p <= 0o7777)
        .ok_or_else(|| format!("bad permission {word:?} (octal, e.g. 0755)"))
}

fn number(word: &str) -> Result<u32, String> {
    word.parse()
        .map_err(|_| format!("bad device number {word:?}"))
}

/// Parses a spec; relative source paths are taken relative to `base`.
pub fn parse(
    text: &str,
    spec_path: &Path,
    base: &Path,
    vars: &HashMap<String, String>,
) -> Result<Vec<SpecEntry>, SpecError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |msg: String| SpecError::Syntax {
            path: spec_path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| substitute(w, vars))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let src = |w: &str| {
            let p = PathBuf::from(w);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let entry = match w.as_slice() {
            ["dir", name, p] => SpecEntry::Dir {
                name: name.to_string(),
                perm: perm(p).map_err(err)?,
            },
            ["file", name, source, p] => SpecEntry::File {
                name: name.to_string(),
                source: src(source),
                perm: perm(p).map_err(err)?,
            },
            ["slink", name, target] => SpecEntry::Symlink {
                name: name.to_string(),
                target: target.to_string(),
            },
            ["nod", name, p, kind @ ("c" | "b"), major, minor] => SpecEntry::Node {
                name: name.to_string(),
                perm: perm(p).map_err(err)?,
                block: *kind == "b",
                major: number(major).map_err(err)?,
                minor: number(minor).map_err(err)?,
            },
            ["busybox", name, source] => SpecEntry::Busybox {
                name: name.to_string(),
                source: src(source),
            },
            ["modules", dest, list] => SpecEntry::Modules {
                dest: dest.to_string(),
                list: src(list),
            },
            _ => {
                return Err(err(format!(
                    "cannot read {line:?}: expected dir|file|slink|nod|busybox|modules with their fields"
                )));
            }
        };
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let vars = HashMap::from([("P2XEN".to_string(), "/o/p2xen".to_string())]);
        let text = "# comment\n\ndir /proc 0555\nfile /init ${P2XEN} 0755\nfile /etc/x rel/x 0644 # trailing\n\
                    slink /bin/sh busybox\nnod /dev/console 0600 c 5 1\nbusybox /bin/busybox /bin/busybox\n\
                    modules /lib/modules modules.list\n";
        let e = parse(text, Path::new("spec"), Path::new("/base"), &vars).unwrap();
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[1],
            SpecEntry::File {
                name: "/init".into(),
                source: "/o/p2xen".into(),
                perm: 0o755
            }
        );
        assert_eq!(
            e[2],
            SpecEntry::File {
                name: "/etc/x".into(),
                source: "/base/rel/x".into(),
                perm: 0o644
            }
        );
        assert_eq!(
            e[4],
            SpecEntry::Node {
                name: "/dev/console".into(),
                perm: 0o600,
                block: false,
                major: 5,
                minor: 1
            }
        );
    }

    #[test]
    fn errors_name_the_line() {
        let vars = HashMap::new();
        let e = parse(
            "dir /a 0755\nfile /init ${P2XEN} 0755\n",
            Path::new("s"),
            Path::new("/"),
            &vars,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "s:2: variable P2XEN is not set (pass --var P2XEN=VALUE)"
        );
        let e = parse("dir /a 0999\n", Path::new("s"), Path::new("/"), &vars).unwrap_err();
        assert!(e.to_string().contains("s:1: bad permission \"0999\""));
        let e = parse("frob /a\n", Path::new("s"), Path::new("/"), &vars).unwrap_err();
        assert!(e.to_string().starts_with("s:1: cannot read \"frob /a\""));
    }
}
