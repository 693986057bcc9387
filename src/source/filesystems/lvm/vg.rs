//! The volume group described by a metadata text: its PVs, its LVs and
//! their segments, as far as p2xen needs them to map LVs onto PVs.

use super::text::{Node, Section, Value};

/// A metadata text that parses but does not describe a usable VG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata text line {line}: {path}: {what}")]
pub struct VgError {
    pub line: usize,
    /// Where in the VG: "vg0/logical_volumes/root/segment1/stripes".
    pub path: String,
    pub what: VgFault,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VgFault {
    #[error("no volume group section")]
    NoVg,
    #[error("missing")]
    Missing,
    #[error("is not {0}")]
    Type(&'static str),
    #[error("{0} is out of range")]
    Range(i64),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    /// In 512-byte sectors, as the metadata writes it.
    pub extent_size: u64,
    pub physical_volumes: Vec<PhysicalVolume>,
    pub logical_volumes: Vec<LogicalVolume>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalVolume {
    /// The key in `physical_volumes` ("pv0") that segments refer to.
    pub name: String,
    pub id: String,
    /// The device path when the metadata was written; a hint only.
    pub device: Option<String>,
    /// Sectors.
    pub dev_size: u64,
    /// First sector of extent 0.
    pub pe_start: u64,
    pub pe_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    pub name: String,
    pub id: String,
    pub status: Vec<String>,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    pub kind: SegmentKind,
}

/// One stripe (or the single area of a linear segment): a PV and the
/// extent on it where the stripe's area starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub pv: String,
    pub start_extent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKind {
    /// "striped"; linear is striped with one stripe (stripe_size 0 then).
    Striped {
        /// Sectors per chunk.
        stripe_size: u64,
        stripes: Vec<Area>,
    },
    /// thin-pool, thin, raid1, mirror, cache, snapshot, ...: not mapped.
    /// `refs` holds every string the segment mentions with a number after
    /// it (`"pv0", 0` areas) or alone (sub-LV names), so the caller can find
    /// the PV extents and LVs it uses.
    Other {
        type_name: String,
        refs: Vec<(String, Option<u64>)>,
    },
}

impl LogicalVolume {
    pub fn extent_count(&self) -> u64 {
        self.segments
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.extent_count))
    }

    pub fn visible(&self) -> bool {
        self.status.iter().any(|s| s == "VISIBLE")
    }
}

impl Segment {
    /// "linear", "striped" or the metadata's own type name.
    pub fn type_name(&self) -> &str {
        match &self.kind {
            SegmentKind::Striped { stripes, .. } if stripes.len() == 1 => "linear",
            SegmentKind::Striped { .. } => "striped",
            SegmentKind::Other { type_name, .. } => type_name,
        }
    }

    /// Extents each area spans: a striped segment splits its extents
    /// evenly over the stripes; for other types the whole count is an
    /// upper bound (a mirror leg is as long as the segment).
    pub fn area_len(&self) -> u64 {
        match &self.kind {
            SegmentKind::Striped { stripes, .. } => {
                self.extent_count / (stripes.len().max(1) as u64)
            }
            SegmentKind::Other { .. } => self.extent_count,
        }
    }
}

struct Ctx<'a> {
    path: String,
    sec: &'a Section,
}

impl<'a> Ctx<'a> {
    fn child(&self, name: &str, sec: &'a Section) -> Ctx<'a> {
        Ctx {
            path: format!("{}/{name}", self.path),
            sec,
        }
    }

    fn fault(&self, key: &str, line: usize, what: VgFault) -> VgError {
        VgError {
            line,
            path: if key.is_empty() {
                self.path.clone()
            } else {
                format!("{}/{key}", self.path)
            },
            what,
        }
    }

    fn value(&self, key: &str) -> Result<(&'a Value, usize), VgError> {
        match self.sec.get(key) {
            Some(item) => match &item.node {
                Node::Value(v) => Ok((v, item.line)),
                Node::Section(_) => Err(self.fault(key, item.line, VgFault::Type("a value"))),
            },
            None => Err(self.fault(key, self.sec.line, VgFault::Missing)),
        }
    }

    fn str(&self, key: &str) -> Result<String, VgError> {
        match self.value(key)? {
            (Value::Str(s), _) => Ok(s.clone()),
            (_, line) => Err(self.fault(key, line, VgFault::Type("a string"))),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<String>, VgError> {
        match self.sec.get(key) {
            None => Ok(None),
            Some(_) => self.str(key).map(Some),
        }
    }

    fn u64(&self, key: &str) -> Result<u64, VgError> {
        match self.value(key)? {
            (Value::Int(n), line) => {
                u64::try_from(*n).map_err(|_| self.fault(key, line, VgFault::Range(*n)))
            }
            (_, line) => Err(self.fault(key, line, VgFault::Type("an integer"))),
        }
    }

    fn array(&self, key: &str) -> Result<(&'a [Value], usize), VgError> {
        match self.value(key)? {
            (Value::Array(a), line) => Ok((a, line)),
            (_, line) => Err(self.fault(key, line, VgFault::Type("an array"))),
        }
    }

    fn section(&self, key: &str) -> Result<Option<Ctx<'a>>, VgError> {
        match self.sec.get(key) {
            None => Ok(None),
            Some(item) => match &item.node {
                Node::Section(s) => Ok(Some(self.child(key, s))),
                Node::Value(_) => Err(self.fault(key, item.line, VgFault::Type("a section"))),
            },
        }
    }
}

/// The VG of a parsed metadata text: the one top-level section (the text
/// also holds top-level keys such as `contents` and `version`).
pub fn volume_group(top: &Section) -> Result<VolumeGroup, VgError> {
    let Some((name, sec)) = top.sections().next() else {
        return Err(VgError {
            line: top.line,
            path: String::new(),
            what: VgFault::NoVg,
        });
    };
    let vg = Ctx {
        path: name.to_string(),
        sec,
    };
    let extent_size = vg.u64("extent_size")?;
    if extent_size == 0 {
        let (_, line) = vg.value("extent_size")?;
        return Err(vg.fault("extent_size", line, VgFault::Range(0)));
    }
    let mut out = VolumeGroup {
        name: name.to_string(),
        id: vg.str("id")?,
        seqno: vg.u64("seqno")?,
        extent_size,
        physical_volumes: Vec::new(),
        logical_volumes: Vec::new(),
    };
    if let Some(pvs) = vg.section("physical_volumes")? {
        for (pv_name, s) in pvs.sec.sections() {
            let pv = pvs.child(pv_name, s);
            out.physical_volumes.push(PhysicalVolume {
                name: pv_name.to_string(),
                id: pv.str("id")?,
                device: pv.opt_str("device")?,
                dev_size: pv.u64("dev_size")?,
                pe_start: pv.u64("pe_start")?,
                pe_count: pv.u64("pe_count")?,
            });
        }
    }
    if let Some(lvs) = vg.section("logical_volumes")? {
        for (lv_name, s) in lvs.sec.sections() {
            let lv = lvs.child(lv_name, s);
            out.logical_volumes
                .push(logical_volume(&lv, lv_name, &out.physical_volumes)?);
        }
    }
    Ok(out)
}

fn logical_volume(
    lv: &Ctx<'_>,
    name: &str,
    pvs: &[PhysicalVolume],
) -> Result<LogicalVolume, VgError> {
    let (status, _) = lv.array("status")?;
    let mut segments = Vec::new();
    for (seg_name, s) in lv.sec.sections() {
        if seg_name.starts_with("segment") {
            segments.push(segment(&lv.child(seg_name, s), pvs)?);
        }
    }
    segments.sort_by_key(|s| s.start_extent);
    Ok(LogicalVolume {
        name: name.to_string(),
        id: lv.str("id")?,
        status: status
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        segments,
    })
}

fn segment(seg: &Ctx<'_>, pvs: &[PhysicalVolume]) -> Result<Segment, VgError> {
    let start_extent = seg.u64("start_extent")?;
    let extent_count = seg.u64("extent_count")?;
    let type_name = seg.str("type")?;
    let kind = if type_name == "striped" || type_name == "linear" {
        striped(seg, extent_count, pvs)?
    } else {
        SegmentKind::Other {
            type_name,
            refs: refs(seg.sec),
        }
    };
    Ok(Segment {
        start_extent,
        extent_count,
        kind,
    })
}

fn striped(
    seg: &Ctx<'_>,
    extent_count: u64,
    pvs: &[PhysicalVolume],
) -> Result<SegmentKind, VgError> {
    let stripe_count = seg.u64("stripe_count")?;
    let (list, line) = seg.array("stripes")?;
    let invalid = |what: String| seg.fault("stripes", line, VgFault::Invalid(what));
    if stripe_count == 0 || list.len() as u64 != stripe_count.saturating_mul(2) {
        return Err(invalid(format!(
            "{} entries for stripe_count {stripe_count}",
            list.len()
        )));
    }
    if extent_count % stripe_count != 0 {
        return Err(invalid(format!(
            "{extent_count} extents do not split over {stripe_count} stripes"
        )));
    }
    let stripe_size = if stripe_count > 1 {
        let n = seg.u64("stripe_size")?;
        if n == 0 || !n.is_power_of_two() {
            let (_, line) = seg.value("stripe_size")?;
            return Err(seg.fault(
                "stripe_size",
                line,
                VgFault::Invalid(format!("{n} sectors is not a power of two")),
            ));
        }
        n
    } else {
        0
    };
    let mut stripes = Vec::new();
    for pair in list.chunks(2) {
        match pair {
            [Value::Str(pv), Value::Int(start)] => {
                if !pvs.iter().any(|p| &p.name == pv) {
                    return Err(invalid(format!("names unknown PV {pv:?}")));
                }
                let start_extent =
                    u64::try_from(*start).map_err(|_| invalid(format!("start {start}")))?;
                stripes.push(Area {
                    pv: pv.clone(),
                    start_extent,
                });
            }
            _ => return Err(invalid("entries are not (\"pvN\", extent) pairs".into())),
        }
    }
    Ok(SegmentKind::Striped {
        stripe_size,
        stripes,
    })
}

/// Every string in the segment other than its type, with the integer that
/// follows it in an array if there is one.
fn refs(sec: &Section) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    for item in &sec.items {
        match &item.node {
            Node::Value(Value::Str(s)) if item.key != "type" => out.push((s.clone(), None)),
            Node::Value(Value::Array(a)) => {
                let mut it = a.iter().peekable();
                while let Some(v) = it.next() {
                    if let Value::Str(s) = v {
                        let n = match it.peek() {
                            Some(Value::Int(n)) => u64::try_from(*n).ok(),
                            _ => None,
                        };
                        out.push((s.clone(), n));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::text::parse;
    use super::*;

    const META: &str = r#"vgt {
	id = "c406in-TlHl-5WAY-8ygH-KPYY-i3uM-dVkZPQ"
	seqno = 3
	status = ["RESIZEABLE", "READ", "WRITE"]
	extent_size = 8192
	physical_volumes {
		pv0 {
			id = "nJUKp3-27ow-Pa7W-7MQV-ADBX-nBUr-ZcnUo8"
			device = "/dev/loop0"
			dev_size = 131072
			pe_start = 2048
			pe_count = 15
		}
	}
	logical_volumes {
		lv1 {
			id = "ep5P7c-ojPT-uRjs-0RhM-JIIp-ySIM-puTuph"
			status = ["READ", "WRITE", "VISIBLE"]
			segment_count = 2
			segment2 {
				start_extent = 2
				extent_count = 1
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 4]
			}
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "striped"
				stripe_count = 2
				stripe_size = 128
				stripes = ["pv0", 0, "pv0", 9]
			}
		}
		pool {
			id = "x"
			status = ["READ", "WRITE", "VISIBLE"]
			segment1 {
				start_extent = 0
				extent_count = 1
				type = "thin-pool"
				metadata = "pool_tmeta"
				pool = "pool_tdata"
				transaction_id = 0
			}
		}
	}
}
contents = "Text Format Volume Group"
"#;

    #[test]
    fn model_of_a_vg() {
        let vg = volume_group(&parse(META.as_bytes()).unwrap()).unwrap();
        assert_eq!(vg.name, "vgt");
        assert_eq!(vg.extent_size, 8192);
        assert_eq!(vg.physical_volumes[0].pe_start, 2048);
        let lv = &vg.logical_volumes[0];
        assert_eq!(lv.extent_count(), 5);
        assert!(lv.visible());
        assert_eq!(lv.segments[0].type_name(), "striped");
        assert_eq!(lv.segments[0].area_len(), 2);
        assert_eq!(lv.segments[1].type_name(), "linear");
        assert_eq!(
            lv.segments[1].kind,
            SegmentKind::Striped {
                stripe_size: 0,
                stripes: vec![Area {
                    pv: "pv0".into(),
                    start_extent: 4
                }]
            }
        );
        let SegmentKind::Other { type_name, refs } = &vg.logical_volumes[1].segments[0].kind else {
            panic!()
        };
        assert_eq!(type_name, "thin-pool");
        assert_eq!(
            refs,
            &[
                ("pool_tmeta".to_string(), None),
                ("pool_tdata".to_string(), None)
            ]
        );
    }

    #[test]
    fn faults_name_the_place() {
        let bad = META.replace("\"pv0\", 9", "\"pv7\", 9");
        let e = volume_group(&parse(bad.as_bytes()).unwrap()).unwrap_err();
        assert_eq!(e.path, "vgt/logical_volumes/lv1/segment1/stripes");
        assert_eq!(e.line, 33);
        assert!(e.to_string().contains("unknown PV \"pv7\""), "{e}");
        let bad = META.replace("pe_start = 2048", "pe_start = -1");
        let e = volume_group(&parse(bad.as_bytes()).unwrap()).unwrap_err();
        assert_eq!(e.what, VgFault::Range(-1));
        assert_eq!(e.path, "vgt/physical_volumes/pv0/pe_start");
        let e = volume_group(&parse(b"a = 1").unwrap()).unwrap_err();
        assert_eq!(e.what, VgFault::NoVg);
        let bad = META.replace("extent_count = 4", "extent_count = 5");
        assert!(volume_group(&parse(bad.as_bytes()).unwrap()).is_err());
    }
}
