//! x86-64 4-level paging in hardware format, over any physical memory.
//!
//! This crate is what a CPU emulator embeds: address types, every entry bit
//! of every level, Linux's encodings of non-present entries (swap entries,
//! PROT_NONE), the hardware walk with its permission checks, #PF error codes
//! and Accessed/Dirty updates, and a range mapper driven by one generic walker.
//!
//! Where things are:
//! - [`addr`]: `VirtAddr` (canonical), `PhysAddr`, `Pfn`, per-level indices,
//!   `FrameKey` (a frame XOR its virtual page: a TLB's answer in one word).
//! - [`entry`]: [`EntryFlags`] (every bit), frame masks, reserved bits per
//!   level and MAXPHYADDR.
//! - [`entry_kind`]: [`decode`] / [`encode`] — the one place that decides
//!   none / present / swap / PROT_NONE, in Linux's classic (2.6.x) or L1TF
//!   layout ([`EntryFormat`]).
//! - [`walk`]: [`translate`], the CPU's walk (checks, error code, A/D).
//! - [`mod@lookup`]: [`fn@lookup`] / [`entry_at`], the side-effect-free fast path.
//! - [`range_walk`]: [`walk_range`], the generic walker, and its [`Visitor`].
//! - [`mapper`]: map / unmap / protect / iteration / `pte_alloc`, each a
//!   visitor of `walk_range`.
//! - [`mem`]: the [`PhysMem`] and [`FrameSource`] traits and simple
//!   implementations ([`FrameMem`], a byte slice, [`BumpFrames`]).
//!
//! It deliberately knows nothing of processes, VMAs, page descriptors or
//! Linux's policies (when to COW, what to swap): it reads and writes 64-bit
//! words through [`PhysMem`], gets table frames from a [`FrameSource`], and
//! leaves the meaning of a non-present entry to [`decode`]. It does not
//! model TLBs, 5-level paging, shadow stacks, or huge-page splitting (a
//! range that covers part of a huge entry is refused, not split).
//!
//! ```
//! use ptemu_pgtable::{
//!     Access, BumpFrames, CpuState, EntryFlags, EntryFormat, EntryKind, FrameMem,
//!     PageSize, Pfn, PhysMem, SwapPte, VirtAddr, decode, encode_swap, entry_at, map, new_root,
//!     pte_alloc, translate,
//! };
//!
//! let mut mem = FrameMem::new(16);
//! let mut frames = BumpFrames::new(Pfn(1), Pfn(16));
//! let cr3 = new_root(&mut mem, &mut frames)?;
//! let flags = EntryFlags::PRESENT | EntryFlags::WRITABLE | EntryFlags::USER;
//! let va = VirtAddr::new(0x7f00_0000_1000)?;
//! map(&mut mem, &mut frames, cr3, va, Pfn(0x1234), PageSize::Size4K, flags)?;
//!
//! // The CPU's view: a user write sets Accessed and Dirty.
//! let t = translate(&mut mem, cr3, va, Access::Write, &CpuState::default())?;
//! assert_eq!(t.pa.as_u64(), 0x123_4000);
//! assert_eq!(t.leaf_entry & 0x60, 0x60);
//!
//! // Linux's view: swap the page out, and the PTE becomes a swap entry.
//! let swp = SwapPte { swap_type: 0, offset: 1, ..SwapPte::default() };
//! let pte = pte_alloc(&mut mem, &mut frames, cr3, va)?;
//! mem.write_u64(pte, encode_swap(swp, EntryFormat::L1tf)?)?;
//! let raw = entry_at(&mem, cr3, va)?.entry;
//! assert_eq!(raw, 0x07FF_FFFF_FFFF_FC00);
//! assert_eq!(decode(raw, ptemu_pgtable::Level::Pt, EntryFormat::L1tf)?, EntryKind::Swap(swp));
//! let fault = translate(&mut mem, cr3, va, Access::Read, &CpuState::default());
//! assert_eq!(fault.err().and_then(|f| f.page_fault()).map(|pf| pf.error_code.bits()), Some(0x4));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Without std
//!
//! With `default-features = false` the crate is `#![no_std]` and needs no
//! allocator: everything above except [`FrameMem`], [`BumpFrames`], the
//! `PhysMem` impl for `Vec<u8>` and [`entry::flag_names`], which come back
//! with the `alloc` feature (`std`, the default, implies it). The embedder
//! supplies [`PhysMem`] (its guest memory) and, for the mapper, a
//! [`FrameSource`].
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod addr;
pub mod entry;
pub mod entry_kind;
pub mod error;
pub mod lookup;
pub mod mapper;
pub mod mem;
pub mod range_walk;
pub mod walk;

pub use addr::{ENTRIES_PER_TABLE, FrameKey, PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
pub use entry::{EntryFlags, USER_TABLE_FLAGS};
pub use entry_kind::{
    EntryFormat, EntryKind, PresentEntry, ProtNoneEntry, SwapPte, decode, encode, encode_swap,
};
pub use error::{AddrError, EntryError, Fault, MapError, MemError};
pub use lookup::{Leaf, entry_at, lookup};
pub use mapper::{
    EntryVisit, for_each_entry, for_each_leaf, free_empty_tables, map, map_range, new_root,
    protect, pte_alloc, unmap,
};
#[cfg(feature = "alloc")]
pub use mem::{BumpFrames, FrameMem};
pub use mem::{Frame, FrameSource, PhysMem, zero_frame};
pub use range_walk::{Action, Slot, SlotClass, VaRange, Visitor, walk_range};
pub use walk::{
    Access, CpuState, PageFault, PageSize, Permissions, PfErrorCode, Translation, translate,
};

/// A level of the 4-level hierarchy, named by the table it indexes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Level {
    /// Level 1: the page table; its entries map 4 KiB pages.
    Pt = 1,
    /// Level 2: the page directory; a PS entry maps a 2 MiB page.
    Pd = 2,
    /// Level 3: the page-directory-pointer table; a PS entry maps 1 GiB.
    Pdpt = 3,
    /// Level 4: the PML4, the root CR3 points at.
    Pml4 = 4,
}

impl Level {
    /// Shift of the virtual-address bits that index this level's table.
    pub const fn shift(self) -> u32 {
        12 + 9 * (self as u32 - 1)
    }

    /// Bytes mapped by one entry at this level.
    pub const fn entry_span(self) -> u64 {
        1u64 << self.shift()
    }

    /// The level below, or `None` at the page table.
    pub const fn next_lower(self) -> Option<Level> {
        match self {
            Level::Pml4 => Some(Level::Pdpt),
            Level::Pdpt => Some(Level::Pd),
            Level::Pd => Some(Level::Pt),
            Level::Pt => None,
        }
    }

    /// The level for a number 1..=4.
    pub const fn from_number(n: u8) -> Option<Level> {
        match n {
            1 => Some(Level::Pt),
            2 => Some(Level::Pd),
            3 => Some(Level::Pdpt),
            4 => Some(Level::Pml4),
            _ => None,
        }
    }
}
