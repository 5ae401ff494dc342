//! fork: `dup_mmap` and `copy_page_range`.
//!
//! Per VMA, in address order: the child's copy is registered with rmap,
//! `anon_vma_fork` links it, and — only when the parent VMA has an
//! anon_vma, as `vma_needs_copy` decides — its PTEs are copied:
//! present ones write-protected on both sides (a COW mapping), the child's
//! copy marked old, mapcount and refcount raised; swap ones take another
//! swap count (`swap_duplicate`). In 6.18 an AnonExclusive page stops being
//! exclusive (`folio_try_dup_anon_rmap_pte`) and an exclusive swap PTE
//! loses its exclusive bit in the parent and the child.

use std::collections::BTreeMap;

use pgtable::{EntryKind, Level, Pfn};
use phys::PageFlags;

use crate::error::MmError;
use crate::machine::{Machine, RmapResult, rmap_res};
use crate::outcome::{Outcome, oops_as_outcome};
use crate::process::{Pid, Process, Vma};
use crate::pte::{A, RW, pte_special};

impl Machine {
    /// fork(): a child process with a copy of `parent`'s address space.
    pub fn fork(&mut self, parent: Pid) -> Result<Outcome<Pid>, MmError> {
        let (ppml4, pvmas) = {
            let p = self.proc(parent)?;
            (p.pml4, p.vmas.values().copied().collect::<Vec<_>>())
        };
        // The child's PGD is allocated first (mm_alloc -> pgd_alloc); reclaim
        // under that allocation may oops, and the fork ends there.
        let cpml4 = match oops_as_outcome(self.alloc_table(&[]).map(Outcome::Done))? {
            Outcome::Done(p) => p,
            Outcome::Oops(o) => return Ok(Outcome::Oops(o)),
            Outcome::Segv(s) => return Ok(Outcome::Segv(s)),
        };
        let child = Pid(self.next_pid);
        self.next_pid = self
            .next_pid
            .checked_add(1)
            .ok_or_else(|| MmError::BadConfig("process ids exhausted".into()))?;
        self.procs.insert(
            child,
            Process { pid: child, parent: Some(parent), pml4: cpml4, vmas: BTreeMap::new() },
        );
        let r = self.dup_mmap(child, ppml4, cpml4, pvmas);
        // dup_mmap ends with flush_tlb_mm(oldmm), on success and failure
        // alike: copy_page_range write-protected the parent's entries.
        self.flush_tlb_mm(parent);
        match r {
            Ok(Outcome::Done(())) => Ok(Outcome::Done(child)),
            Ok(other) => Ok(other.map(|()| child)),
            Err(e) => {
                // dup_mmap failed (out of memory, or the shrinker oopsed
                // under one of its allocations): the half-built child's mm
                // is torn down, as fork's error path mmputs it; an oops is
                // the fork's outcome, the machine stays usable.
                let _ = self.exit(child);
                oops_as_outcome(Err(e))
            }
        }
    }

    /// `dup_mmap`: the child's VMAs, anon_vma links and page tables.
    fn dup_mmap(
        &mut self,
        child: Pid,
        ppml4: Pfn,
        cpml4: Pfn,
        pvmas: Vec<Vma>,
    ) -> Result<Outcome<()>, MmError> {
        for pv in pvmas {
            let id = self.new_vma_id();
            let cv = Vma { id, ..pv };
            self.rmap.vma_dup(id, pv.id)?;
            // dup_mmap: tmp->vm_mm = mm.
            self.rmap.vma_set_mm(id, crate::machine::vm_mm(cpml4))?;
            self.vma_owner.insert(id, child);
            self.proc_mut(child)?.vmas.insert(cv.start, cv);
            if let RmapResult::Oops(o) = rmap_res(self.rmap.anon_vma_fork(id, pv.id))? {
                return Ok(Outcome::Oops(self.oops(&o, None)));
            }
            if self.rmap.vma(pv.id)?.anon_vma.is_some() {
                self.copy_page_range(ppml4, cpml4, &pv)?;
            }
        }
        Ok(Outcome::Done(()))
    }

    /// `copy_page_range` for one VMA: page table by page table, as
    /// `copy_pte_range` does, so each table is found and allocated once.
    fn copy_page_range(&mut self, src_pml4: Pfn, dst_pml4: Pfn, vma: &Vma) -> Result<(), MmError> {
        const PMD_SIZE: u64 = 1 << 21;
        let mut addr = vma.start;
        while addr < vma.end {
            let next = ((addr + PMD_SIZE) & !(PMD_SIZE - 1)).min(vma.end);
            if let Some(first) = self.pte_slot(src_pml4, addr)? {
                let n = ((next - addr) >> 12) as usize;
                // Only allocate the child's table when there is something
                // to copy into it.
                let mut any = false;
                for i in 0..n {
                    if self.read_slot(crate::table::slot_add(first, i))? != 0 {
                        any = true;
                        break;
                    }
                }
                if any {
                    let dst_first = self.pte_alloc(dst_pml4, addr, &[])?;
                    // Re-find the source: the allocation may have reclaimed.
                    if let Some(src_first) = self.pte_slot(src_pml4, addr)? {
                        for i in 0..n {
                            self.copy_one_pte(
                                crate::table::slot_add(src_first, i),
                                crate::table::slot_add(dst_first, i),
                            )?;
                        }
                    }
                }
            }
            addr = next;
        }
        Ok(())
    }

    /// `copy_present_pte` / `copy_nonpresent_pte` for one entry.
    fn copy_one_pte(
        &mut self,
        src_slot: pgtable::PhysAddr,
        dst_slot: pgtable::PhysAddr,
    ) -> Result<(), MmError> {
        let pte = self.read_slot(src_slot)?;
        if pte == 0 {
            return Ok(());
        }
        match pgtable::decode(pte, Level::Pt, self.format)? {
            EntryKind::None => {}
            EntryKind::Swap(s) => {
                // copy_nonpresent_pte; copy_pte_range adds a count
                // continuation page with GFP_KERNEL when one is needed.
                self.swap_duplicate(crate::swap_state::swp_entry(s.swap_type, s.offset)?, true)?;
                let mut out = pte;
                if s.exclusive {
                    // Mark the swap entry as shared, in the parent too.
                    let cleared = pgtable::encode_swap(
                        pgtable::SwapPte { exclusive: false, ..s },
                        self.format,
                    )?;
                    self.write_slot(src_slot, cleared)?;
                    out = cleared;
                }
                self.write_slot(dst_slot, out)?;
            }
            kind @ (EntryKind::Present(_) | EntryKind::ProtNone(_)) => {
                if !pte_special(pte) {
                    if let Some(pfn) = kind.pfn() {
                        let d = self.pages.get_mut(pfn)?;
                        if d.is_anon() {
                            // folio_try_dup_anon_rmap_pte: no longer exclusive.
                            d.flags.remove(PageFlags::ANON_EXCLUSIVE);
                        }
                        let overflow =
                            || MmError::bug("copy_present_pte", format!("count overflow on {pfn}"));
                        d.refcount = d.refcount.checked_add(1).ok_or_else(overflow)?;
                        d.mapcount = d.mapcount.checked_add(1).ok_or_else(overflow)?;
                    }
                }
                // Private mappings are COW mappings: write-protect both
                // sides; the child's copy is old.
                let mut child = pte;
                if pte & RW != 0 {
                    self.write_slot(src_slot, pte & !RW)?;
                    child &= !RW;
                }
                child &= !A;
                self.write_slot(dst_slot, child)?;
            }
        }
        Ok(())
    }
}
