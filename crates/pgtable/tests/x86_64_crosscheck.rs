//! Cross-check against an independent implementation, the `x86_64` crate:
//! thousands of random mappings of all three page sizes built by our mapper
//! and translated by `x86_64`'s `OffsetPageTable`, and the reverse (tables
//! built by `x86_64`'s mapper, translated by our lookup and hardware walk),
//! over the same memory.
//!
//! `x86_64` needs real pointers to the tables: memory is a [`FrameMem`],
//! whose frames are 4 KiB-aligned like `x86_64`'s `PageTable`, and its
//! physical-offset mapping points at the frame vector. That is the only
//! unsafe code, kept to the two places below.

use ptemu_pgtable::{
    Access, BumpFrames, CpuState, EntryFlags, Fault, FrameMem, FrameSource, MapError, PageSize,
    Pfn, PhysAddr, VirtAddr, lookup, map, new_root, translate,
};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size1GiB,
    Size2MiB, Size4KiB, Translate,
    mapper::{MappedFrame, TranslateResult},
};

/// splitmix64: a fixed, dependency-free stream so the test is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FRAMES: usize = 8192;

/// `x86_64`'s view of the tables rooted at `root` inside `mem`.
fn x86_view(mem: &mut FrameMem, root: PhysAddr) -> OffsetPageTable<'_> {
    let base = mem.frames_mut().as_mut_ptr();
    let offset = x86_64::VirtAddr::new(base as u64);
    let l4 = base.wrapping_add(root.pfn().as_usize()).cast::<PageTable>();
    // SAFETY: `base` points at the frame vector, whose frame n holds
    // physical address n * 4096, so `offset + pa` is the host address of
    // every table address our mapper or x86_64's writes (all below
    // FRAMES * 4096). `Frame` is `repr(C, align(4096))` over [u64; 512],
    // the layout of `PageTable`. The returned value borrows `mem` mutably,
    // so no other access to the frames happens while it lives.
    unsafe { OffsetPageTable::new(&mut *l4, offset) }
}

/// Table frames for `x86_64`'s mapper, from the same frame source.
struct Alloc<'a>(&'a mut BumpFrames);

// SAFETY: every frame handed out comes from the BumpFrames range, unused
// and inside the memory the OffsetPageTable maps; none is handed out twice.
unsafe impl FrameAllocator<Size4KiB> for Alloc<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pfn = self.0.alloc_table_frame().ok()?;
        Some(PhysFrame::containing_address(x86_64::PhysAddr::new(pfn.addr().as_u64())))
    }
}

fn random_va(rng: &mut Rng, size: PageSize) -> u64 {
    let pml4 = [0u64, 1, 255, 256, 511][rng.below(5) as usize];
    // Keep most 4 KiB pages together so that tables are shared, and give
    // the huge sizes room of their own so that they are not all refused.
    let pdpt = if size == PageSize::Size1G { 8 + rng.below(64) } else { rng.below(8) };
    let pd = if size == PageSize::Size2M { 64 + rng.below(192) } else { rng.below(64) };
    let pt = rng.below(512);
    let raw = (pml4 << 39) | (pdpt << 30) | (pd << 21) | (pt << 12);
    let va = VirtAddr::new_truncate(raw).as_u64();
    va & !(size.bytes() - 1)
}

fn random_size(rng: &mut Rng) -> PageSize {
    match rng.below(100) {
        0..=79 => PageSize::Size4K,
        80..=95 => PageSize::Size2M,
        _ => PageSize::Size1G,
    }
}

fn random_flags(rng: &mut Rng, size: PageSize) -> EntryFlags {
    let optional = [
        EntryFlags::WRITABLE,
        EntryFlags::USER,
        EntryFlags::PWT,
        EntryFlags::PCD,
        EntryFlags::ACCESSED,
        EntryFlags::DIRTY,
        EntryFlags::GLOBAL,
        EntryFlags::SOFTW1,
        EntryFlags::SOFTW2,
        EntryFlags::SOFTW3,
        EntryFlags::AVL52,
        EntryFlags::SOFTW4,
        EntryFlags::PKEY0,
        EntryFlags::PKEY3,
        EntryFlags::NX,
    ];
    let mut f = EntryFlags::PRESENT;
    for o in optional {
        if rng.below(2) == 1 {
            f |= o;
        }
    }
    match size {
        PageSize::Size4K if rng.below(4) == 0 => f |= EntryFlags::PAT,
        PageSize::Size2M | PageSize::Size1G if rng.below(4) == 0 => f |= EntryFlags::PAT_LARGE,
        _ => {}
    }
    f
}

fn random_pfn(rng: &mut Rng, size: PageSize) -> u64 {
    // Frames anywhere below 2^40 pages (52-bit addresses): the leaves'
    // frames are never touched, only the tables are.
    let frames = size.bytes() >> 12;
    (rng.below(1 << 40) / frames) * frames
}

/// What a translation says about one address: frame address, page size and
/// the leaf's flag bits (x86_64's view of them: bits 0..=11 and 52..=63).
type Seen = Option<(u64, u64, u64)>;

fn x86_translate(pt: &OffsetPageTable<'_>, va: u64) -> Seen {
    match pt.translate(x86_64::VirtAddr::new(va)) {
        TranslateResult::Mapped { frame, offset, flags } => {
            let (start, size) = match frame {
                MappedFrame::Size4KiB(f) => (f.start_address().as_u64(), 4096),
                MappedFrame::Size2MiB(f) => (f.start_address().as_u64(), 1 << 21),
                MappedFrame::Size1GiB(f) => (f.start_address().as_u64(), 1 << 30),
            };
            Some((start + offset, size, flags.bits()))
        }
        TranslateResult::NotMapped => None,
        TranslateResult::InvalidFrameAddress(a) => {
            panic!("x86_64 saw an invalid frame {a:?} at {va:#x}")
        }
    }
}

const FLAG_BITS: u64 = 0xfff0_0000_0000_0fff;

fn our_lookup(mem: &FrameMem, root: PhysAddr, va: u64) -> Seen {
    let v = VirtAddr::new(va).unwrap();
    lookup(mem, root, v).unwrap().map(|l| (l.pa(v).as_u64(), l.page_size(), l.entry & FLAG_BITS))
}

/// Our hardware walk, for a supervisor read with nothing that could forbid
/// it: only the physical address and page size are compared.
fn our_translate(mem: &mut FrameMem, root: PhysAddr, va: u64) -> Option<(u64, u64)> {
    let cpu = CpuState { user: false, wp: false, ..CpuState::default() };
    match translate(mem, root, VirtAddr::new(va).unwrap(), Access::Read, &cpu) {
        Ok(t) => Some((t.pa.as_u64(), t.page_size.bytes())),
        Err(Fault::PageFault(pf)) => {
            assert_eq!(pf.error_code.bits(), 0, "only not-present faults expected at {va:#x}");
            None
        }
        Err(e) => panic!("walk failed at {va:#x}: {e}"),
    }
}

/// Addresses to probe for one mapping: its ends and a few inside, plus
/// random addresses of the whole region (mostly unmapped).
fn probes(rng: &mut Rng, mappings: &[(u64, PageSize)]) -> Vec<u64> {
    let mut out = Vec::new();
    for &(va, size) in mappings {
        out.push(va);
        out.push(va + size.bytes() - 1);
        out.push(va + (rng.below(size.bytes()) & !7));
    }
    for _ in 0..4000 {
        out.push(random_va(rng, PageSize::Size4K) + rng.below(4096));
    }
    out
}

#[test]
fn our_mapper_x86_64_translate() {
    let mut rng = Rng(0x5eed_0001);
    let mut mem = FrameMem::new(FRAMES);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(FRAMES as u64));
    let root = new_root(&mut mem, &mut frames).unwrap();
    let mut mapped = Vec::new();
    let mut refused = 0;
    while mapped.len() < 3000 {
        let size = random_size(&mut rng);
        let va = random_va(&mut rng, size);
        let pfn = random_pfn(&mut rng, size);
        let flags = random_flags(&mut rng, size);
        match map(&mut mem, &mut frames, root, VirtAddr::new(va).unwrap(), Pfn(pfn), size, flags) {
            Ok(()) => mapped.push((va, size)),
            Err(
                MapError::AlreadyMapped { .. }
                | MapError::HugeConflict { .. }
                | MapError::TableInTheWay { .. },
            ) => refused += 1,
            Err(e) => panic!("unexpected map error {e}"),
        }
    }
    assert!(refused > 0, "the random stream should have produced some conflicts");
    for size in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
        assert!(mapped.iter().filter(|m| m.1 == size).count() > 20, "too few {size:?} pages");
    }
    let probes = probes(&mut rng, &mapped);
    let theirs: Vec<Seen> = {
        let pt = x86_view(&mut mem, root);
        probes.iter().map(|&va| x86_translate(&pt, va)).collect()
    };
    let mut hits = 0;
    // Lookups first: the walk sets Accessed, which the flags compare.
    for (&va, want) in probes.iter().zip(&theirs) {
        assert_eq!(&our_lookup(&mem, root, va), want, "lookup disagrees at {va:#x}");
    }
    for (&va, want) in probes.iter().zip(&theirs) {
        assert_eq!(
            our_translate(&mut mem, root, va),
            want.map(|w| (w.0, w.1)),
            "walk disagrees at {va:#x}"
        );
        hits += want.is_some() as usize;
    }
    assert!(hits >= 3 * mapped.len(), "every mapping's probes must be mapped");
}

/// Maps one page of size `S` with the x86_64 crate's mapper; whether it
/// took (a clash with an earlier mapping is refused, as ours refuses it).
fn x86_map<S: x86_64::structures::paging::PageSize>(
    pt: &mut OffsetPageTable<'_>,
    va: x86_64::VirtAddr,
    pa: x86_64::PhysAddr,
    flags: PageTableFlags,
    alloc: &mut Alloc<'_>,
) -> bool
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    // SAFETY (of map_to): the frames mapped are never accessed; only the
    // tables are, and those come from `alloc` inside the same memory.
    unsafe {
        pt.map_to(
            Page::<S>::containing_address(va),
            PhysFrame::containing_address(pa),
            flags,
            alloc,
        )
    }
    .map(|f| f.ignore())
    .is_ok()
}

#[test]
fn x86_64_mapper_our_translate() {
    let mut rng = Rng(0x5eed_0002);
    let mut mem = FrameMem::new(FRAMES);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(FRAMES as u64));
    let root = new_root(&mut mem, &mut frames).unwrap();
    let mut mapped = Vec::new();
    {
        let mut pt = x86_view(&mut mem, root);
        let mut alloc = Alloc(&mut frames);
        while mapped.len() < 3000 {
            let size = random_size(&mut rng);
            let va = x86_64::VirtAddr::new(random_va(&mut rng, size));
            let pa = x86_64::PhysAddr::new(random_pfn(&mut rng, size) << 12);
            // x86_64 has no PAT_LARGE and calls bit 7 HUGE_PAGE: plain flags.
            let bits = random_flags(&mut rng, PageSize::Size4K).bits() & !(EntryFlags::PAT.bits());
            let flags = PageTableFlags::from_bits_truncate(bits);
            let ok = match size {
                PageSize::Size4K => x86_map::<Size4KiB>(&mut pt, va, pa, flags, &mut alloc),
                PageSize::Size2M => x86_map::<Size2MiB>(&mut pt, va, pa, flags, &mut alloc),
                PageSize::Size1G => x86_map::<Size1GiB>(&mut pt, va, pa, flags, &mut alloc),
            };
            if ok {
                mapped.push((va.as_u64(), size));
            }
        }
    }
    let probes = probes(&mut rng, &mapped);
    let theirs: Vec<Seen> = {
        let pt = x86_view(&mut mem, root);
        probes.iter().map(|&va| x86_translate(&pt, va)).collect()
    };
    // Lookups first: the walk sets Accessed, which the flags compare.
    for (&va, want) in probes.iter().zip(&theirs) {
        assert_eq!(&our_lookup(&mem, root, va), want, "lookup disagrees at {va:#x}");
    }
    for (&va, want) in probes.iter().zip(&theirs) {
        assert_eq!(
            our_translate(&mut mem, root, va),
            want.map(|w| (w.0, w.1)),
            "walk disagrees at {va:#x}"
        );
    }
    assert!(theirs.iter().filter(|t| t.is_some()).count() >= 3 * mapped.len());
}

/// Where the two deliberately differ: `x86_64` decides "mapped" for a PTE
/// by "non-zero" (its issue #561), so it reports a swap entry as a mapped
/// page; our lookup and walk go by the P bit, as the CPU does.
#[test]
fn swap_pte_is_not_mapped() {
    let mut mem = FrameMem::new(16);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(16));
    let root = new_root(&mut mem, &mut frames).unwrap();
    let va = 0x1000u64;
    let slot =
        ptemu_pgtable::pte_alloc(&mut mem, &mut frames, root, VirtAddr::new(va).unwrap()).unwrap();
    ptemu_pgtable::PhysMem::write_u64(&mut mem, slot, 0x07FF_FFFF_FFFF_FC00).unwrap();
    let theirs = {
        let pt = x86_view(&mut mem, root);
        x86_translate(&pt, va)
    };
    assert!(theirs.is_some(), "x86_64 counts a non-present, non-zero PTE as mapped");
    assert_eq!(our_lookup(&mem, root, va), None);
    assert_eq!(our_translate(&mut mem, root, va), None);
}
