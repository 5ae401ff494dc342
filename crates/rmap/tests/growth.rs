//! The anon_vma hierarchy growth 7a3ef208e662 stopped: a chain of
//! processes, each forking the next and then exiting. Each process also
//! writes a page of its own (a COW copy, page_add_new_anon_rmap) before it
//! forks, so the pages' mappings are checked to stay reachable throughout.

mod common;

use common::*;
use phys::PageDesc;
use ptemu_rmap::{Era, Rmap, VmaId};

/// Run the chain for `n` forks; returns (live anon_vmas, live links) at
/// the end, with only the last process alive.
fn chain_of_forks(era: Era, n: u64) -> (usize, usize) {
    let mut r: Rmap = with_a(era);
    let mut page = PageDesc::default();
    r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("first page");
    for i in 1..=n {
        let (parent, child) = (i, i + 1);
        r.set_step(format!("P{parent} fork P{child}"));
        r.anon_vma_fork(VmaId(child), VmaId(parent)).expect("fork");
        page.mapcount += 1;
        r.set_step(format!("P{parent} exit"));
        r.page_remove_rmap(&mut page).expect("parent's PTE");
        r.vma_remove(VmaId(parent)).expect("exit");
        // The child still maps the inherited page: it must stay reachable.
        assert_eq!(walk_vmas(&r, &page), vec![child], "era {era} after P{parent} exit");
        // The child writes: the last user reuses the page in place.
        r.page_move_anon_rmap(&mut page, VmaId(child)).expect("reuse");
        assert_eq!(walk_vmas(&r, &page), vec![child], "era {era} after P{child} reuse");
        if i % 64 == 0 {
            r.rcu_grace_period();
        }
    }
    (r.live_anon_vma_count(), r.avc_count())
}

#[test]
fn hierarchy_stays_bounded_in_6_18_and_grows_before() {
    const N: u64 = 1000;
    let mut figures = Vec::new();
    for era in Era::ALL {
        let (live, links) = chain_of_forks(era, N);
        figures.push(format!("{era}: {live} anon_vmas, {links} links"));
        match era {
            Era::V2_6_33 => assert_eq!((live, links), (1, 1)),
            // Every generation keeps its anon_vma: the survivor links to all.
            Era::V2_6_34Rc3 | Era::Seed | Era::V2_6_34 | Era::V2_6_36 => {
                assert_eq!((live, links as u64), (N as usize + 1, N + 1), "era {era}")
            }
            Era::V6_18 => assert_eq!((live, links), (3, 3)),
        }
    }
    // Bounded means independent of N, not merely small at N = 1000.
    assert_eq!(chain_of_forks(Era::V6_18, 10), (3, 3));
    assert_eq!(chain_of_forks(Era::V2_6_34, 10), (11, 11));
    eprintln!("chain of {N} forks, each parent exiting:\n  {}", figures.join("\n  "));
}

#[test]
fn pages_inherited_down_the_chain_stay_reachable() {
    // Each process writes a fresh page before forking and nobody writes it
    // again: the survivor inherits every one, in whichever anon_vma (own or
    // adopted) its writer had.
    const N: u64 = 200;
    for era in Era::ALL {
        let mut r = Rmap::new(era);
        let big = ptemu_rmap::VmaRange::new(START, PGOFF, 256).expect("range");
        r.vma_register(VmaId(1), big).expect("register");
        r.anon_vma_prepare(VmaId(1), &[]).expect("prepare");
        let mut pages: Vec<PageDesc> = Vec::new();
        for i in 1..=N {
            let mut p = PageDesc::default();
            r.page_add_new_anon_rmap(&mut p, VmaId(i), START + i * 4096).expect("write");
            pages.push(p);
            r.anon_vma_fork(VmaId(i + 1), VmaId(i)).expect("fork");
            r.vma_remove(VmaId(i)).expect("exit");
            r.rcu_grace_period();
        }
        for (i, p) in pages.iter().enumerate() {
            let hits = r.rmap_walk(p).unwrap_or_else(|e| panic!("era {era} page {i}: {e}"));
            let got: Vec<(u64, u64)> = hits.iter().map(|h| (h.vma.0, h.address)).collect();
            assert_eq!(got, vec![(N + 1, START + (i as u64 + 1) * 4096)], "era {era} page {i}");
        }
    }
}
