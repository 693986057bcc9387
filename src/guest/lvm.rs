//! LVM2 inside the copy: the LVs of each copied PV, located from the PV's
//! own metadata, and opened on dom0 so the conversion can mount a root (or
//! /boot) that lives on an LV.
//!
//! Design: the copy's VG is never activated with dom0's lvm2. Its name may
//! be the name of one of dom0's own VGs (every RHEL install calls its VG
//! "rhel", every Ubuntu one "ubuntu-vg"), which lvm2 would refuse or, worse,
//! mix up; activation writes nothing but needs device-mapper, which a minimal
//! dom0 (and the machine the tests run on) may lack; and lvm2's caches and
//! devices file would learn about a disk that is not dom0's. Instead the LV's
//! place is computed from the metadata text p2xen already parses
//! (`source::filesystems::lvm`): an LV whose segments are one contiguous run
//! of the PV (the usual linear LV) is a loop device with `--offset`
//! (partition start + pe_start + first extent * extent size) and
//! `--sizelimit`; any other linear or striped LV on one PV is a
//! device-mapper table over a loop device of the whole PV, created with
//! `dmsetup create p2xen-MIGRATION-VG-LV` where device-mapper exists, and
//! otherwise a [`LvError::NoDeviceMapper`] naming the LV. Thin, RAID,
//! snapshot and multi-PV LVs cannot be opened this way ([`LvError::Unusable`]).
//!
//! The guest keeps LVM: its disk still holds the PV, so the fstab's and boot
//! menu's `/dev/mapper/VG-LV` and `/dev/VG/LV` names stay valid under Xen and
//! are not rewritten.

use std::path::{Path, PathBuf};

use crate::source::device::{Device, ReadAt, Window};
use crate::source::filesystems::lvm::{self as pvmeta, LvMap};

use super::guestfs::{GuestFs, GuestFsError};
use super::mount::{LoopDevice, MountError, run};

#[derive(Debug, thiserror::Error)]
pub enum LvError {
    #[error("{image}: LVM2 PV at byte {offset}: {source}")]
    Pv {
        image: PathBuf,
        offset: u64,
        source: pvmeta::LvmError,
    },
    #[error(
        "LV {vg}/{lv} is {layout}: opening it on dom0 needs device-mapper (dmsetup), which this \
         dom0's kernel lacks (not in /proc/misc; `modprobe dm-mod`, or convert on a dom0 \
         with device-mapper)"
    )]
    NoDeviceMapper {
        vg: String,
        lv: String,
        layout: String,
    },
    #[error(
        "LV {vg}/{lv} cannot be opened on dom0: {why} (p2xen opens linear and striped LVs on one \
         PV; the copy holds this one whole, so it works inside the guest)"
    )]
    Unusable { vg: String, lv: String, why: String },
    #[error(transparent)]
    Loop(#[from] MountError),
    #[error("LV {vg}/{lv}: {source}")]
    Dm {
        vg: String,
        lv: String,
        source: MountError,
    },
}

/// Where an LV of the copy lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvPlace {
    /// One contiguous run of the disk image: the volume's offset and size.
    Window,
    /// Segments elsewhere on the PV: a device-mapper table over it.
    Table(LvMap),
    /// Not openable on dom0, and why.
    Unusable(String),
}

/// An LV of a copied PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvVolume {
    pub vg: String,
    pub name: String,
    /// The PV's partition (as the volume list numbers it) and where it
    /// starts in the disk image.
    pub pv_part: Option<u32>,
    pub pv_start: u64,
    pub pv_size: u64,
    pub place: LvPlace,
}

impl LvVolume {
    /// The name the guest knows it by (udev's and dracut's spelling: a
    /// `-` inside a VG or LV name is doubled).
    pub fn mapper_path(&self) -> String {
        mapper_path(&self.vg, &self.name)
    }

    /// "linear in 3 segments", "striped": for messages.
    fn layout(&self) -> String {
        match &self.place {
            LvPlace::Window => "linear".to_string(),
            LvPlace::Table(_) => "not one contiguous run of its PV (several segments or \
                                  stripes)"
                .to_string(),
            LvPlace::Unusable(why) => why.clone(),
        }
    }
}

/// `/dev/mapper/VG-LV` with `-` doubled in both names.
pub fn mapper_path(vg: &str, lv: &str) -> String {
    format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    )
}

/// One LV found on a PV: its place and, for a contiguous one, its byte
/// range in the disk image.
#[derive(Debug, Clone)]
pub struct FoundLv {
    pub lv: LvVolume,
    /// Disk-image offset and size of the LV's bytes (for a Table LV the
    /// LV's size at the PV's start; for Unusable, zero).
    pub offset: u64,
    pub size: u64,
}

/// The visible LVs of the PV at `offset..offset+size` of `image` (a PV
/// holding no VG metadata has none here). Hidden sub-LVs (pool data, RAID
/// images) are not listed: the guest never mounts them.
pub fn lvs_of_pv(
    image: &Path,
    pv_part: Option<u32>,
    offset: u64,
    size: u64,
) -> Result<Vec<FoundLv>, LvError> {
    let err = |source| LvError::Pv {
        image: image.to_path_buf(),
        offset,
        source,
    };
    let dev = Device::open(image).map_err(|e| err(e.into()))?;
    let part = Window::new(&dev, offset, size);
    let Some(pv) = pvmeta::read(&part).map_err(err)? else {
        return Ok(Vec::new());
    };
    let (Some(vg), Some(me)) = (&pv.vg, pv.in_vg()) else {
        return Ok(Vec::new());
    };
    let me = me.map_err(err)?;
    let mut out = Vec::new();
    for lv in vg.logical_volumes.iter().filter(|l| l.visible()) {
        let (place, off, len) = match LvMap::new(vg, lv, me, part.size()) {
            Ok(map) => match map.contiguous() {
                Some((at, len)) => (LvPlace::Window, offset.saturating_add(at), len),
                None => {
                    let len = map.size();
                    (LvPlace::Table(map), offset, len)
                }
            },
            Err(why) => (LvPlace::Unusable(why.to_string()), offset, 0),
        };
        out.push(FoundLv {
            lv: LvVolume {
                vg: vg.name.clone(),
                name: lv.name.clone(),
                pv_part,
                pv_start: offset,
                pv_size: size,
                place,
            },
            offset: off,
            size: len,
        });
    }
    Ok(out)
}

/// The running kernel has device-mapper to create tables with: it then
/// lists the misc device. (`/dev/mapper/control` is no proof: a static
/// /dev or a container may have the node without the driver.)
pub fn have_device_mapper() -> bool {
    std::fs::read_to_string("/proc/misc").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
    })
}

/// A device-mapper device p2xen created, removed on drop.
#[derive(Debug)]
struct DmDevice {
    name: Option<String>,
}

impl DmDevice {
    fn remove(mut self) -> Result<(), MountError> {
        match self.name.take() {
            Some(n) => run("dmsetup", &["remove", "--noudevsync", &n]).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Drop for DmDevice {
    fn drop(&mut self) {
        if let Some(n) = self.name.take() {
            if let Err(e) = run("dmsetup", &["remove", "--noudevsync", &n]) {
                log::error!("{e}; remove it by hand: dmsetup remove {n}");
            }
        }
    }
}

/// A volume of the copy opened as a block device: a loop device, and for
/// an LV mapped by a table the device-mapper device over it. Fields in
/// drop order: the mapping goes before the loop device under it.
#[derive(Debug)]
pub struct OpenVolume {
    dm: Option<DmDevice>,
    dm_path: Option<String>,
    lo: LoopDevice,
}

impl OpenVolume {
    /// Opens `len` bytes at `offset` of `image` (a partition, or an LV's
    /// window), or for `lv` placed by a table its mapping over the PV;
    /// `migration` names the dm device (`p2xen-MIGRATION-VG-LV`).
    pub fn open(
        image: &Path,
        offset: u64,
        len: u64,
        lv: Option<&LvVolume>,
        migration: &str,
        read_only: bool,
    ) -> Result<Self, LvError> {
        let Some(lv) = lv else {
            return Ok(OpenVolume {
                dm: None,
                dm_path: None,
                lo: LoopDevice::attach(image, offset, len, read_only)?,
            });
        };
        let dm_err = |source| LvError::Dm {
            vg: lv.vg.clone(),
            lv: lv.name.clone(),
            source,
        };
        let map = match &lv.place {
            LvPlace::Window => {
                return Ok(OpenVolume {
                    dm: None,
                    dm_path: None,
                    lo: LoopDevice::attach(image, offset, len, read_only)?,
                });
            }
            LvPlace::Unusable(why) => {
                return Err(LvError::Unusable {
                    vg: lv.vg.clone(),
                    lv: lv.name.clone(),
                    why: why.clone(),
                });
            }
            LvPlace::Table(map) => map,
        };
        if !have_device_mapper() {
            return Err(LvError::NoDeviceMapper {
                vg: lv.vg.clone(),
                lv: lv.name.clone(),
                layout: lv.layout(),
            });
        }
        let lo = LoopDevice::attach(image, lv.pv_start, lv.pv_size, read_only).map_err(dm_err)?;
        // Our own prefix, never the guest's VG-LV name: dom0 may have a VG
        // of the same name active.
        let name = dm_name(migration, &lv.vg, &lv.name);
        let table = map.dm_table(lo.path());
        let mut args = vec!["create", "--noudevsync", &name, "--table", &table];
        if read_only {
            args.insert(1, "--readonly");
        }
        run("dmsetup", &args).map_err(dm_err)?;
        let dm = DmDevice {
            name: Some(name.clone()),
        };
        // Without udev, dmsetup makes /dev/mapper/NAME itself (--noudevsync).
        Ok(OpenVolume {
            dm: Some(dm),
            dm_path: Some(format!("/dev/mapper/{name}")),
            lo,
        })
    }

    /// The block device to mount.
    pub fn path(&self) -> &str {
        self.dm_path.as_deref().unwrap_or_else(|| self.lo.path())
    }

    /// Removes the mapping and detaches, reporting failures.
    pub fn close(mut self) -> Result<(), MountError> {
        if let Some(dm) = self.dm.take() {
            dm.remove()?;
        }
        self.lo.detach()
    }
}

/// `p2xen-MIGRATION-VG-LV`, with only the characters device-mapper and
/// shells take without quoting.
pub fn dm_name(migration: &str, vg: &str, lv: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("p2xen-{}-{}-{}", clean(migration), clean(vg), clean(lv))
}

/// The VG and LV an fstab/boot device spec names: `/dev/mapper/VG-LV`
/// (a single `-` splits; `--` is a `-` in a name) or `/dev/VG/LV`.
pub fn lv_of_spec(spec: &str) -> Option<(String, String)> {
    let rest = spec.strip_prefix("/dev/")?;
    if let Some(m) = rest.strip_prefix("mapper/") {
        let b = m.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'-' {
                if b.get(i + 1) == Some(&b'-') {
                    i += 2;
                    continue;
                }
                let (vg, lv) = (&m[..i], &m[i + 1..]);
                if vg.is_empty() || lv.is_empty() {
                    return None;
                }
                return Some((vg.replace("--", "-"), lv.replace("--", "-")));
            }
            i += 1;
        }
        return None;
    }
    let (vg, lv) = rest.split_once('/')?;
    if lv.contains('/') || matches!(vg, "disk" | "md" | "cciss" | "ida" | "rd" | "mapper") {
        return None;
    }
    Some((vg.to_string(), lv.to_string()))
}

/// The guest's fstab entries naming an LV (`/dev/mapper/VG-LV`,
/// `/dev/VG/LV`) checked against the LVs of the copy: entries of a VG the
/// copy holds must name one of its LVs (they then stay as they are, valid
/// in the guest); an LV the copy's VG lacks, or a `/dev/mapper` name of a
/// VG the copy does not hold, is a warning. `/dev/VG/LV` of an unknown VG
/// is not one: such a path may be anything.
pub fn check_fstab(gfs: &GuestFs, lvs: &[&LvVolume]) -> Result<Vec<String>, GuestFsError> {
    let Some(text) = gfs.read("/etc/fstab")? else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(spec), Some(target)) = (f.next(), f.next()) else {
            continue;
        };
        if spec.starts_with('#') {
            continue;
        }
        let Some((vg, lv)) = lv_of_spec(spec) else {
            continue;
        };
        let vg_known = lvs.iter().any(|l| l.vg == vg);
        let found = lvs.iter().any(|l| l.vg == vg && l.name == lv);
        if found {
            continue;
        }
        if vg_known {
            warnings.push(format!(
                "fstab: {spec} ({target}) names LV {lv}, which the copy's VG {vg} does not have; \
                 the guest will not find it"
            ));
        } else if spec.starts_with("/dev/mapper/") {
            warnings.push(format!(
                "fstab: {spec} ({target}) names VG {vg}, which is on none of the copied disks; \
                 the guest will not find it"
            ));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapper_names_split_on_a_single_dash() {
        assert_eq!(
            lv_of_spec("/dev/mapper/vgdemo-root"),
            Some(("vgdemo".into(), "root".into()))
        );
        assert_eq!(
            lv_of_spec("/dev/mapper/ubuntu--vg-ubuntu--lv"),
            Some(("ubuntu-vg".into(), "ubuntu-lv".into()))
        );
        assert_eq!(
            lv_of_spec("/dev/rhel/swap"),
            Some(("rhel".into(), "swap".into()))
        );
        assert_eq!(lv_of_spec("/dev/mapper/control"), None);
        assert_eq!(lv_of_spec("/dev/disk/by-uuid"), None);
        assert_eq!(lv_of_spec("/dev/sda1"), None);
        assert_eq!(lv_of_spec("UUID=x"), None);
        assert_eq!(
            mapper_path("ubuntu-vg", "ubuntu-lv"),
            "/dev/mapper/ubuntu--vg-ubuntu--lv"
        );
        assert_eq!(dm_name("web 1", "vg", "root"), "p2xen-web_1-vg-root");
    }

    fn lv(vg: &str, name: &str) -> LvVolume {
        LvVolume {
            vg: vg.into(),
            name: name.into(),
            pv_part: Some(3),
            pv_start: 0,
            pv_size: 0,
            place: LvPlace::Window,
        }
    }

    #[test]
    fn fstab_names_of_the_copys_lvs_are_fine_others_warned() {
        let (_t, gfs) = super::super::guestfs::test_guest(&[(
            "/etc/fstab",
            "/dev/mapper/vgdemo-root / xfs defaults 0 1\n\
             /dev/vgdemo/swap none swap sw 0 0\n\
             /dev/mapper/vgdemo-home /home xfs defaults 0 2\n\
             /dev/mapper/other-data /data ext4 defaults 0 2\n\
             /dev/foo/bar /x ext4 defaults 0 2\n\
             # /dev/mapper/vgdemo-gone /y xfs defaults 0 2\n",
        )]);
        let (a, b) = (lv("vgdemo", "root"), lv("vgdemo", "swap"));
        let w = check_fstab(&gfs, &[&a, &b]).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("names LV home, which the copy's VG vgdemo does not have"),
            "{w:?}"
        );
        assert!(
            w[1].contains("names VG other, which is on none of the copied disks"),
            "{w:?}"
        );
    }
}
