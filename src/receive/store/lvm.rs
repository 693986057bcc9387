//! The LVM side of `--store lvm:VG`: finding, creating, activating and
//! removing the logical volumes that receive disks, through the lvm2 tools
//! (`vgs`, `lvs`, `lvcreate`, `lvchange`, `lvremove`). No crate talks to LVM
//! without them (liblvm2app is gone), and the tools are what the admin uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::lvm_error::LvmError;

/// A volume group's allocation unit and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgInfo {
    pub extent_size: u64,
    pub free: u64,
}

/// One logical volume as `lvs` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvInfo {
    pub name: String,
    pub size: u64,
    pub active: bool,
}

/// Where udev listens; LVM checks the same path to tell whether udev runs.
const UDEV_CONTROL: &str = "/run/udev/control";

/// Without udev (a minimal dom0, a container) lvm2 still waits for udev to
/// make /dev/VG/LV, and lvcreate aborts with "device not cleared": there it
/// must make the device nodes itself.
fn udev_config(udev_running: bool) -> Option<&'static str> {
    (!udev_running).then_some("activation { udev_sync = 0 udev_rules = 0 }")
}

/// An lvm2 tool with the options every call needs.
fn lvm(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    if let Some(c) = udev_config(Path::new(UDEV_CONTROL).exists()) {
        cmd.args(["--config", c]);
    }
    // lvm warns about every inherited descriptor; ours are no business of it.
    cmd.env("LVM_SUPPRESS_FD_WARNINGS", "1");
    cmd
}

/// Runs an lvm2 tool; returns its stdout, or its stderr as the error.
fn run(cmd: &mut Command) -> Result<String, LvmError> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd.output().map_err(|e| LvmError::Command {
        cmd: shown.clone(),
        msg: format!("cannot run: {e} (install the Debian package lvm2)"),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LvmError::Command {
            cmd: shown,
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Byte-exact report options shared by `vgs` and `lvs`.
const REPORT: [&str; 6] = [
    "--noheadings",
    "--nosuffix",
    "--units",
    "b",
    "--separator",
    ":",
];

/// `vgs`/`lvs` report columns `fields` of `vg`; a VG that LVM does not know
/// becomes [`LvmError::NoVg`] with LVM's last line.
fn report(vg: &str, cmd: &str, fields: &str) -> Result<String, LvmError> {
    run(lvm(cmd).args(REPORT).args(["-o", fields, vg])).map_err(|e| match e {
        LvmError::Command { msg, .. } if !msg.starts_with("cannot run") => LvmError::NoVg {
            vg: vg.to_string(),
            msg: msg.lines().last().unwrap_or_default().to_string(),
        },
        e => e,
    })
}

/// Extent size and free space of `vg`; a clear error when it does not exist.
pub fn vg_info(vg: &str) -> Result<VgInfo, LvmError> {
    let out = report(vg, "vgs", "vg_extent_size,vg_free")?;
    parse_vg_info(&out).ok_or_else(|| LvmError::Command {
        cmd: format!("vgs {vg}"),
        msg: format!("unexpected output {:?}", out.trim()),
    })
}

fn parse_vg_info(out: &str) -> Option<VgInfo> {
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    let mut f = line.trim().split(':').map(|v| v.trim().parse::<u64>());
    let extent_size = f.next()?.ok().filter(|e| *e > 0)?;
    let free = f.next()?.ok()?;
    Some(VgInfo { extent_size, free })
}

/// The logical volumes of `vg`.
pub fn list_lvs(vg: &str) -> Result<Vec<LvInfo>, LvmError> {
    let out = report(vg, "lvs", "lv_name,lv_size,lv_attr")?;
    Ok(parse_lvs(&out))
}

fn parse_lvs(out: &str) -> Vec<LvInfo> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let name = f.next()?.trim().to_string();
            let size = f.next()?.trim().parse().ok()?;
            // lv_attr's fifth character is the state: 'a' = active.
            let active = f.next()?.trim().chars().nth(4) == Some('a');
            (!name.is_empty()).then_some(LvInfo { name, size, active })
        })
        .collect()
}

/// The LVs of migration `name`: `NAME-disk0`, `NAME-disk1`, ...
pub fn lvs_of(lvs: &[LvInfo], name: &str) -> Vec<LvInfo> {
    lvs.iter()
        .filter(|lv| {
            lv.name
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix("-disk"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .cloned()
        .collect()
}

/// Extents needed to hold `size` bytes (LVs grow in whole extents).
pub fn extents_for(size: u64, extent_size: u64) -> Option<u64> {
    if extent_size == 0 {
        return None;
    }
    Some(size.div_ceil(extent_size).max(1))
}

/// `lvcreate`'s arguments for a new LV of `extents` extents. `--wipesignatures`
/// and `--zero` clear old filesystem/RAID/LVM signatures and the first 4 KiB,
/// so nothing probes the half-copied LV as the volume it replaced; the rest is
/// zeroed where the sender sends nothing (`Target::fill_gaps`).
pub fn lvcreate_args(vg: &str, lv: &str, extents: u64) -> Vec<String> {
    [
        "--yes",
        "--wipesignatures",
        "y",
        "--zero",
        "y",
        "--activate",
        "y",
        "--extents",
        &extents.to_string(),
        "--name",
        lv,
        vg,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `/dev/VG/LV`, the name admins and xl configs use.
pub fn lv_path(vg: &str, lv: &str) -> PathBuf {
    Path::new("/dev").join(vg).join(lv)
}

/// `/dev/mapper/VG-LV` with dashes in either name doubled, as device-mapper
/// names it; there when /dev/VG/LV is not (no udev to make the link).
pub fn dm_path(vg: &str, lv: &str) -> PathBuf {
    Path::new("/dev/mapper").join(format!(
        "{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    ))
}

/// Opens (activating if needed) or creates LV `lv` in `vg` for a disk of
/// `size` bytes; returns the device path.
pub fn open_or_create(vg: &str, lv: &str, size: u64) -> Result<PathBuf, LvmError> {
    let qualified = format!("{vg}/{lv}");
    match list_lvs(vg)?.into_iter().find(|l| l.name == lv) {
        // Resuming: the LV holds the committed chunks.
        Some(found) => {
            if found.size < size {
                return Err(LvmError::LvTooSmall {
                    path: lv_path(vg, lv),
                    have: found.size,
                    need: size,
                });
            }
            if !found.active {
                run(lvm("lvchange").args(["--activate", "y", &qualified]))?;
            }
        }
        None => {
            let info = vg_info(vg)?;
            let extents = extents_for(size, info.extent_size).ok_or_else(|| LvmError::Command {
                cmd: format!("vgs {vg}"),
                msg: "extent size 0".into(),
            })?;
            let need = extents.saturating_mul(info.extent_size);
            if need > info.free {
                return Err(LvmError::VgFull {
                    vg: vg.to_string(),
                    lv: lv.to_string(),
                    need,
                    free: info.free,
                });
            }
            run(lvm("lvcreate").args(lvcreate_args(vg, lv, extents)))?;
            if need != size {
                log::info!(
                    "{qualified}: {need} bytes ({extents} extents of {}), {} more than the disk; the tail is zeroed",
                    info.extent_size,
                    need - size
                );
            }
        }
    }
    let path = lv_path(vg, lv);
    if path.exists() {
        return Ok(path);
    }
    let dm = dm_path(vg, lv);
    if dm.exists() {
        return Ok(dm);
    }
    Err(LvmError::Command {
        cmd: format!("lvcreate/lvchange {qualified}"),
        msg: format!(
            "the LV is active but neither {} nor {} exists (is udev running? try vgmknodes {vg})",
            path.display(),
            dm.display()
        ),
    })
}

/// Removes an LV of an earlier migration (`--force`).
pub fn remove(vg: &str, lv: &str) -> Result<(), LvmError> {
    run(lvm("lvremove").args(["--yes", "--force", &format!("{vg}/{lv}")])).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_whole_extents() {
        let mib4 = 4 << 20;
        assert_eq!(extents_for(mib4, mib4), Some(1));
        assert_eq!(extents_for(mib4 + 512, mib4), Some(2));
        assert_eq!(extents_for(101_711_872, mib4), Some(25));
        assert_eq!(extents_for(1, mib4), Some(1));
        assert_eq!(extents_for(0, mib4), Some(1));
        assert_eq!(extents_for(u64::MAX, mib4), Some(u64::MAX / mib4 + 1));
        assert_eq!(extents_for(10, 0), None);
    }

    #[test]
    fn lvcreate_asks_for_extents_wiped_and_active() {
        assert_eq!(
            lvcreate_args("vg0", "web-disk0", 25).join(" "),
            "--yes --wipesignatures y --zero y --activate y --extents 25 --name web-disk0 vg0"
        );
    }

    #[test]
    fn reports_are_parsed() {
        assert_eq!(
            parse_vg_info("     4194304:264241152\n"),
            Some(VgInfo {
                extent_size: 4194304,
                free: 264241152
            })
        );
        assert_eq!(parse_vg_info("  0:5\n"), None);
        assert_eq!(parse_vg_info(""), None);
        let lvs = parse_lvs(
            "  seed-disk0:104857600:-wi-a-----\n  seed-disk1:4194304:-wi-------\n  seed-disk0x:1:-wi-a-----\n  other:8:-wi-a-----\n",
        );
        assert_eq!(
            lvs[0],
            LvInfo {
                name: "seed-disk0".into(),
                size: 104857600,
                active: true
            }
        );
        assert!(!lvs[1].active);
        let mine: Vec<String> = lvs_of(&lvs, "seed").into_iter().map(|l| l.name).collect();
        assert_eq!(mine, ["seed-disk0", "seed-disk1"]);
        assert!(lvs_of(&lvs, "see").is_empty());
    }

    #[test]
    fn without_udev_lvm_makes_the_nodes() {
        assert_eq!(udev_config(true), None);
        assert_eq!(
            udev_config(false),
            Some("activation { udev_sync = 0 udev_rules = 0 }")
        );
    }

    #[test]
    fn device_paths() {
        assert_eq!(lv_path("vg0", "web-disk0"), Path::new("/dev/vg0/web-disk0"));
        assert_eq!(
            dm_path("my-vg", "web-disk0"),
            Path::new("/dev/mapper/my--vg-web--disk0")
        );
    }
}
