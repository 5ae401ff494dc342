//! The one generic walker every range operation is built on.
//!
//! [`walk_range`] descends the tables once for a whole virtual range and
//! hands each entry the range touches to a [`Visitor`], which says whether to
//! leave it, rewrite it, or descend into it (creating the lower table when
//! the entry is none). It is generic over the visitor, so each operation is a
//! separate monomorphised walker with no dynamic dispatch on the hot path —
//! the design of gVisor's pagetables package. Table creation (Linux's user
//! table entry, 0x67) and the freeing of tables left empty are done here and
//! nowhere else.
//!
//! Invariants kept: a table frame is linked by exactly one entry; a frame
//! taken from the [`FrameSource`] is zeroed before it is linked; a table
//! the walker unlinks is returned to the source; the root is never freed.

use crate::Level;
use crate::addr::{PhysAddr, VirtAddr};
use crate::entry::{ADDR_MASK, EntryFlags, USER_TABLE_FLAGS, is_leaf};
use crate::error::MapError;
use crate::mem::{FrameSource, PhysMem, zero_frame};

/// Bits 47..0 of a virtual address: the part the tables translate.
const LINEAR_MASK: u64 = (1 << 48) - 1;

/// A page-aligned range of virtual addresses that does not cross the
/// non-canonical hole.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VaRange {
    // 48-bit linear form, start < end <= 2^48.
    start: u64,
    end: u64,
}

impl VaRange {
    /// `len` bytes from `start`. Both must be multiples of 4 KiB, `len`
    /// non-zero, and the range must stay inside the half of the address
    /// space `start` lies in.
    pub fn new(start: VirtAddr, len: u64) -> Result<Self, MapError> {
        let bad = MapError::BadRange { start: start.as_u64(), len };
        if len == 0 || !start.is_aligned(4096) || len % 4096 != 0 {
            return Err(bad);
        }
        let s = start.as_u64() & LINEAR_MASK;
        let limit = if s < (1 << 47) { 1u64 << 47 } else { 1u64 << 48 };
        match s.checked_add(len) {
            Some(e) if e <= limit => Ok(Self { start: s, end: e }),
            _ => Err(bad),
        }
    }

    /// The range covering `[start, end)` given as raw addresses.
    pub fn from_bounds(start: VirtAddr, end: u64) -> Result<Self, MapError> {
        let len = end.wrapping_sub(start.as_u64());
        Self::new(start, len)
    }

    /// First address.
    pub const fn start(&self) -> VirtAddr {
        VirtAddr::new_truncate(self.start)
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: an empty range cannot be built.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// What an entry is, from the walker's point of view.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SlotClass {
    /// The value 0.
    None,
    /// P set and pointing at a lower table.
    Table,
    /// P set and mapping a page (any PTE, or a PDPTE/PDE with PS).
    Leaf,
    /// P clear and non-zero: a swap, PROT_NONE or other software entry.
    /// Interpreting it is [`crate::decode`]'s job.
    NonPresent,
}

/// One entry the range touches, as shown to a [`Visitor`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Slot {
    /// First address of the range inside this entry's span.
    pub va: VirtAddr,
    /// Level of the table holding the entry.
    pub level: Level,
    /// Physical address of the entry.
    pub entry_pa: PhysAddr,
    /// The entry's value.
    pub raw: u64,
    /// Its class.
    pub class: SlotClass,
    /// Whether the range covers the entry's whole span.
    pub whole: bool,
}

/// What the walker does with a [`Slot`] after the visitor looked at it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// Leave the entry as it is and move on.
    Keep,
    /// Store this value in the entry (not allowed for a table pointer).
    Write(u64),
    /// Descend: into the table a [`SlotClass::Table`] entry points at, or,
    /// for a [`SlotClass::None`] entry above level 1, into a new table.
    Descend,
}

/// One range operation: decides per entry what the walker does.
pub trait Visitor {
    /// Whether a table that is all zeroes after the walker came back from
    /// it is unlinked and returned to the frame source.
    const FREE_EMPTY_TABLES: bool = false;

    /// Looks at one entry and says what to do with it.
    fn visit(&mut self, slot: &Slot) -> Result<Action, MapError>;
}

/// Walks `range` in the tables rooted at `root`, calling `visitor` for
/// every entry the range touches, top-down and in address order; each table
/// is visited once for the whole range.
pub fn walk_range<M, F, V>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    range: VaRange,
    visitor: &mut V,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
    V: Visitor,
{
    walk_table(mem, frames, root.as_u64() & ADDR_MASK, Level::Pml4, range.start, range.end, visitor)
}

fn classify(raw: u64, level: Level) -> SlotClass {
    if raw & EntryFlags::PRESENT.bits() != 0 {
        if is_leaf(raw, level) { SlotClass::Leaf } else { SlotClass::Table }
    } else if raw == 0 {
        SlotClass::None
    } else {
        SlotClass::NonPresent
    }
}

/// Whether all 512 entries of the table at `table` are zero.
pub(crate) fn table_is_empty<M: PhysMem + ?Sized>(mem: &M, table: u64) -> Result<bool, MapError> {
    for i in 0..512u64 {
        if mem.read_u64(PhysAddr::new_truncate(table + i * 8))? != 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn walk_table<M, F, V>(
    mem: &mut M,
    frames: &mut F,
    table: u64,
    level: Level,
    start: u64,
    end: u64,
    v: &mut V,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
    V: Visitor,
{
    let shift = level.shift();
    let span = 1u64 << shift;
    let mut a = start;
    while a < end {
        let base = a & !(span - 1);
        let sub_end = end.min(base + span);
        let entry_pa = PhysAddr::new_truncate(table | (((a >> shift) & 0x1ff) << 3));
        let raw = mem.read_u64(entry_pa)?;
        let class = classify(raw, level);
        let va = VirtAddr::new_truncate(a);
        let slot =
            Slot { va, level, entry_pa, raw, class, whole: a == base && sub_end == base + span };
        match v.visit(&slot)? {
            Action::Keep => {}
            Action::Write(new) => {
                if class == SlotClass::Table {
                    return Err(MapError::TableOverwrite { va, level: level as u8 });
                }
                mem.write_u64(entry_pa, new)?;
            }
            Action::Descend => {
                let Some(lower) = level.next_lower() else {
                    return Err(MapError::CannotDescend { va, level: level as u8, raw });
                };
                let (child, fresh) = match class {
                    SlotClass::Table => (raw & ADDR_MASK, false),
                    SlotClass::None => {
                        let pfn = frames.alloc_table_frame()?;
                        zero_frame(mem, pfn)?;
                        let child = pfn.addr().as_u64();
                        mem.write_u64(entry_pa, child | USER_TABLE_FLAGS.bits())?;
                        (child, true)
                    }
                    SlotClass::Leaf | SlotClass::NonPresent => {
                        return Err(MapError::CannotDescend { va, level: level as u8, raw });
                    }
                };
                let res = walk_table(mem, frames, child, lower, a, sub_end, v);
                // A table created for an operation that then failed is not
                // left behind empty; otherwise only visitors that ask for it
                // (unmap) free the tables they emptied.
                if (V::FREE_EMPTY_TABLES || (fresh && res.is_err())) && table_is_empty(mem, child)?
                {
                    mem.write_u64(entry_pa, 0)?;
                    frames.free_table_frame(PhysAddr::new_truncate(child).pfn());
                }
                res?;
            }
        }
        a = sub_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn va(v: u64) -> VirtAddr {
        VirtAddr::new(v).unwrap()
    }

    #[test]
    fn ranges() {
        let r = VaRange::new(va(0x1000), 0x2000).unwrap();
        assert_eq!((r.start(), r.len()), (va(0x1000), 0x2000));
        assert!(VaRange::new(va(0x1000), 0).is_err());
        assert!(VaRange::new(va(0x1001), 0x1000).is_err());
        assert!(VaRange::new(va(0x1000), 0x1800).is_err());
        // The whole lower half, and not one page more.
        assert!(VaRange::new(va(0), 1 << 47).is_ok());
        assert!(VaRange::new(va(0), (1 << 47) + 0x1000).is_err());
        // The whole upper half.
        let up = VaRange::new(va(0xffff_8000_0000_0000), 1 << 47).unwrap();
        assert_eq!(up.start(), va(0xffff_8000_0000_0000));
        assert!(VaRange::new(va(0xffff_ffff_ffff_f000), 0x2000).is_err());
        assert!(VaRange::new(va(0), !0xfff).is_err());
        let b = VaRange::from_bounds(va(0x2000), 0x5000).unwrap();
        assert_eq!(b.len(), 0x3000);
        assert!(VaRange::from_bounds(va(0x5000), 0x2000).is_err());
    }

    #[test]
    fn classes() {
        assert_eq!(classify(0, Level::Pt), SlotClass::None);
        assert_eq!(classify(0x20, Level::Pt), SlotClass::NonPresent);
        assert_eq!(classify(0x67, Level::Pt), SlotClass::Leaf);
        assert_eq!(classify(0x67, Level::Pd), SlotClass::Table);
        assert_eq!(classify(0xe7, Level::Pd), SlotClass::Leaf);
        assert_eq!(classify(0xe7, Level::Pdpt), SlotClass::Leaf);
        // Bit 7 in a PML4E is reserved, never a leaf: the walker follows it.
        assert_eq!(classify(0xe7, Level::Pml4), SlotClass::Table);
    }
}
