//! The copy's root filesystem, mounted on dom0, seen through guest paths.
//!
//! Guest symlinks are absolute in the guest's view (`/etc/mtab ->
//! /proc/mounts`); following them on dom0 would read or write dom0's own
//! files. Every path is therefore resolved component by component inside the
//! mount, with guest symlinks interpreted relative to the guest root.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Largest config file the fix-ups read: fstab, grub.cfg, modprobe.conf are
/// a few KiB; anything bigger is not a config file.
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;
/// Symlink hops allowed while resolving one path (the kernel's limit).
const MAX_SYMLINK_HOPS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum GuestFsError {
    #[error("guest {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("guest {path}: too many levels of symbolic links")]
    Loop { path: String },
    #[error("guest {path}: {size} bytes is too big for this file")]
    TooBig { path: String, size: u64 },
}

#[derive(Debug, Clone)]
pub struct GuestFs {
    root: PathBuf,
}

impl GuestFs {
    pub fn new(root: &Path) -> Self {
        GuestFs {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dom0 path of `guest` with every symlink (also the last component)
    /// resolved inside the guest.
    pub fn resolve(&self, guest: &str) -> Result<PathBuf, GuestFsError> {
        self.resolve_inner(guest, true)
    }

    /// Like `resolve`, but a symlink in the last component is not followed
    /// (for removing or reading a link itself).
    pub fn resolve_parent(&self, guest: &str) -> Result<PathBuf, GuestFsError> {
        self.resolve_inner(guest, false)
    }

    fn resolve_inner(&self, guest: &str, follow_last: bool) -> Result<PathBuf, GuestFsError> {
        let mut hops = 0u32;
        // The resolved guest path so far, as components below the root.
        let mut done: Vec<std::ffi::OsString> = Vec::new();
        let mut todo: Vec<std::ffi::OsString> = components(Path::new(guest));
        todo.reverse();
        while let Some(c) = todo.pop() {
            if c == OsStr::new("..") {
                done.pop();
                continue;
            }
            let mut candidate = self.root.clone();
            candidate.extend(done.iter());
            candidate.push(&c);
            let is_last = todo.is_empty();
            let link = match std::fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() && (follow_last || !is_last) => {
                    std::fs::read_link(&candidate).map_err(|source| GuestFsError::Io {
                        path: guest.to_string(),
                        source,
                    })?
                }
                _ => {
                    done.push(c);
                    continue;
                }
            };
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(GuestFsError::Loop {
                    path: guest.to_string(),
                });
            }
            if link.is_absolute() {
                done.clear();
            }
            let mut more = components(&link);
            more.reverse();
            todo.extend(more);
        }
        let mut out = self.root.clone();
        out.extend(done.iter());
        Ok(out)
    }

    /// The file's text, `None` if it does not exist (or is not a regular file).
    pub fn read(&self, guest: &str) -> Result<Option<String>, GuestFsError> {
        let bytes = self.read_bytes(guest, MAX_CONFIG_BYTES)?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A regular file's bytes (`None` if it is missing or not a file);
    /// larger than `max` is an error.
    pub fn read_bytes(&self, guest: &str, max: u64) -> Result<Option<Vec<u8>>, GuestFsError> {
        let path = self.resolve(guest)?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(GuestFsError::Io {
                    path: guest.to_string(),
                    source,
                });
            }
        };
        if meta.len() > max {
            return Err(GuestFsError::TooBig {
                path: guest.to_string(),
                size: meta.len(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| GuestFsError::Io {
            path: guest.to_string(),
            source,
        })?;
        Ok(Some(bytes))
    }

    pub fn exists(&self, guest: &str) -> bool {
        self.resolve_parent(guest)
            .map(|p| std::fs::symlink_metadata(p).is_ok())
            .unwrap_or(false)
    }

    pub fn is_dir(&self, guest: &str) -> bool {
        self.resolve(guest).map(|p| p.is_dir()).unwrap_or(false)
    }

    /// Names in a guest directory, sorted; empty if it does not exist.
    pub fn list(&self, guest: &str) -> Result<Vec<String>, GuestFsError> {
        let path = self.resolve(guest)?;
        let rd = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(source) => {
                return Err(GuestFsError::Io {
                    path: guest.to_string(),
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|source| GuestFsError::Io {
                path: guest.to_string(),
                source,
            })?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// The target of a guest symlink, `None` if it is not a symlink.
    pub fn read_link(&self, guest: &str) -> Option<PathBuf> {
        let p = self.resolve_parent(guest).ok()?;
        let m = std::fs::symlink_metadata(&p).ok()?;
        if m.file_type().is_symlink() {
            std::fs::read_link(&p).ok()
        } else {
            None
        }
    }
}

fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Joins a guest directory and a name into a guest path.
pub fn gjoin(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

/// A guest tree in a temporary directory holding `files` (guest path, text).
#[cfg(test)]
pub fn test_guest(files: &[(&str, &str)]) -> (tempfile::TempDir, GuestFs) {
    let t = tempfile::tempdir().unwrap();
    for (p, text) in files {
        let full = t.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let gfs = GuestFs::new(t.path());
    (t, gfs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_stay_inside_the_guest() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("real")).unwrap();
        std::fs::write(r.join("real/passwd"), "guest").unwrap();
        symlink("/real/passwd", r.join("etc/passwd")).unwrap();
        symlink("../../../../../../etc", r.join("up")).unwrap();
        symlink("/etc/loop", r.join("etc/loop")).unwrap();
        let g = GuestFs::new(r);
        assert_eq!(g.resolve("/etc/passwd").unwrap(), r.join("real/passwd"));
        assert_eq!(g.read("/etc/passwd").unwrap().as_deref(), Some("guest"));
        assert_eq!(g.resolve("/up/passwd").unwrap(), r.join("real/passwd"));
        assert!(matches!(
            g.resolve("/etc/loop"),
            Err(GuestFsError::Loop { .. })
        ));
        assert_eq!(
            g.resolve_parent("/etc/passwd").unwrap(),
            r.join("etc/passwd")
        );
    }
}
