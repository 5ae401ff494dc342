//! Page descriptors: the emulator's `struct page`, one per frame, kept
//! outside the frames themselves as Linux keeps `mem_map` outside the pages.
//!
//! A descriptor's `mapping` is an opaque word, exactly as in the kernel: the
//! rmap crate gives it meaning (an anon_vma handle with the
//! [`PAGE_MAPPING_ANON`] low bit). This crate never interprets it.

use pgtable::Pfn;

use crate::error::PhysError;

/// Low bit of `mapping` marking an anonymous page (Linux's PAGE_MAPPING_ANON).
pub const PAGE_MAPPING_ANON: u64 = 0x1;

bitflags::bitflags! {
    /// Page flags, named after Linux's PG_* bits.
    ///
    /// Bit positions are ptemu's own; the `kpageflags` view in `mm` maps them
    /// to the /proc/kpageflags ABI bits.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFlags: u64 {
        /// PG_locked: the page is locked (I/O or a fault path holds it).
        const LOCKED = 1 << 0;
        /// PG_referenced.
        const REFERENCED = 1 << 1;
        /// PG_uptodate: the contents are valid.
        const UPTODATE = 1 << 2;
        /// PG_dirty: the contents differ from the backing store (swap slot).
        const DIRTY = 1 << 3;
        /// PG_lru: on an LRU list (reclaimable).
        const LRU = 1 << 4;
        /// PG_active: on the active LRU list.
        const ACTIVE = 1 << 5;
        /// PG_swapcache: in the swap cache; `private` holds the swp_entry_t.
        const SWAPCACHE = 1 << 6;
        /// PG_swapbacked: anonymous memory backed by swap.
        const SWAPBACKED = 1 << 7;
        /// PG_anon_exclusive (PageAnonExclusive): this anon page is owned by
        /// exactly one process and may be reused without copying.
        const ANON_EXCLUSIVE = 1 << 8;
        /// PG_reserved: never allocated or freed (e.g. the zero page).
        const RESERVED = 1 << 9;
        /// The page is a page table (Linux's PGTABLE page type).
        const PGTABLE = 1 << 10;
        /// The page is the shared zero page.
        const ZERO_PAGE = 1 << 11;
        /// The page is free, owned by the buddy allocator (Linux's PG_buddy
        /// page type). Set on every frame of a free block.
        const BUDDY = 1 << 12;
        /// PG_writeback: being written to its backing store.
        const WRITEBACK = 1 << 13;
    }
}

/// The descriptor of one physical frame.
///
/// Counts are plain numbers, not Linux's biased `_mapcount` (which starts at
/// -1): `mapcount` is the number of page-table entries that map the page.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PageDesc {
    /// PG_* flags.
    pub flags: PageFlags,
    /// References held on the page (mappings, swap cache, callers).
    pub refcount: u32,
    /// Number of PTEs mapping the page.
    pub mapcount: u32,
    /// Opaque owner word; for anon pages an anon_vma handle | PAGE_MAPPING_ANON.
    pub mapping: u64,
    /// Page offset of the page within its owner (`linear_page_index`).
    pub index: u64,
    /// Private word; for swap-cache pages the arch-independent swp_entry_t.
    pub private: u64,
}

impl PageDesc {
    /// Whether `mapping` marks an anonymous page (PageAnon).
    pub const fn is_anon(&self) -> bool {
        self.mapping & PAGE_MAPPING_ANON != 0
    }
}

/// The table of page descriptors, indexed by frame number.
#[derive(Clone, Debug)]
pub struct PageDescs {
    descs: Vec<PageDesc>,
}

impl PageDescs {
    /// Descriptors for frames `0..frames`, all zero.
    pub fn new(frames: u64) -> Self {
        Self { descs: vec![PageDesc::default(); frames as usize] }
    }

    /// Descriptors for frames `0..frames`, all zero, or an error if the
    /// table cannot be allocated (a huge memory on a small host) instead of
    /// the abort [`PageDescs::new`] would give.
    pub fn try_new(frames: u64) -> Result<Self, PhysError> {
        let n = usize::try_from(frames).map_err(|_| PhysError::DescAlloc { frames })?;
        let mut descs = Vec::new();
        descs.try_reserve_exact(n).map_err(|_| PhysError::DescAlloc { frames })?;
        descs.resize(n, PageDesc::default());
        Ok(Self { descs })
    }

    /// Number of frames described.
    pub fn len(&self) -> u64 {
        self.descs.len() as u64
    }

    /// Whether there are no frames at all.
    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }

    /// The descriptor of `pfn`.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> Result<&PageDesc, PhysError> {
        // A match rather than `ok_or`: every fault looks descriptors up
        // several times, and an eagerly built error costs a drop each time.
        let n = self.descs.len() as u64;
        match self.descs.get(pfn.as_usize()) {
            Some(d) => Ok(d),
            None => Err(PhysError::NoSuchFrame { pfn, frames: n }),
        }
    }

    /// The descriptor of `pfn`, for update.
    #[inline]
    pub fn get_mut(&mut self, pfn: Pfn) -> Result<&mut PageDesc, PhysError> {
        let n = self.descs.len() as u64;
        match self.descs.get_mut(pfn.as_usize()) {
            Some(d) => Ok(d),
            None => Err(PhysError::NoSuchFrame { pfn, frames: n }),
        }
    }

    /// Every descriptor with its frame number, lowest frame first.
    pub fn iter(&self) -> impl Iterator<Item = (Pfn, &PageDesc)> {
        self.descs.iter().enumerate().map(|(i, d)| (Pfn(i as u64), d))
    }

    /// Every descriptor with its frame number, for update, lowest frame first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Pfn, &mut PageDesc)> {
        self.descs.iter_mut().enumerate().map(|(i, d)| (Pfn(i as u64), d))
    }
}
