//! Swap: a page's write-out and read-in through the swap cache, the way
//! mm's reclaim and do_swap_page drive the swap crate.
//!
//! `out_in_cycle` is one whole round trip, state restored at the end so
//! every iteration does identical work: add_to_swap (slot + cache), one
//! swap PTE (swap_duplicate), swap_writepage, delete_from_swap_cache and
//! free of the frame; then a new frame, swapcache_prepare,
//! add_to_swap_cache, swap_readpage, swap_free and folio_free_swap (slot
//! freed), and the frame freed again. `writepage` and `readpage` time the
//! 4 KiB copies alone, `copy_frame` the same copy inside phys memory.
#![allow(missing_docs)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use pgtable::{PAGE_SIZE, Pfn};
use phys::Phys;
use swap::{Swap, SwapDevice};

fn setup() -> (Phys, Swap) {
    let phys = Phys::new(64 * PAGE_SIZE).expect("phys memory");
    let mut swap = Swap::new();
    swap.swapon(SwapDevice::anonymous(0, 1024).expect("swap device")).expect("swapon");
    (phys, swap)
}

/// Drops the caller's reference and frees the frame, as put_page would.
fn release(phys: &mut Phys, pfn: Pfn) {
    let d = phys.pages.get_mut(pfn).expect("frame");
    d.refcount -= 1;
    d.flags = phys::PageFlags::empty();
    phys.free(pfn, 0).expect("free");
}

fn out_in_cycle(phys: &mut Phys, swap: &mut Swap) {
    let page = phys.alloc(0).expect("alloc");
    let entry = swap.add_to_swap(page, &mut phys.pages).expect("add_to_swap");
    swap.swap_duplicate(entry).expect("swap_duplicate");
    swap.swap_writepage(page, &phys.mem, &phys.pages).expect("writepage");
    swap.delete_from_swap_cache(page, &mut phys.pages).expect("delete");
    release(phys, page);

    let new = phys.alloc(0).expect("alloc");
    swap.swapcache_prepare(entry).expect("prepare");
    swap.add_to_swap_cache(entry, new, &mut phys.pages).expect("add_to_swap_cache");
    swap.swap_readpage(new, &phys.mem, &mut phys.pages).expect("readpage");
    swap.swap_free(entry).expect("swap_free");
    let r = swap.folio_free_swap(new, &mut phys.pages).expect("folio_free_swap");
    assert!(r.is_some_and(|r| r.slot_freed));
    release(phys, new);
}

fn bench_swap(c: &mut Criterion) {
    let mut g = c.benchmark_group("swap");

    let (mut phys, mut swap) = setup();
    // Non-zero contents so the copies move real data.
    for f in 0..phys.mem.frames() {
        phys.mem.write_frame_bytes(Pfn(f), &[0x5a; PAGE_SIZE as usize]).expect("fill");
    }
    g.bench_function("out_in_cycle", |b| b.iter(|| out_in_cycle(&mut phys, &mut swap)));
    assert_eq!(swap.nr_swap_pages(), swap.total_swap_pages());

    let (mut phys, mut swap) = setup();
    let page = phys.alloc(0).expect("alloc");
    // In the swap cache, so writepage and readpage find its slot.
    swap.add_to_swap(page, &mut phys.pages).expect("add_to_swap");
    g.bench_function("writepage", |b| {
        b.iter(|| swap.swap_writepage(black_box(page), &phys.mem, &phys.pages).expect("write"))
    });
    g.bench_function("readpage", |b| {
        b.iter(|| swap.swap_readpage(black_box(page), &phys.mem, &mut phys.pages).expect("read"))
    });
    g.bench_function("copy_frame", |b| {
        b.iter(|| phys.mem.copy_frame(black_box(Pfn(1)), black_box(page)).expect("copy"))
    });
    g.finish();
}

criterion_group!(benches, bench_swap);
criterion_main!(benches);
