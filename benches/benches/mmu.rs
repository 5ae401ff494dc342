//! The MMU's TLB (crates/mmu) against the CPU's, in one run with today's
//! translate contenders.
//!
//! The ptemu functions time a tight loop of N translations with
//! `iter_custom`, as the hardware contender times a guest loop of N loads.
//! The guest's loop consumes each load by loading it into a register and
//! going on (no store); the ptemu loop consumes each translation the same
//! way, folding the physical address into an accumulator (one add), which
//! is passed to `black_box` once per run, so the compiler can drop no
//! translation and the loop stores nothing per translation. Both ptemu
//! contenders (`hit_4k`, `miss_4k`) use that same loop.
//!
//! - `hit_4k/ptemu`: `Mmu::translate` (user read) of random addresses over
//!   a working set of [`HIT_PAGES`] consecutive 4 KiB pages, which fits
//!   the TLB (no two pages share a slot), after one warm-up pass: every
//!   translation is the hit path.
//! - `hit_4k/hardware`: a KVM guest in ring 3 loading from the same
//!   addresses through the same tables: the CPU's own TLB hit (the working
//!   set fits its L1 dTLB).
//! - `miss_4k/ptemu`: `Mmu::translate` of random addresses over the whole
//!   1 GiB (262144 pages, far beyond the TLB's 256 slots): nearly every
//!   translation misses, probes the victim cache, walks and fills. The
//!   walk starts where the paging-structure caches (default sizes: 4 PML4
//!   entries, 4 PDPTEs, 32 PDEs) let it: over 1 GiB of random addresses
//!   the PDPTE cache answers nearly every miss (one PDPTE), the 32-entry
//!   PDE cache about 1 in 16 of them (512 PDEs).
//! - `miss_4k/ptemu_no_psc`: the same loop with the paging-structure caches
//!   off (`Config::without_psc`, QEMU's miss): every walk reads all four
//!   levels from CR3.
//! - `translate_4k_random/{ptemu,ptemu_walk,x86_64,hardware}`: as in the
//!   `translate` bench, over the same random addresses as `miss_4k`, but
//!   timed with the same tight loop as the MMU (`run`'s shape,
//!   `common::Loop::Tight`), so that `miss_4k/ptemu` and
//!   `translate_4k_random/ptemu_walk`, which the MMU's goal compares, are
//!   measured the same way. (With criterion's `iter`, as in the `translate`
//!   bench, each walk also paid the closure's index kept in memory and a
//!   `black_box` per result: about 0.5 ns more than in the tight loop.)
#![allow(missing_docs)]

mod common;

use common::{Loop, contenders, hardware, tables, tight};
use criterion::{Criterion, criterion_group, criterion_main};
use mmu::{Access, Config, Mmu, Regs};
use pgtable::{FrameMem, PageSize, VirtAddr};
use ptemu_benches::{BENCH_VA, random_addresses};
use std::time::Duration;

/// Addresses per stream: 2^20.
const ADDRS: usize = 1 << 20;
/// Pages of the TLB-resident working set.
const HIT_PAGES: u64 = 32;

fn mmu_over(root: u64) -> Mmu {
    mmu_with(root, Config::default())
}

fn mmu_with(root: u64, config: Config) -> Mmu {
    let mut mmu = Mmu::new(config).expect("config");
    mmu.set_regs(Regs::long_mode(root)).expect("regs");
    mmu.set_cpl(3);
    mmu
}

/// `iters` translations of `addrs[k & mask]` in one tight loop, timed as a
/// whole: the same shape as the hardware contender's guest loop (one
/// timed run of N loads), each translation's address folded into the sum
/// that is consumed once at the end (see the module docs).
fn run(mmu: &mut Mmu, mem: &mut FrameMem, addrs: &[u64], iters: u64) -> Duration {
    tight(addrs, iters, |va| match mmu.translate(mem, va, Access::Read) {
        Ok(pa) => pa.as_u64(),
        Err(_) => u64::MAX,
    })
}

fn bench_mmu(c: &mut Criterion) {
    let random = random_addresses(ADDRS, 0x7a1b_2c3d);
    let hit: Vec<VirtAddr> = random_addresses(ADDRS, 0x5eed_0001)
        .iter()
        .map(|v| VirtAddr::new_truncate(BENCH_VA + (v.as_u64() - BENCH_VA) % (HIT_PAGES << 12)))
        .collect();
    let mut t = tables(PageSize::Size4K);

    {
        let mut g = c.benchmark_group("hit_4k");
        let mut mmu = mmu_over(t.root.as_u64());
        let mem = &mut t.mem;
        for va in &hit {
            mmu.translate(mem, va.as_u64(), Access::Read).expect("warm-up translation");
        }
        let addrs: Vec<u64> = hit.iter().map(|v| v.as_u64()).collect();
        g.bench_function("ptemu", |b| b.iter_custom(|iters| run(&mut mmu, mem, &addrs, iters)));
        let s = mmu.stats();
        eprintln!("hit_4k/ptemu: {} hits, {} misses", s.hits, s.misses);
        hardware(&mut g, &hit);
        g.finish();
    }
    {
        let mut g = c.benchmark_group("miss_4k");
        let addrs: Vec<u64> = random.iter().map(|v| v.as_u64()).collect();
        for (name, config) in
            [("ptemu", Config::default()), ("ptemu_no_psc", Config::default().without_psc())]
        {
            let mut mmu = mmu_with(t.root.as_u64(), config);
            let mem = &mut t.mem;
            g.bench_function(name, |b| b.iter_custom(|iters| run(&mut mmu, mem, &addrs, iters)));
            let s = mmu.stats();
            let p = s.psc;
            eprintln!(
                "miss_4k/{name}: {} hits, {} victim hits, {} misses; walks started by the PDE \
                 cache {}, the PDPTE cache {}, the PML4 cache {}",
                s.hits, s.victim_hits, s.misses, p.pde_hits, p.pdpte_hits, p.pml4_hits
            );
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("translate_4k_random");
        contenders(&mut g, &mut t, &random, Loop::Tight);
        hardware(&mut g, &random);
        g.finish();
    }
}

criterion_group!(mmu, bench_mmu);
criterion_main!(mmu);
