//! Property tests of the buddy allocator over random alloc/free sequences.

use std::collections::BTreeSet;

use pgtable::Pfn;
use proptest::prelude::*;
use ptemu_phys::{FrameAllocator, MAX_ORDER, NR_ORDERS, PageDescs, PageFlags, PhysError};

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32),
    /// Free the live block at this index (modulo the number of live blocks).
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..=5).prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

/// The free counts of a fresh allocator over `frames` frames.
fn fresh_counts(frames: u64) -> [u64; NR_ORDERS] {
    let mut pages = PageDescs::new(frames);
    FrameAllocator::new(&mut pages).free_counts()
}

fn check_invariants(a: &FrameAllocator, pages: &PageDescs, live: &[(Pfn, u32)], frames: u64) {
    // The allocator's view of live blocks is ours, in address order.
    let mut sorted = live.to_vec();
    sorted.sort();
    assert_eq!(a.allocated().collect::<Vec<_>>(), sorted);
    // Live and free blocks tile 0..frames with no overlap and no gap.
    let mut all: Vec<(u64, u64, bool)> = sorted.iter().map(|&(p, o)| (p.0, 1 << o, true)).collect();
    all.extend(a.free_list().map(|(p, o)| (p.0, 1u64 << o, false)));
    all.sort();
    let mut next = 0;
    for &(start, len, is_live) in &all {
        assert_eq!(start, next, "gap or overlap at frame {start}");
        assert_eq!(start % len, 0, "block at {start} not aligned to its size {len}");
        for f in start..start + len {
            let d = pages.get(Pfn(f)).unwrap();
            assert_eq!(d.flags.contains(PageFlags::BUDDY), !is_live, "BUDDY flag of frame {f}");
        }
        next = start + len;
    }
    assert_eq!(next, frames);
    let counted: u64 = a.free_counts().iter().enumerate().map(|(o, c)| c << o).sum();
    assert_eq!(counted, a.free_frames());
    // A free block never sits next to its free buddy: they would have merged.
    for (p, o) in a.free_list() {
        if o < MAX_ORDER {
            let buddy = p.0 ^ (1 << o);
            assert!(!a.free_list().any(|(q, r)| q.0 == buddy && r == o), "unmerged buddies {p:?}");
        }
    }
}

/// The allocator as first written, one ordered set per order searched in
/// full on every allocation: the reference the fast allocator must match
/// call for call.
struct Reference {
    free: Vec<BTreeSet<u64>>,
}

impl Reference {
    fn new(frames: u64) -> Self {
        let mut free = vec![BTreeSet::new(); NR_ORDERS];
        let mut p = 0u64;
        while p < frames {
            let mut order = MAX_ORDER;
            while p % (1 << order) != 0 || p + (1 << order) > frames {
                order -= 1;
            }
            free[order as usize].insert(p);
            p += 1 << order;
        }
        Self { free }
    }

    fn alloc(&mut self, order: u32) -> Option<u64> {
        let (p, mut o) = (order..=MAX_ORDER)
            .filter_map(|o| self.free[o as usize].first().map(|&p| (p, o)))
            .min()?;
        self.free[o as usize].remove(&p);
        while o > order {
            o -= 1;
            self.free[o as usize].insert(p + (1 << o));
        }
        Some(p)
    }

    fn free(&mut self, mut p: u64, mut o: u32) {
        while o < MAX_ORDER && self.free[o as usize].remove(&(p ^ (1 << o))) {
            p &= !(1 << o);
            o += 1;
        }
        self.free[o as usize].insert(p);
    }

    fn free_list(&self) -> Vec<(Pfn, u32)> {
        self.free
            .iter()
            .enumerate()
            .flat_map(|(o, s)| s.iter().map(move |&p| (Pfn(p), o as u32)))
            .collect()
    }
}

/// Orders up to MAX_ORDER, small ones most often (as the fault paths ask).
fn wide_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..=2).prop_map(Op::Alloc),
        2 => (0u32..=MAX_ORDER).prop_map(Op::Alloc),
        5 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Memories large enough for every level of the allocator's index sets
    /// (three for order 0 beyond 4096 frames) and for order-18 blocks: the
    /// same frames as the reference, call for call, and the same free lists.
    #[test]
    fn matches_reference_on_large_memories(
        frames in prop_oneof![1u64..5000, 4000u64..(1 << 19) + 77],
        ops in prop::collection::vec(wide_op(), 0..400),
    ) {
        let mut pages = PageDescs::new(frames);
        let mut a = FrameAllocator::new(&mut pages);
        let mut r = Reference::new(frames);
        let mut live: Vec<(Pfn, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(order) => {
                    // Single frames alternate between `alloc` and
                    // `alloc_one`, whose second answer must be what
                    // `next_frame` (the plain search) says afterwards.
                    let got = if order == 0 && live.len() % 2 == 1 {
                        let got = a.alloc_one(&mut pages).ok();
                        if let Some((_, next)) = got {
                            prop_assert_eq!(next, a.next_frame());
                        }
                        got.map(|(p, _)| p)
                    } else {
                        a.alloc(order, &mut pages).ok()
                    };
                    prop_assert_eq!(got, r.alloc(order).map(Pfn));
                    if let Some(p) = got {
                        live.push((p, order));
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let (p, o) = live.swap_remove(i % live.len());
                    a.free(p, o, &mut pages).unwrap();
                    r.free(p.0, o);
                }
                Op::Free(_) => {}
            }
        }
        prop_assert_eq!(a.free_list().collect::<Vec<_>>(), r.free_list());
        live.sort();
        prop_assert_eq!(a.allocated().collect::<Vec<_>>(), live);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_alloc_free(frames in 1u64..300, ops in prop::collection::vec(op(), 0..120)) {
        let mut pages = PageDescs::new(frames);
        let mut a = FrameAllocator::new(&mut pages);
        let mut live: Vec<(Pfn, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(order) => match a.alloc(order, &mut pages) {
                    Ok(p) => {
                        // Lowest first: no free block of sufficient order lies below it.
                        prop_assert!(live.iter().all(|&(q, _)| q != p));
                        live.push((p, order));
                    }
                    Err(PhysError::OutOfMemory { order: o }) => {
                        prop_assert_eq!(o, order);
                        prop_assert!(a.free_counts()[order as usize..].iter().all(|&c| c == 0));
                    }
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                },
                Op::Free(i) if !live.is_empty() => {
                    let (p, o) = live.swap_remove(i % live.len());
                    a.free(p, o, &mut pages).unwrap();
                    let again = matches!(a.free(p, o, &mut pages), Err(PhysError::DoubleFree { .. }));
                    prop_assert!(again, "second free of {:?} not caught", p);
                }
                Op::Free(_) => {}
            }
            check_invariants(&a, &pages, &live, frames);
        }
        for (p, o) in live.drain(..) {
            a.free(p, o, &mut pages).unwrap();
        }
        check_invariants(&a, &pages, &live, frames);
        prop_assert_eq!(a.free_counts(), fresh_counts(frames));
        prop_assert_eq!(a.free_frames(), frames);
    }

    #[test]
    fn allocation_is_lowest_fit(frames in 1u64..200, ops in prop::collection::vec(op(), 0..80)) {
        let mut pages = PageDescs::new(frames);
        let mut a = FrameAllocator::new(&mut pages);
        let mut live: Vec<(Pfn, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(order) => {
                    let lowest = a.free_list().filter(|&(_, o)| o >= order).map(|(p, _)| p).min();
                    match a.alloc(order, &mut pages) {
                        Ok(p) => {
                            prop_assert_eq!(Some(p), lowest);
                            live.push((p, order));
                        }
                        Err(_) => prop_assert_eq!(lowest, None),
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let (p, o) = live.remove(i % live.len());
                    a.free(p, o, &mut pages).unwrap();
                }
                Op::Free(_) => {}
            }
        }
    }

    #[test]
    fn same_calls_same_frames(ops in prop::collection::vec(op(), 0..80)) {
        let run = || {
            let mut pages = PageDescs::new(100);
            let mut a = FrameAllocator::new(&mut pages);
            let mut live = Vec::new();
            let mut out = Vec::new();
            for op in &ops {
                match *op {
                    Op::Alloc(order) => {
                        let r = a.alloc(order, &mut pages).ok();
                        if let Some(p) = r {
                            live.push((p, order));
                        }
                        out.push(r);
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let (p, o) = live.remove(i % live.len());
                        a.free(p, o, &mut pages).unwrap();
                    }
                    Op::Free(_) => {}
                }
            }
            (out, a.free_counts())
        };
        prop_assert_eq!(run(), run());
    }
}
