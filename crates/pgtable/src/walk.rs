//! The hardware page walk: what the CPU does on a TLB miss.
//!
//! [`translate`] walks the four levels from CR3 the way an x86-64 CPU does
//! in 4-level paging mode (Intel SDM vol. 3 ch. 4; QEMU's `mmu_translate` in
//! target/i386/tcg/sysemu/excp_helper.c and Bochs's paging.cc are the
//! reference emulators): P and reserved bits checked at every level,
//! permissions combined over the levels (R/W and U/S ANDed, NX ORed),
//! CR0.WP, SMEP, SMAP with EFLAGS.AC and protection keys applied at the leaf,
//! and a #PF error code built exactly as the hardware would.
//!
//! Accessed and Dirty are set with a compare-exchange on the entry, as the
//! CPU does with a locked read-modify-write, so that a concurrent writer
//! (another walker, a vCPU, the emulated kernel) is never overwritten; when
//! the entry changed under us the walk restarts from CR3, as QEMU's does.
//!
//! When A is set: only once the access is known to succeed, and then on
//! every entry of the walk, top down, followed by D on the leaf for a
//! write; a faulting access (not present, reserved bit, protection) leaves
//! every A and D bit as it was. This is what the CPU does as KVM presents it
//! (`ptemu hwcheck` compares the two entry for entry), what KVM's own guest
//! walker (arch/x86/kvm/mmu/paging_tmpl.h) and Bochs's paging.cc do, and
//! what KVM's comments attribute to Intel processors: the walk completes
//! first, and only a successful one updates the flags. QEMU's
//! `mmu_translate` differs: it sets A on each table entry as it descends,
//! before the checks below it.
//!
//! Vendor differences are not modelled: the walk follows Intel, where bit 8
//! of a PML4E is ignored; AMD reserves it (measured by `ptemu hwcheck` on an
//! EPYC host). 1 GiB pages are assumed supported.

use crate::Level;
use crate::addr::{MAX_PHYS_ADDR_BITS, PhysAddr, VirtAddr};
use crate::entry::{
    ADDR_MASK, EntryFlags, cpu_reserved_mask, frame_mask, is_leaf, level_reserved_mask, pkey,
};
use crate::error::Fault;
use crate::mem::PhysMem;

/// The kind of access being translated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// The CPU state that decides a translation's outcome.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CpuState {
    /// CR0.WP: supervisor writes honour R/W.
    pub wp: bool,
    /// EFER.NXE: bit 63 is NX (otherwise it is reserved).
    pub nxe: bool,
    /// CR4.SMEP: supervisor fetches from user pages fault.
    pub smep: bool,
    /// CR4.SMAP: supervisor data accesses to user pages fault unless AC.
    pub smap: bool,
    /// CR4.PKE: protection keys apply to user pages.
    pub pke: bool,
    /// EFLAGS.AC: lifts SMAP for explicit supervisor data accesses.
    pub ac: bool,
    /// PKRU: two bits per key, AD (bit 2k) and WD (bit 2k+1).
    pub pkru: u32,
    /// The access is made at CPL 3.
    pub user: bool,
    /// MAXPHYADDR, 1..=52.
    pub maxphyaddr: u8,
}

impl Default for CpuState {
    /// What a Linux user process runs with on a modern CPU: WP and NXE on,
    /// SMEP/SMAP/PKE off, a user-mode access, 52-bit physical addresses.
    fn default() -> Self {
        Self {
            wp: true,
            nxe: true,
            smep: false,
            smap: false,
            pke: false,
            ac: false,
            pkru: 0,
            user: true,
            maxphyaddr: MAX_PHYS_ADDR_BITS,
        }
    }
}

bitflags::bitflags! {
    /// The #PF error code pushed by the CPU.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
    pub struct PfErrorCode: u32 {
        /// P: a protection violation (0: a not-present entry).
        const PRESENT = 1 << 0;
        /// W/R: the access was a write.
        const WRITE = 1 << 1;
        /// U/S: the access was made in user mode.
        const USER = 1 << 2;
        /// RSVD: a reserved bit was set in an entry.
        const RSVD = 1 << 3;
        /// I/D: an instruction fetch (reported only with NXE or SMEP).
        const FETCH = 1 << 4;
        /// PK: a protection-key violation.
        const PK = 1 << 5;
        /// SS: a shadow-stack access (not produced by this walker).
        const SS = 1 << 6;
    }
}

/// A page fault: the error code and the faulting address (CR2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PageFault {
    /// The error code.
    pub error_code: PfErrorCode,
    /// The linear address that faulted.
    pub addr: VirtAddr,
}

impl core::fmt::Display for PageFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#PF at {} error code {:#x}", self.addr, self.error_code.bits())
    }
}

/// Size of the page a leaf maps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PageSize {
    /// 4 KiB, mapped by a PTE.
    Size4K,
    /// 2 MiB, mapped by a PDE with PS.
    Size2M,
    /// 1 GiB, mapped by a PDPTE with PS.
    Size1G,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The level whose entries map pages of this size.
    pub const fn level(self) -> Level {
        match self {
            PageSize::Size4K => Level::Pt,
            PageSize::Size2M => Level::Pd,
            PageSize::Size1G => Level::Pdpt,
        }
    }

    /// The page size a leaf at `level` maps (`None` for the PML4).
    pub const fn of_level(level: Level) -> Option<PageSize> {
        match level {
            Level::Pt => Some(PageSize::Size4K),
            Level::Pd => Some(PageSize::Size2M),
            Level::Pdpt => Some(PageSize::Size1G),
            Level::Pml4 => None,
        }
    }
}

/// Effective permissions of a translation, combined over all levels.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Permissions {
    /// R/W set at every level.
    pub writable: bool,
    /// U/S set at every level.
    pub user: bool,
    /// NX set at some level (always false when EFER.NXE is off).
    pub nx: bool,
}

/// A successful translation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Translation {
    /// The physical address of the accessed byte.
    pub pa: PhysAddr,
    /// Size of the page mapping it.
    pub page_size: PageSize,
    /// Effective permissions.
    pub perms: Permissions,
    /// Physical address of the leaf entry.
    pub leaf_entry_pa: PhysAddr,
    /// The leaf entry after the walk's A/D update.
    pub leaf_entry: u64,
}

/// How often a walk restarts because an entry changed under its
/// compare-exchange before giving up with [`Fault::Contended`].
pub const MAX_WALK_RETRIES: u32 = 1000;

enum Step {
    Done(Translation),
    Retry,
}

/// Translates `va` for `access` under `cpu`, starting at the PML4 in CR3.
///
/// Only bits 51..12 of `cr3` are used (PCID, PWT and PCD are ignored).
/// Returns the translation, or [`Fault::PageFault`] with the error code the
/// CPU would push, or [`Fault::Mem`] if an entry lies outside `mem`.
pub fn translate<M: PhysMem + ?Sized>(
    mem: &mut M,
    cr3: PhysAddr,
    va: VirtAddr,
    access: Access,
    cpu: &CpuState,
) -> Result<Translation, Fault> {
    if cpu.maxphyaddr == 0 || cpu.maxphyaddr > MAX_PHYS_ADDR_BITS {
        return Err(Fault::BadMaxPhyAddr(cpu.maxphyaddr));
    }
    // Reserved bits common to every level, computed once per translation.
    let rsvd = cpu_reserved_mask(cpu.maxphyaddr, cpu.nxe);
    for _ in 0..MAX_WALK_RETRIES {
        if let Step::Done(t) = walk_once(mem, cr3, va, access, cpu, rsvd)? {
            return Ok(t);
        }
    }
    Err(Fault::Contended(va))
}

#[cold]
#[inline(never)]
fn fault(va: VirtAddr, access: Access, cpu: &CpuState, base: PfErrorCode) -> Fault {
    let mut code = base;
    if cpu.user {
        code |= PfErrorCode::USER;
    }
    match access {
        Access::Read => {}
        Access::Write => code |= PfErrorCode::WRITE,
        Access::Fetch => {
            if cpu.nxe || cpu.smep {
                code |= PfErrorCode::FETCH;
            }
        }
    }
    Fault::PageFault(PageFault { error_code: code, addr: va })
}

/// Whether the access is allowed by R/W, U/S, NX, WP, SMEP and SMAP.
fn permitted(p: &Permissions, access: Access, cpu: &CpuState) -> bool {
    if cpu.user && !p.user {
        return false;
    }
    // SMAP: explicit supervisor data accesses to user pages need EFLAGS.AC.
    let smap_blocks = !cpu.user && p.user && cpu.smap && !cpu.ac;
    match access {
        Access::Read => !smap_blocks,
        Access::Write => !smap_blocks && (p.writable || (!cpu.user && !cpu.wp)),
        Access::Fetch => {
            let smep_blocks = !cpu.user && p.user && cpu.smep;
            !p.nx && !smep_blocks
        }
    }
}

/// Whether PKRU forbids the access (data accesses to user pages only).
fn pkey_blocks(leaf: u64, p: &Permissions, access: Access, cpu: &CpuState) -> bool {
    if !cpu.pke || !p.user || access == Access::Fetch {
        return false;
    }
    let k = pkey(leaf) as u32;
    let ad = (cpu.pkru >> (2 * k)) & 1 != 0;
    let wd = (cpu.pkru >> (2 * k + 1)) & 1 != 0;
    ad || (access == Access::Write && wd && (cpu.user || cpu.wp))
}

/// Reads the entry for `va` at `level` in the table at `table` and checks
/// P and the reserved bits: the entry's address and value, or the fault.
/// Always inlined with a constant level, so the level's masks and index
/// shift are constants in each of the walk's four steps.
#[inline(always)]
fn read_entry<M: PhysMem + ?Sized>(
    mem: &M,
    table: u64,
    va: VirtAddr,
    level: Level,
    access: Access,
    cpu: &CpuState,
    rsvd: u64,
) -> Result<(PhysAddr, u64), Fault> {
    let entry_pa = PhysAddr::new_truncate(table | ((va.index(level) as u64) << 3));
    let raw = mem.read_u64(entry_pa)?;
    if raw & EntryFlags::PRESENT.bits() == 0 {
        return Err(fault(va, access, cpu, PfErrorCode::empty()));
    }
    if raw & (rsvd | level_reserved_mask(raw, level)) != 0 {
        // A reserved-bit violation is only detected in a present entry,
        // so P is always reported with RSVD.
        return Err(fault(va, access, cpu, PfErrorCode::RSVD | PfErrorCode::PRESENT));
    }
    Ok((entry_pa, raw))
}

/// One walk from CR3. The four levels are written out rather than looped
/// over: each step's level is then a constant, which took about a third
/// of the instructions out of a walk (a fault's two walks were a quarter
/// of its CPU work besides the clear). Not inlined into the retry loop,
/// where the compiler would hoist every CPU-state field it reads into a
/// long prologue.
#[inline(never)]
fn walk_once<M: PhysMem + ?Sized>(
    mem: &mut M,
    cr3: PhysAddr,
    va: VirtAddr,
    access: Access,
    cpu: &CpuState,
    rsvd: u64,
) -> Result<Step, Fault> {
    // A PML4E is never a leaf (its PS bit is reserved).
    let (pa4, e4) = read_entry(mem, cr3.as_u64() & ADDR_MASK, va, Level::Pml4, access, cpu, rsvd)?;
    let (pa3, e3) = read_entry(mem, e4 & ADDR_MASK, va, Level::Pdpt, access, cpu, rsvd)?;
    // The leaf, its level, the AND (R/W, U/S) and OR (NX) of every entry
    // used, how many table entries lie above the leaf (1 to 3), and the
    // PDE when it is one of them.
    let (entry_pa, raw, level, all, any, tables, pde) = if is_leaf(e3, Level::Pdpt) {
        (pa3, e3, Level::Pdpt, e4 & e3, e4 | e3, 1, (pa3, e3))
    } else {
        let (pa2, e2) = read_entry(mem, e3 & ADDR_MASK, va, Level::Pd, access, cpu, rsvd)?;
        if is_leaf(e2, Level::Pd) {
            (pa2, e2, Level::Pd, e4 & e3 & e2, e4 | e3 | e2, 2, (pa2, e2))
        } else {
            let (pa1, e1) = read_entry(mem, e2 & ADDR_MASK, va, Level::Pt, access, cpu, rsvd)?;
            (pa1, e1, Level::Pt, e4 & e3 & e2 & e1, e4 | e3 | e2 | e1, 3, (pa2, e2))
        }
    };

    let perms = Permissions {
        writable: all & EntryFlags::WRITABLE.bits() != 0,
        user: all & EntryFlags::USER.bits() != 0,
        nx: cpu.nxe && any & EntryFlags::NX.bits() != 0,
    };
    let normal_ok = permitted(&perms, access, cpu);
    let pk = pkey_blocks(raw, &perms, access, cpu);
    // A user access to a supervisor page is not a user-mode address, so
    // PK cannot apply there; otherwise PK is reported whenever PKRU
    // forbids the access, whatever else also forbids it.
    if !normal_ok || pk {
        let mut code = PfErrorCode::PRESENT;
        if pk {
            code |= PfErrorCode::PK;
        }
        return Err(fault(va, access, cpu, code));
    }

    // A on the table entries lacking it, top down; usually all have it.
    let tables_and = match tables {
        1 => e4,
        2 => e4 & e3,
        _ => e4 & e3 & pde.1,
    };
    if tables_and & EntryFlags::ACCESSED.bits() == 0 {
        let upper = [(pa4, e4), (pa3, e3), pde];
        for &(pa, old) in &upper[..tables] {
            if old & EntryFlags::ACCESSED.bits() != 0 {
                continue;
            }
            let new = old | EntryFlags::ACCESSED.bits();
            if mem.compare_exchange_u64(pa, old, new)?.is_err() {
                return Ok(Step::Retry);
            }
        }
    }
    let mut set = EntryFlags::ACCESSED.bits();
    if access == Access::Write {
        set |= EntryFlags::DIRTY.bits();
    }
    let mut leaf = raw;
    if raw & set != set {
        leaf = raw | set;
        if mem.compare_exchange_u64(entry_pa, raw, leaf)?.is_err() {
            return Ok(Step::Retry);
        }
    }
    // A PML4E is never a leaf, so the level maps a page size.
    let page_size = PageSize::of_level(level).unwrap_or(PageSize::Size4K);
    let pa = (raw & frame_mask(raw, level)) | (va.as_u64() & (page_size.bytes() - 1));
    Ok(Step::Done(Translation {
        pa: PhysAddr::new_truncate(pa),
        page_size,
        perms,
        leaf_entry_pa: entry_pa,
        leaf_entry: leaf,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        for s in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
            assert_eq!(PageSize::of_level(s.level()), Some(s));
            assert_eq!(s.bytes(), s.level().entry_span());
        }
        assert_eq!(PageSize::of_level(Level::Pml4), None);
    }

    #[test]
    fn permission_table() {
        let user_rw = Permissions { writable: true, user: true, nx: false };
        let user_ro = Permissions { writable: false, ..user_rw };
        let sup_ro = Permissions { user: false, ..user_ro };
        let u = CpuState::default();
        let k = CpuState { user: false, ..u };
        assert!(permitted(&user_rw, Access::Write, &u));
        assert!(!permitted(&user_ro, Access::Write, &u));
        assert!(!permitted(&sup_ro, Access::Read, &u));
        assert!(!permitted(&sup_ro, Access::Write, &k));
        assert!(permitted(&sup_ro, Access::Write, &CpuState { wp: false, ..k }));
        assert!(!permitted(&user_rw, Access::Read, &CpuState { smap: true, ..k }));
        assert!(permitted(&user_rw, Access::Read, &CpuState { smap: true, ac: true, ..k }));
        assert!(!permitted(&user_rw, Access::Fetch, &CpuState { smep: true, ..k }));
        assert!(!permitted(&Permissions { nx: true, ..user_rw }, Access::Fetch, &u));
    }

    #[test]
    fn error_code_bits() {
        let va = VirtAddr::new(0x1000).unwrap();
        let code = |access, cpu: &CpuState, base| match fault(va, access, cpu, base) {
            Fault::PageFault(pf) => pf.error_code.bits(),
            _ => u32::MAX,
        };
        let u = CpuState::default();
        assert_eq!(code(Access::Write, &u, PfErrorCode::PRESENT), 0x7);
        assert_eq!(code(Access::Fetch, &u, PfErrorCode::empty()), 0x14);
        assert_eq!(code(Access::Fetch, &CpuState { nxe: false, ..u }, PfErrorCode::empty()), 0x4);
        assert_eq!(code(Access::Read, &CpuState { user: false, ..u }, PfErrorCode::PK), 0x20);
    }
}
