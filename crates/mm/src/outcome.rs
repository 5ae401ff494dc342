//! What an operation did when it did not simply succeed: the process got
//! SIGSEGV, or the emulated kernel oopsed. Neither is an error of the
//! caller's: a scenario may expect either, and the machine stays usable.

use pgtable::Pfn;

use crate::error::MmError;
use crate::process::Pid;

/// The result of an operation that ran.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome<T> {
    /// It completed, with this value.
    Done(T),
    /// A user access the kernel answered with SIGSEGV.
    Segv(Segv),
    /// The kernel followed a freed anon_vma; the operation stopped there.
    Oops(Oops),
}

impl<T> Outcome<T> {
    /// The value, if the operation completed.
    pub fn done(self) -> Option<T> {
        match self {
            Outcome::Done(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the operation completed.
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }

    /// The SIGSEGV, if that is what happened.
    pub fn segv(&self) -> Option<&Segv> {
        match self {
            Outcome::Segv(s) => Some(s),
            _ => None,
        }
    }

    /// The oops, if that is what happened.
    pub fn oops(&self) -> Option<&Oops> {
        match self {
            Outcome::Oops(o) => Some(o),
            _ => None,
        }
    }

    /// The same outcome with the completed value mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(v) => Outcome::Done(f(v)),
            Outcome::Segv(s) => Outcome::Segv(s),
            Outcome::Oops(o) => Outcome::Oops(o),
        }
    }
}

/// An operation's result with an oops raised under one of its allocations
/// ([`MmError::Oops`], from the shrinker) made the operation's outcome.
pub(crate) fn oops_as_outcome<T>(r: Result<Outcome<T>, MmError>) -> Result<Outcome<T>, MmError> {
    match r {
        Err(MmError::Oops(o)) => Ok(Outcome::Oops(*o)),
        other => other,
    }
}

/// Why the kernel sent SIGSEGV (the si_code of the signal).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SegvCode {
    /// SEGV_MAPERR: no VMA covers the address.
    MapErr,
    /// SEGV_ACCERR: a VMA covers it but does not allow the access.
    AccErr,
}

impl SegvCode {
    /// `maperr` or `accerr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SegvCode::MapErr => "maperr",
            SegvCode::AccErr => "accerr",
        }
    }
}

/// A SIGSEGV delivered to a process by the page-fault handler.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Segv {
    /// The process.
    pub pid: Pid,
    /// The faulting address (CR2, si_addr).
    pub addr: u64,
    /// The hardware #PF error code of the fault.
    pub error_code: u32,
    /// SEGV_MAPERR or SEGV_ACCERR.
    pub code: SegvCode,
}

impl core::fmt::Display for Segv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "SIGSEGV ({}) in process {} at {:#x}, #PF error code {:#x}",
            self.code.as_str(),
            self.pid,
            self.addr,
            self.error_code
        )
    }
}

/// Kind of an oops.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum OopsKind {
    /// The anon_vma named by page->mapping was freed; its slot is unused.
    UseAfterFree,
    /// The freed anon_vma's slot now holds another anon_vma.
    Reused,
}

impl OopsKind {
    /// The scenario-language spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            OopsKind::UseAfterFree => "anon-vma-use-after-free",
            OopsKind::Reused => "anon-vma-reused",
        }
    }
}

/// The emulated kernel followed a freed anon_vma.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Oops {
    /// Use after free, or the slot reused by another anon_vma.
    pub kind: OopsKind,
    /// The page whose mapping named it, when a page was involved.
    pub page: Option<Pfn>,
    /// The anon_vma's id (slot and generation, as rmap prints it).
    pub anon_vma: String,
    /// The page->mapping word that named it.
    pub mapping: u64,
    /// The step label current when the anon_vma was freed.
    pub freed_at_step: String,
    /// The rmap operation that freed it.
    pub freed_by: String,
    /// The kernel function that followed the stale pointer.
    pub during: String,
    /// The step label current when the oops happened.
    pub step: String,
}

impl core::fmt::Display for Oops {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "oops ({}) in {}", self.kind.as_str(), self.during)?;
        if let Some(p) = self.page {
            write!(f, " on page {p}")?;
        }
        write!(
            f,
            ": mapping {:#x} names anon_vma {} freed by {} at step '{}'",
            self.mapping, self.anon_vma, self.freed_by, self.freed_at_step
        )
    }
}

impl Oops {
    pub(crate) fn from_rmap(o: &rmap::Oops, page: Option<Pfn>, step: &str) -> Self {
        let kind = match o.kind {
            rmap::OopsKind::UseAfterFree => OopsKind::UseAfterFree,
            rmap::OopsKind::ReusedAsAnother { .. } => OopsKind::Reused,
        };
        Oops {
            kind,
            page,
            anon_vma: o.anon_vma.to_string(),
            mapping: o.mapping,
            freed_at_step: o.freed_at_step.clone(),
            freed_by: o.freed_by.to_string(),
            during: o.op.to_string(),
            step: step.to_string(),
        }
    }
}
