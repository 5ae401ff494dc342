//! Virtual and physical addresses, frame numbers and per-level indices.
//!
//! Constructors establish the invariant once (canonical, within MAXPHYADDR);
//! everything downstream can then rely on it.

use crate::error::AddrError;

/// Size of a 4 KiB page, the base page size.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Number of entries in every page-table level.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Largest MAXPHYADDR the architecture allows.
pub const MAX_PHYS_ADDR_BITS: u8 = 52;

/// A 48-bit canonical x86-64 virtual address (4-level paging).
///
/// Bits 63..48 always equal bit 47. Building one from a non-canonical value
/// is an error, never a silent sign extension or truncation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u64);

impl VirtAddr {
    /// The address `raw`, if it is canonical for 4-level paging.
    pub const fn new(raw: u64) -> Result<Self, AddrError> {
        if Self::is_canonical(raw) { Ok(Self(raw)) } else { Err(AddrError::NonCanonical(raw)) }
    }

    /// Sign-extends bit 47 into bits 63..48, as hardware would have required.
    /// Bits above 48 in `raw` are discarded by definition, not checked.
    pub const fn new_truncate(raw: u64) -> Self {
        Self((((raw << 16) as i64) >> 16) as u64)
    }

    /// Whether `raw` is canonical: bits 63..48 equal bit 47.
    pub const fn is_canonical(raw: u64) -> bool {
        let top = raw >> 47;
        top == 0 || top == 0x1ffff
    }

    /// Builds the address selected by four table indices and a page offset.
    /// Indices are masked to 9 bits and the offset to 12.
    pub const fn from_indices(pml4: usize, pdpt: usize, pd: usize, pt: usize, offset: u64) -> Self {
        let raw = ((pml4 as u64 & 0x1ff) << 39)
            | ((pdpt as u64 & 0x1ff) << 30)
            | ((pd as u64 & 0x1ff) << 21)
            | ((pt as u64 & 0x1ff) << 12)
            | (offset & 0xfff);
        Self::new_truncate(raw)
    }

    /// The raw 64-bit value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Index into the PML4 (bits 47..39).
    pub const fn pml4_index(self) -> usize {
        ((self.0 >> 39) & 0x1ff) as usize
    }

    /// Index into the PDPT (bits 38..30).
    pub const fn pdpt_index(self) -> usize {
        ((self.0 >> 30) & 0x1ff) as usize
    }

    /// Index into the page directory (bits 29..21).
    pub const fn pd_index(self) -> usize {
        ((self.0 >> 21) & 0x1ff) as usize
    }

    /// Index into the page table (bits 20..12).
    pub const fn pt_index(self) -> usize {
        ((self.0 >> 12) & 0x1ff) as usize
    }

    /// Index into the table at `level` (4 = PML4 .. 1 = PT).
    pub const fn index(self, level: crate::Level) -> usize {
        ((self.0 >> level.shift()) & 0x1ff) as usize
    }

    /// Offset within a 4 KiB page (bits 11..0).
    pub const fn page_offset(self) -> u64 {
        self.0 & 0xfff
    }

    /// The virtual page number (address >> 12, of the 48-bit address).
    pub const fn vpn(self) -> u64 {
        (self.0 & 0x0000_ffff_ffff_ffff) >> PAGE_SHIFT
    }

    /// Rounds down to a multiple of `align` (a power of two).
    pub const fn align_down(self, align: u64) -> Self {
        Self(self.0 & !(align - 1))
    }

    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// `self + bytes`, if the result is still canonical and does not wrap.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        // Work on the 48-bit linear form so the hole between halves counts.
        match self.0.checked_add(bytes) {
            Some(raw) if Self::is_canonical(raw) => Some(Self(raw)),
            _ => None,
        }
    }
}

impl core::fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl core::fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl TryFrom<u64> for VirtAddr {
    type Error = AddrError;
    fn try_from(raw: u64) -> Result<Self, AddrError> {
        Self::new(raw)
    }
}

/// A physical address below 2^52.
///
/// Whether it is also below a particular CPU's MAXPHYADDR is checked where
/// that CPU's width is known ([`PhysAddr::new_with_width`]), because the
/// same table memory can be walked under different widths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// The address `raw`, if it is below 2^52 (the architectural maximum).
    pub const fn new(raw: u64) -> Result<Self, AddrError> {
        Self::new_with_width(raw, MAX_PHYS_ADDR_BITS)
    }

    /// The address `raw`, if it fits in `width` bits (a MAXPHYADDR).
    pub const fn new_with_width(raw: u64, width: u8) -> Result<Self, AddrError> {
        if width == 0 || width > MAX_PHYS_ADDR_BITS {
            return Err(AddrError::BadPhysWidth(width));
        }
        if raw >> width != 0 {
            return Err(AddrError::PhysTooWide { addr: raw, width });
        }
        Ok(Self(raw))
    }

    /// The address `raw` with bits 63..52 cleared: for values taken from
    /// entry fields that are at most 52 bits wide by construction.
    pub const fn new_truncate(raw: u64) -> Self {
        Self(raw & ((1 << MAX_PHYS_ADDR_BITS) - 1))
    }

    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The frame this address lies in.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }

    /// Offset within its 4 KiB frame.
    pub const fn frame_offset(self) -> u64 {
        self.0 & 0xfff
    }

    /// `self + bytes`, if the sum stays below 2^52.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(raw) if raw >> MAX_PHYS_ADDR_BITS == 0 => Some(Self(raw)),
            _ => None,
        }
    }
}

/// A 4 KiB frame and the virtual page that maps it, kept as one word
/// (their XOR), so that a translation cache answers for any byte of that
/// page with one operation: [`FrameKey::phys`] XORs the byte's virtual
/// address in, which takes the page bits out and puts the page offset in.
/// (QEMU's TLB keeps an addend for the same reason; an XOR needs neither
/// masking nor a carry.)
///
/// ```
/// use ptemu_pgtable::{FrameKey, PhysAddr};
/// let key = FrameKey::new(PhysAddr::new(0x9000)?, 0x7f00_0000_1000);
/// assert_eq!(key.phys(0x7f00_0000_1abc).as_u64(), 0x9abc);
/// assert_eq!(key.frame(0x7f00_0000_1000).as_u64(), 0x9000);
/// # Ok::<(), ptemu_pgtable::AddrError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(transparent)]
pub struct FrameKey(u64);

impl FrameKey {
    /// The key of `frame` mapped at the virtual page `page`; the low 12
    /// bits of both are ignored.
    #[inline]
    pub const fn new(frame: PhysAddr, page: u64) -> Self {
        Self((frame.0 ^ page) & !0xfff)
    }

    /// The physical address of `va`, which must be a byte of the key's
    /// virtual page: the frame with `va`'s offset in bits 11:0.
    ///
    /// The caller has checked that `va` lies in that page, as a TLB compares
    /// page numbers before it reads the key. For an address in another page
    /// the answer is some other address, possibly not even below 2^52
    /// (debug builds panic then; nothing is accessed, and every memory
    /// access checks its own range).
    #[inline]
    pub const fn phys(self, va: u64) -> PhysAddr {
        let raw = self.0 ^ va;
        debug_assert!(raw >> MAX_PHYS_ADDR_BITS == 0, "FrameKey::phys of a byte outside its page");
        PhysAddr(raw)
    }

    /// The frame itself, given its virtual page (any byte of it).
    #[inline]
    pub const fn frame(self, page: u64) -> PhysAddr {
        self.phys(page & !0xfff)
    }
}

impl core::fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl core::fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A physical frame number: a physical address divided by 4096.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The largest frame number that fits the 40-bit PFN field (52-bit addresses).
    pub const MAX: Pfn = Pfn((1 << (MAX_PHYS_ADDR_BITS - PAGE_SHIFT as u8)) - 1);

    /// The raw frame number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The frame number as an index (for descriptor tables).
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// The physical address of the frame's first byte. Frame numbers above
    /// [`Pfn::MAX`] are masked, which cannot happen for a `Pfn` made from a
    /// [`PhysAddr`].
    pub const fn addr(self) -> PhysAddr {
        PhysAddr((self.0 & Self::MAX.0) << PAGE_SHIFT)
    }
}

impl core::fmt::Display for Pfn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_boundaries() {
        assert!(VirtAddr::new(0x0000_7fff_ffff_ffff).is_ok());
        assert!(VirtAddr::new(0xffff_8000_0000_0000).is_ok());
        assert_eq!(
            VirtAddr::new(0x0000_8000_0000_0000),
            Err(AddrError::NonCanonical(0x0000_8000_0000_0000))
        );
        assert!(VirtAddr::new(0xfff0_0000_0000_0000).is_err());
        assert_eq!(VirtAddr::new_truncate(0x0000_8000_0000_0000).as_u64(), 0xffff_8000_0000_0000);
    }

    #[test]
    fn indices() {
        let v = VirtAddr::new(0x7f12_3456_7abc).unwrap();
        assert_eq!(v.pml4_index(), (0x7f12_3456_7abc >> 39) & 0x1ff);
        assert_eq!(v.pdpt_index(), (0x7f12_3456_7abc >> 30) & 0x1ff);
        assert_eq!(v.pd_index(), (0x7f12_3456_7abc >> 21) & 0x1ff);
        assert_eq!(v.pt_index(), (0x7f12_3456_7abc >> 12) & 0x1ff);
        assert_eq!(v.page_offset(), 0xabc);
        let back = VirtAddr::from_indices(
            v.pml4_index(),
            v.pdpt_index(),
            v.pd_index(),
            v.pt_index(),
            0xabc,
        );
        assert_eq!(back, v);
        assert_eq!(VirtAddr::from_indices(256, 0, 0, 0, 0).as_u64(), 0xffff_8000_0000_0000);
    }

    #[test]
    fn phys_width() {
        assert!(PhysAddr::new_with_width((1 << 46) - 1, 46).is_ok());
        assert_eq!(
            PhysAddr::new_with_width(1 << 46, 46),
            Err(AddrError::PhysTooWide { addr: 1 << 46, width: 46 })
        );
        assert!(PhysAddr::new(1 << 52).is_err());
        assert_eq!(PhysAddr::new_with_width(0, 53), Err(AddrError::BadPhysWidth(53)));
        assert_eq!(PhysAddr::new(0x5123).unwrap().pfn(), Pfn(5));
        assert_eq!(Pfn(5).addr().as_u64(), 0x5000);
    }

    #[test]
    fn frame_key() {
        // Vectors from the definition: the frame's address with the byte's
        // offset in bits 11:0, whatever the page's upper bits.
        let low = FrameKey::new(PhysAddr::new(0x9000).unwrap(), 0x7f00_0000_1000);
        assert_eq!(low.phys(0x7f00_0000_1000).as_u64(), 0x9000);
        assert_eq!(low.phys(0x7f00_0000_1005).as_u64(), 0x9005);
        assert_eq!(low.phys(0x7f00_0000_1fff).as_u64(), 0x9fff);
        assert_eq!(low.frame(0x7f00_0000_1abc).as_u64(), 0x9000);
        // The highest frame under 2^52 at the highest kernel page.
        let top = PhysAddr::new(((1 << 52) - 1) & !0xfff).unwrap();
        let high = FrameKey::new(top, 0xffff_ffff_ffff_f000);
        assert_eq!(high.phys(u64::MAX).as_u64(), (1 << 52) - 1);
        assert_eq!(high.phys(0xffff_ffff_ffff_f123).as_u64(), top.as_u64() | 0x123);
        // The low 12 bits given to `new` are ignored.
        assert_eq!(FrameKey::new(PhysAddr::new(0x9abc).unwrap(), 0x7f00_0000_1def), low);
        assert_eq!(FrameKey::default().phys(0x123).as_u64(), 0x123);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every byte of every canonical page, under any frame: the
            /// key's answer is the frame with the byte's offset, as
            /// computed from the definition by masking and ORing.
            #[test]
            fn frame_key_answers_every_byte(
                pfn in 0u64..(1 << 40),
                vpn in 0u64..(1 << 36),
                offset in 0u64..4096,
            ) {
                let frame = PhysAddr::new(pfn << 12).unwrap();
                let page = VirtAddr::new_truncate(vpn << 12).as_u64();
                let key = FrameKey::new(frame, page);
                prop_assert_eq!(key.phys(page | offset).as_u64(), (pfn << 12) | offset);
                prop_assert_eq!(key.frame(page | offset), frame);
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside its page")]
    #[cfg(debug_assertions)]
    fn frame_key_outside_its_page() {
        let key = FrameKey::new(PhysAddr::new(0x9000).unwrap(), 0x7f00_0000_1000);
        let _ = key.phys(0xffff_8000_0000_0000);
    }
}
