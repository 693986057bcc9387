//! `p2xen inspect`: what each source disk holds, as a report for people
//! (a table per disk) and for programs (the JSON contract documented in
//! docs/inspect-json.md).
//!
//! Inspection never stops at the first problem: every unreadable or
//! implausible thing becomes a message in `errors` of the disk or partition
//! it belongs to, and the rest is still inspected.

use crate::source::controllers::Controller;
use crate::source::device::{Device, DeviceError, ReadAt, Window};
use crate::source::filesystems::{self, Filesystem};
use crate::source::os::{self, BootFiles};
use crate::source::partitions::{self, Partition, PartitionError, TableKind};
use crate::source::sysfs::{self, DiskAttrs, SysfsError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::source::os::{FstabEntry, OsInfo};

/// Arguments of `p2xen inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// Print the JSON report ({"disks": [...]}, see docs/inspect-json.md).
    #[arg(long)]
    pub json: bool,
    /// Block devices or image files to inspect (default: every fixed disk
    /// in /sys/block). Everything is opened read-only.
    #[arg(value_name = "DEVICE_OR_IMAGE")]
    pub devices: Vec<PathBuf>,
}

/// Top level of `inspect --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspection {
    pub disks: Vec<DiskReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskReport {
    pub path: String,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub rotational: Option<bool>,
    pub removable: Option<bool>,
    pub transport: Option<String>,
    /// The PCI host adapter the disk hangs off.
    #[serde(default)]
    pub controller: Option<Controller>,
    /// "mbr", "gpt" or "none".
    pub table: String,
    /// MBR disk signature ("0x1234abcd") or GPT disk GUID.
    #[serde(default)]
    pub disk_id: Option<String>,
    /// GPT disks: "protective", "hybrid" or "missing".
    #[serde(default)]
    pub pmbr: Option<String>,
    /// Boot code found in the MBR and where its next stage is.
    #[serde(default)]
    pub boot_code: Option<String>,
    #[serde(default)]
    pub partitions: Vec<PartitionReport>,
    /// Table "none": the filesystem on the whole disk.
    pub filesystem: Option<Filesystem>,
    /// Table "none": the OS on the whole-disk filesystem.
    pub os: Option<OsInfo>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionReport {
    pub number: u32,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// MBR: hex id as sfdisk prints it ("83"); GPT: type GUID, upper case.
    pub type_id: String,
    pub type_name: String,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique partition GUID.
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    pub bootable: bool,
    pub logical: bool,
    /// MBR extended partition (a container; never has a filesystem).
    #[serde(default)]
    pub extended: bool,
    pub filesystem: Option<Filesystem>,
    pub os: Option<OsInfo>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub errors: Vec<String>,
}

impl DiskReport {
    /// True when nothing on the disk was unreadable or inconsistent.
    pub fn all_readable(&self) -> bool {
        self.errors.is_empty() && self.partitions.iter().all(|p| p.errors.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("cannot write the report to stdout: {0}")]
    Output(#[from] std::io::Error),
    #[error("cannot serialise the report: {0}")]
    Json(#[from] serde_json::Error),
}

const SYSFS: &str = "/sys";

/// Device paths of the fixed disks in /sys/block (no loop, ram, zram, sr,
/// fd, dm-, md, nbd, nor empty devices).
pub fn list_fixed_disks() -> Result<Vec<PathBuf>, InspectError> {
    Ok(sysfs::list_disks(Path::new(SYSFS))?
        .into_iter()
        // sysfs spells '/' in device names as '!' (cciss!c0d0).
        .map(|d| PathBuf::from("/dev").join(d.name.replace('!', "/")))
        .collect())
}

/// Opens `path` read-only (block device or image file) and inspects it.
/// `Err` only when it cannot be opened; everything after that ends up in
/// the report.
pub fn inspect_disk(path: &Path) -> Result<DiskReport, InspectError> {
    let dev = Device::open(path)?;
    let attrs = if dev.is_block_device() {
        use std::os::unix::fs::MetadataExt;
        dev.file().metadata().ok().and_then(|m| {
            let rdev = m.rdev();
            sysfs::attrs_for_devnum(
                Path::new(SYSFS),
                nix::sys::stat::major(rdev),
                nix::sys::stat::minor(rdev),
            )
        })
    } else {
        None
    };
    Ok(inspect_source(Arc::new(dev), attrs.as_ref()))
}

/// Inspects any source (a device, an image, memory in tests).
pub fn inspect_source(disk: Arc<dyn ReadAt>, attrs: Option<&DiskAttrs>) -> DiskReport {
    let logical = attrs.and_then(|a| a.logical_sector_size).unwrap_or(512);
    let mut report = DiskReport {
        path: disk.name().to_string_lossy().into_owned(),
        size_bytes: disk.size(),
        logical_sector_size: logical,
        physical_sector_size: attrs
            .and_then(|a| a.physical_sector_size)
            .unwrap_or(logical),
        model: attrs.and_then(|a| a.model.clone()),
        serial: attrs.and_then(|a| a.serial.clone()),
        rotational: attrs.and_then(|a| a.rotational),
        removable: attrs.and_then(|a| a.removable),
        transport: attrs.and_then(|a| a.transport.clone()),
        controller: attrs.and_then(|a| a.controller.clone()),
        table: TableKind::None.as_str().to_string(),
        ..DiskReport::default()
    };
    let mut table = match partitions::read_table(disk.as_ref(), logical) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    // An image file has no sysfs sector size; one taken from a 4Kn disk
    // carries its GPT at byte 4096, not 512.
    // Its protective MBR looks the same at either size, so retry whenever
    // 512 found no partitions.
    if attrs.is_none() && table.kind != TableKind::Mbr && table.partitions.is_empty() {
        if let Ok(t) = partitions::read_table(disk.as_ref(), 4096) {
            if t.kind == TableKind::Gpt && !t.partitions.is_empty() {
                report.logical_sector_size = 4096;
                report.physical_sector_size = 4096;
                table = t;
            }
        }
    }
    report.table = table.kind.as_str().to_string();
    report.disk_id = table.disk_id.clone();
    report.pmbr = table.pmbr.map(|k| k.as_str().to_string());
    report.boot_code = table.boot_code.as_ref().map(|b| b.description.clone());
    report.warnings.extend(table.warnings.iter().cloned());

    // Table problems come first on the partition they concern (they are
    // usually the cause of whatever the filesystem probe says next); a
    // problem that concerns both partitions of an overlap goes on both.
    let targeted: Vec<(Vec<u32>, &PartitionError)> = table
        .errors
        .iter()
        .map(|e| match e {
            PartitionError::Overlap { a, b, .. } => (vec![*a, *b], e),
            other => (other.partition().into_iter().collect(), e),
        })
        .collect();
    let mut boot_parts: Vec<(u32, BootFiles)> = Vec::new();
    for p in &table.partitions {
        let first: Vec<String> = targeted
            .iter()
            .filter(|(t, _)| t.contains(&p.number))
            .map(|(_, e)| e.to_string())
            .collect();
        let mut pr = inspect_partition(&disk, p, &mut boot_parts);
        pr.errors.splice(0..0, first);
        report.partitions.push(pr);
    }
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    let mut disk_errors: Vec<&PartitionError> = targeted
        .iter()
        .filter(|(t, _)| !t.iter().any(|n| numbers.contains(n)))
        .map(|(_, e)| *e)
        .collect();

    if table.kind == TableKind::None {
        let whole = Window::new(disk.as_ref(), 0, disk.size());
        match filesystems::probe(&whole) {
            Ok(fs) => report.filesystem = fs,
            Err(e) => report.errors.push(format!("whole disk: {e}")),
        }
        // A whole-disk filesystem's boot sector (FAT, NTFS) carries 0x55AA
        // but no partition table; it is not a garbage MBR then.
        if report.filesystem.is_some() {
            disk_errors.retain(|e| !matches!(e, PartitionError::MbrInvalid { .. }));
        }
        if report.filesystem.as_ref().is_none_or(|f| f.kind.is_ext()) {
            match os::scan(disk.clone(), 0, disk.size()) {
                Ok(Some(scan)) => {
                    report.os = scan.os;
                    report.warnings.extend(scan.warnings);
                }
                Ok(None) => {}
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    report
        .errors
        .splice(0..0, disk_errors.iter().map(|e| e.to_string()));

    // A separate /boot: its kernels belong to the OS whose /boot is empty.
    if let Some((number, boot)) = boot_parts.first() {
        for pr in report.partitions.iter_mut() {
            if let Some(os) = pr.os.as_mut().filter(|o| o.kernels.is_empty()) {
                os::merge_boot(os, boot);
                log::debug!(
                    "{}: kernels of partition {} merged from /boot partition {number}",
                    report.path,
                    pr.number
                );
            }
        }
    }
    report
}

fn inspect_partition(
    disk: &Arc<dyn ReadAt>,
    p: &Partition,
    boot_parts: &mut Vec<(u32, BootFiles)>,
) -> PartitionReport {
    let mut pr = PartitionReport {
        number: p.number,
        start_bytes: p.start_bytes,
        size_bytes: p.size_bytes,
        type_id: p.type_id.clone(),
        type_name: p.type_name.clone(),
        name: p.name.clone(),
        uuid: p.uuid.clone(),
        flags: p.flags.clone(),
        bootable: p.bootable,
        logical: p.logical,
        extended: p.extended,
        ..PartitionReport::default()
    };
    if p.extended {
        return pr;
    }
    let window = Window::new(disk.as_ref(), p.start_bytes, p.size_bytes);
    match filesystems::probe(&window) {
        Ok(fs) => pr.filesystem = fs,
        Err(e) => pr.errors.push(format!("partition {}: {e}", p.number)),
    }
    if pr.filesystem.as_ref().is_none_or(|f| f.kind.is_ext()) {
        match os::scan(disk.clone(), p.start_bytes, window.size()) {
            Ok(Some(scan)) => {
                pr.os = scan.os;
                pr.warnings.extend(scan.warnings);
                if let Some(b) = scan.boot {
                    boot_parts.push((p.number, b));
                }
            }
            Ok(None) => {}
            Err(e) => pr.errors.push(format!("partition {}: {e}", p.number)),
        }
    }
    pr
}

/// Runs `p2xen inspect`: prints the report to stdout. Returns whether every
/// disk was completely readable (the binary exits 0 then, 1 otherwise).
pub fn run(args: &InspectArgs) -> Result<bool, InspectError> {
    let paths = if args.devices.is_empty() {
        list_fixed_disks()?
    } else {
        args.devices.clone()
    };
    let mut disks = Vec::new();
    for path in &paths {
        match inspect_disk(path) {
            Ok(r) => disks.push(r),
            Err(e) => disks.push(DiskReport {
                path: path.to_string_lossy().into_owned(),
                table: TableKind::None.as_str().to_string(),
                errors: vec![e.to_string()],
                ..DiskReport::default()
            }),
        }
    }
    let ok = disks.iter().all(DiskReport::all_readable);
    let inspection = Inspection { disks };
    let mut out = std::io::stdout().lock();
    if args.json {
        for d in &inspection.disks {
            for e in d
                .errors
                .iter()
                .chain(d.partitions.iter().flat_map(|p| &p.errors))
            {
                log::error!("{e}");
            }
        }
        serde_json::to_writer_pretty(&mut out, &inspection)?;
        writeln!(out)?;
    } else {
        if inspection.disks.is_empty() {
            writeln!(out, "no disks found")?;
        }
        for d in &inspection.disks {
            write_text(&mut out, d)?;
        }
    }
    Ok(ok)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

fn fs_cells(fs: Option<&Filesystem>) -> (String, String) {
    match fs {
        Some(f) => (
            // The serialised name is the contract ("ext4", "lvm2_pv").
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)))
                .unwrap_or_default(),
            f.label.clone().unwrap_or_default(),
        ),
        None => ("-".to_string(), String::new()),
    }
}

fn write_os(out: &mut dyn Write, os: &OsInfo, indent: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "{indent}OS: {}  hostname: {}  init: {}",
        os.pretty_name.as_deref().unwrap_or("unknown"),
        os.hostname.as_deref().unwrap_or("-"),
        os.init_system.as_deref().unwrap_or("-")
    )?;
    if !os.kernels.is_empty() {
        writeln!(out, "{indent}  kernels: {}", os.kernels.join(", "))?;
    }
    if !os.initrds.is_empty() {
        writeln!(out, "{indent}  initrds: {}", os.initrds.join(", "))?;
    }
    if !os.bootloader_configs.is_empty() {
        writeln!(
            out,
            "{indent}  bootloader: {}",
            os.bootloader_configs.join(", ")
        )?;
    }
    for e in &os.fstab {
        writeln!(
            out,
            "{indent}  fstab: {} {} {} {} {} {}",
            e.spec, e.file, e.vfstype, e.options, e.freq, e.passno
        )?;
    }
    Ok(())
}

fn write_text(out: &mut dyn Write, d: &DiskReport) -> std::io::Result<()> {
    if d.size_bytes == 0 && !d.errors.is_empty() {
        writeln!(out, "{}:", d.path)?;
        for e in &d.errors {
            writeln!(out, "  ERROR: {e}")?;
        }
        return writeln!(out);
    }
    writeln!(
        out,
        "{}: {} ({} bytes), sectors {}/{} bytes, table {}{}",
        d.path,
        human(d.size_bytes),
        d.size_bytes,
        d.logical_sector_size,
        d.physical_sector_size,
        d.table,
        d.pmbr
            .as_deref()
            .map(|k| format!(" ({k} MBR)"))
            .unwrap_or_default()
    )?;
    if d.model.is_some() || d.serial.is_some() || d.transport.is_some() {
        writeln!(
            out,
            "  model: {}  serial: {}  transport: {}  rotational: {}  removable: {}",
            d.model.as_deref().unwrap_or("-"),
            d.serial.as_deref().unwrap_or("-"),
            d.transport.as_deref().unwrap_or("-"),
            yes_no(d.rotational),
            yes_no(d.removable)
        )?;
    }
    if let Some(c) = &d.controller {
        writeln!(out, "  controller: {}", c.summary())?;
    }
    if let Some(b) = &d.boot_code {
        writeln!(out, "  boot: {b}")?;
    }
    if !d.partitions.is_empty() {
        writeln!(
            out,
            "  {:>3}  {:>14}  {:>10}  {:<28}  {:<17}  {:<16}  NAME / FLAGS",
            "#", "START", "SIZE", "TYPE", "FILESYSTEM", "LABEL"
        )?;
    }
    for p in &d.partitions {
        let (fs, label) = fs_cells(p.filesystem.as_ref());
        let mut extra: Vec<String> = p.name.iter().cloned().collect();
        extra.extend(p.flags.iter().cloned());
        if p.logical {
            extra.push("logical".to_string());
        }
        writeln!(
            out,
            "  {:>3}  {:>14}  {:>10}  {:<28}  {:<17}  {:<16}  {}",
            p.number,
            p.start_bytes,
            human(p.size_bytes),
            format!("{} {}", p.type_id, p.type_name),
            fs,
            label,
            extra.join(" ")
        )?;
        write_lvs(out, p.filesystem.as_ref(), "       ")?;
        write_findings(out, p.os.as_ref(), &p.warnings, &p.errors, "       ")?;
    }
    if d.table == "none" {
        match d.filesystem.as_ref() {
            Some(f) => {
                let (fs, label) = fs_cells(Some(f));
                writeln!(out, "  whole-disk filesystem: {fs} {label}")?;
                write_lvs(out, Some(f), "  ")?;
            }
            None => writeln!(out, "  no partition table and no filesystem found")?,
        }
    }
    write_findings(out, d.os.as_ref(), &d.warnings, &d.errors, "  ")?;
    writeln!(out)
}

/// An LVM PV's VG and its LVs, one line each.
fn write_lvs(out: &mut dyn Write, fs: Option<&Filesystem>, indent: &str) -> std::io::Result<()> {
    let Some(f) = fs else { return Ok(()) };
    if let Some(vg) = &f.details.vg_name {
        writeln!(
            out,
            "{indent}VG {vg} ({}), {} LVs",
            f.details.vg_uuid.as_deref().unwrap_or("-"),
            f.details.logical_volumes.len()
        )?;
    }
    for lv in &f.details.logical_volumes {
        let (kind, label) = fs_cells(lv.filesystem.as_ref());
        let uuid = lv.filesystem.as_ref().and_then(|f| f.uuid.as_deref());
        let mut note = Vec::new();
        if lv.pv_bytes != lv.size_bytes {
            note.push(format!("{} here", human(lv.pv_bytes)));
        }
        note.extend(lv.copied_whole.iter().map(|w| format!("copied whole: {w}")));
        note.extend(lv.error.iter().map(|e| format!("ERROR: {e}")));
        writeln!(
            out,
            "{indent}  LV {:<16} {:>10}  {:<14} {:<8} {:<16} {}  {}",
            lv.name,
            human(lv.size_bytes),
            lv.segment_types.join(","),
            kind,
            label,
            uuid.unwrap_or("-"),
            note.join("; ")
        )?;
    }
    Ok(())
}

/// What was found on a disk or partition: its OS, warnings and errors.
fn write_findings(
    out: &mut dyn Write,
    os: Option<&OsInfo>,
    warnings: &[String],
    errors: &[String],
    indent: &str,
) -> std::io::Result<()> {
    if let Some(os) = os {
        write_os(out, os, indent)?;
    }
    for w in warnings {
        writeln!(out, "{indent}warning: {w}")?;
    }
    for e in errors {
        writeln!(out, "{indent}ERROR: {e}")?;
    }
    Ok(())
}
