//! Linux's anonymous reverse mapping for ptemu: anon_vma, anon_vma_chain,
//! the operations that build them at fault, fork and exit, the page-side
//! operations that decide which anon_vma a page's mapping names, and the
//! rmap walk from a page to its mappings, each as a chosen kernel era had
//! them ([`Era`], [`RmapSemantics`]).
//!
//! What it does not do: it never reads or writes page tables (the mm crate
//! walks them and calls in), and it knows nothing of swap or of the VMA
//! tree. It knows a VMA only by id, start address, page offset and length
//! ([`VmaRange`]); the caller passes neighbour candidates where the kernel
//! would consult the VMA tree.
//!
//! Objects, as in mm/rmap.c: a VMA's chain lists its links newest first; an
//! anon_vma keeps its links ordered by page-offset range (the interval
//! tree); anon_vmas live in an arena that behaves as the kernel's
//! SLAB_TYPESAFE_BY_RCU cache, so a page->mapping that outlived its
//! anon_vma is caught and reported as an [`Oops`] rather than followed.
//!
//! Typical use by mm:
//! - mmap: [`Rmap::vma_register`]; first anonymous fault:
//!   [`Rmap::anon_vma_prepare`] then [`Rmap::page_add_new_anon_rmap`];
//! - fork: [`Rmap::anon_vma_fork`] per private VMA;
//! - swap-in: [`Rmap::page_add_anon_rmap`]; reclaim: [`Rmap::rmap_walk`];
//! - munmap/exit: [`Rmap::page_remove_rmap`] per PTE, then
//!   [`Rmap::vma_remove`] (unlink_anon_vmas).
#![forbid(unsafe_code)]

pub mod anon_vma;
mod dump;
pub mod era;
pub mod error;
pub mod handle;
mod page_rmap;
pub mod rmap;
pub mod walk;

pub use anon_vma::{
    AnonVma, AnonVmaChain, AnonVmaId, AvcId, LinkKey, PAGE_SIZE, VmaId, VmaRange, VmaRmap,
};
pub use era::{
    CloneOrder, Era, FirstMapAnonVma, ForkReuse, PrepareReuse, RmapSemantics, SwapPteFormat,
};
pub use error::{Oops, OopsKind, RmapError};
pub use handle::AnonVmaHandle;
pub use page_rmap::NewAnonTarget;
pub use rmap::Rmap;
pub use walk::RmapHit;
