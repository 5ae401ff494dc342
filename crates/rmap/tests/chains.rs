//! Chain shapes per era: fork generations, clone order, neighbour reuse in
//! anon_vma_prepare, fork-time reuse, splits.

mod common;

use common::*;
use ptemu_rmap::{Era, Rmap, VmaId, VmaRange};

/// A forks B forks C forks D (all alive): the chain of each, newest first.
fn generations(era: Era) -> [String; 4] {
    let mut r = with_a(era);
    for (child, parent) in [(2, 1), (3, 2), (4, 3)] {
        r.anon_vma_fork(VmaId(child), VmaId(parent)).expect("fork");
    }
    [chain(&r, 1), chain(&r, 2), chain(&r, 3), chain(&r, 4)]
}

#[test]
fn chain_order_after_one_two_three_forks() {
    let shared = ["av1", "av1", "av1", "av1"];
    let reversed = ["av1", "av2,av1", "av3,av1,av2", "av4,av2,av1,av3"];
    let preserved = ["av1", "av2,av1", "av3,av2,av1", "av4,av3,av2,av1"];
    let expect: [(Era, [&str; 4]); 6] = [
        (Era::V2_6_33, shared),
        (Era::V2_6_34Rc3, reversed),
        (Era::Seed, reversed),
        (Era::V2_6_34, preserved),
        (Era::V2_6_36, preserved),
        // Every parent is still alive, so 6.18 finds nothing to reuse.
        (Era::V6_18, preserved),
    ];
    for (era, want) in expect {
        assert_eq!(generations(era), want.map(String::from), "era {era}");
    }
}

#[test]
fn own_anon_vma_is_the_newest_link() {
    for era in Era::ALL {
        let mut r = with_a(era);
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        r.anon_vma_fork(VmaId(3), VmaId(2)).expect("fork");
        let first = chain(&r, 3).split(',').next().map(String::from);
        assert_eq!(first, Some(own_name(&r, 3)), "era {era}");
    }
}

#[test]
fn roots_and_parents_follow_the_fork_tree() {
    let mut r = with_a(Era::V2_6_36);
    let b = r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork").expect("has anon_vma");
    let c = r.anon_vma_fork(VmaId(3), VmaId(2)).expect("fork").expect("has anon_vma");
    let a = r.vma(VmaId(1)).expect("a").anon_vma.expect("a has one");
    assert_eq!(r.anon_vma(c).expect("live").root, a);
    assert_eq!(r.anon_vma(c).expect("live").parent, Some(b));
    assert_eq!(r.anon_vma(b).expect("live").parent, Some(a));
    assert!(r.anon_vma(a).expect("live").is_root(a));
    // Each descendant pins the root from 2.6.36 on.
    assert_eq!(r.anon_vma(a).expect("live").refcount, 2);
    let mut old = with_a(Era::V2_6_34);
    old.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    let a = old.vma(VmaId(1)).expect("a").anon_vma.expect("a has one");
    assert_eq!(old.anon_vma(a).expect("live").refcount, 0);
}

#[test]
fn fork_without_anon_vma_links_nothing() {
    for era in Era::ALL {
        let mut r = Rmap::new(era);
        r.vma_register(VmaId(1), range()).expect("register");
        assert_eq!(r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork"), None);
        assert_eq!(chain(&r, 2), "");
        assert_eq!(r.live_anon_vma_count(), 0);
    }
}

/// B (forked from A) maps a new VMA right after its inherited one, and
/// anon_vma_prepare looks at that neighbour.
fn neighbour_after_fork(era: Era) -> (String, String) {
    let mut r = with_a(era);
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    let next = VmaRange::new(START + PAGES * 4096, PGOFF + PAGES, 4).expect("range");
    r.vma_register(VmaId(3), next).expect("register");
    r.anon_vma_prepare(VmaId(3), &[VmaId(2)]).expect("prepare");
    (own_name(&r, 3), chain(&r, 3))
}

#[test]
fn prepare_reuses_neighbours_as_the_era_allows() {
    // Before d0e9fe1758f2 a neighbour's anon_vma is taken even though the
    // neighbour has a longer chain: the new VMA links to av2 only.
    for era in [Era::V2_6_33, Era::V2_6_34Rc3, Era::Seed] {
        let want = if era == Era::V2_6_33 { "av1" } else { "av2" };
        assert_eq!(neighbour_after_fork(era), (want.into(), want.into()), "era {era}");
    }
    // From d0e9fe1758f2 on only a single-link neighbour qualifies.
    for era in [Era::V2_6_34, Era::V2_6_36, Era::V6_18] {
        assert_eq!(neighbour_after_fork(era), ("av3".into(), "av3".into()), "era {era}");
    }
}

#[test]
fn prepare_reuses_a_singleton_neighbour_in_every_era() {
    for era in Era::ALL {
        let mut r = with_a(era);
        let next = VmaRange::new(START + PAGES * 4096, PGOFF + PAGES, 4).expect("range");
        r.vma_register(VmaId(2), next).expect("register");
        r.anon_vma_prepare(VmaId(2), &[VmaId(1)]).expect("prepare");
        assert_eq!(own_name(&r, 2), "av1", "era {era}");
        assert_eq!(r.live_anon_vma_count(), 1);
    }
}

#[test]
fn prepare_ignores_neighbours_that_do_not_abut() {
    for era in Era::ALL {
        let mut r = with_a(era);
        // A page gap in addresses.
        let gap = VmaRange::new(START + (PAGES + 1) * 4096, PGOFF + PAGES + 1, 4).expect("range");
        r.vma_register(VmaId(2), gap).expect("register");
        r.anon_vma_prepare(VmaId(2), &[VmaId(1)]).expect("prepare");
        assert_eq!(own_name(&r, 2), "av2", "era {era}");
        // Adjacent addresses but a discontinuous page offset.
        let skew = VmaRange::new(START + PAGES * 4096, PGOFF + PAGES + 7, 1).expect("range");
        r.vma_register(VmaId(3), skew).expect("register");
        r.anon_vma_prepare(VmaId(3), &[VmaId(1)]).expect("prepare");
        assert_eq!(own_name(&r, 3), "av3", "era {era}");
    }
}

#[test]
fn prepare_twice_returns_the_same_anon_vma() {
    let mut r = with_a(Era::V6_18);
    let h1 = r.anon_vma_prepare(VmaId(1), &[]).expect("prepare");
    let h2 = r.anon_vma_prepare(VmaId(1), &[]).expect("prepare");
    assert_eq!(h1, h2);
    assert_eq!(r.live_anon_vma_count(), 1);
    assert_eq!(r.avc_count(), 1);
}

#[test]
fn six_eighteen_reuses_an_abandoned_ancestor_at_fork() {
    let mut r = with_a(Era::V6_18);
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("A forks B");
    exit(&mut r, 1, None, "A exit");
    r.anon_vma_fork(VmaId(3), VmaId(2)).expect("B forks C");
    // av1 counts itself and av2 as children: not reusable; av2 is B's.
    assert_eq!(own_name(&r, 3), "av3");
    exit(&mut r, 2, None, "B exit");
    r.anon_vma_fork(VmaId(4), VmaId(3)).expect("C forks D");
    // av2 has one child (av3) and no VMA of its own any more: D adopts it.
    assert_eq!(own_name(&r, 4), "av2");
    assert_eq!(chain(&r, 4), "av3,av2,av1");
    let av2 = r.vma(VmaId(4)).expect("d").anon_vma.expect("adopted");
    let av = r.anon_vma(av2).expect("live");
    assert_eq!((av.num_children, av.num_active_vmas), (1, 1));
    assert_eq!(r.live_anon_vma_count(), 3);
}

#[test]
fn degree_variant_reuses_too() {
    // 7a3ef208e662 alone (degree), composed on top of 2.6.36.
    let sem = ptemu_rmap::RmapSemantics {
        fork_reuse: ptemu_rmap::ForkReuse::Degree,
        ..Era::V2_6_36.semantics()
    };
    let mut r = Rmap::new(sem);
    r.vma_register(VmaId(1), range()).expect("register");
    r.anon_vma_prepare(VmaId(1), &[]).expect("prepare");
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("A forks B");
    exit(&mut r, 1, None, "A exit");
    r.anon_vma_fork(VmaId(3), VmaId(2)).expect("B forks C");
    assert_eq!(own_name(&r, 3), "av3");
    exit(&mut r, 2, None, "B exit");
    r.anon_vma_fork(VmaId(4), VmaId(3)).expect("C forks D");
    assert_eq!(own_name(&r, 4), "av2");
}

#[test]
fn split_clones_the_chain_and_rekeys_the_interval_set() {
    for era in Era::ALL {
        let mut r = with_a(era);
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        // __split_vma of A's VMA at page 8: vma 5 takes the upper half.
        let upper = VmaRange::new(START + 8 * 4096, PGOFF + 8, PAGES - 8).expect("range");
        let lower = VmaRange::new(START, PGOFF, 8).expect("range");
        r.vma_dup(VmaId(5), VmaId(1)).expect("dup");
        r.vma_set_range(VmaId(5), upper).expect("upper");
        r.anon_vma_clone(VmaId(5), VmaId(1)).expect("clone");
        r.vma_set_range(VmaId(1), lower).expect("lower");
        assert_eq!(chain(&r, 5), chain(&r, 1), "era {era}");
        assert_eq!(own_name(&r, 5), own_name(&r, 1), "era {era}");
        // A page of A's upper half, at index PGOFF + 10.
        let mut page = phys::PageDesc::default();
        r.page_add_new_anon_rmap(&mut page, VmaId(5), START + 10 * 4096).expect("map");
        assert_eq!(page.index, PGOFF + 10);
        let hits = r.rmap_walk(&page).expect("walk");
        let found: Vec<(u64, u64)> = hits.iter().map(|h| (h.vma.0, h.address)).collect();
        // Not vma 1: its range now ends at PGOFF + 7. A's anon_vma is
        // linked to B's copy too, which covers the index (whether B's PTE
        // still maps the page is for mm to check).
        let want = vec![(2, START + 10 * 4096), (5, START + 10 * 4096)];
        let mut found_sorted = found.clone();
        found_sorted.sort();
        assert_eq!(found_sorted, want, "era {era}");
    }
}
