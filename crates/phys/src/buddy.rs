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
//! Each order's free list is a bit set with summary levels. A single-frame
//! allocation, the one every fault makes, does not look at the orders at
//! all: any free block can hold one frame, so the answer is the lowest
//! free block of any order, the smallest member of a further set holding
//! the first frame of every free block (three word reads for a million
//! frames), whose order a per-frame byte gives. Larger orders take the
//! smallest of the per-order sets' first members. Per-order searches and
//! then a cache of each order's lowest block came first; the cache still
//! cost 19 compares per allocation, about a fifth of the allocator's part
//! of a write fault. A property test checks the allocator against the
//! plain search, call for call.
//!
//! The allocator owns only its free lists and the set of live blocks. The
//! page descriptors are passed into [`FrameAllocator::alloc`] and
//! [`FrameAllocator::free`] so that a caller can keep physical memory,
//! allocator and descriptors as separate borrows; the allocator marks free
//! frames [`PageFlags::BUDDY`] (kpageflags BUDDY) and checks at free time
//! what Linux's `free_page_is_bad` checks.

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

/// A set of indices below a fixed bound: one bit per index, plus summary
/// levels in which each bit says whether a word of the level below is
/// non-zero, up to a single top word. The smallest member is then one word
/// read per level (three for 2^18 indices), where a search tree would chase
/// pointers through nodes scattered over the heap; insert and remove touch
/// one word per level at most.
#[derive(Clone)]
struct IndexSet {
    /// `levels[0]` has a bit per index; `levels[k + 1]` a bit per word of
    /// `levels[k]`, set while that word is non-zero. The last level is one
    /// word.
    levels: Vec<Vec<u64>>,
    /// Indices are `0..bound`.
    bound: u64,
}

/// Words needed for `bits` bits (at least one, so every level has a top).
fn words_for(bits: u64) -> u64 {
    bits.div_ceil(64).max(1)
}

impl IndexSet {
    /// An empty set of indices `0..bound`; `None` if the host cannot
    /// allocate it.
    fn try_new(bound: u64) -> Option<Self> {
        let mut levels = Vec::new();
        let mut bits = bound;
        loop {
            let words = words_for(bits);
            let mut level = Vec::new();
            level.try_reserve_exact(usize::try_from(words).ok()?).ok()?;
            level.resize(words as usize, 0);
            levels.push(level);
            if words == 1 {
                break;
            }
            bits = words;
        }
        Some(Self { levels, bound })
    }

    fn contains(&self, i: u64) -> bool {
        i < self.bound && self.levels[0][(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Adds `i` (below the bound, which every caller guarantees: blocks lie
    /// inside the managed frames).
    #[inline(always)]
    fn insert(&mut self, mut i: u64) {
        debug_assert!(i < self.bound);
        for level in &mut self.levels {
            let w = &mut level[(i / 64) as usize];
            let was = *w;
            *w |= 1 << (i % 64);
            if was != 0 {
                break;
            }
            i /= 64;
        }
    }

    /// Removes `i`; whether it was there.
    #[cfg(test)]
    fn remove(&mut self, i: u64) -> bool {
        if !self.contains(i) {
            return false;
        }
        self.remove_member(i);
        true
    }

    /// Removes `i`, which the caller knows is a member.
    fn remove_member(&mut self, mut i: u64) {
        debug_assert!(self.contains(i));
        for level in &mut self.levels {
            let w = &mut level[(i / 64) as usize];
            *w &= !(1 << (i % 64));
            if *w != 0 {
                break;
            }
            i /= 64;
        }
    }

    /// The smallest member.
    fn first(&self) -> Option<u64> {
        let mut i = 0u64;
        for level in self.levels.iter().rev() {
            let w = level[i as usize];
            if w == 0 {
                return None;
            }
            i = i * 64 + u64::from(w.trailing_zeros());
        }
        Some(i)
    }

    /// Members in increasing order.
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.levels[0].iter().enumerate().filter(|&(_, &w)| w != 0).flat_map(|(k, &w)| {
            let base = k as u64 * 64;
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let b = rest.trailing_zeros();
                rest &= rest - 1;
                Some(base + u64::from(b))
            })
        })
    }
}

impl std::fmt::Debug for IndexSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// No free block of the orders searched.
const NONE: u64 = u64::MAX;

/// `block` byte of the first frame of a free block: this bit ORed with the
/// block's order.
const FREE_HEAD: u8 = 0x80;

/// A buddy allocator over frames `0..frames`.
#[derive(Clone)]
pub struct FrameAllocator {
    frames: u64,
    /// Free blocks per order, by first frame number >> order, for orders
    /// 1 and up (`free[0]` stays empty: single frames are only ever looked
    /// for as the lowest free block of any order, in `heads`).
    free: Vec<IndexSet>,
    /// The first frame of every free block, whatever its order: its
    /// smallest member is the lowest free block, what a single-frame
    /// allocation takes.
    heads: IndexSet,
    /// Number of free blocks per order.
    counts: [u64; NR_ORDERS],
    /// Per frame: 0 if it starts no block, 1 + the order of the allocated
    /// block it starts, or [`FREE_HEAD`] | the order of the free block it
    /// starts (so a buddy's state is one byte read).
    block: Vec<u8>,
}

/// Free and allocated blocks as maps from first frame to order (free ones
/// by order, then address), leaving out the per-frame arrays they are
/// stored in.
impl std::fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("frames", &self.frames)
            .field("free", &DebugBlocks(self, true))
            .field("live", &DebugBlocks(self, false))
            .finish()
    }
}

/// The free (`true`) or allocated blocks as a map from first frame to order.
struct DebugBlocks<'a>(&'a FrameAllocator, bool);

impl std::fmt::Debug for DebugBlocks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let blocks: Box<dyn Iterator<Item = (Pfn, u32)>> =
            if self.1 { Box::new(self.0.free_list()) } else { Box::new(self.0.allocated()) };
        f.debug_map().entries(blocks.map(|(p, o)| (p.as_u64(), o))).finish()
    }
}

/// Linux's free_page_is_bad for one descriptor of a block being freed:
/// why the frame cannot go back to the allocator, if it cannot. `max_ref`
/// is the references the caller may still hold on it (1 for the block's
/// head, which the caller's put is dropping, 0 for its tail frames).
#[inline(always)]
fn free_page_is_bad(d: &PageDesc, max_ref: u32) -> Option<&'static str> {
    if d.mapcount != 0 {
        Some("nonzero mapcount")
    } else if d.refcount > max_ref {
        Some("nonzero refcount")
    } else if d.flags.intersects(PAGE_FLAGS_CHECK_AT_FREE) {
        Some("a flag that must be clear at free is set")
    } else if d.mapping != 0 && d.mapping & PAGE_MAPPING_ANON == 0 {
        Some("non-anonymous mapping still set")
    } else {
        None
    }
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
    ///
    /// Its bookkeeping takes about a byte and a quarter per frame (against
    /// 40 for the descriptors); if the host cannot allocate that, this
    /// aborts as any `Vec` would. [`Self::try_new`] reports it instead.
    pub fn new(pages: &mut PageDescs) -> Self {
        match Self::try_new(pages) {
            Ok(a) => a,
            // The same answer as an infallible Vec allocation gets.
            Err(_) => std::alloc::handle_alloc_error(std::alloc::Layout::new::<u64>()),
        }
    }

    /// As [`Self::new`], but `DescAlloc` when the bookkeeping for this many
    /// frames cannot be allocated.
    pub fn try_new(pages: &mut PageDescs) -> Result<Self, PhysError> {
        let frames = pages.len();
        let oom = || PhysError::DescAlloc { frames };
        let mut free = Vec::new();
        free.try_reserve_exact(NR_ORDERS).map_err(|_| oom())?;
        free.push(IndexSet::try_new(0).ok_or_else(oom)?);
        for o in 1..=MAX_ORDER {
            free.push(IndexSet::try_new(frames.div_ceil(block_frames(o))).ok_or_else(oom)?);
        }
        let heads = IndexSet::try_new(frames).ok_or_else(oom)?;
        let mut block = Vec::new();
        block.try_reserve_exact(usize::try_from(frames).map_err(|_| oom())?).map_err(|_| oom())?;
        block.resize(frames as usize, 0);
        let mut a = Self { frames, free, heads, counts: [0; NR_ORDERS], block };
        let mut p = 0u64;
        while p < frames {
            let mut order = MAX_ORDER;
            while p % block_frames(order) != 0 || p + block_frames(order) > frames {
                order -= 1;
            }
            a.insert_free(p, order);
            p += block_frames(order);
        }
        for (_, d) in pages.iter_mut() {
            *d = PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() };
        }
        Ok(a)
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

    /// Puts the block of `order` at frame `p` (below `frames`) on its free
    /// list.
    #[inline(always)]
    fn insert_free(&mut self, p: u64, order: u32) {
        let o = order as usize;
        if order > 0 {
            self.free[o].insert(p >> order);
        }
        self.heads.insert(p);
        self.counts[o] += 1;
        self.block[p as usize] = FREE_HEAD | order as u8;
    }

    /// Whether frame `p` starts a free block of `order`.
    fn is_free_block(&self, p: u64, order: u32) -> bool {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.block.get(i))
            .is_some_and(|&b| b == FREE_HEAD | order as u8)
    }

    /// Takes the free block of `order` at frame `p` off its free list (the
    /// caller knows it is there).
    #[inline(always)]
    fn remove_free(&mut self, p: u64, order: u32) {
        let o = order as usize;
        if order > 0 {
            self.free[o].remove_member(p >> order);
        }
        self.heads.remove_member(p);
        self.counts[o] -= 1;
        self.block[p as usize] = 0;
    }

    /// The lowest free block of `order` or larger, as (first frame, order).
    fn lowest_fitting(&self, order: u32) -> Option<(u64, u32)> {
        if order == 0 {
            // Every free block fits: the lowest of them all.
            let p = self.heads.first()?;
            return Some((p, u32::from(self.block[p as usize] & !FREE_HEAD)));
        }
        // Blocks never overlap, so the lowest fitting block is the smallest
        // of the per-order lowest blocks; ties cannot happen.
        let mut best = (NONE, 0u32);
        for o in order..=MAX_ORDER {
            if self.counts[o as usize] == 0 {
                continue;
            }
            let p = self.free[o as usize].first().map_or(NONE, |i| i << o);
            if p < best.0 {
                best = (p, o);
            }
        }
        (best.0 != NONE).then_some(best)
    }

    /// Allocates a block of `2^order` frames: the lowest-addressed free block
    /// of that order or larger, split down as needed (upper halves return to
    /// the free lists).
    ///
    /// The block's descriptors come back zeroed (BUDDY cleared) with a
    /// refcount of 1 on the first frame: the caller's reference, as
    /// `alloc_pages` returns it. The frames' contents are not zeroed.
    #[inline]
    pub fn alloc(&mut self, order: u32, pages: &mut PageDescs) -> Result<Pfn, PhysError> {
        if order == 0 {
            // The single frame every fault and swap-in takes, with the
            // split and the descriptor for order 0 known at compile time.
            return self.alloc_frame(pages);
        }
        self.alloc_block(order, pages)
    }

    /// An order-0 [`Self::alloc`].
    fn alloc_frame(&mut self, pages: &mut PageDescs) -> Result<Pfn, PhysError> {
        self.check_descs(pages)?;
        self.alloc_single(pages).map(|(pfn, _)| pfn)
    }

    /// [`Self::alloc`] of a block above order 0.
    fn alloc_block(&mut self, order: u32, pages: &mut PageDescs) -> Result<Pfn, PhysError> {
        check_order(order)?;
        self.check_descs(pages)?;
        let Some((pfn, taken)) = self.lowest_fitting(order) else {
            return Err(PhysError::OutOfMemory { order });
        };
        self.take(pfn, taken, order);
        // `check_descs` made sure the descriptors cover every frame.
        for i in 0..block_frames(order) {
            *pages.get_mut(Pfn(pfn + i))? = PageDesc::default();
        }
        pages.get_mut(Pfn(pfn))?.refcount = 1;
        Ok(Pfn(pfn))
    }

    /// A single frame, as [`Self::alloc`] of order 0 returns it, and the
    /// frame the next single-frame allocation will return (what
    /// [`Self::next_frame`] answers afterwards), found on the way: when
    /// the block taken was split, its second frame is now the lowest free
    /// block; otherwise the lowest free block usually lies in the same
    /// word of the set of block heads as the frame just taken (nothing
    /// below that frame was free). The fault paths prefetch that frame.
    pub fn alloc_one(&mut self, pages: &mut PageDescs) -> Result<(Pfn, Option<Pfn>), PhysError> {
        self.check_descs(pages)?;
        let (Pfn(pfn), taken) = self.alloc_single(pages)?;
        let next = if taken > 0 {
            // The split put the order-0 buddy of `pfn`, `pfn + 1`, back
            // on the free lists, and every free frame lies above `pfn`.
            Some(pfn + 1)
        } else {
            // Every member of the word left is above `pfn`, so the
            // word's lowest, if any, is the lowest of the whole set.
            match self.heads.levels[0][(pfn / 64) as usize] {
                0 => self.heads.first(),
                w => Some(pfn & !63 | u64::from(w.trailing_zeros())),
            }
        };
        Ok((Pfn(pfn), next.map(Pfn)))
    }

    /// An order-0 [`Self::alloc`] for descriptors `check_descs` accepted:
    /// the frame and the order of the free block it was taken from.
    #[inline(always)]
    fn alloc_single(&mut self, pages: &mut PageDescs) -> Result<(Pfn, u32), PhysError> {
        let Some((pfn, taken)) = self.lowest_fitting(0) else {
            return Err(PhysError::OutOfMemory { order: 0 });
        };
        self.take(pfn, taken, 0);
        // `check_descs` made sure the descriptors cover every frame.
        *pages.get_mut(Pfn(pfn))? = PageDesc { refcount: 1, ..PageDesc::default() };
        Ok((Pfn(pfn), taken))
    }

    /// Takes the free block of order `taken` at `pfn` for an allocation of
    /// `order`, returning the upper halves of the split to the free lists.
    #[inline(always)]
    fn take(&mut self, pfn: u64, taken: u32, order: u32) {
        // The upper halves of orders below 6 start in the same word of
        // `heads` as the block (blocks are aligned, so `pfn % 64` plus
        // the half's offset stays below 64): their bits are gathered in
        // `near` and that word is written once, the block's own bit
        // cleared in the same store. It held the block's bit before and
        // holds the halves' after, so it is non-zero throughout and the
        // set's upper levels do not change. Larger halves go in one by
        // one.
        let mut near = 0u64;
        let mut o = taken;
        while o > order {
            o -= 1;
            let p = pfn + block_frames(o);
            if o > 0 {
                self.free[o as usize].insert(p >> o);
            }
            if o < 6 {
                near |= 1 << (p % 64);
            } else {
                self.heads.insert(p);
            }
            self.counts[o as usize] += 1;
            self.block[p as usize] = FREE_HEAD | o as u8;
        }
        if taken > 0 {
            self.free[taken as usize].remove_member(pfn >> taken);
        }
        self.counts[taken as usize] -= 1;
        if near != 0 {
            let w = &mut self.heads.levels[0][(pfn / 64) as usize];
            *w = (*w & !(1 << (pfn % 64))) | near;
        } else {
            self.heads.remove_member(pfn);
        }
        // Below `frames` (a free block lies inside), so the index fits.
        self.block[pfn as usize] = order as u8 + 1;
    }

    /// The frame the next single-frame allocation would return (the
    /// lowest free one), without allocating it; `None` when none is free.
    pub fn next_frame(&self) -> Option<Pfn> {
        self.heads.first().map(Pfn)
    }

    /// Whether `pfn` lies inside a free block.
    pub fn is_free(&self, pfn: Pfn) -> bool {
        let p = pfn.as_u64();
        (0..=MAX_ORDER).any(|o| self.is_free_block(p >> o << o, o))
    }

    /// The order of the allocated block starting at `pfn`, if there is one.
    pub fn allocated_order(&self, pfn: Pfn) -> Option<u32> {
        let i = usize::try_from(pfn.as_u64()).ok()?;
        match self.block.get(i) {
            Some(&b) if b != 0 && b & FREE_HEAD == 0 => Some(u32::from(b) - 1),
            _ => None,
        }
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
    #[inline]
    pub fn free(&mut self, pfn: Pfn, order: u32, pages: &mut PageDescs) -> Result<(), PhysError> {
        if order == 0 {
            return self.free_single(pfn, pages);
        }
        self.free_block(pfn, order, pages)
    }

    /// [`Self::free`] of a block above order 0.
    fn free_block(&mut self, pfn: Pfn, order: u32, pages: &mut PageDescs) -> Result<(), PhysError> {
        check_order(order)?;
        self.check_descs(pages)?;
        if pfn.as_u64() >= self.frames {
            return Err(PhysError::NoSuchFrame { pfn, frames: self.frames });
        }
        if self.allocated_order(pfn) != Some(order) {
            return Err(self.free_refused(pfn, order));
        }
        for i in 0..block_frames(order) {
            let f = Pfn(pfn.as_u64() + i);
            let d = pages.get(f)?;
            if let Some(reason) = free_page_is_bad(d, if i == 0 { 1 } else { 0 }) {
                return Err(PhysError::BadPageState { pfn: f, reason });
            }
        }
        // Below `frames`, checked above.
        self.block[pfn.as_u64() as usize] = 0;
        for i in 0..block_frames(order) {
            *pages.get_mut(Pfn(pfn.as_u64() + i))? =
                PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() };
        }
        self.merge_and_insert(pfn.as_u64(), order);
        Ok(())
    }

    /// An order-0 [`Self::free`] (the frame every reclaim, zap and COW
    /// gives back): the same checks and merges, one descriptor instead of
    /// a loop over the block's.
    fn free_single(&mut self, pfn: Pfn, pages: &mut PageDescs) -> Result<(), PhysError> {
        self.check_descs(pages)?;
        let p = pfn.as_u64();
        // `block` has one byte per frame: no byte, no such frame.
        let Some(&b) = usize::try_from(p).ok().and_then(|i| self.block.get(i)) else {
            return Err(PhysError::NoSuchFrame { pfn, frames: self.frames });
        };
        if b != 1 {
            return Err(self.free_refused(pfn, 0));
        }
        // `check_descs` made sure the descriptors cover every frame.
        let d = pages.get_mut(pfn)?;
        if let Some(reason) = free_page_is_bad(d, 1) {
            return Err(PhysError::BadPageState { pfn, reason });
        }
        *d = PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() };
        self.block[p as usize] = 0;
        self.merge_and_insert(p, 0);
        Ok(())
    }

    /// Why a block that is not a live block of `order` at `pfn` cannot be
    /// freed.
    #[cold]
    fn free_refused(&self, pfn: Pfn, order: u32) -> PhysError {
        match self.allocated_order(pfn) {
            Some(o) => PhysError::OrderMismatch { pfn, allocated: o, freed: order },
            None if self.is_free(pfn) => PhysError::DoubleFree { pfn, order },
            None => PhysError::NotAllocated { pfn, order },
        }
    }

    /// Merges the free block of `order` at `p` with its free buddies and
    /// puts the result on its free list.
    #[inline(always)]
    fn merge_and_insert(&mut self, mut p: u64, mut o: u32) {
        while o < MAX_ORDER {
            let buddy = p ^ block_frames(o);
            if !self.is_free_block(buddy, o) {
                break;
            }
            self.remove_free(buddy, o);
            p = p.min(buddy);
            o += 1;
        }
        self.insert_free(p, o);
    }

    /// Number of free blocks of `order` (0 for an order beyond [`MAX_ORDER`]).
    pub fn free_blocks(&self, order: u32) -> u64 {
        self.counts.get(order as usize).copied().unwrap_or(0)
    }

    /// Free blocks per order, index = order (like /proc/buddyinfo's columns).
    pub fn free_counts(&self) -> [u64; NR_ORDERS] {
        self.counts
    }

    /// Total number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.counts.iter().enumerate().map(|(o, &c)| c * block_frames(o as u32)).sum()
    }

    /// Free blocks as (first frame, order), lowest order first, then by address.
    pub fn free_list(&self) -> impl Iterator<Item = (Pfn, u32)> + '_ {
        let singles =
            self.heads.iter().filter(|&p| self.block[p as usize] == FREE_HEAD).map(|p| (Pfn(p), 0));
        let blocks = self
            .free
            .iter()
            .enumerate()
            .skip(1)
            .flat_map(|(o, s)| s.iter().map(move |i| (Pfn(i << o), o as u32)));
        singles.chain(blocks)
    }

    /// Allocated blocks as (first frame, order), by address.
    pub fn allocated(&self) -> impl Iterator<Item = (Pfn, u32)> + '_ {
        self.block
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b != 0 && b & FREE_HEAD == 0)
            .map(|(p, &b)| (Pfn(p as u64), u32::from(b) - 1))
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
    fn single_frame_frees_are_checked() {
        let (mut a, mut pages) = setup(8);
        let p = a.alloc(0, &mut pages).unwrap();
        let q = a.alloc(0, &mut pages).unwrap();
        assert_eq!((p, q), (Pfn(0), Pfn(1)));
        type Spoil = fn(&mut PageDesc);
        let bad: [(Spoil, &str); 4] = [
            (|d| d.mapcount = 1, "nonzero mapcount"),
            (|d| d.refcount = 2, "nonzero refcount"),
            (|d| d.flags.insert(PageFlags::LRU), "a flag that must be clear at free is set"),
            (|d| d.mapping = 0x1000, "non-anonymous mapping still set"),
        ];
        for (spoil, why) in bad {
            let before = *pages.get(p).unwrap();
            spoil(pages.get_mut(p).unwrap());
            match a.free(p, 0, &mut pages) {
                Err(PhysError::BadPageState { pfn, reason }) => assert_eq!((pfn, reason), (p, why)),
                other => panic!("{why}: {other:?}"),
            }
            assert_eq!(a.allocated_order(p), Some(0));
            *pages.get_mut(p).unwrap() = before;
        }
        // An anonymous mapping is cleared; the frame merges with its free
        // buddy only when that one is free too.
        pages.get_mut(p).unwrap().mapping = 0x1000 | PAGE_MAPPING_ANON;
        a.free(p, 0, &mut pages).unwrap();
        assert_eq!(
            *pages.get(p).unwrap(),
            PageDesc { flags: PageFlags::BUDDY, ..PageDesc::default() }
        );
        assert_eq!(counts(&a, 4), vec![1, 1, 1, 0]);
        a.free(q, 0, &mut pages).unwrap();
        assert_eq!(counts(&a, 4), vec![0, 0, 0, 1]);
        assert!(matches!(
            a.free(q, 0, &mut pages),
            Err(PhysError::DoubleFree { pfn: Pfn(1), order: 0 })
        ));
        assert!(matches!(
            a.free(Pfn(1 << 40), 0, &mut pages),
            Err(PhysError::NoSuchFrame { frames: 8, .. })
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
    fn index_set_levels() {
        // 300000 indices: levels of 4688, 74 and 2 words, then the top one.
        let mut s = IndexSet::try_new(300_000).unwrap();
        assert_eq!(s.levels.len(), 4);
        assert_eq!(s.first(), None);
        for i in [299_999, 4096 * 64 + 3, 64, 7] {
            s.insert(i);
        }
        assert_eq!(s.first(), Some(7));
        assert!(s.remove(7));
        assert!(!s.remove(7));
        assert_eq!(s.first(), Some(64));
        assert!(s.remove(64));
        assert_eq!(s.first(), Some(4096 * 64 + 3));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![4096 * 64 + 3, 299_999]);
        assert!(s.remove(4096 * 64 + 3));
        assert_eq!(s.first(), Some(299_999));
        assert!(!s.contains(300_000));
        assert!(!s.remove(300_000));
        assert!(s.remove(299_999));
        assert_eq!(s.first(), None);
        assert!(s.levels.iter().all(|l| l.iter().all(|&w| w == 0)));
        // A one-word set is its own top.
        let mut t = IndexSet::try_new(1).unwrap();
        assert_eq!(t.levels.len(), 1);
        t.insert(0);
        assert_eq!((t.first(), t.contains(0), t.contains(1)), (Some(0), true, false));
    }

    #[test]
    fn debug_lists_blocks_not_frames() {
        let (mut a, mut pages) = setup(5);
        a.alloc(0, &mut pages).unwrap();
        let d = format!("{a:?}");
        assert_eq!(d, "FrameAllocator { frames: 5, free: {1: 0, 4: 0, 2: 1}, live: {0: 0} }");
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
