//! Processes and their VMAs: the emulator's `task_struct`/`mm_struct` and
//! `vm_area_struct`, reduced to what anonymous memory needs.

use std::collections::BTreeMap;

use pgtable::Pfn;
use rmap::VmaId;

use crate::prot::Prot;

/// A process id, unique for the machine's lifetime (never reused).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Pid(pub u32);

impl core::fmt::Display for Pid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An anonymous private mapping `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vma {
    /// First address (page aligned).
    pub start: u64,
    /// One past the last address (page aligned).
    pub end: u64,
    /// Its protection.
    pub prot: Prot,
    /// vm_pgoff: the linear page index of `start` (for anonymous mappings,
    /// `start >> 12` when created; kept by splits, as Linux keeps it).
    pub pgoff: u64,
    /// rmap's name for this VMA.
    pub id: VmaId,
    /// VM_ACCOUNT: the mapping is charged to the overcommit accounting
    /// (set by mmap of a writable private mapping and by mprotect making
    /// one writable). Part of vm_flags, so VMAs that differ in it never
    /// merge, though /proc/PID/maps shows the same perms for both.
    pub account: bool,
}

impl Vma {
    /// Number of pages.
    pub const fn pages(&self) -> u64 {
        (self.end - self.start) >> 12
    }

    /// Whether `addr` lies inside.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// `linear_page_index(vma, addr)`.
    pub const fn linear_page_index(&self, addr: u64) -> u64 {
        ((addr - self.start) >> 12) + self.pgoff
    }
}

/// A process: an address space (a PML4 in physical memory) and its VMAs.
#[derive(Clone, Debug)]
pub struct Process {
    /// Its id.
    pub pid: Pid,
    /// The parent's id, for processes made by fork.
    pub parent: Option<Pid>,
    /// Frame of the PML4 (what CR3 holds).
    pub pml4: Pfn,
    /// VMAs by start address.
    pub vmas: BTreeMap<u64, Vma>,
}

impl Process {
    /// The VMA containing `addr` (Linux's find_vma plus the start check).
    /// Inlinable: every fault looks its VMA up.
    #[inline]
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// Linux's `find_vma`: the first VMA that ends above `addr` (it may
    /// start above `addr` too).
    pub fn find_vma(&self, addr: u64) -> Option<&Vma> {
        self.vma_at(addr).or_else(|| self.vmas.range(addr..).next().map(|(_, v)| v))
    }
}
