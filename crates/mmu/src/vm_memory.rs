//! rust-vmm [`vm-memory`](https://docs.rs/vm-memory) adapters (feature
//! `vm-memory`): page tables and data in a [`GuestMemoryMmap`], and the MMU
//! as vm-memory's [`Iommu`], so that every [`Bytes`] user reads and writes
//! by guest-virtual address.
//!
//! - [`GuestPhys`] borrows any [`GuestMemoryBackend`] (a
//!   [`GuestMemoryMmap`], say) as pgtable's [`PhysMem`] and the MMU's
//!   [`GuestMem`]. Words are atomic loads and stores; the walk's
//!   Accessed/Dirty update is a real compare-exchange on the aligned `u64`
//!   (through [`VolatileMemory::get_atomic_ref`]), after which the region's
//!   dirty bitmap is marked, since accesses through an atomic reference are
//!   not tracked by vm-memory itself. An address in a hole between regions
//!   is [`MemError::Unbacked`]; beyond the last region it is
//!   [`MemError::OutOfRange`]; neither panics.
//! - [`MmuIommu`] puts an [`Mmu`] behind a mutex beside the memory its page
//!   tables live in and implements [`Iommu`]: [`IommuMemory`] then
//!   translates each access page by page through the MMU's TLB (walking,
//!   and setting A/D, on a miss). The last fault is kept for the embedder
//!   to deliver as a #PF ([`MmuIommu::take_fault`]); invalidations go
//!   through [`MmuIommu::lock`].
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use ptemu_mmu::vm_memory::{GuestPhys, MmuIommu};
//! use ptemu_mmu::{Config, Mmu, Regs};
//! use ptemu_mmu::pgtable::{BumpFrames, EntryFlags, PageSize, Pfn, VirtAddr, map, new_root};
//! use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, IommuMemory};
//!
//! // 1 MiB of guest RAM; page tables in frames 1.., data in frame 0x80.
//! let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
//! let mut frames = BumpFrames::new(Pfn(1), Pfn(16));
//! let cr3 = new_root(&mut GuestPhys::new(&ram), &mut frames)?;
//! let flags = EntryFlags::PRESENT | EntryFlags::WRITABLE | EntryFlags::USER;
//! let va = 0x7f00_0000_0000u64;
//! map(&mut GuestPhys::new(&ram), &mut frames, cr3, VirtAddr::new(va)?, Pfn(0x80),
//!     PageSize::Size4K, flags)?;
//!
//! let mut mmu = Mmu::new(Config::default())?;
//! mmu.set_regs(Regs::long_mode(cr3.as_u64()))?;
//! let virt = IommuMemory::new(ram.clone(), MmuIommu::new(mmu, ram.clone()), true, ());
//!
//! // Bytes by guest-virtual address...
//! virt.write_obj(0x1122_3344u32, GuestAddress(va + 0x10))?;
//! // ...land at the guest-physical address the tables name.
//! assert_eq!(ram.read_obj::<u32>(GuestAddress(0x80_010))?, 0x1122_3344);
//! assert_eq!(virt.load::<u32>(GuestAddress(va + 0x10), Ordering::Acquire)?, 0x1122_3344);
//! // An unmapped page is an error, and the #PF waits for the embedder.
//! assert!(virt.read_obj::<u8>(GuestAddress(va + 0x1000)).is_err());
//! let pf = virt.iommu().take_fault().and_then(|e| e.page_fault()).unwrap();
//! assert_eq!((pf.addr.as_u64(), pf.error_code.bits()), (va + 0x1000, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

extern crate std;

use alloc::boxed::Box;
use alloc::format;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pgtable::{Access, MemError, PAGE_SIZE, PhysAddr, PhysMem};
use vm_memory::bitmap::Bitmap;
use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, Iommu, Iotlb, Permissions,
    VolatileMemory,
};

#[cfg(doc)]
use vm_memory::{GuestMemoryMmap, IommuMemory};

use crate::error::Error;
use crate::mem::GuestMem;
use crate::mmu::Mmu;

/// A [`GuestMemoryBackend`] seen as physical memory by pgtable's walk and
/// mapper ([`PhysMem`]) and by the MMU's sized accesses ([`GuestMem`]).
///
/// It borrows the memory: wrap it for the duration of a call
/// (`mmu.read(&mut GuestPhys::new(&ram), va, &mut buf)`). Every access is
/// made through the memory's own shared reference, so other vCPUs and
/// devices may use the same memory at the same time; word accesses are
/// atomic, so they see whole entries.
pub struct GuestPhys<'a, M: GuestMemoryBackend + ?Sized> {
    mem: &'a M,
    size: u64,
}

impl<'a, M: GuestMemoryBackend + ?Sized> GuestPhys<'a, M> {
    /// Borrows `mem`. Its size for pgtable is one past its last address;
    /// the holes below that are errors when touched.
    pub fn new(mem: &'a M) -> Self {
        // A region ending at the very top of the 64-bit space loses its
        // last byte here rather than overflowing.
        let size =
            if mem.num_regions() == 0 { 0 } else { mem.last_addr().raw_value().saturating_add(1) };
        Self { mem, size }
    }

    /// The memory.
    pub fn memory(&self) -> &'a M {
        self.mem
    }

    /// The error for an address vm-memory could not reach: a hole between
    /// regions, or past the end.
    fn unreachable(&self, pa: PhysAddr) -> MemError {
        if pa.as_u64() < self.size {
            MemError::Unbacked(pa)
        } else {
            MemError::OutOfRange { addr: pa, size: self.size }
        }
    }

    /// The start of `len` bytes at `pa`, checked to lie wholly in memory
    /// (crossing regions is allowed, holes are not).
    fn check(&self, pa: PhysAddr, len: usize) -> Result<GuestAddress, MemError> {
        let end = pa.as_u64().checked_add(len as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(MemError::OutOfRange { addr: pa, size: self.size });
        }
        let a = GuestAddress(pa.as_u64());
        if len > 0 && !self.mem.check_range(a, len) {
            // Name the first byte that is not backed.
            let mut probe = pa.as_u64();
            while let Some(r) = self.mem.find_region(GuestAddress(probe)) {
                match r.last_addr().raw_value().checked_add(1) {
                    Some(next) => probe = next,
                    None => break,
                }
            }
            return Err(self.unreachable(PhysAddr::new_truncate(probe)));
        }
        Ok(a)
    }

    fn word(&self, pa: PhysAddr) -> Result<GuestAddress, MemError> {
        if pa.as_u64() & 7 != 0 {
            return Err(MemError::Unaligned(pa));
        }
        self.check(pa, 8)
    }
}

impl<M: GuestMemoryBackend + ?Sized> fmt::Debug for GuestPhys<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestPhys({} regions, size {:#x})", self.mem.num_regions(), self.size)
    }
}

impl<M: GuestMemoryBackend + ?Sized> PhysMem for GuestPhys<'_, M> {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let a = self.word(pa)?;
        self.mem
            .load::<u64>(a, Ordering::Acquire)
            .map(u64::from_le)
            .map_err(|_| self.unreachable(pa))
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        let a = self.word(pa)?;
        // An atomic store through a VolatileSlice marks the dirty bitmap.
        self.mem.store(value.to_le(), a, Ordering::Release).map_err(|_| self.unreachable(pa))
    }

    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let a = self.word(pa)?;
        let slice = self.mem.get_slice(a, 8).map_err(|_| self.unreachable(pa))?;
        let word = slice.get_atomic_ref::<AtomicU64>(0).map_err(|_| MemError::Unaligned(pa))?;
        match word.compare_exchange(
            current.to_le(),
            new.to_le(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // Writes through an atomic reference bypass vm-memory's
                // dirty tracking: mark the entry's page ourselves, so that
                // a migration sees the A/D update.
                slice.bitmap().mark_dirty(0, 8);
                Ok(Ok(current))
            }
            Err(actual) => Ok(Err(u64::from_le(actual))),
        }
    }

    fn size(&self) -> u64 {
        self.size
    }
}

impl<M: GuestMemoryBackend + ?Sized> GuestMem for GuestPhys<'_, M> {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let a = self.check(pa, buf.len())?;
        self.mem.read_slice(buf, a).map_err(|_| self.unreachable(pa))
    }

    /// Checks the whole range before writing, so a write that would reach a
    /// hole changes nothing. vm-memory marks the dirty bitmap.
    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        let a = self.check(pa, data.len())?;
        self.mem.write_slice(data, a).map_err(|_| self.unreachable(pa))
    }
}

/// An [`Mmu`] as vm-memory's [`Iommu`]: `IommuMemory::new(ram.clone(),
/// MmuIommu::new(mmu, ram.clone()), true, bitmap)` is guest memory
/// addressed by guest-virtual address under the MMU's current paging state
/// (CPL, CR0.WP, SMAP, protection keys included).
///
/// `M` is the memory the page tables live in, normally a clone of the
/// `IommuMemory`'s backend (a [`GuestMemoryMmap`] clone shares its
/// mappings).
///
/// Each translation request is answered page by page by
/// [`Mmu::translate`]: a TLB hit, or a walk that sets A/D in `M`. A
/// read-write request is checked as a write, which on x86 implies read
/// permission; a request with [`Permissions::No`] is checked as a read.
/// The answer is handed to vm-memory as a fresh [`Iotlb`] covering exactly
/// the requested range, so nothing is cached outside the MMU's TLB and the
/// MMU's invalidation rules are the only ones that apply.
///
/// vm-memory's errors carry only text, so the MMU's error (a #PF with its
/// error code and CR2, a #GP for a non-canonical address) is also kept:
/// [`MmuIommu::take_fault`] returns it for the emulator to deliver.
///
/// Note vm-memory's own choice for writes through an `IommuMemory` with
/// the IOMMU enabled: they mark the `IommuMemory`'s bitmap (by virtual
/// address), not the backend's. A/D updates by the walk mark the backend's.
pub struct MmuIommu<M: GuestMemoryBackend> {
    state: Mutex<State>,
    mem: M,
}

struct State {
    mmu: Mmu,
    fault: Option<Error>,
}

impl<M: GuestMemoryBackend> MmuIommu<M> {
    /// The MMU, translating over the page tables in `mem`.
    pub fn new(mmu: Mmu, mem: M) -> Self {
        Self { state: Mutex::new(State { mmu, fault: None }), mem }
    }

    /// The MMU, for the emulator's CR writes, INVLPG, INVPCID, CPL changes
    /// and counters. Hold the guard briefly: translations wait for it.
    pub fn lock(&self) -> MmuGuard<'_> {
        MmuGuard(self.state())
    }

    /// The error of the last translation that failed, if not taken yet.
    pub fn take_fault(&self) -> Option<Error> {
        self.state().fault.take()
    }

    /// The memory the page tables live in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Gives the MMU back.
    pub fn into_mmu(self) -> Mmu {
        self.state.into_inner().unwrap_or_else(PoisonError::into_inner).mmu
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The MMU never panics while the lock is held; if an embedder's
        // thread did, the MMU's state is still a valid one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn translate_range(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<Iotlb, IommuError> {
        let range = || IovaRange { base: iova, length };
        let cannot = |reason: alloc::string::String| IommuError::CannotResolve {
            iova_range: range(),
            reason,
        };
        let end = iova
            .raw_value()
            .checked_add(length as u64)
            .ok_or_else(|| cannot("range wraps around the address space".into()))?;
        let kind = if access.has_write() { Access::Write } else { Access::Read };
        let mut iotlb = Iotlb::new();
        let mut phys = GuestPhys::new(&self.mem);
        let mut state = self.state();
        let mut va = iova.raw_value();
        while va < end {
            let page_end = (va | (PAGE_SIZE - 1)).saturating_add(1).min(end);
            match state.mmu.translate(&mut phys, va, kind) {
                Ok(pa) => {
                    iotlb.set_mapping(
                        GuestAddress(va),
                        GuestAddress(pa.as_u64()),
                        (page_end - va) as usize,
                        access,
                    )?;
                }
                Err(e) => {
                    state.fault = Some(e);
                    return Err(cannot(format!("{e}")));
                }
            }
            va = page_end;
        }
        Ok(iotlb)
    }
}

impl<M: GuestMemoryBackend> fmt::Debug for MmuIommu<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("MmuIommu")
            .field("regs", s.mmu.regs())
            .field("stats", &s.mmu.stats())
            .field("fault", &s.fault)
            .finish()
    }
}

impl<M: GuestMemoryBackend + Send + Sync> Iommu for MmuIommu<M> {
    type IotlbGuard<'a>
        = Box<Iotlb>
    where
        Self: 'a;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Box<Iotlb>>, IommuError> {
        let iotlb = self.translate_range(iova, length, access)?;
        Iotlb::lookup(Box::new(iotlb), iova, length, access).map_err(|fails| {
            // Unreachable by construction (every page was just mapped with
            // `access`), but reported rather than assumed.
            IommuError::CannotResolve {
                iova_range: IovaRange { base: iova, length },
                reason: format!(
                    "{} unmapped and {} inaccessible pieces after translation",
                    fails.misses.len(),
                    fails.access_fails.len()
                ),
            }
        })
    }
}

/// Exclusive access to an [`MmuIommu`]'s MMU (a mutex guard).
pub struct MmuGuard<'a>(MutexGuard<'a, State>);

impl core::ops::Deref for MmuGuard<'_> {
    type Target = Mmu;
    fn deref(&self) -> &Mmu {
        &self.0.mmu
    }
}

impl core::ops::DerefMut for MmuGuard<'_> {
    fn deref_mut(&mut self) -> &mut Mmu {
        &mut self.0.mmu
    }
}

impl fmt::Debug for MmuGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmuGuard").field("regs", self.0.mmu.regs()).finish()
    }
}
