//! User accesses and the page-fault handler: the hardware walk in user
//! mode, then Linux's `do_user_addr_fault` -> `handle_mm_fault` ->
//! `do_anonymous_page` / `do_wp_page` / `do_swap_page` on a fault.
//!
//! Era differences live here (see docs in the crate root): the 2.6.x eras
//! decide COW reuse by mapcount (`reuse_swap_page`), 6.18 by
//! PageAnonExclusive and the refcount (`wp_can_reuse_anon_folio`); 6.18's
//! do_swap_page maps writable and exclusive when the swap PTE carried the
//! exclusive bit or nobody else holds the page.

use pgtable::walk::{Access, CpuState, PfErrorCode};
use pgtable::{EntryKind, Fault, Level, Pfn, PhysAddr, VirtAddr};
use phys::PageFlags;

use crate::error::MmError;
use crate::machine::{Machine, RmapResult, rmap_res};
use crate::outcome::{Oops, Outcome, Segv, SegvCode};
use crate::process::{Pid, Vma};
use crate::pte::{A, D, RW, SPECIAL, mk_pte, pte_special, pte_write};

/// How often one access may fault before we call it a kernel bug (a
/// write to a swapped page takes two: do_swap_page, then do_wp_page).
const MAX_FAULTS_PER_ACCESS: u32 = 8;

/// How a fault, or a user access's translation, ended: [`Outcome`] with
/// the oops boxed. These pass up through several calls on every fault,
/// and an `Outcome` holds its `Oops` inline (about 200 bytes, copied at
/// each return and each `?`); the public functions convert at the end.
pub(crate) enum Handled<T> {
    Done(T),
    Segv(Segv),
    Oops(Box<Oops>),
}

impl<T> Handled<T> {
    fn into_outcome(self) -> Outcome<T> {
        match self {
            Handled::Done(v) => Outcome::Done(v),
            Handled::Segv(s) => Outcome::Segv(s),
            Handled::Oops(o) => Outcome::Oops(*o),
        }
    }
}

/// What the fault handler did.
pub(crate) type FaultOutcome = Handled<()>;

/// An oops met under the fault (the shrinker's, inside an allocation) as
/// the fault's outcome, as `oops_as_outcome` does for `Outcome`.
fn oops_handled<T>(r: Result<Handled<T>, MmError>) -> Result<Handled<T>, MmError> {
    match r {
        Err(MmError::Oops(o)) => Ok(Handled::Oops(o)),
        other => other,
    }
}

impl Machine {
    fn cpu(&self) -> CpuState {
        CpuState::default()
    }

    /// The process, building the error only when there is none: the fault
    /// path looks processes up on every access, and an eagerly built error
    /// (`ok_or`) costs a drop each time.
    fn proc_lazy(&self, pid: Pid) -> Result<&crate::process::Process, MmError> {
        match self.procs.get(&pid) {
            Some(p) => Ok(p),
            None => Err(MmError::NoSuchProcess(pid)),
        }
    }

    /// Translates `va` for a user access, faulting as needed; the physical
    /// address of the byte, or how the access ended. Inlined into the
    /// accessors, so its result is not passed back through memory.
    #[inline(always)]
    fn user_translate(
        &mut self,
        pid: Pid,
        va: u64,
        write: bool,
    ) -> Result<Handled<PhysAddr>, MmError> {
        let vaddr = VirtAddr::new(va)
            .map_err(|_| MmError::BadAddress { addr: va, reason: "not canonical" })?;
        let access = if write { Access::Write } else { Access::Read };
        // The fault handler never replaces a process's PML4, so CR3 is
        // read once per access, not once per walk.
        let cr3 = self.proc_lazy(pid)?.pml4.addr();
        let cpu = self.cpu();
        for _ in 0..MAX_FAULTS_PER_ACCESS {
            let mut mem = &self.mem;
            match pgtable::walk::translate(&mut mem, cr3, vaddr, access, &cpu) {
                Ok(t) => return Ok(Handled::Done(t.pa)),
                Err(Fault::PageFault(pf)) => {
                    // An oops the shrinker met under one of the fault's
                    // allocations ends the access, as it would the task.
                    match oops_handled(self.handle_page_fault(pid, va, pf.error_code))? {
                        Handled::Done(()) => continue,
                        Handled::Segv(s) => return Ok(Handled::Segv(s)),
                        Handled::Oops(o) => return Ok(Handled::Oops(o)),
                    }
                }
                Err(Fault::Mem(e)) => return Err(e.into()),
                Err(e) => return Err(MmError::bug("user_translate", e.to_string())),
            }
        }
        Err(MmError::bug("user_translate", format!("access to {va:#x} keeps faulting")))
    }

    /// A one-byte user load at `va` in `pid`: `read_bytes` of one byte,
    /// without its page-by-page loop (one byte never crosses a page).
    pub fn read(&mut self, pid: Pid, va: u64) -> Result<Outcome<u8>, MmError> {
        let pa = match self.user_translate(pid, va, false)? {
            Handled::Done(pa) => pa,
            Handled::Segv(s) => return Ok(Outcome::Segv(s)),
            Handled::Oops(o) => return Ok(Outcome::Oops(*o)),
        };
        Ok(Outcome::Done(self.mem.load_u8(pa)?))
    }

    /// A one-byte user store of `value` at `va` in `pid`: `write_bytes` of
    /// one byte, without its page-by-page loop.
    pub fn write(&mut self, pid: Pid, va: u64, value: u8) -> Result<Outcome<()>, MmError> {
        let pa = match self.user_translate(pid, va, true)? {
            Handled::Done(pa) => pa,
            Handled::Segv(s) => return Ok(Outcome::Segv(s)),
            Handled::Oops(o) => return Ok(Outcome::Oops(*o)),
        };
        self.mem.store_u8(pa, value)?;
        Ok(Outcome::Done(()))
    }

    /// User loads of `buf.len()` bytes from `va`, page by page.
    pub fn read_bytes(
        &mut self,
        pid: Pid,
        va: u64,
        buf: &mut [u8],
    ) -> Result<Outcome<()>, MmError> {
        let mut done = 0usize;
        while done < buf.len() {
            // Built only on the error path: an eager error value costs a drop
            // on every access.
            let Some(a) = va.checked_add(done as u64) else {
                return Err(MmError::BadLength {
                    addr: va,
                    len: buf.len() as u64,
                    reason: "wraps",
                });
            };
            let chunk = ((4096 - (a & 0xfff)) as usize).min(buf.len() - done);
            let pa = match self.user_translate(pid, a, false)? {
                Handled::Done(pa) => pa,
                Handled::Segv(s) => return Ok(Outcome::Segv(s)),
                Handled::Oops(o) => return Ok(Outcome::Oops(*o)),
            };
            self.mem.read_bytes(pa, &mut buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(Outcome::Done(()))
    }

    /// User stores of `data` at `va`, page by page.
    pub fn write_bytes(&mut self, pid: Pid, va: u64, data: &[u8]) -> Result<Outcome<()>, MmError> {
        let mut done = 0usize;
        while done < data.len() {
            // Built only on the error path: an eager error value costs a drop
            // on every access.
            let Some(a) = va.checked_add(done as u64) else {
                return Err(MmError::BadLength {
                    addr: va,
                    len: data.len() as u64,
                    reason: "wraps",
                });
            };
            let chunk = ((4096 - (a & 0xfff)) as usize).min(data.len() - done);
            let pa = match self.user_translate(pid, a, true)? {
                Handled::Done(pa) => pa,
                Handled::Segv(s) => return Ok(Outcome::Segv(s)),
                Handled::Oops(o) => return Ok(Outcome::Oops(*o)),
            };
            self.mem.write_bytes(pa, &data[done..done + chunk])?;
            done += chunk;
        }
        Ok(Outcome::Done(()))
    }

    /// The page-fault handler, for an embedder whose own walker (an
    /// emulator's MMU) raised #PF with `error_code` at `va` in `pid`:
    /// `do_user_addr_fault` as the machine's own accesses run it. `Done`
    /// means the access may be retried; SIGSEGV and an oops are outcomes.
    pub fn page_fault(
        &mut self,
        pid: Pid,
        va: u64,
        error_code: PfErrorCode,
    ) -> Result<Outcome<()>, MmError> {
        Ok(oops_handled(self.handle_page_fault(pid, va, error_code))?.into_outcome())
    }

    /// `do_user_addr_fault`: find the VMA, check the access against it
    /// (`access_error`), then `handle_mm_fault`.
    pub(crate) fn handle_page_fault(
        &mut self,
        pid: Pid,
        va: u64,
        code: PfErrorCode,
    ) -> Result<FaultOutcome, MmError> {
        let segv = |c| Handled::Segv(Segv { pid, addr: va, error_code: code.bits(), code: c });
        let p = self.proc_lazy(pid)?;
        let pml4 = p.pml4;
        let Some(vma) = p.vma_at(va).copied() else {
            return Ok(segv(SegvCode::MapErr));
        };
        let write = code.contains(PfErrorCode::WRITE);
        let bad = if write {
            !vma.prot.writable()
        } else {
            code.contains(PfErrorCode::PRESENT) || !vma.prot.readable()
        };
        if bad {
            return Ok(segv(SegvCode::AccErr));
        }
        self.handle_pte_fault(pid, pml4, &vma, va & !0xfff, write)
    }

    /// `handle_pte_fault`: dispatch on what the PTE holds.
    fn handle_pte_fault(
        &mut self,
        pid: Pid,
        pml4: Pfn,
        vma: &Vma,
        addr: u64,
        write: bool,
    ) -> Result<FaultOutcome, MmError> {
        let slot = self.pte_alloc(pml4, addr, &[])?;
        let orig = self.read_slot(slot)?;
        match pgtable::decode(orig, Level::Pt, self.format)? {
            EntryKind::None => self.do_anonymous_page(vma, addr, slot, write),
            EntryKind::Swap(s) => self.do_swap_page(pid, vma, addr, slot, orig, s, write),
            EntryKind::ProtNone(_) => Err(prot_none_in_accessible_vma(orig, addr)),
            EntryKind::Present(_) => {
                if write && !pte_write(orig) {
                    return self.do_wp_page(vma, addr, slot, orig);
                }
                // A spurious fault: refresh A (and D), as
                // ptep_set_access_flags does.
                let new = orig | A | if write { D } else { 0 };
                if new != orig {
                    self.write_slot(slot, new)?;
                }
                Ok(Handled::Done(()))
            }
        }
    }

    /// The VMAs `find_mergeable_anon_vma` looks at: the one right after
    /// `vma`, then the one right before, when they touch it (anon_vma_compatible
    /// ignores the R/W/X bits but not VM_ACCOUNT, and rmap checks the page
    /// offsets line up).
    fn mergeable_neighbours(&self, vma: &Vma) -> Result<Neighbours, MmError> {
        let mut near = Neighbours { ids: [vma.id; 2], len: 0 };
        let Some(&pid) = self.vma_owner.get(&vma.id) else { return Ok(near) };
        let p = self.proc_lazy(pid)?;
        // VM_ACCOUNT is one of the flags anon_vma_compatible compares.
        if let Some(next) = p.vmas.get(&vma.end).filter(|n| n.account == vma.account) {
            near.push(next.id);
        }
        if let Some((_, prev)) = p.vmas.range(..vma.start).next_back() {
            if prev.end == vma.start && prev.account == vma.account {
                near.push(prev.id);
            }
        }
        Ok(near)
    }

    /// `anon_vma_prepare` for a fault in `vma`: where the fault's new page
    /// goes (rmap's [`rmap::NewAnonTarget`], so that page_add_new_anon_rmap
    /// need not look the VMA up again), or the rmap oops it hit.
    /// Like Linux, the neighbours are looked for only when the VMA has no
    /// anon_vma yet (`__anon_vma_prepare`); with one, rmap ignores them.
    #[inline(always)]
    fn fault_anon_vma_prepare(
        &mut self,
        vma: &Vma,
    ) -> Result<Result<rmap::NewAnonTarget, rmap::Oops>, MmError> {
        // anon_vma_prepare's own fast path, without looking the VMA up a
        // second time: an anon_vma that is live is the answer. Anything
        // else goes through anon_vma_prepare, which reports it. Only this
        // test is inlined into the fault paths (every fault but a VMA's
        // first takes it); the rest is out of line.
        if let Some(t) = self.rmap.new_anon_target(vma.id) {
            return Ok(Ok(t));
        }
        self.fault_anon_vma_prepare_slow(vma)
    }

    /// `fault_anon_vma_prepare` when the VMA has no live anon_vma.
    #[inline(never)]
    fn fault_anon_vma_prepare_slow(
        &mut self,
        vma: &Vma,
    ) -> Result<Result<rmap::NewAnonTarget, rmap::Oops>, MmError> {
        let own = self.rmap.vma(vma.id).ok().and_then(|r| r.anon_vma);
        let near = if own.is_some() {
            Neighbours { ids: [vma.id; 2], len: 0 }
        } else {
            self.mergeable_neighbours(vma)?
        };
        match rmap_res(self.rmap.anon_vma_prepare(vma.id, near.as_slice()))? {
            RmapResult::Oops(o) => Ok(Err(o)),
            RmapResult::Ok(_) => match self.rmap.new_anon_target(vma.id) {
                Some(t) => Ok(Ok(t)),
                None => Err(MmError::bug(
                    "anon_vma_prepare",
                    format!("VMA {:?} has no live anon_vma after it", vma.id),
                )),
            },
        }
    }

    /// `do_anonymous_page`: a read maps the shared zero page read-only
    /// (`pte_mkspecial`), a write a new zeroed page P|RW|US|A|D|NX.
    fn do_anonymous_page(
        &mut self,
        vma: &Vma,
        addr: u64,
        slot: PhysAddr,
        write: bool,
    ) -> Result<FaultOutcome, MmError> {
        let prot = vma.prot.vm_page_prot();
        if !write {
            let entry = mk_pte(self.zero_pfn.0, prot, self.format) | SPECIAL;
            if self.read_slot(slot)? == 0 {
                self.write_slot(slot, entry)?;
            }
            return Ok(Handled::Done(()));
        }
        let target = match self.fault_anon_vma_prepare(vma)? {
            Ok(t) => t,
            Err(o) => return Ok(Handled::Oops(Box::new(self.oops(&o, None)))),
        };
        let (page, next) = self.alloc_frame_and_next("do_anonymous_page", &[])?;
        // The frame the next allocation hands out starts coming into the
        // cache now, while this fault and the work up to the next one run:
        // first-touch faults come in runs (a heap or a buffer being
        // filled), and clearing a cold frame waits on memory for about
        // as long as this whole fault's own work takes. Only a hint.
        if let Some(next) = next {
            self.mem.prefetch_frame(next)?;
        }
        // Just allocated and in no page table yet: ours alone, so one memset.
        self.mem.zero_frame_exclusive(page)?;
        self.pages.get_mut(page)?.flags |= PageFlags::UPTODATE;
        let mut entry = mk_pte(page.0, prot, self.format);
        if vma.prot.writable() {
            entry |= RW | D;
        }
        if self.read_slot(slot)? != 0 {
            // Somebody filled the PTE while we allocated (the shrinker
            // cannot, but keep Linux's check): drop our page.
            return self.put_page(page).map(Handled::Done);
        }
        // The new page's rmap and LRU flag through one borrow of its
        // descriptor.
        let d = self.pages.get_mut(page)?;
        self.rmap.page_add_new_anon_rmap_to(d, &target, addr)?;
        d.flags |= Self::lru_new_flags(self.sem);
        self.write_slot(slot, entry)?;
        Ok(Handled::Done(()))
    }

    /// `reuse_swap_page` (2.6.x): whether the faulting mapping is the only
    /// user, counting swap PTEs that still name the page's slot; if so and
    /// no swap PTE is left, the page leaves the swap cache (and is dirty).
    fn reuse_swap_page(&mut self, pfn: Pfn) -> Result<bool, MmError> {
        let d = *self.pages.get(pfn)?;
        let mut count = d.mapcount;
        if count <= 1 && d.flags.contains(PageFlags::SWAPCACHE) {
            count += self.swap.swap_count(crate::swap_state::private_entry(d.private)?)?;
            if count == 1 && !d.flags.contains(PageFlags::WRITEBACK) {
                self.delete_from_swap_cache(pfn)?;
                self.pages.get_mut(pfn)?.flags |= PageFlags::DIRTY;
            }
        }
        Ok(count <= 1)
    }

    /// `wp_can_reuse_anon_folio` (6.18): reuse when the mapping's reference
    /// is the only one once an unneeded swap-cache reference is dropped.
    fn wp_can_reuse_anon_folio(&mut self, vma: &Vma, pfn: Pfn) -> Result<bool, MmError> {
        let d = *self.pages.get(pfn)?;
        let swapcache = d.flags.contains(PageFlags::SWAPCACHE) as u32;
        if d.refcount > 3 || d.refcount > 1 + swapcache {
            return Ok(false);
        }
        if swapcache == 1 {
            self.folio_free_swap(pfn)?;
        }
        if self.pages.get(pfn)?.refcount != 1 {
            return Ok(false);
        }
        self.rmap.page_move_anon_rmap(self.pages.get_mut(pfn)?, vma.id)?;
        Ok(true)
    }

    /// `do_wp_page`: a write to a present read-only PTE of a writable VMA.
    /// Reuse the page when it has no other user (the era's rule), else
    /// copy it (`wp_page_copy`); the zero page is always "copied" into a
    /// new zeroed page.
    fn do_wp_page(
        &mut self,
        vma: &Vma,
        addr: u64,
        slot: PhysAddr,
        orig: u64,
    ) -> Result<FaultOutcome, MmError> {
        let old = if pte_special(orig) {
            None
        } else {
            Some(Pfn((orig & pgtable::entry::ADDR_MASK) >> 12))
        };
        if let Some(old) = old {
            // One read of the descriptor for both tests.
            let d = self.pages.get(old)?;
            let excl = d.flags.contains(PageFlags::ANON_EXCLUSIVE);
            if d.is_anon() {
                let reuse = if self.sem.anon_exclusive {
                    excl || self.wp_can_reuse_anon_folio(vma, old)?
                } else {
                    let r = self.reuse_swap_page(old)?;
                    // page_move_anon_rmap came with the anon_vma chains
                    // (2.6.34-rc1); 2.6.33's shared anon_vma needs no move.
                    if r && self.sem.avc {
                        self.rmap.page_move_anon_rmap(self.pages.get_mut(old)?, vma.id)?;
                    }
                    r
                };
                if reuse {
                    if self.sem.anon_exclusive {
                        self.pages.get_mut(old)?.flags |= PageFlags::ANON_EXCLUSIVE;
                    }
                    // wp_page_reuse: young, dirty, writable.
                    self.write_slot(slot, orig | A | D | RW)?;
                    self.flush_tlb_vma_page(vma.id, addr);
                    return Ok(Handled::Done(()));
                }
            }
        }
        self.wp_page_copy(vma, addr, slot, orig, old)
    }

    /// `wp_page_copy`: a private copy (or a zeroed page for the zero page)
    /// replaces the shared one in this PTE.
    fn wp_page_copy(
        &mut self,
        vma: &Vma,
        addr: u64,
        slot: PhysAddr,
        orig: u64,
        old: Option<Pfn>,
    ) -> Result<FaultOutcome, MmError> {
        // The source starts coming into the cache now, while anon_vma
        // preparation and the allocation run (a hint: nothing changes).
        if let Some(o) = old {
            self.mem.prefetch_frame(o)?;
        }
        let target = match self.fault_anon_vma_prepare(vma)? {
            Ok(t) => t,
            Err(o) => return Ok(Handled::Oops(Box::new(self.oops(&o, old)))),
        };
        let (new, next) = self.alloc_frame_and_next("wp_page_copy", old.as_slice())?;
        // As in do_anonymous_page: the next copy's destination starts
        // coming into the cache (its source, the next page written, is
        // not known here).
        if let Some(next) = next {
            self.mem.prefetch_frame(next)?;
        }
        // `new` is in no page table yet, and nothing writes `old` while we
        // hold the machine, so both go through the bulk operations.
        match old {
            None => self.mem.zero_frame_exclusive(new)?,
            Some(o) => self.mem.copy_frame_exclusive(new, o)?,
        }
        self.pages.get_mut(new)?.flags |= PageFlags::UPTODATE;
        if self.read_slot(slot)? != orig {
            return self.put_page(new).map(Handled::Done);
        }
        let mut entry = mk_pte(new.0, vma.prot.vm_page_prot(), self.format) | D;
        if vma.prot.writable() {
            entry |= RW;
        }
        // ptep_clear_flush, then the new page's rmap, then the new PTE,
        // then the old page loses this mapping and its reference.
        self.write_slot(slot, 0)?;
        self.flush_tlb_vma_page(vma.id, addr);
        let d = self.pages.get_mut(new)?;
        self.rmap.page_add_new_anon_rmap_to(d, &target, addr)?;
        d.flags |= Self::lru_new_flags(self.sem);
        self.write_slot(slot, entry)?;
        if let Some(o) = old {
            // page_remove_rmap, then put_page's reference drop, through
            // one borrow of the old page's descriptor.
            let d = self.pages.get_mut(o)?;
            self.rmap.page_remove_rmap(d)?;
            if o != self.zero_pfn {
                let Some(refs) = d.refcount.checked_sub(1) else {
                    return Err(MmError::bug(
                        "put_page",
                        format!("refcount underflow on frame {o}"),
                    ));
                };
                d.refcount = refs;
                if refs == 0 {
                    self.free_page_frame(o)?;
                }
            }
        }
        Ok(Handled::Done(()))
    }

    /// `do_swap_page`: bring a swapped page back (from the swap cache, or
    /// read from the device into a new swap-cache page), map it, drop the
    /// PTE's swap count, and keep or drop the swap cache by the era's rule.
    #[allow(clippy::too_many_arguments)]
    fn do_swap_page(
        &mut self,
        pid: Pid,
        vma: &Vma,
        addr: u64,
        slot: PhysAddr,
        orig: u64,
        swp: pgtable::SwapPte,
        write: bool,
    ) -> Result<FaultOutcome, MmError> {
        let _ = pid;
        let entry = crate::swap_state::swp_entry(swp.swap_type, swp.offset)?;
        let Some(cached) = self.swap.lookup_valid(entry) else {
            return Err(bad_swap_entry(orig, addr));
        };
        // The page, with one reference held by this fault (lookup_swap_cache
        // takes one; a new page comes with its allocation's).
        let page = match cached {
            Some(p) => {
                let d = self.pages.get_mut(p)?;
                d.refcount = d.refcount.checked_add(1).ok_or_else(|| {
                    MmError::bug("do_swap_page", format!("refcount overflow on {p}"))
                })?;
                p
            }
            None => self.read_swap_cache_async(entry)?,
        };
        if self.read_slot(slot)? != orig {
            return self.put_page(page).map(Handled::Done);
        }
        if self.sem.anon_exclusive {
            self.do_swap_page_modern(vma, addr, slot, swp, entry, page, write)
        } else {
            self.do_swap_page_classic(vma, addr, slot, entry, page, write)
        }
    }

    /// 2.6.x: map read-only unless a write fault finds the page reusable;
    /// set_pte_at, page_add_anon_rmap, swap_free, then free the swap cache
    /// only when swap is more than half full.
    fn do_swap_page_classic(
        &mut self,
        vma: &Vma,
        addr: u64,
        slot: PhysAddr,
        entry: crate::swap_state::SwpEntry,
        page: Pfn,
        mut write: bool,
    ) -> Result<FaultOutcome, MmError> {
        let mut pte = mk_pte(page.0, vma.prot.vm_page_prot(), self.format);
        let mut exclusive = false;
        if write && self.reuse_swap_page(page)? {
            pte |= D;
            if vma.prot.writable() {
                pte |= RW;
            }
            write = false;
            exclusive = true;
        }
        self.write_slot(slot, pte)?;
        self.rmap.page_add_anon_rmap(self.pages.get_mut(page)?, vma.id, addr, exclusive)?;
        self.swap.swap_free(entry)?;
        if self.swap.vm_swap_full() {
            self.try_to_free_swap(page)?;
        }
        if write {
            let orig = self.read_slot(slot)?;
            return self.do_wp_page(vma, addr, slot, orig);
        }
        Ok(Handled::Done(()))
    }

    /// 6.18: swap_free first, maybe free the swap cache, then map writable
    /// and exclusive when the swap PTE said exclusive or this fault holds
    /// the only reference; else read-only and shared.
    #[allow(clippy::too_many_arguments)]
    fn do_swap_page_modern(
        &mut self,
        vma: &Vma,
        addr: u64,
        slot: PhysAddr,
        swp: pgtable::SwapPte,
        entry: crate::swap_state::SwpEntry,
        page: Pfn,
        mut write: bool,
    ) -> Result<FaultOutcome, MmError> {
        let exclusive_pte = swp.exclusive;
        self.swap.swap_free(entry)?;
        // should_try_to_free_swap: swap full, or a write fault where only
        // the swap cache and this fault hold the page.
        let d = *self.pages.get(page)?;
        if d.flags.contains(PageFlags::SWAPCACHE)
            && (self.swap.vm_swap_full() || (write && d.refcount == 2))
        {
            self.folio_free_swap(page)?;
        }
        let mut pte = mk_pte(page.0, vma.prot.vm_page_prot(), self.format);
        if swp.soft_dirty {
            pte |= pgtable::EntryFlags::SOFT_DIRTY.bits();
        }
        let mut exclusive = false;
        if exclusive_pte || self.pages.get(page)?.refcount == 1 {
            if vma.prot.writable() {
                pte |= RW;
                if write {
                    pte |= D;
                    write = false;
                }
            }
            exclusive = true;
        }
        self.rmap.page_add_anon_rmap(self.pages.get_mut(page)?, vma.id, addr, exclusive)?;
        self.write_slot(slot, pte)?;
        if write {
            let orig = self.read_slot(slot)?;
            return self.do_wp_page(vma, addr, slot, orig);
        }
        Ok(Handled::Done(()))
    }
}

/// handle_pte_fault on a PROT_NONE entry in a VMA the access may use:
/// NUMA hinting faults are not emulated, so this is an emulator bug. Out
/// of line, as [`bad_swap_entry`].
#[cold]
#[inline(never)]
fn prot_none_in_accessible_vma(orig: u64, addr: u64) -> MmError {
    MmError::bug(
        "handle_pte_fault",
        format!(
            "PROT_NONE entry {orig:#x} in accessible VMA at {addr:#x} (NUMA hinting is not emulated)"
        ),
    )
}

/// do_swap_page's answer to a swap PTE naming no slot in use: an emulator
/// bug (a real kernel would have printed "Bad swap entry"). Out of line,
/// so the fault handler's common path does not carry the formatting.
#[cold]
#[inline(never)]
fn bad_swap_entry(orig: u64, addr: u64) -> MmError {
    MmError::bug("do_swap_page", format!("bad swap entry {orig:#x} at {addr:#x}"))
}

/// Up to two neighbouring VMAs, without a heap allocation per fault.
struct Neighbours {
    ids: [rmap::VmaId; 2],
    len: usize,
}

impl Neighbours {
    fn push(&mut self, id: rmap::VmaId) {
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = id;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[rmap::VmaId] {
        &self.ids[..self.len]
    }
}
