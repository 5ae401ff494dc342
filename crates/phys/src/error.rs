//! Errors of the phys crate: each names the value that was wrong.

use std::path::PathBuf;

use pgtable::Pfn;

/// A failed physical-memory or allocator operation.
#[derive(Debug, thiserror::Error)]
pub enum PhysError {
    /// A frame number beyond the memory.
    #[error("frame {pfn} does not exist (memory has {frames} frames)")]
    NoSuchFrame {
        /// The frame asked for.
        pfn: Pfn,
        /// Number of frames in the memory.
        frames: u64,
    },
    /// A region size that is zero, not a multiple of 4 KiB, or too large.
    #[error("memory size {size:#x} is invalid: {reason}")]
    BadSize {
        /// The size asked for, in bytes.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A byte range that does not lie inside the region.
    #[error("range {offset:#x}+{len:#x} is outside a region of {size:#x} bytes")]
    OutOfRange {
        /// Start of the range (a byte offset or physical address).
        offset: u64,
        /// Length of the range in bytes.
        len: u64,
        /// Size of the region in bytes.
        size: u64,
    },
    /// A word access at an offset that is not 8-byte aligned.
    #[error("offset {0:#x} is not 8-byte aligned")]
    Unaligned(u64),
    /// Creating, sizing or mapping a backing file failed.
    #[error("backing file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An anonymous mapping could not be created.
    #[error("anonymous mapping of {size:#x} bytes failed: {source}")]
    Mmap {
        /// The size asked for.
        size: u64,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An allocation order outside 0..=MAX_ORDER.
    #[error("order {order} is outside 0..={max}")]
    BadOrder {
        /// The order asked for.
        order: u32,
        /// The largest order the allocator knows.
        max: u32,
    },
    /// No free block of the requested order (or any larger one) is left.
    #[error("out of memory: no free block of order {order}")]
    OutOfMemory {
        /// The order asked for.
        order: u32,
    },
    /// Freeing a block that is already free.
    #[error("double free of frame {pfn} (order {order}): it is already free")]
    DoubleFree {
        /// The frame passed to free.
        pfn: Pfn,
        /// The order passed to free.
        order: u32,
    },
    /// Freeing a frame that does not start an allocated block.
    #[error("frame {pfn} (order {order}) was not allocated")]
    NotAllocated {
        /// The frame passed to free.
        pfn: Pfn,
        /// The order passed to free.
        order: u32,
    },
    /// Freeing an allocated block with a different order than it was allocated with.
    #[error("frame {pfn} was allocated with order {allocated}, freed with order {freed}")]
    OrderMismatch {
        /// The frame passed to free.
        pfn: Pfn,
        /// The order of the allocation.
        allocated: u32,
        /// The order passed to free.
        freed: u32,
    },
    /// The page descriptors cover fewer frames than the allocator manages.
    #[error("page descriptors cover {descs} frames, the allocator manages {frames}")]
    DescsTooShort {
        /// Number of descriptors.
        descs: u64,
        /// Number of frames managed by the allocator.
        frames: u64,
    },
    /// The descriptor table for this many frames cannot be allocated.
    #[error("cannot allocate page descriptors for {frames} frames")]
    DescAlloc {
        /// Number of frames.
        frames: u64,
    },
    /// A frame freed while still in use (Linux's "bad page state" at free).
    #[error("bad page state freeing frame {pfn}: {reason}")]
    BadPageState {
        /// The offending frame (head or tail of the freed block).
        pfn: Pfn,
        /// What was still in use.
        reason: &'static str,
    },
}
