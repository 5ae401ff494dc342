//! pgtable's mapper building real tables in PhysMemory with frames from
//! TableFrames: table frames are marked PGTABLE while in use and go back to
//! the buddy allocator, merged, when the mapper frees them.

use pgtable::{EntryFlags, PAGE_SIZE, PageSize, PhysMem, VaRange, VirtAddr, lookup};
use ptemu_phys::{PageFlags, Phys};

fn pgtable_frames(phys: &Phys) -> usize {
    phys.pages.iter().filter(|(_, d)| d.flags.contains(PageFlags::PGTABLE)).count()
}

#[test]
fn mapper_tables_come_from_the_buddy_allocator() {
    let mut phys = Phys::new(64 * PAGE_SIZE).unwrap();
    let data = phys.alloc(0).unwrap();
    phys.mem.store(data.addr(), 0x1122_3344_5566_7788).unwrap();
    let va = VirtAddr::new(0x7f00_1234_5000).unwrap();
    let flags = EntryFlags::PRESENT | EntryFlags::WRITABLE | EntryFlags::USER;

    let (mem, mut tf) = phys.split_for_tables();
    let cr3 = pgtable::new_root(mem, &mut tf).unwrap();
    pgtable::map(mem, &mut tf, cr3, va, data, PageSize::Size4K, flags).unwrap();
    assert!(tf.errors().is_empty());
    drop(tf);
    // Root, PDPT, PD and PT: the four lowest free frames after the data page.
    assert_eq!(pgtable_frames(&phys), 4);
    assert_eq!(phys.frames.free_frames(), 64 - 5);
    let leaf = lookup(&phys.mem, cr3, va).unwrap().unwrap();
    assert_eq!(leaf.pa(va).pfn(), data);
    assert_eq!(phys.mem.read_u64(leaf.pa(va)).unwrap(), 0x1122_3344_5566_7788);

    let (mem, mut tf) = phys.split_for_tables();
    let mut seen = 0;
    pgtable::unmap(mem, &mut tf, cr3, VaRange::new(va, PAGE_SIZE).unwrap(), |_| seen += 1).unwrap();
    assert!(tf.errors().is_empty());
    drop(tf);
    assert_eq!(seen, 1);
    // Only the root is left; the freed tables merged back with their buddies.
    assert_eq!(pgtable_frames(&phys), 1);
    assert_eq!(phys.frames.free_frames(), 64 - 2);
    assert!(lookup(&phys.mem, cr3, va).unwrap().is_none());
}
