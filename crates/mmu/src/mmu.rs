//! The MMU: paging state, the TLB, its fills and its invalidation.
//!
//! # The TLB's layout
//!
//! Translations are cached per *context* (a PCID the CPU has run under) and
//! per *mode* (QEMU's mmu_idx: user, supervisor with SMAP enforced,
//! supervisor without), in two levels, as a CPU keeps a small L1 dTLB in
//! front of a larger second-level TLB:
//!
//! - the *main table*: per (context, mode), a direct-mapped table of
//!   [`Config::entries`] slots (the size an emulator chooses, 8 to 2^20),
//!   indexed by the low bits of the virtual page number, and an 8-entry
//!   victim cache that catches entries evicted by a conflicting fill. A
//!   slot holds what the SDM says a TLB entry holds ([`CachedEntry`]:
//!   frame, R/W AND, U/S AND, XD OR, protection key, the leaf's Dirty bit,
//!   page size, global). Every decision (hits the first level cannot
//!   answer, stale-entry faults, invalidation) is made here.
//! - the *first level*: per (context, mode), a direct-mapped table of
//!   `FIRST` slots, a const parameter of [`Mmu`] ([`L1_SLOTS`] = 256 by
//!   default; [`Mmu::with_first_level`] takes others), so that safe Rust
//!   indexes it with a masked page number and no bounds check. It is all
//!   the hit path reads. Its slots are laid out by column: one array of comparators per
//!   access kind (read, write, fetch) and one of 4 KiB frames. A
//!   comparator holds the page number when that access is allowed in that
//!   mode under the current CR0.WP, CR4.SMEP, CR4.PKE and PKRU, and a value
//!   no page number has otherwise, so a hit is one load, one compare, one
//!   branch and one OR of the page offset into the frame (plus the hit
//!   counter's increment). The current (context, mode)'s first level is
//!   kept apart (`l1`, swapped in by pointer when the mode or the PCID
//!   changes), so the hit path indexes it by the page number's low bits
//!   alone.
//!
//! The first level only ever holds copies of main-table entries of its
//! (context, mode), with comparators derived under the current state: an
//! entry leaving the main table (eviction to the victim cache,
//! invalidation) takes its copy with it, a change of state that changes
//! what entries allow empties the first levels, and a first-level miss
//! whose page the main table holds refills the slot without walking. So
//! every invalidation rule is enforced on the main table alone, and the
//! first level answers exactly what the main table would.
//!
//! Write comparators are set only for entries whose Dirty bit is cached as
//! 1: the first write to a clean page misses, walks again, and the walk sets
//! D by compare-exchange before the write proceeds (QEMU's and Bochs's
//! "clean pages are read-only in the TLB").
//!
//! 2 MiB and 1 GiB pages are cached as 4 KiB entries tagged with their page
//! size. The range of virtual addresses any large entry covers is tracked
//! (as QEMU tracks one large-page region per mmu_idx); an invalidation of an
//! address inside it also scans the tables for large entries covering the
//! address, so that INVLPG of any 4 KiB page inside a 2 MiB page drops all
//! of that page's entries.
//!
//! # Fills
//!
//! Only a walk that completes fills: every level present, no reserved bit,
//! A set (and D for a write), the access allowed. Most misses find exactly
//! that already in memory (nothing for the walk to write), and a read-only
//! pass over the levels (pgtable's frame and reserved-bit masks) decides
//! them. Every other miss goes to the slow walk, which raises the #PF with
//! its exact error code or sets A and D by compare-exchange before the
//! entry is filled: pgtable's `translate` from CR3, or the same checks and
//! updates from a paging-structure-cache entry (below).
//!
//! # Paging-structure caches
//!
//! As the SDM (vol. 3A, 4.10.3) describes and Intel's cores do, the MMU
//! keeps, per PCID context, a PML4 cache (tagged by address bits 47:39), a
//! PDPTE cache (bits 47:30) and a PDE cache (bits 47:21). An entry holds
//! what the SDM says one holds: the next table's physical address, the R/W
//! and U/S of the entries from the PML4E down to it ANDed, their XD ORed.
//! Each cache is direct-mapped by the low bits of its tag, sized by
//! [`Config::pml4_cache`], [`Config::pdpte_cache`] and
//! [`Config::pde_cache`] (defaults 4, 4 and 32; all 0 is QEMU's behaviour,
//! every miss walking from CR3).
//!
//! A TLB miss probes the PDE cache, then the PDPTE cache, then the PML4
//! cache, and the read-only walk starts below the first hit (else at
//! CR3), reading only the lower levels, combining the cached permissions
//! with theirs, and filling the caches for the levels it read. Entries
//! are created only from entries that are present, accessed and free of
//! reserved bits, never for a PDPTE or PDE that maps a page. When the walk
//! from a cached entry does not complete without writing (an entry below
//! not present or not accessed, a D to set, the access denied), the slow
//! path walks again from the same cached entry, raising the #PF the CPU
//! would or setting A/D below it by compare-exchange, as a CPU does: a
//! guest that freed a page table without invalidating sees A and D set in
//! whatever the frame now holds. Without a cached entry the slow path is
//! pgtable's walk from CR3. With [`StalePolicy::Rewalk`], a walk from a
//! cached entry that faults drops the entries it used and walks again
//! from CR3, so that policy raises no #PF the tables in memory would not.
//!
//! Invalidation (SDM 4.10.4.1): INVLPG empties the current PCID's caches
//! whatever the address; INVPCID types 0 and 1 empty the named PCID's
//! (for type 0 the SDM allows all of them), types 2 and 3 every PCID's; a
//! MOV to CR3 empties those of the PCID it loads unless bit 63 is set with
//! CR4.PCIDE=1; every CR0, CR4 and EFER write that flushes the TLB
//! empties them at least as widely; a #PF drops the entries a walk of its
//! address would use; a context reused for another PCID starts empty.
//! Global pages play no part: there are no global paging-structure-cache
//! entries. So a guest that edits or frees an upper-level entry without
//! the invalidation keeps seeing the old entry for other pages under it,
//! as on real hardware (the bug class Linux's `tlb_remove_table` exists
//! for). [`Mmu::psc_entry`] shows an entry; [`Stats::psc`] counts where
//! walks started.
//!
//! # What a cached entry does that a walk would not (SDM 4.10.4.3)
//!
//! An entry stays until an invalidation covers it, a conflicting fill
//! evicts it (from the victim cache), or a #PF on its address drops it. So
//! after a guest raises a permission without invalidating, an access the
//! cached entry forbids raises a #PF from the cached entry (with
//! [`StalePolicy::Faithful`], the default), and that #PF drops the entry,
//! so the next access walks: at most one spurious #PF. After A or D is
//! cleared in memory without invalidation, hits do not set them again.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use pgtable::{
    Access, CpuState, EntryFlags, FrameKey, PAGE_SIZE, PageFault, PfErrorCode, PhysAddr, VirtAddr,
    translate as walk,
};

use crate::error::{Error, GpCause};
use crate::mem::GuestMem;
use crate::regs::*;

const PAGE_MASK: u64 = !(PAGE_SIZE - 1);
/// The page of an empty main or victim slot (no page address is odd).
const INVALID_TAG: u64 = 1;
/// Victim-cache entries per (context, mode).
pub const VICTIMS: usize = 8;
/// Modes (QEMU's mmu_idx) with a table each.
const MODES: usize = 3;
/// Largest access, in bytes (an AVX-512 register).
pub const MAX_ACCESS: usize = 64;
/// Slots of each first-level table of a plain [`Mmu`] (see the
/// [module](self) docs): a compile-time size, so that the hit path's index
/// is in bounds by construction. [`Mmu::with_first_level`] builds an MMU
/// with another; the main table behind it is sized at run time
/// ([`Config::entries`]).
pub const L1_SLOTS: usize = 256;
/// The largest first level [`Mmu::with_first_level`] accepts: 16384 slots,
/// 512 KiB per (context, mode).
pub const MAX_L1_SLOTS: usize = 1 << 14;
/// A first-level comparator no access matches (a page number has at most
/// 52 bits).
const NO_VPN: u64 = u64::MAX;

/// The privilege mode a table serves (QEMU's mmu_idx for x86).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// CPL 3.
    User = 0,
    /// CPL 0-2 with CR4.SMAP=1 and EFLAGS.AC=0: data accesses to user
    /// pages fault.
    SupervisorSmap = 1,
    /// CPL 0-2 with SMAP off or lifted by EFLAGS.AC.
    Supervisor = 2,
}

/// What to do when a cached entry forbids an access.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum StalePolicy {
    /// Raise the #PF the cached entry implies, as the CPU does, and drop the
    /// entry (the #PF invalidates it). A guest that raised a permission
    /// without invalidating sees the one spurious #PF the SDM allows.
    #[default]
    Faithful,
    /// Walk again before faulting (QEMU's behaviour): never a spurious #PF,
    /// from a TLB entry or from a paging-structure-cache entry (a walk
    /// that faults from a cached upper-level entry is retried from CR3).
    /// Also architecturally allowed, since a CPU may drop any entry.
    Rewalk,
}

/// How the TLB is sized and behaves.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Config {
    /// Slots of each main table (one per mode and context): a power of two
    /// in 8..=2^20, 32 bytes each. The first level in front of it has a
    /// size fixed at compile time ([`L1_SLOTS`] unless built with
    /// [`Mmu::with_first_level`]).
    pub entries: usize,
    /// PCIDs whose entries are kept at once, 1..=4096 (the least recently
    /// used one is dropped to make room; with CR4.PCIDE=0 only PCID 0 is
    /// used).
    pub contexts: usize,
    /// MAXPHYADDR, 1..=52: bits above it in an entry are reserved.
    pub maxphyaddr: u8,
    /// What a cached entry that forbids an access does.
    pub stale: StalePolicy,
    /// Entries of the PML4 cache (SDM 4.10.3) per PCID context: a power of
    /// two up to 512, or 0 for none. Direct-mapped by the low bits of the
    /// address's bits 47:39.
    pub pml4_cache: usize,
    /// Entries of the PDPTE cache per PCID context: a power of two up to
    /// 4096, or 0 for none. Direct-mapped by the low bits of bits 47:30.
    pub pdpte_cache: usize,
    /// Entries of the PDE cache per PCID context: a power of two up to
    /// 4096, or 0 for none. Direct-mapped by the low bits of bits 47:21.
    pub pde_cache: usize,
}

impl Default for Config {
    /// 256 slots per table, 4 contexts, MAXPHYADDR 52, faithful stale
    /// entries: 3 modes x 4 contexts x 256 x 32 bytes = 96 KiB of main
    /// tables, and at most as much again of first-level tables (8 KiB per
    /// (context, mode), allocated when first used). Paging-structure caches
    /// of 4 PML4 entries, 4 PDPTEs and 32 PDEs per context, the order of
    /// what Intel's cores have kept since Nehalem (a few PML4 and PDPT
    /// entries, a 32-entry PDE cache): 640 bytes per context.
    fn default() -> Self {
        Self {
            entries: 256,
            contexts: 4,
            maxphyaddr: 52,
            stale: StalePolicy::Faithful,
            pml4_cache: 4,
            pdpte_cache: 4,
            pde_cache: 32,
        }
    }
}

impl Config {
    /// No paging-structure caches (QEMU's behaviour: every TLB miss walks
    /// all four levels from CR3).
    pub const fn without_psc(self) -> Self {
        Self { pml4_cache: 0, pdpte_cache: 0, pde_cache: 0, ..self }
    }
}

/// A [`Config`] the MMU cannot be built with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ConfigError {
    /// `entries` is not a power of two in 8..=2^20.
    Entries(usize),
    /// `contexts` is outside 1..=4096.
    Contexts(usize),
    /// `maxphyaddr` is outside 1..=52.
    MaxPhyAddr(u8),
    /// `pml4_cache` is neither 0 nor a power of two up to 512.
    Pml4Cache(usize),
    /// `pdpte_cache` is neither 0 nor a power of two up to 4096.
    PdpteCache(usize),
    /// `pde_cache` is neither 0 nor a power of two up to 4096.
    PdeCache(usize),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Entries(n) => {
                write!(f, "TLB size {n} is not a power of two in 8..=1048576")
            }
            ConfigError::Contexts(n) => write!(f, "context count {n} is outside 1..=4096"),
            ConfigError::MaxPhyAddr(n) => write!(f, "MAXPHYADDR {n} is outside 1..=52"),
            ConfigError::Pml4Cache(n) => {
                write!(f, "PML4 cache size {n} is neither 0 nor a power of two up to 512")
            }
            ConfigError::PdpteCache(n) => {
                write!(f, "PDPTE cache size {n} is neither 0 nor a power of two up to 4096")
            }
            ConfigError::PdeCache(n) => {
                write!(f, "PDE cache size {n} is neither 0 nor a power of two up to 4096")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// Invalidations counted by cause.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Flushes {
    /// INVLPG instructions (canonical addresses).
    pub invlpg: u64,
    /// INVPCID by type (0: address, 1: context, 2: all, 3: all non-global).
    pub invpcid: [u64; 4],
    /// MOV to CR3 that flushed (PCIDE=0, or bit 63 clear).
    pub cr3: u64,
    /// MOV to CR3 with PCIDE=1 and bit 63 set (no flush).
    pub cr3_noflush: u64,
    /// MOV to CR4 that flushed (PGE or PCIDE 1->0: everything; PAE or SMEP
    /// 0->1: the current PCID).
    pub cr4: u64,
    /// MOV to CR0 that changed PG, WP or PE (everything).
    pub cr0: u64,
    /// WRMSR to EFER that changed NXE (everything).
    pub efer: u64,
    /// Page faults, each of which drops the faulting address's entries.
    pub fault: u64,
    /// [`Mmu::flush_all`] and [`Mmu::set_regs`].
    pub explicit: u64,
    /// Contexts dropped to make room for a new PCID.
    pub context_evictions: u64,
    /// Comparator rebuilds after a change of PKRU, CR4.PKE or CR4.SMEP
    /// (1->0) that keeps the entries but changes what they allow.
    pub rederive: u64,
}

/// What the MMU counted since construction or [`Mmu::reset_stats`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Stats {
    /// Accesses answered without a walk by the first level (the hit path:
    /// one compare) or, when the first level does not hold the page for
    /// that access, by the main table.
    pub hits: u64,
    /// Accesses answered from the victim cache.
    pub victim_hits: u64,
    /// Page walks (accesses, or pages of a split access, the TLB could not
    /// answer, including first writes to clean pages).
    pub misses: u64,
    /// Entries installed from completed walks.
    pub fills: u64,
    /// Page faults raised (by a walk or by a cached entry).
    pub faults: u64,
    /// Page faults raised by a cached entry without walking (possibly the
    /// spurious #PF of a stale entry).
    pub cached_faults: u64,
    /// Invalidations by cause.
    pub flushes: Flushes,
    /// The paging-structure caches' hits and fills.
    pub psc: PscStats,
}

/// The read-only walk's counts ([`Mmu::stats`] adds them in). Each walk
/// increments `walks`, or `flat` without the paging-structure caches (it
/// is a miss, and a fill unless counted in `unfilled`); with the caches,
/// the common walk (from the PDPTE cache, filling the PDE cache)
/// increments nothing else, one from the PDE cache `pde_hits`, and every
/// other walk `other`, counting its cache hits and fills in [`Stats`].
#[derive(Clone, Copy, Debug, Default)]
struct QuickCounts {
    /// Read-only walks (misses) with the paging-structure caches.
    walks: u64,
    /// Read-only walks (misses) without them.
    flat: u64,
    /// Walks that did not end in a fill from the read-only walk (they
    /// went on to the full walk, which counts its own fill).
    unfilled: u64,
    /// Common walks the PDE cache answered (PDE-cache hits).
    pde_hits: u64,
    /// Walks other than the common ones.
    other: u64,
}

/// What the paging-structure caches did (SDM 4.10.3). A miss of the TLB
/// probes the PDE cache, then the PDPTE cache, then the PML4 cache; the
/// first hit decides where the walk starts, and a miss of all three walks
/// from CR3.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct PscStats {
    /// Walks that started at the page table (a PDE-cache hit): one entry
    /// read.
    pub pde_hits: u64,
    /// Walks that started at the page directory (a PDPTE-cache hit).
    pub pdpte_hits: u64,
    /// Walks that started at the page-directory-pointer table (a PML4-cache
    /// hit).
    pub pml4_hits: u64,
    /// PDE-cache entries created.
    pub pde_fills: u64,
    /// PDPTE-cache entries created.
    pub pdpte_fills: u64,
    /// PML4-cache entries created.
    pub pml4_fills: u64,
}

/// One paging-structure-cache entry as [`Mmu::psc_entry`] reports it: what
/// the SDM says such an entry holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PscEntry {
    /// The physical address of the next-level table (the PDPT for a PML4
    /// entry, the PD for a PDPTE, the page table for a PDE).
    pub table: u64,
    /// R/W ANDed over this entry and those above it.
    pub writable: bool,
    /// U/S ANDed over this entry and those above it.
    pub user: bool,
    /// XD ORed over this entry and those above it.
    pub nx: bool,
}

/// A paging-structure cache (SDM 4.10.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PscLevel {
    /// PML4 cache: tagged by address bits 47:39.
    Pml4,
    /// PDPTE cache: tagged by address bits 47:30.
    Pdpte,
    /// PDE cache: tagged by address bits 47:21.
    Pde,
}

/// The physical bytes of an access: one piece, or two when it crosses a
/// 4 KiB boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Span {
    /// Where the first byte is.
    pub first: PhysAddr,
    /// Bytes in the first piece.
    pub first_len: usize,
    /// Where the bytes after the page boundary are, for a split access.
    pub second: Option<PhysAddr>,
    /// The access size.
    pub len: usize,
}

impl Span {
    /// Reads the span's bytes into `buf` (`buf.len()` must be `self.len`).
    pub fn read<M: GuestMem + ?Sized>(&self, mem: &M, buf: &mut [u8]) -> Result<(), Error> {
        let (a, b) = buf.split_at_mut(self.first_len.min(buf.len()));
        mem.read_bytes(self.first, a)?;
        if let Some(second) = self.second {
            mem.read_bytes(second, b)?;
        }
        Ok(())
    }

    /// Writes `data` to the span's bytes (`data.len()` must be `self.len`).
    pub fn write<M: GuestMem + ?Sized>(&self, mem: &mut M, data: &[u8]) -> Result<(), Error> {
        let (a, b) = data.split_at(self.first_len.min(data.len()));
        mem.write_bytes(self.first, a)?;
        if let Some(second) = self.second {
            mem.write_bytes(second, b)?;
        }
        Ok(())
    }
}

/// An INVPCID operation (its type and descriptor).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Invpcid {
    /// Type 0: the non-global entries for one address and one PCID.
    Address {
        /// The PCID.
        pcid: u16,
        /// The linear address.
        va: u64,
    },
    /// Type 1: the non-global entries of one PCID.
    Context {
        /// The PCID.
        pcid: u16,
    },
    /// Type 2: every entry, global ones included, of every PCID.
    All,
    /// Type 3: every non-global entry of every PCID.
    AllNonGlobal,
}

impl Invpcid {
    /// Decodes the instruction's register operand (the type) and its
    /// 128-bit memory descriptor (PCID in bits 11:0, bits 63:12 reserved,
    /// the linear address in the upper quadword). Invalid ones are #GP.
    pub fn from_raw(kind: u64, descriptor_lo: u64, va: u64) -> Result<Self, Error> {
        if descriptor_lo > CR3_PCID_MASK {
            return Err(Error::GeneralProtection(GpCause::Invpcid(
                "reserved descriptor bits 63:12 set",
            )));
        }
        let pcid = descriptor_lo as u16;
        match kind {
            0 => Ok(Invpcid::Address { pcid, va }),
            1 => Ok(Invpcid::Context { pcid }),
            2 => Ok(Invpcid::All),
            3 => Ok(Invpcid::AllNonGlobal),
            _ => Err(Error::GeneralProtection(GpCause::Invpcid("type above 3"))),
        }
    }

    /// The INVPCID type, 0..=3.
    pub const fn kind(&self) -> usize {
        match self {
            Invpcid::Address { .. } => 0,
            Invpcid::Context { .. } => 1,
            Invpcid::All => 2,
            Invpcid::AllNonGlobal => 3,
        }
    }
}

/// A TLB entry as the SDM describes one (the cold half of a slot).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct CachedEntry {
    /// The 4 KiB virtual page this slot answers for.
    pub page: u64,
    /// The physical address of that 4 KiB page.
    pub frame: u64,
    /// Size of the page the walk found, in bytes, minus one.
    pub size_mask: u64,
    /// G was set in the leaf and CR4.PGE was 1: the entry matches every
    /// PCID.
    pub global: bool,
    /// R/W ANDed over the levels.
    pub writable: bool,
    /// U/S ANDed over the levels.
    pub user: bool,
    /// XD ORed over the levels (with EFER.NXE=1).
    pub nx: bool,
    /// The leaf's Dirty bit as the walk left it.
    pub dirty: bool,
    /// The leaf's protection key.
    pub pkey: u8,
}

impl CachedEntry {
    fn covers(&self, va: u64) -> bool {
        (va & !self.size_mask) == (self.page & !self.size_mask)
    }
}

/// A first-level table: per access kind (read, write, fetch), the page
/// number each slot allows that access for, or [`NO_VPN`]; and the slot's
/// 4 KiB frame XORed with its page ([`FrameKey`]). The answer of a hit is
/// that key XORed with the address, one operation that yields a valid
/// `PhysAddr` (the frame with the page offset) once the comparator has
/// matched: no masking and no 52-bit truncation on the hit path (the
/// frame ORed with the masked offset took one instruction more, ~14 % of
/// the hit bench's time). Laid out by column: a hit reads one comparator
/// and one key, indexed by the same slot.
#[derive(Clone, Debug)]
struct L1<const N: usize> {
    tag: [[u64; N]; 3],
    key: [FrameKey; N],
    /// The (context, mode)'s victim cache, which travels with its first
    /// level: the miss path reaches the current set's through the box it
    /// already has, without a set index (a set whose first level was
    /// never created has never held an entry, so its victims are empty).
    victims: Victims,
}

impl<const N: usize> L1<N> {
    fn empty() -> Box<Self> {
        Box::new(Self {
            tag: [[NO_VPN; N]; 3],
            key: [FrameKey::default(); N],
            victims: Victims::default(),
        })
    }

    /// Empties every slot (a slot whose comparators are all [`NO_VPN`]
    /// answers nothing, whatever its frame).
    fn clear(&mut self) {
        for tag in &mut self.tag {
            tag.fill(NO_VPN);
        }
    }

    /// Caches `page` (4 KiB aligned) at `frame` for the accesses in `bits`
    /// (bit 0 read, 1 write, 2 fetch).
    #[inline(always)]
    fn put(&mut self, page: u64, frame: u64, bits: u8) {
        let vpn = page >> 12;
        let s = vpn as usize % N;
        // vpn where the bit is set, vpn | !0 = NO_VPN where it is clear:
        // the three masks come from one table row.
        let m = &TAG_MASKS[usize::from(bits)];
        self.tag[0][s] = vpn | m[0];
        self.tag[1][s] = vpn | m[1];
        self.tag[2][s] = vpn | m[2];
        self.key[s] = FrameKey::new(PhysAddr::new_truncate(frame), page);
    }

    /// Drops the copy of `page`, if the slot holds it.
    #[inline]
    fn forget(&mut self, page: u64) {
        let vpn = page >> 12;
        let s = vpn as usize % N;
        for tag in &mut self.tag {
            if tag[s] == vpn {
                tag[s] = NO_VPN;
            }
        }
    }
}

/// One (context, mode)'s victim cache: each slot's entry (its page
/// `INVALID_TAG` when empty), and the slot the next eviction replaces.
/// `key` filters the probe: every slot holding a page has that page's
/// [`victim_key`] there (an empty slot's key is anything), so a page whose
/// key is in no lane is in no slot, which one 16-byte vector decides; only
/// when a key matches are the entries' pages compared. (No separate array
/// of pages: an eviction writes the entry, the key and `next`, one cache
/// line fewer than with the pages apart.)
#[derive(Clone, Debug)]
struct Victims {
    key: [u16; VICTIMS],
    meta: [Meta; VICTIMS],
    next: u8,
}

// `Victims::key` is compared as one 16-byte vector; `Victims::next`
// wraps at 256, a multiple of VICTIMS.
const _: () = assert!(VICTIMS == 8 && 256 % VICTIMS == 0);

/// A page's key in [`Victims::key`]: the low 16 bits of its page number.
/// (Not 8: the low byte of the page number is the page's main slot, the
/// slot every entry in the victims was evicted from, so a byte key let a
/// page through whenever its slot was one of the last 8 evictions', 1 miss
/// in 32 at random, each one a mispredicted branch and 8 compares; with 16
/// bits, 1 in 8192.)
#[inline(always)]
fn victim_key(page: u64) -> u16 {
    (page >> 12) as u16
}

impl Default for Victims {
    fn default() -> Self {
        Self { key: [0; VICTIMS], meta: [Meta::default(); VICTIMS], next: 0 }
    }
}

/// Per set of allowed accesses (bit 0 read, 1 write, 2 fetch), what a
/// first-level comparator ORs into the page number: 0 for an allowed
/// access, `!0` (making it [`NO_VPN`]) for one that is not. A row for
/// every byte (only bits 0-2 are ever set), so that the fill's row index
/// needs no mask.
const TAG_MASKS: [[u64; 3]; 256] = {
    let mut t = [[0u64; 3]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 3 {
            t[b][k] = if b >> k & 1 == 0 { !0 } else { 0 };
            k += 1;
        }
        b += 1;
    }
    t
};

/// The cold half of a slot: the SDM's entry ([`CachedEntry`]) packed in
/// four words, empty when its page is `INVALID_TAG` (no page address is
/// odd). A fill writes the attributes as one word taken from the entries'
/// bits instead of six separate fields.
#[derive(Clone, Copy, Debug)]
struct Meta {
    page: u64,
    frame: u64,
    size_mask: u64,
    /// The fill table's index: its key (XD | W<<1 | U<<2 | D<<3) and the
    /// protection key << 4; and G << 8.
    attrs: u64,
}

// W and U at their entry bits (1 and 2, R/W and U/S), so that the fill
// takes them with one mask; XD at bit 0 (one shift from bit 63).
const A_NX: u64 = 1;
const A_W: u64 = 2;
const A_U: u64 = 4;
const A_D: u64 = 8;
const _: () = assert!(
    A_W == EntryFlags::WRITABLE.bits() && A_U == EntryFlags::USER.bits() && RW_US == A_W | A_U
);
const A_PKEY_SHIFT: u32 = 4;
const A_G: u64 = 0x100;

impl Default for Meta {
    fn default() -> Self {
        Self { page: INVALID_TAG, frame: 0, size_mask: 0, attrs: 0 }
    }
}

impl Meta {
    #[inline]
    fn valid(&self) -> bool {
        self.page != INVALID_TAG
    }

    #[inline]
    fn global(&self) -> bool {
        self.attrs & A_G != 0
    }

    fn of(e: &CachedEntry) -> Self {
        Self {
            page: e.page,
            frame: e.frame,
            size_mask: e.size_mask,
            attrs: if e.writable { A_W } else { 0 }
                | if e.user { A_U } else { 0 }
                | if e.nx { A_NX } else { 0 }
                | if e.dirty { A_D } else { 0 }
                | if e.global { A_G } else { 0 }
                | u64::from(e.pkey & 15) << A_PKEY_SHIFT,
        }
    }

    fn entry(&self) -> CachedEntry {
        CachedEntry {
            page: self.page,
            frame: self.frame,
            size_mask: self.size_mask,
            global: self.attrs & A_G != 0,
            writable: self.attrs & A_W != 0,
            user: self.attrs & A_U != 0,
            nx: self.attrs & A_NX != 0,
            dirty: self.attrs & A_D != 0,
            pkey: (self.attrs >> A_PKEY_SHIFT) as u8 & 15,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Ctx {
    pcid: u16,
    live: bool,
    stamp: u64,
}

/// The parts of the CPU state a comparator depends on.
#[derive(Clone, Copy, Debug)]
struct Policy {
    wp: bool,
    nxe: bool,
    smep: bool,
    pke: bool,
    pkru: u32,
}

enum Decision {
    Allow,
    /// A write allowed by the entry, but the entry's D is 0: walk again.
    NeedsDirty,
    Deny(PfErrorCode),
}

/// The SDM's permission check applied to a cached entry (the same rules as
/// pgtable's walk applies at the leaf).
fn decide(e: &CachedEntry, mode: Mode, access: Access, p: &Policy) -> Decision {
    let user = mode == Mode::User;
    let smap_blocks = mode == Mode::SupervisorSmap && e.user;
    let ok = if user && !e.user {
        false
    } else {
        match access {
            Access::Read => !smap_blocks,
            Access::Write => !smap_blocks && (e.writable || (!user && !p.wp)),
            Access::Fetch => {
                let smep_blocks = !user && e.user && p.smep;
                !e.nx && !smep_blocks
            }
        }
    };
    let pk = p.pke && e.user && access != Access::Fetch && {
        let k = u32::from(e.pkey);
        let ad = (p.pkru >> (2 * k)) & 1 != 0;
        let wd = (p.pkru >> (2 * k + 1)) & 1 != 0;
        ad || (access == Access::Write && wd && (user || p.wp))
    };
    if !ok || pk {
        let mut code = PfErrorCode::PRESENT;
        if pk {
            code |= PfErrorCode::PK;
        }
        if user {
            code |= PfErrorCode::USER;
        }
        match access {
            Access::Read => {}
            Access::Write => code |= PfErrorCode::WRITE,
            Access::Fetch => {
                if p.nxe || p.smep {
                    code |= PfErrorCode::FETCH;
                }
            }
        }
        return Decision::Deny(code);
    }
    if access == Access::Write && !e.dirty {
        return Decision::NeedsDirty;
    }
    Decision::Allow
}

/// Which entries a single-address invalidation drops.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PageScope {
    /// INVLPG: the current PCID's entries and global entries.
    Invlpg,
    /// #PF: the same entries as INVLPG.
    Fault,
    /// INVPCID type 0: one PCID's non-global entries.
    PcidNonGlobal(u16),
}

/// A deliberately wrong TLB, for showing that the property tests catch it.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Bug {
    /// Correct behaviour.
    #[default]
    None,
    /// INVLPG keeps the global entry for the address.
    InvlpgKeepsGlobal,
    /// MOV to CR3 keeps the non-global entries.
    Cr3KeepsNonGlobal,
    /// Write permission is cached for a clean page (D=0).
    WriteOnCleanPage,
    /// An invalidated main-table entry leaves its first-level copy behind.
    FirstLevelOutlivesEntry,
    /// INVLPG leaves the paging-structure caches as they are.
    InvlpgKeepsPsc,
    /// MOV to CR3 (without bit 63) leaves the paging-structure caches as
    /// they are.
    Cr3KeepsPsc,
    /// A #PF leaves the paging-structure-cache entries for its address.
    FaultKeepsPsc,
}

/// A paging-structure-cache slot: the tag (the address bits above the
/// level's entry, `va >> shift`) or [`NO_PSC`], and the walk so far as one
/// word ([`psc_word`]).
#[derive(Clone, Copy, Debug)]
struct PscSlot {
    tag: u64,
    word: u64,
}

/// The tag of an empty paging-structure-cache slot (a tag is at most 43
/// bits).
const NO_PSC: u64 = u64::MAX;
/// ORed into the tag a disabled cache's one slot is filled with: no
/// address's tag has bit 63 set, so the slot never matches.
const PSC_OFF: u64 = 1 << 63;
/// The caches' index in the per-level arrays: PDE, PDPTE, PML4, and the
/// address shift of each one's tag.
const PSC_PDE: usize = 0;
const PSC_PDPTE: usize = 1;
const PSC_PML4: usize = 2;
const PSC_SHIFT: [u32; 3] = [21, 30, 39];
/// The largest size of each cache (PDE, PDPTE, PML4) a [`Config`] may ask
/// for.
const PSC_MAX: [usize; 3] = [4096, 4096, 512];
/// Where each cache starts in [`Mmu::psc_cur`]: the current context's
/// caches at their largest sizes, so that an index masked by the cache's
/// size needs no bounds check and no base. Slot `k`'s tag is at
/// `PSC_AT[l] + 2 * k`, its word right after it: a probe and its fill
/// touch one cache line.
const PSC_AT: [usize; 3] = [0, 2 * PSC_MAX[0], 2 * (PSC_MAX[0] + PSC_MAX[1])];
const PSC_CUR: usize = 2 * (PSC_MAX[0] + PSC_MAX[1] + PSC_MAX[2]);
/// R/W and U/S.
const RW_US: u64 = EntryFlags::WRITABLE.bits() | EntryFlags::USER.bits();
/// XD.
const XD: u64 = EntryFlags::NX.bits();

/// The walk after entry `e`, when it was `w` before: `e`'s table address
/// (bits 51:12), R/W and U/S ANDed (bits 1 and 2), XD ORed (bit 63). A
/// paging-structure-cache entry holds this, and the walk carries it from
/// level to level (starting from CR3's address with R/W and U/S set).
/// The word's other bits are `e`'s: every reader masks them off (the table address with
/// `ADDR_MASK`, the permissions by their bits), so the word is formed in
/// four operations instead of a clean one's seven.
#[inline(always)]
fn psc_word(w: u64, e: u64) -> u64 {
    (e & (w | !RW_US)) | (w & XD)
}

/// The miss path's error: the `Error` itself is in [`Mmu::pending`].
#[derive(Debug)]
struct Deferred;

/// An x86-64 MMU: the paging registers and a TLB over pgtable's walk.
///
/// Memory is passed to each call, so the emulator keeps owning it; the MMU
/// reads and writes page-table entries only through [`pgtable::PhysMem`]
/// (A/D by compare-exchange) and data through [`GuestMem`].
///
/// ```
/// use ptemu_mmu::{Mmu, Config, Regs, Access};
/// use ptemu_mmu::pgtable::{BumpFrames, EntryFlags, FrameMem, PageSize, Pfn, VirtAddr, map, new_root};
///
/// let mut mem = FrameMem::new(16);
/// let mut frames = BumpFrames::new(Pfn(1), Pfn(8));
/// let cr3 = new_root(&mut mem, &mut frames)?;
/// let va = 0x7f00_0000_1000u64;
/// let flags = EntryFlags::PRESENT | EntryFlags::WRITABLE | EntryFlags::USER;
/// map(&mut mem, &mut frames, cr3, VirtAddr::new(va)?, Pfn(9), PageSize::Size4K, flags)?;
///
/// let mut mmu = Mmu::new(Config::default())?;
/// mmu.set_regs(Regs::long_mode(cr3.as_u64()))?;
/// mmu.set_cpl(3);
/// mmu.write(&mut mem, va + 0xffc, &[1, 2, 3, 4])?;
/// let mut buf = [0u8; 4];
/// mmu.read(&mut mem, va + 0xffc, &mut buf)?;
/// assert_eq!(buf, [1, 2, 3, 4]);
/// assert_eq!(mmu.translate(&mut mem, va + 5, Access::Read)?.as_u64(), 0x9005);
/// assert_eq!(mmu.stats().hits, 2);
/// // Crossing into an unmapped page: #PF with CR2 at the second page.
/// let pf = mmu.read(&mut mem, va + 0xffe, &mut buf).unwrap_err().page_fault().unwrap();
/// assert_eq!(pf.addr.as_u64(), va + 0x1000);
/// assert_eq!(pf.error_code.bits(), 0x4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mmu<const FIRST: usize = L1_SLOTS> {
    // Hot: the hit path reads these two fields.
    /// The current (context, mode)'s first level: the hit path indexes it
    /// with the page number's low bits alone (no set base, no bounds
    /// check).
    l1: Box<L1<FIRST>>,
    stats: Stats,
    /// The read-only walk's counts, from which [`Self::stats`] derives the
    /// misses, fills and paging-structure-cache counts of the walks it
    /// answers: a common miss increments one counter instead of four.
    quick: QuickCounts,

    /// Every other (context, mode)'s first level, `None` until the set is
    /// first used; the current set's place is `None` while its table is
    /// `l1`: a change of mode or context swaps two boxes.
    l1s: Vec<Option<Box<L1<FIRST>>>>,
    /// The current (context, mode) and the index of its first main slot.
    hot_set: usize,
    hot_base: usize,
    mask: usize,

    /// The main tables, `entries` slots per (context, mode).
    meta: Vec<Meta>,
    /// Per mode, the accesses (bit 0 read, 1 write, 2 fetch) an entry
    /// allows, indexed by XD | W<<1 | U<<2 | D<<3, and those PKRU denies to
    /// a user page, indexed by its key: fills derive comparators with two
    /// loads instead of running the permission rules.
    allow: [[u8; 16]; MODES],
    pk_deny: [[u8; 16]; MODES],
    /// Per mode, the accesses an entry allows with PKRU applied, indexed
    /// by the key of `allow` | the protection key << 4 (PKRU applies to
    /// user pages only): the fill's comparators with one load.
    allow_pk: [[u8; 256]; MODES],
    entries: usize,
    ctxs: Vec<Ctx>,
    cur_ctx: usize,
    clock: u64,
    mode: Mode,
    policy: Policy,
    /// The walk's view of the registers in the current mode.
    cpu: CpuState,
    /// Reserved bits of every entry under MAXPHYADDR and EFER.NXE.
    rsvd: u64,
    /// P | A | `rsvd`: the read-only walk's test of every entry (kept
    /// with `rsvd`, so that the walk derives its other masks from one
    /// loaded value).
    quick_must: u64,
    /// `quick_must` | PS: the common walk's test of its PDE, which a 2 MiB
    /// page fails too (it then tests PS).
    quick_must_ps: u64,
    /// XD (bit 63) when EFER.NXE=1, else 0; G (bit 8) when CR4.PGE=1,
    /// else 0: the fill's masks for those bits.
    nx_mask: u64,
    g_mask: u64,
    /// 0 when CR0.PG and EFER.LMA are both set (4-level paging in IA-32e
    /// mode), else 1: ORed into the miss path's canonical test, so that
    /// one test and branch decide both; kept by `set_policy`, which every
    /// register write calls.
    not_long_paging: u64,
    /// The current context's paging-structure caches: per cache (PDE,
    /// PDPTE, PML4), from [`PSC_AT`], each slot's tag (the address bits
    /// above the level's entry, or [`NO_PSC`]) and word ([`psc_word`]) side
    /// by side, each cache laid out at the largest size it may have (only
    /// the configured size's first slots are used): the miss path's probe
    /// is the address's tag masked by the size, compared with one load,
    /// and the word it then reads or the fill writes is in the tag's cache
    /// line. A disabled cache keeps one slot that never matches.
    psc_cur: Box<[u64; PSC_CUR]>,
    /// Every other context's caches, saved by `set_ctx` when it stops
    /// being current: per context, the PDE cache, the PDPTE cache and the
    /// PML4 cache, one after the other (the current context's slots here
    /// are stale while it is current).
    psc: Vec<PscSlot>,
    /// Slots of each context's caches.
    psc_per_ctx: usize,
    /// Where each cache (PDE, PDPTE, PML4) starts within a context's slots
    /// in `psc`, and its number of slots.
    psc_off: [usize; 3],
    psc_slots: [usize; 3],
    /// Each cache's index mask shifted left by one (the mask of a tag's
    /// offset in [`Self::psc_cur`]; 0 when disabled) and what its fills OR
    /// into the tag ([`PSC_OFF`] when disabled).
    psc_mask: [usize; 3],
    psc_poison: [u64; 3],
    /// Some cache is enabled: the miss path probes them.
    psc_on: bool,
    /// The error of the last miss that failed, which the miss path's
    /// functions return as [`Deferred`]: their result then fits in two
    /// registers instead of being written through memory (an `Error` is
    /// 32 bytes), and only a failing translation copies it out.
    pending: Error,
    /// Virtual range [lo, hi) covering every cached large-page entry.
    large_lo: u64,
    large_hi: u64,
    regs: Regs,
    config: Config,
    #[cfg(feature = "fault-injection")]
    bug: Bug,
}

impl Mmu {
    /// An MMU in the RESET state (paging off) with an empty TLB, whose first
    /// level has [`L1_SLOTS`] slots.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Self::with_first_level(config)
    }
}

impl<const FIRST: usize> Mmu<FIRST> {
    /// An MMU in the RESET state (paging off) with an empty TLB, whose first
    /// level has `FIRST` slots: a power of two in 8..=[`MAX_L1_SLOTS`]
    /// (checked at compile time), 32 bytes each per (context, mode) in
    /// use. A first level as large as the working set keeps every access
    /// on the hit path; beyond it, the main table answers without a walk.
    ///
    /// ```
    /// use ptemu_mmu::{Config, Mmu};
    /// let mmu = Mmu::<4096>::with_first_level(Config { entries: 4096, ..Config::default() })?;
    /// assert_eq!(mmu.config().entries, 4096);
    /// # Ok::<(), ptemu_mmu::ConfigError>(())
    /// ```
    ///
    /// A size that is not a power of two in range does not compile:
    ///
    /// ```compile_fail
    /// let mmu = ptemu_mmu::Mmu::<100>::with_first_level(ptemu_mmu::Config::default());
    /// ```
    pub fn with_first_level(config: Config) -> Result<Self, ConfigError> {
        const {
            assert!(
                FIRST.is_power_of_two() && FIRST >= 8 && FIRST <= MAX_L1_SLOTS,
                "the first level needs a power of two of slots in 8..=MAX_L1_SLOTS"
            )
        };
        let n = config.entries;
        if !n.is_power_of_two() || !(8..=1 << 20).contains(&n) {
            return Err(ConfigError::Entries(n));
        }
        if !(1..=4096).contains(&config.contexts) {
            return Err(ConfigError::Contexts(config.contexts));
        }
        if !(1..=52).contains(&config.maxphyaddr) {
            return Err(ConfigError::MaxPhyAddr(config.maxphyaddr));
        }
        let psc_ok = |n: usize, max: usize| n == 0 || (n.is_power_of_two() && n <= max);
        if !psc_ok(config.pml4_cache, 512) {
            return Err(ConfigError::Pml4Cache(config.pml4_cache));
        }
        if !psc_ok(config.pdpte_cache, 4096) {
            return Err(ConfigError::PdpteCache(config.pdpte_cache));
        }
        if !psc_ok(config.pde_cache, 4096) {
            return Err(ConfigError::PdeCache(config.pde_cache));
        }
        let psc_sizes = [config.pde_cache, config.pdpte_cache, config.pml4_cache];
        let psc_slots = psc_sizes.map(|n| n.max(1));
        let psc_off = [0, psc_slots[0], psc_slots[0] + psc_slots[1]];
        let psc_per_ctx = psc_slots.iter().sum::<usize>();
        let sets = config.contexts * MODES;
        let mut ctxs = vec![Ctx { pcid: 0, live: false, stamp: 0 }; config.contexts];
        ctxs[0].live = true;
        let regs = Regs::default();
        Ok(Self {
            l1: L1::empty(),
            stats: Stats::default(),
            quick: QuickCounts::default(),
            l1s: vec![None; sets],
            hot_set: 0,
            hot_base: 0,
            mask: n - 1,
            meta: vec![Meta::default(); sets * n],
            allow: [[0; 16]; MODES],
            pk_deny: [[0; 16]; MODES],
            allow_pk: [[0; 256]; MODES],
            entries: n,
            ctxs,
            cur_ctx: 0,
            clock: 0,
            mode: Mode::Supervisor,
            cpu: CpuState::default(),
            rsvd: 0,
            quick_must: P_A,
            quick_must_ps: P_A | EntryFlags::PS.bits(),
            nx_mask: 0,
            g_mask: 0,
            not_long_paging: 1,
            policy: Policy { wp: false, nxe: false, smep: false, pke: false, pkru: 0 },
            psc_cur: {
                let mut cur: Box<[u64; PSC_CUR]> =
                    vec![0; PSC_CUR].into_boxed_slice().try_into().expect("PSC_CUR words");
                for l in [PSC_PDE, PSC_PDPTE, PSC_PML4] {
                    for k in 0..psc_slots[l] {
                        cur[PSC_AT[l] + 2 * k] = NO_PSC;
                    }
                }
                cur
            },
            psc: vec![PscSlot { tag: NO_PSC, word: 0 }; config.contexts * psc_per_ctx],
            psc_per_ctx,
            psc_off,
            psc_slots,
            psc_mask: psc_slots.map(|n| (n - 1) << 1),
            psc_poison: psc_sizes.map(|n| if n == 0 { PSC_OFF } else { 0 }),
            psc_on: psc_sizes.iter().any(|&n| n != 0),
            pending: Error::BadSize(0),
            large_lo: u64::MAX,
            large_hi: 0,
            regs,
            config,
            #[cfg(feature = "fault-injection")]
            bug: Bug::None,
        }
        .with_policy())
    }

    fn with_policy(mut self) -> Self {
        self.set_policy();
        self
    }

    /// Recomputes the policy and the fill tables from the registers.
    fn set_policy(&mut self) {
        self.policy = policy_of(&self.regs);
        let long_paging = self.regs.paging() && self.regs.efer & EFER_LMA != 0;
        self.not_long_paging = u64::from(!long_paging);
        // Functions of EFER.NXE and CR4.PGE alone, not of the mode.
        self.rsvd = pgtable::entry::cpu_reserved_mask(self.config.maxphyaddr, self.policy.nxe);
        self.quick_must = P_A | self.rsvd;
        self.quick_must_ps = self.quick_must | EntryFlags::PS.bits();
        self.nx_mask = if self.policy.nxe { EntryFlags::NX.bits() } else { 0 };
        self.g_mask = if self.regs.cr4 & CR4_PGE != 0 { EntryFlags::GLOBAL.bits() } else { 0 };
        let modes = [Mode::User, Mode::SupervisorSmap, Mode::Supervisor];
        for (m, mode) in modes.into_iter().enumerate() {
            for key in 0..16u8 {
                let e = CachedEntry {
                    writable: u64::from(key) & A_W != 0,
                    user: u64::from(key) & A_U != 0,
                    nx: u64::from(key) & A_NX != 0,
                    dirty: u64::from(key) & A_D != 0,
                    ..CachedEntry::default()
                };
                let no_pk = Policy { pke: false, ..self.policy };
                let mut bits = 0u8;
                for (k, access) in
                    [Access::Read, Access::Write, Access::Fetch].into_iter().enumerate()
                {
                    let allow = match decide(&e, mode, access, &no_pk) {
                        Decision::Allow => true,
                        #[cfg(feature = "fault-injection")]
                        Decision::NeedsDirty => self.bug == Bug::WriteOnCleanPage,
                        _ => false,
                    };
                    bits |= u8::from(allow) << k;
                }
                self.allow[m][usize::from(key)] = bits;
                // What PKRU takes away from a user page with key `key`.
                let p = &self.policy;
                let kk = u32::from(key);
                let ad = (p.pkru >> (2 * kk)) & 1 != 0;
                let wd = (p.pkru >> (2 * kk + 1)) & 1 != 0;
                let user = mode == Mode::User;
                let deny_r = p.pke && ad;
                let deny_w = p.pke && (ad || (wd && (user || p.wp)));
                self.pk_deny[m][usize::from(key)] = u8::from(deny_r) | (u8::from(deny_w) << 1);
            }
            for (x, out) in self.allow_pk[m].iter_mut().enumerate() {
                let (key, pkey) = (x & 15, x >> 4);
                let user = key as u64 & A_U != 0;
                let deny = if user { self.pk_deny[m][pkey] } else { 0 };
                *out = self.allow[m][key] & !deny;
            }
        }
        self.update_mode();
    }

    /// The configuration the MMU was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The paging registers.
    pub fn regs(&self) -> &Regs {
        &self.regs
    }

    /// The counters.
    ///
    /// Returned by value: the counts of the common miss are kept in a
    /// form that costs the miss less to update (one increment instead of
    /// four) and are added in here.
    pub fn stats(&self) -> Stats {
        let q = &self.quick;
        let mut s = self.stats;
        s.misses += q.walks + q.flat;
        s.fills += q.walks + q.flat - q.unfilled;
        // The read-only walks through the PDPTE cache that filled the
        // PDE cache: every walk but those counted elsewhere and those the
        // PDE cache answered.
        let common = q.walks - q.other - q.pde_hits;
        s.psc.pde_hits += q.pde_hits;
        s.psc.pdpte_hits += common;
        s.psc.pde_fills += common;
        s
    }

    /// Zeroes the counters.
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
        self.quick = QuickCounts::default();
    }

    /// The mode accesses are currently made in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Makes the TLB deliberately wrong (tests only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject(&mut self, bug: Bug) {
        self.bug = bug;
        self.set_policy();
        self.rederive_all();
    }

    // ----- the hit path -------------------------------------------------

    /// Translates the byte at `va` for `access`, walking the tables (and
    /// setting A/D) on a miss.
    #[inline]
    pub fn translate<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        access: Access,
    ) -> Result<PhysAddr, Error> {
        let vpn = va >> 12;
        let s = vpn as usize % FIRST;
        if self.l1.tag[access as usize][s] == vpn {
            self.stats.hits += 1;
            // The comparator matched: `va` is in the key's page.
            return Ok(self.l1.key[s].phys(va));
        }
        let r = self.translate_l1_miss(mem, va, access);
        self.undefer(r)
    }

    /// Translates an access of `size` bytes (1..=64) at `va`. An access
    /// that crosses a 4 KiB boundary is translated page by page, first
    /// page first, as the CPU does: both pages are checked (and their A/D
    /// set) before the span is returned, and a fault on the second page
    /// reports CR2 = the first byte of that page.
    #[inline]
    pub fn translate_sized<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        size: usize,
        access: Access,
    ) -> Result<Span, Error> {
        if size.wrapping_sub(1) < MAX_ACCESS {
            let last = va.wrapping_add(size as u64 - 1);
            let s = (va >> 12) as usize % FIRST;
            // A crossing access compares the last byte's page number with
            // the first byte's slot, which only holds page numbers of the
            // first byte's residue: never equal, so it takes the slow path.
            if self.l1.tag[access as usize][s] == last >> 12 {
                self.stats.hits += 1;
                let pa = self.l1.key[s].phys(va);
                return Ok(Span { first: pa, first_len: size, second: None, len: size });
            }
        }
        self.translate_sized_slow(mem, va, size, access)
    }

    /// Reads `buf.len()` (1..=64) bytes at `va` as a data read.
    #[inline]
    pub fn read<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let span = self.translate_sized(mem, va, buf.len(), Access::Read)?;
        span.read(mem, buf)
    }

    /// Fetches `buf.len()` (1..=64) instruction bytes at `va`.
    #[inline]
    pub fn fetch<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let span = self.translate_sized(mem, va, buf.len(), Access::Fetch)?;
        span.read(mem, buf)
    }

    /// Writes `data` (1..=64 bytes) at `va`. Both pages of a split write
    /// are translated before any byte is written, so a fault on either
    /// leaves memory's data as it was.
    #[inline]
    pub fn write<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        data: &[u8],
    ) -> Result<(), Error> {
        let span = self.translate_sized(mem, va, data.len(), Access::Write)?;
        span.write(mem, data)
    }

    /// Reads a little-endian u64 at `va`.
    pub fn read_u64<M: GuestMem + ?Sized>(&mut self, mem: &mut M, va: u64) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.read(mem, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64 at `va`.
    pub fn write_u64<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        value: u64,
    ) -> Result<(), Error> {
        self.write(mem, va, &value.to_le_bytes())
    }

    // ----- the slow path ------------------------------------------------

    #[inline(never)]
    fn translate_sized_slow<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        size: usize,
        access: Access,
    ) -> Result<Span, Error> {
        if !(1..=MAX_ACCESS).contains(&size) {
            return Err(Error::BadSize(size));
        }
        let r = self.translate_l1_miss(mem, va, access);
        let first = self.undefer(r)?;
        let in_first = (PAGE_SIZE - (va & (PAGE_SIZE - 1))) as usize;
        if size <= in_first {
            return Ok(Span { first, first_len: size, second: None, len: size });
        }
        let next = va.wrapping_add(in_first as u64);
        // Crossing from the top of the lower half into the hole is #GP.
        if self.regs.paging() && !VirtAddr::is_canonical(next) {
            return Err(Error::GeneralProtection(GpCause::NonCanonical(next)));
        }
        let r = self.translate_l1_miss(mem, next, access);
        let second = self.undefer(r)?;
        Ok(Span { first, first_len: in_first, second: Some(second), len: size })
    }

    /// Translates one byte's page the first level did not answer. The
    /// common cases run straight through here: the main table holds the
    /// page and allows the access (a hit: the entry's comparators are
    /// copied into the first level), or neither the main table nor the
    /// victim cache holds it and a read-only walk finds it (a miss that
    /// fills). Everything else (paging off or outside IA-32e mode, a
    /// non-canonical address, a victim hit, a cached entry that denies
    /// the access, a walk that faults or sets A/D) goes to the slow path.
    /// Main and victim entries exist only while paging is on in IA-32e
    /// mode and only for canonical pages, so the main-table test needs no
    /// check before it.
    #[inline(never)]
    fn translate_l1_miss<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        access: Access,
    ) -> Result<PhysAddr, Deferred> {
        let page = va & PAGE_MASK;
        let i = self.hot_base + ((va >> 12) as usize & self.mask);
        let Some(m) = self.meta.get(i) else {
            return self.slow_page(mem, va, access);
        };
        if m.page == page {
            let bits = self.allow_attrs(m.attrs);
            if bits >> (access as u32) & 1 != 0 {
                let frame = m.frame;
                self.stats.hits += 1;
                self.l1.put(page, frame, bits);
                return Ok(PhysAddr::new_truncate(frame | (va & !PAGE_MASK)));
            }
            return self.slow_page(mem, va, access);
        }
        // Paging off or outside IA-32e mode, or a non-canonical address
        // (bits 63:47 not all equal: adding 2^47 carries out of them or
        // leaves one set), in one test and branch.
        let outside = (va.wrapping_add(1 << 47) >> 48) | self.not_long_paging;
        if outside != 0 || self.victims_hold(page) {
            return self.slow_page(mem, va, access);
        }
        if self.psc_on {
            self.miss_fill::<M, true>(mem, va, access, i)
        } else {
            self.miss_fill::<M, false>(mem, va, access, i)
        }
    }

    /// The common miss, after [`Self::translate_l1_miss`]'s checks (paging
    /// on in IA-32e mode, a canonical address, neither the main table nor
    /// the victims holding the page): the read-only walk and the fill, or
    /// pgtable's walk when the read-only one cannot decide; `i` is the
    /// page's main slot, which holds another page or none (used without
    /// the caches; with them, the install computes it again). A function of
    /// its own so that the values the checks kept in registers are not
    /// carried (spilled) across the walk.
    #[inline(never)]
    fn miss_fill<M: pgtable::PhysMem + ?Sized, const PSC: bool>(
        &mut self,
        mem: &mut M,
        va: u64,
        access: Access,
        i: usize,
    ) -> Result<PhysAddr, Deferred> {
        // One entry per page and set: the victim filter let through no
        // page the victims hold.
        debug_assert!(self.probe_victims(self.hot_set, va & PAGE_MASK).is_none());
        // The miss is counted by the read-only walk (`QuickCounts::walks`).
        if let Some((e, bits)) = self.quick_walk::<M, PSC>(mem, va) {
            if bits >> (access as u32) & 1 != 0 {
                let pa = e.frame | (va & !PAGE_MASK);
                // With the caches, computing the slot again costs fewer
                // instructions than keeping `i` (spilled) across the
                // walk; without them, the other way round.
                let i = if PSC { self.hot_base + ((va >> 12) as usize & self.mask) } else { i };
                self.install(i, e, bits, None, true, true);
                return Ok(PhysAddr::new_truncate(pa));
            }
        }
        self.quick.unfilled += 1;
        self.slow_walk(mem, va, access)
    }

    /// [`Self::translate_page`], its error kept in [`Self::pending`].
    #[cold]
    #[inline(never)]
    fn slow_page<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        access: Access,
    ) -> Result<PhysAddr, Deferred> {
        let r = self.translate_page(mem, va, access);
        self.defer(r)
    }

    /// [`Self::full_walk`] for a miss the read-only walk did not answer,
    /// its error kept in [`Self::pending`].
    #[cold]
    #[inline(never)]
    fn slow_walk<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        access: Access,
    ) -> Result<PhysAddr, Deferred> {
        let r = self.full_walk(mem, VirtAddr::new_truncate(va), access, None);
        self.defer(r)
    }

    /// Keeps `r`'s error in [`Self::pending`], for [`Self::undefer`].
    #[inline(always)]
    fn defer(&mut self, r: Result<PhysAddr, Error>) -> Result<PhysAddr, Deferred> {
        r.map_err(|e| {
            self.pending = e;
            Deferred
        })
    }

    /// The result [`Self::defer`] kept: the error from [`Self::pending`].
    #[inline(always)]
    fn undefer<T>(&self, r: Result<T, Deferred>) -> Result<T, Error> {
        r.map_err(|Deferred| self.pending)
    }

    /// Translates one byte's page through the slow path: victim cache,
    /// cached-entry decision, walk and fill.
    #[cold]
    #[inline(never)]
    fn translate_page<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        va: u64,
        access: Access,
    ) -> Result<PhysAddr, Error> {
        if !self.regs.paging() {
            return PhysAddr::new_with_width(va, self.config.maxphyaddr).map_err(|_| {
                Error::Mem(pgtable::MemError::OutOfRange {
                    addr: PhysAddr::new_truncate(va),
                    size: 1 << self.config.maxphyaddr,
                })
            });
        }
        if self.regs.efer & EFER_LMA == 0 {
            return Err(Error::Unsupported("paging outside IA-32e mode (32-bit or PAE paging)"));
        }
        let vaddr =
            VirtAddr::new(va).map_err(|_| Error::GeneralProtection(GpCause::NonCanonical(va)))?;
        let page = va & PAGE_MASK;
        let i = self.hot_base + ((va >> 12) as usize & self.mask);
        let found = if self.meta[i].page == page {
            Some((false, i))
        } else {
            self.probe_victims(self.hot_set, page).map(|j| (true, j))
        };
        if let Some((victim, j)) = found {
            let e = if victim {
                self.l1.victims.meta[j % VICTIMS].entry()
            } else {
                self.meta[j].entry()
            };
            match self.decide(&e, access) {
                Decision::Allow => {
                    if victim {
                        self.stats.victim_hits += 1;
                        core::mem::swap(&mut self.meta[i], &mut self.l1.victims.meta[j % VICTIMS]);
                        if self.l1.victims.meta[j % VICTIMS].valid() {
                            // Out of the main table: no first-level copy.
                            let out = self.l1.victims.meta[j % VICTIMS].page;
                            self.l1.victims.key[j % VICTIMS] = victim_key(out);
                            self.l1.forget(out);
                        }
                    } else {
                        // In the main table, not (or not for this access
                        // kind) in the first level.
                        self.stats.hits += 1;
                    }
                    let bits = self.allow_bits(&e);
                    self.l1.put(page, e.frame, bits);
                    return Ok(PhysAddr::new_truncate(e.frame | (va & !PAGE_MASK)));
                }
                Decision::Deny(code) if self.config.stale == StalePolicy::Faithful => {
                    self.stats.cached_faults += 1;
                    return Err(self.page_fault(PageFault { error_code: code, addr: vaddr }));
                }
                Decision::Deny(_) | Decision::NeedsDirty => {}
            }
        }
        // The miss is counted by the read-only walk (`QuickCounts::walks`).
        let stale_victim = match found {
            Some((true, j)) => Some(j),
            _ => None,
        };
        // The common miss: every entry present, valid and already accessed
        // (and dirty for a write), the access allowed. Nothing to write, so
        // a read-only pass decides it; anything else is pgtable's walk.
        let quick = if self.psc_on {
            self.quick_walk::<M, true>(mem, va)
        } else {
            self.quick_walk::<M, false>(mem, va)
        };
        if let Some((e, bits)) = quick {
            if bits >> (access as u32) & 1 != 0 {
                let pa = e.frame | (va & !PAGE_MASK);
                self.install(i, e, bits, stale_victim, false, true);
                return Ok(PhysAddr::new_truncate(pa));
            }
        }
        self.quick.unfilled += 1;
        self.full_walk(mem, vaddr, access, stale_victim)
    }

    /// A miss the read-only walk did not answer: the walk that raises
    /// faults and sets A/D by compare-exchange, and the fill. It starts
    /// from the deepest paging-structure-cache entry for the address, as
    /// the read-only walk did, or from CR3 (pgtable's walk).
    #[cold]
    #[inline(never)]
    fn full_walk<M: pgtable::PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        vaddr: VirtAddr,
        access: Access,
        stale_victim: Option<usize>,
    ) -> Result<PhysAddr, Error> {
        let cpu = self.cpu;
        let cr3 = PhysAddr::new_truncate(self.regs.cr3 & pgtable::entry::ADDR_MASK);
        let r = match self.psc_lookup(vaddr.as_u64()) {
            Some((w, first)) => match self.walk_from_psc(mem, vaddr, access, w, first) {
                // StalePolicy::Rewalk promises no #PF the tables in memory
                // would not raise: a walk from a cached entry that faults
                // drops the entries it used and walks again from CR3.
                Err(Error::PageFault(_)) if self.config.stale == StalePolicy::Rewalk => {
                    self.psc_forget(vaddr.as_u64());
                    walk(mem, cr3, vaddr, access, &cpu).map_err(Error::from)
                }
                r => r,
            },
            None => walk(mem, cr3, vaddr, access, &cpu).map_err(Error::from),
        };
        match r {
            Ok(t) => {
                self.fill(vaddr.as_u64(), &t, stale_victim);
                Ok(t.pa)
            }
            Err(Error::PageFault(pf)) => Err(self.page_fault(pf)),
            Err(e) => Err(e),
        }
    }

    /// The deepest paging-structure-cache entry of the current PCID for
    /// `va`: the walk so far ([`psc_word`]) and the level whose table it
    /// names.
    fn psc_lookup(&mut self, va: u64) -> Option<(u64, pgtable::Level)> {
        use pgtable::Level;
        for (l, level) in [(PSC_PDE, Level::Pt), (PSC_PDPTE, Level::Pd), (PSC_PML4, Level::Pdpt)] {
            let k = self.psc_index(l, va);
            if self.psc_cur[PSC_AT[l] + k] == va >> PSC_SHIFT[l] {
                let p = &mut self.stats.psc;
                match l {
                    PSC_PDE => p.pde_hits += 1,
                    PSC_PDPTE => p.pdpte_hits += 1,
                    _ => p.pml4_hits += 1,
                }
                return Some((self.psc_cur[PSC_AT[l] + k + 1], level));
            }
        }
        None
    }

    /// The #PF an access raises for a fault of kind `base` (not present:
    /// empty; a reserved bit: RSVD | P), as pgtable's walk forms it.
    fn walk_fault(&self, va: VirtAddr, access: Access, base: PfErrorCode) -> PageFault {
        let mut code = base;
        if self.mode == Mode::User {
            code |= PfErrorCode::USER;
        }
        match access {
            Access::Read => {}
            Access::Write => code |= PfErrorCode::WRITE,
            Access::Fetch => {
                if self.policy.nxe || self.policy.smep {
                    code |= PfErrorCode::FETCH;
                }
            }
        }
        PageFault { error_code: code, addr: va }
    }

    /// The walk of `va` a CPU makes from a paging-structure-cache entry
    /// (SDM 4.10.3.2): `w` the walk so far, `first` the level of the table
    /// it names. The entries below are read from memory with the same
    /// checks, faults, and A/D updates by compare-exchange as pgtable's
    /// walk makes from CR3 (including A set in a page that is no longer a
    /// page table, what a guest that freed a table without invalidating
    /// gets on hardware).
    fn walk_from_psc<M: pgtable::PhysMem + ?Sized>(
        &self,
        mem: &mut M,
        vaddr: VirtAddr,
        access: Access,
        w: u64,
        first: pgtable::Level,
    ) -> Result<pgtable::Translation, Error> {
        use pgtable::Level;
        use pgtable::entry::ADDR_MASK;
        let va = vaddr.as_u64();
        let levels = [Level::Pdpt, Level::Pd, Level::Pt];
        let start = levels.iter().position(|&l| l == first).unwrap_or(2);
        'retry: for _ in 0..pgtable::walk::MAX_WALK_RETRIES {
            let (mut all, mut any, mut table) = (w, w, w & ADDR_MASK);
            // The table entries read below the cache, for their A bits.
            let mut tables = [(PhysAddr::new_truncate(0), 0u64); 2];
            let mut n = 0;
            let mut leaf = None;
            for &level in &levels[start..] {
                let pa = PhysAddr::new_truncate(table | (((va >> level.shift()) & 511) << 3));
                let raw = mem.read_u64(pa)?;
                if raw & EntryFlags::PRESENT.bits() == 0 {
                    return Err(Error::PageFault(self.walk_fault(
                        vaddr,
                        access,
                        PfErrorCode::empty(),
                    )));
                }
                if raw & (self.rsvd | pgtable::entry::level_reserved_mask(raw, level)) != 0 {
                    let base = PfErrorCode::RSVD | PfErrorCode::PRESENT;
                    return Err(Error::PageFault(self.walk_fault(vaddr, access, base)));
                }
                all &= raw;
                any |= raw;
                if level == Level::Pt || raw & EntryFlags::PS.bits() != 0 {
                    leaf = Some((pa, raw, level));
                    break;
                }
                tables[n] = (pa, raw);
                n += 1;
                table = raw & ADDR_MASK;
            }
            let Some((leaf_pa, raw, level)) = leaf else { break };
            let perms = pgtable::Permissions {
                writable: all & EntryFlags::WRITABLE.bits() != 0,
                user: all & EntryFlags::USER.bits() != 0,
                nx: self.policy.nxe && any & XD != 0,
            };
            let e = CachedEntry {
                writable: perms.writable,
                user: perms.user,
                nx: perms.nx,
                dirty: true,
                pkey: pgtable::entry::pkey(raw),
                ..CachedEntry::default()
            };
            if let Decision::Deny(code) = decide(&e, self.mode, access, &self.policy) {
                return Err(Error::PageFault(PageFault { error_code: code, addr: vaddr }));
            }
            for &(pa, old) in &tables[..n] {
                if old & EntryFlags::ACCESSED.bits() == 0
                    && mem
                        .compare_exchange_u64(pa, old, old | EntryFlags::ACCESSED.bits())?
                        .is_err()
                {
                    continue 'retry;
                }
            }
            let mut set = EntryFlags::ACCESSED.bits();
            if access == Access::Write {
                set |= EntryFlags::DIRTY.bits();
            }
            let mut leaf_entry = raw;
            if raw & set != set {
                leaf_entry = raw | set;
                if mem.compare_exchange_u64(leaf_pa, raw, leaf_entry)?.is_err() {
                    continue 'retry;
                }
            }
            let page_size = pgtable::PageSize::of_level(level).unwrap_or(pgtable::PageSize::Size4K);
            let size_mask = page_size.bytes() - 1;
            let pa = (raw & ADDR_MASK & !size_mask) | (va & size_mask);
            return Ok(pgtable::Translation {
                pa: PhysAddr::new_truncate(pa),
                page_size,
                perms,
                leaf_entry_pa: leaf_pa,
                leaf_entry,
            });
        }
        Err(Error::Contended(vaddr))
    }

    /// A #PF drops the faulting address's entries (SDM 4.10.4.1), so a
    /// stale entry faults at most once.
    fn page_fault(&mut self, pf: PageFault) -> Error {
        self.stats.faults += 1;
        self.stats.flushes.fault += 1;
        self.invalidate_page(pf.addr.as_u64(), PageScope::Fault);
        Error::PageFault(pf)
    }

    fn decide(&self, e: &CachedEntry, access: Access) -> Decision {
        let d = decide(e, self.mode, access, &self.policy);
        #[cfg(feature = "fault-injection")]
        if self.bug == Bug::WriteOnCleanPage {
            if let Decision::NeedsDirty = d {
                return Decision::Allow;
            }
        }
        d
    }

    fn cpu_state(&self) -> CpuState {
        // Kept in `self.cpu` by `update_mode`, which every register change
        // ends with.
        let r = &self.regs;
        CpuState {
            wp: r.cr0 & CR0_WP != 0,
            nxe: r.efer & EFER_NXE != 0,
            smep: r.cr4 & CR4_SMEP != 0,
            smap: r.cr4 & CR4_SMAP != 0,
            pke: r.cr4 & CR4_PKE != 0,
            ac: r.ac,
            pkru: r.pkru,
            user: self.mode == Mode::User,
            maxphyaddr: self.config.maxphyaddr,
        }
    }

    fn set(&self, ctx: usize, mode: Mode) -> usize {
        ctx * MODES + mode as usize
    }

    /// The accesses `e` allows in the current mode now (bit 0 read, 1
    /// write with D cached, 2 fetch): the same answer as [`decide`]'s
    /// `Allow`.
    #[inline]
    fn allow_bits(&self, e: &CachedEntry) -> u8 {
        let key = if e.writable { A_W } else { 0 }
            | if e.user { A_U } else { 0 }
            | if e.nx { A_NX } else { 0 }
            | if e.dirty { A_D } else { 0 };
        let key = key as usize;
        self.allow_key(key, e.pkey)
    }

    /// [`Self::allow_bits`] from a packed entry's attributes.
    #[inline(always)]
    fn allow_attrs(&self, attrs: u64) -> u8 {
        self.allow_pk[self.mode as usize][(attrs & 0xff) as usize]
    }

    /// [`Self::allow_bits`] from the fill table's key (XD | W<<1 | U<<2 |
    /// D<<3) and the protection key.
    #[inline]
    fn allow_key(&self, key: usize, pkey: u8) -> u8 {
        self.allow_pk[self.mode as usize][(key % 16) | (usize::from(pkey % 16) << 4)]
    }

    /// Installs the walk's translation in the main slot; `stale_victim` is
    /// the victim slot that held an older entry for the page, if any.
    fn fill(&mut self, va: u64, t: &pgtable::Translation, stale_victim: Option<usize>) {
        let leaf = t.leaf_entry;
        let e = CachedEntry {
            page: va & PAGE_MASK,
            frame: t.pa.as_u64() & PAGE_MASK,
            size_mask: t.page_size.bytes() - 1,
            global: self.regs.cr4 & CR4_PGE != 0 && leaf & EntryFlags::GLOBAL.bits() != 0,
            writable: t.perms.writable,
            user: t.perms.user,
            nx: t.perms.nx,
            dirty: leaf & EntryFlags::DIRTY.bits() != 0,
            pkey: pgtable::entry::pkey(leaf),
        };
        let bits = self.allow_bits(&e);
        let i = self.hot_base + ((va >> 12) as usize & self.mask);
        self.install(i, Meta::of(&e), bits, stale_victim, false, false);
    }

    /// A read-only walk that succeeds only when the walk would write
    /// nothing: every entry read present, without reserved bits, with A
    /// set. It starts where the paging-structure caches let it (the PDE
    /// cache, then the PDPTE cache, then the PML4 cache, else CR3) and
    /// fills them for the levels it reads. It returns the entry the TLB
    /// would cache and the accesses it allows now ([`Self::allow_bits`],
    /// computed from the entries' bits); the caller still checks the
    /// access (and D for a write) against them and otherwise leaves the
    /// address to [`Self::full_walk`], which produces faults and sets A/D.
    #[inline(always)]
    fn quick_walk<M: pgtable::PhysMem + ?Sized, const PSC: bool>(
        &mut self,
        mem: &M,
        va: u64,
    ) -> Option<(Meta, u8)> {
        use pgtable::Level;
        use pgtable::entry::ADDR_MASK;
        const PS: u64 = EntryFlags::PS.bits();
        // P and A are never reserved bits: one test per entry finds either
        // clear or a reserved bit set.
        let must = self.quick_must;
        // The four levels written out, so that each step's level (its
        // index shift and reserved bits) is a constant, as in pgtable's
        // walk; a PML4E is never a leaf.
        // A PML4E's PS is reserved; a PDPTE's or PDE's selects the check
        // (a table entry has no reserved bits of its level, a large page's
        // are those below its frame).
        let must4 = must | PS;
        const LARGE_1G: u64 = 0x3fff_e000;
        const LARGE_2M: u64 = 0x001f_e000;
        if !PSC {
            self.quick.flat += 1;
            let cr3 = (self.regs.cr3 & ADDR_MASK) | RW_US;
            // `all` ANDs the entries used (R/W, U/S), `any` ORs them (XD).
            let e4 = quick_entry(mem, cr3 & ADDR_MASK, va, Level::Pml4, must4)?;
            let e3 = quick_read(mem, e4 & ADDR_MASK, va, Level::Pdpt)?;
            let (mut all, mut any) = (e4 & e3, e4 | e3);
            // A table entry passes one test (P, A, reserved bits, PS
            // clear); a large page fails it, and is tested for after it.
            if quick_ok(e3, must4).is_none() {
                if e3 & PS == 0 {
                    return None;
                }
                quick_ok(e3, must | LARGE_1G)?;
                return Some(self.quick_leaf(va, all, any, e3, (1 << 30) - 1));
            }
            let e2 = quick_read(mem, e3 & ADDR_MASK, va, Level::Pd)?;
            all &= e2;
            any |= e2;
            if quick_ok(e2, must4).is_none() {
                if e2 & PS == 0 {
                    return None;
                }
                quick_ok(e2, must | LARGE_2M)?;
                return Some(self.quick_leaf(va, all, any, e2, (1 << 21) - 1));
            }
            let e1 = quick_entry(mem, e2 & ADDR_MASK, va, Level::Pt, must)?;
            return Some(self.quick_leaf(va, all & e1, any | e1, e1, PAGE_SIZE - 1));
        }
        // With the caches: `w` is the walk so far ([`psc_word`]), the next
        // table and the permissions combined, from the deepest cache that
        // holds the address or from CR3; each level read fills its cache
        // (the slot probed for it).
        self.quick.walks += 1;
        let t2 = va >> 21;
        let k2 = self.psc_index(PSC_PDE, va);
        // The PDPTE and PML4 caches' offsets in `upper`, which starts at
        // the PDPTE cache.
        let k3 = self.psc_index(PSC_PDPTE, va);
        let k4 = self.psc_index(PSC_PML4, va) + PSC_AT[PSC_PML4] - PSC_AT[PSC_PDPTE];
        // The PDE cache's slot held as one reference (instead of the
        // box and the index) across the upper levels' reads (it cannot
        // fail: the index is below the cache's largest size).
        let (pde, upper) = self.psc_cur.split_at_mut(PSC_AT[PSC_PDPTE]);
        let s2: &mut [u64; 2] = (&mut pde[k2..k2 + 2]).try_into().ok()?;
        let t3 = va >> 30;
        let w2 = if s2[0] == t2 {
            self.quick.pde_hits += 1;
            s2[1]
        } else if upper[k3] == t3 {
            // The common walk (`QuickCounts`: its PDPTE-cache hit and its
            // PDE-cache fill are derived from `walks`): one that ends
            // otherwise counts itself as other here.
            let w3 = upper[k3 + 1];
            let Some(e2) = quick_read(mem, w3 & ADDR_MASK, va, Level::Pd) else {
                self.quick_other_pdpte();
                return None;
            };
            // One test for a table entry present, accessed and without
            // reserved bits; a 2 MiB page fails it too, and is tested for
            // after it.
            if quick_ok(e2, self.quick_must_ps).is_none() {
                self.quick_other_pdpte();
                if e2 & PS == 0 {
                    return None;
                }
                quick_ok(e2, must | LARGE_2M)?;
                return Some(self.quick_leaf(va, w3 & e2, w3 | e2, e2, (1 << 21) - 1));
            }
            let w = psc_word(w3, e2);
            *s2 = [t2 | self.psc_poison[PSC_PDE], w];
            w
        } else {
            self.quick.other += 1;
            let cr3 = (self.regs.cr3 & ADDR_MASK) | RW_US;
            let t4 = va >> 39;
            let w4 = if upper[k4] == t4 {
                self.stats.psc.pml4_hits += 1;
                upper[k4 + 1]
            } else {
                let e4 = quick_entry(mem, cr3 & ADDR_MASK, va, Level::Pml4, must4)?;
                let w = psc_word(cr3, e4);
                upper[k4] = t4 | self.psc_poison[PSC_PML4];
                upper[k4 + 1] = w;
                self.stats.psc.pml4_fills += 1;
                w
            };
            let e3 = quick_read(mem, w4 & ADDR_MASK, va, Level::Pdpt)?;
            if e3 & PS != 0 {
                quick_ok(e3, must | LARGE_1G)?;
                return Some(self.quick_leaf(va, w4 & e3, w4 | e3, e3, (1 << 30) - 1));
            }
            quick_ok(e3, must)?;
            let w3 = psc_word(w4, e3);
            upper[k3] = t3 | self.psc_poison[PSC_PDPTE];
            upper[k3 + 1] = w3;
            self.stats.psc.pdpte_fills += 1;
            let e2 = quick_read(mem, w3 & ADDR_MASK, va, Level::Pd)?;
            if e2 & PS != 0 {
                quick_ok(e2, must | LARGE_2M)?;
                return Some(self.quick_leaf(va, w3 & e2, w3 | e2, e2, (1 << 21) - 1));
            }
            quick_ok(e2, must)?;
            let w = psc_word(w3, e2);
            *s2 = [t2 | self.psc_poison[PSC_PDE], w];
            self.stats.psc.pde_fills += 1;
            w
        };
        let e1 = quick_entry(mem, w2 & ADDR_MASK, va, Level::Pt, must)?;
        Some(self.quick_leaf(va, w2 & e1, w2 | e1, e1, PAGE_SIZE - 1))
    }

    /// A read-only walk from the PDPTE cache that did not fill the PDE
    /// cache (a 2 MiB page, or a PDE it leaves to the full walk): counted
    /// as such rather than as a common walk.
    #[inline(always)]
    fn quick_other_pdpte(&mut self) {
        self.quick.other += 1;
        self.stats.psc.pdpte_hits += 1;
    }

    /// The read-only walk's result from the leaf `raw` (of a page of
    /// `size_mask + 1` bytes), with `all` the AND of the entries used,
    /// `any` their OR.
    /// A large page's range joins [`Self::large_lo`]..[`Self::large_hi`]
    /// here, where its size is a constant, rather than in the install
    /// (the range only has to cover every cached large page; one the
    /// access then does not install only widens it).
    #[inline(always)]
    fn quick_leaf(&mut self, va: u64, all: u64, any: u64, raw: u64, size_mask: u64) -> (Meta, u8) {
        use pgtable::entry::ADDR_MASK;
        // The 4 KiB frame the address falls in: pgtable's frame_mask, the
        // address bits above the page offset (a large page's bits below its
        // size are reserved, checked by the walk, except its PAT bit 12,
        // masked here).
        let frame = ((raw & ADDR_MASK & !size_mask) | (va & size_mask)) & PAGE_MASK;
        // The packed attributes straight from the bits: R/W (bit 1) and U/S
        // (bit 2) ANDed, XD (bit 63, with EFER.NXE) ORed, the leaf's D (bit
        // 6), its protection key (bits 62:59) and its G (bit 8, with
        // CR4.PGE), laid out as Meta::attrs.
        let attrs = (all & (A_W | A_U))
            | ((any & self.nx_mask) >> 63)
            | ((raw >> 3) & A_D)
            | ((raw >> 59) & 15) << A_PKEY_SHIFT
            | (raw & self.g_mask);
        let m = Meta { page: va & PAGE_MASK, frame, size_mask, attrs };
        if size_mask > PAGE_SIZE - 1 {
            self.track_large(va, size_mask);
        }
        (m, self.allow_attrs(attrs))
    }

    /// Widens the range of cached large pages to cover the page of
    /// `size_mask + 1` bytes at `va`.
    #[inline(always)]
    fn track_large(&mut self, va: u64, size_mask: u64) {
        let lo = va & !size_mask;
        self.large_lo = self.large_lo.min(lo);
        self.large_hi = self.large_hi.max(lo.wrapping_add(size_mask));
    }

    /// Puts `e` in main slot `i` (the current set's slot for its page) and
    /// its comparators (`bits`) in the first level, moving the slot's other
    /// entry to the victim cache. `other`: the caller knows the slot holds
    /// no entry for this page (a constant at each call: the test goes).
    /// `quick`: `e` comes from [`Self::quick_leaf`], which has tracked a
    /// large page's range already.
    // Always: left to itself, LLVM stops inlining it into the miss path
    // once `Mmu` is generic, which costs a miss about 14 instructions.
    #[inline(always)]
    fn install(
        &mut self,
        i: usize,
        e: Meta,
        bits: u8,
        stale_victim: Option<usize>,
        other: bool,
        quick: bool,
    ) {
        let page = e.page;
        let size_mask = e.size_mask;
        // One entry per page and set: drop the older copy in the victims.
        if let Some(j) = stale_victim {
            self.drop_victim(j);
        }
        debug_assert_eq!(i, self.hot_base + ((page >> 12) as usize & self.mask));
        // The main slot and the first level's box, each loaded (and the
        // slot's index checked) once for the eviction and the put.
        let slot = &mut self.meta[i];
        let old = slot.page;
        let l1 = &mut *self.l1;
        if old != INVALID_TAG && (other || old != page) {
            let v = &mut l1.victims;
            // `next` counts evictions; 256 is a multiple of VICTIMS, so
            // it wraps in step with the slots.
            let k = usize::from(v.next) % VICTIMS;
            v.next = v.next.wrapping_add(1);
            v.meta[k] = *slot;
            v.key[k] = victim_key(old);
            // Out of the main table: no first-level copy. With at least
            // FIRST main slots, `old` and `page` share a first-level
            // slot too, and the `put` below overwrites it.
            if self.mask < FIRST - 1 {
                l1.forget(old);
            }
        }
        *slot = e;
        l1.put(page, e.frame, bits);
        if !quick && size_mask > PAGE_SIZE - 1 {
            self.track_large(page, size_mask);
        }
        // A fill from the read-only walk is counted by `QuickCounts`.
        if !quick {
            self.stats.fills += 1;
        }
    }

    /// After a change of state that changes what entries allow without
    /// invalidating them: empties every first level, whose comparators
    /// were derived under the old state (each slot is derived again from
    /// the main table on its next access; the main tables and victim caches
    /// hold no comparators).
    fn rederive_all(&mut self) {
        self.clear_l1s();
    }

    /// Empties every first level.
    fn clear_l1s(&mut self) {
        self.l1.clear();
        for t in self.l1s.iter_mut().flatten() {
            t.clear();
        }
    }

    /// Recomputes the mode and makes its first level (for the current
    /// context) the hit path's.
    fn update_mode(&mut self) {
        let r = &self.regs;
        self.mode = if r.cpl == 3 {
            Mode::User
        } else if r.cr4 & CR4_SMAP != 0 && !r.ac {
            Mode::SupervisorSmap
        } else {
            Mode::Supervisor
        };
        let set = self.set(self.cur_ctx, self.mode);
        if set != self.hot_set {
            let table = self.l1s[set].take().unwrap_or_else(L1::empty);
            self.l1s[self.hot_set] = Some(core::mem::replace(&mut self.l1, table));
            self.hot_set = set;
        }
        self.hot_base = set * self.entries;
        self.cpu = self.cpu_state();
    }

    // ----- invalidation primitives ------------------------------------

    /// Drops main slot `i` (`set * entries + slot`) and its first-level
    /// copy, wherever that set's first level is.
    fn drop_main(&mut self, i: usize) {
        let page = self.meta[i].page;
        self.meta[i].page = INVALID_TAG;
        let set = i >> self.entries.trailing_zeros();
        #[cfg(feature = "fault-injection")]
        if self.bug == Bug::FirstLevelOutlivesEntry {
            return;
        }
        if set == self.hot_set {
            self.l1.forget(page);
        } else if let Some(t) = self.l1s[set].as_deref_mut() {
            t.forget(page);
        }
    }

    fn drop_victim(&mut self, j: usize) {
        if let Some(v) = self.victims_mut(j / VICTIMS) {
            v.meta[j % VICTIMS].page = INVALID_TAG;
        }
    }

    /// Set `set`'s victim cache, if its first level exists (if not, the
    /// set never held an entry).
    fn victims(&self, set: usize) -> Option<&Victims> {
        if set == self.hot_set {
            Some(&self.l1.victims)
        } else {
            self.l1s[set].as_deref().map(|t| &t.victims)
        }
    }

    fn victims_mut(&mut self, set: usize) -> Option<&mut Victims> {
        if set == self.hot_set {
            Some(&mut self.l1.victims)
        } else {
            self.l1s[set].as_deref_mut().map(|t| &mut t.victims)
        }
    }

    /// Victim slot `j`'s entry (slot `j % VICTIMS` of set `j / VICTIMS`),
    /// if its set has a victim cache.
    fn victim_meta(&self, j: usize) -> Option<&Meta> {
        self.victims(j / VICTIMS).map(|v| &v.meta[j % VICTIMS])
    }

    /// Whether a victim slot of `set` holds `page`. The keys first: a
    /// lane of `key` equal to the page's [`victim_key`] is needed for a
    /// slot to hold the page; only then are the pages compared.
    #[inline(always)]
    fn victims_hold(&self, page: u64) -> bool {
        let v = &self.l1.victims;
        let k = victim_key(page);
        let mut m = 0u8;
        for (i, &x) in v.key.iter().enumerate() {
            m |= u8::from(x == k) << i;
        }
        m != 0 && v.meta.iter().any(|e| e.page == page)
    }

    /// The victim slot of `set` holding `page`, if any.
    #[inline]
    fn probe_victims(&self, set: usize, page: u64) -> Option<usize> {
        self.victims(set)?.meta.iter().position(|e| e.page == page).map(|k| set * VICTIMS + k)
    }

    /// Empties context `c`'s paging-structure caches.
    fn flush_psc(&mut self, c: usize) {
        if c == self.cur_ctx {
            for l in [PSC_PDE, PSC_PDPTE, PSC_PML4] {
                for k in 0..self.psc_slots[l] {
                    self.psc_cur[PSC_AT[l] + 2 * k] = NO_PSC;
                }
            }
        } else {
            let n = self.psc_per_ctx;
            for e in &mut self.psc[c * n..(c + 1) * n] {
                e.tag = NO_PSC;
            }
        }
    }

    /// The offset from [`PSC_AT`] of the tag of `va`'s slot in the
    /// current context's cache `l` (twice the slot; its word is at the
    /// next offset): below twice the cache's size, and so below twice its
    /// largest size, which the second mask shows the compiler.
    #[inline(always)]
    fn psc_index(&self, l: usize, va: u64) -> usize {
        ((va >> PSC_SHIFT[l]) as usize) << 1 & self.psc_mask[l] & (2 * PSC_MAX[l] - 2)
    }

    /// Makes context `c` current: the caches of the current one are saved
    /// to `psc`, `c`'s loaded from there.
    fn set_ctx(&mut self, c: usize) {
        if c == self.cur_ctx {
            return;
        }
        for (base, load) in [(self.cur_ctx * self.psc_per_ctx, false), (c * self.psc_per_ctx, true)]
        {
            for l in [PSC_PDE, PSC_PDPTE, PSC_PML4] {
                let at = base + self.psc_off[l];
                let n = self.psc_slots[l];
                let saved = &mut self.psc[at..at + n];
                let cur = self.psc_cur[PSC_AT[l]..PSC_AT[l] + 2 * n].chunks_exact_mut(2);
                for (e, c) in saved.iter_mut().zip(cur) {
                    if load {
                        (c[0], c[1]) = (e.tag, e.word);
                    } else {
                        *e = PscSlot { tag: c[0], word: c[1] };
                    }
                }
            }
        }
        self.cur_ctx = c;
    }

    /// Drops the current context's paging-structure-cache entries that a
    /// walk of `va` would use (a #PF at `va`).
    fn psc_forget(&mut self, va: u64) {
        for l in [PSC_PDE, PSC_PDPTE, PSC_PML4] {
            let k = PSC_AT[l] + self.psc_index(l, va);
            if self.psc_cur[k] == va >> PSC_SHIFT[l] {
                self.psc_cur[k] = NO_PSC;
            }
        }
    }

    /// Drops the entries covering `va` that `scope` names, and the
    /// paging-structure-cache entries it covers: for INVLPG every one of
    /// the current PCID, for INVPCID type 0 every one of its PCID (flushing
    /// more than the address's is allowed, SDM 4.10.4.1), for a #PF those
    /// a walk of `va` would use.
    fn invalidate_page(&mut self, va: u64, scope: PageScope) {
        match scope {
            PageScope::Invlpg => {
                #[cfg(feature = "fault-injection")]
                let keep = self.bug == Bug::InvlpgKeepsPsc;
                #[cfg(not(feature = "fault-injection"))]
                let keep = false;
                if !keep {
                    self.flush_psc(self.cur_ctx);
                }
            }
            PageScope::Fault => {
                #[cfg(feature = "fault-injection")]
                let keep = self.bug == Bug::FaultKeepsPsc;
                #[cfg(not(feature = "fault-injection"))]
                let keep = false;
                if !keep {
                    self.psc_forget(va);
                }
            }
            PageScope::PcidNonGlobal(p) => {
                if let Some(c) = self.ctxs.iter().position(|c| c.live && c.pcid == p) {
                    self.flush_psc(c);
                }
            }
        }
        let slot = (va >> 12) as usize & self.mask;
        let in_large = va >= self.large_lo && va <= self.large_hi;
        for c in 0..self.ctxs.len() {
            if !self.ctxs[c].live {
                continue;
            }
            let hit = |e: &CachedEntry, this: &Self| -> bool {
                e.covers(va)
                    && match scope {
                        PageScope::Fault => c == this.cur_ctx || e.global,
                        PageScope::Invlpg => {
                            #[cfg(feature = "fault-injection")]
                            if this.bug == Bug::InvlpgKeepsGlobal {
                                return c == this.cur_ctx && !e.global;
                            }
                            c == this.cur_ctx || e.global
                        }
                        PageScope::PcidNonGlobal(p) => !e.global && this.ctxs[c].pcid == p,
                    }
            };
            for mode in 0..MODES {
                let set = c * MODES + mode;
                let i = set * self.entries + slot;
                if self.meta[i].valid() && hit(&self.meta[i].entry(), self) {
                    self.drop_main(i);
                }
                for j in set * VICTIMS..(set + 1) * VICTIMS {
                    if self.victim_meta(j).is_some_and(|m| m.valid() && hit(&m.entry(), self)) {
                        self.drop_victim(j);
                    }
                }
                if in_large {
                    for i in set * self.entries..(set + 1) * self.entries {
                        let m = &self.meta[i];
                        if m.valid() && m.size_mask > PAGE_SIZE - 1 && hit(&m.entry(), self) {
                            self.drop_main(i);
                        }
                    }
                }
            }
        }
    }

    /// Drops the entries of context `c` (keeping global ones if asked) and
    /// its paging-structure caches (which hold no global entries).
    fn flush_ctx(&mut self, c: usize, keep_global: bool) {
        self.flush_psc(c);
        self.flush_ctx_tlb(c, keep_global);
    }

    /// [`Self::flush_ctx`] without the paging-structure caches.
    fn flush_ctx_tlb(&mut self, c: usize, keep_global: bool) {
        for set in c * MODES..(c + 1) * MODES {
            for i in set * self.entries..(set + 1) * self.entries {
                if self.meta[i].valid() && !(keep_global && self.meta[i].global()) {
                    self.drop_main(i);
                }
            }
            for j in set * VICTIMS..(set + 1) * VICTIMS {
                if self.victim_meta(j).is_some_and(|m| m.valid() && !(keep_global && m.global())) {
                    self.drop_victim(j);
                }
            }
        }
    }

    /// Drops every entry of every context (keeping global ones if asked)
    /// and every paging-structure cache.
    fn flush_every_ctx(&mut self, keep_global: bool) {
        for e in &mut self.psc {
            e.tag = NO_PSC;
        }
        self.flush_psc(self.cur_ctx);
        if keep_global {
            for c in 0..self.ctxs.len() {
                if self.ctxs[c].live {
                    self.flush_ctx(c, true);
                }
            }
        } else {
            self.clear_l1s();
            self.meta.fill(Meta::default());
            let l1s = self.l1s.iter_mut().flatten();
            for v in core::iter::once(&mut self.l1).chain(l1s).map(|t| &mut t.victims) {
                v.meta.fill(Meta::default());
            }
            self.large_lo = u64::MAX;
            self.large_hi = 0;
        }
    }

    /// Makes `pcid` current, dropping the least recently used context if
    /// none holds it. Returns whether the context had to be (re)created.
    fn switch_pcid(&mut self, pcid: u16) {
        self.clock += 1;
        let found = self.ctxs.iter().position(|c| c.live && c.pcid == pcid);
        let c = match found {
            Some(c) => c,
            None => {
                let c = self.ctxs.iter().position(|c| !c.live).unwrap_or_else(|| {
                    let mut best = 0;
                    for (k, ctx) in self.ctxs.iter().enumerate() {
                        if ctx.stamp < self.ctxs[best].stamp {
                            best = k;
                        }
                    }
                    best
                });
                if self.ctxs[c].live {
                    self.stats.flushes.context_evictions += 1;
                }
                self.flush_ctx(c, false);
                self.ctxs[c] = Ctx { pcid, live: true, stamp: 0 };
                c
            }
        };
        self.ctxs[c].stamp = self.clock;
        self.set_ctx(c);
        self.update_mode();
    }

    // ----- the instructions -----------------------------------------

    /// Drops every entry (a CPU may always do this).
    pub fn flush_all(&mut self) {
        self.stats.flushes.explicit += 1;
        self.flush_every_ctx(false);
    }

    /// Loads the whole paging state at once (an emulator restoring a
    /// snapshot or setting up a vCPU), dropping every entry. Only the
    /// supported-mode checks apply, not the MOV-to-CR ordering rules.
    pub fn set_regs(&mut self, regs: Regs) -> Result<(), Error> {
        if regs.cr4 & CR4_LA57 != 0 {
            return Err(Error::Unsupported("5-level paging (CR4.LA57)"));
        }
        let mut regs = regs;
        regs.cr3 &= !CR3_NOFLUSH;
        regs.efer &= !EFER_LMA;
        if regs.paging() && regs.efer & EFER_LME != 0 {
            regs.efer |= EFER_LMA;
        }
        self.regs = regs;
        self.stats.flushes.explicit += 1;
        self.flush_every_ctx(false);
        for c in self.ctxs.iter_mut() {
            c.live = false;
        }
        self.ctxs[0] = Ctx { pcid: 0, live: true, stamp: 0 };
        self.set_ctx(0);
        self.set_policy();
        self.switch_pcid(self.regs.pcid());
        Ok(())
    }

    /// INVLPG: drops the entries for `va`'s page under the current PCID
    /// and the global entries for it under every PCID (all of a 2 MiB or
    /// 1 GiB page's entries if `va` lies in one). A non-canonical address
    /// is a no-op.
    pub fn invlpg(&mut self, va: u64) {
        if !VirtAddr::is_canonical(va) {
            return;
        }
        self.stats.flushes.invlpg += 1;
        self.invalidate_page(va, PageScope::Invlpg);
    }

    /// INVPCID with exactly the SDM's effect for each type. #GP for a
    /// non-canonical address (type 0) or a non-zero PCID while CR4.PCIDE=0
    /// (types 0 and 1).
    pub fn invpcid(&mut self, op: Invpcid) -> Result<(), Error> {
        let pcide = self.regs.cr4 & CR4_PCIDE != 0;
        let gp = |what| Err(Error::GeneralProtection(GpCause::Invpcid(what)));
        match op {
            Invpcid::Address { pcid, va } => {
                if pcid > 0xfff {
                    return gp("PCID above 0xfff");
                }
                if !VirtAddr::is_canonical(va) {
                    return gp("non-canonical address");
                }
                if !pcide && pcid != 0 {
                    return gp("non-zero PCID with CR4.PCIDE=0");
                }
                self.invalidate_page(va, PageScope::PcidNonGlobal(pcid));
            }
            Invpcid::Context { pcid } => {
                if pcid > 0xfff {
                    return gp("PCID above 0xfff");
                }
                if !pcide && pcid != 0 {
                    return gp("non-zero PCID with CR4.PCIDE=0");
                }
                if let Some(c) = self.ctxs.iter().position(|c| c.live && c.pcid == pcid) {
                    self.flush_ctx(c, true);
                }
            }
            Invpcid::All => self.flush_every_ctx(false),
            Invpcid::AllNonGlobal => self.flush_every_ctx(true),
        }
        self.stats.flushes.invpcid[op.kind()] += 1;
        Ok(())
    }

    /// MOV to CR3. With CR4.PCIDE=0: drops every non-global entry. With
    /// PCIDE=1: switches to the PCID in bits 11:0 and, unless bit 63 is
    /// set, drops that PCID's non-global entries. Bit 63 is not stored.
    pub fn write_cr3(&mut self, value: u64) -> Result<(), Error> {
        let pcide = self.regs.cr4 & CR4_PCIDE != 0;
        let noflush = pcide && value & CR3_NOFLUSH != 0;
        let v = if pcide { value & !CR3_NOFLUSH } else { value };
        let maxphy = u32::from(self.config.maxphyaddr);
        if v >> maxphy != 0 {
            return Err(Error::GeneralProtection(GpCause::ReservedBit { reg: "CR3", value }));
        }
        self.regs.cr3 = v;
        if pcide {
            self.switch_pcid((v & CR3_PCID_MASK) as u16);
        }
        if noflush {
            self.stats.flushes.cr3_noflush += 1;
            return Ok(());
        }
        self.stats.flushes.cr3 += 1;
        #[cfg(feature = "fault-injection")]
        match self.bug {
            Bug::Cr3KeepsNonGlobal => {
                self.flush_psc(self.cur_ctx);
                return Ok(());
            }
            Bug::Cr3KeepsPsc => {
                self.flush_ctx_tlb(self.cur_ctx, true);
                return Ok(());
            }
            _ => {}
        }
        self.flush_ctx(self.cur_ctx, true);
        Ok(())
    }

    /// MOV to CR4. Toggling PGE or clearing PCIDE drops everything (global
    /// entries and every PCID); changing PAE or setting SMEP drops the
    /// current PCID's entries; changing SMAP switches the table in use;
    /// clearing SMEP or changing PKE rebuilds the comparators.
    pub fn write_cr4(&mut self, value: u64) -> Result<(), Error> {
        let old = self.regs.cr4;
        let changed = old ^ value;
        let lma = self.regs.efer & EFER_LMA != 0;
        if value & CR4_LA57 != 0 {
            return Err(Error::Unsupported("5-level paging (CR4.LA57)"));
        }
        if changed & CR4_PCIDE != 0 && value & CR4_PCIDE != 0 {
            if !lma {
                return Err(bad("CR4.PCIDE set outside IA-32e mode"));
            }
            if self.regs.cr3 & CR3_PCID_MASK != 0 {
                return Err(bad("CR4.PCIDE set with CR3[11:0] non-zero"));
            }
        }
        if lma && value & CR4_PAE == 0 {
            return Err(bad("CR4.PAE cleared in IA-32e mode"));
        }
        self.regs.cr4 = value;
        self.set_policy();
        let pcide_cleared = changed & CR4_PCIDE != 0 && value & CR4_PCIDE == 0;
        if changed & CR4_PGE != 0 || pcide_cleared {
            self.stats.flushes.cr4 += 1;
            self.flush_every_ctx(false);
            if pcide_cleared {
                for c in self.ctxs.iter_mut() {
                    c.live = false;
                }
                self.ctxs[self.cur_ctx] = Ctx { pcid: 0, live: true, stamp: self.clock };
            }
        } else if changed & CR4_PAE != 0 || (changed & CR4_SMEP != 0 && value & CR4_SMEP != 0) {
            self.stats.flushes.cr4 += 1;
            self.flush_ctx(self.cur_ctx, false);
            self.rederive_all();
        } else if changed & (CR4_SMEP | CR4_PKE) != 0 {
            self.stats.flushes.rederive += 1;
            self.rederive_all();
        }
        self.update_mode();
        Ok(())
    }

    /// MOV to CR0. Changing PG, WP or PE drops every entry (QEMU and Bochs
    /// do; the SDM requires it for PG 1->0 and it is always allowed).
    pub fn write_cr0(&mut self, value: u64) -> Result<(), Error> {
        if value >> 32 != 0 {
            return Err(Error::GeneralProtection(GpCause::ReservedBit { reg: "CR0", value }));
        }
        if value & CR0_PG != 0 && value & CR0_PE == 0 {
            return Err(bad("CR0.PG set without CR0.PE"));
        }
        let old = self.regs.cr0;
        let turning_on = old & CR0_PG == 0 && value & CR0_PG != 0;
        let turning_off = old & CR0_PG != 0 && value & CR0_PG == 0;
        if turning_on && self.regs.efer & EFER_LME != 0 && self.regs.cr4 & CR4_PAE == 0 {
            return Err(bad("CR0.PG set with EFER.LME and without CR4.PAE"));
        }
        if turning_off && self.regs.cr4 & CR4_PCIDE != 0 {
            return Err(bad("CR0.PG cleared with CR4.PCIDE set"));
        }
        self.regs.cr0 = value;
        if turning_on && self.regs.efer & EFER_LME != 0 {
            self.regs.efer |= EFER_LMA;
        }
        if turning_off {
            self.regs.efer &= !EFER_LMA;
        }
        self.set_policy();
        if (old ^ value) & (CR0_PG | CR0_WP | CR0_PE) != 0 {
            self.stats.flushes.cr0 += 1;
            self.flush_every_ctx(false);
        }
        Ok(())
    }

    /// WRMSR to IA32_EFER. Changing NXE drops every entry (what the cached
    /// XD bits mean changes); LME cannot change while paging is on; LMA is
    /// the CPU's to set and is ignored in `value`.
    pub fn write_efer(&mut self, value: u64) -> Result<(), Error> {
        let old = self.regs.efer;
        if self.regs.paging() && (old ^ value) & EFER_LME != 0 {
            return Err(bad("EFER.LME changed with paging on"));
        }
        self.regs.efer = (value & !EFER_LMA) | (old & EFER_LMA);
        self.set_policy();
        if (old ^ value) & EFER_NXE != 0 {
            self.stats.flushes.efer += 1;
            self.flush_every_ctx(false);
        }
        Ok(())
    }

    /// WRPKRU. Entries stay (the CPU checks PKRU against the cached key on
    /// every access); with CR4.PKE=1 the comparators are rebuilt.
    pub fn write_pkru(&mut self, value: u32) {
        let changed = self.regs.pkru != value;
        self.regs.pkru = value;
        self.set_policy();
        if changed && self.regs.cr4 & CR4_PKE != 0 {
            self.stats.flushes.rederive += 1;
            self.rederive_all();
        }
    }

    /// Sets the current privilege level (3 is user mode).
    pub fn set_cpl(&mut self, cpl: u8) {
        self.regs.cpl = cpl & 3;
        self.update_mode();
    }

    /// Sets EFLAGS.AC (lifts SMAP for supervisor data accesses).
    pub fn set_ac(&mut self, ac: bool) {
        self.regs.ac = ac;
        self.update_mode();
    }

    /// What the TLB holds for `va` in the current mode and PCID, if
    /// anything (main table or victim cache). Side-effect free.
    pub fn cached(&self, va: u64) -> Option<CachedEntry> {
        let page = va & PAGE_MASK;
        let set = self.set(self.cur_ctx, self.mode);
        let i = set * self.entries + ((va >> 12) as usize & self.mask);
        if self.meta[i].page == page {
            return Some(self.meta[i].entry());
        }
        self.probe_victims(set, page).and_then(|j| self.victim_meta(j)).map(Meta::entry)
    }

    /// The current PCID's paging-structure-cache entry `level` holds for
    /// `va`, if any. Side-effect free.
    pub fn psc_entry(&self, level: PscLevel, va: u64) -> Option<PscEntry> {
        let l = match level {
            PscLevel::Pde => PSC_PDE,
            PscLevel::Pdpte => PSC_PDPTE,
            PscLevel::Pml4 => PSC_PML4,
        };
        let k = self.psc_index(l, va);
        let e = PscSlot { tag: self.psc_cur[PSC_AT[l] + k], word: self.psc_cur[PSC_AT[l] + k + 1] };
        (e.tag == va >> PSC_SHIFT[l]).then(|| PscEntry {
            table: e.word & pgtable::entry::ADDR_MASK,
            writable: e.word & EntryFlags::WRITABLE.bits() != 0,
            user: e.word & EntryFlags::USER.bits() != 0,
            nx: e.word & XD != 0,
        })
    }

    /// Number of valid entries over every table and victim cache.
    pub fn occupancy(&self) -> usize {
        self.meta.iter().filter(|m| m.valid()).count()
            + core::iter::once(&self.l1)
                .chain(self.l1s.iter().flatten())
                .flat_map(|t| &t.victims.meta)
                .filter(|m| m.valid())
                .count()
    }
}

fn bad(what: &'static str) -> Error {
    Error::GeneralProtection(GpCause::BadCombination(what))
}

fn policy_of(r: &Regs) -> Policy {
    Policy {
        wp: r.cr0 & CR0_WP != 0,
        nxe: r.efer & EFER_NXE != 0,
        smep: r.cr4 & CR4_SMEP != 0,
        pke: r.cr4 & CR4_PKE != 0,
        pkru: r.pkru,
    }
}

/// Present and Accessed: what the read-only walk requires of every entry.
const P_A: u64 = EntryFlags::PRESENT.bits() | EntryFlags::ACCESSED.bits();

/// One step of the read-only walk: the entry for `va` at `level` in the
/// table at `table`, if it is present, accessed and free of reserved bits
/// (`must` is P | A | the reserved bits: the CPU's, and the level's for
/// the entry's kind). Always inlined with a constant level.
#[inline(always)]
fn quick_entry<M: pgtable::PhysMem + ?Sized>(
    mem: &M,
    table: u64,
    va: u64,
    level: pgtable::Level,
    must: u64,
) -> Option<u64> {
    let raw = quick_read(mem, table, va, level)?;
    quick_ok(raw, must)?;
    Some(raw)
}

/// The entry for `va` at `level` in the table at `table`, unchecked.
#[inline(always)]
fn quick_read<M: pgtable::PhysMem + ?Sized>(
    mem: &M,
    table: u64,
    va: u64,
    level: pgtable::Level,
) -> Option<u64> {
    let at = table | (((va >> level.shift()) & 511) << 3);
    mem.read_u64(PhysAddr::new_truncate(at)).ok()
}

/// `Some` if `raw` has P and A set and none of the bits of `must` (P | A
/// | reserved bits) other than those.
#[inline(always)]
fn quick_ok(raw: u64, must: u64) -> Option<()> {
    ((raw ^ P_A) & must == 0).then_some(())
}
