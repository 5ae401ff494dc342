//! Swap for ptemu: swap devices, their per-slot counts (Linux's
//! `swap_map`) and the swap cache, with Linux's names and semantics, so that
//! mm's reclaim, fork, zap and do_swap_page run against the real bookkeeping.
//!
//! * [`SwpEntry`] (entry.rs): the arch-independent `swp_entry_t`,
//!   `(type << 58) | offset`, the swap cache's key and a swap-cache page's
//!   `private` word; converts to and from pgtable's x86 [`pgtable::SwapPte`].
//! * [`SwapDevice`] (device.rs): mmap'd storage (anonymous or a file, through
//!   phys's [`phys::MappedRegion`]) with a real mkswap header (header.rs, magic
//!   "SWAPSPACE2") in slot 0, and its [`SwapMap`] (swap_map.rs) of counts.
//! * [`Swap`]: the active devices and the swap cache. Its methods carry the
//!   kernel's names: slots and counts in swapfile.rs (`get_swap_page`,
//!   `swap_duplicate`, `swap_free`, `swapcache_prepare`, `put_swap_folio`,
//!   `__swap_count`, `swp_swapcount`), the cache in swap_state.rs
//!   (`add_to_swap_cache`, `lookup_swap_cache`, `delete_from_swap_cache`,
//!   `add_to_swap`, `folio_free_swap`, `free_swap_and_cache`), I/O in
//!   page_io.rs (`swap_writepage`, `swap_readpage`).
//!
//! This crate knows frames and page descriptors (phys) and nothing of
//! processes, VMAs, page tables or rmap. Every operation is checked and
//! returns a [`SwapError`] that names the entry, with nothing changed;
//! nothing panics on bad input. Iteration (devices by type, the cache by
//! entry) is in a fixed order.
//!
//! # What Linux does that this crate deliberately does not
//!
//! * **Swap clusters and their allocator.** Linux hands out slots from
//!   clusters (SWAPFILE_CLUSTER, 256 or a PMD's worth of slots) with a current
//!   cluster per CPU, free/non-full/fragmented cluster lists, SSD versus
//!   rotational policies (random per-CPU start points on SSDs for wear
//!   levelling, a `cluster_next` scan hint on disks). That serves SMP
//!   scalability, sequential disk I/O and flash wear, none of which an
//!   emulator has. We take the lowest free slot of the lowest-typed device,
//!   so the same sequence of calls always yields the same offsets and a
//!   fixture can assert `offset=1` for the first page swapped to an empty
//!   device; the price is that offsets after frees may differ from a real
//!   kernel's, which fixtures therefore must not compare across the two.
//!   Measured on the host's 6.18 kernel (a fresh 64 MiB swap file, private
//!   anonymous pages paged out with MADV_PAGEOUT, offsets read from
//!   /proc/self/pagemap): pages paged out one after another got offsets 1,
//!   2, 3, ..., and a slot freed by a write fault was handed out again to
//!   the next page-out; lowest-first agrees in such simple sequences. It
//!   can differ once several CPUs, full clusters or large folios are
//!   involved.
//! * **Swap readahead** (`swapin_readahead`, VMA and cluster readahead).
//!   A latency heuristic that speculatively puts neighbouring slots in the
//!   swap cache; it would add cache pages and reference counts that depend
//!   on slot neighbours, obscuring exactly the state fixtures inspect.
//!   do_swap_page reads the one slot it faults on.
//! * **Discard** (`swapon --discard`, per-cluster discards): a hint to
//!   flash storage about unused blocks; memory-backed devices have no use
//!   for it and it changes no bookkeeping.
//! * **Priorities and round robin** between devices of equal priority
//!   (per-node `swap_avail_heads`): lowest type first instead, which is what
//!   Linux's default priorities (each swapon lower than the last) do when
//!   types are assigned in swapon order.
//! * **Locking**: `swap_lock`, `si->lock`, cluster locks, the per-CPU
//!   reference that guards against swapoff (`get_swap_device`), page locks
//!   and their trylocks, the per-CPU swap-slot caches of older kernels. The
//!   emulator is single-threaded per machine; a `&mut Swap` is the lock.
//! * **zswap and frontswap**: a compressed cache in front of the device,
//!   off by default on the host build we model (CONFIG_ZSWAP built, not
//!   enabled); another layer of policy with no effect on swap_map semantics.
//! * **The block layer**: swap extents, `bmap`, swap over NFS, asynchronous
//!   bios and PG_writeback completion, the SWP_SYNCHRONOUS_IO flag. A device
//!   is one flat mmap'd area and I/O is a synchronous copy. (Whether
//!   do_swap_page bypasses the swap cache the way it does for zram is mm's
//!   policy, built from these primitives.)
//! * **Large folios / THP swap**: multi-slot entries and whole-cluster
//!   allocation. Pages are 4 KiB, so the swap cache's reference is one per
//!   page and every entry names one slot.
//! * **Bad blocks**: only slot 0 (the header) is SWAP_MAP_BAD; a header
//!   listing bad pages is refused rather than honoured.
//! * **swapoff's try_to_unuse**: reading every used slot back in before a
//!   device goes away. [`Swap::swapoff`] refuses a device with slots in use.
//! * **shmem's swap use** (SWAP_MAP_SHMEM) and **memcg swap accounting**
//!   (`swap_cgroup`, per-cgroup `mem_cgroup_swap_full`): ptemu models
//!   private anonymous memory without cgroups, so `vm_swap_full` is global.
//! * **The swap cache's data structure**: Linux keeps it in xarrays (one
//!   address_space per 64 MiB of swap) and, since 6.18, in a per-cluster
//!   swap table indexed by slot. We keep one table per device indexed by
//!   slot (no clusters), which iterates in [`SwpEntry`] order.
#![forbid(unsafe_code)]

pub mod device;
pub mod entry;
pub mod error;
pub mod header;
pub mod page_io;
pub mod swap_map;
pub mod swap_state;
pub mod swapfile;

use std::collections::BTreeMap;

pub use device::SwapDevice;
pub use entry::{MAX_SWAP_TYPE, SWP_OFFSET_MASK, SWP_TYPE_SHIFT, SwpEntry};
pub use error::SwapError;
pub use header::{SWAP_MAGIC, SwapHeader};
pub use swap_map::{
    COUNT_CONTINUED, ContinuationPage, SLOTS_PER_MAP_PAGE, SWAP_CONT_MAX, SWAP_HAS_CACHE,
    SWAP_MAP_BAD, SWAP_MAP_MAX, SwapMap,
};
pub use swap_state::CacheRelease;

/// The active swap devices and the swap cache.
#[derive(Default)]
pub struct Swap {
    /// Active devices indexed by type (Linux's `swap_info[]`), `None` for
    /// a type with no device; no longer than the highest type in use + 1.
    /// Every slot operation finds its device here, so an index, not a
    /// tree search.
    devices: Vec<Option<SwapDevice>>,
    /// Pages in the swap cache (whose entries live in each device's table).
    cached: usize,
    /// Free slots over all devices: Linux's `nr_swap_pages`, kept as
    /// slots are taken and freed so that `vm_swap_full` (asked on every
    /// swap-in) reads two counters instead of summing the devices.
    nr_swap_pages: u64,
    /// Usable slots over all devices: Linux's `total_swap_pages`.
    total_swap_pages: u64,
}

/// The devices as a map from type to device, as when they were kept in
/// one.
impl std::fmt::Debug for Swap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let devices: BTreeMap<u8, &SwapDevice> =
            self.devices().map(|d| (d.swap_type(), d)).collect();
        f.debug_struct("Swap")
            .field("devices", &devices)
            .field("cached", &self.cached)
            .field("nr_swap_pages", &self.nr_swap_pages)
            .field("total_swap_pages", &self.total_swap_pages)
            .finish()
    }
}

impl Swap {
    /// No devices, empty cache: every allocation fails with
    /// [`SwapError::SwapFull`] until a device is activated with [`Swap::swapon`].
    pub fn new() -> Self {
        Self::default()
    }
}
