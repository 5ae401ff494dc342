//! The silicon oracle: ptemu's page tables walked by the real CPU.
//!
//! A KVM guest whose RAM is ptemu's physical memory itself (the same mmap)
//! runs one vCPU in 64-bit mode with CR3 at a ptemu-built PML4. A small
//! harness in reserved frames (GDT, TSS, IDT, #PF handler, ring-0 and
//! ring-3 access routines) performs one access at a time and reports the
//! outcome through port I/O: the value read, or the #PF error code and CR2.
//! The CPU's Accessed/Dirty updates land in the same memory, where ptemu
//! reads them back. [`check`] compares that against `pgtable::translate`.
#![deny(unsafe_code)]

pub mod check;
pub mod error;
pub mod harness;
pub mod loads;
pub mod machine;
pub mod vm;

pub use error::KvmError;
pub use harness::{HARNESS_FRAMES, HARNESS_PML4_SLOT, Harness, fetch_stub};
pub use loads::LoadLoop;
pub use machine::{HostFeatures, HwAccess, HwMachine, HwOutcome};
pub use vm::{Exit, Vm};
