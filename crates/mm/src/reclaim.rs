//! Reclaim of chosen pages (`shrink_page_list` for one page at a time):
//! `add_to_swap`, `try_to_unmap` through the rmap walk, `pageout`, and
//! `__remove_mapping` (leave the swap cache, free) — or, with keep-cache,
//! stop after writeback with the page unmapped in the swap cache. Also
//! `page_referenced` (the `rmap-walk` operation) and the shrinker used when
//! an allocation finds memory exhausted.

use pgtable::{EntryKind, Level, Pfn};
use phys::PageFlags;

use crate::error::MmError;
use crate::fault::Handled;
use crate::machine::{Machine, RmapResult, rmap_res};
use crate::outcome::Outcome;
use crate::process::Pid;
use crate::pte::{A, pte_dirty, pte_special, pte_young};

/// What reclaim did with one page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReclaimResult {
    /// Written to swap and freed.
    Freed {
        /// The frame.
        pfn: Pfn,
        /// Its swap entry: (type, offset).
        slot: (u8, u64),
    },
    /// Written to swap and left in the swap cache, unmapped (keep-cache).
    KeptInSwapCache {
        /// The frame.
        pfn: Pfn,
        /// Its swap entry: (type, offset).
        slot: (u8, u64),
    },
    /// Some mapping survived the rmap walk (it could not find it): the page
    /// stays mapped there, in the swap cache, as `try_to_unmap` failing
    /// leaves it.
    StillMapped {
        /// The frame.
        pfn: Pfn,
        /// Mappings left.
        mapcount: u32,
    },
    /// No swap slot free: the page stays where it was.
    NoSwapSpace {
        /// The frame.
        pfn: Pfn,
    },
}

/// One mapping an rmap walk found and what page_referenced saw there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WalkHit {
    /// The process owning the VMA.
    pub pid: Pid,
    /// The address of the page there.
    pub address: u64,
    /// Whether that PTE maps the page.
    pub mapped: bool,
    /// Whether its Accessed bit was set (and has been cleared).
    pub referenced: bool,
}

impl Machine {
    /// Reclaims what `pid` maps in `[addr, addr + len)`, page by page in
    /// address order, passing over what reclaim would not take (nothing
    /// mapped, the zero page, a swap entry, a page done earlier in the
    /// range). Stops at the first oops. [`Machine::reclaim_into`] does the
    /// same into a buffer the caller keeps.
    pub fn reclaim(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        keep_cache: bool,
    ) -> Result<Outcome<Vec<ReclaimResult>>, MmError> {
        // Sized for a small range at once (a page at a time is the common
        // call), so that the first result does not go through a grow.
        let pages = len.max(4096).div_ceil(4096).min(16);
        let mut results = Vec::with_capacity(pages as usize);
        Ok(match self.reclaim_into(pid, addr, len, keep_cache, &mut results)? {
            Outcome::Done(()) => Outcome::Done(results),
            Outcome::Oops(o) => Outcome::Oops(o),
            Outcome::Segv(s) => Outcome::Segv(s),
        })
    }

    /// [`Machine::reclaim`], appending each page's result to `out` instead
    /// of returning a new `Vec`: a caller reclaiming over and over (a
    /// benchmark, an emulator's pager) clears and reuses one buffer, and
    /// the call allocates nothing once it has grown. What was in `out`
    /// before stays and plays no part (a page is "done earlier in the
    /// range" only by this call's results). On an oops the results of the
    /// pages reclaimed before it are in `out`.
    pub fn reclaim_into(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        keep_cache: bool,
        out: &mut Vec<ReclaimResult>,
    ) -> Result<Outcome<()>, MmError> {
        // The length rounded up to whole pages (a mask: 4096 is a power
        // of two), a length that wraps an error.
        let Some(rounded) = len.max(4096).checked_add(0xfff).map(|l| l & !0xfff) else {
            return Err(MmError::BadLength { addr, len, reason: "wraps" });
        };
        let end = Self::check_range(addr & !0xfff, rounded)?;
        let pml4 = self.proc(pid)?.pml4;
        let mut va = addr & !0xfff;
        let first = out.len();
        while va < end {
            if let Some(slot) = self.pte_slot(pml4, va)? {
                let pte = self.read_slot(slot)?;
                let kind = pgtable::decode(pte, Level::Pt, self.format)?;
                if let (true, Some(pfn)) = (kind.is_present() && !pte_special(pte), kind.pfn()) {
                    let seen = out[first..].iter().any(|r: &ReclaimResult| match r {
                        ReclaimResult::Freed { pfn: p, .. }
                        | ReclaimResult::KeptInSwapCache { pfn: p, .. }
                        | ReclaimResult::StillMapped { pfn: p, .. }
                        | ReclaimResult::NoSwapSpace { pfn: p } => *p == pfn,
                    });
                    if !seen && self.pages.get(pfn)?.is_anon() {
                        match self.reclaim_page(pfn, keep_cache)? {
                            Handled::Done(r) => out.push(r),
                            Handled::Oops(o) => return Ok(Outcome::Oops(*o)),
                            Handled::Segv(s) => return Ok(Outcome::Segv(s)),
                        }
                    }
                }
            }
            va += 4096;
        }
        Ok(Outcome::Done(()))
    }

    /// shrink_page_list's path for one anonymous page. An oops comes back
    /// boxed ([`Handled`]): the result passes through the reclaim loop on
    /// every page, and an [`Outcome`] carries its oops inline.
    pub(crate) fn reclaim_page(
        &mut self,
        pfn: Pfn,
        keep_cache: bool,
    ) -> Result<Handled<ReclaimResult>, MmError> {
        // The entry is the page's `private` word when it is in the swap
        // cache already, else what add_to_swap put there.
        let d = self.pages.get(pfn)?;
        let entry = if d.flags.contains(PageFlags::SWAPCACHE) {
            crate::swap_state::private_entry(d.private)?
        } else {
            match self.add_to_swap(pfn)? {
                Some(e) => e,
                None => return Ok(Handled::Done(ReclaimResult::NoSwapSpace { pfn })),
            }
        };
        let slot = (entry.swap_type(), entry.offset());
        if self.pages.get(pfn)?.mapcount > 0 {
            if let Handled::Oops(o) = self.try_to_unmap(pfn, entry)? {
                return Ok(Handled::Oops(o));
            }
            let left = self.pages.get(pfn)?.mapcount;
            if left > 0 {
                return Ok(Handled::Done(ReclaimResult::StillMapped { pfn, mapcount: left }));
            }
        }
        if self.pages.get(pfn)?.flags.contains(PageFlags::DIRTY) {
            // pageout -> swap_writepage: clean, written, writeback done.
            self.pages.get_mut(pfn)?.flags.remove(PageFlags::DIRTY);
            self.swap_writepage(pfn)?;
        }
        if keep_cache {
            return Ok(Handled::Done(ReclaimResult::KeptInSwapCache { pfn, slot }));
        }
        // __remove_mapping: only the swap cache's reference may be left.
        let refs = self.pages.get(pfn)?.refcount;
        if refs != 1 {
            return Err(MmError::bug(
                "__remove_mapping",
                format!("frame {pfn} has {refs} references"),
            ));
        }
        self.delete_from_swap_cache(pfn)?;
        Ok(Handled::Done(ReclaimResult::Freed { pfn, slot }))
    }

    /// `try_to_unmap`: every mapping the rmap walk finds becomes the era's
    /// swap PTE (with the exclusive bit in 6.18 for a PageAnonExclusive
    /// page) and takes a swap count; the page loses the mapping and its
    /// reference. A dirty PTE dirties the page.
    fn try_to_unmap(
        &mut self,
        pfn: Pfn,
        entry: crate::swap_state::SwpEntry,
    ) -> Result<Handled<()>, MmError> {
        // The walk's buffer is the machine's, reused from page to page.
        let mut hits = std::mem::take(&mut self.walk_hits);
        let r = self.try_to_unmap_hits(pfn, entry, &mut hits);
        self.walk_hits = hits;
        r
    }

    /// try_to_unmap with the page's swap entry (`private`, which nothing
    /// here changes) and the walk's buffer.
    fn try_to_unmap_hits(
        &mut self,
        pfn: Pfn,
        entry: crate::swap_state::SwpEntry,
        hits: &mut Vec<rmap::RmapHit>,
    ) -> Result<Handled<()>, MmError> {
        match rmap_res(self.rmap.rmap_walk_into(self.pages.get(pfn)?, hits))? {
            RmapResult::Ok(()) => {}
            RmapResult::Oops(o) => {
                return Ok(Handled::Oops(Box::new(self.oops(&o, Some(pfn)))));
            }
        }
        for &hit in hits.iter() {
            let Some(slot) = self.hit_slot(hit)? else { continue };
            let pteval = self.read_slot(slot)?;
            let kind = pgtable::decode(pteval, Level::Pt, self.format)?;
            if !kind.is_present() || pte_special(pteval) || kind.pfn() != Some(pfn) {
                continue;
            }
            // ptep_clear_flush, then the dirty bit moves to the page.
            self.write_slot(slot, 0)?;
            self.flush_tlb_vma_page(hit.vma, hit.address);
            if pte_dirty(pteval) {
                self.pages.get_mut(pfn)?.flags |= PageFlags::DIRTY;
            }
            // swap_duplicate, with a GFP_ATOMIC continuation page past 62
            // swap PTEs; when none can be had the entry goes back and the
            // walk stops (walk_abort): the page stays mapped there.
            if !self.swap_duplicate(entry, false)? {
                self.write_slot(slot, pteval)?;
                break;
            }
            let d = self.pages.get_mut(pfn)?;
            let exclusive = self.sem.anon_exclusive && d.flags.contains(PageFlags::ANON_EXCLUSIVE);
            if exclusive {
                // folio_try_share_anon_rmap_pte
                d.flags.remove(PageFlags::ANON_EXCLUSIVE);
            }
            let swp = pgtable::SwapPte {
                swap_type: entry.swap_type(),
                offset: entry.offset(),
                exclusive,
                soft_dirty: false,
                uffd_wp: false,
            };
            self.write_slot(slot, pgtable::encode_swap(swp, self.format)?)?;
            self.rmap.page_remove_rmap(self.pages.get_mut(pfn)?)?;
            self.put_page(pfn)?;
        }
        Ok(Handled::Done(()))
    }

    /// The PTE slot of an rmap hit: page_vma_mapped_walk from the VMA's
    /// vm_mm (its owner's PML4, which the hit carries) down to the
    /// address's PTE, if the tables exist.
    fn hit_slot(&self, hit: rmap::RmapHit) -> Result<Option<pgtable::PhysAddr>, MmError> {
        let Some(pml4) = crate::machine::vm_mm_pml4(hit.mm) else { return Ok(None) };
        self.pte_slot(pml4, hit.address)
    }

    /// `rmap-walk`: what page_referenced does to the page `pid` maps at
    /// `addr` — walk its rmap, test and clear each mapping's Accessed bit.
    /// `None` when nothing (or the zero page) is mapped there.
    pub fn rmap_walk(
        &mut self,
        pid: Pid,
        addr: u64,
    ) -> Result<Outcome<Option<Vec<WalkHit>>>, MmError> {
        let Some(pfn) = self.mapped_pfn(pid, addr)? else { return Ok(Outcome::Done(None)) };
        if pfn == self.zero_pfn || !self.pages.get(pfn)?.is_anon() {
            return Ok(Outcome::Done(None));
        }
        let hits = match rmap_res(self.rmap.rmap_walk(self.pages.get(pfn)?))? {
            RmapResult::Ok(h) => h,
            RmapResult::Oops(o) => return Ok(Outcome::Oops(self.oops(&o, Some(pfn)))),
        };
        let mut out = Vec::new();
        for hit in hits {
            let Some(&owner) = self.vma_owner.get(&hit.vma) else { continue };
            let mut w =
                WalkHit { pid: owner, address: hit.address, mapped: false, referenced: false };
            if let Some(slot) = self.hit_slot(hit)? {
                let v = self.read_slot(slot)?;
                let kind = pgtable::decode(v, Level::Pt, self.format)?;
                if matches!(kind, EntryKind::Present(_)) && kind.pfn() == Some(pfn) {
                    w.mapped = true;
                    if pte_young(v) {
                        w.referenced = true;
                        self.write_slot(slot, v & !A)?;
                        self.flush_tlb_vma_page(hit.vma, hit.address);
                    }
                }
            }
            out.push(w);
        }
        Ok(Outcome::Done(Some(out)))
    }

    /// Reclaims every page on the LRU, lowest frame first, as repeated
    /// shrinking would (orphaned swap-cache pages included). Returns the
    /// number of frames freed; stops at the first oops.
    pub fn shrink_all(&mut self) -> Result<Outcome<u64>, MmError> {
        let before = self.frames.free_frames();
        for pfn in self.lru_pages() {
            if !self.pages.get(pfn)?.flags.contains(PageFlags::LRU) {
                continue;
            }
            if let Handled::Oops(o) = self.reclaim_page(pfn, false)? {
                return Ok(Outcome::Oops(*o));
            }
        }
        Ok(Outcome::Done(self.frames.free_frames().saturating_sub(before)))
    }

    /// The shrinker behind allocation failures: reclaims the lowest-frame
    /// LRU page that is not busy, with the same path as [`Machine::reclaim`].
    /// Returns whether a frame was freed, or the oops of reclaiming a page
    /// whose rmap walk follows a freed anon_vma: in the kernel that is an
    /// oops in try_to_unmap under the allocation (direct reclaim), so the
    /// allocating operation ends there rather than passing over the page.
    pub(crate) fn shrink_one(&mut self, busy: &[Pfn]) -> Result<Outcome<bool>, MmError> {
        let candidates: Vec<Pfn> =
            self.lru_pages().into_iter().filter(|p| !busy.contains(p)).collect();
        for pfn in candidates {
            let before = self.frames.free_frames();
            let d = *self.pages.get(pfn)?;
            if !d.is_anon() && !d.flags.contains(PageFlags::SWAPCACHE) {
                continue;
            }
            match self.reclaim_page(pfn, false)? {
                Handled::Done(_) => {
                    if self.frames.free_frames() > before {
                        return Ok(Outcome::Done(true));
                    }
                }
                Handled::Oops(o) => return Ok(Outcome::Oops(*o)),
                Handled::Segv(s) => {
                    return Err(MmError::bug("shrink_one", format!("reclaim gave {s}")));
                }
            }
        }
        Ok(Outcome::Done(false))
    }
}
