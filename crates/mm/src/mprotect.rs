//! mprotect: `mprotect_fixup` (split the VMAs at the bounds, set the new
//! protection) and `change_pte_range` (`pte_modify` of every present or
//! PROT_NONE entry; swap entries are left alone).
//!
//! 6.18 also makes an exclusive anonymous page writable at once when the
//! VMA becomes writable (`can_change_pte_writable`); the 2.6.x eras leave
//! it read-only and let the next write fault reuse it.

use pgtable::Level;
use phys::PageFlags;

use crate::error::MmError;
use crate::machine::Machine;
use crate::outcome::Outcome;
use crate::process::Pid;
use crate::prot::Prot;
use crate::pte::{RW, pte_modify, pte_special, pte_write};

impl Machine {
    /// mprotect(addr, len, prot). The whole range must be mapped (Linux's
    /// ENOMEM otherwise, reported as an error before anything changes).
    pub fn mprotect(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<Outcome<()>, MmError> {
        let end = Self::check_range(addr, len)?;
        {
            let p = self.proc(pid)?;
            let mut at = addr;
            while at < end {
                match p.vma_at(at) {
                    Some(v) => at = v.end,
                    None => {
                        return Err(MmError::BadAddress {
                            addr: at,
                            reason: "not mapped (mprotect)",
                        });
                    }
                }
            }
        }
        if let o @ (Outcome::Oops(_) | Outcome::Segv(_)) = self.split_around(pid, addr, end)? {
            return Ok(o);
        }
        let (pml4, targets) = {
            let p = self.proc_mut(pid)?;
            let mut targets = Vec::new();
            for v in p.vmas.range_mut(addr..end).map(|(_, v)| v) {
                v.prot = prot;
                targets.push(*v);
            }
            (p.pml4, targets)
        };
        let newprot = prot.vm_page_prot();
        for v in targets {
            let mut entries = Vec::new();
            self.for_each_pte(pml4, v.start, v.end, |va, pa, raw| {
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
                }
            }
        }
        Ok(Outcome::Done(()))
    }
}
