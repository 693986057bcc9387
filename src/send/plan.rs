//! The copy plan: which byte ranges of a disk are worth sending.
//!
//! Built over a small layout type of our own ([`DiskLayout`]) so that it does
//! not depend on how the layout was found: regions with a used-extent map
//! (ext2/3/4 block bitmaps, swap header) contribute only those extents;
//! everything else (tables, boot-loader gaps, unknown filesystems, space
//! between partitions) is sent in full.

use crate::source::extent::ExtentList;
use crate::wire::CHUNK_SIZE;

/// One partition (or whole-disk filesystem) of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    /// Used bytes relative to `start`; `None` = copy the region whole.
    pub used: Option<ExtentList>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskLayout {
    pub size: u64,
    pub regions: Vec<Region>,
    /// Why the plan looks as it does (shown in the report).
    pub notes: Vec<String>,
}

/// The ranges of one disk to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub size: u64,
    pub ranges: ExtentList,
    pub notes: Vec<String>,
}

/// One unit of transfer: a planned range cut at the [`CHUNK_SIZE`] grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub len: u32,
}

/// Every byte of the disk (`--all-blocks`, or no layout known).
pub fn whole_disk(size: u64, note: &str) -> DiskPlan {
    let mut ranges = ExtentList::new();
    ranges.push(0, size);
    DiskPlan {
        size,
        ranges,
        notes: vec![note.to_string()],
    }
}

/// The plan for `layout`: used extents inside mapped regions, all else whole.
/// Overlapping or out-of-disk regions are clamped, never trusted.
pub fn plan(layout: &DiskLayout) -> DiskPlan {
    let size = layout.size;
    let mut regions: Vec<&Region> = layout.regions.iter().collect();
    regions.sort_by_key(|r| r.start);
    let mut ranges = ExtentList::new();
    let mut cursor = 0u64;
    for r in regions {
        let start = r.start.max(cursor).min(size);
        let end = r.start.saturating_add(r.len).min(size);
        if end <= start {
            continue;
        }
        ranges.push(cursor, start - cursor);
        match &r.used {
            None => ranges.push(start, end - start),
            Some(used) => {
                for e in used.as_slice() {
                    let s = r.start.saturating_add(e.offset).max(start);
                    let t = r.start.saturating_add(e.end()).min(end);
                    if t > s {
                        ranges.push(s, t - s);
                    }
                }
            }
        }
        cursor = end;
    }
    ranges.push(cursor, size.saturating_sub(cursor));
    DiskPlan {
        size,
        ranges,
        notes: layout.notes.clone(),
    }
}

impl DiskPlan {
    /// The plan cut into pieces that never cross a grid cell, in offset order.
    pub fn pieces(&self) -> impl Iterator<Item = Piece> + '_ {
        self.ranges.as_slice().iter().flat_map(|e| {
            let mut off = e.offset;
            let end = e.end();
            std::iter::from_fn(move || {
                if off >= end {
                    return None;
                }
                let cell_end = (off / CHUNK_SIZE + 1).saturating_mul(CHUNK_SIZE);
                let stop = cell_end.min(end);
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "stop - off <= CHUNK_SIZE, which fits in u32"
                )]
                let len = (stop - off) as u32;
                let p = Piece { offset: off, len };
                off = stop;
                Some(p)
            })
        })
    }

    pub fn bytes(&self) -> u64 {
        self.ranges.total_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[(u64, u64)]) -> ExtentList {
        let mut l = ExtentList::new();
        for (o, n) in v {
            l.push(*o, *n);
        }
        l
    }

    #[test]
    fn used_maps_limit_their_region_and_the_rest_is_whole() {
        const M: u64 = 1 << 20;
        let layout = DiskLayout {
            size: 100 * M,
            regions: vec![
                // swap: header page only
                Region {
                    start: 60 * M,
                    len: 40 * M,
                    used: Some(list(&[(0, 4096)])),
                },
                // ext4: two used runs, one claiming past its end
                Region {
                    start: M,
                    len: 50 * M,
                    used: Some(list(&[(0, 2 * M), (49 * M, 5 * M)])),
                },
            ],
            notes: vec![],
        };
        let p = plan(&layout);
        assert_eq!(
            p.ranges,
            list(&[(0, 3 * M), (50 * M, M), (51 * M, 9 * M), (60 * M, 4096)])
        );
        // The gap between partitions (51..60 MiB) is sent whole.
        assert_eq!(p.bytes(), 3 * M + 10 * M + 4096);
    }

    #[test]
    fn pieces_follow_the_grid() {
        let p = whole_disk(CHUNK_SIZE * 2 + 5, "t");
        let v: Vec<Piece> = p.pieces().collect();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[2],
            Piece {
                offset: CHUNK_SIZE * 2,
                len: 5
            }
        );
        let layout = DiskLayout {
            size: CHUNK_SIZE * 4,
            regions: vec![Region {
                start: 0,
                len: CHUNK_SIZE * 4,
                used: Some(list(&[(CHUNK_SIZE - 10, 20)])),
            }],
            notes: vec![],
        };
        let v: Vec<Piece> = plan(&layout).pieces().collect();
        assert_eq!(
            v,
            vec![
                Piece {
                    offset: CHUNK_SIZE - 10,
                    len: 10
                },
                Piece {
                    offset: CHUNK_SIZE,
                    len: 10
                }
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn plans_stay_inside_the_disk(size in 0u64..1 << 40, regs in proptest::collection::vec((0u64..1 << 41, 0u64..1 << 41, proptest::option::of((0u64..1 << 41, 0u64..1 << 30))), 0..6)) {
            let layout = DiskLayout {
                size,
                regions: regs.iter().map(|(s, l, u)| Region { start: *s, len: *l, used: u.map(|(o, n)| list(&[(o, n)])) }).collect(),
                notes: vec![],
            };
            let p = plan(&layout);
            proptest::prop_assert!(p.ranges.as_slice().iter().all(|e| e.end() <= size));
            proptest::prop_assert!(p.bytes() <= size);
        }
    }
}
