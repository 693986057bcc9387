//! Where an LV's bytes lie on one PV: its linear and striped segments as
//! byte ranges, a [`ReadAt`] view of the LV through them, and the way back
//! from LV byte ranges to PV byte ranges.

use std::fmt;
use std::path::{Path, PathBuf};

use super::label::SECTOR;
use super::vg::{LogicalVolume, PhysicalVolume, SegmentKind, VolumeGroup};
use crate::source::device::{DeviceError, ReadAt};

/// Why an LV's extents on this PV are copied whole instead of mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whole {
    /// Not VISIBLE: a sub-LV (pool data, RAID image, ...) or a spare.
    Hidden,
    /// Another LV's segment names it (snapshot origin, pool data, ...).
    UsedBy(String),
    SegmentType(String),
    /// Some of its stripes are on another PV.
    OtherPv(String),
    /// Its segments do not tile it, or lie outside this PV.
    Layout(String),
}

impl fmt::Display for Whole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Whole::Hidden => f.write_str("hidden LV"),
            Whole::UsedBy(lv) => write!(f, "used by LV {lv}"),
            Whole::SegmentType(t) => write!(f, "{t} segment"),
            Whole::OtherPv(pv) => write!(f, "has extents on {pv} too"),
            Whole::Layout(what) => f.write_str(what),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapped {
    /// LV byte where the segment starts.
    start: u64,
    len: u64,
    /// Bytes per stripe chunk; for a linear segment its whole length.
    chunk: u64,
    /// PV byte where each stripe's area starts.
    stripes: Vec<u64>,
}

/// An LV all of whose segments are linear or striped on one PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvMap {
    segments: Vec<Mapped>,
    size: u64,
}

impl LvMap {
    /// The map of `lv` on `pv` (a PV of `part_size` bytes). Every area is
    /// proved to lie inside the PV here, so the offsets computed later from
    /// it stay below `part_size` and cannot overflow.
    pub fn new(
        vg: &VolumeGroup,
        lv: &LogicalVolume,
        pv: &PhysicalVolume,
        part_size: u64,
    ) -> Result<LvMap, Whole> {
        let layout = |what: String| Whole::Layout(what);
        let extent = vg
            .extent_size
            .checked_mul(SECTOR)
            .ok_or_else(|| layout("extent size overflows".into()))?;
        let pe_start = pv
            .pe_start
            .checked_mul(SECTOR)
            .ok_or_else(|| layout("pe_start overflows".into()))?;
        let mut segments = Vec::new();
        let mut next = 0u64;
        for seg in &lv.segments {
            let SegmentKind::Striped {
                stripe_size,
                stripes,
            } = &seg.kind
            else {
                return Err(Whole::SegmentType(seg.type_name().to_string()));
            };
            if let Some(a) = stripes.iter().find(|a| a.pv != pv.name) {
                return Err(Whole::OtherPv(a.pv.clone()));
            }
            if seg.start_extent != next {
                return Err(layout(format!(
                    "segment at extent {} where {next} was expected",
                    seg.start_extent
                )));
            }
            next = next
                .checked_add(seg.extent_count)
                .ok_or_else(|| layout("extent count overflows".into()))?;
            let area_len = seg.area_len();
            let area_bytes = area_len
                .checked_mul(extent)
                .ok_or_else(|| layout("segment size overflows".into()))?;
            let chunk = if stripes.len() == 1 {
                area_bytes
            } else {
                stripe_size.saturating_mul(SECTOR)
            };
            if chunk == 0 || area_bytes % chunk != 0 {
                return Err(layout(format!(
                    "stripe size {stripe_size} sectors does not divide the extents"
                )));
            }
            let mut starts = Vec::with_capacity(stripes.len());
            for a in stripes {
                let fits = a
                    .start_extent
                    .checked_add(area_len)
                    .is_some_and(|end| end <= pv.pe_count);
                let at = a
                    .start_extent
                    .checked_mul(extent)
                    .and_then(|o| o.checked_add(pe_start));
                match at {
                    Some(at)
                        if fits && at.checked_add(area_bytes).is_some_and(|e| e <= part_size) =>
                    {
                        starts.push(at)
                    }
                    _ => {
                        return Err(layout(format!(
                            "area at extent {} runs past the PV",
                            a.start_extent
                        )));
                    }
                }
            }
            let start = seg
                .start_extent
                .checked_mul(extent)
                .ok_or_else(|| layout("segment offset overflows".into()))?;
            segments.push(Mapped {
                start,
                len: area_bytes.saturating_mul(stripes.len() as u64),
                chunk,
                stripes: starts,
            });
        }
        let size = segments.last().map_or(0, |s| s.start.saturating_add(s.len));
        Ok(LvMap { segments, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The PV byte range holding the whole LV when it is one contiguous run
    /// there (linear segments, each starting where the previous one ends):
    /// a loop device with offset and size limit opens it then, no
    /// device-mapper needed.
    pub fn contiguous(&self) -> Option<(u64, u64)> {
        let first = self.segments.first()?;
        let start = *first.stripes.first()?;
        let mut end = start;
        for s in &self.segments {
            match s.stripes.as_slice() {
                [only] if *only == end => end = end.checked_add(s.len)?,
                _ => return None,
            }
        }
        Some((start, end - start))
    }

    /// The LV as a device-mapper table over the PV's device `dev` (one
    /// `linear` or `striped` line per segment, in 512-byte sectors), what
    /// `dmsetup create --table` takes. Every offset was proved to lie in
    /// the PV by [`LvMap::new`].
    pub fn dm_table(&self, dev: &str) -> String {
        let mut out = String::new();
        for s in &self.segments {
            let (start, len) = (s.start / SECTOR, s.len / SECTOR);
            match s.stripes.as_slice() {
                [only] => {
                    out.push_str(&format!("{start} {len} linear {dev} {}\n", only / SECTOR));
                }
                many => {
                    out.push_str(&format!(
                        "{start} {len} striped {} {}",
                        many.len(),
                        s.chunk / SECTOR
                    ));
                    for at in many {
                        out.push_str(&format!(" {dev} {}", at / SECTOR));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The PV byte holding LV byte `off` and how many bytes from there are
    /// contiguous on the PV.
    fn locate(&self, off: u64) -> Option<(u64, u64)> {
        let i = self
            .segments
            .partition_point(|s| s.start <= off)
            .checked_sub(1)?;
        let s = self.segments.get(i)?;
        let x = off.checked_sub(s.start).filter(|&x| x < s.len)?;
        let n = s.stripes.len() as u64;
        let c = x / s.chunk;
        let stripe = s.stripes.get(usize::try_from(c % n).ok()?)?;
        let local = (c / n) * s.chunk + x % s.chunk;
        let run = (s.chunk - x % s.chunk).min(s.len - x);
        Some((stripe + local, run))
    }

    /// Appends the PV byte ranges holding LV bytes `[off, off+len)`: at
    /// most one per stripe of each segment touched, since the chunks of one
    /// stripe that a contiguous LV range covers are contiguous on the PV.
    pub fn to_pv(&self, off: u64, len: u64, out: &mut Vec<(u64, u64)>) {
        let end = off.saturating_add(len).min(self.size);
        for s in &self.segments {
            let seg_end = s.start + s.len;
            if seg_end <= off || s.start >= end {
                continue;
            }
            let sa = off.max(s.start) - s.start;
            let sb = end.min(seg_end) - s.start;
            let n = s.stripes.len() as u64;
            let (ca, cl) = (sa / s.chunk, (sb - 1) / s.chunk);
            for (i, &base) in (0u64..).zip(&s.stripes) {
                let c0 = ca + (i + n - ca % n) % n;
                if c0 > cl {
                    continue;
                }
                let c1 = cl - (cl % n + n - i) % n;
                let lo = (c0 / n) * s.chunk + if c0 == ca { sa % s.chunk } else { 0 };
                let hi = (c1 / n) * s.chunk
                    + if c1 == cl {
                        (sb - 1) % s.chunk + 1
                    } else {
                        s.chunk
                    };
                out.push((base + lo, hi - lo));
            }
        }
    }
}

/// The LV as a source of its own: reads go to the PV through the map.
pub struct LvView<'a> {
    pv: &'a dyn ReadAt,
    map: &'a LvMap,
    name: PathBuf,
}

impl<'a> LvView<'a> {
    pub fn new(pv: &'a dyn ReadAt, map: &'a LvMap, vg: &str, lv: &str) -> Self {
        LvView {
            pv,
            map,
            name: PathBuf::from(format!("{} (LV {vg}/{lv})", pv.name().display())),
        }
    }
}

impl ReadAt for LvView<'_> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let len = buf.len();
        let out_of_range = || DeviceError::OutOfRange {
            path: self.name.clone(),
            offset,
            len,
            size: self.map.size,
        };
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.map.size)
        {
            return Err(out_of_range());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (pv_off, run) = self.map.locate(at).ok_or_else(out_of_range)?;
            let n = usize::try_from(run)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let piece = buf.get_mut(done..done + n).ok_or_else(out_of_range)?;
            self.pv.read_exact_at(pv_off, piece)?;
            done += n;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.map.size
    }

    fn name(&self) -> &Path {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::super::vg::{Area, Segment};
    use super::*;
    use crate::source::device::{MemDisk, read_vec};

    /// 1 KiB extents (2 sectors), PV data from byte 1024, 64 extents.
    fn setup(segments: Vec<Segment>) -> (VolumeGroup, LvMap) {
        let pv = PhysicalVolume {
            name: "pv0".into(),
            id: "x".into(),
            device: None,
            dev_size: 140,
            pe_start: 2,
            pe_count: 64,
        };
        let lv = LogicalVolume {
            name: "lv".into(),
            id: "y".into(),
            status: vec!["VISIBLE".into()],
            segments,
        };
        let vg = VolumeGroup {
            name: "vg".into(),
            id: "z".into(),
            seqno: 1,
            extent_size: 2,
            physical_volumes: vec![pv],
            logical_volumes: vec![lv],
        };
        let map = LvMap::new(
            &vg,
            &vg.logical_volumes[0],
            &vg.physical_volumes[0],
            70 * 1024,
        )
        .unwrap();
        (vg, map)
    }

    fn seg(start: u64, count: u64, stripe_size: u64, at: &[u64]) -> Segment {
        Segment {
            start_extent: start,
            extent_count: count,
            kind: SegmentKind::Striped {
                stripe_size,
                stripes: at
                    .iter()
                    .map(|&s| Area {
                        pv: "pv0".into(),
                        start_extent: s,
                    })
                    .collect(),
            },
        }
    }

    fn layout() -> Vec<Segment> {
        // 3 linear extents at 10, then 6 extents striped in 512-byte chunks
        // over 3 stripes at 40, 20 and 30.
        vec![seg(0, 3, 0, &[10]), seg(3, 6, 1, &[40, 20, 30])]
    }

    #[test]
    fn view_reads_through_linear_and_striped_segments() {
        let (_, map) = setup(layout());
        assert_eq!(map.size(), 9 * 1024);
        // Each PV byte holds its own offset's low byte pattern.
        let pv: Vec<u8> = (0..70 * 1024u32)
            .map(|i| (i / 256) as u8 ^ (i as u8))
            .collect();
        let disk = MemDisk::new(pv.clone());
        let view = LvView::new(&disk, &map, "vg", "lv");
        let got = read_vec(&view, 0, 9 * 1024).unwrap();
        let pv_of = |lv: usize| -> usize {
            if lv < 3072 {
                1024 + 10 * 1024 + lv
            } else {
                let x = lv - 3072;
                let (c, r) = (x / 512, x % 512);
                let base = [40, 20, 30][c % 3] * 1024 + 1024;
                base + (c / 3) * 512 + r
            }
        };
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, pv[pv_of(i)], "LV byte {i}");
        }
        assert!(read_vec(&view, 9 * 1024 - 1, 2).is_err());
    }

    proptest::proptest! {
        #[test]
        fn to_pv_covers_exactly_the_bytes_locate_finds(off in 0u64..9300, len in 0u64..9300) {
            let (_, map) = setup(layout());
            let mut ranges = Vec::new();
            map.to_pv(off, len, &mut ranges);
            let mut got: Vec<u64> = ranges.iter().flat_map(|&(o, l)| o..o + l).collect();
            got.sort_unstable();
            let mut want: Vec<u64> = (off..(off + len).min(map.size()))
                .map(|b| map.locate(b).unwrap().0)
                .collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn unmappable_layouts_say_why() {
        let pv_size = 70 * 1024;
        let (mut vg, _) = setup(layout());
        vg.logical_volumes[0].segments = vec![seg(1, 3, 0, &[10])];
        let r = LvMap::new(
            &vg,
            &vg.logical_volumes[0],
            &vg.physical_volumes[0],
            pv_size,
        );
        assert!(matches!(r, Err(Whole::Layout(_))));
        vg.logical_volumes[0].segments = vec![seg(0, 3, 0, &[62])];
        let r = LvMap::new(
            &vg,
            &vg.logical_volumes[0],
            &vg.physical_volumes[0],
            pv_size,
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "area at extent 62 runs past the PV"
        );
        let mut s = seg(0, 2, 0, &[1]);
        if let SegmentKind::Striped { stripes, .. } = &mut s.kind {
            stripes[0].pv = "pv1".into();
        }
        vg.logical_volumes[0].segments = vec![s];
        let r = LvMap::new(
            &vg,
            &vg.logical_volumes[0],
            &vg.physical_volumes[0],
            pv_size,
        );
        assert_eq!(r, Err(Whole::OtherPv("pv1".into())));
    }
}
