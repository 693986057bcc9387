//! A planned change to the guest's files, its unified diff for the report,
//! and applying it. Fix-ups only plan; `--dry-run` then prints the plan and
//! applies nothing.

use serde::{Deserialize, Serialize};
use similar::TextDiff;
use std::path::Path;

use super::FixupKind;
use super::guestfs::{GuestFs, GuestFsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or replace a file's content (`old` is `None` for a new file).
    Write {
        path: String,
        old: Option<String>,
        new: String,
    },
    /// Remove a file or a symlink (never a directory).
    Remove { path: String },
    /// Create a symlink (the parent directory is created if missing).
    Symlink { path: String, target: String },
    /// Rename within the guest (sysvinit S→K links).
    Rename { from: String, to: String },
    /// Append bytes to a binary file (an initrd), first keeping the
    /// original as `backup` unless that exists from an earlier run.
    Append {
        path: String,
        backup: String,
        data: Vec<u8>,
        /// What the bytes are, for the report.
        summary: String,
    },
}

/// One change with why it is made.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: FixupKind,
    pub change: Change,
    pub note: String,
}

/// A fix-up as recorded in the conversion report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fixup {
    pub kind: FixupKind,
    /// Guest path (or image path for md superblocks).
    pub file: String,
    /// "edit", "create", "remove", "symlink", "rename", "zero".
    pub action: String,
    pub note: String,
    /// Unified diff (or a one-line description where there is no text).
    pub diff: String,
}

/// Unified diff of a text file with a/ b/ headers, as `diff -u` prints it.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    let rel = path.trim_start_matches('/');
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{rel}"), &format!("b/{rel}"))
        .to_string()
}

impl Planned {
    pub fn new(kind: FixupKind, change: Change, note: impl Into<String>) -> Self {
        Planned {
            kind,
            change,
            note: note.into(),
        }
    }

    /// The report entry, with its diff computed against the guest as it is now.
    pub fn describe(&self, gfs: &GuestFs) -> Fixup {
        let (file, action, diff) = match &self.change {
            Change::Write { path, old, new } => {
                let action = if old.is_some() { "edit" } else { "create" };
                let old_text = old.as_deref().unwrap_or("");
                let mut d = unified_diff(path, old_text, new);
                if old.is_none() {
                    d = d.replacen(
                        &format!("--- a/{}", path.trim_start_matches('/')),
                        "--- /dev/null",
                        1,
                    );
                }
                (path.clone(), action, d)
            }
            Change::Remove { path } => {
                let d = match gfs.read_link(path) {
                    Some(t) => format!("removed symlink {path} -> {}\n", t.display()),
                    None => {
                        let old = gfs.read(path).ok().flatten().unwrap_or_default();
                        unified_diff(path, &old, "").replacen(
                            &format!("+++ b/{}", path.trim_start_matches('/')),
                            "+++ /dev/null",
                            1,
                        )
                    }
                };
                (path.clone(), "remove", d)
            }
            Change::Symlink { path, target } => (
                path.clone(),
                "symlink",
                format!("created symlink {path} -> {target}\n"),
            ),
            Change::Rename { from, to } => (
                from.clone(),
                "rename",
                format!("rename from {from}\nrename to {to}\n"),
            ),
            Change::Append { path, summary, .. } => (path.clone(), "append", summary.clone()),
        };
        Fixup {
            kind: self.kind,
            file,
            action: action.to_string(),
            note: self.note.clone(),
            diff,
        }
    }

    pub fn apply(&self, gfs: &GuestFs) -> Result<(), GuestFsError> {
        let io = |path: &str| {
            let path = path.to_string();
            move |source| GuestFsError::Io { path, source }
        };
        match &self.change {
            Change::Write { path, new, .. } => {
                let p = gfs.resolve(path)?;
                write_replace(&p, new.as_bytes()).map_err(io(path))
            }
            Change::Remove { path } => {
                let p = gfs.resolve_parent(path)?;
                std::fs::remove_file(&p).map_err(io(path))
            }
            Change::Symlink { path, target } => {
                let p = gfs.resolve_parent(path)?;
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(io(path))?;
                }
                std::os::unix::fs::symlink(target, &p).map_err(io(path))
            }
            Change::Rename { from, to } => {
                let f = gfs.resolve_parent(from)?;
                let t = gfs.resolve_parent(to)?;
                std::fs::rename(&f, &t).map_err(io(from))
            }
            Change::Append {
                path, backup, data, ..
            } => {
                let p = gfs.resolve(path)?;
                let b = gfs.resolve_parent(backup)?;
                if !b.exists() {
                    copy_keeping_mode(&p, &b).map_err(io(backup))?;
                }
                let mut all = std::fs::read(&p).map_err(io(path))?;
                all.extend_from_slice(data);
                write_replace(&p, &all).map_err(io(path))
            }
        }
    }
}

/// Replaces a file through a temporary file and rename, so a crash leaves
/// the old or the new content, never half of it (an fstab cut short would
/// stop the guest from booting); owner and mode are kept.
fn write_replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(parent)?;
    let old = std::fs::metadata(path).ok();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{name}.p2xen-tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        match &old {
            Some(m) => {
                f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
                std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
                copy_selinux_label(path, &f);
            }
            None => f.set_permissions(std::fs::Permissions::from_mode(0o644))?,
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A copy with the original's mode, owner and label, complete or absent
/// (through a temporary file, like [`write_replace`]).
fn copy_keeping_mode(from: &Path, to: &Path) -> std::io::Result<()> {
    let data = std::fs::read(from)?;
    // write_replace keeps the metadata of the file it replaces; here the
    // target is new, so take them from the original afterwards.
    write_replace(to, &data)?;
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(from)?;
    std::fs::set_permissions(to, m.permissions())?;
    std::os::unix::fs::chown(to, Some(m.uid()), Some(m.gid()))
}

/// Keeps an SELinux guest's label on a replaced file: an unlabelled
/// /etc/fstab is unreadable to confined services under enforcing mode.
fn copy_selinux_label(from: &Path, to: &std::fs::File) {
    const NAME: &str = "security.selinux";
    let mut buf = [0u8; 256];
    let Ok(n) = rustix::fs::getxattr(from, NAME, &mut buf[..]) else {
        return;
    };
    if let Some(label) = buf.get(..n) {
        if let Err(e) = rustix::fs::fsetxattr(to, NAME, label, rustix::fs::XattrFlags::empty()) {
            log::warn!("{}: SELinux label not kept: {e}", from.display());
        }
    }
}

/// A `Write` change if `new` differs from `old`, else nothing.
pub fn edit(
    kind: FixupKind,
    path: &str,
    old: &str,
    new: String,
    note: impl Into<String>,
) -> Option<Planned> {
    (old != new).then(|| {
        Planned::new(
            kind,
            Change::Write {
                path: path.to_string(),
                old: Some(old.to_string()),
                new,
            },
            note,
        )
    })
}

/// Maps each line of `text` through `f`, keeping line endings and a missing
/// final newline as they were.
pub fn map_lines(text: &str, mut f: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&f(body));
        out.push_str(nl);
    }
    out
}

/// Appends a line, adding the newline the file may lack at its end.
pub fn append_line(text: &str, line: &str) -> String {
    let mut s = text.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(line);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_headers_and_hunks() {
        let d = unified_diff("/etc/fstab", "a\nb\n", "a\nc\n");
        assert_eq!(
            d,
            "--- a/etc/fstab\n+++ b/etc/fstab\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        );
    }

    #[test]
    fn replace_keeps_mode() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("shadow");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_replace(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let label = b"system_u:object_r:etc_t:s0\0";
        rustix::fs::setxattr(
            &p,
            "security.selinux",
            label,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        write_replace(&p, b"newer").unwrap();
        let mut buf = [0u8; 64];
        let n = rustix::fs::getxattr(&p, "security.selinux", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], label);
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "temporary file left"
        );
        let q = t.path().join("sub/new.cfg");
        write_replace(&q, b"x").unwrap();
        assert_eq!(
            std::fs::metadata(&q).unwrap().permissions().mode() & 0o7777,
            0o644
        );
    }

    #[test]
    fn map_lines_keeps_missing_final_newline() {
        assert_eq!(map_lines("a\nb", |l| l.to_uppercase()), "A\nB");
        assert_eq!(append_line("x", "y"), "x\ny\n");
    }
}
