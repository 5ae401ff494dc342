//! The benchmark's load loop really walks the tables: after it runs, the
//! Accessed bit is set in the PTE of every page it loaded from and in no
//! other. Skips (visibly) when /dev/kvm is not usable.

use pgtable::{
    BumpFrames, EntryFlags, PageSize, Pfn, PhysAddr, PhysMem, VirtAddr, lookup, map_range, new_root,
};
use phys::PhysMemory;
use ptemu_kvm::{KvmError, LoadLoop};

#[test]
fn load_loop_walks_the_tables() {
    // 64 MiB: data pages in the first 32 MiB, tables from 32 MiB, harness
    // at 40 MiB, address array at 42 MiB.
    let mem = PhysMemory::new(64 << 20).unwrap();
    let mut frames = BumpFrames::new(Pfn(0x2000), Pfn(0x2800));
    let mut m: &PhysMemory = &mem;
    let root = new_root(&mut m, &mut frames).unwrap();
    let base = 0x4000_0000u64;
    map_range(
        &mut m,
        &mut frames,
        root,
        VirtAddr::new(base).unwrap(),
        Pfn(0),
        8192,
        PageSize::Size4K,
        EntryFlags::PRESENT | EntryFlags::WRITABLE | EntryFlags::USER,
    )
    .unwrap();
    // 256 loads over the even pages of the first 512.
    let addrs: Vec<u64> = (0..256u64).map(|i| base + 2 * i * 4096 + 8).collect();
    let mut l =
        match LoadLoop::new(mem, root, Pfn(0x2800), PhysAddr::new(42 << 20).unwrap(), &addrs) {
            Ok(l) => l,
            Err(KvmError::NoKvm(why)) => {
                eprintln!("SKIPPED: /dev/kvm is not usable here ({why})");
                return;
            }
            Err(e) => panic!("set-up failed: {e}"),
        };
    let t = l.run(1000, true).unwrap();
    assert!(t.as_nanos() > 0);
    check_accessed(&l, root, base);
    // The same loop in ring 0 completes over the same tables.
    assert!(l.run(1000, false).unwrap().as_nanos() > 0);
}

fn check_accessed(l: &LoadLoop, root: PhysAddr, base: u64) {
    let mem = l.machine().mem();
    for page in 0..512u64 {
        let va = VirtAddr::new(base + page * 4096).unwrap();
        let leaf = lookup(&mem, root, va).unwrap().unwrap();
        let a = mem.read_u64(leaf.entry_pa).unwrap() & 0x20 != 0;
        assert_eq!(a, page % 2 == 0, "page {page}: Accessed {a}");
    }
}

#[test]
fn bad_array_length_is_an_error() {
    // Checked before KVM is touched, so this runs on any host.
    let addrs = [0x4000_0000u64; 3];
    assert!(matches!(
        LoadLoop::new(
            PhysMemory::new(64 << 20).unwrap(),
            PhysAddr::new(0x200_0000).unwrap(),
            Pfn(0x2800),
            PhysAddr::new(42 << 20).unwrap(),
            &addrs[..3]
        ),
        Err(KvmError::BadWindow { .. })
    ));
}
