//! anon_vma lifetime: freed with its last link, the SLAB_TYPESAFE_BY_RCU
//! behaviour of the cache (use after free vs reused as another), the root
//! outliving its children, and the seed's scenario end to end.

mod common;

use common::*;
use phys::PageDesc;
use ptemu_rmap::{AnonVmaHandle, Era, OopsKind, Rmap, RmapError, VmaId};

/// The seed's scenario up to "B exit": A maps a page, forks B, the page is
/// swapped out (kept in the swap cache), B maps it first, then A.
fn seed_scenario(era: Era) -> (Rmap, PageDesc) {
    let mut r = with_a(era);
    let mut page = PageDesc::default();
    r.set_step("A write V");
    r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
    r.set_step("A fork B");
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    page.mapcount += 1;
    r.set_step("reclaim A V");
    assert_eq!(walk_vmas(&r, &page).len(), 2);
    r.page_remove_rmap(&mut page).expect("unmap");
    r.page_remove_rmap(&mut page).expect("unmap");
    r.set_step("B read V");
    r.page_add_anon_rmap(&mut page, VmaId(2), ADDR, false).expect("B maps");
    r.set_step("A read V");
    r.page_add_anon_rmap(&mut page, VmaId(1), ADDR, false).expect("A maps");
    exit(&mut r, 2, Some(&mut page), "B exit");
    (r, page)
}

#[test]
fn seed_bug_use_after_free_then_reused_as_another() {
    let (mut r, page) = seed_scenario(Era::V2_6_34Rc3);
    assert_eq!(r.live_anon_vma_count(), 1);
    let err = r.rmap_walk(&page).expect_err("av2 was freed at B exit");
    let oops = err.oops().expect("an oops").clone();
    assert_eq!(oops.kind, OopsKind::UseAfterFree);
    assert_eq!(oops.anon_vma.to_string(), "av2");
    assert_eq!(oops.freed_at_step, "B exit");
    assert_eq!(oops.freed_by, "unlink_anon_vmas");
    assert_eq!(oops.op, "rmap_walk");
    assert_eq!(oops.mapping, page.mapping);
    assert_eq!(
        oops.to_string(),
        format!(
            "oops in rmap_walk: mapping {:#x} names av2, freed by unlink_anon_vmas at step 'B exit' (use after free)",
            page.mapping
        )
    );

    // A new anon_vma before any grace period does not take the slot.
    r.vma_register(VmaId(5), range()).expect("register E");
    r.anon_vma_prepare(VmaId(5), &[]).expect("prepare E");
    let stale = r.rmap_walk(&page).expect_err("still stale");
    assert_eq!(stale.oops().map(|o| o.kind.clone()), Some(OopsKind::UseAfterFree));

    // After a grace period the slot is reused by the next allocation.
    r.rcu_grace_period();
    r.vma_register(VmaId(6), range()).expect("register F");
    let f = r.anon_vma_prepare(VmaId(6), &[]).expect("prepare F");
    let old = AnonVmaHandle::from_mapping(page.mapping).expect("anon");
    assert_eq!(f.slot(), old.slot());
    assert_ne!(f.generation(), old.generation());
    let err = r.rmap_walk(&page).expect_err("slot now holds av4");
    let oops = err.oops().expect("an oops");
    assert_eq!(oops.anon_vma.to_string(), "av2");
    match &oops.kind {
        OopsKind::ReusedAsAnother { now } => assert_eq!(now.to_string(), "av4"),
        other => panic!("expected reuse, got {other:?}"),
    }
    assert!(oops.to_string().ends_with("(slot reused as av4)"));
    // The stale handle still has its own display id.
    assert_eq!(r.display_id(old).expect("issued").to_string(), "av2");
}

#[test]
fn fixed_eras_keep_the_page_reachable() {
    for era in [Era::V2_6_33, Era::Seed, Era::V2_6_34, Era::V2_6_36, Era::V6_18] {
        let (r, page) = seed_scenario(era);
        assert_eq!(walk_vmas(&r, &page), vec![1], "era {era}");
        assert_eq!(mapping_name(&r, &page), "av1", "era {era}");
    }
}

#[test]
fn anon_vma_is_freed_with_its_last_link() {
    for era in Era::ALL {
        let mut r = with_a(era);
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        let b = r.vma(VmaId(2)).expect("b").anon_vma.expect("b has one");
        let a = r.vma(VmaId(1)).expect("a").anon_vma.expect("a has one");
        let shared = era == Era::V2_6_33;
        assert_eq!(r.live_anon_vma_count(), if shared { 1 } else { 2 });
        exit(&mut r, 2, None, "B exit");
        assert_eq!(r.is_live(b), shared, "era {era}");
        assert!(r.is_live(a));
        exit(&mut r, 1, None, "A exit");
        assert!(!r.is_live(a));
        assert_eq!(r.live_anon_vma_count(), 0);
        assert_eq!(r.avc_count(), 0);
        let err = r.anon_vma(a).expect_err("freed");
        assert_eq!(err.oops().map(|o| o.freed_at_step.as_str()), Some("A exit"), "era {era}");
    }
}

#[test]
fn parent_exit_first_keeps_anon_vma_linked_by_the_child() {
    for era in Era::ALL {
        let mut r = with_a(era);
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        let a = r.vma(VmaId(1)).expect("a").anon_vma.expect("a has one");
        exit(&mut r, 1, None, "A exit");
        // B's chain still links av1: B may map pages that name it.
        assert!(r.is_live(a), "era {era}");
        exit(&mut r, 2, None, "B exit");
        assert_eq!(r.live_anon_vma_count(), 0, "era {era}");
    }
}

/// A forks B; B's anon_vma is pinned (as migration or KSM pin one); both
/// processes exit. Returns whether (av1, av2) are live.
fn pinned_child(era: Era) -> (Rmap, AnonVmaHandle, AnonVmaHandle) {
    let mut r = with_a(era);
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    let a = r.vma(VmaId(1)).expect("a").anon_vma.expect("a");
    let b = r.vma(VmaId(2)).expect("b").anon_vma.expect("b");
    r.get_anon_vma(b).expect("pin");
    exit(&mut r, 1, None, "A exit");
    exit(&mut r, 2, None, "B exit");
    (r, a, b)
}

#[test]
fn root_outlives_its_children_from_2_6_36() {
    for era in [Era::V2_6_36, Era::V6_18] {
        let (mut r, a, b) = pinned_child(era);
        assert!(r.is_live(b), "era {era}");
        // No link is left on the root, but av2's reference holds it.
        let root = r.anon_vma(a).expect("root alive");
        assert_eq!((root.link_count(), root.refcount), (0, 1), "era {era}");
        assert_eq!(r.anon_vma(b).expect("live").root, a);
        r.set_step("unpin");
        r.put_anon_vma(b).expect("unpin");
        assert_eq!(r.live_anon_vma_count(), 0, "era {era}");
        let err = r.anon_vma(a).expect_err("root freed with its last child");
        assert_eq!(
            err.oops().map(|o| (o.freed_at_step.as_str(), o.freed_by)),
            Some(("unpin", "put_anon_vma"))
        );
    }
}

#[test]
fn before_2_6_36_the_root_can_die_under_a_pinned_child() {
    for era in [Era::V2_6_34Rc3, Era::Seed, Era::V2_6_34] {
        let (mut r, a, b) = pinned_child(era);
        assert!(r.is_live(b), "era {era}");
        assert!(!r.is_live(a), "era {era}");
        let root = r.anon_vma(b).expect("live").root;
        let err = r.anon_vma(root).expect_err("the recorded root is gone");
        assert_eq!(err.oops().map(|o| o.anon_vma.to_string()), Some("av1".into()));
        r.put_anon_vma(b).expect("unpin");
        assert_eq!(r.live_anon_vma_count(), 0);
    }
}

#[test]
fn put_without_get_is_an_error() {
    let mut r = with_a(Era::V6_18);
    let a = r.vma(VmaId(1)).expect("a").anon_vma.expect("a");
    let err = r.put_anon_vma(a).expect_err("no pin");
    assert!(matches!(err, RmapError::NoReference(id) if id.to_string() == "av1"));
    assert!(r.is_live(a));
}

#[test]
fn stale_mapping_oopses_in_every_page_lookup() {
    let (r, page) = seed_scenario(Era::V2_6_34Rc3);
    let err = r.page_anon_vma(&page).expect_err("stale");
    assert_eq!(err.oops().map(|o| o.op), Some("page_anon_vma"));
}

#[test]
fn live_anon_vmas_are_listed_in_allocation_order() {
    let mut r = with_a(Era::V2_6_34);
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    r.anon_vma_fork(VmaId(3), VmaId(2)).expect("fork");
    exit(&mut r, 3, None, "C exit");
    r.rcu_grace_period();
    r.anon_vma_fork(VmaId(4), VmaId(2)).expect("fork");
    let listed: Vec<(String, usize)> =
        r.live_anon_vmas().iter().map(|(_, av)| (av.id.to_string(), av.link_count())).collect();
    // av4 took av3's slot, yet is listed after av2 by its id.
    assert_eq!(listed, vec![("av1".into(), 3), ("av2".into(), 2), ("av4".into(), 1)]);
    let links: Vec<u64> = r.live_anon_vmas()[0].1.links().map(|k| k.vma.0).collect();
    assert_eq!(links, vec![1, 2, 4]);
}

#[test]
fn registering_twice_and_unknown_vmas_are_errors() {
    let mut r = with_a(Era::V6_18);
    assert_eq!(r.vma_register(VmaId(1), range()), Err(RmapError::VmaExists(VmaId(1))));
    assert_eq!(r.anon_vma_prepare(VmaId(8), &[]), Err(RmapError::NoSuchVma(VmaId(8))));
    assert_eq!(r.anon_vma_fork(VmaId(3), VmaId(8)), Err(RmapError::NoSuchVma(VmaId(8))));
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    assert_eq!(r.anon_vma_fork(VmaId(2), VmaId(1)), Err(RmapError::ChainNotEmpty(VmaId(2))));
    assert_eq!(r.unlink_anon_vmas(VmaId(9)), Err(RmapError::NoSuchVma(VmaId(9))));
    assert!(ptemu_rmap::VmaRange::new(START + 1, PGOFF, 1).is_err());
    assert!(ptemu_rmap::VmaRange::new(START, PGOFF, 0).is_err());
    assert!(ptemu_rmap::VmaRange::new(u64::MAX - 4095, 0, 2).is_err());
    assert!(ptemu_rmap::VmaRange::new(0, u64::MAX, 2).is_err());
}
