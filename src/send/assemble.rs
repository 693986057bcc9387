//! md RAID0, RAID10 and RAID5/6 arrays: assembled from their members in userspace
//! (see [`crate::source::raid`] for why not by the kernel) and sent as one
//! extra guest disk each; their members' partitions then carry nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::source::device::{Device, DeviceError};
use crate::source::filesystems::md::{
    MD_FEATURE_RECOVERY_OFFSET, MD_FEATURE_RESHAPE_ACTIVE, MdDataError, MdSuper,
};
use crate::source::raid::{Assembled, Geometry, RaidError, Slot};

/// The levels assembled here.
pub fn assembles(level: Option<&str>) -> bool {
    matches!(level, Some("raid0" | "raid10" | "raid5" | "raid6"))
}

/// One member partition met in the survey.
#[derive(Debug)]
struct Seen {
    disk: usize,
    what: String,
    path: PathBuf,
    start: u64,
    len: u64,
    sup: Result<MdSuper, String>,
}

#[derive(Debug, Default)]
struct ArraySeen {
    members: Vec<Seen>,
    /// After [`Striped::assemble`]: the guest disk it is sent as, or why it
    /// is not assembled (its members are then copied whole).
    fate: Option<Result<usize, String>>,
}

/// The RAID0/5/6/10 arrays of one send, by array UUID.
#[derive(Debug, Default)]
pub struct Striped {
    arrays: BTreeMap<String, ArraySeen>,
}

/// An array ready to be sent as guest disk `disk`.
pub struct ToSend {
    pub disk: usize,
    pub uuid: String,
    pub level: String,
    pub version: &'static str,
    pub array: Assembled,
    /// What was said about its assembly (members used, left out, missing).
    pub notes: Vec<String>,
}

/// Why the send cannot go on with an array.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Raid(#[from] RaidError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl Striped {
    /// Survey: a member partition (`start..start+len` of `path`, source
    /// disk `disk`) of array `uuid`, and its superblock as read again.
    #[allow(clippy::too_many_arguments)]
    pub fn candidate(
        &mut self,
        uuid: &str,
        disk: usize,
        what: &str,
        path: PathBuf,
        start: u64,
        len: u64,
        sup: Result<MdSuper, MdDataError>,
    ) {
        self.arrays
            .entry(uuid.to_string())
            .or_default()
            .members
            .push(Seen {
                disk,
                what: what.to_string(),
                path,
                start,
                len,
                sup: sup.map_err(|e| e.to_string()),
            });
    }

    /// The guest disk array `uuid` is sent as; `Err(why)` when it is not
    /// assembled; `None` when it was not surveyed.
    pub fn fate(&self, uuid: &str) -> Option<Result<usize, String>> {
        self.arrays.get(uuid).and_then(|a| a.fate.clone())
    }

    /// Assembles every array met, numbering their guest disks from
    /// `first_disk`. An array that cannot be read (a RAID0 slot, both
    /// halves of a RAID10 pair missing) stops the send; one whose
    /// superblocks are not understood is left to a whole-member copy.
    pub fn assemble(&mut self, first_disk: usize) -> Result<Vec<ToSend>, AssembleError> {
        let mut out = Vec::new();
        for (uuid, a) in &mut self.arrays {
            let disk = first_disk + out.len();
            match assemble_one(uuid, &a.members, disk)? {
                Ok(t) => {
                    a.fate = Some(Ok(disk));
                    out.push(t);
                }
                Err(why) => {
                    log::warn!("md array {uuid}: {why}: its members are copied whole");
                    a.fate = Some(Err(why));
                }
            }
        }
        Ok(out)
    }
}

/// The freshest readable superblock of the array: its geometry rules.
fn reference(members: &[Seen]) -> Result<&MdSuper, String> {
    members
        .iter()
        .filter_map(|m| m.sup.as_ref().ok())
        .max_by_key(|s| s.events)
        .ok_or_else(|| {
            let whys: Vec<String> = members
                .iter()
                .filter_map(|m| m.sup.as_ref().err().map(|e| format!("{}: {e}", m.what)))
                .collect();
            format!("no member's superblock reads ({})", whys.join("; "))
        })
}

/// Why member `m` is left out of an array whose reference is `r`, if it is.
fn left_out(m: &Seen, r: &MdSuper) -> Option<String> {
    let s = match &m.sup {
        Ok(s) => s,
        Err(e) => return Some(e.clone()),
    };
    if s.role.is_none_or(|x| x >= r.raid_disks) {
        return Some("not an active member (spare or faulty)".into());
    }
    if (s.level, s.layout, s.chunk, s.raid_disks) != (r.level, r.layout, r.chunk, r.raid_disks) {
        return Some("its superblock's level, layout, chunk or member count differ".into());
    }
    if s.events < r.events {
        return Some(format!(
            "stale: event count {}, the array's {}",
            s.events, r.events
        ));
    }
    if s.features & MD_FEATURE_RECOVERY_OFFSET != 0 {
        return Some("being rebuilt (recovery offset set)".into());
    }
    None
}

/// `Ok(Err(why))`: not assembled, copied whole.
fn assemble_one(
    uuid: &str,
    members: &[Seen],
    disk: usize,
) -> Result<Result<ToSend, String>, AssembleError> {
    let r = match reference(members) {
        Ok(r) => r.clone(),
        Err(why) => return Ok(Err(why)),
    };
    let level = r.level_name();
    if r.features & MD_FEATURE_RESHAPE_ACTIVE != 0 {
        return Ok(Err("a reshape is in progress".into()));
    }
    let Members {
        slots,
        from,
        sizes,
        mut notes,
    } = members_by_slot(uuid, &level, &r, members)?;
    let geometry = match geometry(&level, &r, sizes) {
        Ok(g) => g,
        Err(why) => return Ok(Err(why)),
    };
    let absent = |slot: u32| {
        if notes.is_empty() {
            format!("no member with role {slot} among the source disks")
        } else {
            format!(
                "no usable member with role {slot} among the source disks; {}",
                notes.join("; ")
            )
        }
    };
    let array = Assembled::new(uuid, &level, geometry, slots, &absent)?;
    // As the kernel refuses to start a dirty degraded array: the parity of
    // stripes written when it stopped may not match, so rebuilt chunks could
    // be wrong without a word.
    if !array.missing().is_empty() && matches!(level.as_str(), "raid5" | "raid6") && !r.clean {
        return Ok(Err(format!(
            "degraded (slots {:?} missing) and not shut down cleanly: its parity may be stale",
            array.missing()
        )));
    }
    notes.insert(0, assembled_note(uuid, &level, &r, &array, &from, disk));
    Ok(Ok(ToSend {
        disk,
        uuid: uuid.to_string(),
        level,
        version: r.version,
        array,
        notes,
    }))
}

/// The members of one array placed by their role, with what was left out.
struct Members<'a> {
    slots: Vec<Option<Slot>>,
    from: Vec<Option<&'a Seen>>,
    /// Each slot's data area in bytes; 0 where no member fills it.
    sizes: Vec<u64>,
    notes: Vec<String>,
}

/// Places each usable member of the array whose reference superblock is
/// `r` in its slot; members left out (stale, a taken slot, no data area)
/// get a note naming them and why.
fn members_by_slot<'a>(
    uuid: &str,
    level: &str,
    r: &MdSuper,
    members: &'a [Seen],
) -> Result<Members<'a>, AssembleError> {
    let n = usize::try_from(r.raid_disks).unwrap_or(0).min(256);
    let mut out = Members {
        slots: vec![None; n],
        from: vec![None; n],
        sizes: vec![0u64; n],
        notes: Vec::new(),
    };
    for m in members {
        let place = format!("disk {} {}", m.disk, m.what);
        if let Some(why) = left_out(m, r) {
            out.notes
                .push(format!("md {level} array {uuid}: {place} left out: {why}"));
            continue;
        }
        let Ok(s) = &m.sup else { continue };
        let slot = s.role.and_then(|x| usize::try_from(x).ok()).unwrap_or(n);
        if slot >= n || out.from[slot].is_some() {
            out.notes.push(format!(
                "md {level} array {uuid}: {place} left out: slot {slot} is taken"
            ));
            continue;
        }
        let len = if level == "raid0" {
            s.data_len
        } else {
            r.dev_size
        };
        let area = match s.data_area(&m.path, m.len, len) {
            Ok(a) => a,
            Err(e) => {
                out.notes
                    .push(format!("md {level} array {uuid}: {place} left out: {e}"));
                continue;
            }
        };
        out.sizes[slot] = area.len;
        out.slots[slot] = Some(Slot {
            dev: Arc::new(Device::open(&m.path)?),
            start: m.start + area.offset,
            len: area.len,
        });
        out.from[slot] = Some(m);
    }
    Ok(out)
}

/// The chunk mapping of a `level` array described by `r`, its members'
/// data areas `sizes` long (RAID0's zones depend on them).
fn geometry(level: &str, r: &MdSuper, mut sizes: Vec<u64>) -> Result<Geometry, String> {
    if level == "raid0" {
        // A missing slot's size is unknown: Assembled::new's error names it.
        if let Some(slot) = sizes.iter().position(|&s| s == 0) {
            sizes[slot] = r.chunk.max(4096);
        }
        Geometry::raid0(r.chunk, r.layout, &sizes)
    } else if level == "raid10" {
        Geometry::raid10(r.chunk, r.layout, r.raid_disks, r.dev_size)
    } else {
        let parity = if level == "raid6" { 2 } else { 1 };
        Geometry::parity(r.chunk, r.layout, r.raid_disks, parity, r.dev_size)
    }
}

/// The report's line for an assembled array: its state, chunk size and
/// which disk each slot came from.
fn assembled_note(
    uuid: &str,
    level: &str,
    r: &MdSuper,
    array: &Assembled,
    from: &[Option<&Seen>],
    disk: usize,
) -> String {
    let used: Vec<String> = from
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.map(|m| format!("slot {i} from disk {} {}", m.disk, m.what)))
        .collect();
    let state = if array.missing().is_empty() {
        format!("all {} members present", r.raid_disks)
    } else {
        format!(
            "degraded: slots {:?} of {} missing",
            array.missing(),
            r.raid_disks
        )
    };
    format!(
        "md {} {level} array {uuid} assembled ({state}; chunk {} KiB; {}): sent as disk {disk}",
        r.version,
        r.chunk / 1024,
        used.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup(role: Option<u32>, events: u64) -> MdSuper {
        MdSuper {
            version: "1.2",
            sb_offset: 4096,
            level: 10,
            layout: 0x102,
            chunk: 65536,
            raid_disks: 4,
            role,
            events,
            data_offset: 1 << 20,
            data_len: 39 << 20,
            dev_size: 39 << 20,
            features: 0,
            clean: true,
        }
    }

    fn seen(sup: Result<MdSuper, String>) -> Seen {
        Seen {
            disk: 1,
            what: "partition 1".into(),
            path: PathBuf::from("/dev/sdb"),
            start: 1 << 20,
            len: 40 << 20,
            sup,
        }
    }

    #[test]
    fn stale_spare_rebuilding_and_odd_members_are_left_out_with_why() {
        let r = sup(Some(0), 9);
        assert_eq!(left_out(&seen(Ok(sup(Some(1), 9))), &r), None);
        assert_eq!(
            left_out(&seen(Ok(sup(Some(1), 8))), &r).as_deref(),
            Some("stale: event count 8, the array's 9")
        );
        assert!(left_out(&seen(Ok(sup(None, 9))), &r).is_some_and(|w| w.contains("spare")));
        let mut rebuilding = sup(Some(2), 9);
        rebuilding.features = MD_FEATURE_RECOVERY_OFFSET;
        assert!(left_out(&seen(Ok(rebuilding)), &r).is_some_and(|w| w.contains("rebuilt")));
        let mut other = sup(Some(2), 9);
        other.chunk = 4096;
        assert!(left_out(&seen(Ok(other)), &r).is_some_and(|w| w.contains("differ")));
        assert_eq!(
            left_out(&seen(Err("checksum".into())), &r).as_deref(),
            Some("checksum")
        );
        // The freshest readable superblock rules.
        let members = [
            seen(Ok(sup(Some(0), 3))),
            seen(Err("x".into())),
            seen(Ok(sup(Some(1), 9))),
        ];
        assert_eq!(reference(&members).map(|s| s.events), Ok(9));
        let e = reference(&[seen(Err("bad magic".into()))]).unwrap_err();
        assert_eq!(e, "no member's superblock reads (partition 1: bad magic)");
    }
}
