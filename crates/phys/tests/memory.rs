//! Physical memory: atomic word access, frames, bytes, file backing, and the
//! page-table frame source.

use pgtable::{FrameSource, MemError, PAGE_SIZE, Pfn, PhysAddr, PhysMem};
use ptemu_phys::{FrameEntries, PageFlags, Phys, PhysError, PhysMemory, TableFrames};
use zerocopy::little_endian::U64;

fn pa(v: u64) -> PhysAddr {
    PhysAddr::new(v).unwrap()
}

#[test]
fn sizes_must_be_whole_frames() {
    assert!(matches!(PhysMemory::new(0), Err(PhysError::BadSize { size: 0, .. })));
    assert!(matches!(PhysMemory::new(6000), Err(PhysError::BadSize { size: 6000, .. })));
    let m = PhysMemory::new(3 * PAGE_SIZE).unwrap();
    assert_eq!((m.frames(), m.size(), m.len()), (3, 3 * PAGE_SIZE, 3 * 4096));
    assert!(!m.is_empty());
}

#[test]
fn word_access_through_phys_mem() {
    let mut m = PhysMemory::new(2 * PAGE_SIZE).unwrap();
    m.write_u64(pa(0x1008), 0x8000_0000_1234_5067).unwrap();
    assert_eq!(m.read_u64(pa(0x1008)).unwrap(), 0x8000_0000_1234_5067);
    assert_eq!(m.compare_exchange_u64(pa(0x1008), 1, 2).unwrap(), Err(0x8000_0000_1234_5067));
    assert_eq!(
        m.compare_exchange_u64(pa(0x1008), 0x8000_0000_1234_5067, 0x8000_0000_1234_5027).unwrap(),
        Ok(0x8000_0000_1234_5067)
    );
    assert_eq!(m.load(pa(0x1008)).unwrap(), 0x8000_0000_1234_5027);
    // Little-endian in memory, as the CPU stores it.
    let mut b = [0u8; 8];
    m.read_bytes(pa(0x1008), &mut b).unwrap();
    assert_eq!(b, 0x8000_0000_1234_5027u64.to_le_bytes());
    assert_eq!(m.read_u64(pa(0x1004)), Err(MemError::Unaligned(pa(0x1004))));
    assert_eq!(
        m.read_u64(pa(0x2000)),
        Err(MemError::OutOfRange { addr: pa(0x2000), size: 0x2000 })
    );
    assert_eq!(m.store(pa(0x1ffc), 0), Err(MemError::Unaligned(pa(0x1ffc))));
    assert_eq!(m.size(), 0x2000);
}

#[test]
fn concurrent_compare_exchange_loses_no_update() {
    let m = PhysMemory::new(PAGE_SIZE).unwrap();
    let word = pa(0x10);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut shared = &m;
                for _ in 0..5000 {
                    let mut cur = shared.read_u64(word).unwrap();
                    while let Err(actual) = shared.compare_exchange_u64(word, cur, cur + 1).unwrap()
                    {
                        cur = actual;
                    }
                }
            });
        }
    });
    assert_eq!(m.load(word).unwrap(), 10_000);
}

#[test]
fn frames_as_entries() {
    let m = PhysMemory::new(4 * PAGE_SIZE).unwrap();
    let mut e: FrameEntries = [U64::new(0); 512];
    for (i, w) in e.iter_mut().enumerate() {
        *w = U64::new((i as u64) << 12 | 0x67);
    }
    m.write_frame(Pfn(2), &e).unwrap();
    assert_eq!(m.load(pa(2 * 4096 + 8 * 511)).unwrap(), 511 << 12 | 0x67);
    m.copy_frame(Pfn(3), Pfn(2)).unwrap();
    assert_eq!(m.read_frame(Pfn(3)).unwrap(), e);
    m.zero_frame(Pfn(2)).unwrap();
    assert!(m.read_frame(Pfn(2)).unwrap().iter().all(|w| w.get() == 0));
    assert_eq!(m.read_frame(Pfn(3)).unwrap()[7].get(), 7 << 12 | 0x67);
    assert!(matches!(m.read_frame(Pfn(4)), Err(PhysError::NoSuchFrame { pfn: Pfn(4), frames: 4 })));
    assert!(matches!(m.copy_frame(Pfn(9), Pfn(0)), Err(PhysError::NoSuchFrame { .. })));
    let mut bytes = [0u8; 4096];
    m.read_frame_bytes(Pfn(3), &mut bytes).unwrap();
    assert_eq!(&bytes[8..16], &(1u64 << 12 | 0x67).to_le_bytes());
    bytes.fill(0xab);
    m.write_frame_bytes(Pfn(1), &bytes).unwrap();
    assert_eq!(m.load(pa(0x1ff8)).unwrap(), 0xabab_abab_abab_abab);
    m.zero_frames(Pfn(0), 1).unwrap();
    assert_eq!(m.load(pa(0x1ff8)).unwrap(), 0);
    assert!(matches!(m.zero_frames(Pfn(2), 2), Err(PhysError::OutOfRange { .. })));
}

#[test]
fn exclusive_frame_zero_and_copy() {
    let mut m = PhysMemory::new(4 * PAGE_SIZE).unwrap();
    let pattern: Vec<u8> = (0..4 * 4096u32).map(|i| (i * 7 % 255) as u8 + 1).collect();
    m.write_bytes(pa(0), &pattern).unwrap();
    m.zero_frame_exclusive(Pfn(1)).unwrap();
    m.copy_frame_exclusive(Pfn(3), Pfn(2)).unwrap();
    let mut back = vec![0u8; 4 * 4096];
    m.read_bytes(pa(0), &mut back).unwrap();
    let mut expect = pattern.clone();
    expect[4096..8192].fill(0);
    expect.copy_within(8192..12288, 12288);
    assert_eq!(back, expect);
    // Copying a frame onto itself leaves it as it was.
    m.copy_frame_exclusive(Pfn(2), Pfn(2)).unwrap();
    m.read_bytes(pa(0), &mut back).unwrap();
    assert_eq!(back, expect);
    assert!(matches!(
        m.zero_frame_exclusive(Pfn(4)),
        Err(PhysError::NoSuchFrame { pfn: Pfn(4), frames: 4 })
    ));
    assert!(matches!(m.copy_frame_exclusive(Pfn(0), Pfn(7)), Err(PhysError::NoSuchFrame { .. })));
    assert!(matches!(m.copy_frame_exclusive(Pfn(7), Pfn(0)), Err(PhysError::NoSuchFrame { .. })));
}

#[test]
fn user_bytes_at_any_address() {
    let m = PhysMemory::new(2 * PAGE_SIZE).unwrap();
    m.write_bytes(pa(0xffd), b"hello, world").unwrap();
    let mut back = [0u8; 12];
    m.read_bytes(pa(0xffd), &mut back).unwrap();
    assert_eq!(&back, b"hello, world");
    assert!(matches!(
        m.write_bytes(pa(0x1ffe), b"abc"),
        Err(PhysError::OutOfRange { offset: 0x1ffe, len: 3, size: 0x2000 })
    ));
}

#[test]
fn file_backed_memory_is_visible_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phys.img");
    {
        let m = PhysMemory::create_file(&path, 2 * PAGE_SIZE).unwrap();
        assert_eq!(m.region().path(), Some(path.as_path()));
        m.store(pa(0x1010), 0x0123_4567_89ab_cdef).unwrap();
        m.write_bytes(pa(3), b"ptemu").unwrap();
        m.flush().unwrap();
        let img = std::fs::read(&path).unwrap();
        assert_eq!(img.len(), 8192);
        assert_eq!(&img[0x1010..0x1018], &0x0123_4567_89ab_cdefu64.to_le_bytes());
        assert_eq!(&img[3..8], b"ptemu");
        assert!(img[8..0x1010].iter().all(|&b| b == 0));
    }
    // Reopening the image keeps its contents.
    let m = PhysMemory::open_file(&path).unwrap();
    assert_eq!(m.load(pa(0x1010)).unwrap(), 0x0123_4567_89ab_cdef);
    // A file that is not whole frames is refused.
    let odd = dir.path().join("odd.img");
    std::fs::write(&odd, [0u8; 100]).unwrap();
    assert!(matches!(PhysMemory::open_file(&odd), Err(PhysError::BadSize { size: 100, .. })));
    assert!(matches!(
        PhysMemory::open_file(&dir.path().join("missing")),
        Err(PhysError::Io { .. })
    ));
}

#[test]
fn table_frames_are_marked_pgtable() {
    let mut phys = Phys::new(8 * PAGE_SIZE).unwrap();
    let (mem, mut tf) = phys.split_for_tables();
    let t = tf.alloc_table_frame().unwrap();
    assert_eq!(t, Pfn(0));
    mem.store(t.addr(), 0x67).unwrap();
    tf.free_table_frame(Pfn(5));
    assert_eq!(tf.errors().len(), 1);
    assert!(matches!(tf.errors()[0], PhysError::DoubleFree { pfn: Pfn(5), .. }));
    drop(tf);
    let d = phys.pages.get(t).unwrap();
    assert_eq!((d.flags, d.refcount), (PageFlags::PGTABLE, 1));
    // Freeing a table frame through the plain allocator is a bad page.
    assert!(matches!(phys.free(t, 0), Err(PhysError::BadPageState { pfn: Pfn(0), .. })));
    // A data frame is not a table frame.
    let data = phys.alloc(0).unwrap();
    let mut tf = TableFrames::new(&mut phys.frames, &mut phys.pages);
    assert!(matches!(tf.free(data), Err(PhysError::BadPageState { .. })));
    tf.free_table_frame(t);
    assert!(tf.errors().is_empty());
    drop(tf);
    assert_eq!(phys.pages.get(t).unwrap().flags, PageFlags::BUDDY);
    let mut tf = TableFrames::new(&mut phys.frames, &mut phys.pages);
    tf.free_table_frame(t);
    assert_eq!(tf.take_errors().len(), 1);
    assert!(tf.errors().is_empty());
    for _ in 0..7 {
        tf.alloc_table_frame().unwrap();
    }
    assert_eq!(tf.alloc_table_frame(), Err(MemError::NoFrames));
    assert!(tf.errors().is_empty());
    drop(tf);
    assert_eq!(phys.pages.get(t).unwrap().flags, PageFlags::PGTABLE);
    assert_eq!(phys.frames.free_frames(), 0);
}

#[test]
fn alloc_zeroed_clears_old_contents() {
    let mut phys = Phys::new(4 * PAGE_SIZE).unwrap();
    let p = phys.alloc(1).unwrap();
    phys.mem.store(pa(0x1ff8), 0xdead).unwrap();
    phys.free(p, 1).unwrap();
    assert_eq!(phys.alloc_zeroed(1).unwrap(), p);
    assert_eq!(phys.mem.load(pa(0x1ff8)).unwrap(), 0);
}

#[test]
fn prefetch_is_a_checked_hint_that_changes_nothing() {
    let mut phys = Phys::new(4 * PAGE_SIZE).unwrap();
    // The lowest free frame is what the next single-frame allocation takes.
    assert_eq!(phys.frames.next_frame(), Some(Pfn(0)));
    let p = phys.alloc(0).unwrap();
    assert_eq!(phys.frames.next_frame(), Some(Pfn(1)));
    phys.mem.store(p.addr(), 0x1234_5678).unwrap();
    phys.mem.prefetch_frame(p).unwrap();
    phys.mem.prefetch_frame(Pfn(3)).unwrap();
    assert_eq!(phys.mem.load(p.addr()).unwrap(), 0x1234_5678);
    assert!(matches!(phys.mem.prefetch_frame(Pfn(4)), Err(PhysError::NoSuchFrame { .. })));
    assert!(matches!(
        phys.mem.region().prefetch(3 * PAGE_SIZE, PAGE_SIZE + 1),
        Err(PhysError::OutOfRange { .. })
    ));
    for _ in 0..3 {
        phys.alloc(0).unwrap();
    }
    assert_eq!(phys.frames.next_frame(), None);
}
