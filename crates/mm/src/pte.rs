//! Linux's x86-64 PTE helpers on raw entries (`mk_pte`, `pte_mkwrite`,
//! `pte_modify`, ...), for the entry format of the selected era.
//!
//! The bit layouts themselves are pgtable's; this module only holds the
//! small transformations the fault, fork and mprotect paths apply, so that
//! each path reads like its kernel counterpart.

use pgtable::entry::ADDR_MASK;
use pgtable::{EntryFlags, EntryFormat};

pub(crate) const P: u64 = EntryFlags::PRESENT.bits();
pub(crate) const RW: u64 = EntryFlags::WRITABLE.bits();
pub(crate) const A: u64 = EntryFlags::ACCESSED.bits();
pub(crate) const D: u64 = EntryFlags::DIRTY.bits();
pub(crate) const SPECIAL: u64 = EntryFlags::SPECIAL.bits();

/// `_PAGE_CHG_MASK`: what `pte_modify` keeps from the old entry (frame,
/// caching, special, A, D; soft-dirty and uffd-wp are never set here).
const CHG_MASK: u64 = ADDR_MASK
    | EntryFlags::PCD.bits()
    | EntryFlags::PWT.bits()
    | SPECIAL
    | A
    | D
    | EntryFlags::SOFT_DIRTY.bits()
    | EntryFlags::UFFD_WP.bits();

/// `__pte_needs_invert`: a non-zero entry with P clear has its frame
/// stored inverted in the L1TF format.
const fn needs_invert(v: u64) -> bool {
    v != 0 && v & P == 0
}

/// `pfn_pte(pfn, prot)` / `mk_pte`: the frame with the protection bits,
/// inverted when the protection is PROT_NONE in the L1TF format.
pub(crate) fn mk_pte(pfn: u64, prot: u64, format: EntryFormat) -> u64 {
    let frame = (pfn << 12) & ADDR_MASK;
    let frame = if format == EntryFormat::L1tf && needs_invert(prot | frame) {
        !frame & ADDR_MASK
    } else {
        frame
    };
    frame | prot
}

/// `pte_modify(pte, newprot)`: keep the frame, caching, special, A and D;
/// take the rest from `newprot`; in the L1TF format re-invert the frame
/// when the entry crosses between present and PROT_NONE
/// (`flip_protnone_guard`).
pub(crate) fn pte_modify(old: u64, newprot: u64, format: EntryFormat) -> u64 {
    let mut val = (old & CHG_MASK) | (newprot & !CHG_MASK);
    if format == EntryFormat::L1tf && needs_invert(old) != needs_invert(val) {
        val = (val & !ADDR_MASK) | (!val & ADDR_MASK);
    }
    val
}

/// `pte_write`.
pub(crate) const fn pte_write(v: u64) -> bool {
    v & RW != 0
}

/// `pte_dirty`.
pub(crate) const fn pte_dirty(v: u64) -> bool {
    v & D != 0
}

/// `pte_young`.
pub(crate) const fn pte_young(v: u64) -> bool {
    v & A != 0
}

/// `pte_special`.
pub(crate) const fn pte_special(v: u64) -> bool {
    v & SPECIAL != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prot::Prot;

    #[test]
    fn protnone_round_trip_inverts_only_in_l1tf() {
        let present = mk_pte(0x1234, Prot::Rw.vm_page_prot(), EntryFormat::L1tf) | RW | D;
        assert_eq!(present, 0x8000_0000_0123_4067);
        let none = pte_modify(present, Prot::None.vm_page_prot(), EntryFormat::L1tf);
        assert_eq!(none, (!0x0123_4000u64 & ADDR_MASK) | 0x160);
        let back = pte_modify(none, Prot::Rw.vm_page_prot(), EntryFormat::L1tf);
        assert_eq!(back, 0x8000_0000_0123_4065);
        let classic = pte_modify(present, Prot::None.vm_page_prot(), EntryFormat::Classic);
        assert_eq!(classic, 0x0123_4160);
        assert_eq!(pte_modify(classic, Prot::Rx.vm_page_prot(), EntryFormat::Classic), 0x0123_4065);
    }
}
