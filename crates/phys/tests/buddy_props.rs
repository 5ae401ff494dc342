//! Property tests of the buddy allocator over random alloc/free sequences.

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
