//! Errors of the mm crate: bad input to an operation, or an internal state
//! the emulated kernel would call a BUG. Each variant names the bad value.
//!
//! SIGSEGV and oopses are not errors: they are outcomes an operation can
//! have (see [`crate::Outcome`]), because a scenario may expect them.

use crate::process::Pid;

/// A failed mm operation.
#[derive(Debug, thiserror::Error)]
pub enum MmError {
    /// A process id that does not name a live process.
    #[error("no process {0}")]
    NoSuchProcess(Pid),
    /// An address that is not canonical or not page aligned where it must be.
    #[error("address {addr:#x} is invalid: {reason}")]
    BadAddress {
        /// The address.
        addr: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A length that is zero, unaligned, or runs past the user address space.
    #[error("length {len:#x} at {addr:#x} is invalid: {reason}")]
    BadLength {
        /// Start address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// mmap over an existing mapping (ptemu's mmap is MAP_FIXED_NOREPLACE).
    #[error("mmap at {addr:#x} length {len:#x} overlaps the mapping at {existing:#x}")]
    Overlap {
        /// Start of the new mapping.
        addr: u64,
        /// Its length.
        len: u64,
        /// Start of the mapping already there.
        existing: u64,
    },
    /// A machine configuration that cannot be built.
    #[error("bad machine configuration: {0}")]
    BadConfig(String),
    /// Out of memory: no free frame even after reclaim (the OOM answer).
    #[error("out of memory: no free frame and nothing left to reclaim (while {during})")]
    OutOfMemory {
        /// What needed the frame.
        during: &'static str,
    },
    /// A swap device index that does not exist.
    #[error("no swap device {0}")]
    NoSuchSwapDevice(u8),
    /// A frame number outside physical memory.
    #[error("frame {pfn:#x} is outside memory of {frames} frames")]
    NoSuchFrame {
        /// The frame.
        pfn: u64,
        /// Number of frames.
        frames: u64,
    },
    /// An emulated-kernel consistency check failed (what Linux would BUG on).
    /// Never expected; reported rather than panicking.
    #[error("kernel bug at {at}: {what}")]
    KernelBug {
        /// The function that found it.
        at: &'static str,
        /// What was inconsistent.
        what: String,
    },
    /// An error of the physical-memory layer.
    #[error(transparent)]
    Phys(#[from] phys::PhysError),
    /// A failed word access to physical memory.
    #[error(transparent)]
    Mem(#[from] pgtable::MemError),
    /// An entry that cannot be encoded or decoded.
    #[error(transparent)]
    Entry(#[from] pgtable::EntryError),
    /// An error of the swap layer.
    #[error(transparent)]
    Swap(#[from] swap::SwapError),
    /// An error of the rmap layer (other than an oops, which is an outcome).
    #[error(transparent)]
    Rmap(#[from] rmap::RmapError),
    /// An oops inside an allocation (the shrinker's rmap walk followed a
    /// freed anon_vma), on its way up to the operation that allocated,
    /// which reports it as [`crate::Outcome::Oops`]. It reaches a caller
    /// only from an operation that has no outcome to report it in.
    #[error("{0}")]
    Oops(Box<crate::outcome::Oops>),
}

impl MmError {
    pub(crate) fn bug(at: &'static str, what: impl Into<String>) -> Self {
        MmError::KernelBug { at, what: what.into() }
    }
}
