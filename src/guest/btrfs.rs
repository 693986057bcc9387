//! Which subvolume of a Btrfs copy is the guest's root.
//!
//! Ubuntu, Fedora and SUSE install root in a subvolume (`@`, `root`, a
//! snapper snapshot) and keep other subvolumes (`@home`) beside it; the top
//! level usually holds nothing but those. Mounting the top level would show
//! the conversion no /etc at all, or (worse) a stale tree left there, and
//! its edits would miss the files the guest boots with. The guest's own
//! fstab says which subvolume it mounts as `/`; that is what we mount.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::guestfs::{GuestFs, GuestFsError, gjoin};

/// The inode number of every subvolume's root directory
/// (BTRFS_FIRST_FREE_OBJECTID): how a subvolume is told from a directory.
const SUBVOL_ROOT_INO: u64 = 256;

/// A subvolume as fstab names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subvol {
    /// `subvol=PATH`, relative to the top level.
    Path(String),
    /// `subvolid=N`.
    Id(u64),
}

impl Subvol {
    /// The `mount -o` option selecting it (also the kernel's `rootflags=`).
    pub fn mount_option(&self) -> String {
        match self {
            Subvol::Path(p) => format!("subvol={p}"),
            Subvol::Id(id) => format!("subvolid={id}"),
        }
    }
}

/// `subvol=`/`subvolid=` of a mount option list; `subvol=` wins when both
/// are given (the kernel checks they agree, we only need one). The path is
/// taken relative to the top level whether it is written `@` or `/@`.
pub fn subvol_option(options: &str) -> Option<Subvol> {
    let mut id = None;
    for opt in options.split(',') {
        if let Some(p) = opt.strip_prefix("subvol=") {
            let p = p.trim_matches('/');
            // `subvol=/` is the top level: no subvolume to select.
            return (!p.is_empty()).then(|| Subvol::Path(p.to_string()));
        }
        if let Some(n) = opt.strip_prefix("subvolid=") {
            id = n.parse().ok().filter(|&n| n != 5).map(Subvol::Id);
        }
    }
    id
}

/// The subvolume the `/` entry of an fstab text mounts, if it names one.
pub fn fstab_root_subvol(fstab: &str) -> Option<Subvol> {
    fstab.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            [spec, "/", "btrfs", opts, ..] if !spec.starts_with('#') => subvol_option(opts),
            _ => None,
        }
    })
}

/// The root subvolume of a Btrfs whose top level (subvolid 5) is mounted at
/// `top`; `None` means mount the default subvolume (SUSE sets it to the
/// booted snapshot and its fstab names no subvolume for `/`).
///
/// In order: a top-level subvolume whose own fstab mounts it as `/` (`@`
/// with `subvol=@`; a snapshot's fstab names its origin, so it does not
/// qualify); then a subvolume any fstab found there names for `/` that
/// holds an /etc/fstab (or a `subvolid=` the top level's fstab names).
pub fn root_subvol(top: &Path) -> Result<Option<Subvol>, GuestFsError> {
    let gfs = GuestFs::new(top);
    let mut fstabs: Vec<(Option<String>, String)> = Vec::new();
    if let Some(t) = gfs.read("/etc/fstab")? {
        fstabs.push((None, t));
    }
    for name in gfs.list("/")? {
        let path = top.join(&name);
        let is_subvol = std::fs::symlink_metadata(&path)
            .map(|m| m.is_dir() && m.ino() == SUBVOL_ROOT_INO)
            .unwrap_or(false);
        if !is_subvol {
            continue;
        }
        // Its own root: the subvolume's absolute symlinks point inside it.
        if let Some(t) = GuestFs::new(&path).read("/etc/fstab")? {
            fstabs.push((Some(name), t));
        }
    }
    let named: Vec<(Option<&str>, Subvol)> = fstabs
        .iter()
        .filter_map(|(dir, text)| Some((dir.as_deref(), fstab_root_subvol(text)?)))
        .collect();
    if let Some((_, s)) = named
        .iter()
        .find(|(dir, s)| dir.is_some() && matches!(s, Subvol::Path(p) if Some(p.as_str()) == *dir))
    {
        return Ok(Some(s.clone()));
    }
    Ok(named
        .into_iter()
        .find(|(dir, s)| match s {
            Subvol::Path(p) => gfs
                .resolve(&gjoin("/", p))
                .is_ok_and(|d| GuestFs::new(&d).exists("/etc/fstab")),
            Subvol::Id(_) => dir.is_none(),
        })
        .map(|(_, s)| s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subvol_options() {
        assert_eq!(
            subvol_option("defaults,subvol=@,compress=zstd"),
            Some(Subvol::Path("@".into()))
        );
        assert_eq!(
            subvol_option("subvol=/@home"),
            Some(Subvol::Path("@home".into()))
        );
        assert_eq!(
            subvol_option("subvolid=256,subvol=/root/"),
            Some(Subvol::Path("root".into()))
        );
        assert_eq!(subvol_option("subvolid=257"), Some(Subvol::Id(257)));
        assert_eq!(subvol_option("subvolid=5"), None);
        assert_eq!(subvol_option("subvol=/"), None);
        assert_eq!(subvol_option("subvolid=x"), None);
        assert_eq!(subvol_option("defaults"), None);
        assert_eq!(Subvol::Path("@".into()).mount_option(), "subvol=@");
        assert_eq!(Subvol::Id(260).mount_option(), "subvolid=260");
    }

    #[test]
    fn root_entry_of_an_fstab() {
        let fstab = "# UUID=x / btrfs subvol=@old 0 0\n\
                     UUID=x /home btrfs subvol=@home 0 0\n\
                     UUID=x /     btrfs defaults,subvol=@ 0 0\n";
        assert_eq!(fstab_root_subvol(fstab), Some(Subvol::Path("@".into())));
        assert_eq!(fstab_root_subvol("UUID=x / btrfs defaults 0 0\n"), None);
        assert_eq!(fstab_root_subvol("UUID=x / ext4 subvol=@ 0 0\n"), None);
        assert_eq!(fstab_root_subvol("UUID=x /\n"), None);
    }

    /// Directories stand in for subvolumes here (their inode is not 256),
    /// so only the fstab-named route applies; tests/guest.rs mounts a real
    /// Btrfs for the rest.
    #[test]
    fn plain_directories_named_by_the_top_level_fstab() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::fs::create_dir_all(t.join("sys/root/etc")).unwrap();
        std::fs::write(
            t.join("sys/root/etc/fstab"),
            "x / btrfs subvol=sys/root 0 0\n",
        )
        .unwrap();
        std::fs::write(t.join("etc/fstab"), "x / btrfs subvol=/missing 0 0\n").unwrap();
        assert_eq!(root_subvol(t).unwrap(), None, "names no existing tree");
        std::fs::write(t.join("etc/fstab"), "x / btrfs subvol=/sys/root 0 0\n").unwrap();
        assert_eq!(
            root_subvol(t).unwrap(),
            Some(Subvol::Path("sys/root".into()))
        );
        std::fs::write(t.join("etc/fstab"), "x / btrfs subvolid=300 0 0\n").unwrap();
        assert_eq!(root_subvol(t).unwrap(), Some(Subvol::Id(300)));
        std::fs::write(t.join("etc/fstab"), "x / btrfs defaults 0 0\n").unwrap();
        assert_eq!(root_subvol(t).unwrap(), None);
    }
}
