//! Translation speed: pgtable's side-effect-free `lookup` and full
//! hardware walk (`translate`, with checks and A/D) against the `x86_64`
//! crate's `OffsetPageTable::translate_addr`, on identical tables in the
//! same memory: a fully mapped 1 GiB range of 4 KiB, 2 MiB or 1 GiB pages.
//!
//! Each iteration translates one address taken in turn from a precomputed
//! array (random or sequential), so the reported time is per translation.
//! Groups: `translate_{4k,2m,1g}_random` and `translate_4k_sequential`,
//! each with functions `ptemu`, `ptemu_walk` and `x86_64`. Another
//! contender adds itself as one more `group.bench_function` (for example
//! `translate_4k_random/hardware`, the real CPU), building the same tables
//! with `ptemu_benches::build_translate_tables`.
#![allow(missing_docs)]

use criterion::{
    BenchmarkGroup, Criterion, black_box, criterion_group, criterion_main, measurement::WallTime,
};
use pgtable::{
    Access, BumpFrames, CpuState, FrameMem, PageSize, Pfn, PhysAddr, VirtAddr, lookup, translate,
};
use ptemu_benches::{
    TABLE_FRAMES_4K, build_translate_tables, random_addresses, sequential_addresses,
};
use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};

/// Addresses per stream: 2^20 (8 MiB of addresses), four per mapped 4 KiB page.
const ADDRS: usize = 1 << 20;

struct Tables {
    mem: FrameMem,
    root: PhysAddr,
}

fn tables(size: PageSize) -> Tables {
    let n = TABLE_FRAMES_4K + 1;
    let mut mem = FrameMem::new(n as usize);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(n));
    // Data frames from physical 1 GiB up: 1 GiB-aligned for every size.
    let root = build_translate_tables(&mut mem, &mut frames, size, Pfn(0x4_0000)).expect("tables");
    Tables { mem, root }
}

/// `x86_64`'s view of the tables in `mem`.
fn x86_view(mem: &mut FrameMem, root: PhysAddr) -> OffsetPageTable<'_> {
    let base = mem.frames_mut().as_mut_ptr();
    let offset = x86_64::VirtAddr::new(base as u64);
    let l4 = base.wrapping_add(root.pfn().as_usize()).cast::<PageTable>();
    // SAFETY: frame n of the vector holds physical address n * 4096 and
    // every table address in these tables is below the vector's end, so
    // `offset + pa` is a valid host address for each table the walk reads;
    // `Frame` is `repr(C, align(4096))` over [u64; 512], `PageTable`'s
    // layout; the result borrows `mem` mutably, so nothing else touches the
    // frames meanwhile.
    unsafe { OffsetPageTable::new(&mut *l4, offset) }
}

fn contenders(g: &mut BenchmarkGroup<'_, WallTime>, t: &mut Tables, addrs: &[VirtAddr]) {
    let mask = addrs.len() - 1;
    let root = t.root;
    {
        let mem = &t.mem;
        let mut i = 0usize;
        g.bench_function("ptemu", |b| {
            b.iter(|| {
                let va = addrs[i & mask];
                i = i.wrapping_add(1);
                black_box(lookup(mem, root, va).ok().flatten().map(|l| l.pa(va)))
            })
        });
    }
    {
        let cpu = CpuState::default();
        let mem = &mut t.mem;
        let mut i = 0usize;
        g.bench_function("ptemu_walk", |b| {
            b.iter(|| {
                let va = addrs[i & mask];
                i = i.wrapping_add(1);
                black_box(translate(mem, root, va, Access::Read, &cpu).ok().map(|t| t.pa))
            })
        });
    }
    {
        let theirs: Vec<x86_64::VirtAddr> =
            addrs.iter().map(|v| x86_64::VirtAddr::new(v.as_u64())).collect();
        let pt = x86_view(&mut t.mem, root);
        let mut i = 0usize;
        g.bench_function("x86_64", |b| {
            b.iter(|| {
                let va = theirs[i & mask];
                i = i.wrapping_add(1);
                black_box(pt.translate_addr(va))
            })
        });
    }
}

/// The CPU itself: a KVM guest (ring 3) loading from the same addresses
/// through the same tables, built into guest RAM (data frames at physical 0,
/// tables at 1 GiB). Timed per load with `iter_custom`: one guest loop of
/// `iters` loads per sample. See docs/benchmarks.md for what this measures.
fn hardware(g: &mut BenchmarkGroup<'_, WallTime>, addrs: &[VirtAddr]) {
    let mem = match phys::PhysMemory::new((1 << 30) + (16 << 20)) {
        Ok(m) => m,
        Err(e) => return eprintln!("translate_4k_random/hardware skipped: {e}"),
    };
    let mut frames = BumpFrames::new(Pfn(0x4_0000), Pfn(0x4_0000 + TABLE_FRAMES_4K));
    let root =
        build_translate_tables(&mut &mem, &mut frames, PageSize::Size4K, Pfn(0)).expect("tables");
    let list: Vec<u64> = addrs.iter().map(|v| v.as_u64()).collect();
    let array = PhysAddr::new((1 << 30) + (8 << 20)).expect("array address");
    let mut loads = match kvm::LoadLoop::new(mem, root, Pfn(0x4_0400), array, &list) {
        Ok(l) => l,
        Err(e) => return eprintln!("translate_4k_random/hardware skipped: {e}"),
    };
    g.bench_function("hardware", |b| {
        b.iter_custom(|iters| loads.run(iters, true).expect("guest load loop"))
    });
}

fn bench_translate(c: &mut Criterion) {
    let random = random_addresses(ADDRS, 0x7a1b_2c3d);
    for (name, size) in [
        ("translate_4k_random", PageSize::Size4K),
        ("translate_2m_random", PageSize::Size2M),
        ("translate_1g_random", PageSize::Size1G),
    ] {
        let mut t = tables(size);
        let mut g = c.benchmark_group(name);
        contenders(&mut g, &mut t, &random);
        if size == PageSize::Size4K {
            hardware(&mut g, &random);
        }
        g.finish();
    }
    let seq = sequential_addresses(ADDRS, 4096);
    let mut t = tables(PageSize::Size4K);
    let mut g = c.benchmark_group("translate_4k_sequential");
    contenders(&mut g, &mut t, &seq);
    g.finish();
}

criterion_group!(benches, bench_translate);
criterion_main!(benches);
