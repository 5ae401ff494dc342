//! Errors of the rmap crate, and the oops a stale anon_vma handle produces.

use std::fmt;

use crate::anon_vma::{AnonVmaId, VmaId};

/// What a stale anon_vma handle found in its slot.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OopsKind {
    /// The slot is still free: the kernel would read a dead anon_vma whose
    /// memory SLAB_TYPESAFE_BY_RCU keeps in the anon_vma cache.
    UseAfterFree,
    /// After an RCU grace period the slot was handed out again: the handle
    /// now reaches a different, live anon_vma.
    ReusedAsAnother {
        /// The anon_vma that now occupies the slot.
        now: AnonVmaId,
    },
}

/// Following a handle to an anon_vma that has been freed: what the kernel
/// would hit as an oops (or silent corruption), reported instead.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Oops {
    /// Freed-and-unused or freed-and-reused.
    pub kind: OopsKind,
    /// The anon_vma the handle was issued for.
    pub anon_vma: AnonVmaId,
    /// The caller's step label current when it was freed.
    pub freed_at_step: String,
    /// The rmap operation that freed it.
    pub freed_by: &'static str,
    /// The operation that followed the stale handle.
    pub op: &'static str,
    /// The handle as a page->mapping word.
    pub mapping: u64,
}

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "oops in {}: mapping {:#x} names {}, freed by {} at step '{}'",
            self.op, self.mapping, self.anon_vma, self.freed_by, self.freed_at_step
        )?;
        match &self.kind {
            OopsKind::UseAfterFree => f.write_str(" (use after free)"),
            OopsKind::ReusedAsAnother { now } => write!(f, " (slot reused as {now})"),
        }
    }
}

/// A failed rmap operation.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RmapError {
    /// A stale anon_vma handle was followed.
    #[error("{0}")]
    Oops(Box<Oops>),
    /// An era name that is not one of the known ones.
    #[error("unknown era '{name}' (known: {known})")]
    UnknownEra {
        /// The name given.
        name: String,
        /// The known names.
        known: String,
    },
    /// A VMA id rmap has not been told about.
    #[error("no VMA {0} is known to rmap")]
    NoSuchVma(VmaId),
    /// Registering a VMA id that is already registered.
    #[error("VMA {0} is already known to rmap")]
    VmaExists(VmaId),
    /// A VMA range that is empty, unaligned or overflows.
    #[error("VMA range start {start:#x} pgoff {pgoff:#x} pages {pages} is invalid: {reason}")]
    BadRange {
        /// Start address.
        start: u64,
        /// Page offset (vm_pgoff).
        pgoff: u64,
        /// Length in pages.
        pages: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An operation that needs the VMA to have an anon_vma (call
    /// anon_vma_prepare first, as the fault paths do).
    #[error("VMA {0} has no anon_vma")]
    NoAnonVma(VmaId),
    /// anon_vma_fork or anon_vma_clone into a VMA that already has links.
    #[error("VMA {0} already has an anon_vma chain")]
    ChainNotEmpty(VmaId),
    /// An address outside the VMA.
    #[error("address {address:#x} is outside VMA {vma}")]
    AddressOutsideVma {
        /// The VMA.
        vma: VmaId,
        /// The address.
        address: u64,
    },
    /// A page whose mapping is not an anon_vma handle.
    #[error("page mapping {0:#x} is not an anon_vma (PAGE_MAPPING_ANON clear)")]
    NotAnon(u64),
    /// A mapping word with the anon bit whose handle rmap never issued.
    #[error("page mapping {0:#x} is not a handle this rmap issued")]
    BadHandle(u64),
    /// page_remove_rmap on a page with no mapping left.
    #[error("page is not mapped (mapcount 0)")]
    NotMapped,
    /// A count would overflow.
    #[error("{what} overflows")]
    Overflow {
        /// Which count.
        what: &'static str,
    },
    /// put_anon_vma without a matching get_anon_vma.
    #[error("{0} has no reference to drop")]
    NoReference(AnonVmaId),
    /// The anon_vma cache has no slot left (2^30 slots).
    #[error("anon_vma cache exhausted")]
    CacheExhausted,
}

impl RmapError {
    /// The oops, when this error is one.
    pub fn oops(&self) -> Option<&Oops> {
        match self {
            RmapError::Oops(o) => Some(o),
            _ => None,
        }
    }
}

impl From<Oops> for RmapError {
    fn from(o: Oops) -> Self {
        RmapError::Oops(Box::new(o))
    }
}
