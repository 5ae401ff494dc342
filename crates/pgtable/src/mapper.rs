//! Map, unmap, change protection and visit ranges of pages — each one a
//! visitor of the single [`walk_range`] walker.
//!
//! Operations that can fail on what they find (a page already mapped, a
//! huge page covering only part of the range) first run a read-only
//! checking visitor over the range and only then the changing one, so a
//! refused operation changes nothing. Running out of table frames in the
//! middle of a map leaves the pages mapped so far in place (Linux's
//! behaviour on -ENOMEM), and no empty table behind.
//!
//! The functions Linux's PTE-level code needs are here too: [`pte_alloc`]
//! (the address of the level-1 slot for an address, tables created on the
//! way) and [`for_each_entry`] (every non-none entry of a range, with the
//! right to rewrite it).

use crate::Level;
use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::entry::{ADDR_MASK, EntryFlags};
use crate::error::{MapError, MemError};
use crate::mem::{FrameSource, PhysMem, zero_frame};
use crate::range_walk::{Action, Slot, SlotClass, VaRange, Visitor, walk_range};
use crate::walk::PageSize;

/// Allocates and zeroes a frame for a PML4 and returns its address (a CR3).
pub fn new_root<M: PhysMem + ?Sized, F: FrameSource + ?Sized>(
    mem: &mut M,
    frames: &mut F,
) -> Result<PhysAddr, MapError> {
    let pfn = frames.alloc_table_frame()?;
    zero_frame(mem, pfn)?;
    Ok(pfn.addr())
}

/// A visited entry of [`for_each_entry`] / [`for_each_leaf`] / [`unmap`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EntryVisit {
    /// The address the entry maps (the start of its span, or the start of
    /// the range if the range begins inside the span).
    pub va: VirtAddr,
    /// Level of the entry (1 for a PTE, 2 or 3 for a huge leaf or a
    /// non-present entry there).
    pub level: Level,
    /// Physical address of the entry.
    pub entry_pa: PhysAddr,
    /// The entry's value before any rewrite.
    pub raw: u64,
    /// Whether the range covers the whole span of the entry.
    pub whole: bool,
}

impl EntryVisit {
    fn of(s: &Slot) -> Self {
        Self { va: s.va, level: s.level, entry_pa: s.entry_pa, raw: s.raw, whole: s.whole }
    }
}

const NO_FLAG_BITS: u64 = EntryFlags::PS.bits() | EntryFlags::PAT_LARGE.bits() | ADDR_MASK;

fn leaf_value(pfn: u64, size: PageSize, flags: EntryFlags) -> u64 {
    let ps = if size == PageSize::Size4K { 0 } else { EntryFlags::PS.bits() };
    (pfn << 12) | flags.bits() | ps
}

/// Refuses anything already mapped (or remembered) in a range.
struct MapCheck {
    target: Level,
}

impl Visitor for MapCheck {
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        let (va, level) = (s.va, s.level as u8);
        if s.level == self.target {
            return match s.class {
                SlotClass::None => Ok(Action::Keep),
                SlotClass::Table => Err(MapError::TableInTheWay { va, level }),
                _ => Err(MapError::AlreadyMapped { va, level, raw: s.raw }),
            };
        }
        match s.class {
            SlotClass::None => Ok(Action::Keep),
            SlotClass::Table => Ok(Action::Descend),
            SlotClass::Leaf => Err(MapError::HugeConflict { va, level, raw: s.raw }),
            SlotClass::NonPresent => Err(MapError::AlreadyMapped { va, level, raw: s.raw }),
        }
    }
}

struct MapFill {
    target: Level,
    size: PageSize,
    first_va: u64,
    first_pfn: u64,
    flags: EntryFlags,
}

impl Visitor for MapFill {
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        if s.level == self.target {
            // The check pass found it none; refuse anyway if it changed since.
            if s.class != SlotClass::None {
                return Err(MapError::AlreadyMapped { va: s.va, level: s.level as u8, raw: s.raw });
            }
            let pages = (s.va.as_u64().wrapping_sub(self.first_va)) >> 12;
            return Ok(Action::Write(leaf_value(self.first_pfn + pages, self.size, self.flags)));
        }
        Ok(Action::Descend)
    }
}

/// Maps `count` pages of `size` at `va` to consecutive frames from `pfn`
/// with leaf `flags` (which must contain PRESENT; PS is added for 2 MiB and
/// 1 GiB pages; PAT_LARGE is only accepted for those). Missing tables are
/// created with Linux's user table entry (0x67). Fails, changing nothing,
/// if any page of the range is already mapped or holds a non-present
/// entry, or if a huge page or a page table is in the way.
#[allow(clippy::too_many_arguments)]
pub fn map_range<M, F>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    va: VirtAddr,
    pfn: Pfn,
    count: u64,
    size: PageSize,
    flags: EntryFlags,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
{
    let bytes = size.bytes();
    if count == 0 {
        return Err(MapError::BadRange { start: va.as_u64(), len: 0 });
    }
    if !va.is_aligned(bytes) {
        return Err(MapError::Misaligned { addr: va.as_u64(), size: bytes });
    }
    let frames_per_page = bytes >> 12;
    if pfn.0 % frames_per_page != 0 {
        return Err(MapError::Misaligned { addr: pfn.0 << 12, size: bytes });
    }
    let mut forbidden = NO_FLAG_BITS;
    if size == PageSize::Size4K {
        // Bit 7 is PAT in a PTE: allowed; bit 12 is an address bit there.
        forbidden &= !EntryFlags::PAT.bits();
    } else {
        forbidden &= !EntryFlags::PAT_LARGE.bits();
    }
    if flags.bits() & forbidden != 0 || !flags.contains(EntryFlags::PRESENT) {
        return Err(MapError::BadFlags(flags.bits()));
    }
    let last_pfn = count
        .checked_sub(1)
        .and_then(|c| c.checked_mul(frames_per_page))
        .and_then(|c| c.checked_add(pfn.0));
    match last_pfn {
        Some(l) if l + frames_per_page - 1 <= Pfn::MAX.0 => {}
        _ => return Err(MapError::PfnRange { pfn: pfn.0, count }),
    }
    let len =
        count.checked_mul(bytes).ok_or(MapError::BadRange { start: va.as_u64(), len: u64::MAX })?;
    let range = VaRange::new(va, len)?;
    let target = size.level();
    walk_range(mem, frames, root, range, &mut MapCheck { target })?;
    let mut fill = MapFill { target, size, first_va: va.as_u64(), first_pfn: pfn.0, flags };
    walk_range(mem, frames, root, range, &mut fill)
}

/// Maps one page of `size` at `va` to `pfn`; see [`map_range`].
pub fn map<M, F>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    va: VirtAddr,
    pfn: Pfn,
    size: PageSize,
    flags: EntryFlags,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
{
    map_range(mem, frames, root, va, pfn, 1, size, flags)
}

/// Refuses a range that covers only part of a huge (or non-present huge)
/// entry.
struct WholeCheck;

impl Visitor for WholeCheck {
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        match s.class {
            SlotClass::Table => Ok(Action::Descend),
            SlotClass::None => Ok(Action::Keep),
            _ if s.whole => Ok(Action::Keep),
            _ => Err(MapError::PartialHuge { va: s.va, level: s.level as u8, raw: s.raw }),
        }
    }
}

struct Unmap<'f, C> {
    on_leaf: &'f mut C,
}

impl<C: FnMut(&EntryVisit)> Visitor for Unmap<'_, C> {
    const FREE_EMPTY_TABLES: bool = true;
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        match s.class {
            SlotClass::Table => Ok(Action::Descend),
            SlotClass::None => Ok(Action::Keep),
            SlotClass::Leaf | SlotClass::NonPresent => {
                (self.on_leaf)(&EntryVisit::of(s));
                Ok(Action::Write(0))
            }
        }
    }
}

/// Clears every entry in `range` that maps a page or holds a non-present
/// value, handing each old entry to `on_leaf` first, and frees the tables
/// left empty. Fails, changing nothing, if the range covers only part of a
/// huge entry.
pub fn unmap<M, F, C>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    range: VaRange,
    mut on_leaf: C,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
    C: FnMut(&EntryVisit),
{
    walk_range(mem, frames, root, range, &mut WholeCheck)?;
    walk_range(mem, frames, root, range, &mut Unmap { on_leaf: &mut on_leaf })
}

struct Protect {
    set: u64,
    clear: u64,
    changed: u64,
}

impl Visitor for Protect {
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        match s.class {
            SlotClass::Table => Ok(Action::Descend),
            SlotClass::Leaf => {
                self.changed += 1;
                Ok(Action::Write((s.raw & !self.clear) | self.set))
            }
            _ => Ok(Action::Keep),
        }
    }
}

/// Sets `set` and clears `clear` in every present leaf of `range`, leaving
/// non-present entries alone; returns how many leaves it rewrote. PRESENT,
/// bit 7 (PS/PAT), PAT_LARGE and address bits cannot be changed this way.
/// Fails, changing nothing, if the range covers only part of a huge entry.
pub fn protect<M, F>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    range: VaRange,
    set: EntryFlags,
    clear: EntryFlags,
) -> Result<u64, MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
{
    let both = set.bits() | clear.bits();
    if both & (NO_FLAG_BITS | EntryFlags::PRESENT.bits()) != 0 {
        return Err(MapError::BadFlags(both));
    }
    walk_range(mem, frames, root, range, &mut WholeCheck)?;
    let mut p = Protect { set: set.bits(), clear: clear.bits(), changed: 0 };
    walk_range(mem, frames, root, range, &mut p)?;
    Ok(p.changed)
}

struct ForEach<'f, C> {
    f: &'f mut C,
}

impl<C: FnMut(&EntryVisit) -> Result<Option<u64>, MapError>> Visitor for ForEach<'_, C> {
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        match s.class {
            SlotClass::Table => Ok(Action::Descend),
            SlotClass::None => Ok(Action::Keep),
            SlotClass::Leaf | SlotClass::NonPresent => match (self.f)(&EntryVisit::of(s))? {
                Some(new) => Ok(Action::Write(new)),
                None => Ok(Action::Keep),
            },
        }
    }
}

/// A frame source for walks that never create tables.
struct NoFrames;

impl FrameSource for NoFrames {
    fn alloc_table_frame(&mut self) -> Result<Pfn, MemError> {
        Err(MemError::NoFrames)
    }
    fn free_table_frame(&mut self, _pfn: Pfn) {}
}

/// Calls `f` for every entry of `range` that is not none and not a table
/// pointer — present leaves of every size and non-present entries (swap,
/// PROT_NONE...) at whatever level — in address order. When `f` returns
/// `Some(v)`, `v` is stored in the entry. Creates and frees no table; an
/// error from `f` stops the walk and is returned.
pub fn for_each_entry<M, C>(
    mem: &mut M,
    root: PhysAddr,
    range: VaRange,
    mut f: C,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    C: FnMut(&EntryVisit) -> Result<Option<u64>, MapError>,
{
    walk_range(mem, &mut NoFrames, root, range, &mut ForEach { f: &mut f })
}

/// Read-only view of a memory, for walks that must not write.
struct ReadOnly<'m, M: ?Sized>(&'m M);

impl<M: PhysMem + ?Sized> PhysMem for ReadOnly<'_, M> {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        self.0.read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, _value: u64) -> Result<(), MemError> {
        Err(MemError::ReadOnly(pa))
    }
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        _c: u64,
        _n: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        Err(MemError::ReadOnly(pa))
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
}

/// Calls `f` for every entry [`for_each_entry`] would visit, without the
/// right to change anything.
pub fn for_each_leaf<M, C>(
    mem: &M,
    root: PhysAddr,
    range: VaRange,
    mut f: C,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    C: FnMut(&EntryVisit),
{
    let mut ro = ReadOnly(mem);
    walk_range(
        &mut ro,
        &mut NoFrames,
        root,
        range,
        &mut ForEach {
            f: &mut |e: &EntryVisit| {
                f(e);
                Ok(None)
            },
        },
    )
}

struct PteAlloc {
    slot: Option<PhysAddr>,
}

impl Visitor for PteAlloc {
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        if s.level == Level::Pt {
            self.slot = Some(s.entry_pa);
            return Ok(Action::Keep);
        }
        match s.class {
            SlotClass::None | SlotClass::Table => Ok(Action::Descend),
            SlotClass::Leaf => {
                Err(MapError::HugeConflict { va: s.va, level: s.level as u8, raw: s.raw })
            }
            SlotClass::NonPresent => {
                Err(MapError::AlreadyMapped { va: s.va, level: s.level as u8, raw: s.raw })
            }
        }
    }
}

/// The physical address of the level-1 entry (PTE) for `va`, creating the
/// missing tables above it like Linux's `pte_alloc`. Fails if a huge leaf
/// or a non-present entry above level 1 covers `va`.
pub fn pte_alloc<M, F>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    va: VirtAddr,
) -> Result<PhysAddr, MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
{
    let range = VaRange::new(va.align_down(4096), 4096)?;
    let mut v = PteAlloc { slot: None };
    walk_range(mem, frames, root, range, &mut v)?;
    v.slot.ok_or(MapError::CannotDescend { va, level: 1, raw: 0 })
}

struct FreeTables;

impl Visitor for FreeTables {
    const FREE_EMPTY_TABLES: bool = true;
    fn visit(&mut self, s: &Slot) -> Result<Action, MapError> {
        Ok(if s.class == SlotClass::Table { Action::Descend } else { Action::Keep })
    }
}

/// Unlinks and frees every page table within `range`'s walk that holds
/// nothing (Linux's `free_pgtables` for tables already emptied by a zap).
pub fn free_empty_tables<M, F>(
    mem: &mut M,
    frames: &mut F,
    root: PhysAddr,
    range: VaRange,
) -> Result<(), MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
{
    walk_range(mem, frames, root, range, &mut FreeTables)
}
