//! LVM2 physical volumes: the label and PV header, the newest text metadata
//! of the first readable metadata area, the VG it describes, and from it the
//! used-byte map of the PV: what lies before the first extent, the
//! metadata areas, every allocated extent, and for LVs that are linear or
//! striped on this PV alone only what their filesystems use.
//!
//! Anything this cannot map (thin pools, RAID, snapshots, LVs spread over
//! several PVs) is copied whole; unallocated extents are skipped.

mod label;
mod mda;
mod segment_map;
pub mod text;
pub mod vg;

use serde::{Deserialize, Serialize};

use super::{Filesystem, FsKind, ProbeError};
use crate::source::device::{DeviceError, ReadAt};
use crate::source::extent::ExtentList;
use label::SECTOR;
pub use label::{DiskArea, PvLabel};
pub use segment_map::{LvMap, LvView, Whole};
pub use vg::{LogicalVolume, PhysicalVolume, VolumeGroup};

/// Why a PV's label or metadata cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("PV label at offset {offset}: {what}")]
    Label { offset: u64, what: String },
    #[error("metadata area at offset {offset}: {what}")]
    Mda { offset: u64, what: String },
    #[error("{what} at offset {offset}: checksum {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        offset: u64,
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("metadata area at offset {offset}: {source}")]
    Text {
        offset: u64,
        source: text::TextError,
    },
    #[error("metadata area at offset {offset}: {source}")]
    Vg { offset: u64, source: vg::VgError },
    #[error("PV {uuid} is not among the physical volumes of VG {vg}")]
    PvNotInVg { uuid: String, vg: String },
}

/// One LV of the PV's VG, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvReport {
    pub name: String,
    pub uuid: String,
    /// Extents times extent size.
    pub size_bytes: u64,
    /// Per segment: "linear", "striped", "thin-pool", "raid1", ...
    pub segment_types: Vec<String>,
    /// Bytes of its extents on this PV.
    pub pv_bytes: u64,
    /// Why its extents are copied whole rather than by its filesystem's map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_whole: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
    /// Why its filesystem could not be probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a PV says about itself and its VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pv {
    pub label: PvLabel,
    /// `None` when its metadata areas hold no VG (a fresh PV, or one made
    /// with `--metadatacopies 0` whose VG lives on other PVs).
    pub vg: Option<VolumeGroup>,
}

impl Pv {
    /// This PV's entry in the VG, matched by UUID.
    pub fn in_vg(&self) -> Option<Result<&PhysicalVolume, LvmError>> {
        let vg = self.vg.as_ref()?;
        Some(
            vg.physical_volumes
                .iter()
                .find(|p| p.id == self.label.uuid)
                .ok_or_else(|| LvmError::PvNotInVg {
                    uuid: self.label.uuid.clone(),
                    vg: vg.name.clone(),
                }),
        )
    }
}

/// Parses a metadata text into its VG (what the fuzz target drives).
pub fn parse_metadata(text: &[u8], offset: u64) -> Result<VolumeGroup, LvmError> {
    let top = text::parse(text).map_err(|source| LvmError::Text { offset, source })?;
    vg::volume_group(&top).map_err(|source| LvmError::Vg { offset, source })
}

/// The label and VG of `part`; `Ok(None)` if it is no PV. The first
/// metadata area holding text wins; lvm2 writes all of them on each commit.
pub fn read(part: &dyn ReadAt) -> Result<Option<Pv>, LvmError> {
    let Some(label) = label::find(part)? else {
        return Ok(None);
    };
    let mut vg = None;
    let mut first_err = None;
    for &area in &label.metadata_areas {
        match mda::read_text(part, area) {
            Ok(Some(text)) => {
                vg = Some(parse_metadata(&text, area.offset)?);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let (None, Some(e)) = (&vg, first_err) {
        return Err(e);
    }
    Ok(Some(Pv { label, vg }))
}

fn probe_error(part: &dyn ReadAt, source: LvmError) -> ProbeError {
    ProbeError::Lvm {
        path: part.name().to_path_buf(),
        source,
    }
}

fn identity(pv: &Pv) -> Filesystem {
    let mut fs = Filesystem::new(FsKind::Lvm2Pv);
    fs.uuid = Some(pv.label.uuid.clone());
    fs.size_bytes = Some(pv.label.dev_size).filter(|&n| n > 0);
    if let Some(vg) = &pv.vg {
        fs.details.vg_name = Some(vg.name.clone());
        fs.details.vg_uuid = Some(vg.id.clone());
        fs.details.extent_size = vg.extent_size.checked_mul(SECTOR);
    }
    fs
}

/// The PV and its VG's name only, for a PV found inside an LV: walking into
/// its LVs could loop (a corrupt VG may map an LV onto its own PV).
pub(super) fn probe_pv_only(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let pv = read(part).map_err(|e| probe_error(part, e))?;
    Ok(pv.as_ref().map(identity))
}

/// The PV, its VG and the LVs of the VG, each with its filesystem when it
/// lies on this PV alone.
pub(super) fn probe(part: &dyn ReadAt) -> Result<Option<Filesystem>, ProbeError> {
    let Some(pv) = read(part).map_err(|e| probe_error(part, e))? else {
        return Ok(None);
    };
    let mut fs = identity(&pv);
    let (Some(vg), Some(me)) = (&pv.vg, pv.in_vg()) else {
        return Ok(Some(fs));
    };
    let me = me.map_err(|e| probe_error(part, e))?;
    for plan in plans(vg, me, part.size()) {
        let lv = plan.lv;
        let mut r = LvReport {
            name: lv.name.clone(),
            uuid: lv.id.clone(),
            size_bytes: lv
                .extent_count()
                .saturating_mul(vg.extent_size.saturating_mul(SECTOR)),
            segment_types: lv
                .segments
                .iter()
                .map(|s| s.type_name().to_string())
                .collect(),
            pv_bytes: plan.areas.iter().fold(0u64, |n, a| n.saturating_add(a.1)),
            copied_whole: None,
            filesystem: None,
            error: None,
        };
        match &plan.map {
            Ok(map) => {
                let view = LvView::new(part, map, &vg.name, &lv.name);
                match super::probe_nested(&view) {
                    Ok(Some(f)) => r.filesystem = Some(f),
                    Ok(None) => r.copied_whole = Some("no known filesystem".into()),
                    Err(e) => r.error = Some(e.to_string()),
                }
            }
            Err(why) => r.copied_whole = Some(why.to_string()),
        }
        fs.details.logical_volumes.push(r);
    }
    Ok(Some(fs))
}

/// One LV's share of this PV.
struct LvPlan<'v> {
    lv: &'v LogicalVolume,
    /// PV byte ranges of its extents here, clamped to the PV.
    areas: Vec<(u64, u64)>,
    map: Result<LvMap, Whole>,
}

/// `count` extents from extent `start` as PV bytes; saturating, so a
/// corrupt value widens the range (more is copied), never wraps it.
fn extent_range(pv: &PhysicalVolume, extent: u64, start: u64, count: u64, size: u64) -> (u64, u64) {
    let off = pv
        .pe_start
        .saturating_mul(SECTOR)
        .saturating_add(start.saturating_mul(extent))
        .min(size);
    (off, count.saturating_mul(extent).min(size - off))
}

fn plans<'v>(vg: &'v VolumeGroup, me: &PhysicalVolume, size: u64) -> Vec<LvPlan<'v>> {
    let extent = vg.extent_size.saturating_mul(SECTOR);
    // Sub-LVs named by another LV's segments (pool data, RAID images,
    // snapshot origins): their bytes mean something only through that LV.
    let used_by = |name: &str| {
        vg.logical_volumes.iter().find(|other| {
            other.segments.iter().any(|s| match &s.kind {
                vg::SegmentKind::Other { refs, .. } => refs.iter().any(|(r, _)| r == name),
                vg::SegmentKind::Striped { .. } => false,
            })
        })
    };
    vg.logical_volumes
        .iter()
        .map(|lv| {
            let mut areas = Vec::new();
            for s in &lv.segments {
                match &s.kind {
                    vg::SegmentKind::Striped { stripes, .. } => {
                        for a in stripes.iter().filter(|a| a.pv == me.name) {
                            areas.push(extent_range(
                                me,
                                extent,
                                a.start_extent,
                                s.area_len(),
                                size,
                            ));
                        }
                    }
                    vg::SegmentKind::Other { refs, .. } => {
                        for (_, start) in refs.iter().filter(|(r, _)| *r == me.name) {
                            let start = start.unwrap_or(0);
                            areas.push(extent_range(me, extent, start, s.area_len(), size));
                        }
                    }
                }
            }
            let map = if !lv.visible() {
                Err(Whole::Hidden)
            } else if let Some(other) = used_by(&lv.name) {
                Err(Whole::UsedBy(other.name.clone()))
            } else {
                LvMap::new(vg, lv, me, size)
            };
            LvPlan { lv, areas, map }
        })
        .collect()
}

/// The LV's used bytes by its filesystem's map; `None` to copy it whole.
fn lv_used(view: &LvView<'_>) -> Option<ExtentList> {
    let fs = match super::probe_nested(view) {
        Ok(Some(fs)) => fs,
        Ok(None) => return None,
        Err(e) => {
            log::warn!("{e}: LV copied whole");
            return None;
        }
    };
    // A PV or RAID member inside an LV is copied whole rather than walked
    // into; an ext with pending journal replay may need blocks its bitmaps
    // call free.
    if matches!(fs.kind, FsKind::Lvm2Pv | FsKind::LinuxRaidMember)
        || (fs.kind.is_ext() && fs.state.as_deref() != Some("clean"))
    {
        return None;
    }
    match super::used_extents(view, &fs) {
        Ok(used) => used,
        Err(e) => {
            log::warn!("{e}: LV copied whole");
            None
        }
    }
}

/// Bytes of the PV worth copying: everything before the first extent (label,
/// metadata area, a bootloader area), every metadata area, every
/// allocated extent, but for LVs mapped on this PV alone only the bytes
/// their filesystems use. `Ok(None)` (copy whole) when the PV's own
/// metadata areas hold no VG, since then its allocation is unknown here.
pub(super) fn used_extents(part: &dyn ReadAt) -> Result<Option<ExtentList>, ProbeError> {
    let err = |e| probe_error(part, e);
    let Some(pv) = read(part).map_err(err)? else {
        return Ok(None);
    };
    let (Some(vg), Some(me)) = (&pv.vg, pv.in_vg()) else {
        return Ok(None);
    };
    let me = me.map_err(err)?;
    let size = part.size();
    let extent = vg.extent_size.saturating_mul(SECTOR);
    // Past the last extent nothing is LVM's but a metadata area at the end
    // (`--pvmetadatacopies 2`), which the label lists.
    let (pe_start, _) = extent_range(me, extent, 0, 0, size);
    let mut ranges = vec![(0, pe_start)];
    for a in pv.label.metadata_areas.iter() {
        ranges.push((a.offset.min(size), a.size.min(size - a.offset.min(size))));
    }
    for plan in plans(vg, me, size) {
        let used = plan.map.as_ref().ok().and_then(|map| {
            let view = LvView::new(part, map, &vg.name, &plan.lv.name);
            lv_used(&view).map(|u| (map, u))
        });
        match used {
            Some((map, u)) => {
                for e in u.as_slice() {
                    map.to_pv(e.offset, e.len, &mut ranges);
                }
            }
            None => ranges.extend_from_slice(&plan.areas),
        }
    }
    ranges.sort_unstable();
    let mut out = ExtentList::new();
    for (o, l) in ranges {
        out.push(o, l);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests;
