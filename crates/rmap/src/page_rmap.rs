//! The page-side operations: which anon_vma a page's mapping names, and
//! its mapcount (page_add_new_anon_rmap, page_add_anon_rmap,
//! page_remove_rmap, page_move_anon_rmap).
//!
//! These change a [`PageDesc`] the caller owns; rmap never sees page tables.
//! The era decides the anon_vma a first mapping picks (the heart of the
//! seed bug): see [`crate::FirstMapAnonVma`].

use phys::{PageDesc, PageFlags};

use crate::anon_vma::{AnonVma, VmaId, VmaRmap};
use crate::era::FirstMapAnonVma;
use crate::error::RmapError;
use crate::handle::AnonVmaHandle;
use crate::rmap::Rmap;

/// A VMA's placement and live anon_vma, as [`Rmap::new_anon_target`]
/// found them: where a fault's new page goes.
#[derive(Clone, Copy, Debug)]
pub struct NewAnonTarget {
    vma: VmaId,
    range: crate::anon_vma::VmaRange,
    own: AnonVmaHandle,
}

impl Rmap {
    /// The anon_vma __page_set_anon_rmap would pick for a page mapped at
    /// `vma`, `exclusive` meaning the page belongs to that VMA alone.
    pub fn anon_vma_for_new_mapping(
        &self,
        vma: VmaId,
        exclusive: bool,
    ) -> Result<AnonVmaHandle, RmapError> {
        self.anon_vma_for(self.vma(vma)?, vma, exclusive)
    }

    /// [`Self::anon_vma_for_new_mapping`] for a VMA already looked up.
    #[inline(always)]
    fn anon_vma_for(
        &self,
        rec: &VmaRmap,
        vma: VmaId,
        exclusive: bool,
    ) -> Result<AnonVmaHandle, RmapError> {
        let Some(own) = rec.anon_vma else { return Err(RmapError::NoAnonVma(vma)) };
        let last_link = || {
            rec.chain
                .back()
                .and_then(|a| self.avc(*a))
                .map(|c| c.anon_vma)
                .ok_or(RmapError::NoAnonVma(vma))
        };
        match self.semantics().first_map {
            FirstMapAnonVma::VmaOwn => Ok(own),
            FirstMapAnonVma::LastLink => last_link(),
            FirstMapAnonVma::NewOwnElseLastLink if exclusive => Ok(own),
            FirstMapAnonVma::NewOwnElseLastLink => last_link(),
            FirstMapAnonVma::NewOwnElseRoot if exclusive => Ok(own),
            FirstMapAnonVma::NewOwnElseRoot => Ok(self.lookup(own, "__page_set_anon_rmap")?.root),
        }
    }

    /// __page_set_anon_rmap: mapping and index of a page mapped at `address`.
    fn set_anon_rmap(
        &self,
        page: &mut PageDesc,
        vma: VmaId,
        address: u64,
        exclusive: bool,
    ) -> Result<(), RmapError> {
        // One lookup of the VMA for both: this runs on every fault that
        // maps a new page.
        let rec = self.vma(vma)?;
        let Some(index) = rec.range.linear_page_index(address) else {
            return Err(RmapError::AddressOutsideVma { vma, address });
        };
        let h = self.anon_vma_for(rec, vma, exclusive)?;
        page.mapping = h.to_mapping();
        page.index = index;
        Ok(())
    }

    /// page_add_new_anon_rmap: a brand-new page (do_anonymous_page, COW
    /// copy) gets its first mapping. The page is the VMA's alone, so in
    /// every era except the seed's patch alone it goes to the VMA's own
    /// anon_vma. Sets mapcount to 1 and PG_swapbacked, and PG_anon_exclusive
    /// in eras that have it.
    pub fn page_add_new_anon_rmap(
        &self,
        page: &mut PageDesc,
        vma: VmaId,
        address: u64,
    ) -> Result<(), RmapError> {
        self.set_anon_rmap(page, vma, address, true)?;
        self.new_anon_mapped(page);
        Ok(())
    }

    /// What page_add_new_anon_rmap sets besides mapping and index: the
    /// first mapping, PG_swapbacked, and PG_anon_exclusive in eras that
    /// have it.
    #[inline(always)]
    fn new_anon_mapped(&self, page: &mut PageDesc) {
        page.mapcount = 1;
        page.flags |= PageFlags::SWAPBACKED;
        if self.semantics().anon_exclusive {
            page.flags |= PageFlags::ANON_EXCLUSIVE;
        }
    }

    /// What page_add_new_anon_rmap reads of `vma`'s record, taken once by
    /// a fault path together with anon_vma_prepare's "the VMA has a live
    /// anon_vma" test (`None` when it has none yet): the fault then maps
    /// its new page with [`Self::page_add_new_anon_rmap_to`] without
    /// looking the VMA up a second time. Valid while the VMA's placement
    /// and anon_vma stay as they are (a fault's allocation, and the
    /// shrinker under it, change neither).
    #[inline]
    pub fn new_anon_target(&self, vma: VmaId) -> Option<NewAnonTarget> {
        let rec = self.vma(vma).ok()?;
        let own = rec.anon_vma?;
        if !self.is_live(own) {
            return None;
        }
        Some(NewAnonTarget { vma, range: rec.range, own })
    }

    /// [`Self::page_add_new_anon_rmap`] for a target taken by
    /// [`Self::new_anon_target`]: the same mapping, index, mapcount and
    /// flags. In the one era whose first mapping does not go to the VMA's
    /// own anon_vma (the seed's patch alone: the chain's last link), the
    /// full path runs.
    #[inline(always)]
    pub fn page_add_new_anon_rmap_to(
        &self,
        page: &mut PageDesc,
        t: &NewAnonTarget,
        address: u64,
    ) -> Result<(), RmapError> {
        if self.semantics().first_map == FirstMapAnonVma::LastLink {
            return self.page_add_new_anon_rmap(page, t.vma, address);
        }
        let Some(index) = t.range.linear_page_index(address) else {
            return Err(RmapError::AddressOutsideVma { vma: t.vma, address });
        };
        page.mapping = t.own.to_mapping();
        page.index = index;
        self.new_anon_mapped(page);
        Ok(())
    }

    /// page_add_anon_rmap: map a page that may already be anon (swap-in,
    /// do_swap_page). On the first mapping (mapcount 0 to 1) the era decides
    /// whether the mapping is (re)written and to which anon_vma; later
    /// mappings only count. `exclusive` (the faulting VMA owns the page:
    /// RMAP_EXCLUSIVE) is honoured only in eras whose page_add_anon_rmap has
    /// the argument; there it also sets PG_anon_exclusive when the era has
    /// that flag.
    pub fn page_add_anon_rmap(
        &self,
        page: &mut PageDesc,
        vma: VmaId,
        address: u64,
        exclusive: bool,
    ) -> Result<(), RmapError> {
        let sem = self.semantics();
        let exclusive = exclusive && sem.add_anon_exclusive_arg;
        // One lookup of the VMA for the index, the anon_vma test and the
        // first mapping's pick: this runs on every swap-in.
        let rec = self.vma(vma)?;
        let Some(index) = rec.range.linear_page_index(address) else {
            return Err(RmapError::AddressOutsideVma { vma, address });
        };
        if rec.anon_vma.is_none() {
            return Err(RmapError::NoAnonVma(vma));
        }
        let first = page.mapcount == 0;
        let Some(mapcount) = page.mapcount.checked_add(1) else {
            return Err(RmapError::Overflow { what: "mapcount" });
        };
        page.mapcount = mapcount;
        if first && (sem.rewrite_anon_mapping || !page.is_anon()) {
            let h = self.anon_vma_for(rec, vma, exclusive)?;
            page.mapping = h.to_mapping();
            page.index = index;
        }
        if exclusive && sem.anon_exclusive {
            page.flags |= PageFlags::ANON_EXCLUSIVE;
        }
        Ok(())
    }

    /// page_remove_rmap: one mapping fewer. The mapping word is left as it
    /// is, as in the kernel (it is cleared when the page is freed). Returns
    /// whether that was the last mapping.
    pub fn page_remove_rmap(&self, page: &mut PageDesc) -> Result<bool, RmapError> {
        let Some(mapcount) = page.mapcount.checked_sub(1) else {
            return Err(RmapError::NotMapped);
        };
        page.mapcount = mapcount;
        Ok(page.mapcount == 0)
    }

    /// page_move_anon_rmap: the last user reuses a COW page (do_wp_page), so
    /// the page moves to that VMA's own anon_vma, which rmap walks from
    /// there will still find. PG_anon_exclusive is the caller's to set, as
    /// do_wp_page does in eras that have it.
    pub fn page_move_anon_rmap(&self, page: &mut PageDesc, vma: VmaId) -> Result<(), RmapError> {
        if !page.is_anon() {
            return Err(RmapError::NotAnon(page.mapping));
        }
        let Some(own) = self.vma(vma)?.anon_vma else {
            return Err(RmapError::NoAnonVma(vma));
        };
        self.lookup(own, "page_move_anon_rmap")?;
        page.mapping = own.to_mapping();
        Ok(())
    }

    /// page_anon_vma: the anon_vma a page's mapping names, or the oops of
    /// following a stale mapping.
    pub fn page_anon_vma(&self, page: &PageDesc) -> Result<(AnonVmaHandle, &AnonVma), RmapError> {
        let h = AnonVmaHandle::from_mapping(page.mapping)?;
        Ok((h, self.lookup(h, "page_anon_vma")?))
    }
}
