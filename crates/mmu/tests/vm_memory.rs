//! The vm-memory adapters over real `GuestMemoryMmap`s: words, holes,
//! compare-exchange and the dirty bitmap; walks that set A/D in vm-memory;
//! `Bytes` reads and writes by guest-virtual address through `IommuMemory`.
#![cfg(feature = "vm-memory")]

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;

use pgtable::{
    BumpFrames, EntryFlags, MemError, PageSize, Pfn, PhysAddr, PhysMem, VirtAddr, entry_at, map,
    new_root,
};
use ptemu_mmu::vm_memory::{GuestPhys, MmuIommu};
use ptemu_mmu::{Config, Error, GuestMem, Mmu, Regs};
use vm_memory::bitmap::{AtomicBitmap, Bitmap};
use vm_memory::{
    Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    IommuMemory,
};

type Ram = GuestMemoryMmap<AtomicBitmap>;

fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a).unwrap()
}

/// Two regions with a hole: [0, 64 KiB) and [128 KiB, 192 KiB).
fn holey() -> Ram {
    Ram::from_ranges(&[(GuestAddress(0), 0x1_0000), (GuestAddress(0x2_0000), 0x1_0000)]).unwrap()
}

fn dirty(ram: &Ram, addr: u64) -> bool {
    let (region, off) = ram.to_region_addr(GuestAddress(addr)).unwrap();
    region.bitmap().dirty_at(off.0 as usize)
}

fn clear_dirty(ram: &Ram) {
    for r in ram.iter() {
        // The region's own AtomicBitmap (GuestRegionMmap derefs to its MmapRegion).
        (**r).bitmap().reset();
    }
}

#[test]
fn words_holes_and_bounds() {
    let ram = holey();
    let mut m = GuestPhys::new(&ram);
    assert_eq!(m.size(), 0x3_0000);
    m.write_u64(pa(0x2_0008), 0x1122_3344_5566_7788).unwrap();
    assert_eq!(m.read_u64(pa(0x2_0008)).unwrap(), 0x1122_3344_5566_7788);
    // Little-endian in guest memory, as the CPU stores it.
    assert_eq!(ram.read_obj::<u8>(GuestAddress(0x2_0008)).unwrap(), 0x88);
    assert_eq!(m.read_u64(pa(0x1_8000)), Err(MemError::Unbacked(pa(0x1_8000))));
    assert_eq!(m.write_u64(pa(0x1_0000), 1), Err(MemError::Unbacked(pa(0x1_0000))));
    assert_eq!(m.compare_exchange_u64(pa(0x1_fff8), 0, 1), Err(MemError::Unbacked(pa(0x1_fff8))));
    assert_eq!(
        m.read_u64(pa(0x3_0000)),
        Err(MemError::OutOfRange { addr: pa(0x3_0000), size: 0x3_0000 })
    );
    assert_eq!(m.read_u64(pa(0x1004)), Err(MemError::Unaligned(pa(0x1004))));
    assert_eq!(
        m.read_u64(pa(0xf_ffff_ffff_fff8)),
        Err(MemError::OutOfRange { addr: pa(0xf_ffff_ffff_fff8), size: 0x3_0000 })
    );
}

#[test]
fn compare_exchange_is_exact_and_marks_dirty() {
    let ram = holey();
    let mut m = GuestPhys::new(&ram);
    m.write_u64(pa(0x2_1000), 7).unwrap();
    assert!(dirty(&ram, 0x2_1000), "an atomic store is tracked by vm-memory");
    clear_dirty(&ram);
    assert!(!dirty(&ram, 0x2_1000));
    // A failed exchange changes nothing and marks nothing.
    assert_eq!(m.compare_exchange_u64(pa(0x2_1000), 6, 9).unwrap(), Err(7));
    assert_eq!(m.read_u64(pa(0x2_1000)).unwrap(), 7);
    assert!(!dirty(&ram, 0x2_1000));
    // A successful one stores and marks the page.
    assert_eq!(m.compare_exchange_u64(pa(0x2_1000), 7, 9).unwrap(), Ok(7));
    assert_eq!(m.read_u64(pa(0x2_1000)).unwrap(), 9);
    assert!(dirty(&ram, 0x2_1000));
    assert!(!dirty(&ram, 0x2_2000));
}

#[test]
fn byte_ranges_cross_regions_but_not_holes() {
    // Adjacent regions: a byte range may cross from one to the next.
    let ram =
        Ram::from_ranges(&[(GuestAddress(0), 0x1000), (GuestAddress(0x1000), 0x1000)]).unwrap();
    let mut m = GuestPhys::new(&ram);
    let data: Vec<u8> = (1..=16).collect();
    m.write_bytes(pa(0xff8), &data).unwrap();
    let mut back = [0u8; 16];
    m.read_bytes(pa(0xff8), &mut back).unwrap();
    assert_eq!(&back[..], &data[..]);

    // Across a hole: an error naming the first unbacked byte, and nothing written.
    let ram = holey();
    let mut m = GuestPhys::new(&ram);
    let r = m.write_bytes(pa(0xfff8), &[0xff; 16]);
    assert_eq!(r, Err(MemError::Unbacked(pa(0x1_0000))));
    assert_eq!(ram.read_obj::<u64>(GuestAddress(0xfff8)).unwrap(), 0);
}

/// Tables in frames 1..16 of `ram`; `va` -> frame `pfn` with `flags`.
fn tables(ram: &Ram, maps: &[(u64, u64, EntryFlags)]) -> PhysAddr {
    let mut m = GuestPhys::new(ram);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(16));
    let cr3 = new_root(&mut m, &mut frames).unwrap();
    for &(va, pfn, flags) in maps {
        map(
            &mut m,
            &mut frames,
            cr3,
            VirtAddr::new(va).unwrap(),
            Pfn(pfn),
            PageSize::Size4K,
            flags,
        )
        .unwrap();
    }
    cr3
}

const URW: EntryFlags = EntryFlags::PRESENT.union(EntryFlags::WRITABLE).union(EntryFlags::USER);
/// Low enough that the IOVA-indexed dirty bitmap of `IommuMemory` covers it.
const VA: u64 = 0x40_0000;

#[test]
fn walk_sets_accessed_and_dirty_in_vm_memory_and_marks_the_bitmap() {
    let ram = Ram::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let cr3 = tables(&ram, &[(VA, 0x80, URW)]);
    let mut m = GuestPhys::new(&ram);
    // The mapper links tables with A already set (Linux's 0x67); clear the
    // PML4 entry's A so that the walk has to set it too.
    let pml4e = pa(cr3.as_u64() + 8 * VirtAddr::new(VA).unwrap().pml4_index() as u64);
    let e = m.read_u64(pml4e).unwrap();
    m.write_u64(pml4e, e & !0x20).unwrap();
    clear_dirty(&ram);
    let mut mmu = Mmu::new(Config::default()).unwrap();
    mmu.set_regs(Regs::long_mode(cr3.as_u64())).unwrap();
    let leaf = entry_at(&m, cr3, VirtAddr::new(VA).unwrap()).unwrap();
    assert_eq!(leaf.entry & 0x60, 0);
    mmu.write_u64(&mut m, VA + 8, 0xdead_beef).unwrap();
    let leaf = entry_at(&m, cr3, VirtAddr::new(VA).unwrap()).unwrap();
    assert_eq!(leaf.entry & 0x60, 0x60, "A and D set in the leaf");
    assert_eq!(ram.read_obj::<u64>(GuestAddress(0x80_008)).unwrap(), 0xdead_beef);
    // The page-table pages the walk updated and the data page are dirty.
    assert!(dirty(&ram, leaf.entry_pa.as_u64()));
    assert_eq!(m.read_u64(pml4e).unwrap(), e, "A set again in the PML4 entry");
    assert!(dirty(&ram, cr3.as_u64()));
    assert!(dirty(&ram, 0x80_000));
    assert!(!dirty(&ram, 0x81_000));
}

fn virt_memory(ram: &Ram, cr3: PhysAddr) -> IommuMemory<Ram, MmuIommu<Ram>> {
    let mut mmu = Mmu::new(Config::default()).unwrap();
    mmu.set_regs(Regs::long_mode(cr3.as_u64())).unwrap();
    let bitmap = AtomicBitmap::new(0x100_0000, NonZeroUsize::new(4096).unwrap());
    IommuMemory::new(ram.clone(), MmuIommu::new(mmu, ram.clone()), true, bitmap)
}

#[test]
fn bytes_by_virtual_address_through_iommu_memory() {
    let ram = Ram::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    // Two virtually adjacent pages on physically distant, reversed frames.
    let cr3 = tables(&ram, &[(VA, 0x90, URW), (VA + 0x1000, 0x40, URW)]);
    let virt = virt_memory(&ram, cr3);

    // A write across the page boundary lands in both frames.
    let data: Vec<u8> = (0..32).collect();
    virt.write_slice(&data, GuestAddress(VA + 0xff0)).unwrap();
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    ram.read_slice(&mut lo, GuestAddress(0x90_ff0)).unwrap();
    ram.read_slice(&mut hi, GuestAddress(0x40_000)).unwrap();
    assert_eq!(&lo[..], &data[..16]);
    assert_eq!(&hi[..], &data[16..]);
    let mut back = [0u8; 32];
    virt.read_slice(&mut back, GuestAddress(VA + 0xff0)).unwrap();
    assert_eq!(&back[..], &data[..]);

    // Objects and atomics.
    virt.write_obj(0x0102_0304_0506_0708u64, GuestAddress(VA + 0x1008)).unwrap();
    assert_eq!(ram.read_obj::<u64>(GuestAddress(0x40_008)).unwrap(), 0x0102_0304_0506_0708);
    virt.store(0xabcd_u16, GuestAddress(VA + 0x20), Ordering::Release).unwrap();
    assert_eq!(virt.load::<u16>(GuestAddress(VA + 0x20), Ordering::Acquire).unwrap(), 0xabcd);
    assert_eq!(ram.read_obj::<u16>(GuestAddress(0x90_020)).unwrap(), 0xabcd);

    // The IOMMU-side dirty bitmap tracks writes by virtual address.
    assert!(virt.bitmap().dirty_at((VA + 0x1008) as usize));
    assert!(!virt.bitmap().dirty_at((VA + 0x2000) as usize));

    // The MMU's TLB served the repeats: two walks (one per page), the
    // rest hits.
    let stats = virt.iommu().lock().stats();
    assert_eq!(stats.fills, 2, "{stats:?}");
    assert!(stats.hits >= 4, "{stats:?}");
    assert!(virt.check_range(GuestAddress(VA), 0x2000, vm_memory::Permissions::ReadWrite));
    assert!(!virt.check_range(GuestAddress(VA), 0x2001, vm_memory::Permissions::Read));
}

#[test]
fn faults_are_errors_and_kept_for_delivery() {
    let ram = Ram::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let ro = EntryFlags::PRESENT | EntryFlags::USER;
    let sup = EntryFlags::PRESENT | EntryFlags::WRITABLE;
    let cr3 = tables(&ram, &[(VA, 0x80, ro), (VA + 0x1000, 0x81, sup)]);
    let virt = virt_memory(&ram, cr3);
    virt.iommu().lock().set_cpl(3);

    // A user write to a read-only page: #PF, P|W|U = 0x7, CR2 = the address.
    assert!(virt.write_obj(1u32, GuestAddress(VA + 0x44)).is_err());
    let pf = virt.iommu().take_fault().and_then(|e| e.page_fault()).unwrap();
    assert_eq!((pf.addr.as_u64(), pf.error_code.bits()), (VA + 0x44, 0x7));
    assert_eq!(ram.read_obj::<u32>(GuestAddress(0x80_044)).unwrap(), 0);
    // Reading it is fine.
    assert_eq!(virt.read_obj::<u32>(GuestAddress(VA + 0x44)).unwrap(), 0);
    assert!(virt.iommu().take_fault().is_none());

    // A user read running into a supervisor page: #PF on the second page,
    // CR2 = its first byte, P|U = 0x5; nothing of the first page is lost.
    let mut buf = [0u8; 8];
    assert!(virt.read_slice(&mut buf, GuestAddress(VA + 0xffc)).is_err());
    let pf = virt.iommu().take_fault().and_then(|e| e.page_fault()).unwrap();
    assert_eq!((pf.addr.as_u64(), pf.error_code.bits()), (VA + 0x1000, 0x5));
    // In supervisor mode the same read succeeds.
    virt.iommu().lock().set_cpl(0);
    virt.read_slice(&mut buf, GuestAddress(VA + 0xffc)).unwrap();

    // Non-canonical: #GP, not a panic.
    assert!(virt.read_obj::<u8>(GuestAddress(0x8000_0000_0000)).is_err());
    assert!(matches!(virt.iommu().take_fault(), Some(Error::GeneralProtection(_))));
}

#[test]
fn invalidation_goes_through_the_mmu() {
    let ram = Ram::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let cr3 = tables(&ram, &[(VA, 0x80, URW)]);
    ram.write_obj(0x11u8, GuestAddress(0x80_000)).unwrap();
    ram.write_obj(0x22u8, GuestAddress(0x81_000)).unwrap();
    let virt = virt_memory(&ram, cr3);
    assert_eq!(virt.read_obj::<u8>(GuestAddress(VA)).unwrap(), 0x11);

    // The guest repoints the PTE at frame 0x81 without INVLPG: the TLB
    // keeps answering with the old frame, as a CPU may.
    let mut m = GuestPhys::new(&ram);
    let leaf = entry_at(&m, cr3, VirtAddr::new(VA).unwrap()).unwrap();
    m.write_u64(leaf.entry_pa, (leaf.entry & !0x000f_ffff_ffff_f000) | 0x81_000).unwrap();
    assert_eq!(virt.read_obj::<u8>(GuestAddress(VA)).unwrap(), 0x11);
    // After INVLPG, the new one.
    virt.iommu().lock().invlpg(VA);
    assert_eq!(virt.read_obj::<u8>(GuestAddress(VA)).unwrap(), 0x22);
    assert_eq!(virt.iommu().lock().stats().flushes.invlpg, 1);

    // Pass-through mode addresses the backend physically.
    let mut phys = virt.clone();
    phys.set_iommu_enabled(false);
    assert_eq!(phys.read_obj::<u8>(GuestAddress(0x81_000)).unwrap(), 0x22);
}
