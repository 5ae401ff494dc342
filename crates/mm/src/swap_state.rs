//! The swap side of mm: how the fault, fork, zap and reclaim paths use the
//! swap crate's devices, slot counts and swap cache (mm/swap_state.c and
//! mm/swapfile.c as their callers see them), and the frame bookkeeping
//! that goes with it (a page whose last reference was the cache's is freed
//! here, as `put_page` would).

use pgtable::Pfn;
use phys::PageFlags;
use swap::{Swap, SwapDevice, SwapError};

pub use swap::SwpEntry;

use crate::error::MmError;
use crate::machine::Machine;

/// `swp_entry(type, offset)`, with a bad value as an mm error.
pub(crate) fn swp_entry(swap_type: u8, offset: u64) -> Result<SwpEntry, MmError> {
    Ok(SwpEntry::new(swap_type, offset)?)
}

/// The entry a swap-cache page's `private` word holds.
pub(crate) fn private_entry(private: u64) -> Result<SwpEntry, MmError> {
    Ok(SwpEntry::from_raw(private)?)
}

/// The machine's swap: devices by type, their swap_maps, the swap cache.
#[derive(Debug)]
pub(crate) struct SwapState {
    pub(crate) inner: Swap,
}

impl SwapState {
    /// One anonymous device per size, typed 0, 1, ... in order (swapon).
    pub(crate) fn new(sizes: &[u64]) -> Result<Self, MmError> {
        let mut inner = Swap::new();
        for (t, &s) in sizes.iter().enumerate() {
            if s % 4096 != 0 {
                return Err(MmError::BadConfig(format!(
                    "swap size {s:#x} is not a multiple of 4096"
                )));
            }
            let t = u8::try_from(t)
                .map_err(|_| MmError::BadConfig(format!("{} swap devices", sizes.len())))?;
            inner.swapon(SwapDevice::anonymous(t, s / 4096)?)?;
        }
        Ok(Self { inner })
    }

    /// Whether the entry names an allocated slot of an existing device.
    pub(crate) fn is_valid(&self, e: SwpEntry) -> bool {
        self.inner.swap_map_value(e).is_ok_and(|v| v != 0 && v != swap::SWAP_MAP_BAD)
    }

    /// `swp_swapcount`: swap PTEs naming the slot, continuation digits
    /// included.
    pub(crate) fn swap_count(&self, e: SwpEntry) -> Result<u32, MmError> {
        let n = self.inner.swp_swapcount(e)?;
        u32::try_from(n).map_err(|_| MmError::bug("swp_swapcount", format!("count {n} of {e}")))
    }

    /// Whether the slot carries SWAP_HAS_CACHE.
    pub(crate) fn has_cache(&self, e: SwpEntry) -> bool {
        self.inner.swap_has_cache(e).unwrap_or(false)
    }

    /// `swap_free`.
    pub(crate) fn swap_free(&mut self, e: SwpEntry) -> Result<(), MmError> {
        self.inner.swap_free(e)?;
        Ok(())
    }

    /// [`Self::is_valid`] and, for a valid entry, [`Self::lookup`], with
    /// one device lookup: `None` when the entry is not valid.
    #[inline]
    pub(crate) fn lookup_valid(&self, e: SwpEntry) -> Option<Option<Pfn>> {
        self.inner.lookup_swap_cache_in_use(e)
    }

    /// `lookup_swap_cache` (no reference taken).
    pub(crate) fn lookup(&self, e: SwpEntry) -> Option<Pfn> {
        self.inner.lookup_swap_cache(e)
    }

    /// `vm_swap_full`.
    pub(crate) fn vm_swap_full(&self) -> bool {
        self.inner.vm_swap_full()
    }

    /// Every slot in use: (entry, PTE count, has cache), in entry order.
    pub(crate) fn used_slots(&self) -> Vec<(SwpEntry, u32, bool)> {
        let mut out = Vec::new();
        for d in self.inner.devices() {
            for (o, &v) in d.swap_map().as_bytes().iter().enumerate().skip(1) {
                if v != 0 && v != swap::SWAP_MAP_BAD {
                    if let Ok(e) = SwpEntry::new(d.swap_type(), o as u64) {
                        // A count whose continuation digits are broken
                        // shows as u32::MAX, which no PTE count matches.
                        let count = self
                            .inner
                            .swp_swapcount(e)
                            .ok()
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(u32::MAX);
                        out.push((e, count, v & swap::SWAP_HAS_CACHE != 0));
                    }
                }
            }
        }
        out
    }

    /// The swap cache: (entry, frame), in entry order.
    pub(crate) fn cache_entries(&self) -> Vec<(SwpEntry, Pfn)> {
        self.inner.swap_cache().collect()
    }

    /// Slots (the header included) of a device.
    pub(crate) fn device_pages(&self, t: u8) -> Option<u64> {
        self.inner.device(t).ok().map(SwapDevice::pages)
    }
}

impl Machine {
    /// `swap_duplicate`: one more swap PTE names `e`. Past 62 the count
    /// continues in continuation pages; when it needs a new one, a frame
    /// is allocated and handed to `add_swap_count_continuation`, and the
    /// duplicate tried again. `may_reclaim` is the allocation's GFP_KERNEL
    /// (fork's copy_pte_range); without it (try_to_unmap's GFP_ATOMIC) an
    /// allocation that finds no free frame makes the call return false
    /// with nothing changed, and the caller backs out.
    #[inline(always)]
    pub(crate) fn swap_duplicate(
        &mut self,
        e: SwpEntry,
        may_reclaim: bool,
    ) -> Result<bool, MmError> {
        // The common case first, the continuation loop out of line.
        match self.swap.inner.swap_duplicate(e) {
            Ok(()) => Ok(true),
            Err(err) => self.swap_duplicate_slow(e, may_reclaim, err),
        }
    }

    /// `swap_duplicate` after a first attempt failed with `first`: add a
    /// continuation page when the count needs one, and retry.
    #[cold]
    #[inline(never)]
    fn swap_duplicate_slow(
        &mut self,
        e: SwpEntry,
        may_reclaim: bool,
        first: SwapError,
    ) -> Result<bool, MmError> {
        let mut r = Err(first);
        loop {
            match r {
                Ok(()) => return Ok(true),
                Err(SwapError::CountNeedsContinuation { .. }) => {
                    let pfn = if may_reclaim {
                        self.alloc_frame("add_swap_count_continuation", &[])?
                    } else {
                        match self.frames.alloc(0, &mut self.pages) {
                            Ok(p) => p,
                            Err(phys::PhysError::OutOfMemory { .. }) => return Ok(false),
                            Err(err) => return Err(err.into()),
                        }
                    };
                    if !self.swap.inner.add_swap_count_continuation(e, pfn)? {
                        self.free_page_frame(pfn)?;
                    }
                }
                Err(err) => return Err(err.into()),
            }
            r = self.swap.inner.swap_duplicate(e);
        }
    }

    /// Frames the swap devices hold as count continuation pages (they stay
    /// until swapoff, as in Linux).
    pub fn swap_continuation_frames(&self) -> Vec<Pfn> {
        self.swap.inner.continuation_frames()
    }

    /// Frees a page whose last reference the swap cache just dropped.
    fn after_cache_release(&mut self, r: Option<swap::CacheRelease>) -> Result<(), MmError> {
        if let Some(r) = r {
            if r.last_reference {
                self.free_page_frame(r.pfn)?;
            }
        }
        Ok(())
    }

    /// `add_to_swap`: a slot for a page about to be reclaimed, the page in
    /// the swap cache and dirty. The entry, `None` when swap is full.
    pub(crate) fn add_to_swap(&mut self, pfn: Pfn) -> Result<Option<SwpEntry>, MmError> {
        match self.swap.inner.add_to_swap(pfn, &mut self.pages) {
            Ok(e) => {
                self.pages.get_mut(pfn)?.flags |= PageFlags::SWAPBACKED;
                Ok(Some(e))
            }
            Err(SwapError::SwapFull | SwapError::DeviceFull(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `delete_from_swap_cache`: the page leaves the cache, the slot loses
    /// SWAP_HAS_CACHE, the cache's reference is dropped.
    #[inline(always)]
    pub(crate) fn delete_from_swap_cache(&mut self, pfn: Pfn) -> Result<(), MmError> {
        let r = self.swap.inner.delete_from_swap_cache(pfn, &mut self.pages)?;
        self.after_cache_release(Some(r))
    }

    /// `try_to_free_swap` / `folio_free_swap`: drop the swap cache when no
    /// swap PTE names the slot any more; the page becomes dirty. Returns
    /// whether it did.
    pub(crate) fn try_to_free_swap(&mut self, pfn: Pfn) -> Result<bool, MmError> {
        let r = self.swap.inner.folio_free_swap(pfn, &mut self.pages)?;
        let freed = r.is_some();
        self.after_cache_release(r)?;
        Ok(freed)
    }

    /// `free_swap_cache`, what zap runs on each page it unmapped (through
    /// `free_page_and_swap_cache` / `free_pages_and_swap_cache`): a
    /// swap-cache page that no PTE maps any more leaves the cache when no
    /// swap PTE names its slot either. Every era does the same here: the
    /// `!page_mapped` test sits in free_swap_cache itself since 2.6.29
    /// (try_to_free_swap then checks only PG_writeback and page_swapcount),
    /// and 6.x's folio version tests folio_mapped and calls folio_free_swap
    /// (PG_writeback, folio_swapped). The page lock's trylock always
    /// succeeds here (nothing runs concurrently); writeback is synchronous,
    /// so PG_writeback is never set when zap runs.
    pub(crate) fn free_swap_cache(&mut self, pfn: Pfn) -> Result<(), MmError> {
        let d = self.pages.get(pfn)?;
        if d.flags.contains(PageFlags::SWAPCACHE) && d.mapcount == 0 {
            self.try_to_free_swap(pfn)?;
        }
        Ok(())
    }

    /// 6.18's name for [`Machine::try_to_free_swap`].
    pub(crate) fn folio_free_swap(&mut self, pfn: Pfn) -> Result<bool, MmError> {
        self.try_to_free_swap(pfn)
    }

    /// `read_swap_cache_async` (without readahead): a new page in the swap
    /// cache with the slot's contents, on the inactive LRU; returned with
    /// the caller's reference.
    pub(crate) fn read_swap_cache_async(&mut self, e: SwpEntry) -> Result<Pfn, MmError> {
        let pfn = self.alloc_frame("read_swap_cache_async", &[])?;
        // swapcache_prepare, PG_swapbacked, add_to_swap_cache.
        self.swap.inner.swapcache_prepare_add(e, pfn, &mut self.pages)?;
        self.lru_add_inactive(pfn)?;
        // The page is in no page table yet: the exclusive bulk copy.
        self.swap.inner.swap_readpage_exclusive(pfn, &mut self.mem, &mut self.pages)?;
        Ok(pfn)
    }

    /// `swap_writepage`: the page's contents to its slot. Reclaim writes
    /// only pages try_to_unmap left unmapped, so nobody writes the page
    /// meanwhile and the exclusive bulk copy applies.
    pub(crate) fn swap_writepage(&mut self, pfn: Pfn) -> Result<(), MmError> {
        self.swap.inner.swap_writepage_exclusive(pfn, &mut self.mem, &self.pages)?;
        Ok(())
    }

    /// `free_swap_and_cache`: a swap PTE went away (zap). When only the
    /// swap cache still holds the slot and the page is unmapped (or swap is
    /// full), the cache lets the page go too.
    pub(crate) fn free_swap_and_cache(&mut self, e: SwpEntry) -> Result<(), MmError> {
        let r = self.swap.inner.free_swap_and_cache(e, &mut self.pages)?;
        self.after_cache_release(r)
    }
}
