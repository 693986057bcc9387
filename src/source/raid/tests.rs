use super::*;
use crate::source::device::{MemDisk, read_vec};

const KIB: u64 = 1024;
/// Bytes before each member's data area (a superblock's place).
const PAD: u64 = 8192;

fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Members written forward from the array, chunk after chunk, as md
/// writes them: RAID0 zone by zone over the members still larger than
/// the zone's start, the member of each chunk counted from the array's
/// first chunk (original layout) or the zone's (alternate).
fn stripe_raid0(data: &[u8], chunk: u64, sizes_in_chunks: &[u64], alt: bool) -> Vec<Vec<u8>> {
    let c = chunk as usize;
    let mut members: Vec<Vec<u8>> = sizes_in_chunks
        .iter()
        .map(|&n| vec![0xee; PAD as usize + (n as usize) * c])
        .collect();
    let mut row_of = vec![0u64; members.len()];
    let mut g = 0usize; // array chunk
    let mut filled = 0u64; // rows done on every member still in play
    loop {
        let devs: Vec<usize> = (0..members.len())
            .filter(|&i| sizes_in_chunks[i] > filled)
            .collect();
        if devs.is_empty() {
            break;
        }
        let rows = devs.iter().map(|&i| sizes_in_chunks[i]).min().unwrap() - filled;
        let zone_first = g;
        for _ in 0..rows {
            for _ in 0..devs.len() {
                let counted = if alt { g - zone_first } else { g };
                let d = devs[counted % devs.len()];
                let at = PAD as usize + row_of[d] as usize * c;
                members[d][at..at + c].copy_from_slice(&data[g * c..(g + 1) * c]);
                g += 1;
            }
            for &d in &devs {
                row_of[d] += 1;
            }
        }
        filled += rows;
    }
    assert_eq!(g * c, data.len());
    members
}

/// RAID10 near: the members' chunk positions filled row by row, each
/// array chunk taking `near` consecutive positions.
fn stripe_raid10(data: &[u8], chunk: u64, disks: usize, near: usize, rows: usize) -> Vec<Vec<u8>> {
    let c = chunk as usize;
    let mut members = vec![vec![0xee; PAD as usize + rows * c]; disks];
    for pos in 0..disks * rows {
        let g = pos / near;
        if (g + 1) * c > data.len() {
            break;
        }
        let at = PAD as usize + pos / disks * c;
        members[pos % disks][at..at + c].copy_from_slice(&data[g * c..(g + 1) * c]);
    }
    members
}

fn slots(members: Vec<Vec<u8>>, missing: &[usize]) -> Vec<Option<Slot>> {
    members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let len = m.len() as u64 - PAD;
            (!missing.contains(&i)).then(|| Slot {
                dev: Arc::new(MemDisk::new(m)),
                start: PAD,
                len,
            })
        })
        .collect()
}

fn absent(slot: u32) -> String {
    format!("no member with role {slot} found")
}

fn raid0(chunk: u64, sizes: &[u64], alt: bool) -> (Vec<u8>, Assembled) {
    let total: u64 = sizes.iter().sum::<u64>() * chunk;
    let data = pattern(total, chunk + sizes.len() as u64);
    let members = stripe_raid0(&data, chunk, sizes, alt);
    let byte_sizes: Vec<u64> = sizes.iter().map(|n| n * chunk).collect();
    let layout = if alt { 2 } else { 1 };
    let g = Geometry::raid0(chunk, layout, &byte_sizes).unwrap();
    assert_eq!(g.size(), total);
    let a = Assembled::new("u", "raid0", g, slots(members, &[]), &absent).unwrap();
    (data, a)
}

#[test]
fn raid0_equal_members_read_back_the_hand_striped_array() {
    for chunk in [64 * KIB, 512 * KIB] {
        let (data, a) = raid0(chunk, &[4, 4], false);
        assert_eq!(read_vec(&a, 0, data.len()).unwrap(), data, "chunk {chunk}");
        // Across a chunk boundary, from the second member into the first.
        let at = (3 * chunk - 100) as usize;
        assert_eq!(read_vec(&a, at as u64, 300).unwrap(), &data[at..at + 300]);
    }
}

#[test]
fn raid0_uneven_members_make_zones_in_both_layouts() {
    for chunk in [64 * KIB, 512 * KIB] {
        for alt in [false, true] {
            let (data, a) = raid0(chunk, &[3, 5, 2, 5], alt);
            assert_eq!(
                read_vec(&a, 0, data.len()).unwrap(),
                data,
                "chunk {chunk}, alt {alt}"
            );
        }
    }
    // Three members of 2, 2, 1 chunks: chunk 3 (the second zone's first)
    // is on member 1 in the original layout, member 0 in the alternate.
    let g = Geometry::raid0(64 * KIB, 1, &[128 * KIB, 128 * KIB, 64 * KIB]).unwrap();
    assert_eq!(g.map(3 * 64 * KIB).0, vec![(1, 64 * KIB)]);
    let g = Geometry::raid0(64 * KIB, 2, &[128 * KIB, 128 * KIB, 64 * KIB]).unwrap();
    assert_eq!(g.map(3 * 64 * KIB).0, vec![(0, 64 * KIB)]);
    // Sizes that are no whole number of chunks are rounded down.
    let g = Geometry::raid0(64 * KIB, 0, &[100 * KIB, 130 * KIB]).unwrap_err();
    assert!(g.contains("layout 0"), "{g}");
    let g = Geometry::raid0(64 * KIB, 0, &[100 * KIB, 127 * KIB]).unwrap();
    assert_eq!(g.size(), 128 * KIB);
}

#[test]
fn raid10_near2_puts_each_chunk_on_two_neighbours() {
    let c = 64 * KIB;
    // mdadm(8)'s picture of near=2 on four and on three devices.
    let g = Geometry::raid10(c, 0x102, 4, 10 * c).unwrap();
    assert_eq!(g.map(0).0, vec![(0, 0), (1, 0)]);
    assert_eq!(g.map(c + 5).0, vec![(2, 5), (3, 5)]);
    assert_eq!(g.map(2 * c).0, vec![(0, c), (1, c)]);
    assert_eq!(g.size(), 20 * c);
    let g = Geometry::raid10(c, 0x102, 3, 10 * c).unwrap();
    assert_eq!(g.map(c).0, vec![(2, 0), (0, c)]);
    assert_eq!(g.size(), 15 * c);
    let e = Geometry::raid10(c, 0x201, 4, 10 * c).unwrap_err();
    assert!(
        e.contains("far=2") && e.contains("only near layouts"),
        "{e}"
    );
}

fn raid10(
    chunk: u64,
    disks: usize,
    rows: usize,
    missing: &[usize],
) -> Result<(Vec<u8>, Assembled), RaidError> {
    let size = (rows * disks / 2) as u64 * chunk;
    let data = pattern(size, chunk ^ disks as u64);
    let members = stripe_raid10(&data, chunk, disks, 2, rows);
    let g = Geometry::raid10(chunk, 0x102, disks as u32, rows as u64 * chunk + chunk / 2).unwrap();
    assert_eq!(g.size(), size);
    let a = Assembled::new("u", "raid10", g, slots(members, missing), &absent)?;
    Ok((data, a))
}

#[test]
fn raid10_reads_back_whole_and_degraded() {
    for chunk in [64 * KIB, 512 * KIB] {
        for (disks, missing) in [
            (4, vec![]),
            (4, vec![1]),
            (4, vec![0, 3]),
            (2, vec![0]),
            (3, vec![2]),
        ] {
            let (data, a) = raid10(chunk, disks, 5, &missing).unwrap();
            assert_eq!(
                a.missing(),
                missing.iter().map(|&m| m as u32).collect::<Vec<_>>()
            );
            assert_eq!(
                read_vec(&a, 0, data.len()).unwrap(),
                data,
                "chunk {chunk}, {disks} disks, missing {missing:?}"
            );
        }
    }
}

#[test]
fn lost_pairs_and_missing_raid0_slots_are_named() {
    let Err(e) = raid10(64 * KIB, 4, 4, &[2, 3]) else {
        panic!("a raid10 without both halves of a pair assembled");
    };
    assert_eq!(
        e.to_string(),
        "md raid10 array u: slots [2, 3] of 4 are missing and some chunks can be neither read \
         nor rebuilt without them: attach the disks holding them, or pass --all-blocks to copy \
         the members as they are"
    );
    let data = pattern(4 * 64 * KIB, 1);
    let members = stripe_raid0(&data, 64 * KIB, &[2, 2], false);
    let g = Geometry::raid0(64 * KIB, 1, &[128 * KIB, 128 * KIB]).unwrap();
    let Err(e) = Assembled::new("u", "raid0", g, slots(members, &[1]), &absent) else {
        panic!("a raid0 without a member assembled");
    };
    assert!(
        e.to_string()
            .starts_with("md raid0 array u: slot 1 of 2 is missing (no member with role 1 found)"),
        "{e}"
    );
}

proptest::proptest! {
    #[test]
    fn raid0_reads_match_the_hand_striped_image(
        sizes in proptest::collection::vec(1u64..6, 1..5),
        chunk_pages in 1u64..4, alt: bool,
        at in 0u64..100_000, len in 0usize..70_000,
    ) {
        let chunk = chunk_pages * 4096;
        let (data, a) = raid0(chunk, &sizes, alt);
        let at = at % data.len() as u64;
        let len = len.min(data.len() - at as usize);
        proptest::prop_assert_eq!(read_vec(&a, at, len).unwrap(), &data[at as usize..at as usize + len]);
        proptest::prop_assert!(a.read_exact_at(data.len() as u64 - 1, &mut [0u8; 2]).is_err());
    }

    #[test]
    fn raid10_reads_match_the_hand_striped_image(
        disks in 2usize..6, rows in 1usize..6, drop in proptest::option::of(0usize..6),
        at in 0u64..100_000, len in 0usize..70_000,
    ) {
        let missing: Vec<usize> = drop.filter(|&d| d < disks).into_iter().collect();
        let (data, a) = raid10(4096, disks, rows * 2, &missing).unwrap();
        let at = at % data.len() as u64;
        let len = len.min(data.len() - at as usize);
        proptest::prop_assert_eq!(read_vec(&a, at, len).unwrap(), &data[at as usize..at as usize + len]);
    }
}

#[test]
fn raid5_algorithms_place_chunks_as_md_pictures_them() {
    let c = 64 * KIB;
    let place = |alg: u32, chunk: u64| {
        let g = Geometry::parity(c, alg, 3, 1, 10 * c).unwrap();
        let (v, _) = g.map(chunk * c);
        (v[0].0, v[0].1 / c)
    };
    // left-symmetric (2):  0 1 P / 3 P 2 / P 4 5
    let want = [(0, 0), (1, 0), (2, 1), (0, 1), (1, 2), (2, 2)];
    assert_eq!((0..6).map(|k| place(2, k)).collect::<Vec<_>>(), want);
    // left-asymmetric (0): 0 1 P / 2 P 3 / P 4 5
    let want = [(0, 0), (1, 0), (0, 1), (2, 1), (1, 2), (2, 2)];
    assert_eq!((0..6).map(|k| place(0, k)).collect::<Vec<_>>(), want);
    // right-asymmetric (1): P 0 1 / 2 P 3 / 4 5 P
    let want = [(1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (1, 2)];
    assert_eq!((0..6).map(|k| place(1, k)).collect::<Vec<_>>(), want);
    // right-symmetric (3): P 0 1 / 3 P 2 / 4 5 P
    let want = [(1, 0), (2, 0), (2, 1), (0, 1), (0, 2), (1, 2)];
    assert_eq!((0..6).map(|k| place(3, k)).collect::<Vec<_>>(), want);
    // RAID6 left-symmetric on 4: P Q 0 1 on stripe 0 is "0 1 P Q": pd 3, Q 0.
    let g = Geometry::parity(c, 2, 4, 2, 10 * c).unwrap();
    assert_eq!(g.map(0).0, vec![(1, 0)]);
    assert_eq!(g.map(c).0, vec![(2, 0)]);
    assert_eq!(g.size(), 20 * c);
}

/// Members of a RAID5/6 with each stripe's P the XOR of its data chunks
/// (RAID6's Q: noise, never read).
fn parity_members(
    data: &[u8],
    g: &Geometry,
    disks: usize,
    rows: usize,
    chunk: u64,
) -> Vec<Vec<u8>> {
    let c = chunk as usize;
    let mut members = vec![vec![0u8; PAD as usize + rows * c]; disks];
    for m in members.iter_mut() {
        let noise = pattern(m.len() as u64, 99);
        m.copy_from_slice(&noise);
    }
    let mut parity = vec![vec![0u8; c]; rows];
    for (k, piece) in data.chunks(c).enumerate() {
        let (v, _) = g.map(k as u64 * chunk);
        let (dev, at) = v[0];
        let at = PAD as usize + at as usize;
        members[dev][at..at + c].copy_from_slice(piece);
        for (p, b) in parity[(at - PAD as usize) / c].iter_mut().zip(piece) {
            *p ^= b;
        }
    }
    for (row, p) in parity.iter().enumerate() {
        // P is the member holding no data chunk of the row but the first
        // of the two left over (RAID6: P then Q, wrapping).
        let used: Vec<usize> = (0..data.len() / c)
            .filter_map(|k| {
                let (v, _) = g.map(k as u64 * chunk);
                (v[0].1 as usize / c == row).then_some(v[0].0)
            })
            .collect();
        let free: Vec<usize> = (0..disks).filter(|d| !used.contains(d)).collect();
        let pd = if free.len() == 2 && free[0] == 0 && free[1] == disks - 1 {
            disks - 1
        } else {
            free[0]
        };
        let at = PAD as usize + row * c;
        members[pd][at..at + c].copy_from_slice(p);
    }
    members
}

#[test]
fn raid5_and_raid6_read_back_whole_and_rebuild_one_missing_member() {
    for (disks, parity, alg) in [
        (3usize, 1u64, 2u32),
        (4, 1, 0),
        (4, 1, 3),
        (5, 2, 2),
        (4, 2, 1),
    ] {
        let chunk = 64 * KIB;
        let rows = 4;
        let g = Geometry::parity(chunk, alg, disks as u32, parity, rows as u64 * chunk).unwrap();
        let data = pattern(g.size(), disks as u64 * 7 + u64::from(alg));
        let members = parity_members(&data, &g, disks, rows, chunk);
        for missing in std::iter::once(None).chain((0..disks).map(Some)) {
            let gone: Vec<usize> = missing.into_iter().collect();
            let a = Assembled::new(
                "u",
                "raid5",
                g.clone(),
                slots(members.clone(), &gone),
                &absent,
            )
            .unwrap();
            assert_eq!(
                read_vec(&a, 0, data.len()).unwrap(),
                data,
                "{disks} disks, parity {parity}, algorithm {alg}, missing {missing:?}"
            );
        }
        let Err(e) = Assembled::new("u", "raid6", g, slots(members, &[0, 1]), &absent) else {
            panic!("assembled without two members");
        };
        assert!(e.to_string().contains("slots [0, 1] of"), "{e}");
    }
}
