//! One swap device: an mmap'd area of 4 KiB slots (phys's
//! [`MappedRegion`], anonymous or a file) with its header in slot 0 and its
//! [`SwapMap`] of slot counts.
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
        Ok(Self { swap_type, region, header, map: SwapMap::new(swap_type, pages)? })
    }

    fn with_region(
        swap_type: u8,
        region: MappedRegion,
        header: SwapHeader,
    ) -> Result<Self, SwapError> {
        region.write_bytes(0, &header.to_page())?;
        let pages = u64::from(header.last_page) + 1;
        Ok(Self { swap_type, region, header, map: SwapMap::new(swap_type, pages)? })
    }

    /// The device's type: the 5-bit type of its swap entries.
    pub fn swap_type(&self) -> u8 {
        self.swap_type
    }

    /// The header in slot 0.
    pub fn header(&self) -> &SwapHeader {
        &self.header
    }

    /// The slot counts.
    pub fn swap_map(&self) -> &SwapMap {
        &self.map
    }

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
    pub fn free_slots(&self) -> u64 {
        self.map.free_slots()
    }

    /// Slots in use.
    pub fn inuse(&self) -> u64 {
        self.map.inuse()
    }

    /// Byte offset of an allocated slot.
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
}

/// Byte offset of frame `pfn` in `mem`, if it exists.
fn mem_frame(mem: &PhysMemory, pfn: Pfn) -> Result<u64, SwapError> {
    if pfn.as_u64() < mem.frames() {
        Ok(pfn.as_u64() * PAGE_SIZE)
    } else {
        Err(phys::PhysError::NoSuchFrame { pfn, frames: mem.frames() }.into())
    }
}
