//! Helpers for the used-map tests (xfs, btrfs, vfat): skipping when the
//! filesystem's tools are missing, loop mounts that clean up, copies made
//! from a map alone, and real images with bytes changed for proptests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use p2xen::source::device::{Device, DeviceError, ReadAt};
use p2xen::source::extent::ExtentList;
use p2xen::source::filesystems::{probe, used_extents};
use tempfile::TempDir;

use super::fixtures::tool_stdout;

fn on_path(tool: &str) -> bool {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.iter()
        .map(PathBuf::as_path)
        .chain([Path::new("/usr/sbin"), Path::new("/sbin")])
        .any(|d| d.join(tool).is_file())
}

/// True (after saying why) when one of `tools` (tool, Debian package) is
/// not installed.
pub fn missing_tool(tools: &[(&str, &str)]) -> bool {
    match tools.iter().find(|(t, _)| !on_path(t)) {
        Some((t, pkg)) => {
            eprintln!("skipping: {t} not found (install the Debian package {pkg})");
            true
        }
        None => false,
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A loop mount, unmounted on drop (also when the test fails).
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn new(img: &Path, dir: &TempDir, opts: &str) -> Mount {
        let mnt = dir.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        tool_stdout(
            "mount",
            "mount",
            &["-o", &format!("loop,{opts}"), path_str(img), path_str(&mnt)],
        );
        Mount(mnt)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `len` bytes that differ with `seed` and do not compress to nothing.
pub fn content(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i ^ seed).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

pub fn hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// A zero-filled image of the same size with only `used` copied over.
pub fn copy_from_map(src: &Path, dst: &Path, used: &ExtentList) {
    let from = fs::File::open(src).unwrap();
    let to = fs::File::create(dst).unwrap();
    to.set_len(from.metadata().unwrap().len()).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for e in used.as_slice() {
        let mut done = 0;
        while done < e.len {
            let n = (e.len - done).min(buf.len() as u64) as usize;
            from.read_exact_at(&mut buf[..n], e.offset + done).unwrap();
            to.write_all_at(&buf[..n], e.offset + done).unwrap();
            done += n as u64;
        }
    }
}

/// A real image with some bytes changed, without copying it per case.
pub struct Mutated<'a> {
    pub base: &'a [u8],
    pub muts: BTreeMap<u64, u8>,
}

impl ReadAt for Mutated<'_> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.base.len() as u64)
            .ok_or_else(|| DeviceError::OutOfRange {
                path: self.name().to_path_buf(),
                offset,
                len: buf.len(),
                size: self.size(),
            })?;
        buf.copy_from_slice(&self.base[offset as usize..end as usize]);
        for (&at, &v) in self.muts.range(offset..end) {
            buf[(at - offset) as usize] = v;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.base.len() as u64
    }

    fn name(&self) -> &Path {
        Path::new("<mutated image>")
    }
}

/// Whatever `disk` holds, probing and mapping it must not panic, and a
/// probe's `used_bytes` must be the map's total (None when it is refused).
pub fn assert_used_bytes_match_map(disk: &dyn ReadAt) {
    if let Ok(Some(fs)) = probe(disk) {
        let map = used_extents(disk, &fs);
        assert_eq!(fs.used_bytes, map.ok().flatten().map(|u| u.total_bytes()));
    }
}

/// Runs a read-only checker (`xfs_repair -n`, `btrfs check --readonly`)
/// on an image; fails the test with its output unless it exits 0.
pub fn assert_checker_clean(tool: &str, args: &[&str], img: &Path) -> String {
    let out = Command::new(tool).args(args).arg(img).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} on {}: {stdout}\n{}",
        img.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The send layout of `disk` copies its one filesystem, `kind` at
/// `(start, len)`, whole and notes that its map is unreadable because of
/// something containing `why`.
pub fn assert_copied_whole(disk: &Path, (start, len): (u64, u64), kind: &str, why: &str) {
    let (layout, report) = p2xen::send::layout::describe(&Device::open(disk).unwrap());
    assert_eq!(layout.regions.len(), 1, "{layout:?} {report:?}");
    assert_eq!(
        (layout.regions[0].start, layout.regions[0].len),
        (start, len)
    );
    assert!(layout.regions[0].used.is_none(), "copied whole");
    let note = layout.notes.join("\n");
    assert!(
        note.contains(&format!("{kind}: used-block map unreadable (")) && note.contains(why),
        "{note}"
    );
}
