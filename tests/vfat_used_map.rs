//! FAT used maps against dosfstools and mtools (this kernel has no vfat
//! module, so mtools writes the files): FAT12, FAT16 and FAT32 images from
//! mkfs.vfat, filled with mcopy and some files deleted again with mdel;
//! the map must hold exactly the clusters `fsck.vfat -n -v` counts as
//! used plus the metadata before cluster 2, and a copy of only the mapped
//! bytes must pass `fsck.vfat -n` and hold the same files.
//!
//! Skipped, with the reason printed, only when dosfstools or mtools is
//! missing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::fixtures::{dd_into, patch, resize, run_output, sfdisk, sparse_image};
use common::used_map::{
    Mutated, assert_copied_whole, assert_used_bytes_match_map, content, copy_from_map, hash,
    missing_tool, path_str,
};
use p2xen::source::device::Device;
use p2xen::source::filesystems::vfat::VfatError;
use p2xen::source::filesystems::{FsKind, ProbeError, probe, used_extents};
use proptest::prelude::*;
use tempfile::TempDir;

const TOOLS: &[(&str, &str)] = &[
    ("mkfs.vfat", "dosfstools"),
    ("fsck.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("mdel", "mtools"),
    ("mtype", "mtools"),
    ("sfdisk", "fdisk"),
];

fn skip() -> bool {
    missing_tool(TOOLS)
}

/// An mtools command on `img`; the geometry check is skipped because
/// mkfs.vfat's images of odd sizes fail it without being wrong.
fn mtool(tool: &str, img: &Path, args: &[&str]) -> Vec<u8> {
    run_output(
        Command::new(tool)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(img)
            .args(args),
    )
    .stdout
}

/// mkfs.vfat on a new image of `kib` KiB.
fn mkfs(img: &Path, kib: u64, args: &[&str]) {
    run_output(
        Command::new("mkfs.vfat")
            .arg("-C")
            .args(args)
            .arg(img)
            .arg(kib.to_string()),
    );
}

/// An ESP-like tree (`EFI/BOOT`, `EFI/debian`, `DATA`) of `files` files
/// per directory, 1 byte to ~60 KiB, every third one deleted again so
/// free clusters sit between used ones. Returns the survivors' hashes by
/// mtools path.
fn fill(dir: &Path, img: &Path, files: usize) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for d in ["::/EFI", "::/EFI/BOOT", "::/EFI/debian", "::/DATA"] {
        mtool("mmd", img, &[d]);
    }
    let local = dir.join("f");
    for (i, d) in ["::/EFI/BOOT", "::/EFI/debian", "::/DATA"]
        .iter()
        .enumerate()
    {
        for f in 0..files {
            let data = content(i * 1000 + f, 1 + (f * 4099) % 60_000);
            fs::write(&local, &data).unwrap();
            let name = format!("{d}/F{f}.BIN");
            mtool("mcopy", img, &[path_str(&local), &name]);
            kept.insert(name, hash(&data));
        }
    }
    let doomed: Vec<String> = kept.keys().step_by(3).cloned().collect();
    for name in doomed {
        mtool("mdel", img, &[&name]);
        kept.remove(&name);
    }
    kept
}

fn hashes(img: &Path, names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    names
        .keys()
        .map(|n| {
            (
                n.clone(),
                hash(&mtool("mtype", img, &["-i", path_str(img), n][2..])),
            )
        })
        .collect()
}

/// `fsck.vfat -n -v`: fails the test unless clean; returns (used, total)
/// clusters from its last line, "img: 12 files, 34/4000 clusters".
fn fsck_clusters(img: &Path) -> (u64, u64) {
    let out = Command::new("fsck.vfat")
        .args(["-n", "-v", path_str(img)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fsck.vfat -n: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    let counts = last
        .rsplit_once(", ")
        .and_then(|(_, c)| c.strip_suffix(" clusters"))
        .and_then(|c| c.split_once('/'))
        .unwrap_or_else(|| panic!("fsck.vfat's summary: {text}"));
    (counts.0.parse().unwrap(), counts.1.parse().unwrap())
}

/// Cluster size and first data byte, from the boot sector.
fn geometry(img: &Path) -> (u64, u64) {
    let b = fs::read(img).unwrap();
    let le16 = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let le32 = |o: usize| u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]));
    let sector = le16(11);
    let fat = if le16(22) != 0 { le16(22) } else { le32(36) };
    let root = (le16(17) * 32).div_ceil(sector);
    let data = (le16(14) + u64::from(b[16]) * fat + root) * sector;
    (u64::from(b[13]) * sector, data)
}

/// Each FAT width, filled and fragmented: the map is the metadata plus
/// exactly the clusters fsck.vfat counts, smaller than the image, and the
/// copy made from it alone is clean and holds the same files.
#[test]
fn fat12_16_32_match_fsck_and_copy() {
    if skip() {
        return;
    }
    let cases: &[(&str, u64, &[&str])] = &[
        ("FAT12", 4096, &["-F", "12", "-n", "SMALL"]),
        ("FAT16", 65536, &["-F", "16", "-n", "ESP16"]),
        ("FAT32", 300 * 1024, &["-F", "32", "-n", "ESP"]),
    ];
    for &(want, kib, args) in cases {
        let dir = TempDir::new().unwrap();
        let img = dir.path().join("v.img");
        mkfs(&img, kib, args);
        let kept = fill(dir.path(), &img, if want == "FAT12" { 15 } else { 40 });
        let dev = Device::open(&img).unwrap();
        let fs = probe(&dev).unwrap().unwrap();
        assert_eq!(fs.kind, FsKind::Vfat);
        assert_eq!(fs.details.fat_type.as_deref(), Some(want));
        let used = used_extents(&dev, &fs).unwrap().unwrap();
        assert_eq!(fs.used_bytes, Some(used.total_bytes()));

        let (used_clusters, clusters) = fsck_clusters(&img);
        let (cluster, data) = geometry(&img);
        assert_eq!(
            used.total_bytes(),
            data + used_clusters * cluster,
            "{want}: metadata + fsck's used clusters"
        );
        let size = kib * 1024;
        eprintln!(
            "{want}: {} of {clusters} clusters used (fsck.vfat agrees), map {} KiB in {} extents, image {} KiB",
            used_clusters,
            used.total_bytes() >> 10,
            used.as_slice().len(),
            size >> 10
        );
        assert!(used.total_bytes() < size, "{want}: smaller than the image");
        assert!(
            used.as_slice().len() > 1,
            "{want}: the deletions left holes"
        );

        let copy = dir.path().join("copy.img");
        copy_from_map(&img, &copy, &used);
        assert_eq!(fsck_clusters(&copy), (used_clusters, clusters));
        assert_eq!(hashes(&copy, &kept), kept, "{want}");
    }
}

/// A real FAT16 image with a few files.
fn real() -> Option<&'static Vec<u8>> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| {
        if skip() {
            return None;
        }
        let dir = TempDir::new().unwrap();
        let img = dir.path().join("r.img");
        mkfs(&img, 16384, &["-F", "16"]);
        fill(dir.path(), &img, 4);
        Some(fs::read(&img).unwrap())
    })
    .as_ref()
}

fn vfat_error(e: ProbeError) -> VfatError {
    match e {
        ProbeError::Vfat { source, .. } => source,
        other => panic!("not a vfat error: {other}"),
    }
}

/// A truncated image, a FAT too small for the clusters and a boot sector
/// without its signature: typed errors, and the layout copies whole.
#[test]
fn damaged_images_are_refused_by_name() {
    let Some(bytes) = real() else { return };
    let dir = TempDir::new().unwrap();
    let img = dir.path().join("t.img");
    fs::write(&img, bytes).unwrap();
    resize(&img, 8 << 20);
    let dev = Device::open(&img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    assert_eq!(fs.used_bytes, None);
    let e = vfat_error(used_extents(&dev, &fs).unwrap_err());
    eprintln!("truncated: {e}");
    assert!(
        matches!(e, VfatError::BeyondDevice { total_sectors: 32768, sector: 512, device_size } if device_size == 8 << 20),
        "{e}"
    );
    drop(dev);

    // The same cut as a partition too small for its filesystem: the send
    // layout copies the partition whole and says why.
    let disk = dir.path().join("disk.img");
    sparse_image(&disk, 10 << 20);
    sfdisk(&disk, "label: dos\nstart=2048, size=16384, type=ef\n");
    dd_into(&disk, 1 << 20, &img);
    assert_copied_whole(&disk, (1 << 20, 8 << 20), "vfat", "do not fit");

    fs::write(&img, bytes).unwrap();
    patch(&img, 22, &2u16.to_le_bytes()); // sectors per FAT
    let dev = Device::open(&img).unwrap();
    let fs = probe(&dev).unwrap().unwrap();
    let e = vfat_error(used_extents(&dev, &fs).unwrap_err());
    eprintln!("FAT too small: {e}");
    assert!(
        matches!(
            e,
            VfatError::FatTooSmall {
                fat: 0,
                fat_bytes: 1024,
                ..
            }
        ),
        "{e}"
    );

    patch(&img, 510, &[0, 0]);
    let dev = Device::open(&img).unwrap();
    assert!(probe(&dev).unwrap().is_none());
    let e = vfat_error(used_extents(&dev, &fs).unwrap_err());
    assert!(matches!(e, VfatError::NoBootSector), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Changing bytes of a real image's boot sector and FAT never panics,
    /// and probe's used_bytes always agrees with the map.
    #[test]
    fn mutated_real_image_never_panics(
        muts in proptest::collection::vec((0u64..8192, any::<u8>()), 1..12)
    ) {
        let Some(base) = real() else { return Ok(()) };
        assert_used_bytes_match_map(&Mutated { base, muts: muts.into_iter().collect() });
    }
}
