//! The buddy frame allocator: free lists of power-of-two blocks, orders 0
//! (4 KiB) to [`MAX_ORDER`] (18, 1 GiB).
//!
//! Deterministic by construction: allocation returns the lowest-addressed
//! free block that can hold the request, splitting it and keeping the lower
//! half, so the same sequence of calls always yields the same frames. Linux
//! instead takes the first block from the *smallest* non-empty order
//! (`__rmqueue_smallest`), behind per-CPU page lists, migrate types and
//! zones; those exist for fragmentation avoidance and SMP scalability, which
//! an emulator does not need, while fixtures need frame numbers they can
//! predict.
//!
//! The allocator owns only its free lists and the set of live blocks. The
//! page descriptors are passed into [`FrameAllocator::alloc`] and
//! [`FrameAllocator::free`] so that a caller can keep physical memory,
//! allocator and descriptors as separate borrows; the allocator marks free
//! frames [`PageFlags::BUDDY`] (kpageflags BUDDY) and checks at free time
//! what Linux's `free_page_is_bad` checks.

use std::collections::{BTreeMap, BTreeSet};

use pgtable::Pfn;

use crate::error::PhysError;
use crate::page::{PAGE_MAPPING_ANON, PageDesc, PageDescs, PageFlags};

/// Largest block order: 2^18 frames of 4 KiB, 1 GiB.
pub const MAX_ORDER: u32 = 18;

/// Number of orders, 0..=[`MAX_ORDER`].
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// Flags a frame must not carry when it is freed: it would still be locked,
/// under I/O, on an LRU list, in the swap cache, a page table or reserved.
/// (Linux's PAGE_FLAGS_CHECK_AT_FREE, restricted to the flags we model.)
pub const PAGE_FLAGS_CHECK_AT_FREE: PageFlags = PageFlags::LOCKED
    .union(PageFlags::WRITEBACK)
    .union(PageFlags::LRU)
    .union(PageFlags::ACTIVE)
    .union(PageFlags::SWAPCACHE)
    .union(PageFlags::RESERVED)
    .union(PageFlags::PGTABLE)
    .union(PageFlags::ZERO_PAGE);

/// A buddy allocator over frames `0..frames`.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    frames: u64,
    /// Free blocks per order, by first frame number.
    free: Vec<BTreeSet<u64>>,
    /// Allocated blocks: first frame -> order.
    live: BTreeMap<u64, u32>,
}

fn check_order(order: u32) -> Result<(), PhysError> {
    if order > MAX_ORDER { Err(PhysError::BadOrder { order, max: MAX_ORDER }) } else { Ok(()) }
}

const fn block_frames(order: u32) -> u64 {
    1u64 << order
}

impl FrameAllocator {
    /// An allocator owning every frame that `pages` describes, all free,
    /// each descriptor reset and marked BUDDY.
    ///
    /// Frames are carved into the largest naturally aligned blocks that fit,
    /// so a memory that is not a power of two ends in smaller blocks.
    pub fn new(pages: &mut PageDescs) -> Self {
        let frames = pages.len();
        let mut free = vec![BTreeSet::new(); NR_ORDERS];
        let mut p = 0u64;
        while p < frames {
            let mut order = MAX_ORDER;
            while p % block_frames(order) != 0 || p + block_frames(order) > frames {
                order -= 1;
            }
            free[order as usize].insert(p);
            p += block_frames(order);
        }
        for (_, d) in pages.iter_mut() {
            *d = PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() };
        }
        Self { frames, free, live: BTreeMap::new() }
    }

    /// Number of frames managed.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn check_descs(&self, pages: &PageDescs) -> Result<(), PhysError> {
        if pages.len() < self.frames {
            return Err(PhysError::DescsTooShort { descs: pages.len(), frames: self.frames });
        }
        Ok(())
    }

    /// Allocates a block of `2^order` frames: the lowest-addressed free block
    /// of that order or larger, split down as needed (upper halves return to
    /// the free lists).
    ///
    /// The block's descriptors come back zeroed (BUDDY cleared) with a
    /// refcount of 1 on the first frame: the caller's reference, as
    /// `alloc_pages` returns it. The frames' contents are not zeroed.
    pub fn alloc(&mut self, order: u32, pages: &mut PageDescs) -> Result<Pfn, PhysError> {
        check_order(order)?;
        self.check_descs(pages)?;
        let mut best: Option<(u64, u32)> = None;
        for o in order..=MAX_ORDER {
            if let Some(&p) = self.free[o as usize].first() {
                if best.is_none_or(|(b, _)| p < b) {
                    best = Some((p, o));
                }
            }
        }
        let Some((pfn, mut o)) = best else {
            return Err(PhysError::OutOfMemory { order });
        };
        self.free[o as usize].remove(&pfn);
        while o > order {
            o -= 1;
            self.free[o as usize].insert(pfn + block_frames(o));
        }
        self.live.insert(pfn, order);
        for i in 0..block_frames(order) {
            *pages.get_mut(Pfn(pfn + i))? = PageDesc::default();
        }
        pages.get_mut(Pfn(pfn))?.refcount = 1;
        Ok(Pfn(pfn))
    }

    /// Whether `pfn` lies inside a free block.
    pub fn is_free(&self, pfn: Pfn) -> bool {
        let p = pfn.as_u64();
        (0..=MAX_ORDER).any(|o| self.free[o as usize].contains(&(p & !(block_frames(o) - 1))))
    }

    /// The order of the allocated block starting at `pfn`, if there is one.
    pub fn allocated_order(&self, pfn: Pfn) -> Option<u32> {
        self.live.get(&pfn.as_u64()).copied()
    }

    /// Frees the block of `2^order` frames starting at `pfn`, merging it with
    /// its buddies, and marks its frames BUDDY.
    ///
    /// Errors, with nothing changed: `pfn` not the start of a live block
    /// (`DoubleFree` if it lies in a free block, `NotAllocated` otherwise),
    /// an order different from the allocation's, or a frame still in use
    /// (`BadPageState`): mapcount not zero, a refcount above the caller's one
    /// on the first frame or any on the others, a flag of
    /// [`PAGE_FLAGS_CHECK_AT_FREE`], or a non-anonymous `mapping`. An
    /// anonymous `mapping` is cleared, as `free_pages_prepare` does.
    pub fn free(&mut self, pfn: Pfn, order: u32, pages: &mut PageDescs) -> Result<(), PhysError> {
        check_order(order)?;
        self.check_descs(pages)?;
        if pfn.as_u64() >= self.frames {
            return Err(PhysError::NoSuchFrame { pfn, frames: self.frames });
        }
        match self.live.get(&pfn.as_u64()) {
            Some(&o) if o == order => {}
            Some(&o) => return Err(PhysError::OrderMismatch { pfn, allocated: o, freed: order }),
            None if self.is_free(pfn) => return Err(PhysError::DoubleFree { pfn, order }),
            None => return Err(PhysError::NotAllocated { pfn, order }),
        }
        for i in 0..block_frames(order) {
            let f = Pfn(pfn.as_u64() + i);
            let d = pages.get(f)?;
            let max_ref = if i == 0 { 1 } else { 0 };
            let reason = if d.mapcount != 0 {
                Some("nonzero mapcount")
            } else if d.refcount > max_ref {
                Some("nonzero refcount")
            } else if d.flags.intersects(PAGE_FLAGS_CHECK_AT_FREE) {
                Some("a flag that must be clear at free is set")
            } else if d.mapping != 0 && d.mapping & PAGE_MAPPING_ANON == 0 {
                Some("non-anonymous mapping still set")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(PhysError::BadPageState { pfn: f, reason });
            }
        }
        self.live.remove(&pfn.as_u64());
        for i in 0..block_frames(order) {
            *pages.get_mut(Pfn(pfn.as_u64() + i))? =
                PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() };
        }
        let mut p = pfn.as_u64();
        let mut o = order;
        while o < MAX_ORDER {
            let buddy = p ^ block_frames(o);
            if !self.free[o as usize].remove(&buddy) {
                break;
            }
            p = p.min(buddy);
            o += 1;
        }
        self.free[o as usize].insert(p);
        Ok(())
    }

    /// Number of free blocks of `order` (0 for an order beyond [`MAX_ORDER`]).
    pub fn free_blocks(&self, order: u32) -> u64 {
        self.free.get(order as usize).map_or(0, |s| s.len() as u64)
    }

    /// Free blocks per order, index = order (like /proc/buddyinfo's columns).
    pub fn free_counts(&self) -> [u64; NR_ORDERS] {
        let mut counts = [0u64; NR_ORDERS];
        for (c, s) in counts.iter_mut().zip(&self.free) {
            *c = s.len() as u64;
        }
        counts
    }

    /// Total number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free.iter().enumerate().map(|(o, s)| s.len() as u64 * block_frames(o as u32)).sum()
    }

    /// Free blocks as (first frame, order), lowest order first, then by address.
    pub fn free_list(&self) -> impl Iterator<Item = (Pfn, u32)> + '_ {
        self.free.iter().enumerate().flat_map(|(o, s)| s.iter().map(move |&p| (Pfn(p), o as u32)))
    }

    /// Allocated blocks as (first frame, order), by address.
    pub fn allocated(&self) -> impl Iterator<Item = (Pfn, u32)> + '_ {
        self.live.iter().map(|(&p, &o)| (Pfn(p), o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(frames: u64) -> (FrameAllocator, PageDescs) {
        let mut pages = PageDescs::new(frames);
        let a = FrameAllocator::new(&mut pages);
        (a, pages)
    }

    fn counts(a: &FrameAllocator, upto: usize) -> Vec<u64> {
        a.free_counts()[..upto].to_vec()
    }

    #[test]
    fn initial_carve_of_odd_size() {
        let (a, pages) = setup(13);
        assert_eq!(counts(&a, 5), vec![1, 0, 1, 1, 0]);
        assert_eq!(a.free_list().collect::<Vec<_>>(), vec![(Pfn(12), 0), (Pfn(8), 2), (Pfn(0), 3)]);
        assert_eq!(a.free_frames(), 13);
        assert!(pages.iter().all(|(_, d)| d.flags == PageFlags::BUDDY));
    }

    #[test]
    fn split_and_merge() {
        let (mut a, mut pages) = setup(16);
        assert_eq!(counts(&a, 5), vec![0, 0, 0, 0, 1]);
        assert_eq!(a.alloc(0, &mut pages).unwrap(), Pfn(0));
        // 16 = 1 (allocated) + 1 + 2 + 4 + 8: one block at each lower order.
        assert_eq!(counts(&a, 5), vec![1, 1, 1, 1, 0]);
        assert_eq!(
            a.free_list().collect::<Vec<_>>(),
            vec![(Pfn(1), 0), (Pfn(2), 1), (Pfn(4), 2), (Pfn(8), 3)]
        );
        assert_eq!(a.alloc(0, &mut pages).unwrap(), Pfn(1));
        assert_eq!(a.alloc(1, &mut pages).unwrap(), Pfn(2));
        assert_eq!(counts(&a, 5), vec![0, 0, 1, 1, 0]);
        let d = pages.get(Pfn(2)).unwrap();
        assert_eq!((d.flags, d.refcount), (PageFlags::empty(), 1));
        assert_eq!(pages.get(Pfn(3)).unwrap().refcount, 0);
        a.free(Pfn(0), 0, &mut pages).unwrap();
        assert_eq!(counts(&a, 5), vec![1, 0, 1, 1, 0]);
        a.free(Pfn(2), 1, &mut pages).unwrap();
        assert_eq!(counts(&a, 5), vec![1, 1, 1, 1, 0]);
        // Freeing frame 1 merges 0+1, then with 2..4, 4..8, 8..16.
        a.free(Pfn(1), 0, &mut pages).unwrap();
        assert_eq!(counts(&a, 5), vec![0, 0, 0, 0, 1]);
        assert!(pages.iter().all(|(_, d)| d.flags == PageFlags::BUDDY && d.refcount == 0));
    }

    #[test]
    fn lowest_address_wins_over_smallest_order() {
        let (mut a, mut pages) = setup(16);
        for i in 0..16 {
            assert_eq!(a.alloc(0, &mut pages).unwrap(), Pfn(i));
        }
        a.free(Pfn(12), 0, &mut pages).unwrap();
        for p in 4..8 {
            a.free(Pfn(p), 0, &mut pages).unwrap();
        }
        assert_eq!(a.free_list().collect::<Vec<_>>(), vec![(Pfn(12), 0), (Pfn(4), 2)]);
        // Linux's __rmqueue_smallest would return 12; we return the lowest.
        assert_eq!(a.alloc(0, &mut pages).unwrap(), Pfn(4));
        assert_eq!(a.free_list().collect::<Vec<_>>(), vec![(Pfn(5), 0), (Pfn(12), 0), (Pfn(6), 1)]);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let (mut a, mut pages) = setup(12);
        assert!(matches!(a.alloc(4, &mut pages), Err(PhysError::OutOfMemory { order: 4 })));
        assert_eq!(a.alloc(3, &mut pages).unwrap(), Pfn(0));
        assert!(matches!(a.alloc(3, &mut pages), Err(PhysError::OutOfMemory { order: 3 })));
        for i in 8..12 {
            assert_eq!(a.alloc(0, &mut pages).unwrap(), Pfn(i));
        }
        assert!(matches!(a.alloc(0, &mut pages), Err(PhysError::OutOfMemory { order: 0 })));
        assert_eq!(a.free_frames(), 0);
        assert!(matches!(a.alloc(19, &mut pages), Err(PhysError::BadOrder { order: 19, max: 18 })));
    }

    #[test]
    fn frees_are_checked() {
        let (mut a, mut pages) = setup(8);
        let p = a.alloc(1, &mut pages).unwrap();
        assert!(matches!(
            a.free(Pfn(4), 0, &mut pages),
            Err(PhysError::DoubleFree { pfn: Pfn(4), order: 0 })
        ));
        assert!(matches!(
            a.free(Pfn(1), 0, &mut pages),
            Err(PhysError::NotAllocated { pfn: Pfn(1), order: 0 })
        ));
        assert!(matches!(
            a.free(p, 0, &mut pages),
            Err(PhysError::OrderMismatch { allocated: 1, freed: 0, .. })
        ));
        assert!(matches!(
            a.free(Pfn(8), 0, &mut pages),
            Err(PhysError::NoSuchFrame { pfn: Pfn(8), frames: 8 })
        ));
        pages.get_mut(Pfn(1)).unwrap().mapcount = 1;
        assert!(matches!(
            a.free(p, 1, &mut pages),
            Err(PhysError::BadPageState { pfn: Pfn(1), reason: "nonzero mapcount" })
        ));
        pages.get_mut(Pfn(1)).unwrap().mapcount = 0;
        pages.get_mut(Pfn(0)).unwrap().flags.insert(PageFlags::SWAPCACHE);
        assert!(matches!(a.free(p, 1, &mut pages), Err(PhysError::BadPageState { .. })));
        pages.get_mut(Pfn(0)).unwrap().flags = PageFlags::DIRTY | PageFlags::SWAPBACKED;
        pages.get_mut(Pfn(0)).unwrap().refcount = 2;
        assert!(matches!(
            a.free(p, 1, &mut pages),
            Err(PhysError::BadPageState { reason: "nonzero refcount", .. })
        ));
        // Every failure above left the block allocated and untouched.
        assert_eq!(a.allocated_order(p), Some(1));
        pages.get_mut(Pfn(0)).unwrap().refcount = 0;
        pages.get_mut(Pfn(0)).unwrap().mapping = 0x1000 | PAGE_MAPPING_ANON;
        a.free(p, 1, &mut pages).unwrap();
        assert_eq!(
            *pages.get(Pfn(0)).unwrap(),
            PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() }
        );
        assert_eq!(a.free_frames(), 8);
        assert!(matches!(
            a.free(p, 1, &mut pages),
            Err(PhysError::DoubleFree { pfn: Pfn(0), order: 1 })
        ));
    }

    #[test]
    fn short_descriptor_table_is_an_error() {
        let (mut a, _) = setup(8);
        let mut short = PageDescs::new(4);
        assert!(matches!(
            a.alloc(0, &mut short),
            Err(PhysError::DescsTooShort { descs: 4, frames: 8 })
        ));
    }

    #[test]
    fn max_order_blocks() {
        // 1 GiB + 4 KiB: one order-18 block and one frame.
        let (mut a, mut pages) = setup((1 << 18) + 1);
        assert_eq!(a.free_blocks(18), 1);
        assert_eq!(a.free_blocks(0), 1);
        assert_eq!(a.alloc(18, &mut pages).unwrap(), Pfn(0));
        assert_eq!(a.alloc(0, &mut pages).unwrap(), Pfn(1 << 18));
        assert_eq!(a.free_frames(), 0);
    }
}
