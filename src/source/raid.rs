//! md RAID0 and RAID10 (near layout) arrays assembled from their members
//! in userspace, read-only, from what their superblocks say (chunk size,
//! data offset, raid_disks, layout).
//!
//! Why not the live kernel's md (`mdadm --assemble --readonly` after
//! `BLKROSET`): assembling registers the array with the kernel, which may
//! still write to members on the way (a `--readonly` array switches to
//! read-write on the first write anyone issues, and udev rules or a
//! stray `mdadm --incremental` can start a resync); a source disk must never
//! be written. It would also make the copy depend on md and mdadm in the
//! live image and on a kernel this build machine lacks, so the mapping
//! could only be tested in a VM. The mapping itself is small and
//! deterministic (the kernel's `raid0.c` `map_sector` and `raid10.c`
//! `__raid10_find_phys`), and here it is checked against hand-striped
//! images. RAID5/6 (the four rotating-parity algorithms) are assembled too;
//! one missing member is rebuilt from P by XOR. Two missing members of a
//! RAID6 would need Q (Reed-Solomon), which is not done: such an array stops
//! the send.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::device::{DeviceError, ReadAt, check_range};

#[derive(Debug, thiserror::Error)]
pub enum RaidError {
    #[error(
        "md {level} array {uuid}: slot {slot} of {raid_disks} is missing ({why}); a RAID0 cannot \
         be read without every member: attach the disk holding that member, or pass \
         --all-blocks to copy the members as they are"
    )]
    MissingSlot {
        uuid: String,
        level: String,
        slot: u32,
        raid_disks: u32,
        why: String,
    },
    #[error(
        "md {level} array {uuid}: slots {slots:?} of {raid_disks} are missing and some chunks \
         can be neither read nor rebuilt without them: attach the disks holding them, or pass \
         --all-blocks to copy the members as they are"
    )]
    Lost {
        level: String,
        uuid: String,
        slots: Vec<u32>,
        raid_disks: u32,
    },
    #[error("md {level} array {uuid}: {why}")]
    Unsupported {
        uuid: String,
        level: String,
        why: String,
    },
}

/// One stretch of a RAID0 where the same members are striped over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// First byte of the zone in the array.
    start: u64,
    len: u64,
    /// Where the zone begins in each of its members' data areas.
    dev_start: u64,
    /// Its members, by slot, in slot order.
    devs: Vec<usize>,
}

/// How array bytes map to member bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Geometry {
    Raid0 {
        chunk: u64,
        zones: Vec<Zone>,
        /// Later zones striped from their own start (the kernel's
        /// RAID0_ALT_MULTIZONE_LAYOUT, what kernels 3.14 to 5.3 did)
        /// rather than from the array's (RAID0_ORIG_LAYOUT).
        alt: bool,
        /// Bytes each slot's data area must hold.
        needs: Vec<u64>,
    },
    Raid10 {
        chunk: u64,
        near: u64,
        disks: u64,
        /// Bytes used of each member's data area.
        dev_len: u64,
    },
    /// RAID5 (`parity` 1) or RAID6 (2): rotating parity, one of the four
    /// md algorithms (left/right, symmetric/asymmetric).
    Parity {
        chunk: u64,
        disks: u64,
        parity: u64,
        algorithm: u32,
        dev_len: u64,
    },
}

/// RAID0 layouts in the superblock (md_p.h / raid0.h).
const RAID0_ORIG_LAYOUT: u32 = 1;
const RAID0_ALT_MULTIZONE_LAYOUT: u32 = 2;

impl Geometry {
    /// A RAID0 over members whose data areas are `sizes` bytes (slot
    /// order), built as the kernel's `create_strip_zones` does: each size
    /// rounded down to the chunk, then zone after zone over the members
    /// still larger than the zone's start.
    pub fn raid0(chunk: u64, layout: u32, sizes: &[u64]) -> Result<Geometry, String> {
        if chunk == 0 || chunk % 4096 != 0 {
            return Err(format!(
                "chunk size {chunk} bytes is not a multiple of 4 KiB"
            ));
        }
        if sizes.is_empty() {
            return Err("no members (raid_disks 0)".into());
        }
        let needs: Vec<u64> = sizes.iter().map(|s| s - s % chunk).collect();
        if needs.contains(&0) {
            return Err(format!(
                "a member's data area is smaller than one chunk ({chunk} bytes)"
            ));
        }
        let mut bounds: Vec<u64> = needs.clone();
        bounds.sort_unstable();
        bounds.dedup();
        let mut zones = Vec::new();
        let (mut start, mut dev_start) = (0u64, 0u64);
        for b in bounds {
            let devs: Vec<usize> = (0..needs.len()).filter(|&i| needs[i] >= b).collect();
            let len = (b - dev_start) * devs.len() as u64;
            zones.push(Zone {
                start,
                len,
                dev_start,
                devs,
            });
            start += len;
            dev_start = b;
        }
        let alt = match layout {
            RAID0_ALT_MULTIZONE_LAYOUT => true,
            RAID0_ORIG_LAYOUT => false,
            // Single-zone arrays map alike either way.
            _ if zones.len() == 1 => false,
            l => {
                return Err(format!(
                    "members of different sizes with layout {l} (neither original nor \
                     alternate): the kernel refuses such an array too"
                ));
            }
        };
        Ok(Geometry::Raid0 {
            chunk,
            zones,
            alt,
            needs,
        })
    }

    /// A RAID10 of `disks` members, `dev_len` bytes used of each, `layout`
    /// as md writes it (near copies in bits 0-7, far in 8-15, offset bit 16).
    pub fn raid10(chunk: u64, layout: u32, disks: u32, dev_len: u64) -> Result<Geometry, String> {
        let near = u64::from(layout & 0xff);
        let far = (layout >> 8) & 0xff;
        let offset = layout >> 16 & 1;
        if far != 1 || offset != 0 || near == 0 || near > u64::from(disks) {
            return Err(format!(
                "layout {layout:#x} (near={near}, far={far}, offset={offset}) for {disks} \
                 members: only near layouts (far=1) are assembled"
            ));
        }
        if chunk == 0 || !chunk.is_power_of_two() || chunk < 4096 {
            return Err(format!(
                "chunk size {chunk} bytes is not a power of two of at least 4 KiB"
            ));
        }
        Ok(Geometry::Raid10 {
            chunk,
            near,
            disks: u64::from(disks),
            dev_len: dev_len - dev_len % chunk,
        })
    }

    /// A RAID5 (`parity` 1) or RAID6 (2) of `disks` members, `dev_len`
    /// bytes used of each; `layout` is md's algorithm (0 left-asymmetric,
    /// 1 right-asymmetric, 2 left-symmetric, the default, 3
    /// right-symmetric).
    pub fn parity(
        chunk: u64,
        layout: u32,
        disks: u32,
        parity: u64,
        dev_len: u64,
    ) -> Result<Geometry, String> {
        if layout > 3 {
            return Err(format!(
                "layout {layout}: only the left/right symmetric/asymmetric algorithms (0-3) are \
                 assembled"
            ));
        }
        if u64::from(disks) < parity + 2 {
            return Err(format!("{disks} members are too few for {parity} parity"));
        }
        if chunk == 0 || chunk % 4096 != 0 {
            return Err(format!(
                "chunk size {chunk} bytes is not a multiple of 4 KiB"
            ));
        }
        Ok(Geometry::Parity {
            chunk,
            disks: u64::from(disks),
            parity,
            algorithm: layout,
            dev_len: dev_len - dev_len % chunk,
        })
    }

    /// The array's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Geometry::Raid0 { zones, .. } => zones.last().map_or(0, |z| z.start + z.len),
            Geometry::Raid10 {
                chunk,
                near,
                disks,
                dev_len,
            } => dev_len / chunk * disks / near * chunk,
            Geometry::Parity {
                disks,
                parity,
                dev_len,
                ..
            } => dev_len * (disks - parity),
        }
    }

    /// RAID5/6: where data chunk `c` lies: (stripe, data member, the
    /// parity member P), as raid5.c `raid5_compute_sector` computes them.
    fn parity_place(c: u64, disks: u64, parity: u64, algorithm: u32) -> (u64, u64, u64) {
        let data = disks - parity;
        let stripe = c / data;
        let dd = c % data;
        let pd = match algorithm {
            0 | 2 => disks - 1 - stripe % disks,
            _ => stripe % disks,
        };
        let dev = match algorithm {
            // Asymmetric: the data members in order, skipping P (and Q
            // after it, wrapping).
            0 | 1 => (0..disks)
                .filter(|d| !(0..parity).any(|k| (pd + k) % disks == *d))
                .nth(usize::try_from(dd).unwrap_or(0))
                .unwrap_or(0),
            // Symmetric: the data starts after the parity, wrapping.
            _ => (pd + parity + dd) % disks,
        };
        (stripe, dev, pd)
    }

    /// RAID5/6: the members whose bytes at the same stripe offset XOR to
    /// the chunk of array byte `off`: every other data member and P.
    fn parity_peers(&self, off: u64) -> Vec<(usize, u64)> {
        let Geometry::Parity {
            chunk,
            disks,
            parity,
            algorithm,
            ..
        } = self
        else {
            return Vec::new();
        };
        let (stripe, dev, pd) = Self::parity_place(off / chunk, *disks, *parity, *algorithm);
        let at = stripe * chunk + off % chunk;
        // RAID6's Q follows P: it takes no part in the XOR.
        let q = (*parity == 2).then_some((pd + 1) % disks);
        (0..*disks)
            .filter(|&d| d != dev && Some(d) != q)
            .map(|d| (usize::try_from(d).unwrap_or(0), at))
            .collect()
    }

    /// The copies of array byte `off` (< [`Geometry::size`]): (slot, byte
    /// in the slot's data area), preferred first, and how many bytes from
    /// `off` on stay in the same chunk.
    pub fn map(&self, off: u64) -> (Vec<(usize, u64)>, u64) {
        match self {
            Geometry::Raid0 {
                chunk, zones, alt, ..
            } => {
                let i = zones.partition_point(|z| z.start + z.len <= off);
                let Some(z) = zones.get(i).or(zones.last()) else {
                    return (Vec::new(), 1);
                };
                let in_zone = off - z.start.min(off);
                let nb = z.devs.len() as u64;
                let within = off % chunk;
                let row = in_zone / (chunk * nb);
                // raid0.c map_sector: the member from the chunk number
                // counted from the zone (alternate) or the array (original).
                let counted = if *alt { in_zone } else { off };
                let idx = usize::try_from(counted / chunk % nb).unwrap_or(0);
                let dev = z.devs.get(idx).copied().unwrap_or(0);
                (
                    vec![(dev, z.dev_start + row * chunk + within)],
                    chunk - within,
                )
            }
            Geometry::Raid10 {
                chunk, near, disks, ..
            } => {
                // raid10.c __raid10_find_phys: the copies of chunk c are
                // the "slots" c*near .. c*near+near-1, laid over the members
                // row by row.
                let within = off % chunk;
                let first = off / chunk * near;
                let copies = (first..first + near)
                    .map(|s| {
                        let dev = usize::try_from(s % disks).unwrap_or(0);
                        (dev, s / disks * chunk + within)
                    })
                    .collect();
                (copies, chunk - within)
            }
            Geometry::Parity {
                chunk,
                disks,
                parity,
                algorithm,
                ..
            } => {
                let within = off % chunk;
                let (stripe, dev, _) = Self::parity_place(off / chunk, *disks, *parity, *algorithm);
                let dev = usize::try_from(dev).unwrap_or(0);
                (vec![(dev, stripe * chunk + within)], chunk - within)
            }
        }
    }

    /// Bytes each slot's data area must hold.
    fn need(&self, slot: usize) -> u64 {
        match self {
            Geometry::Raid0 { needs, .. } => needs.get(slot).copied().unwrap_or(0),
            Geometry::Raid10 { dev_len, .. } | Geometry::Parity { dev_len, .. } => *dev_len,
        }
    }

    /// Slots whose loss together loses data, for a RAID10: each chunk's set
    /// of copies (the pattern repeats every `disks` chunks).
    fn copy_sets(&self) -> Vec<Vec<usize>> {
        match self {
            Geometry::Raid0 { needs, .. } => (0..needs.len()).map(|i| vec![i]).collect(),
            Geometry::Raid10 { chunk, disks, .. } => (0..*disks)
                .map(|c| self.map(c * chunk).0.into_iter().map(|(d, _)| d).collect())
                .collect(),
            // Any one member can be rebuilt from the others by P; two cannot
            // (RAID6's Q would need Reed-Solomon, not done here).
            Geometry::Parity { disks, .. } => (0..*disks)
                .flat_map(|a| (a + 1..*disks).map(move |b| vec![a, b]))
                .map(|v| {
                    v.into_iter()
                        .map(|d| usize::try_from(d).unwrap_or(0))
                        .collect()
                })
                .collect(),
        }
    }
}

/// A member's data area: `len` bytes at `start` of `dev`.
#[derive(Clone)]
pub struct Slot {
    pub dev: Arc<dyn ReadAt + Send + Sync>,
    pub start: u64,
    pub len: u64,
}

/// The array as one read-only disk.
pub struct Assembled {
    name: PathBuf,
    geometry: Geometry,
    slots: Vec<Option<Slot>>,
    missing: Vec<u32>,
}

impl Assembled {
    /// The array `uuid` of `level` ("raid0", "raid10", "raid5", "raid6")
    /// over `slots` (by slot number; `None`: missing, with why in
    /// `absent`). A RAID0 needs every slot; a RAID10 one copy of every
    /// chunk; a RAID5/6 all but one member.
    pub fn new(
        uuid: &str,
        level: &str,
        geometry: Geometry,
        mut slots: Vec<Option<Slot>>,
        absent: &dyn Fn(u32) -> String,
    ) -> Result<Assembled, RaidError> {
        let raid_disks = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        // A data area too small for its share is as good as missing.
        for (i, s) in slots.iter_mut().enumerate() {
            if s.as_ref().is_some_and(|s| s.len < geometry.need(i)) {
                *s = None;
            }
        }
        let missing: Vec<u32> = (0..raid_disks)
            .filter(|&i| slots.get(i as usize).is_none_or(Option::is_none))
            .collect();
        if let (Geometry::Raid0 { .. }, Some(&slot)) = (&geometry, missing.first()) {
            return Err(RaidError::MissingSlot {
                uuid: uuid.into(),
                level: level.into(),
                slot,
                raid_disks,
                why: absent(slot),
            });
        }
        let lost = geometry.copy_sets().iter().any(|set| {
            set.iter()
                .all(|&d| slots.get(d).is_none_or(Option::is_none))
        });
        if lost {
            return Err(RaidError::Lost {
                level: level.into(),
                uuid: uuid.into(),
                slots: missing,
                raid_disks,
            });
        }
        Ok(Assembled {
            name: PathBuf::from(format!("md {level} array {uuid}")),
            geometry,
            slots,
            missing,
        })
    }

    /// The slots not present (a degraded RAID10 or RAID5/6).
    pub fn missing(&self) -> &[u32] {
        &self.missing
    }

    /// RAID5/6: the bytes of array offset `pos` rebuilt from the peers.
    fn rebuild(&self, pos: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        out.fill(0);
        let mut buf = vec![0u8; out.len()];
        for (slot, at) in self.geometry.parity_peers(pos) {
            let Some(s) = self.slots.get(slot).and_then(Option::as_ref) else {
                return Err(DeviceError::Read {
                    path: self.name.clone(),
                    offset: pos,
                    len: out.len(),
                    source: std::io::Error::other(format!(
                        "slot {slot} is needed to rebuild this chunk and is missing too"
                    )),
                });
            };
            check_range(s.dev.name(), at, buf.len(), s.len)?;
            s.dev.read_exact_at(s.start + at, &mut buf)?;
            for (o, b) in out.iter_mut().zip(&buf) {
                *o ^= b;
            }
        }
        Ok(())
    }
}

impl ReadAt for Assembled {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(&self.name, offset, buf.len(), self.geometry.size())?;
        let mut pos = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let (copies, left) = self.geometry.map(pos);
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            // A copy that fails to read leaves the chunk to the next one;
            // the error is built only when none is left (this is the copy's
            // read path).
            let mut failed = None;
            let mut read = false;
            for (slot, at) in copies {
                let Some(s) = self.slots.get(slot).and_then(Option::as_ref) else {
                    continue;
                };
                match check_range(s.dev.name(), at, n, s.len)
                    .and_then(|()| s.dev.read_exact_at(s.start + at, head))
                {
                    Ok(()) => {
                        read = true;
                        break;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if !read {
                // The member is missing or unreadable: a RAID5/6 chunk is
                // the XOR of the stripe's other data chunks and P.
                let parity = matches!(self.geometry, Geometry::Parity { .. });
                if !(parity && self.rebuild(pos, head).is_ok()) {
                    return Err(failed.unwrap_or_else(|| DeviceError::Read {
                        path: self.name.clone(),
                        offset: pos,
                        len: n,
                        source: std::io::Error::other("no member present holds this chunk"),
                    }));
                }
            }
            pos += n as u64;
            rest = tail;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.geometry.size()
    }
    fn name(&self) -> &Path {
        &self.name
    }
}

#[cfg(test)]
mod tests;
