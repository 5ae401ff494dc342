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
//! Linux's /proc formats. SIGSEGV and oopses are [`Outcome`]s, not errors:
//! the machine stays usable after either.
//!
//! What it does not do: file mappings, shared anonymous mappings, huge
//! pages, VMA merging, swap readahead, NUMA hinting, KSM, mlock.
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod error;
mod fault;
mod fork;
pub mod inspect;
pub mod machine;
mod mprotect;
pub mod outcome;
pub mod process;
pub mod prot;
mod pte;
pub mod reclaim;
pub mod swap_state;
mod table;
mod unmap;
pub mod views;

pub use check::{InvariantKind, Subject, Violation};
pub use config::MachineConfig;
pub use error::MmError;
pub use inspect::{AnonVmaView, PteView, SlotView};
pub use machine::{Machine, TASK_SIZE};
pub use outcome::{Oops, OopsKind, Outcome, Segv, SegvCode};
pub use process::{Pid, Process, Vma};
pub use prot::Prot;
pub use reclaim::{ReclaimResult, WalkHit};
pub use rmap::{Era, RmapSemantics};
pub use swap_state::SwpEntry;
