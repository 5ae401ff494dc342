//! Instruction-count probe for the MMU's paths, for callgrind (which a
//! loaded machine does not distort, unlike wall time):
//!
//! `valgrind --tool=callgrind target/release/examples/mmu_probe miss 1000000`
//!
//! `hit | miss | walk` and an iteration count: `Mmu::translate` over 32
//! TLB-resident pages, over the whole 1 GiB of the translate bench, or
//! pgtable's bare walk over the same addresses. Subtract the set-up (a run
//! with few iterations) to get instructions per translation.
#![allow(missing_docs)]
use mmu::{Config, Mmu, Regs};
use pgtable::{Access, BumpFrames, CpuState, FrameMem, PageSize, Pfn, VirtAddr, translate};
use ptemu_benches::{BENCH_VA, TABLE_FRAMES_4K, build_translate_tables, random_addresses};
use std::hint::black_box;

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
    let mask = (1 << 20) - 1;
    let t = std::time::Instant::now();
    match which.as_str() {
        "hit" => {
            for i in 0..iters {
                black_box(mmu.translate(&mut mem, hit[i & mask], Access::Read).ok());
            }
        }
        "miss" => {
            for i in 0..iters {
                black_box(mmu.translate(&mut mem, random[i & mask], Access::Read).ok());
            }
        }
        "walk" => {
            let cpu = CpuState::default();
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
        _ => panic!("hit|miss|walk"),
    }
    eprintln!("{which}: {:.2} ns/iter", t.elapsed().as_nanos() as f64 / iters as f64);
}
