//! Tearing mappings down: `zap_pte_range` (munmap, exit, execve,
//! MADV_DONTNEED), `free_pgtables` (unlink_anon_vmas, then the page tables
//! that covered only the unmapped range) and the process-level operations.

use pgtable::{EntryKind, Level, Pfn};

use crate::errno::{Errno, SysResult};
use crate::error::MmError;
use crate::machine::{Machine, PAGE_SIZE, RmapResult, TASK_SIZE, page_align, rmap_res};
use crate::outcome::{Outcome, oops_as_outcome};
use crate::process::{Pid, Vma};
use crate::pte::pte_special;

impl Machine {
    /// `zap_pte_range` over `[start, end)` of one address space: present
    /// entries lose their page's mapping, the swap cache when nothing needs
    /// it any more (`free_swap_cache`) and their reference; swap entries
    /// lose their swap count (`free_swap_and_cache`).
    pub(crate) fn zap_range(&mut self, pml4: Pfn, start: u64, end: u64) -> Result<(), MmError> {
        let mut entries = Vec::new();
        self.for_each_pte(pml4, start, end, |va, pa, v| {
            entries.push((va, pa, v));
            Ok(())
        })?;
        for (_, slot, pte) in entries {
            match pgtable::decode(pte, Level::Pt, self.format)? {
                EntryKind::None => {}
                EntryKind::Swap(s) => {
                    self.write_slot(slot, 0)?;
                    self.free_swap_and_cache(crate::swap_state::swp_entry(s.swap_type, s.offset)?)?;
                }
                kind @ (EntryKind::Present(_) | EntryKind::ProtNone(_)) => {
                    self.write_slot(slot, 0)?;
                    if pte_special(pte) {
                        continue;
                    }
                    if let Some(pfn) = kind.pfn() {
                        self.rmap.page_remove_rmap(self.pages.get_mut(pfn)?)?;
                        // tlb_remove_page -> free_page_and_swap_cache (or the
                        // batched free_pages_and_swap_cache): the swap cache
                        // goes first while the zap still holds its reference,
                        // then that reference.
                        self.free_swap_cache(pfn)?;
                        self.put_page(pfn)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes VMAs `[addr, end)` (already split to these bounds) from a
    /// process: zap, then free_pgtables between the neighbours, then drop
    /// the VMAs from rmap (unlink_anon_vmas).
    fn unmap_region(&mut self, pid: Pid, addr: u64, end: u64) -> Result<Outcome<()>, MmError> {
        let (pml4, victims, floor, ceiling) = {
            let p = self.proc(pid)?;
            let victims: Vec<Vma> = p.vmas.range(addr..end).map(|(_, v)| *v).collect();
            let floor = p.vmas.range(..addr).next_back().map_or(0, |(_, v)| v.end);
            let ceiling = p.vmas.range(end..).next().map_or(0, |(_, v)| v.start);
            (p.pml4, victims, floor, ceiling)
        };
        if victims.is_empty() {
            return Ok(Outcome::Done(()));
        }
        {
            let p = self.proc_mut(pid)?;
            for v in &victims {
                p.vmas.remove(&v.start);
            }
        }
        for v in &victims {
            self.zap_range(pml4, v.start, v.end)?;
            self.flush_tlb_range(pid, v.start, v.end);
        }
        let mut oops = None;
        for v in &victims {
            self.vma_owner.remove(&v.id);
            if let RmapResult::Oops(o) = rmap_res(self.rmap.vma_remove(v.id))? {
                oops.get_or_insert(o);
            }
        }
        let first = victims.first().map_or(addr, |v| v.start);
        let last = victims.last().map_or(end, |v| v.end);
        self.free_pgd_range(pml4, first, last, floor, ceiling)?;
        Ok(match oops {
            Some(o) => Outcome::Oops(self.oops(&o, None)),
            None => Outcome::Done(()),
        })
    }

    /// munmap(addr, len), with Linux's errno (`do_vmi_munmap`, the same in
    /// every era): an unaligned address, a range reaching past
    /// [`TASK_SIZE`] or a zero length is EINVAL; the length is rounded up
    /// to whole pages; a range with nothing mapped succeeds. Unmapping the
    /// middle of a VMA (a split that leaves two) is ENOMEM when the process
    /// already has [`crate::MAX_MAP_COUNT`] VMAs, before anything changes.
    pub fn munmap(&mut self, pid: Pid, addr: u64, len: u64) -> Result<Outcome<SysResult>, MmError> {
        let p = self.proc(pid)?;
        if addr % PAGE_SIZE != 0 || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        }
        // len <= TASK_SIZE - addr, so rounding up cannot pass TASK_SIZE.
        let end = addr + page_align(len).unwrap_or(0);
        if end == addr {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        }
        if let Some(v) = p.vma_at(addr) {
            if v.start < addr && end < v.end && p.vmas.len() >= crate::machine::MAX_MAP_COUNT {
                return Ok(Outcome::Done(Err(Errno::ENOMEM)));
            }
        }
        if let o @ (Outcome::Oops(_) | Outcome::Segv(_)) = self.split_around(pid, addr, end)? {
            return Ok(o.map(Ok));
        }
        Ok(self.unmap_region(pid, addr, end)?.map(Ok))
    }

    /// madvise(addr, len, MADV_DONTNEED), with Linux's errno and partial
    /// effects (`do_madvise` and `madvise_walk_vmas`, the same rules in
    /// every era): an unaligned address is EINVAL, as is a length that
    /// wraps when rounded up or a range that wraps; a zero length succeeds
    /// with nothing done. The pages of every VMA in the range are zapped
    /// (VMAs and page tables stay, and DONTNEED splits nothing); a hole
    /// anywhere in the range (or nothing mapped at all) makes the result
    /// ENOMEM, after the zapping.
    pub fn madvise_dontneed(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
    ) -> Result<Outcome<SysResult>, MmError> {
        self.proc(pid)?;
        if addr % PAGE_SIZE != 0 {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        }
        let Some(alen) = page_align(len) else { return Ok(Outcome::Done(Err(Errno::EINVAL))) };
        let Some(end) = addr.checked_add(alen) else {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        };
        if end == addr {
            return Ok(Outcome::Done(Ok(())));
        }
        let (pml4, spans, hole) = {
            let p = self.proc(pid)?;
            let mut spans = Vec::new();
            let mut hole = false;
            let mut at = addr;
            while at < end {
                let Some(v) = p.find_vma(at) else {
                    hole = true;
                    break;
                };
                if v.start > at {
                    hole = true;
                    at = v.start;
                    if at >= end {
                        break;
                    }
                }
                let e = v.end.min(end);
                spans.push((at, e));
                at = e;
            }
            (p.pml4, spans, hole)
        };
        for (s, e) in spans {
            self.zap_range(pml4, s, e)?;
            self.flush_tlb_range(pid, s, e);
        }
        Ok(Outcome::Done(if hole { Err(Errno::ENOMEM) } else { Ok(()) }))
    }

    /// `exit_mmap`: every VMA unmapped, every table and the PML4 freed.
    fn exit_mmap(&mut self, pid: Pid) -> Result<Outcome<()>, MmError> {
        let r = self.unmap_region(pid, 0, crate::machine::TASK_SIZE)?;
        let pml4 = self.proc(pid)?.pml4;
        // free_pgd_range above freed every lower table; the PML4 goes with
        // the mm (pgd_free).
        self.free_table(pml4)?;
        Ok(r)
    }

    /// exit(): tear down the address space; the process is gone.
    pub fn exit(&mut self, pid: Pid) -> Result<Outcome<()>, MmError> {
        self.proc(pid)?;
        let r = self.exit_mmap(pid)?;
        self.procs.remove(&pid);
        Ok(r)
    }

    /// execve(): the old address space is torn down and replaced by an
    /// empty one (ptemu's new image maps nothing).
    pub fn execve(&mut self, pid: Pid) -> Result<Outcome<()>, MmError> {
        self.proc(pid)?;
        // bprm_mm_init allocates the new mm (and its PGD) before exec_mmap
        // drops the old one; reclaim under that allocation may oops, and
        // the execve ends there with the old address space intact.
        let new_pml4 = match oops_as_outcome(self.alloc_table(&[]).map(Outcome::Done))? {
            Outcome::Done(p) => p,
            Outcome::Oops(o) => return Ok(Outcome::Oops(o)),
            Outcome::Segv(s) => return Ok(Outcome::Segv(s)),
        };
        let r = self.exit_mmap(pid)?;
        self.proc_mut(pid)?.pml4 = new_pml4;
        Ok(r)
    }
}
