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
use crate::outcome::Outcome;
use crate::process::{Pid, Process, Vma};
use crate::pte::{A, RW, pte_special};

impl Machine {
    /// fork(): a child process with a copy of `parent`'s address space.
    pub fn fork(&mut self, parent: Pid) -> Result<Outcome<Pid>, MmError> {
        let (ppml4, pvmas) = {
            let p = self.proc(parent)?;
            (p.pml4, p.vmas.values().copied().collect::<Vec<_>>())
        };
        let cpml4 = self.alloc_table(&[])?;
        let child = Pid(self.next_pid);
        self.next_pid += 1;
        self.procs.insert(
            child,
            Process { pid: child, parent: Some(parent), pml4: cpml4, vmas: BTreeMap::new() },
        );
        for pv in pvmas {
            let id = self.new_vma_id();
            let cv = Vma { id, ..pv };
            self.rmap.vma_dup(id, pv.id)?;
            self.vma_owner.insert(id, child);
            self.proc_mut(child)?.vmas.insert(cv.start, cv);
            if let RmapResult::Oops(o) = rmap_res(self.rmap.anon_vma_fork(id, pv.id))? {
                return Ok(Outcome::Oops(self.oops(&o, None)));
            }
            if self.rmap.vma(pv.id)?.anon_vma.is_some() {
                self.copy_page_range(ppml4, cpml4, &pv)?;
            }
        }
        Ok(Outcome::Done(child))
    }

    /// `copy_page_range` for one VMA.
    fn copy_page_range(&mut self, src_pml4: Pfn, dst_pml4: Pfn, vma: &Vma) -> Result<(), MmError> {
        let mut entries = Vec::new();
        self.for_each_pte(src_pml4, vma.start, vma.end, |va, pa, v| {
            entries.push((va, pa, v));
            Ok(())
        })?;
        for (va, src_slot, _) in entries {
            let dst_slot = self.pte_alloc(dst_pml4, va, &[])?;
            // Re-read: allocating the child's table may have reclaimed.
            let pte = self.read_slot(src_slot)?;
            match pgtable::decode(pte, Level::Pt, self.format)? {
                EntryKind::None => {}
                EntryKind::Swap(s) => {
                    // copy_nonpresent_pte
                    self.swap
                        .swap_duplicate(crate::swap_state::swp_entry(s.swap_type, s.offset)?)?;
                    let mut out = pte;
                    if s.exclusive {
                        let cleared = pgtable::encode_swap(
                            pgtable::SwapPte { exclusive: false, ..s },
                            self.format,
                        )?;
                        self.write_slot(src_slot, cleared)?;
                        out = cleared;
                    }
                    self.write_slot(dst_slot, out)?;
                }
                EntryKind::Present(_) | EntryKind::ProtNone(_) => {
                    // copy_present_pte
                    let kind = pgtable::decode(pte, Level::Pt, self.format)?;
                    if !pte_special(pte) {
                        if let Some(pfn) = kind.pfn() {
                            let d = self.pages.get_mut(pfn)?;
                            if d.is_anon() {
                                d.flags.remove(PageFlags::ANON_EXCLUSIVE);
                            }
                            d.refcount += 1;
                            d.mapcount += 1;
                        }
                    }
                    // Private mappings are COW mappings: write-protect both.
                    let mut child = pte;
                    if pte & RW != 0 {
                        self.write_slot(src_slot, pte & !RW)?;
                        child &= !RW;
                    }
                    child &= !A;
                    self.write_slot(dst_slot, child)?;
                }
            }
        }
        Ok(())
    }
}
