//! The mapper and its visitors: map, unmap, protect, leaf iteration,
//! pte_alloc, table creation and freeing, and every refusal.

use ptemu_pgtable::{
    BumpFrames, EntryFlags, EntryFormat, EntryKind, EntryVisit, FrameMem, MapError, MemError,
    PageSize, Pfn, PhysAddr, PhysMem, SwapPte, VaRange, VirtAddr, decode, encode_swap, entry_at,
    for_each_entry, for_each_leaf, free_empty_tables, lookup, map, map_range, new_root, protect,
    pte_alloc, unmap,
};

const FLAGS: EntryFlags = EntryFlags::PRESENT.union(EntryFlags::WRITABLE).union(EntryFlags::USER);

fn va(v: u64) -> VirtAddr {
    VirtAddr::new(v).unwrap()
}

fn setup(frames: u64) -> (FrameMem, BumpFrames, PhysAddr) {
    let mut mem = FrameMem::new(frames as usize);
    let mut fr = BumpFrames::new(Pfn(1), Pfn(frames));
    let root = new_root(&mut mem, &mut fr).unwrap();
    (mem, fr, root)
}

fn leaves(mem: &FrameMem, root: PhysAddr, start: u64, len: u64) -> Vec<EntryVisit> {
    let mut out = Vec::new();
    for_each_leaf(mem, root, VaRange::new(va(start), len).unwrap(), |e| out.push(*e)).unwrap();
    out
}

#[test]
fn map_writes_hardware_entries_and_linux_tables() {
    let (mut mem, mut fr, root) = setup(64);
    map_range(
        &mut mem,
        &mut fr,
        root,
        va(0x7fff_f000_0000),
        Pfn(0x1234),
        3,
        PageSize::Size4K,
        FLAGS,
    )
    .unwrap();
    // PML4 + PDPT + PD + PT.
    assert_eq!(fr.in_use(Pfn(1)), 4);
    let l = entry_at(&mem, root, va(0x7fff_f000_2000)).unwrap();
    assert_eq!(l.entry, 0x1236007);
    // Every table entry above is Linux's _PAGE_TABLE (0x67).
    let pml4e = mem.read_u64(PhysAddr::new(root.as_u64() + 0xff * 8).unwrap()).unwrap();
    assert_eq!(pml4e & 0xfff, 0x67);
    let got: Vec<_> =
        leaves(&mem, root, 0x7fff_f000_0000, 0x10_0000).iter().map(|e| e.raw).collect();
    assert_eq!(got, [0x1234007, 0x1235007, 0x1236007]);
    // Upper half addresses work the same way.
    map(&mut mem, &mut fr, root, va(0xffff_8000_0020_0000), Pfn(0x400), PageSize::Size2M, FLAGS)
        .unwrap();
    let l = lookup(&mem, root, va(0xffff_8000_0021_2345)).unwrap().unwrap();
    assert_eq!(l.pa(va(0xffff_8000_0021_2345)).as_u64(), 0x41_2345);
    assert_eq!(l.entry, 0x40_0087);
}

#[test]
fn map_refusals_change_nothing() {
    let (mut mem, mut fr, root) = setup(64);
    map(&mut mem, &mut fr, root, va(0x20_3000), Pfn(7), PageSize::Size4K, FLAGS).unwrap();
    let before = mem.clone();
    let r =
        map_range(&mut mem, &mut fr, root, va(0x20_0000), Pfn(0x100), 8, PageSize::Size4K, FLAGS);
    assert_eq!(r, Err(MapError::AlreadyMapped { va: va(0x20_3000), level: 1, raw: 0x7007 }));
    assert!(mem.frames() == before.frames(), "a refused map must not write");
    // A 2 MiB page over a page table.
    let r = map(&mut mem, &mut fr, root, va(0x20_0000), Pfn(0x200), PageSize::Size2M, FLAGS);
    assert_eq!(r, Err(MapError::TableInTheWay { va: va(0x20_0000), level: 2 }));
    // A 4 KiB page inside a 1 GiB one.
    map(&mut mem, &mut fr, root, va(0x4000_0000), Pfn(0x4_0000), PageSize::Size1G, FLAGS).unwrap();
    let r = map(&mut mem, &mut fr, root, va(0x4000_5000), Pfn(1), PageSize::Size4K, FLAGS);
    assert!(matches!(r, Err(MapError::HugeConflict { level: 3, .. })));
    // A swap entry counts as mapped.
    let slot = pte_alloc(&mut mem, &mut fr, root, va(0x30_0000)).unwrap();
    let swp =
        encode_swap(SwapPte { swap_type: 1, offset: 9, ..Default::default() }, EntryFormat::L1tf)
            .unwrap();
    mem.write_u64(slot, swp).unwrap();
    let r = map(&mut mem, &mut fr, root, va(0x30_0000), Pfn(1), PageSize::Size4K, FLAGS);
    assert_eq!(r, Err(MapError::AlreadyMapped { va: va(0x30_0000), level: 1, raw: swp }));
    // Bad arguments.
    let r = map(&mut mem, &mut fr, root, va(0x60_1000), Pfn(0x200), PageSize::Size2M, FLAGS);
    assert_eq!(r, Err(MapError::Misaligned { addr: 0x60_1000, size: 0x20_0000 }));
    let r = map(&mut mem, &mut fr, root, va(0x60_0000), Pfn(0x201), PageSize::Size2M, FLAGS);
    assert_eq!(r, Err(MapError::Misaligned { addr: 0x20_1000, size: 0x20_0000 }));
    let r =
        map(&mut mem, &mut fr, root, va(0x60_0000), Pfn(1), PageSize::Size4K, EntryFlags::WRITABLE);
    assert_eq!(r, Err(MapError::BadFlags(2)));
    let r = map(
        &mut mem,
        &mut fr,
        root,
        va(0x60_0000),
        Pfn(1),
        PageSize::Size4K,
        FLAGS | EntryFlags::PAT_LARGE,
    );
    assert_eq!(r, Err(MapError::BadFlags(0x1007)));
    let r = map_range(&mut mem, &mut fr, root, va(0x60_0000), Pfn(1), 0, PageSize::Size4K, FLAGS);
    assert_eq!(r, Err(MapError::BadRange { start: 0x60_0000, len: 0 }));
    let r = map(&mut mem, &mut fr, root, va(0x60_0000), Pfn(1 << 40), PageSize::Size4K, FLAGS);
    assert_eq!(r, Err(MapError::PfnRange { pfn: 1 << 40, count: 1 }));
    let r = map_range(
        &mut mem,
        &mut fr,
        root,
        va(0x7fff_ffff_f000),
        Pfn(1),
        2,
        PageSize::Size4K,
        FLAGS,
    );
    assert!(matches!(r, Err(MapError::BadRange { .. })), "crossing into the hole: {r:?}");
}

#[test]
fn out_of_frames_leaves_no_empty_table() {
    // Room for the root and two more tables only.
    let (mut mem, mut fr, root) = setup(4);
    let r = map(&mut mem, &mut fr, root, va(0x1000), Pfn(9), PageSize::Size4K, FLAGS);
    assert_eq!(r, Err(MapError::Mem(MemError::NoFrames)));
    assert_eq!(fr.in_use(Pfn(1)), 1, "the tables made for the failed map are returned");
    assert_eq!(mem.read_u64(root).unwrap(), 0);
}

#[test]
fn unmap_returns_old_entries_and_frees_tables() {
    let (mut mem, mut fr, root) = setup(64);
    map_range(&mut mem, &mut fr, root, va(0x1000), Pfn(0x100), 4, PageSize::Size4K, FLAGS).unwrap();
    map(&mut mem, &mut fr, root, va(0x20_0000), Pfn(0x200), PageSize::Size2M, FLAGS).unwrap();
    let slot = pte_alloc(&mut mem, &mut fr, root, va(0x40_0000)).unwrap();
    mem.write_u64(slot, 0x07FF_FFFF_FFFF_FC00).unwrap();
    assert_eq!(fr.in_use(Pfn(1)), 5);
    let mut seen = Vec::new();
    unmap(&mut mem, &mut fr, root, VaRange::new(va(0x2000), 0x60_0000).unwrap(), |e| {
        seen.push((e.va.as_u64(), e.level as u8, e.raw))
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            (0x2000, 1, 0x101_007),
            (0x3000, 1, 0x102_007),
            (0x4000, 1, 0x103_007),
            (0x20_0000, 2, 0x20_0087),
            (0x40_0000, 1, 0x07FF_FFFF_FFFF_FC00),
        ]
    );
    // The first PT still holds 0x1000; the one for 0x40_0000 is freed.
    assert_eq!(fr.in_use(Pfn(1)), 4);
    unmap(&mut mem, &mut fr, root, VaRange::new(va(0), 0x80_0000).unwrap(), |_| {}).unwrap();
    assert_eq!(fr.in_use(Pfn(1)), 1, "only the root is left");
    assert_eq!(mem.read_u64(root).unwrap(), 0);
}

#[test]
fn partial_huge_is_refused() {
    let (mut mem, mut fr, root) = setup(64);
    map(&mut mem, &mut fr, root, va(0x20_0000), Pfn(0x200), PageSize::Size2M, FLAGS).unwrap();
    let before = mem.clone();
    let r = unmap(&mut mem, &mut fr, root, VaRange::new(va(0x1f_f000), 0x2000).unwrap(), |_| {});
    assert_eq!(r, Err(MapError::PartialHuge { va: va(0x20_0000), level: 2, raw: 0x20_0087 }));
    let r = protect(
        &mut mem,
        &mut fr,
        root,
        VaRange::new(va(0x30_0000), 0x1000).unwrap(),
        EntryFlags::empty(),
        EntryFlags::WRITABLE,
    );
    assert!(matches!(r, Err(MapError::PartialHuge { .. })));
    assert!(mem.frames() == before.frames());
}

#[test]
fn protect_changes_present_leaves_only() {
    let (mut mem, mut fr, root) = setup(64);
    map_range(&mut mem, &mut fr, root, va(0x1000), Pfn(0x100), 3, PageSize::Size4K, FLAGS).unwrap();
    let slot = pte_alloc(&mut mem, &mut fr, root, va(0x4000)).unwrap();
    mem.write_u64(slot, 0x07FF_FFFF_FFFF_FC00).unwrap();
    let n = protect(
        &mut mem,
        &mut fr,
        root,
        VaRange::new(va(0), 0x10_0000).unwrap(),
        EntryFlags::NX,
        EntryFlags::WRITABLE,
    )
    .unwrap();
    assert_eq!(n, 3);
    let got: Vec<_> = leaves(&mem, root, 0, 0x10_0000).iter().map(|e| e.raw).collect();
    let nx = 1u64 << 63;
    assert_eq!(got, [nx | 0x100_005, nx | 0x101_005, nx | 0x102_005, 0x07FF_FFFF_FFFF_FC00]);
    let r = protect(
        &mut mem,
        &mut fr,
        root,
        VaRange::new(va(0), 0x1000).unwrap(),
        EntryFlags::PRESENT,
        EntryFlags::empty(),
    );
    assert_eq!(r, Err(MapError::BadFlags(1)));
}

#[test]
fn for_each_entry_rewrites_swap_and_present() {
    let (mut mem, mut fr, root) = setup(64);
    map_range(&mut mem, &mut fr, root, va(0x1000), Pfn(0x100), 2, PageSize::Size4K, FLAGS).unwrap();
    let slot = pte_alloc(&mut mem, &mut fr, root, va(0x3000)).unwrap();
    let swp = SwapPte { swap_type: 2, offset: 77, ..Default::default() };
    mem.write_u64(slot, encode_swap(swp, EntryFormat::L1tf).unwrap()).unwrap();
    // Make every present page read-only and mark the swap entry exclusive,
    // as fork's copy_page_range and a swap-in path would.
    let mut kinds = Vec::new();
    for_each_entry(&mut mem, root, VaRange::new(va(0), 0x20_0000).unwrap(), |e| {
        let k = decode(e.raw, e.level, EntryFormat::L1tf)?;
        kinds.push(k.name());
        Ok(match k {
            EntryKind::Present(_) => Some(e.raw & !2),
            EntryKind::Swap(s) => {
                Some(encode_swap(SwapPte { exclusive: true, ..s }, EntryFormat::L1tf)?)
            }
            _ => None,
        })
    })
    .unwrap();
    assert_eq!(kinds, ["present", "present", "swap"]);
    let after: Vec<_> = leaves(&mem, root, 0, 0x20_0000)
        .iter()
        .map(|e| decode(e.raw, e.level, EntryFormat::L1tf).unwrap())
        .collect();
    assert_eq!(after[0].pfn(), Some(Pfn(0x100)));
    assert_eq!(
        mem.read_u64(entry_at(&mem, root, va(0x1000)).unwrap().entry_pa).unwrap(),
        0x100_005
    );
    assert_eq!(after[2], EntryKind::Swap(SwapPte { exclusive: true, ..swp }));
    // The callback's error stops the walk and comes back.
    let r = for_each_entry(&mut mem, root, VaRange::new(va(0), 0x20_0000).unwrap(), |_| {
        Err(MapError::BadFlags(0xdead))
    });
    assert_eq!(r, Err(MapError::BadFlags(0xdead)));
}

#[test]
fn pte_alloc_and_free_empty_tables() {
    let (mut mem, mut fr, root) = setup(64);
    let a = pte_alloc(&mut mem, &mut fr, root, va(0x7f00_1234_5678)).unwrap();
    assert_eq!(fr.in_use(Pfn(1)), 4);
    // The same slot again, with no new table.
    let b = pte_alloc(&mut mem, &mut fr, root, va(0x7f00_1234_5000)).unwrap();
    assert_eq!((a, fr.in_use(Pfn(1))), (b, 4));
    assert_eq!(a.as_u64() & 0xfff, ((0x7f00_1234_5678u64 >> 12) & 0x1ff) * 8);
    assert_eq!(entry_at(&mem, root, va(0x7f00_1234_5678)).unwrap().entry_pa, a);
    map(&mut mem, &mut fr, root, va(0x4000_0000), Pfn(0x4_0000), PageSize::Size1G, FLAGS).unwrap();
    assert!(matches!(
        pte_alloc(&mut mem, &mut fr, root, va(0x4000_1000)),
        Err(MapError::HugeConflict { level: 3, .. })
    ));
    free_empty_tables(
        &mut mem,
        &mut fr,
        root,
        VaRange::new(va(0x7f00_0000_0000), 1 << 39).unwrap(),
    )
    .unwrap();
    assert_eq!(fr.in_use(Pfn(1)), 2, "root and the PDPT holding the 1 GiB page");
}

#[test]
fn range_walk_visits_each_table_once() {
    use ptemu_pgtable::{Action, Slot, Visitor, walk_range};
    struct Count {
        per_level: [u64; 5],
    }
    impl Visitor for Count {
        fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
            self.per_level[s.level as usize] += 1;
            Ok(if s.level as u8 > 1 { Action::Descend } else { Action::Keep })
        }
    }
    let (mut mem, mut fr, root) = setup(64);
    let mut c = Count { per_level: [0; 5] };
    // 4 MiB starting 1 MiB into a 2 MiB region: 1024 PTEs, 3 PDEs, 1 PDPTE, 1 PML4E.
    walk_range(&mut mem, &mut fr, root, VaRange::new(va(0x10_0000), 0x40_0000).unwrap(), &mut c)
        .unwrap();
    assert_eq!(c.per_level, [0, 1024, 3, 1, 1]);
    assert_eq!(fr.in_use(Pfn(1)), 6);
}

mod model {
    //! Random map/unmap sequences against a model of what is mapped.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Map { va: u64, size: PageSize, count: u64, pfn: u64 },
        Unmap { va: u64, len: u64 },
    }

    fn size_of(k: u8) -> PageSize {
        match k {
            0..=5 => PageSize::Size4K,
            6..=8 => PageSize::Size2M,
            _ => PageSize::Size1G,
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let addr =
            (0u64..4, 0u64..4, 0u64..512).prop_map(|(g, m, p)| (g << 30) | (m << 21) | (p << 12));
        prop_oneof![
            3 => (addr.clone(), 0u8..10, 1u64..6, 0u64..1000).prop_map(|(va, k, n, pfn)| {
                let size = size_of(k);
                let va = va & !(size.bytes() - 1);
                let count = if size == PageSize::Size1G { 1 } else { n };
                Op::Map { va, size, count, pfn: pfn * (size.bytes() >> 12) }
            }),
            2 => (addr, 1u64..2048).prop_map(|(va, pages)| Op::Unmap { va, len: pages << 12 }),
        ]
    }

    /// start -> (end, first pfn, page size): what the model says is mapped.
    type Model = BTreeMap<u64, (u64, u64, u64)>;

    fn overlapping(m: &Model, s: u64, e: u64) -> Vec<(u64, (u64, u64, u64))> {
        m.iter().filter(|(a, v)| **a < e && v.0 > s).map(|(a, v)| (*a, *v)).collect()
    }

    fn expected_pa(m: &Model, v: u64) -> Option<u64> {
        let (start, (end, pfn, _)) = m.range(..=v).next_back()?;
        (v < *end).then(|| (pfn << 12) + (v - start))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn mapper_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            let (mut mem, mut fr, root) = setup(4096);
            let mut model = Model::new();
            for op in &ops {
                match *op {
                    Op::Map { va: v, size, count, pfn } => {
                        let end = v + count * size.bytes();
                        let clash = !overlapping(&model, v, end).is_empty();
                        let r = map_range(&mut mem, &mut fr, root, va(v), Pfn(pfn), count, size, FLAGS);
                        prop_assert_eq!(r.is_ok(), !clash, "{:?} -> {:?}", op, r);
                        if r.is_ok() {
                            for i in 0..count {
                                let s = v + i * size.bytes();
                                model.insert(s, (s + size.bytes(), pfn + i * (size.bytes() >> 12), size.bytes()));
                            }
                        }
                    }
                    Op::Unmap { va: v, len } => {
                        let end = v + len;
                        let hit = overlapping(&model, v, end);
                        let partial = hit.iter().any(|(s, (e, _, sz))| *sz > 4096 && (*s < v || *e > end));
                        let mut n = 0;
                        let r = unmap(&mut mem, &mut fr, root, VaRange::new(va(v), len).unwrap(), |_| n += 1);
                        prop_assert_eq!(r.is_ok(), !partial, "{:?} -> {:?}", op, r);
                        if r.is_ok() {
                            prop_assert_eq!(n, hit.len());
                            for (s, _) in hit {
                                model.remove(&s);
                            }
                        }
                    }
                }
                // Every mapping's ends, and probes around them, agree.
                for (&s, &(e, _, _)) in &model {
                    for v in [s, e - 1, s.saturating_sub(1), e] {
                        let got = lookup(&mem, root, va(v)).unwrap().map(|l| l.pa(va(v)).as_u64());
                        prop_assert_eq!(got, expected_pa(&model, v), "at {:#x}", v);
                    }
                }
            }
            unmap(&mut mem, &mut fr, root, VaRange::new(va(0), 1 << 47).unwrap(), |_| {}).unwrap();
            prop_assert_eq!(fr.in_use(Pfn(1)), 1, "all tables freed");
        }
    }
}
