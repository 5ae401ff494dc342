//! The rmap objects: anon_vma, anon_vma_chain, and what rmap knows of a VMA.
//!
//! Relationships, as in mm/rmap.c: a VMA's chain lists one anon_vma_chain
//! (AVC) per anon_vma the VMA is linked to, newest first, so the last link
//! is the oldest ancestor (when the clone order is right). An anon_vma keeps
//! the same AVCs ordered by the linked VMA's page-offset range, as the
//! kernel's interval tree does, so a walk finds the VMAs covering an index.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use crate::error::RmapError;
use crate::handle::AnonVmaHandle;

/// Page size the emulated kernel uses.
pub const PAGE_SIZE: u64 = 4096;

/// A VMA's identity, chosen by the caller (the mm crate).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct VmaId(pub u64);

impl fmt::Display for VmaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vma{}", self.0)
    }
}

/// The stable display identity of an anon_vma ("av3"): the order in which
/// the rmap allocated it, starting at 1. Unlike a handle it never repeats.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AnonVmaId(pub u64);

impl fmt::Display for AnonVmaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "av{}", self.0)
    }
}

/// The identity of one anon_vma_chain link ("avc7"), in allocation order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AvcId(pub u64);

impl fmt::Display for AvcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "avc{}", self.0)
    }
}

/// What rmap needs of a VMA's placement: start address, page offset
/// (vm_pgoff) and length in pages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VmaRange {
    start: u64,
    pgoff: u64,
    pages: u64,
}

impl VmaRange {
    /// A range of `pages` pages at `start` whose first page has page offset
    /// `pgoff`. `start` must be page aligned, `pages` non-zero, and neither
    /// the address range nor the offset range may overflow.
    pub fn new(start: u64, pgoff: u64, pages: u64) -> Result<Self, RmapError> {
        let bad = |reason| RmapError::BadRange { start, pgoff, pages, reason };
        if start % PAGE_SIZE != 0 {
            return Err(bad("start is not page aligned"));
        }
        if pages == 0 {
            return Err(bad("no pages"));
        }
        pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| start.checked_add(len))
            .ok_or_else(|| bad("end address overflows"))?;
        pgoff.checked_add(pages - 1).ok_or_else(|| bad("page offset range overflows"))?;
        Ok(Self { start, pgoff, pages })
    }

    /// First address (vm_start).
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// One past the last address (vm_end).
    pub const fn end(&self) -> u64 {
        self.start + self.pages * PAGE_SIZE
    }

    /// Page offset of the first page (vm_pgoff).
    pub const fn pgoff(&self) -> u64 {
        self.pgoff
    }

    /// Length in pages.
    pub const fn pages(&self) -> u64 {
        self.pages
    }

    /// Page offset of the last page (the interval tree's "last" key).
    pub const fn pgoff_last(&self) -> u64 {
        self.pgoff + self.pages - 1
    }

    /// linear_page_index: the page offset of `address`, if inside the VMA.
    /// Inlinable: every fault that maps a page computes it.
    #[inline]
    pub fn linear_page_index(&self, address: u64) -> Option<u64> {
        (self.start..self.end())
            .contains(&address)
            .then(|| self.pgoff + (address - self.start) / PAGE_SIZE)
    }

    /// vma_address: where page offset `index` sits in the VMA, if it does.
    pub fn address_of(&self, index: u64) -> Option<u64> {
        (self.pgoff..=self.pgoff_last())
            .contains(&index)
            .then(|| self.start + (index - self.pgoff) * PAGE_SIZE)
    }

    /// Whether `next` directly follows this range in both address and page
    /// offset, the placement half of the kernel's anon_vma_compatible.
    pub fn is_followed_by(&self, next: &VmaRange) -> bool {
        self.end() == next.start && self.pgoff.checked_add(self.pages) == Some(next.pgoff)
    }
}

/// Key of a link in an anon_vma's interval set: ordered as the interval
/// tree orders its nodes (by the VMA's first page offset, then last), with
/// the VMA and AVC ids making each key unique and the order total.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LinkKey {
    /// First page offset of the linked VMA.
    pub pgoff_start: u64,
    /// Last page offset of the linked VMA.
    pub pgoff_last: u64,
    /// The linked VMA.
    pub vma: VmaId,
    /// The link.
    pub avc: AvcId,
}

/// struct anon_vma.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AnonVma {
    /// Display identity.
    pub id: AnonVmaId,
    /// The oldest anon_vma of this fork family (itself for a root). Eras
    /// before 2.6.36 had no such pointer; rmap still records it so dumps can
    /// show the family, but only eras with `root_pinned` use it.
    pub root: AnonVmaHandle,
    /// The anon_vma this one was forked from (None for a root). The kernel
    /// added the pointer in 7a3ef208e662 for fork-time reuse.
    pub parent: Option<AnonVmaHandle>,
    /// References other than chain links: get_anon_vma pins and, in eras
    /// with `root_pinned`, one per descendant anon_vma for its root. The
    /// anon_vma is freed when this is zero and no link is left.
    pub refcount: u32,
    /// 7a3ef208e662's degree: VMAs using this as their anon_vma plus child
    /// anon_vmas (a root counts itself once). Kept only under
    /// `ForkReuse::Degree`.
    pub degree: u32,
    /// 2555283eb40d's num_children (a root counts itself once). Kept only
    /// under `ForkReuse::NumChildrenActiveVmas`.
    pub num_children: u32,
    /// 2555283eb40d's num_active_vmas: VMAs whose anon_vma this is. Kept
    /// only under `ForkReuse::NumChildrenActiveVmas`.
    pub num_active_vmas: u32,
    pub(crate) links: BTreeSet<LinkKey>,
}

impl AnonVma {
    /// The chain links, in interval order.
    pub fn links(&self) -> impl Iterator<Item = &LinkKey> {
        self.links.iter()
    }

    /// Number of chain links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Whether this anon_vma is its family's root.
    pub fn is_root(&self, own: AnonVmaHandle) -> bool {
        self.root == own
    }
}

/// struct anon_vma_chain: one link between a VMA and an anon_vma.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AnonVmaChain {
    /// Identity.
    pub id: AvcId,
    /// The VMA end of the link.
    pub vma: VmaId,
    /// The anon_vma end of the link.
    pub anon_vma: AnonVmaHandle,
}

/// What rmap keeps per VMA: its placement, vma->anon_vma and its chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmaRmap {
    /// Placement.
    pub range: VmaRange,
    /// vma->anon_vma: where this VMA's own new pages go.
    pub anon_vma: Option<AnonVmaHandle>,
    /// vma->vm_mm: the address space the VMA belongs to, as a word the
    /// caller chose ([`crate::Rmap::vma_set_mm`]; 0 until set). rmap never
    /// reads it; an rmap walk hands it on with each hit, so that the
    /// caller reaches the VMA's page tables as page_vma_mapped_walk does,
    /// through the VMA itself.
    pub mm: u64,
    pub(crate) chain: VecDeque<AvcId>,
}

impl VmaRmap {
    /// The chain, newest link first.
    pub fn chain(&self) -> impl Iterator<Item = AvcId> + '_ {
        self.chain.iter().copied()
    }
}
