//! The swap cache and page I/O end to end: reclaim and fault-in of a page
//! through phys memory, data across several devices, file-backed devices,
//! and every error the brief names.

use pgtable::{PAGE_SIZE, Pfn, SwapPte};
use phys::{FrameBytes, PageFlags, Phys};
use ptemu_swap::{SWAP_HAS_CACHE, Swap, SwapDevice, SwapError, SwpEntry};

/// A page of bytes that differs for every `seed`.
fn pattern(seed: u64) -> FrameBytes {
    let mut page = [0u8; PAGE_SIZE as usize];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in page.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    page
}

fn frame(phys: &Phys, pfn: Pfn) -> FrameBytes {
    let mut b = [0u8; PAGE_SIZE as usize];
    phys.mem.read_frame_bytes(pfn, &mut b).unwrap();
    b
}

#[test]
fn reclaim_then_fault_in_through_the_swap_cache() {
    let mut phys = Phys::new(16 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 8).unwrap()).unwrap();

    // A page mapped by two processes (parent and child after fork).
    let page = phys.alloc(0).unwrap();
    phys.mem.write_frame_bytes(page, &pattern(1)).unwrap();

    // Reclaim: add_to_swap, unmap both PTEs, write, remove from the cache.
    let entry = swap.add_to_swap(page, &mut phys.pages).unwrap();
    assert_eq!((entry.swap_type(), entry.offset()), (0, 1));
    let d = phys.pages.get(page).unwrap();
    assert!(d.flags.contains(PageFlags::SWAPCACHE | PageFlags::DIRTY));
    assert_eq!((d.private, d.refcount), (entry.raw(), 2));
    assert_eq!(swap.swap_map_value(entry).unwrap(), SWAP_HAS_CACHE);
    swap.swap_duplicate(entry).unwrap();
    swap.swap_duplicate(entry).unwrap();
    assert_eq!(swap.swap_map_value(entry).unwrap(), SWAP_HAS_CACHE | 2);
    assert_eq!(swap.swap_writepage(page, &phys.mem, &phys.pages).unwrap(), entry);
    let r = swap.delete_from_swap_cache(page, &mut phys.pages).unwrap();
    assert!(!r.slot_freed && !r.last_reference);
    assert_eq!(swap.swap_map_value(entry).unwrap(), 2);
    assert_eq!(swap.lookup_swap_cache(entry), None);
    // Reclaim drops its own reference and frees the frame.
    phys.pages.get_mut(page).unwrap().refcount = 0;
    phys.free(page, 0).unwrap();
    phys.mem.zero_frame(page).unwrap();

    // The child faults: cache miss, new page, read, into the cache.
    assert_eq!(swap.lookup_swap_cache(entry), None);
    let new = phys.alloc(0).unwrap();
    swap.swapcache_prepare(entry).unwrap();
    swap.add_to_swap_cache(entry, new, &mut phys.pages).unwrap();
    swap.swap_readpage(new, &phys.mem, &mut phys.pages).unwrap();
    assert_eq!(frame(&phys, new), pattern(1));
    assert!(phys.pages.get(new).unwrap().flags.contains(PageFlags::UPTODATE));
    // A racing fault finds the cache flag taken and looks the cache up.
    assert!(matches!(swap.swapcache_prepare(entry), Err(SwapError::CacheExists(e)) if e == entry));
    assert_eq!(swap.lookup_swap_cache(entry), Some(new));
    // The child's swap PTE is replaced: swap_free. Count 1 left, no freeing.
    assert!(!swap.swap_free(entry).unwrap());
    assert_eq!(swap.folio_free_swap(new, &mut phys.pages).unwrap(), None);
    // The parent maps it too: count 0, only the cache holds the slot.
    assert!(!swap.swap_free(entry).unwrap());
    assert_eq!(swap.__swap_count(entry).unwrap(), 0);
    let r = swap.folio_free_swap(new, &mut phys.pages).unwrap().unwrap();
    assert_eq!((r.pfn, r.entry, r.slot_freed, r.last_reference), (new, entry, true, false));
    let d = phys.pages.get(new).unwrap();
    assert_eq!((d.private, d.refcount), (0, 1));
    assert!(!d.flags.contains(PageFlags::SWAPCACHE) && d.flags.contains(PageFlags::DIRTY));
    assert_eq!(swap.nr_swap_pages(), 7);
    assert!(matches!(swap.swap_free(entry), Err(SwapError::SlotNotAllocated(_))));
}

#[test]
fn data_reads_back_bit_for_bit_across_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut phys = Phys::new(64 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 5).unwrap()).unwrap();
    swap.swapon(SwapDevice::create_file(&dir.path().join("swap5"), 5, 9).unwrap()).unwrap();
    swap.swapon(SwapDevice::anonymous(31, 3).unwrap()).unwrap();
    assert_eq!(swap.total_swap_pages(), 4 + 8 + 2);

    // Fill every slot of every device: lowest type first, lowest slot first.
    let mut written = Vec::new();
    for i in 0..14u64 {
        let pfn = phys.alloc(0).unwrap();
        phys.mem.write_frame_bytes(pfn, &pattern(100 + i)).unwrap();
        let entry = swap.get_swap_page().unwrap();
        let want = match i {
            0..4 => (0, i + 1),
            4..12 => (5, i - 3),
            _ => (31, i - 11),
        };
        assert_eq!((entry.swap_type(), entry.offset()), want);
        swap.write_slot(entry, &phys.mem, pfn).unwrap();
        written.push((entry, i));
    }
    assert!(matches!(swap.get_swap_page(), Err(SwapError::SwapFull)));
    assert!(matches!(swap.get_swap_page_of_type(5), Err(SwapError::DeviceFull(5))));

    // Read each slot into a fresh frame and compare every byte.
    for &(entry, i) in written.iter().rev() {
        let pfn = phys.alloc(0).unwrap();
        swap.read_slot(entry, &phys.mem, pfn).unwrap();
        assert_eq!(frame(&phys, pfn), pattern(100 + i), "slot {entry}");
        let mut buf = [0u8; PAGE_SIZE as usize];
        swap.read_slot_bytes(entry, &mut buf).unwrap();
        assert_eq!(buf, pattern(100 + i));
    }

    // The file-backed device holds the same bytes at slot * 4096.
    let dev = swap.device(5).unwrap();
    dev.region().flush().unwrap();
    let img = std::fs::read(dir.path().join("swap5")).unwrap();
    assert_eq!(img.len(), 9 * 4096);
    assert_eq!(&img[4096 - 10..4096], b"SWAPSPACE2");
    assert_eq!(&img[1028..1032], &8u32.to_le_bytes());
    assert_eq!(&img[3 * 4096..4 * 4096], &pattern(100 + 6)[..]);
}

#[test]
fn swap_file_can_be_reactivated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swapfile");
    let mut phys = Phys::new(4 * PAGE_SIZE).unwrap();
    let pfn = phys.alloc(0).unwrap();
    phys.mem.write_frame_bytes(pfn, &pattern(7)).unwrap();
    let header = {
        let mut swap = Swap::new();
        swap.swapon(SwapDevice::create_file(&path, 2, 16).unwrap()).unwrap();
        let e = swap.get_swap_page().unwrap();
        swap.write_slot(e, &phys.mem, pfn).unwrap();
        swap.put_swap_folio(e).unwrap();
        let dev = swap.swapoff(2).unwrap();
        *dev.header()
    };
    // swapon again, under another type: header checked, all slots free,
    // the old slot contents still in the file.
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::open_file(&path, 9).unwrap()).unwrap();
    let dev = swap.device(9).unwrap();
    assert_eq!((dev.pages(), dev.free_slots(), *dev.header()), (16, 15, header));
    let e = swap.get_swap_page().unwrap();
    assert_eq!(e, SwpEntry::new(9, 1).unwrap());
    let mut buf = [0u8; PAGE_SIZE as usize];
    swap.read_slot_bytes(e, &mut buf).unwrap();
    assert_eq!(buf, pattern(7));
    // Not a swap file.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 8192]).unwrap();
    assert!(matches!(SwapDevice::open_file(&junk, 0), Err(SwapError::BadHeader(_))));
}

#[test]
fn errors_name_what_was_wrong_and_change_nothing() {
    let mut phys = Phys::new(8 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    assert!(matches!(swap.get_swap_page(), Err(SwapError::SwapFull)));
    assert!(matches!(SwapDevice::anonymous(32, 4), Err(SwapError::BadType(32))));
    assert!(matches!(SwapDevice::anonymous(0, 1), Err(SwapError::DeviceTooSmall { pages: 1 })));
    swap.swapon(SwapDevice::anonymous(1, 3).unwrap()).unwrap();
    assert!(matches!(
        swap.swapon(SwapDevice::anonymous(1, 3).unwrap()),
        Err(SwapError::DeviceExists(1))
    ));
    let e = |t, o| SwpEntry::new(t, o).unwrap();
    assert!(matches!(swap.swap_duplicate(e(4, 1)), Err(SwapError::NoSuchDevice(4))));
    assert!(matches!(swap.swap_free(e(1, 3)), Err(SwapError::OffsetOutOfRange { last: 2, .. })));
    assert!(matches!(swap.swapcache_prepare(e(1, 0)), Err(SwapError::HeaderSlot(_))));
    assert!(matches!(swap.swap_duplicate(e(1, 2)), Err(SwapError::SlotNotAllocated(_))));

    let a = swap.get_swap_page().unwrap();
    let b = swap.get_swap_page().unwrap();
    assert!(matches!(swap.get_swap_page(), Err(SwapError::SwapFull)));
    assert!(matches!(swap.swapoff(1), Err(SwapError::DeviceBusy { swap_type: 1, inuse: 2 })));
    // Cache flag held: a second prepare is EEXIST, a swap_free has no count.
    assert!(matches!(swap.swapcache_prepare(a), Err(SwapError::CacheExists(_))));
    assert!(matches!(swap.swap_free(a), Err(SwapError::DoubleFree { what: "swap count", .. })));
    for _ in 0..0x3e {
        swap.swap_duplicate(a).unwrap();
    }
    // The 63rd needs a continuation page; nothing changed until it has one.
    assert!(matches!(swap.swap_duplicate(a), Err(SwapError::CountNeedsContinuation { .. })));
    assert_eq!(swap.swp_swapcount(a).unwrap(), 0x3e);
    assert!(swap.add_swap_count_continuation(a, pgtable::Pfn(0x999)).unwrap());
    swap.swap_duplicate(a).unwrap();
    assert_eq!(swap.swp_swapcount(a).unwrap(), 0x3f);
    assert_eq!(swap.continuation_frames(), [pgtable::Pfn(0x999)]);
    assert!(matches!(
        swap.add_swap_count_continuation(b, pgtable::Pfn(0x999)),
        Ok(false) | Err(SwapError::ContinuationFrameInUse { .. })
    ));
    swap.swap_free(a).unwrap();
    assert_eq!(swap.swp_swapcount(a).unwrap(), 0x3e);

    // The cache: one page per entry, one entry per page, flag required.
    let p = phys.alloc(0).unwrap();
    let q = phys.alloc(0).unwrap();
    swap.add_to_swap_cache(a, p, &mut phys.pages).unwrap();
    assert!(matches!(
        swap.add_to_swap_cache(a, q, &mut phys.pages),
        Err(SwapError::CacheExists(x)) if x == a
    ));
    assert!(matches!(
        swap.add_to_swap_cache(b, p, &mut phys.pages),
        Err(SwapError::PageInSwapCache { pfn, entry }) if pfn == p && entry == a
    ));
    swap.put_swap_folio(b).unwrap();
    assert!(matches!(swap.put_swap_folio(b), Err(SwapError::SlotNotAllocated(_))));
    assert!(matches!(
        swap.add_to_swap_cache(b, q, &mut phys.pages),
        Err(SwapError::NoCacheFlag(x)) if x == b
    ));
    assert!(matches!(
        swap.delete_from_swap_cache(q, &mut phys.pages),
        Err(SwapError::PageNotInSwapCache(x)) if x == q
    ));
    assert!(matches!(
        swap.swap_writepage(q, &phys.mem, &phys.pages),
        Err(SwapError::PageNotInSwapCache(_))
    ));
    // Nothing above changed p's or q's state.
    assert_eq!(phys.pages.get(q).unwrap().refcount, 1);
    assert_eq!(phys.pages.get(p).unwrap().refcount, 2);
    assert_eq!(swap.swap_cache().collect::<Vec<_>>(), vec![(a, p)]);
    // A slot that is not allocated cannot be written.
    assert!(matches!(swap.write_slot(b, &phys.mem, q), Err(SwapError::SlotNotAllocated(_))));
    // A frame that does not exist is a phys error, not a panic.
    assert!(matches!(swap.write_slot(a, &phys.mem, Pfn(99)), Err(SwapError::Phys(_))));
    assert!(matches!(
        SwpEntry::try_from(SwapPte { swap_type: 32, ..SwapPte::default() }),
        Err(SwapError::BadType(32))
    ));
}

#[test]
fn free_swap_and_cache_reclaims_an_unmapped_cached_page() {
    let mut phys = Phys::new(8 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 64).unwrap()).unwrap();
    let p = phys.alloc(0).unwrap();
    let e = swap.add_to_swap(p, &mut phys.pages).unwrap();
    swap.swap_duplicate(e).unwrap();
    swap.swap_duplicate(e).unwrap();
    // A mapped cached page stays while swap is far from full.
    phys.pages.get_mut(p).unwrap().mapcount = 1;
    assert_eq!(swap.free_swap_and_cache(e, &mut phys.pages).unwrap(), None);
    assert_eq!(swap.lookup_swap_cache(e), Some(p));
    // Unmapped: the last swap PTE's zap frees the slot and the cache entry.
    phys.pages.get_mut(p).unwrap().mapcount = 0;
    let r = swap.free_swap_and_cache(e, &mut phys.pages).unwrap().unwrap();
    assert_eq!((r.pfn, r.slot_freed, r.last_reference), (p, true, false));
    assert_eq!(swap.nr_swap_pages(), 63);
    assert_eq!(swap.swap_cache_len(), 0);
}

#[test]
fn exclusive_page_io_moves_the_same_bytes_and_the_cache_lists_in_entry_order() {
    let mut phys = Phys::new(8 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(1, 16).unwrap()).unwrap();
    swap.swapon(SwapDevice::anonymous(0, 16).unwrap()).unwrap();
    let (p, q, r) = (phys.alloc(0).unwrap(), phys.alloc(0).unwrap(), phys.alloc(0).unwrap());
    phys.mem.write_frame_bytes(p, &pattern(7)).unwrap();
    phys.mem.write_frame_bytes(q, &pattern(8)).unwrap();
    // Type 0 fills first; the second device takes the next pages.
    let a = swap.add_to_swap(p, &mut phys.pages).unwrap();
    let b = swap.get_swap_page_of_type(1).unwrap();
    swap.add_to_swap_cache(b, q, &mut phys.pages).unwrap();
    assert_eq!((a.swap_type(), b.swap_type()), (0, 1));
    assert_eq!(swap.swap_cache().collect::<Vec<_>>(), vec![(a, p), (b, q)]);
    assert_eq!(swap.swap_cache_len(), 2);
    // The bulk write and the word-by-word write leave the same slot.
    swap.swap_writepage_exclusive(p, &mut phys.mem, &phys.pages).unwrap();
    let mut slot = [0u8; PAGE_SIZE as usize];
    swap.read_slot_bytes(a, &mut slot).unwrap();
    assert_eq!(slot, pattern(7));
    swap.swap_writepage(q, &phys.mem, &phys.pages).unwrap();
    swap.read_slot_bytes(b, &mut slot).unwrap();
    assert_eq!(slot, pattern(8));
    // Read back into a fresh page through the bulk path.
    let released = swap.__delete_from_swap_cache(p, &mut phys.pages).unwrap();
    assert_eq!(released, a);
    assert_eq!(swap.lookup_swap_cache(a), None);
    assert_eq!(swap.swap_cache().collect::<Vec<_>>(), vec![(b, q)]);
    swap.add_to_swap_cache(a, r, &mut phys.pages).unwrap();
    swap.swap_readpage_exclusive(r, &mut phys.mem, &mut phys.pages).unwrap();
    assert_eq!(frame(&phys, r), pattern(7));
    assert!(phys.pages.get(r).unwrap().flags.contains(PageFlags::UPTODATE));
    assert_eq!(swap.lookup_swap_cache(a), Some(r));
    // Errors leave the cache as it was.
    assert!(matches!(
        swap.swap_writepage_exclusive(p, &mut phys.mem, &phys.pages),
        Err(SwapError::PageNotInSwapCache(x)) if x == p
    ));
    assert!(matches!(
        swap.add_to_swap_cache(a, p, &mut phys.pages),
        Err(SwapError::CacheExists(x)) if x == a
    ));
    assert_eq!(swap.swap_cache().collect::<Vec<_>>(), vec![(a, r), (b, q)]);
    assert_eq!(swap.swap_cache_len(), 2);
}

/// A page whose descriptor and the cache disagree, or that holds no
/// reference, is refused by every path that leaves the cache or does I/O
/// on it, with nothing changed.
#[test]
fn cache_paths_check_the_page_against_the_cache() {
    let mut phys = Phys::new(16 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 8).unwrap()).unwrap();
    let p = phys.alloc(0).unwrap();
    let q = phys.alloc(0).unwrap();
    let a = swap.add_to_swap(p, &mut phys.pages).unwrap();
    // q claims p's entry without being in the cache under it.
    {
        let d = phys.pages.get_mut(q).unwrap();
        d.flags.insert(PageFlags::SWAPCACHE);
        d.private = a.raw();
    }
    let before = (*phys.pages.get(p).unwrap(), *phys.pages.get(q).unwrap());
    let mismatch = |r: Result<(), SwapError>| {
        assert!(
            matches!(r, Err(SwapError::CacheMismatch { entry, pfn }) if entry == a && pfn == q),
            "{r:?}"
        );
    };
    mismatch(swap.delete_from_swap_cache(q, &mut phys.pages).map(|_| ()));
    mismatch(swap.folio_free_swap(q, &mut phys.pages).map(|_| ()));
    mismatch(swap.swap_writepage_exclusive(q, &mut phys.mem, &phys.pages).map(|_| ()));
    mismatch(swap.swap_readpage_exclusive(q, &mut phys.mem, &mut phys.pages).map(|_| ()));
    // A private word that is no entry.
    phys.pages.get_mut(q).unwrap().private = u64::MAX;
    assert!(matches!(
        swap.delete_from_swap_cache(q, &mut phys.pages),
        Err(SwapError::BadPrivate { pfn, private: u64::MAX }) if pfn == q
    ));
    phys.pages.get_mut(q).unwrap().private = a.raw();
    // p without a reference: the cache's cannot be dropped.
    phys.pages.get_mut(p).unwrap().refcount = 0;
    assert!(matches!(
        swap.delete_from_swap_cache(p, &mut phys.pages),
        Err(SwapError::RefcountUnderflow(x)) if x == p
    ));
    phys.pages.get_mut(p).unwrap().refcount = before.0.refcount;
    assert_eq!((*phys.pages.get(p).unwrap(), *phys.pages.get(q).unwrap()), before);
    assert_eq!(swap.lookup_swap_cache(a), Some(p));
    assert_eq!(swap.swap_map_value(a).unwrap(), SWAP_HAS_CACHE);
    assert_eq!(swap.swap_cache_len(), 1);
    // And the real page leaves as it should.
    let r = swap.delete_from_swap_cache(p, &mut phys.pages).unwrap();
    assert!(r.slot_freed && !r.last_reference);
    assert_eq!((swap.lookup_swap_cache(a), swap.swap_cache_len()), (None, 0));
}

/// swapcache_prepare_add: the flag taken, PG_swapbacked set, the page
/// added; a refusal by the cache gives the flag back.
#[test]
fn swapcache_prepare_add_takes_the_flag_then_adds_the_page() {
    let mut phys = Phys::new(16 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 8).unwrap()).unwrap();
    let p = phys.alloc(0).unwrap();
    let a = swap.add_to_swap(p, &mut phys.pages).unwrap();
    swap.swap_duplicate(a).unwrap();
    swap.delete_from_swap_cache(p, &mut phys.pages).unwrap();
    assert_eq!(swap.swap_map_value(a).unwrap(), 1);
    // Swap-in of a: a new page q.
    let q = phys.alloc(0).unwrap();
    swap.swapcache_prepare_add(a, q, &mut phys.pages).unwrap();
    let d = *phys.pages.get(q).unwrap();
    assert!(d.flags.contains(PageFlags::SWAPCACHE | PageFlags::SWAPBACKED));
    assert_eq!((d.refcount, d.private), (2, a.raw()));
    assert_eq!(swap.swap_map_value(a).unwrap(), 1 | SWAP_HAS_CACHE);
    assert_eq!((swap.lookup_swap_cache(a), swap.swap_cache_len()), (Some(q), 1));
    // A second reader finds the flag taken: nothing changes.
    let r = phys.alloc(0).unwrap();
    assert!(matches!(
        swap.swapcache_prepare_add(a, r, &mut phys.pages),
        Err(SwapError::CacheExists(x)) if x == a
    ));
    assert!(!phys.pages.get(r).unwrap().flags.contains(PageFlags::SWAPBACKED));
    // A page already cached under a is refused for b; b's flag is dropped.
    let b = swap.get_swap_page().unwrap();
    swap.swap_duplicate(b).unwrap();
    swap.put_swap_folio(b).unwrap();
    assert!(matches!(
        swap.swapcache_prepare_add(b, q, &mut phys.pages),
        Err(SwapError::PageInSwapCache { pfn, entry }) if pfn == q && entry == a
    ));
    assert_eq!(swap.swap_map_value(b).unwrap(), 1);
    assert_eq!(swap.lookup_swap_cache(b), None);
    // An entry naming a slot nobody uses.
    let free = SwpEntry::new(0, 5).unwrap();
    assert!(matches!(
        swap.swapcache_prepare_add(free, r, &mut phys.pages),
        Err(SwapError::SlotNotAllocated(x)) if x == free
    ));
    assert_eq!(swap.swap_map_value(free).unwrap(), 0);
}

/// lookup_swap_cache_in_use: no answer for a slot nobody uses, the header
/// slot or a missing device; else the cached page, if any.
#[test]
fn lookup_swap_cache_in_use_answers_only_for_slots_in_use() {
    let mut phys = Phys::new(16 * PAGE_SIZE).unwrap();
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 8).unwrap()).unwrap();
    let p = phys.alloc(0).unwrap();
    let a = swap.add_to_swap(p, &mut phys.pages).unwrap();
    assert_eq!(swap.lookup_swap_cache_in_use(a), Some(Some(p)));
    swap.swap_duplicate(a).unwrap();
    swap.delete_from_swap_cache(p, &mut phys.pages).unwrap();
    assert_eq!(swap.lookup_swap_cache_in_use(a), Some(None));
    swap.swap_free(a).unwrap();
    assert_eq!(swap.lookup_swap_cache_in_use(a), None);
    for e in
        [SwpEntry::new(0, 0).unwrap(), SwpEntry::new(0, 99).unwrap(), SwpEntry::new(3, 1).unwrap()]
    {
        assert_eq!(swap.lookup_swap_cache_in_use(e), None, "{e}");
    }
}
