//! The architecture-independent swap entry, Linux's `swp_entry_t`.
//!
//! `(type << 58) | offset`: the key of the swap cache and what a swap-cache
//! page's `private` word holds. It is not the x86 PTE form; pgtable's
//! [`SwapPte`] is, and the conversions below carry only type and offset
//! across (the PTE's exclusive, soft-dirty and uffd-wp bits do not exist
//! here, as `pte_to_swp_entry` drops them).

use pgtable::SwapPte;

use crate::error::SwapError;

/// Bit position of the type in a `swp_entry_t` (SWP_TYPE_SHIFT on 64-bit:
/// 63 value bits of an xarray entry minus 5 type bits).
pub const SWP_TYPE_SHIFT: u32 = 58;
/// Mask of the offset field.
pub const SWP_OFFSET_MASK: u64 = (1 << SWP_TYPE_SHIFT) - 1;
/// Largest swap type: the PTE holds 5 bits (MAX_SWAPFILES_SHIFT).
pub const MAX_SWAP_TYPE: u8 = 31;

/// Linux's `swp_entry_t`: a swap type (device) and an offset (slot) on it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct SwpEntry(u64);

impl SwpEntry {
    /// `swp_entry(type, offset)`, if type fits 5 bits and offset 58.
    pub const fn new(swap_type: u8, offset: u64) -> Result<Self, SwapError> {
        if swap_type > MAX_SWAP_TYPE {
            return Err(SwapError::BadType(swap_type as u64));
        }
        if offset > SWP_OFFSET_MASK {
            return Err(SwapError::BadOffset(offset));
        }
        Ok(Self(((swap_type as u64) << SWP_TYPE_SHIFT) | offset))
    }

    /// For a device's own (type, slot): the type was checked when the device
    /// was made and slots are below 2^32, so both fields fit.
    pub(crate) const fn for_slot(swap_type: u8, offset: u64) -> Self {
        Self(((swap_type as u64 & 0x1f) << SWP_TYPE_SHIFT) | (offset & SWP_OFFSET_MASK))
    }

    /// The entry whose raw value is `val` (e.g. a page's `private` word).
    pub const fn from_raw(val: u64) -> Result<Self, SwapError> {
        let swap_type = val >> SWP_TYPE_SHIFT;
        if swap_type > MAX_SWAP_TYPE as u64 {
            return Err(SwapError::BadType(swap_type));
        }
        Ok(Self(val))
    }

    /// The raw value (`entry.val`).
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// `swp_type(entry)`.
    pub const fn swap_type(self) -> u8 {
        (self.0 >> SWP_TYPE_SHIFT) as u8
    }

    /// `swp_offset(entry)`.
    pub const fn offset(self) -> u64 {
        self.0 & SWP_OFFSET_MASK
    }
}

impl core::fmt::Display for SwpEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{:#x}", self.swap_type(), self.offset())
    }
}

/// `swp_entry_to_pte` without flags: the PTE form of the same slot, with
/// exclusive, soft-dirty and uffd-wp clear (mm sets those it needs).
impl From<SwpEntry> for SwapPte {
    fn from(e: SwpEntry) -> Self {
        SwapPte { swap_type: e.swap_type(), offset: e.offset(), ..SwapPte::default() }
    }
}

/// `pte_to_swp_entry`: the PTE's flag bits are dropped.
impl TryFrom<SwapPte> for SwpEntry {
    type Error = SwapError;
    fn try_from(p: SwapPte) -> Result<Self, SwapError> {
        SwpEntry::new(p.swap_type, p.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let e = SwpEntry::new(3, 0x12345).unwrap();
        assert_eq!(e.raw(), (3 << 58) | 0x12345);
        assert_eq!((e.swap_type(), e.offset()), (3, 0x12345));
        assert_eq!(SwpEntry::new(31, SWP_OFFSET_MASK).unwrap().raw(), u64::MAX >> 1);
        assert!(matches!(SwpEntry::new(32, 1), Err(SwapError::BadType(32))));
        assert!(matches!(
            SwpEntry::new(0, 1 << 58),
            Err(SwapError::BadOffset(0x400_0000_0000_0000))
        ));
        assert!(matches!(SwpEntry::from_raw(1 << 63), Err(SwapError::BadType(32))));
        assert_eq!(SwpEntry::from_raw(e.raw()).unwrap(), e);
        assert_eq!(e.to_string(), "3:0x12345");
    }

    #[test]
    fn pte_form_round_trip() {
        let e = SwpEntry::new(5, 77).unwrap();
        let p = SwapPte::from(e);
        assert_eq!((p.swap_type, p.offset, p.exclusive), (5, 77, false));
        let flagged = SwapPte { exclusive: true, soft_dirty: true, ..p };
        assert_eq!(SwpEntry::try_from(flagged).unwrap(), e);
        assert!(SwpEntry::try_from(SwapPte { swap_type: 40, ..p }).is_err());
    }
}
