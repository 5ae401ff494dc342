//! The swap side of mm: swap entries, the per-slot counts and the swap
//! cache as mm/swap_state.c and mm/swapfile.c use them (`add_to_swap`,
//! `read_swap_cache_async`, `delete_from_swap_cache`, `try_to_free_swap`,
//! `free_swap_and_cache`, `swap_duplicate`, `swap_free`).

use std::collections::BTreeMap;

use pgtable::Pfn;
use phys::{PageFlags, PhysMemory};

use crate::error::MmError;
use crate::machine::Machine;

/// Linux's architecture-independent `swp_entry_t`: type in bits 63..58,
/// offset below (the swap cache's index and a swap-cache page's private).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SwpEntry(pub u64);

impl SwpEntry {
    /// `swp_entry(type, offset)`.
    pub const fn new(swap_type: u8, offset: u64) -> Self {
        SwpEntry(((swap_type as u64) << 58) | (offset & ((1 << 58) - 1)))
    }

    /// `swp_type`.
    pub const fn swap_type(self) -> u8 {
        (self.0 >> 58) as u8
    }

    /// `swp_offset`.
    pub const fn offset(self) -> u64 {
        self.0 & ((1 << 58) - 1)
    }
}

/// SWAP_HAS_CACHE: the slot's page is in the swap cache.
const SWAP_HAS_CACHE: u8 = 0x40;
/// SWAP_MAP_MAX: the largest count without continuation pages.
const SWAP_MAP_MAX: u8 = 0x3e;

#[derive(Debug)]
struct Device {
    /// swap_map: count of swap PTEs | SWAP_HAS_CACHE, per slot.
    map: Vec<u8>,
    data: Vec<u8>,
    inuse: u64,
}

/// Swap devices, their slot counts and the swap cache.
#[derive(Debug)]
pub(crate) struct SwapState {
    devices: Vec<Device>,
    cache: BTreeMap<SwpEntry, Pfn>,
}

impl SwapState {
    pub(crate) fn new(sizes: &[u64]) -> Result<Self, MmError> {
        if sizes.len() > 32 {
            return Err(MmError::BadConfig(format!("{} swap devices (at most 32)", sizes.len())));
        }
        let mut devices = Vec::new();
        for &s in sizes {
            if s < 2 * 4096 || s % 4096 != 0 {
                return Err(MmError::BadConfig(format!(
                    "swap size {s:#x} must be a multiple of 4096 of at least two pages"
                )));
            }
            let pages = (s / 4096) as usize;
            let mut map = vec![0u8; pages];
            map[0] = 0xff; // SWAP_MAP_BAD: the header slot is never handed out
            devices.push(Device { map, data: vec![0u8; s as usize], inuse: 0 });
        }
        Ok(Self { devices, cache: BTreeMap::new() })
    }

    fn dev(&self, e: SwpEntry) -> Option<&Device> {
        self.devices.get(e.swap_type() as usize)
    }

    fn slot_mut(&mut self, e: SwpEntry) -> Result<&mut u8, MmError> {
        let t = e.swap_type();
        let d = self.devices.get_mut(t as usize).ok_or(MmError::NoSuchSwapDevice(t))?;
        let o = e.offset();
        match d.map.get_mut(o as usize) {
            Some(s) if o != 0 => Ok(s),
            _ => {
                Err(MmError::bug("swap_info_get", format!("bad swap offset {o:#x} on device {t}")))
            }
        }
    }

    /// Whether the entry names an allocated slot of an existing device.
    pub(crate) fn is_valid(&self, e: SwpEntry) -> bool {
        self.dev(e)
            .and_then(|d| d.map.get(e.offset() as usize))
            .is_some_and(|&m| e.offset() != 0 && m != 0)
    }

    /// The number of swap PTEs naming the slot (`__swap_count`).
    pub(crate) fn swap_count(&self, e: SwpEntry) -> Result<u32, MmError> {
        let d = self.dev(e).ok_or(MmError::NoSuchSwapDevice(e.swap_type()))?;
        Ok(d.map.get(e.offset() as usize).map_or(0, |m| (m & !SWAP_HAS_CACHE) as u32))
    }

    /// Whether the slot carries SWAP_HAS_CACHE.
    pub(crate) fn has_cache(&self, e: SwpEntry) -> bool {
        self.dev(e)
            .and_then(|d| d.map.get(e.offset() as usize))
            .is_some_and(|m| m & SWAP_HAS_CACHE != 0)
    }

    /// `get_swap_page`: the lowest free slot of the lowest device with one,
    /// with SWAP_HAS_CACHE set; `None` when swap is full.
    pub(crate) fn get_swap_page(&mut self) -> Option<SwpEntry> {
        for (t, d) in self.devices.iter_mut().enumerate() {
            if let Some(o) = d.map.iter().position(|&m| m == 0) {
                d.map[o] = SWAP_HAS_CACHE;
                d.inuse += 1;
                return Some(SwpEntry::new(t as u8, o as u64));
            }
        }
        None
    }

    fn maybe_free_slot(&mut self, e: SwpEntry) {
        if let Some(d) = self.devices.get_mut(e.swap_type() as usize) {
            if d.map.get(e.offset() as usize) == Some(&0) {
                d.inuse = d.inuse.saturating_sub(1);
            }
        }
    }

    /// `swap_duplicate`: one more swap PTE names the slot.
    pub(crate) fn swap_duplicate(&mut self, e: SwpEntry) -> Result<(), MmError> {
        let s = self.slot_mut(e)?;
        if *s == 0 {
            return Err(MmError::bug("swap_duplicate", format!("slot {:#x} is free", e.0)));
        }
        if *s & !SWAP_HAS_CACHE >= SWAP_MAP_MAX {
            return Err(MmError::bug("swap_duplicate", format!("slot {:#x} count overflow", e.0)));
        }
        *s += 1;
        Ok(())
    }

    /// `swap_free`: a swap PTE naming the slot went away.
    pub(crate) fn swap_free(&mut self, e: SwpEntry) -> Result<(), MmError> {
        let s = self.slot_mut(e)?;
        if *s & !SWAP_HAS_CACHE == 0 {
            return Err(MmError::bug("swap_free", format!("slot {:#x} has no swap count", e.0)));
        }
        *s -= 1;
        self.maybe_free_slot(e);
        Ok(())
    }

    /// Drops SWAP_HAS_CACHE (`swapcache_free` / `put_swap_folio`).
    fn swapcache_free(&mut self, e: SwpEntry) -> Result<(), MmError> {
        let s = self.slot_mut(e)?;
        *s &= !SWAP_HAS_CACHE;
        self.maybe_free_slot(e);
        Ok(())
    }

    /// Sets SWAP_HAS_CACHE on a slot that PTEs name (`swapcache_prepare`).
    fn swapcache_prepare(&mut self, e: SwpEntry) -> Result<(), MmError> {
        let s = self.slot_mut(e)?;
        if *s & SWAP_HAS_CACHE != 0 || *s == 0 {
            return Err(MmError::bug(
                "swapcache_prepare",
                format!("slot {:#x} state {:#x}", e.0, *s),
            ));
        }
        *s |= SWAP_HAS_CACHE;
        Ok(())
    }

    /// The swap-cache page of an entry (`lookup_swap_cache`, no reference).
    pub(crate) fn lookup(&self, e: SwpEntry) -> Option<Pfn> {
        self.cache.get(&e).copied()
    }

    /// `vm_swap_full`: more than half of all swap is in use.
    pub(crate) fn vm_swap_full(&self) -> bool {
        let total: u64 = self.devices.iter().map(|d| d.map.len() as u64 - 1).sum();
        let used: u64 = self.devices.iter().map(|d| d.inuse).sum();
        (total - used) * 2 < total
    }

    /// `swap_writepage`: the frame's contents to its slot.
    pub(crate) fn write_page(
        &mut self,
        mem: &PhysMemory,
        pfn: Pfn,
        e: SwpEntry,
    ) -> Result<(), MmError> {
        let t = e.swap_type();
        let d = self.devices.get_mut(t as usize).ok_or(MmError::NoSuchSwapDevice(t))?;
        let off = e.offset() as usize * 4096;
        let buf = d
            .data
            .get_mut(off..off + 4096)
            .ok_or_else(|| MmError::bug("swap_writepage", format!("offset {:#x}", e.offset())))?;
        mem.read_bytes(pfn.addr(), buf)?;
        Ok(())
    }

    /// `swap_readpage`: the slot's contents into the frame.
    pub(crate) fn read_page(&self, mem: &PhysMemory, pfn: Pfn, e: SwpEntry) -> Result<(), MmError> {
        let t = e.swap_type();
        let d = self.devices.get(t as usize).ok_or(MmError::NoSuchSwapDevice(t))?;
        let off = e.offset() as usize * 4096;
        let buf = d
            .data
            .get(off..off + 4096)
            .ok_or_else(|| MmError::bug("swap_readpage", format!("offset {:#x}", e.offset())))?;
        mem.write_bytes(pfn.addr(), buf)?;
        Ok(())
    }

    /// Every slot in use: (entry, PTE count, has cache), in entry order.
    pub(crate) fn used_slots(&self) -> Vec<(SwpEntry, u32, bool)> {
        let mut out = Vec::new();
        for (t, d) in self.devices.iter().enumerate() {
            for (o, &m) in d.map.iter().enumerate().skip(1) {
                if m != 0 {
                    out.push((
                        SwpEntry::new(t as u8, o as u64),
                        (m & !SWAP_HAS_CACHE) as u32,
                        m & SWAP_HAS_CACHE != 0,
                    ));
                }
            }
        }
        out
    }

    /// The swap cache: (entry, frame), in entry order.
    pub(crate) fn cache_entries(&self) -> Vec<(SwpEntry, Pfn)> {
        self.cache.iter().map(|(e, p)| (*e, *p)).collect()
    }

    /// Pages (slots, the header included) of a device.
    pub(crate) fn device_pages(&self, t: u8) -> Option<u64> {
        self.devices.get(t as usize).map(|d| d.map.len() as u64)
    }
}

impl Machine {
    /// `add_to_swap_cache`: the cache holds the page under `e` and a
    /// reference to it; PG_swapcache set, private = the entry.
    fn add_to_swap_cache(&mut self, pfn: Pfn, e: SwpEntry) -> Result<(), MmError> {
        if self.swap.cache.contains_key(&e) {
            return Err(MmError::bug(
                "add_to_swap_cache",
                format!("entry {:#x} already cached", e.0),
            ));
        }
        let d = self.pages.get_mut(pfn)?;
        d.flags |= PageFlags::SWAPCACHE;
        d.private = e.0;
        d.refcount += 1;
        self.swap.cache.insert(e, pfn);
        Ok(())
    }

    /// `add_to_swap`: a slot for a page about to be reclaimed, the page in
    /// the swap cache and dirty. False when swap is full.
    pub(crate) fn add_to_swap(&mut self, pfn: Pfn) -> Result<bool, MmError> {
        let Some(e) = self.swap.get_swap_page() else { return Ok(false) };
        self.add_to_swap_cache(pfn, e)?;
        self.pages.get_mut(pfn)?.flags |= PageFlags::DIRTY | PageFlags::SWAPBACKED;
        Ok(true)
    }

    /// `delete_from_swap_cache`: the page leaves the cache, the slot loses
    /// SWAP_HAS_CACHE, the cache's reference is dropped.
    pub(crate) fn delete_from_swap_cache(&mut self, pfn: Pfn) -> Result<(), MmError> {
        let d = self.pages.get_mut(pfn)?;
        if !d.flags.contains(PageFlags::SWAPCACHE) {
            return Err(MmError::bug(
                "delete_from_swap_cache",
                format!("frame {pfn} not in swap cache"),
            ));
        }
        let e = SwpEntry(d.private);
        d.flags.remove(PageFlags::SWAPCACHE);
        d.private = 0;
        self.swap.cache.remove(&e);
        self.swap.swapcache_free(e)?;
        self.put_page(pfn)
    }

    /// `try_to_free_swap` / `folio_free_swap`: drop the swap cache when no
    /// swap PTE names the slot any more; the page becomes dirty (its only
    /// copy is now in memory). Returns whether it did.
    pub(crate) fn try_to_free_swap(&mut self, pfn: Pfn) -> Result<bool, MmError> {
        let d = *self.pages.get(pfn)?;
        if !d.flags.contains(PageFlags::SWAPCACHE) || d.flags.contains(PageFlags::WRITEBACK) {
            return Ok(false);
        }
        if self.swap.swap_count(SwpEntry(d.private))? != 0 {
            return Ok(false);
        }
        self.delete_from_swap_cache(pfn)?;
        self.pages.get_mut(pfn)?.flags |= PageFlags::DIRTY;
        Ok(true)
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
        self.swap.swapcache_prepare(e)?;
        self.pages.get_mut(pfn)?.flags |= PageFlags::SWAPBACKED;
        self.add_to_swap_cache(pfn, e)?;
        self.lru_add_inactive(pfn)?;
        self.swap.read_page(&self.mem, pfn, e)?;
        self.pages.get_mut(pfn)?.flags |= PageFlags::UPTODATE;
        Ok(pfn)
    }

    /// `free_swap_and_cache`: a swap PTE went away (zap). When only the
    /// swap cache still holds the slot and the page is unmapped (or swap is
    /// full), the cache lets the page go too.
    pub(crate) fn free_swap_and_cache(&mut self, e: SwpEntry) -> Result<(), MmError> {
        self.swap.swap_free(e)?;
        if self.swap.swap_count(e)? != 0 || !self.swap.has_cache(e) {
            return Ok(());
        }
        let Some(pfn) = self.swap.lookup(e) else { return Ok(()) };
        let d = *self.pages.get(pfn)?;
        if d.flags.contains(PageFlags::SWAPCACHE)
            && !d.flags.contains(PageFlags::WRITEBACK)
            && (d.mapcount == 0 || self.swap.vm_swap_full())
        {
            self.delete_from_swap_cache(pfn)?;
            if self.pages.get(pfn).is_ok_and(|d| d.refcount > 0) {
                self.pages.get_mut(pfn)?.flags |= PageFlags::DIRTY;
            }
        }
        Ok(())
    }
}
