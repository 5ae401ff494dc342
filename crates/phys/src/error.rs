//! Errors of the phys crate.

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
}
