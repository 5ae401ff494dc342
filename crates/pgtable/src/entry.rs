//! The bits of a paging-structure entry, as the hardware defines them, and
//! which of them are reserved at which level.
//!
//! An entry is a raw `u64`; [`EntryFlags`] names every bit that is not part
//! of the frame address, and the functions here say, for a level and a CPU
//! (MAXPHYADDR, EFER.NXE), where the frame address lies and which set bits
//! would make the hardware raise a reserved-bit page fault.

use crate::Level;
use crate::addr::{MAX_PHYS_ADDR_BITS, Pfn};
use crate::error::EntryError;

bitflags::bitflags! {
    /// Every architectural bit of an x86-64 paging-structure entry outside
    /// the frame-address field, with Linux's names for the software bits.
    ///
    /// Bit 7 is PS in a PDPTE or PDE (a 1 GiB or 2 MiB leaf), PAT in a 4 KiB
    /// PTE and reserved in a PML4E; bit 8 is G in a present leaf and Linux's
    /// PROTNONE marker when P is clear; bit 12 is PAT in a large leaf and an
    /// address bit elsewhere. Aliases name the same bit under its other uses.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
    pub struct EntryFlags: u64 {
        /// P: the entry is valid for translation.
        const PRESENT = 1 << 0;
        /// R/W: writes allowed (subject to CR0.WP for supervisor accesses).
        const WRITABLE = 1 << 1;
        /// U/S: user-mode accesses allowed.
        const USER = 1 << 2;
        /// PWT: page-level write-through.
        const PWT = 1 << 3;
        /// PCD: page-level cache disable.
        const PCD = 1 << 4;
        /// A: set by the CPU when the entry is used for a translation.
        const ACCESSED = 1 << 5;
        /// D: set by the CPU on a write through a leaf entry.
        const DIRTY = 1 << 6;
        /// PS: this PDPTE/PDE maps a 1 GiB / 2 MiB page (reserved in a PML4E).
        const PS = 1 << 7;
        /// PAT bit of a 4 KiB PTE (same bit as [`EntryFlags::PS`]).
        const PAT = 1 << 7;
        /// G: global translation (leaves only, with CR4.PGE).
        const GLOBAL = 1 << 8;
        /// Linux's `_PAGE_PROTNONE`: with P clear, a PROT_NONE mapping (bit 8).
        const PROTNONE = 1 << 8;
        /// Linux `_PAGE_SOFTW1` (ignored by hardware).
        const SOFTW1 = 1 << 9;
        /// Linux `_PAGE_SPECIAL` (= SOFTW1): no struct page behind it.
        const SPECIAL = 1 << 9;
        /// Linux `_PAGE_SOFTW2` (ignored by hardware).
        const SOFTW2 = 1 << 10;
        /// Linux `_PAGE_UFFD_WP` (= SOFTW2): userfaultfd write-protected.
        const UFFD_WP = 1 << 10;
        /// Linux `_PAGE_SOFTW3` (ignored by hardware).
        const SOFTW3 = 1 << 11;
        /// Linux `_PAGE_SOFT_DIRTY` (= SOFTW3).
        const SOFT_DIRTY = 1 << 11;
        /// PAT bit of a 2 MiB / 1 GiB leaf (an address bit elsewhere).
        const PAT_LARGE = 1 << 12;
        /// Bit 52, ignored by hardware; Linux gives it no name.
        const AVL52 = 1 << 52;
        /// Bit 53, ignored by hardware.
        const AVL53 = 1 << 53;
        /// Bit 54, ignored by hardware.
        const AVL54 = 1 << 54;
        /// Bit 55, ignored by hardware.
        const AVL55 = 1 << 55;
        /// Bit 56, ignored by hardware.
        const AVL56 = 1 << 56;
        /// Linux `_PAGE_SOFTW4` (bit 57, ignored by hardware).
        const SOFTW4 = 1 << 57;
        /// Linux `_PAGE_SOFTW5` (bit 58, ignored by hardware).
        const SOFTW5 = 1 << 58;
        /// Linux `_PAGE_SAVED_DIRTY` (= SOFTW5): D moved aside on write-protect.
        const SAVED_DIRTY = 1 << 58;
        /// Protection key, bit 0 of 4 (bit 59; leaves, with CR4.PKE).
        const PKEY0 = 1 << 59;
        /// Protection key, bit 1 of 4 (bit 60).
        const PKEY1 = 1 << 60;
        /// Protection key, bit 2 of 4 (bit 61).
        const PKEY2 = 1 << 61;
        /// Protection key, bit 3 of 4 (bit 62).
        const PKEY3 = 1 << 62;
        /// XD/NX: instruction fetches forbidden (reserved when EFER.NXE = 0).
        const NX = 1 << 63;
    }
}

/// Linux's table entry above a user PTE: P | RW | US | A | D (`_PAGE_TABLE`).
pub const USER_TABLE_FLAGS: EntryFlags = EntryFlags::PRESENT
    .union(EntryFlags::WRITABLE)
    .union(EntryFlags::USER)
    .union(EntryFlags::ACCESSED)
    .union(EntryFlags::DIRTY);

/// Bits 51..12: the widest possible frame-address field (MAXPHYADDR = 52).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Bits 62..59: the protection key of a leaf.
pub const PKEY_MASK: u64 = 0x7800_0000_0000_0000;

/// Whether an entry at `level` with value `raw` maps a page (as opposed to
/// pointing at a lower table). Meaningful for present entries only; a PML4E
/// never maps a page (its bit 7 is reserved).
#[inline]
pub const fn is_leaf(raw: u64, level: Level) -> bool {
    match level {
        Level::Pt => true,
        Level::Pd | Level::Pdpt => raw & EntryFlags::PS.bits() != 0,
        Level::Pml4 => false,
    }
}

/// Mask of the frame-address bits of an entry at `level` with value `raw`,
/// assuming MAXPHYADDR = 52: bits 51..12 for a 4 KiB leaf or a table pointer,
/// 51..21 for a 2 MiB leaf, 51..30 for a 1 GiB leaf.
#[inline]
pub const fn frame_mask(raw: u64, level: Level) -> u64 {
    match level {
        Level::Pd if raw & EntryFlags::PS.bits() != 0 => ADDR_MASK & !((1 << 21) - 1),
        Level::Pdpt if raw & EntryFlags::PS.bits() != 0 => ADDR_MASK & !((1 << 30) - 1),
        _ => ADDR_MASK,
    }
}

/// The bits of `raw` that the hardware requires to be zero in a present
/// entry at `level`, for a CPU with `maxphyaddr` address bits and the given
/// EFER.NXE. Returns the reserved bits that are set (0: none).
///
/// Reserved: bits MAXPHYADDR..51 everywhere; bit 63 when NXE is off; bit 7
/// in a PML4E; bits 29..13 of a 1 GiB leaf and 20..13 of a 2 MiB leaf (the
/// address bits below the page size, bit 12 being PAT there).
#[inline]
pub const fn reserved_bits_set(raw: u64, level: Level, maxphyaddr: u8, nxe: bool) -> u64 {
    raw & (cpu_reserved_mask(maxphyaddr, nxe) | level_reserved_mask(raw, level))
}

/// Reserved bits that depend on the CPU only: MAXPHYADDR..51, and bit 63
/// when EFER.NXE is off. A `maxphyaddr` of 52 or more reserves no address
/// bit.
#[inline]
pub const fn cpu_reserved_mask(maxphyaddr: u8, nxe: bool) -> u64 {
    let mut rsvd =
        if maxphyaddr >= MAX_PHYS_ADDR_BITS { 0 } else { ADDR_MASK & !((1u64 << maxphyaddr) - 1) };
    if !nxe {
        rsvd |= EntryFlags::NX.bits();
    }
    rsvd
}

/// Reserved bits that depend on the level and the entry's own PS bit: bit 7
/// of a PML4E, the address bits below the page size of a large leaf.
#[inline]
pub const fn level_reserved_mask(raw: u64, level: Level) -> u64 {
    match level {
        Level::Pml4 => EntryFlags::PS.bits(),
        Level::Pdpt if raw & EntryFlags::PS.bits() != 0 => 0x3fff_e000,
        Level::Pd if raw & EntryFlags::PS.bits() != 0 => 0x001f_e000,
        _ => 0,
    }
}

/// Checks a present entry's reserved bits (see [`reserved_bits_set`]).
pub fn check_reserved(raw: u64, level: Level, maxphyaddr: u8, nxe: bool) -> Result<(), EntryError> {
    if maxphyaddr == 0 || maxphyaddr > MAX_PHYS_ADDR_BITS {
        return Err(EntryError::BadMaxPhyAddr(maxphyaddr));
    }
    match reserved_bits_set(raw, level, maxphyaddr, nxe) {
        0 => Ok(()),
        bits => Err(EntryError::ReservedBits { raw, level: level as u8, bits }),
    }
}

/// The frame a present entry points at (a lower table, or the first 4 KiB
/// frame of the page it maps), ignoring reserved-bit checks.
#[inline]
pub const fn entry_pfn(raw: u64, level: Level) -> Pfn {
    Pfn((raw & frame_mask(raw, level)) >> 12)
}

/// The protection key (0..=15) stored in a leaf's bits 62..59.
#[inline]
pub const fn pkey(raw: u64) -> u8 {
    ((raw & PKEY_MASK) >> 59) as u8
}

/// The names of the flag bits set in `raw`, as an entry at `level`: bit 7 is
/// called PS at levels 2 and 3, PAT at level 1 and RSVD7 at level 4; bit 12
/// is PAT_LARGE only in a large leaf; bit 8 is PROTNONE when P is clear and
/// GLOBAL otherwise; software bits carry their Linux names. Frame-address
/// bits are not listed; set bits that are neither named nor address bits
/// (reserved bits below a large page) appear as `RSVDn`.
#[cfg(feature = "alloc")]
pub fn flag_names(raw: u64, level: Level) -> alloc::vec::Vec<alloc::string::String> {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    let present = raw & 1 != 0;
    let large = level != Level::Pt && level != Level::Pml4 && raw & EntryFlags::PS.bits() != 0;
    let mut names = Vec::new();
    let fmask = frame_mask(raw, level);
    for bit in 0..64u32 {
        let m = 1u64 << bit;
        if raw & m == 0 || fmask & m != 0 {
            continue;
        }
        let name: String = match bit {
            0 => "PRESENT".into(),
            1 => "WRITABLE".into(),
            2 => "USER".into(),
            3 => "PWT".into(),
            4 => "PCD".into(),
            5 => "ACCESSED".into(),
            6 => "DIRTY".into(),
            7 => match level {
                Level::Pt => "PAT".into(),
                Level::Pd | Level::Pdpt => "PS".into(),
                Level::Pml4 => "RSVD7".into(),
            },
            8 if present => "GLOBAL".into(),
            8 => "PROTNONE".into(),
            9 => "SPECIAL".into(),
            10 => "UFFD_WP".into(),
            11 => "SOFT_DIRTY".into(),
            12 if large => "PAT_LARGE".into(),
            52..=56 => format!("AVL{bit}"),
            57 => "SOFTW4".into(),
            58 => "SOFTW5".into(),
            59..=62 => format!("PKEY{}", bit - 59),
            63 => "NX".into(),
            _ => format!("RSVD{bit}"),
        };
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_table_flags_are_linux_page_table() {
        assert_eq!(USER_TABLE_FLAGS.bits(), 0x67);
    }

    #[test]
    fn reserved_per_level() {
        // PS in a PML4E is reserved; in a PDPTE it makes a 1 GiB leaf.
        assert_eq!(reserved_bits_set(0x83, Level::Pml4, 52, true), 0x80);
        assert_eq!(reserved_bits_set(0x4000_0083, Level::Pdpt, 52, true), 0);
        // Bits 29..13 below a 1 GiB page, 20..13 below a 2 MiB one; bit 12 is PAT.
        assert_eq!(reserved_bits_set(0x4000_2083, Level::Pdpt, 52, true), 0x2000);
        assert_eq!(reserved_bits_set(0x4000_1083, Level::Pdpt, 52, true), 0);
        assert_eq!(reserved_bits_set(0x0010_0083, Level::Pd, 52, true), 0x0010_0000);
        assert_eq!(reserved_bits_set(0x0020_1083, Level::Pd, 52, true), 0);
        // The same bits are address bits in a table pointer or 4 KiB PTE.
        assert_eq!(reserved_bits_set(0x0010_0003, Level::Pd, 52, true), 0);
        assert_eq!(reserved_bits_set(0x0010_0083, Level::Pt, 52, true), 0);
        // MAXPHYADDR..51.
        assert_eq!(reserved_bits_set(1 << 46 | 1, Level::Pt, 46, true), 1 << 46);
        assert_eq!(reserved_bits_set(1 << 45 | 1, Level::Pt, 46, true), 0);
        assert_eq!(reserved_bits_set(1 << 51 | 1, Level::Pml4, 52, true), 0);
        // NX when EFER.NXE is off.
        assert_eq!(reserved_bits_set(1 << 63 | 1, Level::Pt, 52, false), 1 << 63);
        assert_eq!(reserved_bits_set(1 << 63 | 1, Level::Pt, 52, true), 0);
        assert_eq!(check_reserved(1, Level::Pt, 0, true), Err(EntryError::BadMaxPhyAddr(0)));
        // Out-of-range widths never panic.
        assert_eq!(reserved_bits_set(1 << 51 | 1, Level::Pt, 200, true), 0);
        assert_eq!(
            check_reserved(0x83, Level::Pml4, 48, true),
            Err(EntryError::ReservedBits { raw: 0x83, level: 4, bits: 0x80 })
        );
    }

    #[test]
    fn frames_and_names() {
        assert_eq!(entry_pfn(0x8000_0000_1234_5067, Level::Pt), Pfn(0x12345));
        assert_eq!(entry_pfn(0x0000_0000_1234_5067, Level::Pd), Pfn(0x12345));
        assert_eq!(entry_pfn(0x0000_0000_1240_10e7, Level::Pd), Pfn(0x12400));
        assert_eq!(entry_pfn(0x0000_0000_c000_10e7, Level::Pdpt), Pfn(0xc0000));
        assert_eq!(pkey(0x7800_0000_0000_0001), 15);
        assert_eq!(pkey(0x0800_0000_0000_0001), 1);
        assert_eq!(
            flag_names(0x8000_0000_0020_10e7, Level::Pd),
            ["PRESENT", "WRITABLE", "USER", "ACCESSED", "DIRTY", "PS", "PAT_LARGE", "NX"]
        );
        assert_eq!(flag_names(0x1_0000_0180, Level::Pt), ["PAT", "PROTNONE"]);
        assert_eq!(flag_names(0x0010_2081, Level::Pd), ["PRESENT", "PS", "RSVD13", "RSVD20"]);
    }
}
