//! Side-effect-free lookups: which entry maps an address, without checks.
//!
//! This is the fast path an emulator's TLB refill or a debugger wants: no
//! permission or reserved-bit checks, no Accessed/Dirty updates, memory only
//! read. A PML4E is always followed as a table pointer (its bit 7 would be a
//! reserved-bit fault for the hardware walk, see [`crate::walk`]).

use crate::Level;
use crate::addr::{PhysAddr, VirtAddr};
use crate::entry::{ADDR_MASK, EntryFlags};
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
    ///
    /// A present leaf above level 1 has PS set by definition (that is what
    /// made it a leaf), so its frame bits are simply the address bits above
    /// its span: no test of PS or the level is needed on this hot path.
    #[inline]
    pub const fn pa(&self, va: VirtAddr) -> PhysAddr {
        let span_mask = self.level.entry_span() - 1;
        PhysAddr::new_truncate((self.entry & ADDR_MASK & !span_mask) | (va.as_u64() & span_mask))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::FrameMem;

    /// Tables written by hand, word by word: PML4 at frame 1, PDPT at 2,
    /// PD at 3, PT at 4.
    fn hand_tables() -> FrameMem {
        let mut m = FrameMem::new(8);
        let w =
            |m: &mut FrameMem, pa: u64, v: u64| m.write_u64(PhysAddr::new(pa).unwrap(), v).unwrap();
        w(&mut m, 0x1000, 0x2067); // PML4[0] -> PDPT
        w(&mut m, 0x2000, 0x3067); // PDPT[0] -> PD
        w(&mut m, 0x2008, 0x4000_00e7); // PDPT[1]: 1 GiB leaf
        w(&mut m, 0x3000, 0x4067); // PD[0] -> PT
        w(&mut m, 0x3008, 0x20_00e7); // PD[1]: 2 MiB leaf
        w(&mut m, 0x3010, 0x20_0080); // PD[2]: PS without P
        w(&mut m, 0x4008, 0x5067); // PT[1]: 4 KiB leaf
        w(&mut m, 0x4010, 0x07FF_FFFF_FFFF_FC00); // PT[2]: swap entry
        m
    }

    #[test]
    fn each_level_ends_a_walk() {
        let m = hand_tables();
        let cr3 = PhysAddr::new(0x1000).unwrap();
        let at = |v: u64| entry_at(&m, cr3, VirtAddr::new(v).unwrap()).unwrap();
        let l = at(0x1abc);
        assert_eq!((l.level, l.entry, l.entry_pa.as_u64()), (Level::Pt, 0x5067, 0x4008));
        assert_eq!(l.pa(VirtAddr::new(0x1abc).unwrap()).as_u64(), 0x5abc);
        let l = at(0x2000);
        assert_eq!((l.level, l.entry, l.is_present()), (Level::Pt, 0x07FF_FFFF_FFFF_FC00, false));
        let l = at(0x3f_ffff);
        assert_eq!((l.level, l.page_size()), (Level::Pd, 1 << 21));
        assert_eq!(l.pa(VirtAddr::new(0x3f_ffff).unwrap()).as_u64(), 0x3f_ffff);
        assert_eq!(at(0x40_0000).level, Level::Pd);
        assert!(!at(0x40_0000).is_present());
        let l = at(0x7fff_ffff);
        assert_eq!(
            (l.level, l.pa(VirtAddr::new(0x7fff_ffff).unwrap()).as_u64()),
            (Level::Pdpt, 0x7fff_ffff)
        );
        let l = at(0x80_0000_0000);
        assert_eq!((l.level, l.entry, l.entry_pa.as_u64()), (Level::Pml4, 0, 0x1008));
        // lookup: only present leaves.
        assert!(lookup(&m, cr3, VirtAddr::new(0x2000).unwrap()).unwrap().is_none());
        assert!(lookup(&m, cr3, VirtAddr::new(0x40_0000).unwrap()).unwrap().is_none());
        assert!(lookup(&m, cr3, VirtAddr::new(0x1000).unwrap()).unwrap().is_some());
        // CR3's low bits (PCID) are ignored.
        let l =
            entry_at(&m, PhysAddr::new(0x1fff).unwrap(), VirtAddr::new(0x1000).unwrap()).unwrap();
        assert_eq!(l.entry, 0x5067);
    }
}
