//! Side-effect-free lookups: which entry maps an address, without checks.
//!
//! This is the fast path an emulator's TLB refill or a debugger wants: no
//! permission or reserved-bit checks, no Accessed/Dirty updates, memory only
//! read. A PML4E is always followed as a table pointer (its bit 7 would be a
//! reserved-bit fault for the hardware walk, see [`crate::walk`]).

use crate::Level;
use crate::addr::{PhysAddr, VirtAddr};
use crate::entry::{ADDR_MASK, EntryFlags, frame_mask};
use crate::error::MemError;
use crate::mem::PhysMem;

const P: u64 = EntryFlags::PRESENT.bits();
const PS: u64 = EntryFlags::PS.bits();

/// The entry that ends a walk, with where it lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Leaf {
    /// Level of the entry (1: 4 KiB PTE, 2: PDE, 3: PDPTE, 4: PML4E).
    pub level: Level,
    /// The raw entry.
    pub entry: u64,
    /// Physical address of the entry.
    pub entry_pa: PhysAddr,
}

impl Leaf {
    /// Bytes mapped by the entry.
    pub const fn page_size(&self) -> u64 {
        self.level.entry_span()
    }

    /// Whether P is set.
    pub const fn is_present(&self) -> bool {
        self.entry & P != 0
    }

    /// The physical address `va` translates to through this present leaf.
    #[inline]
    pub const fn pa(&self, va: VirtAddr) -> PhysAddr {
        let off = va.as_u64() & (self.level.entry_span() - 1);
        PhysAddr::new_truncate((self.entry & frame_mask(self.entry, self.level)) | off)
    }
}

#[inline(always)]
fn slot(table: u64, va: u64, shift: u32) -> PhysAddr {
    PhysAddr::new_truncate((table & ADDR_MASK) | ((va >> (shift - 3)) & 0xff8))
}

/// The present leaf mapping `va`, or `None` when the walk meets a
/// non-present entry. Reads at most four words and writes nothing.
#[inline]
pub fn lookup<M: PhysMem + ?Sized>(
    mem: &M,
    cr3: PhysAddr,
    va: VirtAddr,
) -> Result<Option<Leaf>, MemError> {
    let l = entry_at(mem, cr3, va)?;
    Ok(if l.entry & P != 0 { Some(l) } else { None })
}

/// The entry at which the walk for `va` stops: a present leaf, or the first
/// non-present entry (none, swap or PROT_NONE, at whatever level) — what
/// Linux's page-table helpers would find for the address.
#[inline]
pub fn entry_at<M: PhysMem + ?Sized>(
    mem: &M,
    cr3: PhysAddr,
    va: VirtAddr,
) -> Result<Leaf, MemError> {
    let v = va.as_u64();
    let pa4 = slot(cr3.as_u64(), v, 39);
    let e4 = mem.read_u64(pa4)?;
    if e4 & P == 0 {
        return Ok(Leaf { level: Level::Pml4, entry: e4, entry_pa: pa4 });
    }
    let pa3 = slot(e4, v, 30);
    let e3 = mem.read_u64(pa3)?;
    if e3 & (P | PS) != P {
        return Ok(Leaf { level: Level::Pdpt, entry: e3, entry_pa: pa3 });
    }
    let pa2 = slot(e3, v, 21);
    let e2 = mem.read_u64(pa2)?;
    if e2 & (P | PS) != P {
        return Ok(Leaf { level: Level::Pd, entry: e2, entry_pa: pa2 });
    }
    let pa1 = slot(e2, v, 12);
    let e1 = mem.read_u64(pa1)?;
    Ok(Leaf { level: Level::Pt, entry: e1, entry_pa: pa1 })
}
