//! The silicon oracle: ptemu's page tables walked by the CPU, through KVM.
//!
//! A KVM guest whose RAM is ptemu's physical memory itself (the same mmap)
//! runs one vCPU in 64-bit mode with CR3 at a ptemu-built PML4. A small
//! harness in reserved frames (GDT, TSS with RSP0, IDT, #PF handler, ring-0
//! and ring-3 access routines, mapped through PML4 slot 511) performs one
//! access at a time ([`HwMachine::access`]) and reports the outcome through
//! port I/O: the value read (or the tag of the fetched stub), or the #PF
//! error code and CR2. The Accessed/Dirty updates land in the same memory,
//! where ptemu reads them back. [`check`] compares that against
//! `pgtable::translate`; [`LoadLoop`] times the guest's own loads.
//!
//! Who decides depends on the host's KVM. With hardware virtualisation
//! (kvm_intel/kvm_amd with EPT/NPT) the guest's walks are the silicon's.
//! On the development machines /dev/kvm is kvm_pvm (PVM: no SVM/VMX, shadow
//! paging): the guest's ring 0 is run by KVM's instruction emulator, and
//! its ring 3 natively on KVM's shadow copy of the guest tables; in both
//! cases faults, error codes and guest A/D bits are decided by KVM's guest
//! page-table walker (arch/x86/kvm/mmu/paging_tmpl.h), which models the
//! CPU, while the hardware then walks the shadow tables (which is what
//! [`LoadLoop`] times in ring 3). The guest itself writes every table entry
//! it is about to use (a mailbox of writes done by the entry routine), so
//! a shadowing KVM sees each change; host-side writes would leave stale
//! shadows.
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
