//! The translate contenders shared by the `translate` and `mmu` benches:
//! pgtable's lookup and walk, the `x86_64` crate, and the CPU under KVM, on
//! the tables `ptemu_benches::build_translate_tables` builds.

use criterion::{BenchmarkGroup, black_box, measurement::WallTime};
use pgtable::{
    Access, BumpFrames, CpuState, FrameMem, PageSize, Pfn, PhysAddr, VirtAddr, lookup, translate,
};
use ptemu_benches::{TABLE_FRAMES_4K, build_translate_tables};
use std::time::{Duration, Instant};
use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};

/// Tables of one page size over the benchmarked 1 GiB range.
pub struct Tables {
    /// The memory holding them (data frames are not backed).
    pub mem: FrameMem,
    /// CR3.
    pub root: PhysAddr,
}

/// Builds [`Tables`] of pages of `size`.
pub fn tables(size: PageSize) -> Tables {
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

/// How [`contenders`] times its functions.
// Each bench that includes this module uses one of the two.
#[allow(dead_code)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// criterion's `iter`: one call of the closure per translation, the
    /// index kept in the closure's environment across calls, each result
    /// passed to `black_box` (the `translate` bench's shape).
    Iter,
    /// The `mmu` bench's shape (its `run`): `iter_custom` over one tight
    /// loop of N translations, the index in a register, each physical
    /// address folded into a sum passed to `black_box` once per run.
    Tight,
}

/// `iters` calls of `f` on `addrs[k & mask]` in one tight loop, timed as a
/// whole, each result folded into a sum consumed once ([`Loop::Tight`]).
#[inline(always)]
pub fn tight<A: Copy>(addrs: &[A], iters: u64, mut f: impl FnMut(A) -> u64) -> Duration {
    let mask = addrs.len() - 1;
    let start = Instant::now();
    let mut sum = 0u64;
    for k in 0..iters as usize {
        sum = sum.wrapping_add(f(addrs[k & mask]));
    }
    black_box(sum);
    start.elapsed()
}

/// `ptemu`, `ptemu_walk` and `x86_64` translating `addrs` in turn, each
/// timed with the loop `shape`.
pub fn contenders(
    g: &mut BenchmarkGroup<'_, WallTime>,
    t: &mut Tables,
    addrs: &[VirtAddr],
    shape: Loop,
) {
    let mask = addrs.len() - 1;
    let root = t.root;
    {
        let mem = &t.mem;
        let mut i = 0usize;
        g.bench_function("ptemu", |b| match shape {
            Loop::Iter => b.iter(|| {
                let va = addrs[i & mask];
                i = i.wrapping_add(1);
                black_box(lookup(mem, root, va).ok().flatten().map(|l| l.pa(va)))
            }),
            Loop::Tight => b.iter_custom(|iters| {
                tight(addrs, iters, |va| match lookup(mem, root, va) {
                    Ok(Some(l)) => l.pa(va).as_u64(),
                    _ => u64::MAX,
                })
            }),
        });
    }
    {
        let cpu = CpuState::default();
        let mem = &mut t.mem;
        let mut i = 0usize;
        g.bench_function("ptemu_walk", |b| match shape {
            Loop::Iter => b.iter(|| {
                let va = addrs[i & mask];
                i = i.wrapping_add(1);
                black_box(translate(mem, root, va, Access::Read, &cpu).ok().map(|t| t.pa))
            }),
            Loop::Tight => b.iter_custom(|iters| {
                tight(addrs, iters, |va| match translate(mem, root, va, Access::Read, &cpu) {
                    Ok(t) => t.pa.as_u64(),
                    Err(_) => u64::MAX,
                })
            }),
        });
    }
    {
        let theirs: Vec<x86_64::VirtAddr> =
            addrs.iter().map(|v| x86_64::VirtAddr::new(v.as_u64())).collect();
        let pt = x86_view(&mut t.mem, root);
        let mut i = 0usize;
        g.bench_function("x86_64", |b| match shape {
            Loop::Iter => b.iter(|| {
                let va = theirs[i & mask];
                i = i.wrapping_add(1);
                black_box(pt.translate_addr(va))
            }),
            Loop::Tight => b.iter_custom(|iters| {
                tight(&theirs, iters, |va| pt.translate_addr(va).map_or(u64::MAX, |pa| pa.as_u64()))
            }),
        });
    }
}

/// The CPU itself: a KVM guest (ring 3) loading from the same addresses
/// through the same tables, built into guest RAM (data frames at physical 0,
/// tables at 1 GiB). Timed per load with `iter_custom`: one guest loop of
/// `iters` loads per sample. See docs/benchmarks.md for what this measures.
pub fn hardware(g: &mut BenchmarkGroup<'_, WallTime>, addrs: &[VirtAddr]) {
    let mem = match phys::PhysMemory::new((1 << 30) + (16 << 20)) {
        Ok(m) => m,
        Err(e) => return eprintln!("hardware contender skipped: {e}"),
    };
    let mut frames = BumpFrames::new(Pfn(0x4_0000), Pfn(0x4_0000 + TABLE_FRAMES_4K));
    let root =
        build_translate_tables(&mut &mem, &mut frames, PageSize::Size4K, Pfn(0)).expect("tables");
    let list: Vec<u64> = addrs.iter().map(|v| v.as_u64()).collect();
    let array = PhysAddr::new((1 << 30) + (8 << 20)).expect("array address");
    let mut loads = match kvm::LoadLoop::new(mem, root, Pfn(0x4_0400), array, &list) {
        Ok(l) => l,
        Err(e) => return eprintln!("hardware contender skipped: {e}"),
    };
    g.bench_function("hardware", |b| {
        b.iter_custom(|iters| loads.run(iters, true).expect("guest load loop"))
    });
}
