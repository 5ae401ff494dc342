//! Page-table frames for pgtable's mapper, taken from the buddy allocator
//! (Linux's `pagetable_alloc` / `pagetable_free`).
//!
//! A table frame is an order-0 block whose descriptor carries
//! [`PageFlags::PGTABLE`] while it is in use, so that kpageflags shows it as
//! PGTABLE and freeing it through any other path is caught as a bad page.

use pgtable::{FrameSource, MemError, Pfn};

use crate::buddy::FrameAllocator;
use crate::error::PhysError;
use crate::page::{PageDescs, PageFlags};

/// A [`FrameSource`] over borrowed allocator and descriptors.
///
/// Built from the two fields it needs, so a caller can hold `&mut` on the
/// physical memory at the same time: `TableFrames::new(&mut phys.frames,
/// &mut phys.pages)` next to `&mut phys.mem`.
///
/// `FrameSource::free_table_frame` cannot return an error, so a failed free
/// (a frame that was not a table frame, or not allocated) is kept in
/// [`TableFrames::errors`] for the caller to check rather than dropped.
#[derive(Debug)]
pub struct TableFrames<'a> {
    frames: &'a mut FrameAllocator,
    pages: &'a mut PageDescs,
    errors: Vec<PhysError>,
}

impl<'a> TableFrames<'a> {
    /// A frame source allocating from `frames`, marking descriptors in `pages`.
    pub fn new(frames: &'a mut FrameAllocator, pages: &'a mut PageDescs) -> Self {
        Self { frames, pages, errors: Vec::new() }
    }

    /// Errors from frees (and allocation failures other than exhaustion)
    /// since the source was made, oldest first.
    pub fn errors(&self) -> &[PhysError] {
        &self.errors
    }

    /// Takes the recorded free errors, leaving none.
    pub fn take_errors(&mut self) -> Vec<PhysError> {
        std::mem::take(&mut self.errors)
    }

    /// Allocates a table frame, with the allocator's error rather than
    /// pgtable's coarser [`MemError::NoFrames`].
    pub fn alloc(&mut self) -> Result<Pfn, PhysError> {
        let pfn = self.frames.alloc(0, self.pages)?;
        self.pages.get_mut(pfn)?.flags.insert(PageFlags::PGTABLE);
        Ok(pfn)
    }

    /// Frees a table frame: it must be allocated and marked PGTABLE.
    /// On error nothing changes.
    pub fn free(&mut self, pfn: Pfn) -> Result<(), PhysError> {
        let desc = self.pages.get_mut(pfn)?;
        if !desc.flags.contains(PageFlags::PGTABLE) {
            if self.frames.allocated_order(pfn).is_none() {
                // Let the allocator name it: double free or never allocated.
                return self.frames.free(pfn, 0, self.pages);
            }
            return Err(PhysError::BadPageState { pfn, reason: "not a page-table frame" });
        }
        desc.flags.remove(PageFlags::PGTABLE);
        let result = self.frames.free(pfn, 0, self.pages);
        if result.is_err() {
            // Restore the flag so that a failed free leaves no trace.
            if let Ok(d) = self.pages.get_mut(pfn) {
                d.flags.insert(PageFlags::PGTABLE);
            }
        }
        result
    }
}

impl FrameSource for TableFrames<'_> {
    fn alloc_table_frame(&mut self) -> Result<Pfn, MemError> {
        self.alloc().map_err(|e| {
            // Exhaustion is what NoFrames means; anything else is a bug the
            // caller should see, so keep it.
            if !matches!(e, PhysError::OutOfMemory { .. }) {
                self.errors.push(e);
            }
            MemError::NoFrames
        })
    }

    fn free_table_frame(&mut self, pfn: Pfn) {
        if let Err(e) = self.free(pfn) {
            self.errors.push(e);
        }
    }
}
