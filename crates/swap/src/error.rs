//! Errors of the swap crate: each names the entry, slot or device at fault.

use pgtable::Pfn;
use phys::PhysError;

use crate::entry::SwpEntry;

/// A failed swap operation. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// A swap type outside the 5 bits of a swap PTE.
    #[error("swap type {0} is outside 0..=31")]
    BadType(u64),
    /// An offset too large for a swp_entry_t (58 bits).
    #[error("swap offset {0:#x} does not fit the 58-bit swp_entry_t offset")]
    BadOffset(u64),
    /// No device is active with this type.
    #[error("no swap device of type {0}")]
    NoSuchDevice(u8),
    /// A device of this type is already active.
    #[error("a swap device of type {0} is already active")]
    DeviceExists(u8),
    /// A device too small to hold a header and one slot.
    #[error("swap device of {pages} pages is too small (at least 2: the header and a slot)")]
    DeviceTooSmall {
        /// The size asked for.
        pages: u64,
    },
    /// A device larger than the header's 32-bit `last_page` can describe,
    /// or whose swap_map the host cannot allocate.
    #[error(
        "swap device of {pages} pages is too large (the header's last_page is 32 bits, or the swap_map cannot be allocated)"
    )]
    DeviceTooLarge {
        /// The size asked for.
        pages: u64,
    },
    /// An offset past the end of its device.
    #[error("swap entry {entry}: offset beyond the last slot {last}")]
    OffsetOutOfRange {
        /// The entry.
        entry: SwpEntry,
        /// The device's last slot.
        last: u64,
    },
    /// Offset 0 holds the device's header and is never a slot.
    #[error("swap entry {0}: offset 0 is the device header")]
    HeaderSlot(SwpEntry),
    /// The device has no free slot.
    #[error("swap device {0} is full")]
    DeviceFull(u8),
    /// No active device has a free slot (or there is no device at all).
    #[error("no free swap slot on any device")]
    SwapFull,
    /// The operation needs a slot in use, and this one is free.
    #[error("swap entry {0} is not allocated")]
    SlotNotAllocated(SwpEntry),
    /// Dropping a count or the cache flag that the slot does not hold.
    #[error("swap entry {entry}: double free of the {what}")]
    DoubleFree {
        /// The entry.
        entry: SwpEntry,
        /// "swap count" or "swap cache flag".
        what: &'static str,
    },
    /// The slot already has its swap-cache flag, or the swap cache already
    /// holds a page for this entry (Linux's -EEXIST).
    #[error("swap entry {0} is already in the swap cache")]
    CacheExists(SwpEntry),
    /// add_to_swap_cache on a slot whose swap-cache flag was not taken first.
    #[error("swap entry {0}: SWAP_HAS_CACHE not set (allocate or swapcache_prepare first)")]
    NoCacheFlag(SwpEntry),
    /// A swap_map byte that no swap PTE can add to (SWAP_MAP_BAD):
    /// `__swap_duplicate`'s -EINVAL.
    #[error("swap entry {entry}: swap_map byte {count:#x} cannot be duplicated")]
    CountOverflow {
        /// The entry.
        entry: SwpEntry,
        /// Its count.
        count: u8,
    },
    /// The count needs another continuation page (`__swap_duplicate`'s
    /// -ENOMEM): allocate a frame, pass it to `add_swap_count_continuation`
    /// and try again.
    #[error("swap entry {entry}: swap count needs a continuation page")]
    CountNeedsContinuation {
        /// The entry.
        entry: SwpEntry,
    },
    /// COUNT_CONTINUED set but the continuation digits are missing or zero
    /// where they must not be (what Linux would BUG on).
    #[error("swap entry {entry}: continuation digits inconsistent with its swap_map byte")]
    ContinuationMissing {
        /// The entry.
        entry: SwpEntry,
    },
    /// A frame handed over as a continuation page already is one.
    #[error("frame {pfn} is already a swap count continuation page")]
    ContinuationFrameInUse {
        /// The frame.
        pfn: Pfn,
    },
    /// The page is not in the swap cache (PG_swapcache clear).
    #[error("frame {0} is not in the swap cache")]
    PageNotInSwapCache(Pfn),
    /// The page is already in the swap cache under some entry.
    #[error("frame {pfn} is already in the swap cache as {entry}")]
    PageInSwapCache {
        /// The frame.
        pfn: Pfn,
        /// The entry it is cached under.
        entry: SwpEntry,
    },
    /// The swap cache does not map this entry to this page.
    #[error("swap cache: entry {entry} does not hold frame {pfn}")]
    CacheMismatch {
        /// The entry.
        entry: SwpEntry,
        /// The frame.
        pfn: Pfn,
    },
    /// The page's private word is not a valid swp_entry_t.
    #[error("frame {pfn}: private word {private:#x} is not a swap entry")]
    BadPrivate {
        /// The frame.
        pfn: Pfn,
        /// Its private word.
        private: u64,
    },
    /// Dropping the swap cache's reference from a page with none left.
    #[error("frame {0}: refcount already zero")]
    RefcountUnderflow(Pfn),
    /// Taking a page reference past u32::MAX.
    #[error("frame {0}: refcount overflow")]
    RefcountOverflow(Pfn),
    /// swapoff of a device with slots still in use (we do not model try_to_unuse).
    #[error("swap device {swap_type} still has {inuse} slots in use")]
    DeviceBusy {
        /// The device.
        swap_type: u8,
        /// Slots in use.
        inuse: u64,
    },
    /// An existing swap file without a valid header.
    #[error("not a swap area: {0}")]
    BadHeader(&'static str),
    /// The physical memory, a frame or a backing file failed.
    #[error(transparent)]
    Phys(#[from] PhysError),
}
