//! Per-slot usage counts of one device: Linux's `swap_info_struct.swap_map`.
//!
//! One byte per slot with the kernel's meaning and values: the low bits
//! count the swap PTEs (and shmem/swapoff users, which we do not have)
//! naming the slot, up to [`SWAP_MAP_MAX`]; [`SWAP_HAS_CACHE`] is set while
//! a page for the slot is in the swap cache, or is being added to it. A slot
//! is free when its byte is 0. Slot 0 holds the header and is marked
//! [`SWAP_MAP_BAD`], as swapon marks it, so it is never handed out.
//!
//! Counts past [`SWAP_MAP_MAX`] (62) go on in continuation pages, as
//! mm/swapfile.c's `add_swap_count_continuation` and `swap_count_continued`
//! (2.6.33 on) keep them: the swap_map byte is the lowest digit (base 63)
//! with [`COUNT_CONTINUED`] set while higher digits are non-zero; each
//! swap_map page (4096 slots) has a list of continuation pages, and the
//! byte at the slot's offset in the n-th page is the next digit (base 128,
//! 0..=[`SWAP_CONT_MAX`]), again with COUNT_CONTINUED when a higher one
//! follows. Incrementing 62 carries like adding 1 to 999; decrementing a 0
//! digit borrows. When a carry needs a page the list does not have,
//! [`SwapMap::duplicate`] fails with [`SwapError::CountNeedsContinuation`]
//! (Linux's -ENOMEM from `__swap_duplicate`); the caller allocates a frame
//! and hands it over with [`SwapMap::add_continuation`], then tries again
//! (`swap_duplicate`'s loop). Continuation pages stay with the device until
//! swapoff (`free_swap_count_continuations`), as in Linux: counts falling
//! back below 63 do not free them. Their digits are kept here, beside the
//! number of the frame that holds them, rather than in the frame itself,
//! just as the swap_map bytes live in the host's memory rather than in
//! emulated frames.
//!
//! Allocation is lowest free slot first, found by scanning up from a
//! lowest-possibly-free hint (the role of Linux's `si->lowest_bit`).

use std::collections::BTreeMap;

use pgtable::Pfn;

use crate::entry::SwpEntry;
use crate::error::SwapError;

/// Flag: the slot's page is in (or being added to) the swap cache.
pub const SWAP_HAS_CACHE: u8 = 0x40;
/// Largest swap count without continuation.
pub const SWAP_MAP_MAX: u8 = 0x3e;
/// A slot that must never be used (the header, bad blocks).
pub const SWAP_MAP_BAD: u8 = 0x3f;
/// Flag: higher digits of the count are in continuation pages.
pub const COUNT_CONTINUED: u8 = 0x80;
/// Largest digit of a continuation page.
pub const SWAP_CONT_MAX: u8 = 0x7f;
/// Slots one swap_map page covers, and so one continuation page serves.
pub const SLOTS_PER_MAP_PAGE: u64 = 4096;

/// One continuation page: the next digit of every slot of one swap_map page.
#[derive(Clone, Debug)]
pub struct ContinuationPage {
    /// The frame the kernel allocated for it.
    pub pfn: Pfn,
    digits: Box<[u8]>,
}

impl ContinuationPage {
    /// The digit byte at `index` (a slot's offset within its swap_map page).
    pub fn digit(&self, index: usize) -> u8 {
        self.digits.get(index).copied().unwrap_or(0)
    }
}

/// The swap_map of one device.
#[derive(Clone, Debug)]
pub struct SwapMap {
    swap_type: u8,
    map: Vec<u8>,
    /// No slot below this one is free.
    lowest_free: u64,
    /// Slots in use (map byte not 0), the header not counted.
    inuse: u64,
    /// Continuation pages by swap_map page index (`head->lru` lists).
    continuations: BTreeMap<u64, Vec<ContinuationPage>>,
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
        Ok(Self { swap_type, map, lowest_free: 1, inuse: 0, continuations: BTreeMap::new() })
    }

    fn entry(&self, offset: u64) -> SwpEntry {
        SwpEntry::for_slot(self.swap_type, offset)
    }

    /// Index of a usable slot.
    #[inline]
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

    /// `__swap_duplicate(entry, 1)`: one more swap PTE names the slot
    /// (fork, try_to_unmap). Past SWAP_MAP_MAX the count carries into the
    /// continuation pages; [`SwapError::CountNeedsContinuation`] when that
    /// needs a page the slot's list lacks (nothing changed).
    #[inline]
    pub fn duplicate(&mut self, offset: u64) -> Result<(), SwapError> {
        let i = self.slot(offset)?;
        let v = self.map[i];
        if v == 0 {
            return Err(SwapError::SlotNotAllocated(self.entry(offset)));
        }
        let has_cache = v & SWAP_HAS_CACHE;
        let count = v & !SWAP_HAS_CACHE;
        let low = count & !COUNT_CONTINUED;
        let new = if low < SWAP_MAP_MAX {
            count + 1
        } else if low > SWAP_MAP_MAX {
            // SWAP_MAP_BAD (or a shmem count): __swap_duplicate's -EINVAL.
            return Err(SwapError::CountOverflow { entry: self.entry(offset), count });
        } else if self.count_continued(offset, count)? {
            COUNT_CONTINUED
        } else {
            return Err(SwapError::CountNeedsContinuation { entry: self.entry(offset) });
        };
        self.map[i] = new | has_cache;
        Ok(())
    }

    /// `add_swap_count_continuation`, after the caller allocated `pfn`:
    /// attaches it to the list of the slot's swap_map page if a carry from
    /// the slot's count needs a new page, and says whether it did (when
    /// not, the caller frees the frame, as Linux frees its spare page).
    pub fn add_continuation(&mut self, offset: u64, pfn: Pfn) -> Result<bool, SwapError> {
        let i = self.slot(offset)?;
        let mut count = self.map[i] & !SWAP_HAS_CACHE;
        if count & !COUNT_CONTINUED != SWAP_MAP_MAX {
            return Ok(false);
        }
        if self.continuations.values().flatten().any(|c| c.pfn == pfn) {
            return Err(SwapError::ContinuationFrameInUse { pfn });
        }
        let (page, index) = Self::map_page(offset);
        let list = self.continuations.entry(page).or_default();
        for c in list.iter() {
            if count & COUNT_CONTINUED == 0 {
                return Ok(false);
            }
            count = c.digit(index);
            if count & !COUNT_CONTINUED != SWAP_CONT_MAX {
                return Ok(false);
            }
        }
        let digits = vec![0u8; SLOTS_PER_MAP_PAGE as usize].into_boxed_slice();
        list.push(ContinuationPage { pfn, digits });
        Ok(true)
    }

    /// The swap_map page of `offset` and the slot's index within it.
    fn map_page(offset: u64) -> (u64, usize) {
        (offset / SLOTS_PER_MAP_PAGE, (offset % SLOTS_PER_MAP_PAGE) as usize)
    }

    /// `swap_count_continued`: carry an increment from a swap_map byte of
    /// SWAP_MAP_MAX (`count` is the byte, cache flag excluded) into the
    /// continuation digits, or borrow a decrement for a byte of
    /// COUNT_CONTINUED (low digit 0). Increment: whether it was done
    /// (false: a new page is needed). Decrement: whether higher digits
    /// are still non-zero.
    #[cold]
    #[inline(never)]
    fn count_continued(&mut self, offset: u64, count: u8) -> Result<bool, SwapError> {
        let entry = self.entry(offset);
        let (page, index) = Self::map_page(offset);
        let Some(list) = self.continuations.get_mut(&page).filter(|l| !l.is_empty()) else {
            if count & COUNT_CONTINUED != 0 {
                return Err(SwapError::ContinuationMissing { entry });
            }
            return Ok(false);
        };
        let bad = || SwapError::ContinuationMissing { entry };
        if count & !COUNT_CONTINUED == SWAP_MAP_MAX {
            // Incrementing: think of adding 1 to 999.
            let mut k = 0;
            if count & COUNT_CONTINUED != 0 {
                while list.get(k).ok_or_else(bad)?.digit(index) == SWAP_CONT_MAX | COUNT_CONTINUED {
                    k += 1;
                }
                let d = list.get(k).ok_or_else(bad)?.digit(index);
                if d == SWAP_CONT_MAX {
                    k += 1;
                    if k == list.len() {
                        return Ok(false);
                    }
                    list[k].digits[index] = 0;
                }
            } else {
                // The first carry into this slot's digits ("init_map").
                list[0].digits[index] = 0;
            }
            list[k].digits[index] += 1;
            for lower in list[..k].iter_mut() {
                lower.digits[index] = COUNT_CONTINUED;
            }
            Ok(true)
        } else if count == COUNT_CONTINUED {
            // Decrementing: think of subtracting 1 from 1000.
            let mut k = 0;
            while list.get(k).ok_or_else(bad)?.digit(index) == COUNT_CONTINUED {
                k += 1;
            }
            let d = list.get(k).ok_or_else(bad)?.digit(index);
            if d == 0 {
                return Err(bad());
            }
            list[k].digits[index] = d - 1;
            let mut c = if d - 1 == 0 { 0 } else { COUNT_CONTINUED };
            for lower in list[..k].iter_mut().rev() {
                lower.digits[index] = SWAP_CONT_MAX | c;
                c = COUNT_CONTINUED;
            }
            Ok(c == COUNT_CONTINUED)
        } else {
            Err(bad())
        }
    }

    /// `swp_swapcount`: the full count of swap PTEs naming the slot, the
    /// continuation digits included.
    #[inline]
    pub fn full_count(&self, offset: u64) -> Result<u64, SwapError> {
        let count = self.count(offset)?;
        if count & COUNT_CONTINUED == 0 {
            return Ok(u64::from(count));
        }
        let (page, index) = Self::map_page(offset);
        let list = self
            .continuations
            .get(&page)
            .ok_or(SwapError::ContinuationMissing { entry: self.entry(offset) })?;
        let mut total = u64::from(count & !COUNT_CONTINUED);
        let mut n = u64::from(SWAP_MAP_MAX) + 1;
        for c in list {
            let d = c.digit(index);
            total += u64::from(d & !COUNT_CONTINUED) * n;
            n *= u64::from(SWAP_CONT_MAX) + 1;
            if d & COUNT_CONTINUED == 0 {
                return Ok(total);
            }
        }
        Err(SwapError::ContinuationMissing { entry: self.entry(offset) })
    }

    /// The continuation pages of every swap_map page, in map page order.
    pub fn continuation_pages(&self) -> impl Iterator<Item = &ContinuationPage> {
        self.continuations.values().flatten()
    }

    /// `free_swap_count_continuations` (swapoff): detaches every
    /// continuation page and returns their frames for the caller to free.
    pub fn take_continuations(&mut self) -> Vec<Pfn> {
        std::mem::take(&mut self.continuations).into_values().flatten().map(|c| c.pfn).collect()
    }

    /// `swapcache_prepare`: take the cache flag before adding a page to the
    /// swap cache. `CacheExists` if someone holds it (-EEXIST),
    /// `SlotNotAllocated` if no swap PTE names the slot (-ENOENT).
    #[inline]
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
    #[inline]
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
    #[inline]
    pub fn free(&mut self, offset: u64) -> Result<bool, SwapError> {
        let i = self.slot(offset)?;
        let v = self.map[i];
        if v == 0 {
            return Err(SwapError::SlotNotAllocated(self.entry(offset)));
        }
        let has_cache = v & SWAP_HAS_CACHE;
        let count = v & !SWAP_HAS_CACHE;
        if count == 0 {
            return Err(SwapError::DoubleFree { entry: self.entry(offset), what: "swap count" });
        }
        // __swap_entry_free_locked: a low digit of 0 borrows from the
        // continuation digits.
        let new = if count == COUNT_CONTINUED {
            if self.count_continued(offset, count)? {
                SWAP_MAP_MAX | COUNT_CONTINUED
            } else {
                SWAP_MAP_MAX
            }
        } else {
            count - 1
        };
        self.map[i] = new | has_cache;
        let freed = self.map[i] == 0;
        if freed {
            self.released(offset);
        }
        Ok(freed)
    }

    /// The raw swap_map byte of a slot.
    #[inline]
    pub fn value(&self, offset: u64) -> Result<u8, SwapError> {
        Ok(self.map[self.slot(offset)?])
    }

    /// `__swap_count`: the swap_map byte without the cache flag: the count
    /// of swap PTEs naming the slot up to 62, with [`COUNT_CONTINUED`] set
    /// when higher digits are in continuation pages (see
    /// [`SwapMap::full_count`]).
    #[inline]
    pub fn count(&self, offset: u64) -> Result<u8, SwapError> {
        Ok(self.value(offset)? & !SWAP_HAS_CACHE)
    }

    /// Whether the slot's cache flag is set.
    #[inline]
    pub fn has_cache(&self, offset: u64) -> Result<bool, SwapError> {
        Ok(self.value(offset)? & SWAP_HAS_CACHE != 0)
    }

    /// Whether the slot is in use (count or cache flag).
    #[inline]
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
    #[inline]
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

    /// `swap_duplicate`'s loop: duplicate, adding a continuation page
    /// (frames 1000, 1001, ...) whenever one is asked for.
    fn dup(m: &mut SwapMap, offset: u64, next_pfn: &mut u64) {
        loop {
            match m.duplicate(offset) {
                Ok(()) => return,
                Err(SwapError::CountNeedsContinuation { .. }) => {
                    assert!(m.add_continuation(offset, Pfn(*next_pfn)).unwrap());
                    *next_pfn += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn counts_continue_past_62() {
        let mut m = SwapMap::new(0, 4).unwrap();
        m.alloc().unwrap();
        for _ in 0..SWAP_MAP_MAX {
            m.duplicate(1).unwrap();
        }
        // The 63rd asks for a page, and nothing changed.
        assert!(matches!(m.duplicate(1), Err(SwapError::CountNeedsContinuation { .. })));
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE | SWAP_MAP_MAX);
        let mut pfn = 1000;
        dup(&mut m, 1, &mut pfn);
        assert_eq!(pfn, 1001, "one continuation page");
        // 63 = 0 in the low digit (base 63) and 1 in the next.
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE | COUNT_CONTINUED);
        assert_eq!(m.continuation_pages().next().unwrap().digit(1), 1);
        assert_eq!(m.full_count(1).unwrap(), 63);
        // A page that is not needed is refused (the caller frees it).
        assert!(!m.add_continuation(1, Pfn(2000)).unwrap());
        // Up to 63 * 128 - 1 fits one page; the 8064th needs a second.
        for n in 64..(63 * 128) {
            dup(&mut m, 1, &mut pfn);
            assert_eq!(m.full_count(1).unwrap(), n);
        }
        assert_eq!(pfn, 1001);
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE | COUNT_CONTINUED | SWAP_MAP_MAX);
        assert_eq!(m.continuation_pages().next().unwrap().digit(1), SWAP_CONT_MAX);
        dup(&mut m, 1, &mut pfn);
        assert_eq!(pfn, 1002, "a second continuation page");
        assert_eq!(m.full_count(1).unwrap(), 63 * 128);
        let digits: Vec<u8> = m.continuation_pages().map(|c| c.digit(1)).collect();
        assert_eq!(digits, [COUNT_CONTINUED, 1]);
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE | COUNT_CONTINUED);
        // Another slot of the same swap_map page uses the same pages.
        assert_eq!(m.alloc().unwrap(), 2);
        for _ in 0..100 {
            dup(&mut m, 2, &mut pfn);
        }
        assert_eq!((pfn, m.full_count(2).unwrap()), (1002, 100));
        // All the way down: every decrement borrows correctly.
        for n in (0..63 * 128).rev() {
            assert!(!m.free(1).unwrap());
            assert_eq!(m.full_count(1).unwrap(), n, "after a free");
        }
        assert_eq!(m.value(1).unwrap(), SWAP_HAS_CACHE);
        assert!(m.put_cache(1).unwrap());
        // The pages stay until swapoff.
        assert_eq!(m.continuation_pages().count(), 2);
        assert_eq!(m.take_continuations(), [Pfn(1000), Pfn(1001)]);
    }

    #[test]
    fn a_bad_slot_cannot_be_duplicated() {
        let mut m = SwapMap::new(0, 2).unwrap();
        m.map[1] = SWAP_MAP_BAD;
        assert!(matches!(m.duplicate(1), Err(SwapError::CountOverflow { count: 0x3f, .. })));
    }
}
