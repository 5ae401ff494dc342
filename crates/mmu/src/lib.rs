//! An x86-64 MMU for emulators: the CPU's paging state, a software TLB
//! whose hit costs what QEMU's does, and invalidation exactly as the Intel
//! SDM (vol. 3A, 4.10) defines it, over ptemu-pgtable's hardware walk.
//!
//! - [`Mmu`]: construction from a [`Config`] (main-table size, PCID contexts,
//!   MAXPHYADDR, [`StalePolicy`], the sizes of the paging-structure
//!   caches), with [`Mmu::new`] or, for a first level
//!   of another compile-time size, [`Mmu::with_first_level`];
//!   [`Mmu::translate`],
//!   [`Mmu::translate_sized`], [`Mmu::read`], [`Mmu::write`], [`Mmu::fetch`]
//!   for accesses of 1 to 64 bytes, split at page boundaries as the CPU
//!   splits them; [`Mmu::write_cr0`], [`Mmu::write_cr3`],
//!   [`Mmu::write_cr4`], [`Mmu::write_efer`], [`Mmu::write_pkru`],
//!   [`Mmu::set_cpl`], [`Mmu::set_ac`], [`Mmu::invlpg`], [`Mmu::invpcid`];
//!   [`Stats`] counters.
//! - [`regs`]: the registers and their bits.
//! - [`GuestMem`]: byte access on top of pgtable's word-granular
//!   [`PhysMem`](pgtable::PhysMem).
//! - [`Error`]: #PF (error code and CR2), #GP, memory errors.
//! - `vm_memory` (feature `vm-memory`): `GuestPhys`, page tables and data in
//!   a rust-vmm `GuestMemoryMmap`, and `MmuIommu`, the MMU as vm-memory's
//!   `Iommu` so that `IommuMemory` is addressed by guest-virtual address.
//!
//! The module [`mod@mmu`] explains the TLB's layout, the paging-structure
//! caches, how fills, the Dirty bit and large pages are handled, and what
//! stale entries do.
//!
//! The crate is `no_std` (it needs `alloc` for the tables) and has no
//! `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod error;
pub mod mem;
pub mod mmu;
pub mod regs;
#[cfg(feature = "vm-memory")]
pub mod vm_memory;

pub use error::{Error, GpCause};
pub use mem::GuestMem;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use mmu::Bug;
pub use mmu::{
    CachedEntry, Config, ConfigError, Flushes, Invpcid, L1_SLOTS, MAX_ACCESS, MAX_L1_SLOTS, Mmu,
    Mode, PscEntry, PscLevel, PscStats, Span, StalePolicy, Stats, VICTIMS,
};
/// The page-table crate this MMU walks with (its tables, mapper and `PhysMem`).
pub use pgtable;
pub use pgtable::{Access, PageFault, PfErrorCode, PhysAddr, VirtAddr};
pub use regs::Regs;
