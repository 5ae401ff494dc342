//! rmap_walk_anon: from a page to every place it may be mapped.

use phys::PageDesc;

use crate::anon_vma::{LinkKey, VmaId};
use crate::error::RmapError;
use crate::handle::AnonVmaHandle;
use crate::rmap::Rmap;

/// One place an rmap walk found: a VMA whose page-offset range covers the
/// page's index, and the address of the page there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RmapHit {
    /// The VMA.
    pub vma: VmaId,
    /// vma_address(page, vma).
    pub address: u64,
    /// The VMA's vm_mm word ([`crate::VmaRmap::mm`]).
    pub mm: u64,
}

impl Rmap {
    /// rmap_walk (anon): follow page->mapping to its anon_vma and list every
    /// linked VMA covering page->index, in interval-tree order. The caller
    /// (try_to_unmap, page_referenced, the invariant checker) then looks at
    /// each address's PTE. A stale mapping is an [`crate::Oops`]. Like the
    /// kernel's walk it does not look at the mapcount.
    pub fn rmap_walk(&self, page: &PageDesc) -> Result<Vec<RmapHit>, RmapError> {
        let mut hits = Vec::new();
        self.rmap_walk_into(page, &mut hits)?;
        Ok(hits)
    }

    /// [`Self::rmap_walk`] into a buffer the caller keeps (cleared first),
    /// for the callers that walk on every reclaimed page: no allocation
    /// once the buffer has grown to the widest walk. On an error the
    /// buffer's contents mean nothing.
    pub fn rmap_walk_into(
        &self,
        page: &PageDesc,
        hits: &mut Vec<RmapHit>,
    ) -> Result<(), RmapError> {
        hits.clear();
        let h = AnonVmaHandle::from_mapping(page.mapping)?;
        let av = self.lookup(h, "rmap_walk")?;
        let index = page.index;
        // The links are ordered by first page offset, so the ones that
        // start at or below `index` are a prefix of the set: walked from
        // the first link and stopped at the first that starts above, with
        // no search for either edge (a range over the four-word keys cost
        // more than the rest of the walk).
        let starts_by_index = |k: &&LinkKey| k.pgoff_start <= index;
        for key in av.links.iter().take_while(starts_by_index).filter(|k| k.pgoff_last >= index) {
            let rec = self.vma(key.vma)?;
            if let Some(address) = rec.range.address_of(index) {
                hits.push(RmapHit { vma: key.vma, address, mm: rec.mm });
            }
        }
        Ok(())
    }
}
