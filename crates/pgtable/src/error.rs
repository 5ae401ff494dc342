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
