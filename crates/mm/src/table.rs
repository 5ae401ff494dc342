//! Linux's page-table plumbing for user address spaces: finding a PTE slot,
//! allocating the tables above it (`__pte_alloc` and friends, with the
//! `_PAGE_TABLE` = 0x67 entries Linux writes), and freeing tables when a
//! range is unmapped (`free_pgd_range`, with its floor/ceiling rules).
//!
//! Table frames come from the machine's buddy allocator and carry
//! PG_pgtable (kpageflags PGTABLE) while in use.

use pgtable::entry::{ADDR_MASK, USER_TABLE_FLAGS};
use pgtable::{Level, Pfn, PhysAddr};
use phys::PageFlags;

use crate::error::MmError;
use crate::machine::Machine;
use crate::pte::P;

const PMD_SIZE: u64 = 1 << 21;
const PUD_SIZE: u64 = 1 << 30;
const PGDIR_SIZE: u64 = 1 << 39;

pub(crate) fn slot_pa(table: Pfn, idx: usize) -> PhysAddr {
    Pfn(table.0).addr().checked_add(idx as u64 * 8).unwrap_or(table.addr())
}

/// The slot `i` entries after `first` in the same table.
pub(crate) fn slot_add(first: PhysAddr, i: usize) -> PhysAddr {
    first.checked_add(i as u64 * 8).unwrap_or(first)
}

fn index(va: u64, level: Level) -> usize {
    ((va >> level.shift()) & 0x1ff) as usize
}

/// `*_addr_end`: the next boundary of `size` after `addr`, or `end`.
fn addr_end(addr: u64, end: u64, size: u64) -> u64 {
    let boundary = (addr.wrapping_add(size)) & !(size - 1);
    if boundary.wrapping_sub(1) < end.wrapping_sub(1) { boundary } else { end }
}

impl Machine {
    #[inline(always)]
    pub(crate) fn read_slot(&self, pa: PhysAddr) -> Result<u64, MmError> {
        Ok(self.mem.load(pa)?)
    }

    #[inline(always)]
    pub(crate) fn write_slot(&self, pa: PhysAddr, v: u64) -> Result<(), MmError> {
        Ok(self.mem.store(pa, v)?)
    }

    /// The lower table an upper-level entry points at, if it is present.
    fn next_table(&self, table: Pfn, idx: usize) -> Result<Option<Pfn>, MmError> {
        let e = self.read_slot(slot_pa(table, idx))?;
        if e & P == 0 {
            return Ok(None);
        }
        Ok(Some(Pfn((e & ADDR_MASK) >> 12)))
    }

    /// The physical address of the PTE for `va`, if every table above it
    /// exists (`pte_offset_map` after the upper levels' `*_none` checks).
    pub(crate) fn pte_slot(&self, pml4: Pfn, va: u64) -> Result<Option<PhysAddr>, MmError> {
        let mut table = pml4;
        for level in [Level::Pml4, Level::Pdpt, Level::Pd] {
            match self.next_table(table, index(va, level))? {
                Some(t) => table = t,
                None => return Ok(None),
            }
        }
        Ok(Some(slot_pa(table, index(va, Level::Pt))))
    }

    /// A zeroed table frame marked PG_pgtable (`pagetable_alloc`).
    pub(crate) fn alloc_table(&mut self, busy: &[Pfn]) -> Result<Pfn, MmError> {
        let pfn = self.alloc_frame("allocating a page table", busy)?;
        // Not linked into any table yet, so nothing else can see it: the
        // bulk zero of an exclusively owned frame applies.
        self.mem.zero_frame_exclusive(pfn)?;
        self.pages.get_mut(pfn)?.flags.insert(PageFlags::PGTABLE);
        Ok(pfn)
    }

    /// Frees a table frame (`pagetable_free`).
    pub(crate) fn free_table(&mut self, pfn: Pfn) -> Result<(), MmError> {
        self.pages.get_mut(pfn)?.flags.remove(PageFlags::PGTABLE);
        self.frames.free(pfn, 0, &mut self.pages)?;
        Ok(())
    }

    /// The PTE slot for `va`, allocating the PDPT, PD and PT on the way as
    /// `__pud_alloc`, `__pmd_alloc` and `__pte_alloc` do. Inlined: every
    /// fault runs it, and its three table reads are ~40 instructions
    /// against ~25 for a call and its result.
    #[inline(always)]
    pub(crate) fn pte_alloc(
        &mut self,
        pml4: Pfn,
        va: u64,
        busy: &[Pfn],
    ) -> Result<PhysAddr, MmError> {
        let mut table = pml4;
        for level in [Level::Pml4, Level::Pdpt, Level::Pd] {
            let idx = index(va, level);
            table = match self.next_table(table, idx)? {
                Some(t) => t,
                None => self.install_table(table, idx, busy)?,
            };
        }
        Ok(slot_pa(table, index(va, Level::Pt)))
    }

    /// A new lower table linked in at entry `idx` of `table` (the
    /// allocating half of `pte_alloc`, out of line).
    #[inline(never)]
    fn install_table(&mut self, table: Pfn, idx: usize, busy: &[Pfn]) -> Result<Pfn, MmError> {
        let t = self.alloc_table(busy)?;
        self.write_slot(slot_pa(table, idx), t.addr().as_u64() | USER_TABLE_FLAGS.bits())?;
        Ok(t)
    }

    /// `free_pgd_range`: frees the page tables that map only `[addr, end)`,
    /// given that nothing is mapped below `floor` and above `ceiling`
    /// (0 = the top) by anyone else. The range must already be zapped.
    pub(crate) fn free_pgd_range(
        &mut self,
        pml4: Pfn,
        mut addr: u64,
        mut end: u64,
        floor: u64,
        ceiling: u64,
    ) -> Result<(), MmError> {
        addr &= !(PMD_SIZE - 1);
        if addr < floor {
            addr = addr.wrapping_add(PMD_SIZE);
            if addr == 0 {
                return Ok(());
            }
        }
        let mut ceil = ceiling;
        if ceil != 0 {
            ceil &= !(PMD_SIZE - 1);
            if ceil == 0 {
                return Ok(());
            }
        }
        if end.wrapping_sub(1) > ceil.wrapping_sub(1) {
            end = end.wrapping_sub(PMD_SIZE);
        }
        if addr > end.wrapping_sub(1) {
            return Ok(());
        }
        loop {
            let next = addr_end(addr, end, PGDIR_SIZE);
            let idx = index(addr, Level::Pml4);
            if let Some(pdpt) = self.next_table(pml4, idx)? {
                self.free_pud_range(pml4, idx, pdpt, addr, next, floor, ceiling)?;
            }
            addr = next;
            if addr == end {
                return Ok(());
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn free_pud_range(
        &mut self,
        pml4: Pfn,
        pml4_idx: usize,
        pdpt: Pfn,
        mut addr: u64,
        end: u64,
        floor: u64,
        ceiling: u64,
    ) -> Result<(), MmError> {
        let start = addr;
        loop {
            let next = addr_end(addr, end, PUD_SIZE);
            let idx = index(addr, Level::Pdpt);
            if let Some(pd) = self.next_table(pdpt, idx)? {
                self.free_pmd_range(pdpt, idx, pd, addr, next, floor, ceiling)?;
            }
            addr = next;
            if addr == end {
                break;
            }
        }
        if !upper_table_free(start, end, floor, ceiling, PGDIR_SIZE) {
            return Ok(());
        }
        self.write_slot(slot_pa(pml4, pml4_idx), 0)?;
        self.free_table(pdpt)
    }

    #[allow(clippy::too_many_arguments)]
    fn free_pmd_range(
        &mut self,
        pdpt: Pfn,
        pdpt_idx: usize,
        pd: Pfn,
        mut addr: u64,
        end: u64,
        floor: u64,
        ceiling: u64,
    ) -> Result<(), MmError> {
        let start = addr;
        loop {
            let next = addr_end(addr, end, PMD_SIZE);
            let idx = index(addr, Level::Pd);
            if let Some(pt) = self.next_table(pd, idx)? {
                // free_pte_range: the PT maps only the range; clear and free.
                self.write_slot(slot_pa(pd, idx), 0)?;
                self.free_table(pt)?;
            }
            addr = next;
            if addr == end {
                break;
            }
        }
        if !upper_table_free(start, end, floor, ceiling, PUD_SIZE) {
            return Ok(());
        }
        self.write_slot(slot_pa(pdpt, pdpt_idx), 0)?;
        self.free_table(pd)
    }

    /// Every table frame reachable from `pml4` (the PML4 included), with
    /// its level, in address order.
    pub(crate) fn tables_of(&self, pml4: Pfn) -> Result<Vec<(Level, Pfn, u64)>, MmError> {
        let mut out = vec![(Level::Pml4, pml4, 0)];
        let mut stack = vec![(Level::Pml4, pml4, 0u64)];
        while let Some((level, table, base)) = stack.pop() {
            let Some(lower) = level.next_lower() else { continue };
            for idx in (0..512usize).rev() {
                if let Some(t) = self.next_table(table, idx)? {
                    let va = base | ((idx as u64) << level.shift());
                    out.push((lower, t, va));
                    stack.push((lower, t, va));
                }
            }
        }
        out.sort_by_key(|&(l, _, va)| (va, std::cmp::Reverse(l)));
        Ok(out)
    }

    /// Calls `f(va, slot, raw)` for every non-zero PTE in `[start, end)`,
    /// descending only into tables that exist.
    pub(crate) fn for_each_pte(
        &self,
        pml4: Pfn,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, PhysAddr, u64) -> Result<(), MmError>,
    ) -> Result<(), MmError> {
        let mut addr = start;
        while addr < end {
            let pmd_end = addr_end(addr, end, PMD_SIZE);
            let mut table = Some(pml4);
            for level in [Level::Pml4, Level::Pdpt, Level::Pd] {
                table = match table {
                    Some(t) => self.next_table(t, index(addr, level))?,
                    None => None,
                };
            }
            if let Some(pt) = table {
                let mut a = addr;
                while a < pmd_end {
                    let pa = slot_pa(pt, index(a, Level::Pt));
                    let v = self.read_slot(pa)?;
                    if v != 0 {
                        f(a, pa, v)?;
                    }
                    a += 4096;
                }
            }
            addr = pmd_end;
        }
        Ok(())
    }
}

/// The floor/ceiling test of `free_pud_range`/`free_pmd_range`: whether
/// the table covering `size`-aligned span around `start..end` lies wholly
/// inside `[floor, ceiling)`.
fn upper_table_free(start: u64, end: u64, floor: u64, ceiling: u64, size: u64) -> bool {
    let start = start & !(size - 1);
    if start < floor {
        return false;
    }
    let mut ceil = ceiling;
    if ceil != 0 {
        ceil &= !(size - 1);
        if ceil == 0 {
            return false;
        }
    }
    end.wrapping_sub(1) <= ceil.wrapping_sub(1)
}
