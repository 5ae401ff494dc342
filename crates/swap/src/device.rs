//! One swap device: an mmap'd area of 4 KiB slots (phys's
//! [`MappedRegion`], anonymous or a file) with its header in slot 0, its
//! [`SwapMap`] of slot counts and its part of the swap cache: the page
//! cached for each slot, in an array indexed by offset, as 6.18's
//! per-cluster swap table holds it (an xarray indexed by offset before).
//!
//! The storage reuses phys's region rather than mapping memory here: it is
//! the one audited place that touches mmap'd memory, and this crate stays
//! free of `unsafe`.

use std::path::Path;

use pgtable::{PAGE_SIZE, Pfn};
use phys::{FrameBytes, MappedRegion, PhysMemory};

use crate::entry::MAX_SWAP_TYPE;
use crate::error::SwapError;
use crate::header::SwapHeader;
use crate::swap_map::SwapMap;

/// A swap area (Linux's `swap_info_struct`, without its locks and clusters).
#[derive(Debug)]
pub struct SwapDevice {
    swap_type: u8,
    region: MappedRegion,
    header: SwapHeader,
    map: SwapMap,
    /// The swap cache's pages of this device, by slot: 0 when none, else
    /// the frame number + 1.
    cache: Vec<u64>,
}

/// An empty swap-cache table for `pages` slots, or an error if the host
/// cannot allocate it.
fn cache_table(pages: u64) -> Result<Vec<u64>, SwapError> {
    let n = usize::try_from(pages).map_err(|_| SwapError::DeviceTooLarge { pages })?;
    let mut t = Vec::new();
    t.try_reserve_exact(n).map_err(|_| SwapError::DeviceTooLarge { pages })?;
    t.resize(n, 0);
    Ok(t)
}

fn check_type(swap_type: u8) -> Result<(), SwapError> {
    if swap_type > MAX_SWAP_TYPE { Err(SwapError::BadType(swap_type.into())) } else { Ok(()) }
}

fn region_bytes(pages: u64) -> Result<u64, SwapError> {
    pages.checked_mul(PAGE_SIZE).ok_or(SwapError::DeviceTooLarge { pages })
}

impl SwapDevice {
    /// An anonymous device of type `swap_type` with `pages` pages (slot 0 is
    /// the header, so `pages - 1` usable slots), header written.
    pub fn anonymous(swap_type: u8, pages: u64) -> Result<Self, SwapError> {
        check_type(swap_type)?;
        let header = SwapHeader::new(swap_type, pages)?;
        let region = MappedRegion::anonymous(region_bytes(pages)?)?;
        Self::with_region(swap_type, region, header)
    }

    /// A device backed by a new file at `path` (created or truncated), with
    /// the header mkswap would write, so `file`, `blkid` or `swapon` accept it.
    pub fn create_file(path: &Path, swap_type: u8, pages: u64) -> Result<Self, SwapError> {
        check_type(swap_type)?;
        let header = SwapHeader::new(swap_type, pages)?;
        let region = MappedRegion::create_file(path, region_bytes(pages)?)?;
        Self::with_region(swap_type, region, header)
    }

    /// Activates an existing swap file (one made by [`Self::create_file`] or
    /// mkswap) as type `swap_type`, as swapon does: the header is checked,
    /// every slot starts free, old slot contents stay until overwritten.
    pub fn open_file(path: &Path, swap_type: u8) -> Result<Self, SwapError> {
        check_type(swap_type)?;
        let region = MappedRegion::open_file(path)?;
        let mut page = [0u8; PAGE_SIZE as usize];
        region.read_bytes(0, &mut page)?;
        let header = SwapHeader::parse(&page)?;
        let pages = u64::from(header.last_page) + 1;
        if pages < 2 {
            return Err(SwapError::DeviceTooSmall { pages });
        }
        if pages > region.size() / PAGE_SIZE {
            return Err(SwapError::BadHeader("swap area shorter than its header says"));
        }
        let cache = cache_table(pages)?;
        Ok(Self { swap_type, region, header, map: SwapMap::new(swap_type, pages)?, cache })
    }

    fn with_region(
        swap_type: u8,
        region: MappedRegion,
        header: SwapHeader,
    ) -> Result<Self, SwapError> {
        region.write_bytes(0, &header.to_page())?;
        let pages = u64::from(header.last_page) + 1;
        let cache = cache_table(pages)?;
        Ok(Self { swap_type, region, header, map: SwapMap::new(swap_type, pages)?, cache })
    }

    /// The device's type: the 5-bit type of its swap entries.
    #[inline]
    pub fn swap_type(&self) -> u8 {
        self.swap_type
    }

    /// The header in slot 0.
    pub fn header(&self) -> &SwapHeader {
        &self.header
    }

    /// The slot counts.
    #[inline]
    pub fn swap_map(&self) -> &SwapMap {
        &self.map
    }

    #[inline]
    pub(crate) fn swap_map_mut(&mut self) -> &mut SwapMap {
        &mut self.map
    }

    /// The backing storage (for inspection; slot N is at byte N * 4096).
    pub fn region(&self) -> &MappedRegion {
        &self.region
    }

    /// Pages of the device, header included.
    pub fn pages(&self) -> u64 {
        self.map.pages()
    }

    /// Free slots.
    #[inline]
    pub fn free_slots(&self) -> u64 {
        self.map.free_slots()
    }

    /// Slots in use.
    pub fn inuse(&self) -> u64 {
        self.map.inuse()
    }

    /// Byte offset of an allocated slot.
    #[inline]
    fn slot_bytes(&self, offset: u64) -> Result<u64, SwapError> {
        if !self.map.in_use(offset)? {
            return Err(SwapError::SlotNotAllocated(crate::SwpEntry::for_slot(
                self.swap_type,
                offset,
            )));
        }
        Ok(offset * PAGE_SIZE)
    }

    /// Copies frame `pfn` of `mem` into allocated slot `offset`.
    pub fn write_slot(&self, offset: u64, mem: &PhysMemory, pfn: Pfn) -> Result<(), SwapError> {
        let dst = self.slot_bytes(offset)?;
        let src = mem_frame(mem, pfn)?;
        self.region.copy_from(dst, mem.region(), src, PAGE_SIZE)?;
        Ok(())
    }

    /// Copies allocated slot `offset` into frame `pfn` of `mem`.
    pub fn read_slot(&self, offset: u64, mem: &PhysMemory, pfn: Pfn) -> Result<(), SwapError> {
        let src = self.slot_bytes(offset)?;
        let dst = mem_frame(mem, pfn)?;
        mem.region().copy_from(dst, &self.region, src, PAGE_SIZE)?;
        Ok(())
    }

    /// Copies allocated slot `offset` into `buf`.
    pub fn read_slot_bytes(&self, offset: u64, buf: &mut FrameBytes) -> Result<(), SwapError> {
        let src = self.slot_bytes(offset)?;
        self.region.read_bytes(src, buf)?;
        Ok(())
    }

    /// [`Self::write_slot`] with one `memcpy`, holding the device and the
    /// memory exclusively (`&mut`): what swap_writepage does with a page
    /// that reclaim has unmapped, which nobody else can be writing.
    #[inline]
    pub fn write_slot_exclusive(
        &mut self,
        offset: u64,
        mem: &mut PhysMemory,
        pfn: Pfn,
    ) -> Result<(), SwapError> {
        let dst = self.slot_bytes(offset)?;
        let src = mem_frame(mem, pfn)?;
        self.region.copy_from_exclusive(dst, mem.region_mut(), src, PAGE_SIZE)?;
        Ok(())
    }

    /// [`Self::read_slot`] with one `memcpy`, holding the device and the
    /// memory exclusively: what swap_readpage does into a page just
    /// allocated for the swap cache, which is in no page table yet.
    #[inline]
    pub fn read_slot_exclusive(
        &mut self,
        offset: u64,
        mem: &mut PhysMemory,
        pfn: Pfn,
    ) -> Result<(), SwapError> {
        let src = self.slot_bytes(offset)?;
        let dst = mem_frame(mem, pfn)?;
        mem.region_mut().copy_from_exclusive(dst, &mut self.region, src, PAGE_SIZE)?;
        Ok(())
    }

    /// The page the swap cache holds for slot `offset`, if any.
    #[inline]
    pub(crate) fn cached(&self, offset: u64) -> Option<Pfn> {
        let v = *self.cache.get(usize::try_from(offset).ok()?)?;
        v.checked_sub(1).map(Pfn)
    }

    /// Records (or with `None` clears) the swap cache's page for slot
    /// `offset`, which the caller has checked lies on the device.
    #[inline]
    pub(crate) fn set_cached(&mut self, offset: u64, pfn: Option<Pfn>) {
        if let Some(v) = usize::try_from(offset).ok().and_then(|i| self.cache.get_mut(i)) {
            *v = pfn.map_or(0, |p| p.as_u64() + 1);
        }
    }

    /// The swap cache's pages of this device, lowest slot first.
    pub(crate) fn cached_pages(&self) -> impl Iterator<Item = (u64, Pfn)> + '_ {
        self.cache
            .iter()
            .enumerate()
            .filter(|&(_, &v)| v != 0)
            .map(|(o, &v)| (o as u64, Pfn(v - 1)))
    }
}

/// Byte offset of frame `pfn` in `mem`, if it exists.
fn mem_frame(mem: &PhysMemory, pfn: Pfn) -> Result<u64, SwapError> {
    if pfn.as_u64() < mem.frames() {
        Ok(pfn.as_u64() * PAGE_SIZE)
    } else {
        Err(phys::PhysError::NoSuchFrame { pfn, frames: mem.frames() }.into())
    }
}
