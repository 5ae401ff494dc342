//! Instruction-count probe for the MMU's paths, for callgrind (which a
//! loaded machine does not distort, unlike wall time):
//!
//! `valgrind --tool=callgrind target/release/examples/mmu_probe miss 1000000`
//!
//! `hit | miss | walk | switch | wide | wide1024` and an iteration count: `Mmu::translate`
//! over 32 TLB-resident pages, over the whole 1 GiB of the translate bench
//! (`miss`: the default paging-structure caches; `miss_no_psc`: none, every
//! miss walks from CR3; `miss_psc512`: a 512-entry PDE cache, as many as
//! the 1 GiB's PDEs),
//! or pgtable's bare walk over the same addresses; or CPL 3 -> 0 -> 3 with
//! a translation (a hit) in each mode, for the cost of a change of mode;
//! or `wide`: 4096-slot main tables and 1024 TLB-resident pages, four to
//! a first-level slot, so that most accesses are answered by the main
//! table; or `wide1024`, the same with a 1024-slot first level. Subtract the set-up (a run
//! with few iterations) to get instructions per translation.
//!
//! `best R [N]`: the hit loop of the `mmu` bench (`hit_4k/ptemu`) and the
//! KVM guest's load loop over the same addresses (`hit_4k/hardware`), N
//! translations or loads per run (default 2^24, so that the guest's VM
//! entry and exit, tens of microseconds, weigh little), R runs each,
//! interleaved; prints the fastest and the median run of each in ns per
//! access. On a shared machine the fastest run is the one least disturbed
//! by other processes, so the ratio of the minima is the figure load
//! distorts least.
//!
//! `race R [N]`: the miss loop of the `mmu` bench (`miss_4k/ptemu`, the
//! default caches) and pgtable's walk over the same addresses
//! (`translate_4k_random/ptemu_walk`), both in the bench's tight loop, N
//! translations per run (default 2^20), R runs each, interleaved; prints
//! the fastest and the median run of each and the median of the R
//! per-pair ratios. Each pair runs within milliseconds, so a drift of the
//! host (which moves this VM's memory-bound figures by 10-20 % between
//! criterion runs) weighs on both sides of a pair alike.
#![allow(missing_docs)]
use mmu::{Config, Mmu, Regs};
use pgtable::{
    Access, BumpFrames, CpuState, FrameMem, PageSize, Pfn, PhysAddr, VirtAddr, translate,
};
use ptemu_benches::{BENCH_VA, TABLE_FRAMES_4K, build_translate_tables, random_addresses};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The `hit_4k/ptemu` loop of benches/benches/mmu.rs (`run`).
fn hit_loop(mmu: &mut Mmu, mem: &mut FrameMem, addrs: &[u64], iters: usize) -> Duration {
    let mask = addrs.len() - 1;
    let start = Instant::now();
    let mut sum = 0u64;
    for k in 0..iters {
        let pa = match mmu.translate(mem, addrs[k & mask], Access::Read) {
            Ok(pa) => pa.as_u64(),
            Err(_) => u64::MAX,
        };
        sum = sum.wrapping_add(pa);
    }
    black_box(sum);
    start.elapsed()
}

fn summary(name: &str, mut ns: Vec<f64>) -> f64 {
    ns.sort_by(f64::total_cmp);
    let (min, med) = (ns[0], ns[ns.len() / 2]);
    println!("{name}: min {min:.3} ns, median {med:.3} ns per access ({} runs)", ns.len());
    min
}

fn best(mut mmu: Mmu, mem: &mut FrameMem, runs: usize, iters: usize) {
    // The bench's hit addresses (its seed).
    let hit: Vec<u64> = random_addresses(1 << 20, 0x5eed_0001)
        .iter()
        .map(|v| BENCH_VA + (v.as_u64() - BENCH_VA) % (32 << 12))
        .collect();
    let hit = &hit[..];
    let n = iters as f64;
    let hw_mem = phys::PhysMemory::new((1 << 30) + (16 << 20)).expect("guest memory");
    let mut frames = BumpFrames::new(Pfn(0x4_0000), Pfn(0x4_0000 + TABLE_FRAMES_4K));
    let root = build_translate_tables(&mut &hw_mem, &mut frames, PageSize::Size4K, Pfn(0))
        .expect("guest tables");
    let array = PhysAddr::new((1 << 30) + (8 << 20)).expect("array address");
    let mut loads =
        kvm::LoadLoop::new(hw_mem, root, Pfn(0x4_0400), array, hit).expect("KVM load loop");
    hit_loop(&mut mmu, mem, hit, hit.len());
    mmu.reset_stats();
    let (mut sw, mut hw) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        sw.push(hit_loop(&mut mmu, mem, hit, iters).as_nanos() as f64 / n);
        let d = loads.run(iters as u64, true).expect("guest load loop");
        hw.push(d.as_nanos() as f64 / n);
    }
    let s = mmu.stats();
    assert_eq!((s.hits, s.misses), ((runs * iters) as u64, 0), "all hits");
    let a = summary("hit_4k/ptemu", sw);
    let b = summary("hit_4k/hardware", hw);
    println!("ratio of the minima: {:.2}", a / b);
}

/// The `miss_4k/ptemu` and `ptemu_walk` loops, interleaved (see the
/// module docs).
fn race(mut mmu: Mmu, mem: &mut FrameMem, root: PhysAddr, runs: usize, iters: usize) {
    let random: Vec<u64> =
        random_addresses(1 << 20, 0x7a1b_2c3d).iter().map(|v| v.as_u64()).collect();
    let mask = random.len() - 1;
    // Runtime data, as in the bench (where the walk closure reads it through
    // a reference) and for an emulator: a constant here would let the
    // compiler fold the walk's reserved-bit masks into the loop.
    let cpu = black_box(CpuState::default());
    let n = iters as f64;
    let timed = |f: &mut dyn FnMut(u64) -> u64| {
        let start = Instant::now();
        let mut sum = 0u64;
        for k in 0..iters {
            sum = sum.wrapping_add(f(random[k & mask]));
        }
        black_box(sum);
        start.elapsed().as_nanos() as f64 / n
    };
    let (mut miss, mut walk, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let m = timed(&mut |va| match mmu.translate(mem, va, Access::Read) {
            Ok(pa) => pa.as_u64(),
            Err(_) => u64::MAX,
        });
        let w = timed(&mut |va| match translate(
            &mut *mem,
            root,
            VirtAddr::new_truncate(va),
            Access::Read,
            &cpu,
        ) {
            Ok(t) => t.pa.as_u64(),
            Err(_) => u64::MAX,
        });
        miss.push(m);
        walk.push(w);
        ratio.push(m / w);
    }
    summary("miss_4k/ptemu", miss);
    summary("ptemu_walk", walk);
    ratio.sort_by(f64::total_cmp);
    let r = &ratio;
    println!(
        "miss / walk per pair: median {:.3}, quartiles {:.3}-{:.3}, range {:.3}-{:.3}",
        r[r.len() / 2],
        r[r.len() / 4],
        r[r.len() * 3 / 4],
        r[0],
        r[r.len() - 1]
    );
}

/// Translations of `iters` random addresses over 1024 pages.
fn wide<const F: usize>(
    mut mmu: Mmu<F>,
    mem: &mut FrameMem,
    root: u64,
    random: &[u64],
    iters: usize,
) {
    mmu.set_regs(Regs::long_mode(root)).unwrap();
    mmu.set_cpl(3);
    let wide: Vec<u64> = random.iter().map(|v| BENCH_VA + (v - BENCH_VA) % (1024 << 12)).collect();
    let mask = wide.len() - 1;
    for i in 0..iters {
        black_box(mmu.translate(mem, wide[i & mask], Access::Read).ok());
    }
    let s = mmu.stats();
    eprintln!("wide: {} hits, {} misses", s.hits, s.misses);
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n = TABLE_FRAMES_4K + 1;
    let mut mem = FrameMem::new(n as usize);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(n));
    let root =
        build_translate_tables(&mut mem, &mut frames, PageSize::Size4K, Pfn(0x4_0000)).unwrap();
    let random: Vec<u64> =
        random_addresses(1 << 20, 0x7a1b_2c3d).iter().map(|v| v.as_u64()).collect();
    let hit: Vec<u64> = random.iter().map(|v| BENCH_VA + (v - BENCH_VA) % (32 << 12)).collect();
    let mut mmu = Mmu::new(Config::default()).unwrap();
    mmu.set_regs(Regs::long_mode(root.as_u64())).unwrap();
    mmu.set_cpl(3);
    let iters: usize = std::env::args().nth(2).map(|v| v.parse().unwrap()).unwrap_or(50_000_000);
    if which == "best" {
        let per_run = std::env::args().nth(3).map(|v| v.parse().unwrap()).unwrap_or(1 << 24);
        return best(mmu, &mut mem, iters, per_run);
    }
    if which == "race" {
        let per_run = std::env::args().nth(3).map(|v| v.parse().unwrap()).unwrap_or(1 << 20);
        return race(mmu, &mut mem, root, iters, per_run);
    }
    let mask = (1 << 20) - 1;
    let t = std::time::Instant::now();
    match which.as_str() {
        "hit" => {
            for i in 0..iters {
                black_box(mmu.translate(&mut mem, hit[i & mask], Access::Read).ok());
            }
        }
        "miss" | "miss_no_psc" | "miss_psc512" => {
            if which != "miss" {
                // No paging-structure caches (QEMU's miss), or a PDE cache
                // as large as the 512 PDEs of the 1 GiB.
                let config = if which == "miss_no_psc" {
                    Config::default().without_psc()
                } else {
                    Config { pde_cache: 512, ..Config::default() }
                };
                mmu = Mmu::new(config).unwrap();
                mmu.set_regs(Regs::long_mode(root.as_u64())).unwrap();
                mmu.set_cpl(3);
            }
            for i in 0..iters {
                black_box(mmu.translate(&mut mem, random[i & mask], Access::Read).ok());
            }
            let s = mmu.stats();
            let p = s.psc;
            eprintln!(
                "{which}: {} misses; walks started by the PDE cache {}, the PDPTE cache {}, \
                 the PML4 cache {}; fills {} / {} / {}",
                s.misses,
                p.pde_hits,
                p.pdpte_hits,
                p.pml4_hits,
                p.pde_fills,
                p.pdpte_fills,
                p.pml4_fills
            );
        }
        "walk" => {
            let cpu = black_box(CpuState::default());
            for i in 0..iters {
                black_box(
                    translate(
                        &mut mem,
                        root,
                        VirtAddr::new_truncate(random[i & mask]),
                        Access::Read,
                        &cpu,
                    )
                    .ok()
                    .map(|t| t.pa),
                );
            }
        }
        "switch" => {
            // A change of privilege level and back, with one hit in each
            // mode (the user page, then a supervisor access to it).
            for i in 0..iters {
                mmu.set_cpl(0);
                black_box(mmu.translate(&mut mem, hit[i & mask], Access::Read).ok());
                mmu.set_cpl(3);
                black_box(mmu.translate(&mut mem, hit[i & mask], Access::Read).ok());
            }
        }
        "wide" => {
            // 4096-slot main tables and 1024 consecutive pages: every page
            // has a main slot of its own, four share each first-level slot.
            let config = Config { entries: 4096, ..Config::default() };
            wide(Mmu::new(config).unwrap(), &mut mem, root.as_u64(), &random, iters);
        }
        "wide1024" => {
            // The same with a 1024-slot first level: every page has a
            // first-level slot of its own.
            let config = Config { entries: 4096, ..Config::default() };
            let mmu = Mmu::<1024>::with_first_level(config).unwrap();
            wide(mmu, &mut mem, root.as_u64(), &random, iters);
        }
        _ => panic!("hit|miss|walk|switch|wide|wide1024"),
    }
    eprintln!("{which}: {:.2} ns/iter", t.elapsed().as_nanos() as f64 / iters as f64);
}
