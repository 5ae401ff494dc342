//! What an access or a control-register write can fail with.

use core::fmt;

use pgtable::{MemError, PageFault, VirtAddr};

/// Why the CPU would raise #GP instead of doing what was asked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GpCause {
    /// A linear address whose bits 63..47 are not all equal.
    NonCanonical(u64),
    /// A reserved bit set in a value written to a control register or MSR.
    ReservedBit {
        /// The register ("CR0", "CR3", "CR4", "EFER").
        reg: &'static str,
        /// The value that was written.
        value: u64,
    },
    /// A combination of control bits the CPU refuses (e.g. CR0.PG without
    /// CR0.PE, clearing CR4.PAE in long mode, setting CR4.PCIDE with a
    /// non-zero `CR3[11:0]`).
    BadCombination(&'static str),
    /// An INVPCID the CPU refuses: a type above 3, a PCID above 0xfff, a
    /// non-zero PCID with CR4.PCIDE=0 (types 0 and 1), or a non-canonical
    /// address (type 0).
    Invpcid(&'static str),
}

impl fmt::Display for GpCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpCause::NonCanonical(a) => write!(f, "non-canonical linear address {a:#x}"),
            GpCause::ReservedBit { reg, value } => {
                write!(f, "reserved bit set in {reg} value {value:#x}")
            }
            GpCause::BadCombination(what) => write!(f, "{what}"),
            GpCause::Invpcid(what) => write!(f, "INVPCID: {what}"),
        }
    }
}

/// An access or a register write the MMU could not complete.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// The CPU raises #PF: the error code it pushes and the address it
    /// loads into CR2.
    PageFault(PageFault),
    /// The CPU raises #GP(0).
    GeneralProtection(GpCause),
    /// A paging-structure entry or the accessed bytes lie outside the
    /// physical memory (the emulator's bus error, not an architectural
    /// fault).
    Mem(MemError),
    /// The entries for this address kept changing under the walk's
    /// compare-exchange (another agent rewrites them without pause).
    Contended(VirtAddr),
    /// An access size outside 1..=64 bytes.
    BadSize(usize),
    /// A paging mode this MMU does not emulate: paging on outside IA-32e
    /// mode (32-bit or PAE paging) or 5-level paging (CR4.LA57).
    Unsupported(&'static str),
}

impl Error {
    /// The page fault, if this is one.
    pub const fn page_fault(&self) -> Option<PageFault> {
        match self {
            Error::PageFault(pf) => Some(*pf),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PageFault(pf) => write!(f, "{pf}"),
            Error::GeneralProtection(c) => write!(f, "#GP(0): {c}"),
            Error::Mem(e) => write!(f, "{e}"),
            Error::Contended(va) => {
                write!(f, "page-table entries for {va} kept changing during the walk")
            }
            Error::BadSize(n) => write!(f, "access size {n} is outside 1..=64 bytes"),
            Error::Unsupported(what) => write!(f, "unsupported paging mode: {what}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<MemError> for Error {
    fn from(e: MemError) -> Self {
        Error::Mem(e)
    }
}

impl From<pgtable::Fault> for Error {
    fn from(f: pgtable::Fault) -> Self {
        match f {
            pgtable::Fault::PageFault(pf) => Error::PageFault(pf),
            pgtable::Fault::Mem(e) => Error::Mem(e),
            pgtable::Fault::Contended(va) => Error::Contended(va),
            // The MMU validates MAXPHYADDR at construction.
            pgtable::Fault::BadMaxPhyAddr(_) => Error::Unsupported("MAXPHYADDR outside 1..=52"),
        }
    }
}
