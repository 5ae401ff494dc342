//! The C ABI of ptemu's MMU (`include/ptemu.h`, `libptemu_capi.a` /
//! `libptemu_capi.so`).
//!
//! A C emulator creates an MMU over its guest-physical memory, either as
//! callbacks ([`PtemuMemOps`]: read, write and compare-exchange one aligned
//! 64-bit word, optionally byte reads and writes) or as a flat buffer it
//! owns, then calls it from its instruction handlers: [`ptemu_translate`],
//! [`ptemu_read`], [`ptemu_write`], [`ptemu_fetch`] for accesses,
//! [`ptemu_write_cr0`], [`ptemu_write_cr3`], [`ptemu_write_cr4`],
//! [`ptemu_write_efer`], [`ptemu_invlpg`], [`ptemu_invpcid`] for the
//! instructions that change paging state, and [`ptemu_get_stats`] for the
//! counters. Every call returns a [`PtemuStatus`]; a page fault's CR2 and
//! error code come from [`ptemu_last_fault`], and the text of the last
//! error from [`ptemu_last_error`].
//!
//! Layout: this file holds the C-visible types and the safe glue between
//! them and the `ptemu-mmu` crate; `ffi` holds the exported functions and
//! `mem` the two memories, the only modules allowed `unsafe` (dereferencing
//! the caller's pointers and calling the caller's functions), each block
//! with its SAFETY argument.
#![deny(unsafe_code)]

mod ffi;
mod mem;

/// docs/embedding.md, whose Rust examples run as doctests of this crate so
/// that the guide cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
pub struct EmbeddingGuide;

pub use ffi::*;

use core::ffi::c_void;

/// What a call did. Zero is success; every other value names the reason,
/// with details in [`ptemu_last_error`] (and [`ptemu_last_fault`] for a
/// fault).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PtemuStatus {
    /// Done.
    Ok = 0,
    /// The CPU raises #PF (vector 14): deliver it with the CR2 and error
    /// code of [`ptemu_last_fault`].
    PageFault = 1,
    /// The CPU raises #GP(0) (vector 13): a non-canonical address, a
    /// reserved bit in a CR write, an invalid INVPCID.
    GeneralProtection = 2,
    /// A page-table entry or the accessed bytes lie outside the memory, or
    /// the memory callbacks refused them (the emulator's bus error).
    Memory = 3,
    /// The page-table entries kept changing under the walk.
    Contended = 4,
    /// An access size outside 1..=64 bytes.
    BadSize = 5,
    /// A paging mode the MMU does not emulate (32-bit, PAE, 5-level).
    Unsupported = 6,
    /// A null pointer, a misaligned buffer, an invalid configuration or
    /// access kind.
    InvalidArgument = 7,
}

/// The kind of access, as `uint32_t` values in the API.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PtemuAccess {
    /// A data read.
    Read = 0,
    /// A data write.
    Write = 1,
    /// An instruction fetch.
    Fetch = 2,
}

/// The exception an access or instruction raised.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PtemuFault {
    /// 14 for #PF, 13 for #GP, 0 when the last call raised nothing.
    pub vector: u8,
    /// The error code the CPU pushes (for #GP always 0).
    pub error_code: u32,
    /// For #PF, the linear address the CPU loads into CR2.
    pub cr2: u64,
}

/// Reads the aligned little-endian word at physical address `pa` into
/// `*out`; returns 0, or non-zero when no memory is there.
pub type PtemuReadU64 =
    Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, out: *mut u64) -> i32>;

/// Writes the aligned word `value` at `pa`; returns 0, or non-zero when no
/// memory is there.
pub type PtemuWriteU64 = Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, value: u64) -> i32>;

/// Atomically: if the aligned word at `pa` equals `expected`, stores
/// `desired`. Always stores the value found before into `*actual` (so the
/// exchange happened exactly when `*actual == expected`). Returns 0, or
/// non-zero when no memory is there. The MMU sets Accessed and Dirty this
/// way, as the CPU does with a locked read-modify-write; memory no other
/// agent touches may implement it as a read and a conditional write.
pub type PtemuCmpxchgU64 = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        pa: u64,
        expected: u64,
        desired: u64,
        actual: *mut u64,
    ) -> i32,
>;

/// Copies `len` bytes at `pa` into `buf`; returns 0, or non-zero when any
/// byte has no memory (then nothing is expected to be copied).
pub type PtemuReadBytes =
    Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, buf: *mut u8, len: usize) -> i32>;

/// Copies `len` bytes from `data` to `pa`; returns 0, or non-zero when any
/// byte has no memory (then nothing may have been written).
pub type PtemuWriteBytes =
    Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, data: *const u8, len: usize) -> i32>;

/// Guest-physical memory as the caller's functions.
///
/// `read_u64`, `write_u64` and `cmpxchg_u64` are required. `read_bytes`
/// and `write_bytes` may be NULL: data accesses are then made of word
/// accesses (a partial word is read, merged and written back, which is not
/// atomic against other writers of the same word).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PtemuMemOps {
    /// Passed to every callback.
    pub ctx: *mut c_void,
    /// Bytes of physical address space (addresses at or above it are
    /// errors without a call); 0 means the whole 52-bit space.
    pub size: u64,
    /// Word read.
    pub read_u64: PtemuReadU64,
    /// Word write.
    pub write_u64: PtemuWriteU64,
    /// Word compare-exchange.
    pub cmpxchg_u64: PtemuCmpxchgU64,
    /// Byte read, or NULL.
    pub read_bytes: PtemuReadBytes,
    /// Byte write, or NULL.
    pub write_bytes: PtemuWriteBytes,
}

/// How the TLB is sized. [`ptemu_config_default`] fills in the defaults.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PtemuConfig {
    /// Slots of each main table (one per privilege mode and PCID context):
    /// a power of two in 8..=1048576. A 256-slot first level sits in front
    /// of each (the Rust API's default; its size is a compile-time
    /// parameter there).
    pub entries: u32,
    /// PCIDs whose entries are kept at once, 1..=4096.
    pub contexts: u32,
    /// MAXPHYADDR, 1..=52.
    pub maxphyaddr: u8,
    /// 0: a cached entry that forbids an access raises the #PF the CPU
    /// would (at most one spurious #PF after a permission is raised without
    /// invalidation). 1: walk again first, as QEMU does.
    pub stale_rewalk: u8,
    /// Entries of the PML4 paging-structure cache per PCID context: 0
    /// (none) or a power of two up to 512.
    pub pml4_cache: u32,
    /// Entries of the PDPTE cache per context: 0 or a power of two up to
    /// 4096.
    pub pdpte_cache: u32,
    /// Entries of the PDE cache per context: 0 or a power of two up to
    /// 4096. All three 0: every TLB miss walks from CR3, as QEMU does.
    pub pde_cache: u32,
}

/// The paging registers. [`ptemu_regs_long_mode`] gives 4-level paging
/// with CR0.PG/PE/WP, CR4.PAE, EFER.LME/LMA/NXE and CPL 0.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PtemuRegs {
    /// CR0.
    pub cr0: u64,
    /// CR3 (bit 63 is an operand of MOV to CR3, never part of CR3).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// PKRU.
    pub pkru: u32,
    /// Current privilege level, 0..=3.
    pub cpl: u8,
    /// EFLAGS.AC (0 or 1).
    pub ac: u8,
}

/// The MMU's counters since creation or [`ptemu_reset_stats`].
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PtemuStats {
    /// Accesses answered without a walk (first level or main table).
    pub hits: u64,
    /// Accesses answered from the victim cache.
    pub victim_hits: u64,
    /// Page walks.
    pub misses: u64,
    /// Entries installed from completed walks.
    pub fills: u64,
    /// Page faults raised.
    pub faults: u64,
    /// Page faults raised by a cached entry without walking.
    pub cached_faults: u64,
    /// INVLPG instructions (canonical addresses).
    pub flush_invlpg: u64,
    /// INVPCID by type 0..=3.
    pub flush_invpcid: [u64; 4],
    /// MOV to CR3 that flushed.
    pub flush_cr3: u64,
    /// MOV to CR3 with PCIDE=1 and bit 63 set (no flush).
    pub flush_cr3_noflush: u64,
    /// MOV to CR4 that flushed.
    pub flush_cr4: u64,
    /// MOV to CR0 that flushed.
    pub flush_cr0: u64,
    /// EFER writes that flushed.
    pub flush_efer: u64,
    /// Page faults, each dropping the faulting address's entries.
    pub flush_fault: u64,
    /// [`ptemu_flush_all`] and [`ptemu_set_regs`].
    pub flush_explicit: u64,
    /// PCID contexts dropped to make room for another.
    pub context_evictions: u64,
    /// Comparator rebuilds (PKRU, CR4.PKE, CR4.SMEP changes).
    pub rederive: u64,
    /// Walks that started from the PDE cache (one entry read).
    pub psc_pde_hits: u64,
    /// Walks that started from the PDPTE cache.
    pub psc_pdpte_hits: u64,
    /// Walks that started from the PML4 cache.
    pub psc_pml4_hits: u64,
    /// PDE-cache entries created.
    pub psc_pde_fills: u64,
    /// PDPTE-cache entries created.
    pub psc_pdpte_fills: u64,
    /// PML4-cache entries created.
    pub psc_pml4_fills: u64,
}

impl From<ptemu_mmu::Config> for PtemuConfig {
    fn from(c: ptemu_mmu::Config) -> Self {
        Self {
            entries: u32::try_from(c.entries).unwrap_or(u32::MAX),
            contexts: u32::try_from(c.contexts).unwrap_or(u32::MAX),
            maxphyaddr: c.maxphyaddr,
            stale_rewalk: u8::from(c.stale == ptemu_mmu::StalePolicy::Rewalk),
            pml4_cache: u32::try_from(c.pml4_cache).unwrap_or(u32::MAX),
            pdpte_cache: u32::try_from(c.pdpte_cache).unwrap_or(u32::MAX),
            pde_cache: u32::try_from(c.pde_cache).unwrap_or(u32::MAX),
        }
    }
}

impl PtemuConfig {
    fn to_mmu(self) -> Result<ptemu_mmu::Config, &'static str> {
        let stale = match self.stale_rewalk {
            0 => ptemu_mmu::StalePolicy::Faithful,
            1 => ptemu_mmu::StalePolicy::Rewalk,
            _ => return Err("stale_rewalk must be 0 or 1"),
        };
        Ok(ptemu_mmu::Config {
            entries: self.entries as usize,
            contexts: self.contexts as usize,
            maxphyaddr: self.maxphyaddr,
            stale,
            pml4_cache: self.pml4_cache as usize,
            pdpte_cache: self.pdpte_cache as usize,
            pde_cache: self.pde_cache as usize,
        })
    }
}

impl From<ptemu_mmu::Regs> for PtemuRegs {
    fn from(r: ptemu_mmu::Regs) -> Self {
        Self {
            cr0: r.cr0,
            cr3: r.cr3,
            cr4: r.cr4,
            efer: r.efer,
            pkru: r.pkru,
            cpl: r.cpl,
            ac: u8::from(r.ac),
        }
    }
}

impl PtemuRegs {
    fn to_mmu(self) -> Result<ptemu_mmu::Regs, &'static str> {
        if self.cpl > 3 {
            return Err("cpl must be 0..=3");
        }
        if self.ac > 1 {
            return Err("ac must be 0 or 1");
        }
        Ok(ptemu_mmu::Regs {
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            efer: self.efer,
            pkru: self.pkru,
            cpl: self.cpl,
            ac: self.ac != 0,
        })
    }
}

impl From<ptemu_mmu::Stats> for PtemuStats {
    fn from(s: ptemu_mmu::Stats) -> Self {
        let f = &s.flushes;
        Self {
            hits: s.hits,
            victim_hits: s.victim_hits,
            misses: s.misses,
            fills: s.fills,
            faults: s.faults,
            cached_faults: s.cached_faults,
            flush_invlpg: f.invlpg,
            flush_invpcid: f.invpcid,
            flush_cr3: f.cr3,
            flush_cr3_noflush: f.cr3_noflush,
            flush_cr4: f.cr4,
            flush_cr0: f.cr0,
            flush_efer: f.efer,
            flush_fault: f.fault,
            flush_explicit: f.explicit,
            context_evictions: f.context_evictions,
            rederive: f.rederive,
            psc_pde_hits: s.psc.pde_hits,
            psc_pdpte_hits: s.psc.pdpte_hits,
            psc_pml4_hits: s.psc.pml4_hits,
            psc_pde_fills: s.psc.pde_fills,
            psc_pdpte_fills: s.psc.pdpte_fills,
            psc_pml4_fills: s.psc.pml4_fills,
        }
    }
}

impl PtemuAccess {
    fn from_raw(raw: u32) -> Option<ptemu_mmu::pgtable::Access> {
        match raw {
            0 => Some(ptemu_mmu::pgtable::Access::Read),
            1 => Some(ptemu_mmu::pgtable::Access::Write),
            2 => Some(ptemu_mmu::pgtable::Access::Fetch),
            _ => None,
        }
    }
}

/// The status and the fault record of an MMU error.
fn classify(e: &ptemu_mmu::Error) -> (PtemuStatus, PtemuFault) {
    match e {
        ptemu_mmu::Error::PageFault(pf) => (
            PtemuStatus::PageFault,
            PtemuFault { vector: 14, error_code: pf.error_code.bits(), cr2: pf.addr.as_u64() },
        ),
        ptemu_mmu::Error::GeneralProtection(_) => {
            (PtemuStatus::GeneralProtection, PtemuFault { vector: 13, error_code: 0, cr2: 0 })
        }
        ptemu_mmu::Error::Mem(_) => (PtemuStatus::Memory, PtemuFault::default()),
        ptemu_mmu::Error::Contended(_) => (PtemuStatus::Contended, PtemuFault::default()),
        ptemu_mmu::Error::BadSize(_) => (PtemuStatus::BadSize, PtemuFault::default()),
        ptemu_mmu::Error::Unsupported(_) => (PtemuStatus::Unsupported, PtemuFault::default()),
    }
}

/// A fixed description of each status (what [`ptemu_status_name`] returns).
const fn status_text(s: PtemuStatus) -> &'static core::ffi::CStr {
    match s {
        PtemuStatus::Ok => c"ok",
        PtemuStatus::PageFault => c"page fault (#PF)",
        PtemuStatus::GeneralProtection => c"general protection (#GP)",
        PtemuStatus::Memory => c"no memory at a physical address",
        PtemuStatus::Contended => c"page-table entries kept changing during the walk",
        PtemuStatus::BadSize => c"access size outside 1..=64 bytes",
        PtemuStatus::Unsupported => c"unsupported paging mode",
        PtemuStatus::InvalidArgument => c"invalid argument",
    }
}
