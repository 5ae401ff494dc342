//! anon_vma handles and their page->mapping encoding.
//!
//! In the kernel page->mapping of an anon page is the anon_vma's address
//! plus PAGE_MAPPING_ANON; the anon_vma slab is SLAB_TYPESAFE_BY_RCU, so an
//! old pointer may reach a freed object or, after a grace period, another
//! anon_vma. A handle here is (slot, generation): the slot plays the address
//! and the generation, bumped on every free, lets rmap tell a stale handle
//! from a live one instead of silently following it.
//!
//! Encoding (our own): bit 0 PAGE_MAPPING_ANON, bit 1 zero (Linux's
//! PAGE_MAPPING_MOVABLE/KSM bit stays clear, so `mapping & 3 == ANON` holds
//! as for a real anon page), bits 2..=33 the generation, bits 34..=63 the
//! slot.

use std::fmt;

use phys::PAGE_MAPPING_ANON;

use crate::error::RmapError;

/// Bits of the mapping word below the generation.
const GEN_SHIFT: u32 = 2;
/// Bits of the mapping word below the slot.
const SLOT_SHIFT: u32 = 34;
/// Number of slots the encoding can name.
pub(crate) const MAX_SLOTS: u64 = 1 << (64 - SLOT_SHIFT);
/// Linux's PAGE_MAPPING_FLAGS: the two low bits of page->mapping.
const MAPPING_FLAGS: u64 = 0x3;

/// A reference to an anon_vma in the arena: slot and generation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AnonVmaHandle {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl AnonVmaHandle {
    /// The slot (the "address" in the anon_vma cache).
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// The generation the slot had when this anon_vma was allocated.
    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// The page->mapping word naming this anon_vma (with PAGE_MAPPING_ANON).
    pub const fn to_mapping(self) -> u64 {
        ((self.slot as u64) << SLOT_SHIFT)
            | ((self.generation as u64) << GEN_SHIFT)
            | PAGE_MAPPING_ANON
    }

    /// Decode a page->mapping word. A word without PAGE_MAPPING_ANON, or with
    /// the other flag bit set, is not an anon_vma handle. Whether the handle
    /// is live or stale is for [`crate::Rmap::anon_vma`] to say.
    pub fn from_mapping(mapping: u64) -> Result<Self, RmapError> {
        if mapping & MAPPING_FLAGS != PAGE_MAPPING_ANON {
            return Err(RmapError::NotAnon(mapping));
        }
        // Both fields fit their types by construction of the shifts.
        let slot =
            u32::try_from(mapping >> SLOT_SHIFT).map_err(|_| RmapError::BadHandle(mapping))?;
        let generation = u32::try_from((mapping >> GEN_SHIFT) & u64::from(u32::MAX))
            .map_err(|_| RmapError::BadHandle(mapping))?;
        Ok(Self { slot, generation })
    }
}

impl fmt::Display for AnonVmaHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {} gen {}", self.slot, self.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips_and_keeps_flag_bits() {
        let h = AnonVmaHandle { slot: 0x3fff_ffff, generation: 0xdead_beef };
        let m = h.to_mapping();
        assert_eq!(m & 3, PAGE_MAPPING_ANON);
        assert_eq!(AnonVmaHandle::from_mapping(m), Ok(h));
        let h0 = AnonVmaHandle { slot: 0, generation: 0 };
        assert_eq!(h0.to_mapping(), 1);
        assert_eq!(AnonVmaHandle { slot: 1, generation: 1 }.to_mapping(), (1 << 34) | (1 << 2) | 1);
    }

    #[test]
    fn non_anon_words_are_rejected() {
        assert_eq!(AnonVmaHandle::from_mapping(0), Err(RmapError::NotAnon(0)));
        assert_eq!(AnonVmaHandle::from_mapping(0x1000), Err(RmapError::NotAnon(0x1000)));
        // KSM-style ANON|MOVABLE is not a plain anon_vma.
        assert_eq!(AnonVmaHandle::from_mapping(0x1003), Err(RmapError::NotAnon(0x1003)));
    }

    proptest::proptest! {
        #[test]
        fn any_handle_round_trips(slot in 0u32..(1 << 30), generation: u32) {
            let h = AnonVmaHandle { slot, generation };
            proptest::prop_assert_eq!(AnonVmaHandle::from_mapping(h.to_mapping()), Ok(h));
        }
    }
}
