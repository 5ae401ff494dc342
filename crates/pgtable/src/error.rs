//! Errors of the pgtable crate: each names the value that was wrong.

use crate::addr::PhysAddr;

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
