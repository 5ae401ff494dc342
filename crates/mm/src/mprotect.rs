//! mprotect: `mprotect_fixup` (split the VMAs at the bounds, set the new
//! protection) and `change_pte_range` (`pte_modify` of every present or
//! PROT_NONE entry; swap entries are left alone).
//!
//! 6.18 also makes an exclusive anonymous page writable at once when the
//! VMA becomes writable (`can_change_pte_writable`); the 2.6.x eras leave
//! it read-only and let the next write fault reuse it.

use pgtable::Level;
use phys::PageFlags;

use crate::errno::{Errno, SysResult};
use crate::error::MmError;
use crate::machine::{Machine, PAGE_SIZE, page_align};
use crate::outcome::Outcome;
use crate::process::{Pid, Vma};
use crate::prot::Prot;
use crate::pte::{RW, pte_modify, pte_special, pte_write};

impl Machine {
    /// mprotect(addr, len, prot), with Linux's errno and partial effects
    /// (`do_mprotect_pkey`, the same rules in every era):
    /// - an unaligned address is EINVAL, then a zero length succeeds with
    ///   nothing done; the length is rounded up to whole pages and a range
    ///   that wraps is ENOMEM;
    /// - the VMAs are changed in address order from `addr`: a hole (no VMA
    ///   at `addr`, a gap between two VMAs, or the range running past the
    ///   last VMA) stops the call with ENOMEM, and what was changed before
    ///   the hole stays changed;
    /// - a split that would take the process past [`crate::MAX_MAP_COUNT`]
    ///   VMAs is ENOMEM, at that VMA.
    pub fn mprotect(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<Outcome<SysResult>, MmError> {
        self.proc(pid)?;
        if addr % PAGE_SIZE != 0 {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        }
        if len == 0 {
            return Ok(Outcome::Done(Ok(())));
        }
        let Some(end) = page_align(len).and_then(|l| addr.checked_add(l)) else {
            return Ok(Outcome::Done(Err(Errno::ENOMEM)));
        };
        let mut at = addr;
        while at < end {
            // vma_find: the first VMA ending above `at`; it must start at
            // `at` exactly, or there is a hole.
            let Some(v) = self.proc(pid)?.find_vma(at).copied() else {
                return Ok(Outcome::Done(Err(Errno::ENOMEM)));
            };
            if v.start > at {
                return Ok(Outcome::Done(Err(Errno::ENOMEM)));
            }
            let tmp = v.end.min(end);
            match self.mprotect_fixup(pid, v, at, tmp, prot)? {
                Outcome::Done(Ok(())) => {}
                other => return Ok(other),
            }
            at = tmp;
        }
        Ok(Outcome::Done(Ok(())))
    }

    /// `mprotect_fixup` of `[start, end)` inside `vma`: nothing when the
    /// protection is already `prot`; else split at the bounds, set the
    /// protection and rewrite the entries (`change_protection`).
    fn mprotect_fixup(
        &mut self,
        pid: Pid,
        vma: Vma,
        start: u64,
        end: u64,
        prot: Prot,
    ) -> Result<Outcome<SysResult>, MmError> {
        // VM_ACCOUNT: charged when the mapping becomes writable; in 6.x
        // dropped again when it stops being writable before it ever had an
        // anon_vma (nothing was charged that a page uses).
        let account = if prot.writable() {
            true
        } else if vma.account
            && self.sem.mprotect_unaccounts_unfaulted
            && self.rmap.vma(vma.id)?.anon_vma.is_none()
        {
            false
        } else {
            vma.account
        };
        if vma.prot == prot && vma.account == account {
            return Ok(Outcome::Done(Ok(())));
        }
        // vma_modify_flags: merge with a neighbour if Linux would, else
        // split at the bounds and change the middle.
        match self.merge_existing_range(pid, vma, start, end, prot, account)? {
            Some(Outcome::Done(())) => {}
            Some(other) => return Ok(other.map(Ok)),
            None => {
                for at in [start, end] {
                    match self.split_vma_checked(pid, at)? {
                        Outcome::Done(Ok(())) => {}
                        other => return Ok(other),
                    }
                }
                let p = self.proc_mut(pid)?;
                let v = p.vmas.get_mut(&start).ok_or_else(|| {
                    MmError::bug("mprotect_fixup", format!("no VMA at {start:#x} after the split"))
                })?;
                v.prot = prot;
                v.account = account;
            }
        }
        let pml4 = self.proc(pid)?.pml4;
        if self.change_protection(pml4, start, end, prot)? {
            // flush_tlb_range after change_protection changed entries.
            self.flush_tlb_range(pid, start, end);
        }
        Ok(Outcome::Done(Ok(())))
    }

    /// `change_pte_range`: `pte_modify` of every present or PROT_NONE entry
    /// of `[start, end)`; swap entries are left alone. Whether an entry
    /// changed (and a TLB flush is due).
    fn change_protection(
        &mut self,
        pml4: pgtable::Pfn,
        start: u64,
        end: u64,
        prot: Prot,
    ) -> Result<bool, MmError> {
        let mut changed = false;
        let newprot = prot.vm_page_prot();
        let mut entries = Vec::new();
        self.for_each_pte(pml4, start, end, |va, pa, raw| {
            entries.push((va, pa, raw));
            Ok(())
        })?;
        for (_, slot, old) in entries {
            let kind = pgtable::decode(old, Level::Pt, self.format)?;
            if !kind.is_present() {
                continue;
            }
            let mut new = pte_modify(old, newprot, self.format);
            if self.sem.anon_exclusive
                && prot.writable()
                && !pte_write(new)
                && new & crate::pte::P != 0
            {
                // can_change_pte_writable: a private mapping may only
                // upgrade exclusive anonymous pages.
                let excl = !pte_special(new)
                    && kind.pfn().is_some_and(|pfn| {
                        self.pages.get(pfn).is_ok_and(|d| {
                            d.is_anon() && d.flags.contains(PageFlags::ANON_EXCLUSIVE)
                        })
                    });
                if excl {
                    new |= RW;
                }
            }
            if new != old {
                self.write_slot(slot, new)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}
