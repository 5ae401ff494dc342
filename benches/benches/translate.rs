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

mod common;

use common::{Loop, contenders, hardware, tables};
use criterion::{Criterion, criterion_group, criterion_main};
use pgtable::PageSize;
use ptemu_benches::{random_addresses, sequential_addresses};

/// Addresses per stream: 2^20 (8 MiB of addresses), four per mapped 4 KiB page.
const ADDRS: usize = 1 << 20;

fn bench_translate(c: &mut Criterion) {
    let random = random_addresses(ADDRS, 0x7a1b_2c3d);
    for (name, size) in [
        ("translate_4k_random", PageSize::Size4K),
        ("translate_2m_random", PageSize::Size2M),
        ("translate_1g_random", PageSize::Size1G),
    ] {
        let mut t = tables(size);
        let mut g = c.benchmark_group(name);
        contenders(&mut g, &mut t, &random, Loop::Iter);
        if size == PageSize::Size4K {
            hardware(&mut g, &random);
        }
        g.finish();
    }
    let seq = sequential_addresses(ADDRS, 4096);
    let mut t = tables(PageSize::Size4K);
    let mut g = c.benchmark_group("translate_4k_sequential");
    contenders(&mut g, &mut t, &seq, Loop::Iter);
    g.finish();
}

criterion_group!(benches, bench_translate);
criterion_main!(benches);
