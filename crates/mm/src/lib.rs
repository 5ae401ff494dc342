//! Linux's anonymous-memory paths over ptemu's hardware-format page tables.
//!
//! A [`Machine`] owns physical memory (phys), swap devices with their swap
//! cache, the anon_vma rmap (rmap) and processes. Processes own a PML4 in
//! that memory and anonymous private VMAs; user reads and writes go through
//! pgtable's hardware walk in user mode, and a #PF goes to the emulated
//! kernel's handler: `do_anonymous_page`, `do_wp_page`, `do_swap_page`.
//! fork (`dup_mmap`/`copy_page_range`), exit and munmap (`zap_pte_range`,
//! `free_pgtables`), mprotect, MADV_DONTNEED and reclaim (`add_to_swap`,
//! `try_to_unmap`, `pageout`) write exactly the entries Linux writes in the
//! era selected ([`rmap::Era`]): the classic swap/PROT_NONE layouts in the
//! 2.6.x eras, the L1TF-hardened ones with the exclusive bit in 6.18.
//!
//! The checker ([`Machine::check`]) reports every broken invariant under
//! the scenario language's names; [`Machine::pagemap`],
//! [`Machine::kpagecount`] and [`Machine::kpageflags`] show the state in
//! Linux's /proc formats, and [`Machine::maps`] the VMAs as /proc/PID/maps
//! lists them. SIGSEGV and oopses are [`Outcome`]s, not errors: the machine
//! stays usable after either. mmap, munmap, mprotect and madvise return a
//! [`SysResult`]: Linux's errno, with Linux's partial effects, where Linux's
//! call would fail ([`Errno`]); the machine goes on after that too.
//!
//! # What each era does where
//!
//! | point | 2.6.33 | 2.6.34-rc3 / seed / 2.6.34 / 2.6.36 | 6.18 |
//! |---|---|---|---|
//! | read fault on none | zero page, `pte_mkspecial`: `0x8000000000000225`\|pfn (rx: no NX) | same | same |
//! | write fault on none | new zeroed page `0x8000000000000067`\|pfn, LRU active | same | same, LRU inactive, PageAnonExclusive |
//! | write to read-only anon page | reuse if `reuse_swap_page` (mapcount + swap count <= 1), no mapping move | reuse as 2.6.33 plus `page_move_anon_rmap` | reuse if PageAnonExclusive or refcount 1 after freeing an unneeded swap cache (`wp_can_reuse_anon_folio`) |
//! | reuse PTE | orig \| A \| D \| RW | same | same |
//! | copy PTE | new page `0x8000000000000067`\|pfn | same | same |
//! | fork, present | both RW cleared, child A cleared, mapcount/refcount +1 | same | same, PageAnonExclusive cleared |
//! | fork, swap | `swap_duplicate` | same | same, exclusive bit cleared in parent and child |
//! | reclaim | swap PTE classic (type bits 1..5, offset from bit 9) | same | L1TF layout, exclusive bit when PageAnonExclusive |
//! | swap-in, read | `0x8000000000000025`\|pfn, swap cache kept unless swap > half full | same | writable (not dirty) and exclusive if the swap PTE was exclusive or nobody else holds the page |
//! | swap-in, write | reuse_swap_page: dirty, writable, swap cache dropped | same | swap cache dropped when only it and the fault hold the page; dirty, writable, exclusive |
//! | first mapping's anon_vma | rmap's era switch ([`rmap::FirstMapAnonVma`]) | | |
//! | mprotect(PROT_NONE) | `pte_modify`: pfn \| A \| D \| PROTNONE (0x160) | same | pfn stored inverted (L1TF) |
//! | mprotect back to rw | read-only until the next write fault | same | exclusive anon pages made writable at once |
//! | VMA merge ([`vma_merge`]) | equal flags, anon_vmas: one side none or both the same | same | as 2.6.x, but a fork child's VMA (chain > 1) never joins one without anon_vma; mprotect to read-only drops VM_ACCOUNT before the first fault |
//!
//! What it does not do: file mappings, shared anonymous mappings, huge
//! pages, swap readahead, NUMA hinting, KSM, mlock.
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod errno;
pub mod error;
mod fault;
mod fork;
pub mod inspect;
pub mod machine;
pub mod maps;
mod mprotect;
pub mod outcome;
pub mod process;
pub mod prot;
mod pte;
pub mod reclaim;
pub mod swap_state;
mod table;
pub mod tlb;
mod unmap;
pub mod views;
pub mod vma_merge;

pub use check::{InvariantKind, Subject, Violation};
pub use config::MachineConfig;
pub use errno::{Errno, SysResult, sys_result_text};
pub use error::MmError;
pub use inspect::{AnonVmaView, AvcView, MappedPte, MappingView, PteView, SlotView, WalkEntry};
pub use machine::{MAX_MAP_COUNT, Machine, PAGE_SIZE, TASK_SIZE};
pub use maps::MapsEntry;
pub use outcome::{Oops, OopsKind, Outcome, Segv, SegvCode};
pub use process::{Pid, Process, Vma};
pub use prot::Prot;
pub use reclaim::{ReclaimResult, WalkHit};
pub use rmap::{Era, RmapSemantics};
pub use swap_state::SwpEntry;
pub use tlb::TlbFlush;
