//! The CPU's paging state: control registers, EFER, PKRU, CPL, EFLAGS.AC.

/// CR0.PE: protection enable.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.WP: supervisor writes honour R/W.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR3 bits 11:0 with CR4.PCIDE=1: the process-context identifier.
pub const CR3_PCID_MASK: u64 = 0xfff;
/// CR3 bit 63 in a MOV to CR3 with CR4.PCIDE=1: keep the new PCID's
/// entries. It is not part of CR3.
pub const CR3_NOFLUSH: u64 = 1 << 63;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.PGE: global pages.
pub const CR4_PGE: u64 = 1 << 7;
/// CR4.LA57: 5-level paging (not emulated).
pub const CR4_LA57: u64 = 1 << 12;
/// CR4.PCIDE: process-context identifiers.
pub const CR4_PCIDE: u64 = 1 << 17;
/// CR4.SMEP.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP.
pub const CR4_SMAP: u64 = 1 << 21;
/// CR4.PKE: protection keys for user pages.
pub const CR4_PKE: u64 = 1 << 22;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active (set by the CPU when CR0.PG=1 and LME=1).
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: execute-disable.
pub const EFER_NXE: u64 = 1 << 11;

/// The registers that decide a translation.
///
/// Only the bits named by this module's constants matter to the MMU; the
/// others are kept as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Regs {
    /// CR0.
    pub cr0: u64,
    /// CR3 (bit 63 never set: it is an instruction operand, not a bit of CR3).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// PKRU: AD at bit 2k, WD at bit 2k+1 for key k.
    pub pkru: u32,
    /// The current privilege level, 0..=3 (3 is user mode).
    pub cpl: u8,
    /// EFLAGS.AC.
    pub ac: bool,
}

impl Default for Regs {
    /// The state after RESET as far as paging goes: paging and protection
    /// off, CPL 0.
    fn default() -> Self {
        Self { cr0: 0, cr3: 0, cr4: 0, efer: 0, pkru: 0, cpl: 0, ac: false }
    }
}

impl Regs {
    /// 4-level paging in IA-32e mode with the page tables at `cr3`: CR0.PE,
    /// PG and WP, CR4.PAE, EFER.LME, LMA and NXE, CPL 0; no PGE, PCID,
    /// SMEP, SMAP or PKE.
    pub const fn long_mode(cr3: u64) -> Self {
        Self {
            cr0: CR0_PE | CR0_WP | CR0_PG,
            cr3,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA | EFER_NXE,
            pkru: 0,
            cpl: 0,
            ac: false,
        }
    }

    /// Paging is on.
    pub const fn paging(&self) -> bool {
        self.cr0 & CR0_PG != 0
    }

    /// The current PCID (0 when CR4.PCIDE=0).
    pub const fn pcid(&self) -> u16 {
        if self.cr4 & CR4_PCIDE != 0 { (self.cr3 & CR3_PCID_MASK) as u16 } else { 0 }
    }

    /// Accesses are made in user mode (CPL 3).
    pub const fn user(&self) -> bool {
        self.cpl == 3
    }
}
