//! Errors of the pgtable crate: each names the value that was wrong.

use crate::addr::{PhysAddr, VirtAddr};

/// A value that is not a valid address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Bits 63..48 do not all equal bit 47.
    #[error("virtual address {0:#x} is not canonical (bits 63..48 must equal bit 47)")]
    NonCanonical(u64),
    /// The physical address needs more bits than MAXPHYADDR.
    #[error("physical address {addr:#x} does not fit in MAXPHYADDR = {width} bits")]
    PhysTooWide {
        /// The address.
        addr: u64,
        /// The MAXPHYADDR it was checked against.
        width: u8,
    },
    /// A MAXPHYADDR outside 1..=52.
    #[error("MAXPHYADDR {0} is outside 1..=52")]
    BadPhysWidth(u8),
}

/// A failed access to physical memory or frame source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The word does not lie inside the memory.
    #[error("physical address {addr} is outside memory of {size:#x} bytes")]
    OutOfRange {
        /// The address of the word.
        addr: PhysAddr,
        /// Size of the memory.
        size: u64,
    },
    /// Word accesses must be 8-byte aligned.
    #[error("physical address {0} is not 8-byte aligned")]
    Unaligned(PhysAddr),
    /// The frame source has no frame left.
    #[error("no free frame for a page table")]
    NoFrames,
    /// A write through a read-only view (a side-effect-free walk).
    #[error("write to {0} through a read-only view of memory")]
    ReadOnly(PhysAddr),
    /// An address below the memory's size that no memory backs: a hole
    /// between the regions of an embedder's guest memory, or a word its
    /// memory callbacks refused.
    #[error("no memory backs physical address {0} (a hole in guest memory)")]
    Unbacked(PhysAddr),
}

/// A raw entry or entry kind that cannot be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A swap type above 31 (5 bits in both formats).
    #[error("swap type {0} does not fit in 5 bits (max 31)")]
    SwapTypeTooLarge(u8),
    /// A swap offset wider than the format's offset field.
    #[error("swap offset {offset:#x} does not fit (max {max:#x})")]
    SwapOffsetTooLarge {
        /// The offset.
        offset: u64,
        /// The largest offset the format holds.
        max: u64,
    },
    /// A swap entry whose encoding is the all-zero entry, which every reader
    /// takes for pte_none: type 0 offset 0 in the classic format, type 0
    /// with the largest offset in the L1TF one (stored inverted). Linux never
    /// makes either: slot 0 holds the swap header, and the L1TF limit on
    /// swap size keeps offsets far below the top.
    #[error("swap entry type {swap_type} offset {offset:#x} encodes as the empty entry (pte_none)")]
    SwapEncodesAsNone {
        /// The type.
        swap_type: u8,
        /// The offset.
        offset: u64,
    },
    /// Exclusive, soft-dirty or uffd-wp asked of the classic format, which
    /// has no bits for them.
    #[error("the classic (2.6.x) swap entry has no exclusive, soft-dirty or uffd-wp bit")]
    ClassicSwapBits,
    /// A classic non-present entry with `_PAGE_FILE` (bit 6): a nonlinear
    /// file PTE, which is neither swap nor PROT_NONE.
    #[error("entry {0:#018x} is a classic nonlinear file PTE (_PAGE_FILE), not an anonymous entry")]
    ClassicFilePte(u64),
    /// An L1TF-format non-present entry above level 1 with PS set and
    /// PROTNONE clear (an invalidated huge entry).
    #[error("entry {raw:#018x} at level {level} is an invalidated huge entry (P clear, PS set)")]
    InvalidatedHuge {
        /// The entry.
        raw: u64,
        /// Its level.
        level: u8,
    },
    /// A frame number beyond 2^40 - 1 (52-bit physical addresses).
    #[error("frame number {0:#x} does not fit in 40 bits")]
    PfnTooLarge(u64),
    /// A frame number not aligned to the page size of a large leaf.
    #[error("frame number {pfn:#x} is not aligned to the page size of a level-{level} leaf")]
    PfnMisaligned {
        /// The frame number.
        pfn: u64,
        /// The level.
        level: u8,
    },
    /// Flags that include frame-address bits of the entry.
    #[error("flags {flags:#x} overlap the frame-address field of a level-{level} entry")]
    FlagsOverlapFrame {
        /// The flags.
        flags: u64,
        /// The level.
        level: u8,
    },
    /// Flags that contradict the kind (present without P, PROT_NONE with P...).
    #[error("flags {flags:#x} do not describe a {kind} entry")]
    KindFlagsMismatch {
        /// The flags.
        flags: u64,
        /// The kind asked for.
        kind: &'static str,
    },
    /// A present entry with reserved bits set.
    #[error("entry {raw:#018x} at level {level} has reserved bits {bits:#x} set")]
    ReservedBits {
        /// The entry.
        raw: u64,
        /// Its level.
        level: u8,
        /// The reserved bits that are set.
        bits: u64,
    },
    /// A MAXPHYADDR outside 1..=52.
    #[error("MAXPHYADDR {0} is outside 1..=52")]
    BadMaxPhyAddr(u8),
    /// A level number outside 1..=4.
    #[error("level {0} is outside 1..=4")]
    BadLevel(u8),
}

/// Why a hardware walk produced no translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The CPU would raise #PF.
    #[error("{0}")]
    PageFault(crate::walk::PageFault),
    /// An entry lies outside physical memory.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// The CPU state's MAXPHYADDR is outside 1..=52.
    #[error("MAXPHYADDR {0} is outside 1..=52")]
    BadMaxPhyAddr(u8),
    /// Entries kept changing under the walk's compare-exchange.
    #[error("page-table entries for {0} kept changing during the walk")]
    Contended(crate::addr::VirtAddr),
}

impl Fault {
    /// The page fault, if this is one.
    pub const fn page_fault(&self) -> Option<crate::walk::PageFault> {
        match self {
            Fault::PageFault(pf) => Some(*pf),
            _ => None,
        }
    }
}

/// A range operation of the mapper that cannot be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// A range that is empty, not page aligned, or crosses the canonical hole.
    #[error(
        "range of {len:#x} bytes at {start:#x} is empty, unaligned or not within one canonical half"
    )]
    BadRange {
        /// Start address.
        start: u64,
        /// Length.
        len: u64,
    },
    /// An address or frame not aligned to the page size.
    #[error("address {addr:#x} is not aligned to the page size {size:#x}")]
    Misaligned {
        /// The address (virtual, or the frame's physical address).
        addr: u64,
        /// The page size.
        size: u64,
    },
    /// Frames beyond 2^40 - 1.
    #[error("{count} pages from frame {pfn:#x} go beyond the largest frame number")]
    PfnRange {
        /// First frame.
        pfn: u64,
        /// Number of pages.
        count: u64,
    },
    /// Leaf flags the operation cannot take (address bits, PS, no PRESENT...).
    #[error("flags {0:#x} are not valid for this operation")]
    BadFlags(u64),
    /// Something is already mapped (or a non-present entry is there).
    #[error("{va} is already mapped at level {level} (entry {raw:#018x})")]
    AlreadyMapped {
        /// Address.
        va: VirtAddr,
        /// Level of the entry found.
        level: u8,
        /// The entry.
        raw: u64,
    },
    /// A huge page covers part of the range where tables are needed.
    #[error("a huge page at level {level} covers {va} (entry {raw:#018x})")]
    HugeConflict {
        /// Address.
        va: VirtAddr,
        /// Level of the huge entry.
        level: u8,
        /// The entry.
        raw: u64,
    },
    /// A page table exists where a huge page was to be mapped.
    #[error("a page table is in the way of a level-{level} mapping at {va}")]
    TableInTheWay {
        /// Address.
        va: VirtAddr,
        /// Level of the entry.
        level: u8,
    },
    /// The range covers only part of a huge entry (splitting is not done).
    #[error("the range covers only part of the level-{level} entry {raw:#018x} at {va}")]
    PartialHuge {
        /// Address.
        va: VirtAddr,
        /// Level of the entry.
        level: u8,
        /// The entry.
        raw: u64,
    },
    /// A visitor asked to overwrite a table pointer.
    #[error("refusing to overwrite the table pointer at level {level} for {va}")]
    TableOverwrite {
        /// Address.
        va: VirtAddr,
        /// Level of the entry.
        level: u8,
    },
    /// A visitor asked to descend below level 1 or through a leaf.
    #[error("cannot descend through the level-{level} entry {raw:#018x} at {va}")]
    CannotDescend {
        /// Address.
        va: VirtAddr,
        /// Level of the entry.
        level: u8,
        /// The entry.
        raw: u64,
    },
    /// A memory or frame-source failure.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// A bad entry value.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// A bad address.
    #[error(transparent)]
    Addr(#[from] AddrError),
}
