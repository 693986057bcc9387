//! md RAID1 arrays flattened on the way out: the guest gets the filesystem
//! that was inside the array, written where the member partition was.
//!
//! The source stays read-only; what moves is the view the copy reads
//! through ([`Flattened`]): inside a flattened member the target's bytes
//! come from the member's data area (after the superblock for 1.1/1.2), and
//! the rest of the partition, like the whole of every further member of an
//! array already sent, reads as zeros. Each array so travels once.

use std::collections::BTreeMap;
use std::path::Path;

use crate::source::device::{DeviceError, ReadAt, check_range};

/// One partition of the target seen through the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remap {
    /// The partition on the target (same offsets as on the source).
    pub start: u64,
    pub len: u64,
    /// Where the first `data_len` bytes of the partition come from on the
    /// source; `None`: the partition reads as zeros (a member not sent).
    pub source: Option<u64>,
    pub data_len: u64,
}

/// A source disk as the guest should see it: `remaps` applied, every other
/// byte passed through.
pub struct Flattened<R> {
    inner: R,
    /// Sorted by start, non-overlapping, inside the disk.
    remaps: Vec<Remap>,
}

impl<R: ReadAt> Flattened<R> {
    /// Remaps that overlap an earlier one, leave the disk, or would read
    /// past its end are dropped: the view never reads outside `inner`.
    pub fn new(inner: R, mut remaps: Vec<Remap>) -> Self {
        let size = inner.size();
        remaps.sort_by_key(|r| r.start);
        let mut kept: Vec<Remap> = Vec::with_capacity(remaps.len());
        for r in remaps {
            let fits = r.start.checked_add(r.len).is_some_and(|e| e <= size)
                && r.data_len <= r.len
                && r.source
                    .is_none_or(|s| s.checked_add(r.data_len).is_some_and(|e| e <= size));
            let after_last = kept.last().is_none_or(|k| k.start + k.len <= r.start);
            if fits && after_last && r.len > 0 {
                kept.push(r);
            }
        }
        Flattened {
            inner,
            remaps: kept,
        }
    }

    pub fn remaps(&self) -> &[Remap] {
        &self.remaps
    }
}

impl<R: ReadAt> ReadAt for Flattened<R> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(self.inner.name(), offset, buf.len(), self.inner.size())?;
        let mut pos = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            // The first remap that ends after pos.
            let i = self.remaps.partition_point(|r| r.start + r.len <= pos);
            let want = rest.len() as u64;
            let (n, from) = match self.remaps.get(i) {
                Some(r) if r.start <= pos => {
                    let rel = pos - r.start;
                    match r.source {
                        Some(src) if rel < r.data_len => {
                            (want.min(r.data_len - rel), Some(src + rel))
                        }
                        _ => {
                            let zero_end = r.start + r.len;
                            (want.min(zero_end - pos), None)
                        }
                    }
                }
                Some(r) => (want.min(r.start - pos), Some(pos)),
                None => (want, Some(pos)),
            };
            // n <= rest.len(), so it fits in usize.
            let (head, tail) = rest.split_at_mut(usize::try_from(n).unwrap_or(rest.len()));
            match from {
                Some(src) => self.inner.read_exact_at(src, head)?,
                None => head.fill(0),
            }
            pos += n;
            rest = tail;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn name(&self) -> &Path {
        self.inner.name()
    }
}

/// The md RAID1 arrays met so far, over all source disks of one send.
#[derive(Debug, Default)]
pub struct MdArrays {
    arrays: BTreeMap<String, ArraySeen>,
    /// The RAID0/5/6/10 arrays, assembled rather than flattened.
    pub striped: super::assemble::Striped,
}

#[derive(Debug)]
struct ArraySeen {
    raid_disks: u32,
    /// Active members found (the one sent included).
    present: u32,
    /// Source disk index and what was sent of it ("partition 1").
    sent: Option<(usize, String)>,
    /// After a survey of every disk ([`MdArrays::candidate`]): the member
    /// to send, the first whose data area checks out (else the first).
    chosen: Option<(usize, String)>,
    /// Whether `chosen` is one whose data area checks out.
    chosen_ok: bool,
}

impl ArraySeen {
    fn new(raid_disks: u32) -> Self {
        ArraySeen {
            raid_disks,
            present: 0,
            sent: None,
            chosen: None,
            chosen_ok: false,
        }
    }
}

/// What to do with one active RAID1 member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberFate {
    /// The member the array's data is sent from.
    Send,
    /// The array travels from this member.
    Duplicate { disk: usize, what: String },
}

impl MdArrays {
    /// Survey, before any disk is planned: an active member of `uuid` on
    /// source disk `disk`, and whether its data area checks out. With every
    /// member known, a healthy one carries the array even after a member
    /// whose superblock is damaged, and the others are not sent.
    pub fn candidate(
        &mut self,
        uuid: &str,
        raid_disks: u32,
        disk: usize,
        what: &str,
        sendable: bool,
    ) {
        let a = self
            .arrays
            .entry(uuid.to_string())
            .or_insert_with(|| ArraySeen::new(raid_disks));
        a.present += 1;
        a.raid_disks = a.raid_disks.max(raid_disks);
        if a.chosen.is_none() || (sendable && !a.chosen_ok) {
            a.chosen = Some((disk, what.to_string()));
            a.chosen_ok = sendable;
        }
    }

    /// Records an active member of `uuid` on source disk `disk` as it is
    /// planned. After a survey the chosen member is the one to send;
    /// without one, the first whose data area could be read (`sendable`)
    /// is, and members before it are sent too.
    pub fn member(
        &mut self,
        uuid: &str,
        raid_disks: u32,
        disk: usize,
        what: &str,
        sendable: bool,
    ) -> MemberFate {
        let a = self
            .arrays
            .entry(uuid.to_string())
            .or_insert_with(|| ArraySeen::new(raid_disks));
        if let Some((cd, cw)) = &a.chosen {
            return if *cd == disk && cw == what {
                a.sent = Some((disk, what.to_string()));
                MemberFate::Send
            } else {
                MemberFate::Duplicate {
                    disk: *cd,
                    what: cw.clone(),
                }
            };
        }
        a.present += 1;
        a.raid_disks = a.raid_disks.max(raid_disks);
        match &a.sent {
            Some((disk, what)) => MemberFate::Duplicate {
                disk: *disk,
                what: what.clone(),
            },
            None => {
                if sendable {
                    a.sent = Some((disk, what.to_string()));
                }
                MemberFate::Send
            }
        }
    }

    /// Once every disk is described: `(disk, note)` for each array sent
    /// with fewer members present than it has slots.
    pub fn degraded(&self) -> Vec<(usize, String)> {
        self.arrays
            .iter()
            .filter(|(_, a)| a.present < a.raid_disks)
            .filter_map(|(uuid, a)| {
                let (disk, what) = a.sent.as_ref()?;
                Some((
                    *disk,
                    format!(
                        "{what}: md array {uuid} is degraded: {} of {} members present; \
                         copied from the one on disk {disk}",
                        a.present, a.raid_disks
                    ),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::device::MemDisk;

    fn disk() -> Vec<u8> {
        (0..4096u32).map(|i| (i % 251) as u8).collect()
    }

    /// The view, byte by byte, from the definition.
    fn reference(data: &[u8], remaps: &[Remap], at: u64) -> u8 {
        for r in remaps {
            if at >= r.start && at < r.start + r.len {
                let rel = at - r.start;
                return match r.source {
                    Some(s) if rel < r.data_len => data[(s + rel) as usize],
                    _ => 0,
                };
            }
        }
        data[at as usize]
    }

    #[test]
    fn member_data_moves_to_the_partition_start_and_the_rest_is_zero() {
        let data = disk();
        let remaps = vec![
            Remap {
                start: 1000,
                len: 1000,
                source: Some(1100),
                data_len: 800,
            },
            Remap {
                start: 3000,
                len: 500,
                source: None,
                data_len: 0,
            },
        ];
        let v = Flattened::new(MemDisk::new(data.clone()), remaps.clone());
        let mut all = vec![0u8; 4096];
        v.read_exact_at(0, &mut all).unwrap();
        assert_eq!(&all[..1000], &data[..1000]);
        assert_eq!(&all[1000..1800], &data[1100..1900]);
        assert!(all[1800..2000].iter().all(|&b| b == 0));
        assert_eq!(&all[2000..3000], &data[2000..3000]);
        assert!(all[3000..3500].iter().all(|&b| b == 0));
        assert_eq!(&all[3500..], &data[3500..]);
        assert!(v.read_exact_at(4000, &mut [0u8; 97]).is_err());
    }

    #[test]
    fn arrays_travel_once_and_degraded_ones_are_reported() {
        let mut m = MdArrays::default();
        assert_eq!(m.member("a", 2, 0, "partition 1", true), MemberFate::Send);
        assert_eq!(
            m.member("a", 2, 1, "partition 1", true),
            MemberFate::Duplicate {
                disk: 0,
                what: "partition 1".into()
            }
        );
        assert_eq!(m.member("b", 2, 1, "partition 2", true), MemberFate::Send);
        let d = m.degraded();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].0, 1);
        assert!(d[0].1.contains("md array b is degraded: 1 of 2"), "{d:?}");
    }

    #[test]
    fn after_a_survey_a_healthy_member_carries_the_array() {
        let mut m = MdArrays::default();
        m.candidate("a", 2, 0, "partition 1", false);
        m.candidate("a", 2, 1, "partition 1", true);
        assert_eq!(
            m.member("a", 2, 0, "partition 1", false),
            MemberFate::Duplicate {
                disk: 1,
                what: "partition 1".into()
            }
        );
        assert_eq!(m.member("a", 2, 1, "partition 1", true), MemberFate::Send);
        assert!(m.degraded().is_empty());
        // No healthy member: the first is sent (whole), the others not.
        let mut m = MdArrays::default();
        m.candidate("b", 3, 0, "partition 2", false);
        m.candidate("b", 3, 1, "partition 2", false);
        assert_eq!(m.member("b", 3, 0, "partition 2", false), MemberFate::Send);
        assert!(matches!(
            m.member("b", 3, 1, "partition 2", false),
            MemberFate::Duplicate { disk: 0, .. }
        ));
        let d = m.degraded();
        assert!(d[0].1.contains("2 of 3 members present"), "{d:?}");
    }

    proptest::proptest! {
        #[test]
        fn the_view_matches_its_definition(
            raw in proptest::collection::vec((0u64..5000, 0u64..3000, proptest::option::of(0u64..5000), 0u64..3000), 0..5),
            at in 0u64..4096, len in 0usize..600,
        ) {
            let data = disk();
            let remaps: Vec<Remap> = raw.iter().map(|&(start, len, source, data_len)| Remap { start, len, source, data_len }).collect();
            let v = Flattened::new(MemDisk::new(data.clone()), remaps);
            let kept = v.remaps().to_vec();
            for r in &kept {
                proptest::prop_assert!(r.start + r.len <= 4096 && r.data_len <= r.len);
            }
            let mut buf = vec![0u8; len];
            match v.read_exact_at(at, &mut buf) {
                Ok(()) => {
                    for (i, b) in buf.iter().enumerate() {
                        proptest::prop_assert_eq!(*b, reference(&data, &kept, at + i as u64));
                    }
                }
                Err(_) => proptest::prop_assert!(at + len as u64 > 4096),
            }
        }
    }
}
