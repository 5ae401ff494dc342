//! Linux's introspection formats: /proc/PID/pagemap, /proc/kpagecount and
//! /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst), computed
//! from the emulated state so they can be compared with a real kernel's.
//!
//! Every era is shown in today's pagemap format (the 2.6.x pagemap had
//! page-shift bits where bits 55..61 now are); the values describe the
//! era's state.

use pgtable::{EntryKind, Level, Pfn};
use phys::PageFlags;

use crate::error::MmError;
use crate::machine::Machine;
use crate::process::Pid;
use crate::pte::pte_special;

/// pagemap bit 63: page present.
pub const PM_PRESENT: u64 = 1 << 63;
/// pagemap bit 62: page swapped.
pub const PM_SWAP: u64 = 1 << 62;
/// pagemap bit 61: file page or shared anon.
pub const PM_FILE: u64 = 1 << 61;
/// pagemap bit 57: userfaultfd write-protected.
pub const PM_UFFD_WP: u64 = 1 << 57;
/// pagemap bit 56: page exclusively mapped (mapcount == 1).
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
/// pagemap bit 55: soft-dirty.
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// pagemap bits 0..54: PFN, or swap type (0..4) and offset (5..54).
pub const PM_PFRAME_MASK: u64 = (1 << 55) - 1;

/// kpageflags bit numbers (include/uapi/linux/kernel-page-flags.h).
pub mod kpf {
    /// KPF_LOCKED.
    pub const LOCKED: u32 = 0;
    /// KPF_REFERENCED.
    pub const REFERENCED: u32 = 2;
    /// KPF_UPTODATE.
    pub const UPTODATE: u32 = 3;
    /// KPF_DIRTY.
    pub const DIRTY: u32 = 4;
    /// KPF_LRU.
    pub const LRU: u32 = 5;
    /// KPF_ACTIVE.
    pub const ACTIVE: u32 = 6;
    /// KPF_WRITEBACK.
    pub const WRITEBACK: u32 = 8;
    /// KPF_BUDDY.
    pub const BUDDY: u32 = 10;
    /// KPF_MMAP.
    pub const MMAP: u32 = 11;
    /// KPF_ANON.
    pub const ANON: u32 = 12;
    /// KPF_SWAPCACHE.
    pub const SWAPCACHE: u32 = 13;
    /// KPF_SWAPBACKED.
    pub const SWAPBACKED: u32 = 14;
    /// KPF_NOPAGE.
    pub const NOPAGE: u32 = 20;
    /// KPF_ZERO_PAGE.
    pub const ZERO_PAGE: u32 = 24;
    /// KPF_PGTABLE.
    pub const PGTABLE: u32 = 26;
    /// KPF_RESERVED (a "kernel hacking" flag, always reported).
    pub const RESERVED: u32 = 32;
    /// KPF_MAPPEDTODISK, a raw copy of PG_mappedtodisk; later 6.x kernels
    /// call the bit PG_owner_2 and this KPF_OWNER_2, same number. On an
    /// anon page it is PG_anon_exclusive (an alias since 5.19).
    pub const MAPPEDTODISK: u32 = 34;
    /// KPF_OWNER_PRIVATE, a raw copy of PG_owner_priv_1, which PG_swapcache
    /// aliases since 4.10 (2.6.x had a PG_swapcache bit of its own).
    pub const OWNER_PRIVATE: u32 = 37;
}

impl Machine {
    /// The u64 /proc/PID/pagemap holds for `addr` in `pid`.
    pub fn pagemap(&self, pid: Pid, addr: u64) -> Result<u64, MmError> {
        let p = self.proc(pid)?;
        if p.vma_at(addr).is_none() {
            return Ok(0);
        }
        let Some(slot) = self.pte_slot(p.pml4, addr & !0xfff)? else { return Ok(0) };
        let raw = self.read_slot(slot)?;
        let mut out = 0;
        match pgtable::decode(raw, Level::Pt, self.format)? {
            EntryKind::None => {}
            EntryKind::Swap(s) => {
                out |= PM_SWAP | ((s.swap_type as u64) | (s.offset << 5)) & PM_PFRAME_MASK;
                if s.soft_dirty {
                    out |= PM_SOFT_DIRTY;
                }
                if s.uffd_wp {
                    out |= PM_UFFD_WP;
                }
            }
            kind @ (EntryKind::Present(_) | EntryKind::ProtNone(_)) => {
                let pfn = kind.pfn().unwrap_or_default();
                out |= PM_PRESENT | (pfn.0 & PM_PFRAME_MASK);
                if raw & pgtable::EntryFlags::SOFT_DIRTY.bits() != 0 {
                    out |= PM_SOFT_DIRTY;
                }
                // vm_normal_page: the zero page (special) has no page.
                if !pte_special(raw) {
                    let d = self.pages.get(pfn)?;
                    if !d.is_anon() {
                        out |= PM_FILE;
                    }
                    if d.mapcount == 1 {
                        out |= PM_MMAP_EXCLUSIVE;
                    }
                }
            }
        }
        Ok(out)
    }

    fn check_pfn(&self, pfn: Pfn) -> Result<(), MmError> {
        if pfn.0 >= self.pages.len() {
            return Err(MmError::NoSuchFrame { pfn: pfn.0, frames: self.pages.len() });
        }
        Ok(())
    }

    /// The u64 /proc/kpagecount holds for `pfn`: the page's mapcount (0 for
    /// the zero page, whose special PTEs are not counted, and free frames).
    pub fn kpagecount(&self, pfn: Pfn) -> Result<u64, MmError> {
        self.check_pfn(pfn)?;
        let d = self.pages.get(pfn)?;
        if pfn == self.zero_pfn || d.flags.contains(PageFlags::BUDDY) {
            return Ok(0);
        }
        Ok(d.mapcount as u64)
    }

    /// The u64 /proc/kpageflags holds for `pfn`.
    pub fn kpageflags(&self, pfn: Pfn) -> Result<u64, MmError> {
        self.check_pfn(pfn)?;
        let d = self.pages.get(pfn)?;
        let f = d.flags;
        let bit = |b: u32| 1u64 << b;
        if f.contains(PageFlags::BUDDY) {
            return Ok(bit(kpf::BUDDY));
        }
        let mut out = 0;
        let map = [
            (PageFlags::LOCKED, kpf::LOCKED),
            (PageFlags::REFERENCED, kpf::REFERENCED),
            (PageFlags::UPTODATE, kpf::UPTODATE),
            (PageFlags::DIRTY, kpf::DIRTY),
            (PageFlags::LRU, kpf::LRU),
            (PageFlags::ACTIVE, kpf::ACTIVE),
            (PageFlags::WRITEBACK, kpf::WRITEBACK),
            (PageFlags::SWAPCACHE, kpf::SWAPCACHE),
            (PageFlags::SWAPBACKED, kpf::SWAPBACKED),
            (PageFlags::PGTABLE, kpf::PGTABLE),
            (PageFlags::RESERVED, kpf::RESERVED),
        ];
        for (flag, b) in map {
            if f.contains(flag) {
                out |= bit(b);
            }
        }
        if d.is_anon() {
            out |= bit(kpf::ANON);
        }
        if d.mapcount > 0 {
            out |= bit(kpf::MMAP);
        }
        if pfn == self.zero_pfn {
            out |= bit(kpf::ZERO_PAGE);
        }
        // 6.x keeps PG_swapcache in PG_owner_priv_1 and PG_anon_exclusive
        // in PG_mappedtodisk, and kpageflags reports the raw bits too (seen
        // on the host: a swap-cache page shows bit 37, an exclusive anon
        // page bit 34).
        if self.sem.anon_exclusive {
            if f.contains(PageFlags::SWAPCACHE) {
                out |= bit(kpf::OWNER_PRIVATE);
            }
            if f.contains(PageFlags::ANON_EXCLUSIVE) {
                out |= bit(kpf::MAPPEDTODISK);
            }
        }
        Ok(out)
    }
}
