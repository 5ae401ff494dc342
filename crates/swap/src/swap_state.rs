//! The swap cache: swap entry -> page, Linux's mm/swap_state.c.
//!
//! A page is in the swap cache while it is, or is about to be, the copy of
//! a swap slot in memory: between add_to_swap and the end of reclaim, and
//! after do_swap_page reads a slot in until the slot is freed. While there
//! its descriptor has PG_swapcache, its `private` word holds the
//! [`SwpEntry`], the slot has SWAP_HAS_CACHE, and the cache holds one page
//! reference (`folio_ref_add(folio, nr)` with nr = 1 for our 4 KiB pages).
//! These four facts change together, here and nowhere else.
//!
//! Linux's lookup takes a reference on the page it returns; ours is a plain
//! query, and a caller that keeps the page takes its own reference.

use pgtable::Pfn;
use phys::{PageDesc, PageDescs, PageFlags};

use crate::entry::SwpEntry;
use crate::error::SwapError;
use crate::{Swap, SwapDevice};

/// What leaving the swap cache did, for the caller to act on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CacheRelease {
    /// The page that left the cache.
    pub pfn: Pfn,
    /// The entry it was cached under.
    pub entry: SwpEntry,
    /// The slot became free (no swap PTE named it any more).
    pub slot_freed: bool,
    /// The cache's reference was the page's last (refcount now 0): the
    /// caller must free the frame, as `put_page` would.
    pub last_reference: bool,
}

/// [`Swap::page_swap_entry`]'s checks, returning the device the entry
/// names as well, so that a caller goes on with the slot without finding
/// the device again: the page is in the swap cache, its `private` word is
/// an entry, and the cache holds this page for that entry (a missing
/// device is a mismatch, as a cache lookup finding nothing is).
#[inline]
pub(crate) fn cached_device<'a>(
    devices: &'a mut [Option<SwapDevice>],
    pfn: Pfn,
    desc: &PageDesc,
) -> Result<(SwpEntry, &'a mut SwapDevice), SwapError> {
    if !desc.flags.contains(PageFlags::SWAPCACHE) {
        return Err(SwapError::PageNotInSwapCache(pfn));
    }
    let entry = match SwpEntry::from_raw(desc.private) {
        Ok(e) => e,
        Err(_) => return Err(SwapError::BadPrivate { pfn, private: desc.private }),
    };
    match devices.get_mut(usize::from(entry.swap_type())).and_then(Option::as_mut) {
        Some(d) if d.cached(entry.offset()) == Some(pfn) => Ok((entry, d)),
        _ => Err(SwapError::CacheMismatch { entry, pfn }),
    }
}

impl Swap {
    /// `add_to_swap_cache`: `pfn` becomes the cached copy of `entry`.
    ///
    /// The slot must already carry SWAP_HAS_CACHE (from
    /// [`Swap::get_swap_page`] or [`Swap::swapcache_prepare`]), the cache
    /// must hold no page for `entry` and the page must not be in the swap
    /// cache. Sets PG_swapcache, `private = entry`, and takes a reference.
    pub fn add_to_swap_cache(
        &mut self,
        entry: SwpEntry,
        pfn: Pfn,
        pages: &mut PageDescs,
    ) -> Result<(), SwapError> {
        let dev = self.device_mut(entry.swap_type())?;
        cache_insert(dev, entry, pfn, pages)?;
        self.cached += 1;
        Ok(())
    }

    /// `__read_swap_cache_async`'s steps for a new page `pfn` that is to
    /// hold `entry`'s slot, with one device lookup: `swapcache_prepare`
    /// (SWAP_HAS_CACHE taken: `CacheExists` when another page holds it,
    /// `SlotNotAllocated` when nothing names the slot), PG_swapbacked set
    /// on the page (`__folio_set_swapbacked`), then
    /// [`Swap::add_to_swap_cache`]. When the cache refuses the page,
    /// SWAP_HAS_CACHE is dropped again (`put_swap_folio`) and the error
    /// returned; PG_swapbacked stays, as on the page Linux then frees.
    pub fn swapcache_prepare_add(
        &mut self,
        entry: SwpEntry,
        pfn: Pfn,
        pages: &mut PageDescs,
    ) -> Result<(), SwapError> {
        let dev = self.device_mut(entry.swap_type())?;
        dev.swap_map_mut().prepare_cache(entry.offset())?;
        if let Ok(d) = pages.get_mut(pfn) {
            d.flags.insert(PageFlags::SWAPBACKED);
        }
        if let Err(e) = cache_insert(dev, entry, pfn, pages) {
            // The slot had a count (prepare_cache requires one), so
            // dropping the flag does not free it; counted all the same.
            let freed = dev.swap_map_mut().put_cache(entry.offset())?;
            self.slot_released(freed);
            return Err(e);
        }
        self.cached += 1;
        Ok(())
    }

    /// `lookup_swap_cache`: the page cached for `entry`, if any (no
    /// reference taken).
    pub fn lookup_swap_cache(&self, entry: SwpEntry) -> Option<Pfn> {
        self.device_opt(entry.swap_type())?.cached(entry.offset())
    }

    /// do_swap_page's first questions about `entry`, with one device
    /// lookup: whether it names a slot in use on an existing device (a
    /// count or SWAP_HAS_CACHE, not SWAP_MAP_BAD), and if so the page the
    /// swap cache holds for it (no reference taken). `None` for an entry
    /// naming no slot in use; `Some(None)` when the cache has no page.
    pub fn lookup_swap_cache_in_use(&self, entry: SwpEntry) -> Option<Option<Pfn>> {
        let dev = self.device_opt(entry.swap_type())?;
        let v = dev.swap_map().value(entry.offset()).ok()?;
        if v == 0 || v == crate::swap_map::SWAP_MAP_BAD {
            return None;
        }
        Some(dev.cached(entry.offset()))
    }

    /// The cache's entries, in entry order.
    pub fn swap_cache(&self) -> impl Iterator<Item = (SwpEntry, Pfn)> + '_ {
        self.devices().flat_map(|d| {
            let t = d.swap_type();
            d.cached_pages().map(move |(o, p)| (SwpEntry::for_slot(t, o), p))
        })
    }

    /// Number of pages in the swap cache.
    pub fn swap_cache_len(&self) -> usize {
        self.cached
    }

    /// The entry a swap-cache page is cached under, checked against the
    /// cache itself (`page_swap_entry` / `folio->swap`).
    pub fn page_swap_entry(&self, pfn: Pfn, pages: &PageDescs) -> Result<SwpEntry, SwapError> {
        let desc = pages.get(pfn)?;
        if !desc.flags.contains(PageFlags::SWAPCACHE) {
            return Err(SwapError::PageNotInSwapCache(pfn));
        }
        let entry = SwpEntry::from_raw(desc.private)
            .map_err(|_| SwapError::BadPrivate { pfn, private: desc.private })?;
        if self.lookup_swap_cache(entry) != Some(pfn) {
            return Err(SwapError::CacheMismatch { entry, pfn });
        }
        Ok(entry)
    }

    /// `__delete_from_swap_cache`: takes `pfn` out of the cache and clears
    /// PG_swapcache and `private`, leaving the slot's SWAP_HAS_CACHE and the
    /// page's reference to the caller (reclaim's `__remove_mapping` frees
    /// both itself). Returns the entry it was cached under.
    pub fn __delete_from_swap_cache(
        &mut self,
        pfn: Pfn,
        pages: &mut PageDescs,
    ) -> Result<SwpEntry, SwapError> {
        let entry = self.page_swap_entry(pfn, pages)?;
        let desc = pages.get_mut(pfn)?;
        desc.flags.remove(PageFlags::SWAPCACHE);
        desc.private = 0;
        self.device_mut(entry.swap_type())?.set_cached(entry.offset(), None);
        self.cached -= 1;
        Ok(entry)
    }

    /// `delete_from_swap_cache`: takes `pfn` out of the cache, drops the
    /// slot's SWAP_HAS_CACHE (`put_swap_folio`, freeing the slot if no swap
    /// PTE names it) and drops the cache's page reference.
    pub fn delete_from_swap_cache(
        &mut self,
        pfn: Pfn,
        pages: &mut PageDescs,
    ) -> Result<CacheRelease, SwapError> {
        let desc = pages.get_mut(pfn)?;
        let (entry, dev) = cached_device(&mut self.devices, pfn, desc)?;
        let release = cache_remove(dev, entry, pfn, desc)?;
        self.cached -= 1;
        self.slot_released(release.slot_freed);
        Ok(release)
    }

    /// vmscan's `add_to_swap`: allocates a slot (SWAP_HAS_CACHE set), adds
    /// `pfn` to the swap cache under it and marks the page dirty so that it
    /// is written before it can be freed. On failure nothing changes.
    pub fn add_to_swap(&mut self, pfn: Pfn, pages: &mut PageDescs) -> Result<SwpEntry, SwapError> {
        // Fail on a bad frame before a slot is taken.
        pages.get(pfn)?;
        // get_swap_page, then add_to_swap_cache on the device it chose.
        let (entry, dev) = crate::swapfile::alloc_slot(&mut self.devices)?;
        if let Err(e) = cache_insert(dev, entry, pfn, pages) {
            dev.swap_map_mut().put_cache(entry.offset())?;
            return Err(e);
        }
        self.nr_swap_pages -= 1;
        self.cached += 1;
        pages.get_mut(pfn)?.flags.insert(PageFlags::DIRTY);
        Ok(entry)
    }

    /// `folio_free_swap` (formerly `try_to_free_swap`): if `pfn` is in the
    /// swap cache, not under writeback, and no swap PTE names its slot any
    /// more, deletes it from the swap cache (freeing the slot) and marks it
    /// dirty, since its only copy is now in memory. `Ok(None)` when it stays.
    pub fn folio_free_swap(
        &mut self,
        pfn: Pfn,
        pages: &mut PageDescs,
    ) -> Result<Option<CacheRelease>, SwapError> {
        let desc = pages.get_mut(pfn)?;
        if !desc.flags.contains(PageFlags::SWAPCACHE) || desc.flags.contains(PageFlags::WRITEBACK) {
            return Ok(None);
        }
        let (entry, dev) = cached_device(&mut self.devices, pfn, desc)?;
        if dev.swap_map().full_count(entry.offset())? != 0 {
            return Ok(None);
        }
        let release = cache_remove(dev, entry, pfn, desc)?;
        self.cached -= 1;
        self.slot_released(release.slot_freed);
        desc.flags.insert(PageFlags::DIRTY);
        Ok(Some(release))
    }

    /// `free_swap_and_cache`: a swap PTE naming `entry` is zapped. Drops its
    /// count; if only the swap cache still holds the slot, and the cached
    /// page is unmapped or swap is more than half full, frees the page's
    /// swap as [`Swap::folio_free_swap`] does (`__try_to_reclaim_swap` with
    /// TTRS_UNMAPPED | TTRS_FULL; page locks are not modelled, so the
    /// trylock always succeeds).
    pub fn free_swap_and_cache(
        &mut self,
        entry: SwpEntry,
        pages: &mut PageDescs,
    ) -> Result<Option<CacheRelease>, SwapError> {
        self.swap_free(entry)?;
        if self.swap_map_value(entry)? != crate::swap_map::SWAP_HAS_CACHE {
            return Ok(None);
        }
        let Some(pfn) = self.lookup_swap_cache(entry) else {
            return Ok(None);
        };
        let unmapped = pages.get(pfn)?.mapcount == 0;
        if unmapped || self.vm_swap_full() { self.folio_free_swap(pfn, pages) } else { Ok(None) }
    }
}

/// `add_to_swap_cache` on the device `entry` names, found by the caller:
/// checks, in order, that the slot carries SWAP_HAS_CACHE, that the cache
/// holds no page for it, and that the page is in no swap cache and can
/// take a reference; then sets PG_swapcache, `private` and the table's
/// entry and takes the reference. Nothing changes on an error. The caller
/// counts the cached page.
#[inline]
fn cache_insert(
    dev: &mut SwapDevice,
    entry: SwpEntry,
    pfn: Pfn,
    pages: &mut PageDescs,
) -> Result<(), SwapError> {
    let offset = entry.offset();
    if !dev.swap_map().has_cache(offset)? {
        return Err(SwapError::NoCacheFlag(entry));
    }
    if dev.cached(offset).is_some() {
        return Err(SwapError::CacheExists(entry));
    }
    let desc = pages.get_mut(pfn)?;
    if desc.flags.contains(PageFlags::SWAPCACHE) {
        let entry = SwpEntry::from_raw(desc.private)
            .map_err(|_| SwapError::BadPrivate { pfn, private: desc.private })?;
        return Err(SwapError::PageInSwapCache { pfn, entry });
    }
    let Some(refcount) = desc.refcount.checked_add(1) else {
        return Err(SwapError::RefcountOverflow(pfn));
    };
    desc.refcount = refcount;
    desc.flags.insert(PageFlags::SWAPCACHE);
    desc.private = entry.raw();
    dev.set_cached(offset, Some(pfn));
    Ok(())
}

/// `delete_from_swap_cache` on the device `entry` names, for a page the
/// caller found cached there under `entry` (`desc` is its descriptor):
/// checks that the page holds a reference and the slot SWAP_HAS_CACHE,
/// then takes the page out of the cache (PG_swapcache, `private`, the
/// table's entry), drops the slot's SWAP_HAS_CACHE (`put_swap_folio`,
/// freeing the slot if no swap PTE names it) and the cache's reference.
/// Nothing changes on an error. The caller uncounts the cached page.
#[inline]
fn cache_remove(
    dev: &mut SwapDevice,
    entry: SwpEntry,
    pfn: Pfn,
    desc: &mut PageDesc,
) -> Result<CacheRelease, SwapError> {
    let offset = entry.offset();
    // Check everything that can fail before changing anything.
    if desc.refcount == 0 {
        return Err(SwapError::RefcountUnderflow(pfn));
    }
    if !dev.swap_map().has_cache(offset)? {
        return Err(SwapError::DoubleFree { entry, what: "swap cache flag" });
    }
    desc.flags.remove(PageFlags::SWAPCACHE);
    desc.private = 0;
    dev.set_cached(offset, None);
    let slot_freed = dev.swap_map_mut().put_cache(offset)?;
    desc.refcount -= 1;
    Ok(CacheRelease { pfn, entry, slot_freed, last_reference: desc.refcount == 0 })
}
