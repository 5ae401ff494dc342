//! Swap I/O, Linux's mm/page_io.c: a swap-cache page written to its slot
//! and read back, synchronously, by copying between phys memory and the
//! device's mmap'd storage.
//!
//! Only the copy is modelled. PG_dirty is for the caller (pageout clears
//! it with `clear_page_dirty_for_io` before writing), PG_writeback is never
//! left set because the write completes before the call returns, and the
//! "skip the write if nobody references the slot" shortcut of
//! `swap_writepage` (it calls folio_free_swap first) is the caller's choice.

use pgtable::Pfn;
use phys::{FrameBytes, PageDescs, PageFlags, PhysMemory};

use crate::Swap;
use crate::entry::SwpEntry;
use crate::error::SwapError;
use crate::swap_state::cached_device;

impl Swap {
    /// `swap_writepage`: writes swap-cache page `pfn` to the slot its
    /// `private` names. Returns that entry.
    pub fn swap_writepage(
        &self,
        pfn: Pfn,
        mem: &PhysMemory,
        pages: &PageDescs,
    ) -> Result<SwpEntry, SwapError> {
        let entry = self.page_swap_entry(pfn, pages)?;
        self.write_slot(entry, mem, pfn)?;
        Ok(entry)
    }

    /// `swap_read_folio` (formerly `swap_readpage`): fills swap-cache page
    /// `pfn` from the slot its `private` names and sets PG_uptodate, as the
    /// read completion does. Returns that entry.
    pub fn swap_readpage(
        &self,
        pfn: Pfn,
        mem: &PhysMemory,
        pages: &mut PageDescs,
    ) -> Result<SwpEntry, SwapError> {
        let entry = self.page_swap_entry(pfn, pages)?;
        self.read_slot(entry, mem, pfn)?;
        pages.get_mut(pfn)?.flags.insert(PageFlags::UPTODATE);
        Ok(entry)
    }

    /// [`Self::swap_writepage`] with one `memcpy`, for a caller that holds
    /// the memory exclusively (`&mut`) and a page nobody maps any more
    /// (reclaim writes a page after try_to_unmap): same bytes, without a
    /// relaxed atomic load and store per word.
    pub fn swap_writepage_exclusive(
        &mut self,
        pfn: Pfn,
        mem: &mut PhysMemory,
        pages: &PageDescs,
    ) -> Result<SwpEntry, SwapError> {
        let (entry, dev) = cached_device(&mut self.devices, pfn, pages.get(pfn)?)?;
        dev.write_slot_exclusive(entry.offset(), mem, pfn)?;
        Ok(entry)
    }

    /// [`Self::swap_readpage`] with one `memcpy`, for a caller that holds
    /// the memory exclusively and a page in no page table yet (a swap-cache
    /// page just allocated for the read).
    pub fn swap_readpage_exclusive(
        &mut self,
        pfn: Pfn,
        mem: &mut PhysMemory,
        pages: &mut PageDescs,
    ) -> Result<SwpEntry, SwapError> {
        let desc = pages.get_mut(pfn)?;
        let (entry, dev) = cached_device(&mut self.devices, pfn, desc)?;
        dev.read_slot_exclusive(entry.offset(), mem, pfn)?;
        desc.flags.insert(PageFlags::UPTODATE);
        Ok(entry)
    }

    /// Copies frame `pfn` into `entry`'s slot, which must be allocated.
    pub fn write_slot(&self, entry: SwpEntry, mem: &PhysMemory, pfn: Pfn) -> Result<(), SwapError> {
        self.device(entry.swap_type())?.write_slot(entry.offset(), mem, pfn)
    }

    /// Copies `entry`'s slot, which must be allocated, into frame `pfn`.
    pub fn read_slot(&self, entry: SwpEntry, mem: &PhysMemory, pfn: Pfn) -> Result<(), SwapError> {
        self.device(entry.swap_type())?.read_slot(entry.offset(), mem, pfn)
    }

    /// Copies `entry`'s slot, which must be allocated, into `buf`.
    pub fn read_slot_bytes(&self, entry: SwpEntry, buf: &mut FrameBytes) -> Result<(), SwapError> {
        self.device(entry.swap_type())?.read_slot_bytes(entry.offset(), buf)
    }
}
