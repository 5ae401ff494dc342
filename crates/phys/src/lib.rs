//! The emulated machine's physical memory: one mmap'd region, a buddy frame
//! allocator and page descriptors (the emulator's `struct page`).
//!
//! This is the only crate besides the KVM one with `unsafe`, confined to
//! [`region`], the module that touches the mmap'd region, and only ever
//! through atomic operations. It knows nothing of processes, swap or rmap:
//! a descriptor's `mapping` is an opaque word here.
//!
//! [`Phys`] bundles the three parts as separate public fields so that a
//! caller can borrow them disjointly (`&mut phys.mem` for the page-table
//! mapper while [`TableFrames`] holds `&mut phys.frames` and
//! `&mut phys.pages`).
//!
//! Deliberately not modelled: zones, NUMA nodes, migrate types, per-CPU page
//! lists and watermarks (allocation is lowest address first, see [`buddy`]),
//! compound pages and folios (a block is just frames; callers keep its order).
#![deny(unsafe_code)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod buddy;
pub mod error;
pub mod memory;
pub mod page;
pub mod region;
pub mod table_frames;

use std::path::Path;

/// The page-table crate this memory serves (its `PhysMem` trait, walk and
/// mapper), re-exported so that one dependency is enough.
pub use pgtable;

pub use buddy::{FrameAllocator, MAX_ORDER, NR_ORDERS, PAGE_FLAGS_CHECK_AT_FREE};
pub use error::PhysError;
pub use memory::{FrameBytes, FrameEntries, PhysMemory};
pub use page::{PAGE_MAPPING_ANON, PageDesc, PageDescs, PageFlags};
pub use region::MappedRegion;
pub use table_frames::TableFrames;

use pgtable::Pfn;

/// Physical memory, its frame allocator and its page descriptors.
#[derive(Debug)]
pub struct Phys {
    /// The memory itself.
    pub mem: PhysMemory,
    /// Which frames are free.
    pub frames: FrameAllocator,
    /// One descriptor per frame.
    pub pages: PageDescs,
}

impl Phys {
    /// Anonymous memory of `size` bytes, every frame free.
    pub fn new(size: u64) -> Result<Self, PhysError> {
        Self::from_memory(PhysMemory::new(size)?)
    }

    /// Memory backed by a new file at `path` of `size` bytes, every frame free.
    pub fn create_file(path: &Path, size: u64) -> Result<Self, PhysError> {
        Self::from_memory(PhysMemory::create_file(path, size)?)
    }

    /// Allocator and descriptors for an existing memory, every frame free
    /// (the memory's contents are left as they are). Fails only if the
    /// descriptor table or the allocator's bookkeeping cannot be allocated.
    pub fn from_memory(mem: PhysMemory) -> Result<Self, PhysError> {
        let mut pages = PageDescs::try_new(mem.frames())?;
        let frames = FrameAllocator::try_new(&mut pages)?;
        Ok(Self { mem, frames, pages })
    }

    /// Allocates `2^order` frames and zeroes them (`alloc_pages` with
    /// `__GFP_ZERO`).
    pub fn alloc_zeroed(&mut self, order: u32) -> Result<Pfn, PhysError> {
        let pfn = self.frames.alloc(order, &mut self.pages)?;
        if let Err(e) = self.mem.zero_frames(pfn, order) {
            // Cannot happen for frames the allocator owns, but never leak.
            self.frames.free(pfn, order, &mut self.pages)?;
            return Err(e);
        }
        Ok(pfn)
    }

    /// Allocates `2^order` frames, contents as they were.
    pub fn alloc(&mut self, order: u32) -> Result<Pfn, PhysError> {
        self.frames.alloc(order, &mut self.pages)
    }

    /// Frees the block of `2^order` frames at `pfn`.
    pub fn free(&mut self, pfn: Pfn, order: u32) -> Result<(), PhysError> {
        self.frames.free(pfn, order, &mut self.pages)
    }

    /// The memory and a page-table frame source, borrowed together.
    pub fn split_for_tables(&mut self) -> (&mut PhysMemory, TableFrames<'_>) {
        (&mut self.mem, TableFrames::new(&mut self.frames, &mut self.pages))
    }
}
