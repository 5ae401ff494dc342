//! Slot allocation and counting across devices: the part of Linux's
//! mm/swapfile.c that reclaim, fork, zap and do_swap_page call.
//!
//! Every function takes a [`SwpEntry`] and finds its device by type, as
//! Linux's do through `swp_swap_info`. Errors name the entry; nothing
//! changes when one is returned.

use pgtable::Pfn;

use crate::Swap;
use crate::device::SwapDevice;
use crate::entry::SwpEntry;
use crate::error::SwapError;
use crate::swap_map::SwapMap;

impl Swap {
    /// Activates `device` under its type (swapon). Types need not be
    /// contiguous; allocation prefers the lowest type (see [`Swap::get_swap_page`]).
    pub fn swapon(&mut self, device: SwapDevice) -> Result<(), SwapError> {
        let t = usize::from(device.swap_type());
        if self.devices.len() <= t {
            self.devices.resize_with(t + 1, || None);
        }
        match &mut self.devices[t] {
            Some(_) => Err(SwapError::DeviceExists(device.swap_type())),
            slot @ None => {
                self.nr_swap_pages += device.free_slots();
                self.total_swap_pages += device.pages() - 1;
                *slot = Some(device);
                Ok(())
            }
        }
    }

    /// Deactivates the device of `swap_type` and hands it back, if none of
    /// its slots is in use. Linux's swapoff would first read every used slot
    /// back into memory (try_to_unuse); we refuse instead.
    pub fn swapoff(&mut self, swap_type: u8) -> Result<SwapDevice, SwapError> {
        let dev = self.device(swap_type)?;
        if dev.inuse() != 0 {
            return Err(SwapError::DeviceBusy { swap_type, inuse: dev.inuse() });
        }
        let dev = self.devices.get_mut(usize::from(swap_type)).and_then(Option::take);
        while self.devices.last().is_some_and(Option::is_none) {
            self.devices.pop();
        }
        let dev = dev.ok_or(SwapError::NoSuchDevice(swap_type))?;
        // No slot of it is in use: all of them were free.
        self.nr_swap_pages -= dev.free_slots();
        self.total_swap_pages -= dev.pages() - 1;
        Ok(dev)
    }

    /// The device of `swap_type`.
    pub fn device(&self, swap_type: u8) -> Result<&SwapDevice, SwapError> {
        // A match rather than `ok_or`: every slot operation looks its
        // device up, and an eagerly built error costs a drop each time.
        match self.device_opt(swap_type) {
            Some(d) => Ok(d),
            None => Err(SwapError::NoSuchDevice(swap_type)),
        }
    }

    /// The device of `swap_type`, if there is one.
    #[inline]
    pub(crate) fn device_opt(&self, swap_type: u8) -> Option<&SwapDevice> {
        self.devices.get(usize::from(swap_type)).and_then(Option::as_ref)
    }

    /// The device of `swap_type`, for update.
    pub(crate) fn device_mut(&mut self, swap_type: u8) -> Result<&mut SwapDevice, SwapError> {
        match self.devices.get_mut(usize::from(swap_type)).and_then(Option::as_mut) {
            Some(d) => Ok(d),
            None => Err(SwapError::NoSuchDevice(swap_type)),
        }
    }

    /// Active devices, lowest type first.
    pub fn devices(&self) -> impl Iterator<Item = &SwapDevice> {
        self.devices.iter().flatten()
    }

    fn map_mut(&mut self, entry: SwpEntry) -> Result<&mut SwapMap, SwapError> {
        Ok(self.device_mut(entry.swap_type())?.swap_map_mut())
    }

    fn map(&self, entry: SwpEntry) -> Result<&SwapMap, SwapError> {
        Ok(self.device(entry.swap_type())?.swap_map())
    }

    /// Allocates a slot for a page about to enter the swap cache: the
    /// lowest free slot of the lowest-typed device that has one, its count
    /// 0 and SWAP_HAS_CACHE set (`get_swap_page`, now `folio_alloc_swap`).
    ///
    /// Linux picks the device by swapon priority; with default priorities
    /// (each new device lower than the last) it fills the first-activated
    /// device first, which lowest type first reproduces when types are
    /// given in swapon order.
    pub fn get_swap_page(&mut self) -> Result<SwpEntry, SwapError> {
        let (entry, _) = alloc_slot(&mut self.devices)?;
        self.nr_swap_pages -= 1;
        Ok(entry)
    }

    /// Allocates the lowest free slot of one device, with SWAP_HAS_CACHE
    /// (`get_swap_page_of_type`).
    pub fn get_swap_page_of_type(&mut self, swap_type: u8) -> Result<SwpEntry, SwapError> {
        let dev = self.device_mut(swap_type)?;
        let offset = dev.swap_map_mut().alloc()?;
        self.nr_swap_pages -= 1;
        Ok(SwpEntry::for_slot(swap_type, offset))
    }

    /// `__swap_duplicate`: another swap PTE names `entry` (fork's
    /// copy_nonpresent_pte, try_to_unmap). Past 62 the count continues in
    /// continuation pages; `CountNeedsContinuation` when it needs a new
    /// one: the caller allocates a frame, passes it to
    /// [`Swap::add_swap_count_continuation`] and calls this again, which is
    /// Linux's `swap_duplicate` loop.
    pub fn swap_duplicate(&mut self, entry: SwpEntry) -> Result<(), SwapError> {
        self.map_mut(entry)?.duplicate(entry.offset())
    }

    /// `add_swap_count_continuation` with the page the caller allocated:
    /// whether it was attached (when not, no new page was needed and the
    /// caller frees it).
    pub fn add_swap_count_continuation(
        &mut self,
        entry: SwpEntry,
        pfn: Pfn,
    ) -> Result<bool, SwapError> {
        self.map_mut(entry)?.add_continuation(entry.offset(), pfn)
    }

    /// Every continuation page's frame, over all devices.
    pub fn continuation_frames(&self) -> Vec<Pfn> {
        self.devices().flat_map(|d| d.swap_map().continuation_pages().map(|c| c.pfn)).collect()
    }

    /// `swap_free`: a swap PTE naming `entry` is gone (zap, do_swap_page).
    /// Returns whether the slot became free.
    #[inline]
    pub fn swap_free(&mut self, entry: SwpEntry) -> Result<bool, SwapError> {
        let freed = self.map_mut(entry)?.free(entry.offset())?;
        self.slot_released(freed);
        Ok(freed)
    }

    /// Counts a slot that became free (`freed`) back into `nr_swap_pages`.
    #[inline]
    pub(crate) fn slot_released(&mut self, freed: bool) {
        self.nr_swap_pages += u64::from(freed);
    }

    /// `swapcache_prepare`: takes SWAP_HAS_CACHE before a page read from
    /// `entry` is added to the swap cache. `CacheExists` when another page
    /// holds it (-EEXIST: the caller looks the cache up again),
    /// `SlotNotAllocated` when no swap PTE names the slot (-ENOENT).
    pub fn swapcache_prepare(&mut self, entry: SwpEntry) -> Result<(), SwapError> {
        self.map_mut(entry)?.prepare_cache(entry.offset())
    }

    /// `put_swap_folio`: drops SWAP_HAS_CACHE (the page left the swap
    /// cache, or a prepare/allocation is abandoned). Returns whether the
    /// slot became free.
    pub fn put_swap_folio(&mut self, entry: SwpEntry) -> Result<bool, SwapError> {
        let freed = self.map_mut(entry)?.put_cache(entry.offset())?;
        self.slot_released(freed);
        Ok(freed)
    }

    /// `swapcache_clear`: the same as [`Swap::put_swap_folio`], under the
    /// name do_swap_page's synchronous path uses for undoing
    /// [`Swap::swapcache_prepare`].
    pub fn swapcache_clear(&mut self, entry: SwpEntry) -> Result<bool, SwapError> {
        self.put_swap_folio(entry)
    }

    /// `__swap_count`: swap PTEs naming `entry`, cache flag excluded.
    pub fn __swap_count(&self, entry: SwpEntry) -> Result<u8, SwapError> {
        self.map(entry)?.count(entry.offset())
    }

    /// `swp_swapcount`: the full swap count of `entry`, continuation
    /// digits included.
    pub fn swp_swapcount(&self, entry: SwpEntry) -> Result<u64, SwapError> {
        self.map(entry)?.full_count(entry.offset())
    }

    /// Whether `entry`'s slot has SWAP_HAS_CACHE.
    pub fn swap_has_cache(&self, entry: SwpEntry) -> Result<bool, SwapError> {
        self.map(entry)?.has_cache(entry.offset())
    }

    /// The raw swap_map byte of `entry`'s slot (count | SWAP_HAS_CACHE).
    pub fn swap_map_value(&self, entry: SwpEntry) -> Result<u8, SwapError> {
        self.map(entry)?.value(entry.offset())
    }

    /// Free slots over all devices (`nr_swap_pages`).
    pub fn nr_swap_pages(&self) -> u64 {
        self.nr_swap_pages
    }

    /// Usable slots over all devices (`total_swap_pages`).
    pub fn total_swap_pages(&self) -> u64 {
        self.total_swap_pages
    }

    /// `vm_swap_full`: more than half of all swap is in use.
    #[inline]
    pub fn vm_swap_full(&self) -> bool {
        self.nr_swap_pages * 2 < self.total_swap_pages
    }
}

/// get_swap_page's choice: the lowest free slot (SWAP_HAS_CACHE set) of
/// the first device with one, and that device, for a caller that goes on
/// with it (add_to_swap's cache insertion). The caller counts the slot
/// out of `nr_swap_pages`.
pub(crate) fn alloc_slot(
    devices: &mut [Option<SwapDevice>],
) -> Result<(SwpEntry, &mut SwapDevice), SwapError> {
    let Some(dev) = devices.iter_mut().flatten().find(|d| d.free_slots() > 0) else {
        return Err(SwapError::SwapFull);
    };
    let entry = SwpEntry::for_slot(dev.swap_type(), dev.swap_map_mut().alloc()?);
    Ok((entry, dev))
}
