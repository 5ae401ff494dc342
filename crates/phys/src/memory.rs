//! The emulated machine's physical memory: a [`MappedRegion`] addressed by
//! physical address and frame number.
//!
//! Word accesses are atomic and take `&self`, so page tables in this memory
//! can be walked by another thread or by a KVM vCPU at the same time (the
//! CPU sets Accessed and Dirty bits with locked read-modify-writes; we use
//! compare-exchange on the same words). Frames are exposed as 512 little-
//! endian entries through zerocopy, copied out and in rather than borrowed,
//! because a borrowed `&[u64; 512]` would assert that nobody else writes it.

use std::path::Path;

use pgtable::{ENTRIES_PER_TABLE, MemError, PAGE_SIZE, Pfn, PhysAddr, PhysMem};
use zerocopy::little_endian::U64;
use zerocopy::{FromZeros, IntoBytes};

use crate::error::PhysError;
use crate::region::MappedRegion;

/// One 4 KiB frame seen as 512 little-endian 64-bit entries, the layout of
/// every x86-64 page table.
pub type FrameEntries = [U64; ENTRIES_PER_TABLE];

/// The bytes of one 4 KiB frame.
pub type FrameBytes = [u8; PAGE_SIZE as usize];

/// Physical memory: one mmap'd region, anonymous or backed by a file.
#[derive(Debug)]
pub struct PhysMemory {
    region: MappedRegion,
}

fn word_error(e: PhysError, pa: PhysAddr, size: u64) -> MemError {
    match e {
        PhysError::Unaligned(_) => MemError::Unaligned(pa),
        _ => MemError::OutOfRange { addr: pa, size },
    }
}

impl PhysMemory {
    /// Anonymous zero-filled memory of `size` bytes (a non-zero multiple of 4 KiB).
    pub fn new(size: u64) -> Result<Self, PhysError> {
        Ok(Self { region: MappedRegion::anonymous(size)? })
    }

    /// Memory backed by the file `path`, created or truncated to `size`
    /// zero bytes, so that the image can be inspected with other tools.
    pub fn create_file(path: &Path, size: u64) -> Result<Self, PhysError> {
        Ok(Self { region: MappedRegion::create_file(path, size)? })
    }

    /// Memory backed by an existing image file, contents kept.
    pub fn open_file(path: &Path) -> Result<Self, PhysError> {
        Ok(Self { region: MappedRegion::open_file(path)? })
    }

    /// Physical memory over an already mapped region.
    pub fn from_region(region: MappedRegion) -> Self {
        Self { region }
    }

    /// The underlying region, for byte-offset access and for copying to and
    /// from other regions (a swap device).
    pub fn region(&self) -> &MappedRegion {
        &self.region
    }

    /// The underlying region, for update: the exclusive bulk copies to and
    /// from another region (a swap device) need it held alone.
    pub fn region_mut(&mut self) -> &mut MappedRegion {
        &mut self.region
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.region.size()
    }

    /// Number of 4 KiB frames.
    pub fn frames(&self) -> u64 {
        self.region.size() / PAGE_SIZE
    }

    /// Host address of physical address 0, for KVM_SET_USER_MEMORY_REGION.
    ///
    /// Valid while `self` lives. See [`MappedRegion::as_ptr`] for the rule
    /// that makes sharing sound: only aligned atomic or hardware accesses
    /// while the memory is in use, never Rust references over it.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    /// Size in bytes as a host `usize` (the length to pair with [`Self::as_ptr`]).
    pub fn len(&self) -> usize {
        // The region's size was checked to fit usize when it was mapped.
        self.region.size() as usize
    }

    /// Always false: a region is never empty. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.region.size() == 0
    }

    /// Flushes a file-backed memory to its file.
    pub fn flush(&self) -> Result<(), PhysError> {
        self.region.flush()
    }

    /// Atomically loads the word at `pa` (8-byte aligned).
    #[inline]
    pub fn load(&self, pa: PhysAddr) -> Result<u64, MemError> {
        self.region.load_u64(pa.as_u64()).map_err(|e| word_error(e, pa, self.size()))
    }

    /// Atomically stores `value` at `pa` (8-byte aligned).
    #[inline]
    pub fn store(&self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        self.region.store_u64(pa.as_u64(), value).map_err(|e| word_error(e, pa, self.size()))
    }

    /// Atomic compare-exchange of the word at `pa`: `Ok(Ok(current))` if it
    /// stored `new`, `Ok(Err(actual))` if the word was not `current`.
    #[inline]
    pub fn cmpxchg(
        &self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        self.region
            .compare_exchange_u64(pa.as_u64(), current, new)
            .map_err(|e| word_error(e, pa, self.size()))
    }

    /// Byte offset of frame `pfn`, if it exists.
    #[inline]
    fn frame_offset(&self, pfn: Pfn) -> Result<u64, PhysError> {
        if pfn.as_u64() < self.frames() {
            Ok(pfn.as_u64() * PAGE_SIZE)
        } else {
            Err(PhysError::NoSuchFrame { pfn, frames: self.frames() })
        }
    }

    /// The byte at `pa`.
    #[inline]
    pub fn load_u8(&self, pa: PhysAddr) -> Result<u8, PhysError> {
        self.region.load_u8(pa.as_u64())
    }

    /// Stores the byte `value` at `pa`.
    #[inline]
    pub fn store_u8(&self, pa: PhysAddr, value: u8) -> Result<(), PhysError> {
        self.region.store_u8(pa.as_u64(), value)
    }

    /// Copies the bytes at `pa..pa+buf.len()` out (any alignment; may span frames).
    pub fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), PhysError> {
        self.region.read_bytes(pa.as_u64(), buf)
    }

    /// Copies `buf` to `pa..pa+buf.len()` (any alignment; may span frames).
    pub fn write_bytes(&self, pa: PhysAddr, buf: &[u8]) -> Result<(), PhysError> {
        self.region.write_bytes(pa.as_u64(), buf)
    }

    /// Fills frame `pfn` with zeros (clear_page).
    pub fn zero_frame(&self, pfn: Pfn) -> Result<(), PhysError> {
        self.region.fill_zero(self.frame_offset(pfn)?, PAGE_SIZE)
    }

    /// Fills the `1 << order` frames starting at `pfn` with zeros.
    pub fn zero_frames(&self, pfn: Pfn, order: u32) -> Result<(), PhysError> {
        if order > crate::buddy::MAX_ORDER {
            return Err(PhysError::BadOrder { order, max: crate::buddy::MAX_ORDER });
        }
        let start = self.frame_offset(pfn)?;
        self.region.fill_zero(start, (1u64 << order) * PAGE_SIZE)
    }

    /// Copies frame `src` to frame `dst` (copy_page); `dst == src` is a no-op.
    pub fn copy_frame(&self, dst: Pfn, src: Pfn) -> Result<(), PhysError> {
        let (d, s) = (self.frame_offset(dst)?, self.frame_offset(src)?);
        self.region.copy_from(d, &self.region, s, PAGE_SIZE)
    }

    /// Starts bringing frame `pfn` into the CPU's caches without waiting
    /// (see [`MappedRegion::prefetch`]): a hint that changes nothing.
    #[inline]
    pub fn prefetch_frame(&self, pfn: Pfn) -> Result<(), PhysError> {
        self.region.prefetch(self.frame_offset(pfn)?, PAGE_SIZE)
    }

    /// Fills frame `pfn` with zeros (clear_page) with one `memset`, for a
    /// frame the caller owns exclusively: just allocated and not yet
    /// reachable from any page table, so no walker or vCPU can look at it.
    /// Same result as [`Self::zero_frame`] without a store per word; `&mut`
    /// keeps every other thread off the memory meanwhile (see
    /// [`MappedRegion::fill_zero_exclusive`]).
    #[inline]
    pub fn zero_frame_exclusive(&mut self, pfn: Pfn) -> Result<(), PhysError> {
        let at = self.frame_offset(pfn)?;
        self.region.fill_zero_exclusive(at, PAGE_SIZE)
    }

    /// Copies frame `src` to frame `dst` (copy_page) with one `memmove`, for
    /// a `dst` the caller owns exclusively (a copy-on-write's new page, not
    /// yet mapped) and a `src` nobody writes meanwhile. Same result as
    /// [`Self::copy_frame`]; `dst == src` leaves the frame as it is.
    #[inline]
    pub fn copy_frame_exclusive(&mut self, dst: Pfn, src: Pfn) -> Result<(), PhysError> {
        let (d, s) = (self.frame_offset(dst)?, self.frame_offset(src)?);
        self.region.copy_exclusive(d, s, PAGE_SIZE)
    }

    /// Frame `pfn` as 512 little-endian entries, copied out.
    pub fn read_frame(&self, pfn: Pfn) -> Result<FrameEntries, PhysError> {
        let mut entries = FrameEntries::new_zeroed();
        self.region.read_bytes(self.frame_offset(pfn)?, entries.as_mut_bytes())?;
        Ok(entries)
    }

    /// Writes 512 entries into frame `pfn`.
    pub fn write_frame(&self, pfn: Pfn, entries: &FrameEntries) -> Result<(), PhysError> {
        self.region.write_bytes(self.frame_offset(pfn)?, entries.as_bytes())
    }

    /// Copies the bytes of frame `pfn` into `buf`.
    pub fn read_frame_bytes(&self, pfn: Pfn, buf: &mut FrameBytes) -> Result<(), PhysError> {
        self.region.read_bytes(self.frame_offset(pfn)?, buf)
    }

    /// Overwrites frame `pfn` with `buf`.
    pub fn write_frame_bytes(&self, pfn: Pfn, buf: &FrameBytes) -> Result<(), PhysError> {
        self.region.write_bytes(self.frame_offset(pfn)?, buf)
    }
}

impl PhysMem for PhysMemory {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        self.load(pa)
    }

    #[inline]
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        self.store(pa, value)
    }

    #[inline]
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        self.cmpxchg(pa, current, new)
    }

    fn size(&self) -> u64 {
        self.region.size()
    }
}

/// Shared access: every word operation is atomic, so several walkers (or a
/// walker and a vCPU) may use the same memory at once.
impl PhysMem for &PhysMemory {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        self.load(pa)
    }

    #[inline]
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        self.store(pa, value)
    }

    #[inline]
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        self.cmpxchg(pa, current, new)
    }

    fn size(&self) -> u64 {
        self.region.size()
    }
}
