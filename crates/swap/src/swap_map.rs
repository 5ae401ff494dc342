//! Per-slot usage counts of one device: Linux's `swap_info_struct.swap_map`.
//!
//! One byte per slot with the kernel's meaning and values: the low bits
//! count the swap PTEs (and shmem/swapoff users, which we do not have)
//! naming the slot, up to [`SWAP_MAP_MAX`]; [`SWAP_HAS_CACHE`] is set while
//! a page for the slot is in the swap cache, or is being added to it. A slot
//! is free when its byte is 0. Slot 0 holds the header and is marked
//! [`SWAP_MAP_BAD`], as swapon marks it, so it is never handed out.
//!
//! Linux extends counts past SWAP_MAP_MAX with COUNT_CONTINUED pages
//! (`add_swap_count_continuation`): a slot shared by more than 62 swap PTEs
//! borrows digits from extra pages. We do not: a 63rd reference is a
//! [`SwapError::CountOverflow`] error, never a wrap. Fixtures stay far below
//! it; a fork tree that needs more is outside what ptemu models.
//!
//! Allocation is lowest free slot first, found by scanning up from a
//! lowest-possibly-free hint (the role of Linux's `si->lowest_bit`).

use crate::entry::SwpEntry;
use crate::error::SwapError;

/// Flag: the slot's page is in (or being added to) the swap cache.
pub const SWAP_HAS_CACHE: u8 = 0x40;
/// Largest swap count without continuation.
pub const SWAP_MAP_MAX: u8 = 0x3e;
/// A slot that must never be used (the header, bad blocks).
pub const SWAP_MAP_BAD: u8 = 0x3f;

/// The swap_map of one device.
#[derive(Clone, Debug)]
pub struct SwapMap {
    swap_type: u8,
    map: Vec<u8>,
    /// No slot below this one is free.
    lowest_free: u64,
    /// Slots in use (map byte not 0), the header not counted.
    inuse: u64,
}

impl SwapMap {
    /// A map for a device of type `swap_type` with `pages` pages (header
    /// included); the caller has checked `2 <= pages <= 2^32`. An error,
    /// not an abort, if the host cannot allocate the map.
    pub(crate) fn new(swap_type: u8, pages: u64) -> Result<Self, SwapError> {
        let n = usize::try_from(pages).map_err(|_| SwapError::DeviceTooLarge { pages })?;
        let mut map = Vec::new();
        map.try_reserve_exact(n).map_err(|_| SwapError::DeviceTooLarge { pages })?;
        map.resize(n, 0);
        map[0] = SWAP_MAP_BAD;
        Ok(Self { swap_type, map, lowest_free: 1, inuse: 0 })
    }

    fn entry(&self, offset: u64) -> SwpEntry {
        SwpEntry::for_slot(self.swap_type, offset)
    }

    /// Index of a usable slot.
    fn slot(&self, offset: u64) -> Result<usize, SwapError> {
        if offset == 0 {
            return Err(SwapError::HeaderSlot(self.entry(0)));
        }
        if offset >= self.map.len() as u64 {
            return Err(SwapError::OffsetOutOfRange {
                entry: self.entry(offset),
                last: self.map.len() as u64 - 1,
            });
        }
        Ok(offset as usize)
    }

    /// Marks a slot free again (its byte just became 0).
    fn released(&mut self, offset: u64) {
        self.inuse -= 1;
        self.lowest_free = self.lowest_free.min(offset);
    }

    /// Takes the lowest free slot with SWAP_HAS_CACHE set, as
    /// `folio_alloc_swap` / `get_swap_page` do for `add_to_swap`.
    pub fn alloc(&mut self) -> Result<u64, SwapError> {
        let start = self.lowest_free as usize;
        let found = self.map.get(start..).and_then(|rest| rest.iter().position(|&b| b == 0));
        let Some(i) = found else {
            self.lowest_free = self.map.len() as u64;
            return Err(SwapError::DeviceFull(self.swap_type));
        };
        let offset = (start + i) as u64;
        self.map[offset as usize] = SWAP_HAS_CACHE;
        self.inuse += 1;
        self.lowest_free = offset + 1;
        Ok(offset)
    }

    /// `swap_duplicate`: one more swap PTE names the slot (fork).
    pub fn duplicate(&mut self, offset: u64) -> Result<(), SwapError> {
        let i = self.slot(offset)?;
        let v = self.map[i];
        if v == 0 {
            return Err(SwapError::SlotNotAllocated(self.entry(offset)));
        }
        let count = v & !SWAP_HAS_CACHE;
        if count >= SWAP_MAP_MAX {
            return Err(SwapError::CountOverflow { entry: self.entry(offset), count });
        }
        self.map[i] = v + 1;
        Ok(())
    }

    /// `swapcache_prepare`: take the cache flag before adding a page to the
    /// swap cache. `CacheExists` if someone holds it (-EEXIST),
    /// `SlotNotAllocated` if no swap PTE names the slot (-ENOENT).
    pub fn prepare_cache(&mut self, offset: u64) -> Result<(), SwapError> {
        let i = self.slot(offset)?;
        let v = self.map[i];
        if v & SWAP_HAS_CACHE != 0 {
            return Err(SwapError::CacheExists(self.entry(offset)));
        }
        if v == 0 {
            return Err(SwapError::SlotNotAllocated(self.entry(offset)));
        }
        self.map[i] = v | SWAP_HAS_CACHE;
        Ok(())
    }

    /// Drops the cache flag (`put_swap_folio`, `swapcache_clear`). Returns
    /// whether the slot became free (no swap PTE names it any more).
    pub fn put_cache(&mut self, offset: u64) -> Result<bool, SwapError> {
        let i = self.slot(offset)?;
        let v = self.map[i];
        if v == 0 {
            return Err(SwapError::SlotNotAllocated(self.entry(offset)));
        }
        if v & SWAP_HAS_CACHE == 0 {
            return Err(SwapError::DoubleFree {
                entry: self.entry(offset),
                what: "swap cache flag",
            });
        }
        self.map[i] = v & !SWAP_HAS_CACHE;
        let freed = self.map[i] == 0;
        if freed {
            self.released(offset);
        }
        Ok(freed)
    }

    /// `swap_free`: a swap PTE naming the slot went away. Returns whether
    /// the slot became free (no count and no cache flag left).
    pub fn free(&mut self, offset: u64) -> Result<bool, SwapError> {
        let i = self.slot(offset)?;
        let v = self.map[i];
        if v == 0 {
            return Err(SwapError::SlotNotAllocated(self.entry(offset)));
        }
        if v & !SWAP_HAS_CACHE == 0 {
            return Err(SwapError::DoubleFree { entry: self.entry(offset), what: "swap count" });
        }
        self.map[i] = v - 1;
        let freed = self.map[i] == 0;
        if freed {
            self.released(offset);
        }
        Ok(freed)
    }

    /// The raw swap_map byte of a slot.
    pub fn value(&self, offset: u64) -> Result<u8, SwapError> {
        Ok(self.map[self.slot(offset)?])
    }

    /// `__swap_count`: swap PTEs naming the slot (cache flag excluded).
    pub fn count(&self, offset: u64) -> Result<u8, SwapError> {
        Ok(self.value(offset)? & !SWAP_HAS_CACHE)
    }

    /// Whether the slot's cache flag is set.
    pub fn has_cache(&self, offset: u64) -> Result<bool, SwapError> {
        Ok(self.value(offset)? & SWAP_HAS_CACHE != 0)
    }

    /// Whether the slot is in use (count or cache flag).
    pub fn in_use(&self, offset: u64) -> Result<bool, SwapError> {
        Ok(self.value(offset)? != 0)
    }

    /// Pages of the device, header included (`si->max`).
    pub fn pages(&self) -> u64 {
        self.map.len() as u64
    }

    /// Slots in use (`si->inuse_pages`).
    pub fn inuse(&self) -> u64 {
        self.inuse
    }

    /// Free slots (`si->pages - si->inuse_pages`).
    pub fn free_slots(&self) -> u64 {
        self.map.len() as u64 - 1 - self.inuse
    }

    /// The whole map, slot 0 (the header, SWAP_MAP_BAD) included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_values() {
        let mut m = SwapMap::new(1, 4).unwrap();
        assert_eq!(m.as_bytes(), &[SWAP_MAP_BAD, 0, 0, 0]);
        assert_eq!(m.alloc().unwrap(), 1);
        assert_eq!(m.value(1).unwrap(), 0x40);
        m.duplicate(1).unwrap();
        m.duplicate(1).unwrap();
        assert_eq!((m.value(1).unwrap(), m.count(1).unwrap()), (0x42, 2));
        assert!(!m.put_cache(1).unwrap());
        assert_eq!(m.value(1).unwrap(), 2);
        assert!(matches!(
            m.put_cache(1),
            Err(SwapError::DoubleFree { what: "swap cache flag", .. })
        ));
        m.prepare_cache(1).unwrap();
        assert!(matches!(m.prepare_cache(1), Err(SwapError::CacheExists(_))));
        assert!(!m.free(1).unwrap());
        assert!(!m.free(1).unwrap());
        assert!(matches!(m.free(1), Err(SwapError::DoubleFree { what: "swap count", .. })));
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE);
        assert!(m.put_cache(1).unwrap());
        assert_eq!(m.inuse(), 0);
        assert!(matches!(m.free(1), Err(SwapError::SlotNotAllocated(_))));
        assert!(matches!(m.duplicate(1), Err(SwapError::SlotNotAllocated(_))));
        assert!(matches!(m.prepare_cache(1), Err(SwapError::SlotNotAllocated(_))));
        assert!(matches!(m.count(0), Err(SwapError::HeaderSlot(_))));
        assert!(matches!(m.count(4), Err(SwapError::OffsetOutOfRange { last: 3, .. })));
    }

    #[test]
    fn lowest_free_first_and_full() {
        let mut m = SwapMap::new(0, 5).unwrap();
        assert_eq!((m.alloc().unwrap(), m.alloc().unwrap(), m.alloc().unwrap()), (1, 2, 3));
        assert!(m.put_cache(2).unwrap());
        assert_eq!(m.alloc().unwrap(), 2);
        assert_eq!(m.alloc().unwrap(), 4);
        assert!(matches!(m.alloc(), Err(SwapError::DeviceFull(0))));
        assert_eq!(m.free_slots(), 0);
        assert!(m.put_cache(3).unwrap());
        assert_eq!(m.free_slots(), 1);
        assert_eq!(m.alloc().unwrap(), 3);
    }

    #[test]
    fn count_overflow_is_an_error() {
        let mut m = SwapMap::new(0, 2).unwrap();
        m.alloc().unwrap();
        for _ in 0..SWAP_MAP_MAX {
            m.duplicate(1).unwrap();
        }
        assert!(matches!(m.duplicate(1), Err(SwapError::CountOverflow { count: 0x3e, .. })));
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE | SWAP_MAP_MAX);
    }
}
