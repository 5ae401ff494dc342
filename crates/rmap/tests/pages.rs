//! Which anon_vma a page's mapping names, per era: brand-new pages, pages
//! swapped back in (still anon from before, or fresh from the device), the
//! seed's patch with the reversed clone order, and page_move_anon_rmap.

mod common;

use common::*;
use phys::{PageDesc, PageFlags};
use ptemu_rmap::{Era, RmapError, VmaId};

#[test]
fn brand_new_page_goes_to_the_faulting_vmas_anon_vma() {
    // B (a child) breaks COW with a new page: which anon_vma does it get?
    let expect = [
        (Era::V2_6_33, "av1"), // shared with A anyway
        (Era::V2_6_34Rc3, "av2"),
        (Era::Seed, "av1"), // the seed's patch alone sends even new pages to the oldest
        (Era::V2_6_34, "av2"),
        (Era::V2_6_36, "av2"),
        (Era::V6_18, "av2"),
    ];
    for (era, want) in expect {
        let mut r = with_a(era);
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        let mut page = PageDesc::default();
        r.page_add_new_anon_rmap(&mut page, VmaId(2), ADDR).expect("map");
        assert_eq!(mapping_name(&r, &page), want, "era {era}");
        assert_eq!(page.mapcount, 1);
        assert_eq!(page.index, PGOFF + 3);
        assert!(page.flags.contains(PageFlags::SWAPBACKED));
        assert_eq!(page.flags.contains(PageFlags::ANON_EXCLUSIVE), era == Era::V6_18, "era {era}");
    }
}

#[test]
fn the_fault_paths_target_maps_exactly_like_page_add_new_anon_rmap() {
    // The fault paths take the VMA's record once (new_anon_target) and map
    // with it: same mapping, index, mapcount and flags as the full call,
    // in every era (the seed's goes to the chain's last link, not the
    // VMA's own anon_vma), and the same error outside the VMA.
    for era in [Era::V2_6_33, Era::V2_6_34Rc3, Era::Seed, Era::V2_6_34, Era::V2_6_36, Era::V6_18] {
        let mut r = with_a(era);
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        let mut full = PageDesc::default();
        r.page_add_new_anon_rmap(&mut full, VmaId(2), ADDR).expect("map");
        let t = r.new_anon_target(VmaId(2)).expect("B has a live anon_vma");
        let mut fast = PageDesc::default();
        r.page_add_new_anon_rmap_to(&mut fast, &t, ADDR).expect("map");
        assert_eq!(fast, full, "era {era}");
        assert_eq!(mapping_name(&r, &fast), mapping_name(&r, &full), "era {era}");
        let outside = r.page_add_new_anon_rmap_to(&mut fast, &t, 0x10_0000_0000);
        assert!(matches!(outside, Err(RmapError::AddressOutsideVma { .. })), "era {era}");
    }
    // A VMA without an anon_vma (or unknown) has no target.
    let r = with_a(Era::V6_18);
    assert!(r.new_anon_target(VmaId(2)).is_none());
    assert!(r.new_anon_target(VmaId(99)).is_none());
}

/// A maps a page, forks B, the page is unmapped everywhere (swapped out,
/// kept in the swap cache with its mapping), and B faults it in first.
fn swapin_of_cached_page(era: Era, exclusive: bool) -> (String, PageDesc) {
    let mut r = with_a(era);
    let mut page = PageDesc::default();
    r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    page.mapcount += 1; // copy_page_range: page_dup_rmap
    r.page_remove_rmap(&mut page).expect("unmap A");
    assert!(r.page_remove_rmap(&mut page).expect("unmap B"));
    page.flags.remove(PageFlags::ANON_EXCLUSIVE); // try_to_unmap moved it to the swap PTE
    r.page_add_anon_rmap(&mut page, VmaId(2), ADDR, exclusive).expect("B maps");
    (mapping_name(&r, &page), page)
}

#[test]
fn swapped_in_page_still_anon_from_before() {
    let expect = [
        (Era::V2_6_33, "av1"),
        (Era::V2_6_34Rc3, "av2"), // the seed bug: rewritten to the child's anon_vma
        (Era::Seed, "av1"),       // last link of B's chain
        (Era::V2_6_34, "av1"),    // last link
        (Era::V2_6_36, "av1"),    // already anon: never rewritten
        (Era::V6_18, "av1"),
    ];
    for (era, want) in expect {
        let (name, page) = swapin_of_cached_page(era, false);
        assert_eq!(name, want, "era {era}");
        assert_eq!(page.mapcount, 1);
        assert_eq!(page.index, PGOFF + 3);
    }
}

#[test]
fn exclusive_swapin_of_an_anon_page_keeps_its_mapping_from_2_6_36() {
    // Even a write fault that owns the page does not move it: only
    // page_move_anon_rmap (do_wp_page) does.
    for era in [Era::V2_6_36, Era::V6_18] {
        let (name, page) = swapin_of_cached_page(era, true);
        assert_eq!(name, "av1", "era {era}");
        assert_eq!(page.flags.contains(PageFlags::ANON_EXCLUSIVE), era == Era::V6_18);
    }
    // 2.6.34's page_add_anon_rmap has no exclusive argument.
    assert_eq!(swapin_of_cached_page(Era::V2_6_34, true).0, "av1");
    assert_eq!(swapin_of_cached_page(Era::V2_6_34Rc3, true).0, "av2");
}

/// As above but the page was dropped from the swap cache and is read back
/// fresh (mapping 0), B mapping it first.
fn swapin_of_fresh_page(era: Era, exclusive: bool) -> String {
    let mut r = with_a(era);
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
    let mut page = PageDesc::default();
    r.page_add_anon_rmap(&mut page, VmaId(2), ADDR, exclusive).expect("B maps");
    assert_eq!(page.index, PGOFF + 3);
    mapping_name(&r, &page)
}

#[test]
fn swapped_in_fresh_page() {
    let expect = [
        (Era::V2_6_33, "av1", "av1"),
        (Era::V2_6_34Rc3, "av2", "av2"),
        (Era::Seed, "av1", "av1"),
        (Era::V2_6_34, "av1", "av1"),
        (Era::V2_6_36, "av1", "av2"), // shared: root; exclusive: own
        (Era::V6_18, "av1", "av2"),
    ];
    for (era, shared, exclusive) in expect {
        assert_eq!(swapin_of_fresh_page(era, false), shared, "era {era}");
        assert_eq!(swapin_of_fresh_page(era, true), exclusive, "era {era}");
    }
}

#[test]
fn second_mapping_never_changes_the_mapping() {
    for era in Era::ALL {
        let mut r = with_a(era);
        let mut page = PageDesc::default();
        r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        let before = page.mapping;
        r.page_add_anon_rmap(&mut page, VmaId(2), ADDR, false).expect("B maps");
        assert_eq!(page.mapping, before, "era {era}");
        assert_eq!(page.mapcount, 2);
    }
}

/// A forks B forks C; A's page is swapped out and the given process maps
/// it back first. Returns (mapping, root name).
fn seed_patch_depth(era: Era, first: u64) -> String {
    let mut r = with_a(era);
    let mut page = PageDesc::default();
    r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
    r.page_remove_rmap(&mut page).expect("swap out");
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("A forks B");
    r.anon_vma_fork(VmaId(3), VmaId(2)).expect("B forks C");
    r.page_add_anon_rmap(&mut page, VmaId(first), ADDR, false).expect("first map");
    mapping_name(&r, &page)
}

#[test]
fn seed_patch_with_reversed_clone_order_fails_for_a_grandchild() {
    // The root is av1. Child B mapping first: the seed's patch finds it.
    assert_eq!(seed_patch_depth(Era::Seed, 2), "av1");
    // Grandchild C: its chain is av3,av1,av2, so the "oldest" is av2.
    assert_eq!(seed_patch_depth(Era::Seed, 3), "av2");
    // With the clone order fixed the last link is the root again.
    assert_eq!(seed_patch_depth(Era::V2_6_34, 3), "av1");
    assert_eq!(seed_patch_depth(Era::V2_6_36, 3), "av1");
}

#[test]
fn seed_patch_grandchild_case_still_oopses() {
    let mut r = with_a(Era::Seed);
    let mut page = PageDesc::default();
    r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
    r.page_remove_rmap(&mut page).expect("swap out");
    r.anon_vma_fork(VmaId(2), VmaId(1)).expect("A forks B");
    r.anon_vma_fork(VmaId(3), VmaId(2)).expect("B forks C");
    r.page_add_anon_rmap(&mut page, VmaId(3), ADDR, false).expect("C maps first");
    r.page_add_anon_rmap(&mut page, VmaId(1), ADDR, false).expect("A maps");
    exit(&mut r, 3, Some(&mut page), "C exit");
    exit(&mut r, 2, None, "B exit");
    let err = r.rmap_walk(&page).expect_err("av2 is gone");
    let oops = err.oops().expect("an oops");
    assert_eq!(oops.anon_vma.to_string(), "av2");
    assert_eq!(oops.freed_at_step, "B exit");
}

#[test]
fn page_move_anon_rmap_moves_to_the_reusers_own_anon_vma() {
    for era in Era::ALL {
        let mut r = with_a(era);
        let mut page = PageDesc::default();
        r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        page.mapcount += 1;
        exit(&mut r, 1, Some(&mut page), "A exit");
        // B write-faults, is the last user, and reuses the page.
        r.page_move_anon_rmap(&mut page, VmaId(2)).expect("move");
        let want = if era == Era::V2_6_33 { "av1" } else { "av2" };
        assert_eq!(mapping_name(&r, &page), want, "era {era}");
        assert_eq!(page.index, PGOFF + 3);
        assert_eq!(walk_vmas(&r, &page), vec![2], "era {era}");
    }
}

#[test]
fn page_move_anon_rmap_rejects_non_anon_pages() {
    let r = with_a(Era::V6_18);
    let mut page = PageDesc::default();
    assert_eq!(r.page_move_anon_rmap(&mut page, VmaId(1)), Err(RmapError::NotAnon(0)));
}

#[test]
fn page_operations_reject_bad_input() {
    let mut r = with_a(Era::V2_6_36);
    let mut page = PageDesc::default();
    assert_eq!(
        r.page_add_new_anon_rmap(&mut page, VmaId(1), START - 4096),
        Err(RmapError::AddressOutsideVma { vma: VmaId(1), address: START - 4096 })
    );
    assert_eq!(
        r.page_add_new_anon_rmap(&mut page, VmaId(9), ADDR),
        Err(RmapError::NoSuchVma(VmaId(9)))
    );
    r.vma_register(VmaId(2), range()).expect("register");
    assert_eq!(
        r.page_add_anon_rmap(&mut page, VmaId(2), ADDR, false),
        Err(RmapError::NoAnonVma(VmaId(2)))
    );
    assert_eq!(r.page_remove_rmap(&mut page), Err(RmapError::NotMapped));
    assert_eq!(r.rmap_walk(&page), Err(RmapError::NotAnon(0)));
    page.mapping = (77 << 34) | 1;
    assert_eq!(r.rmap_walk(&page), Err(RmapError::BadHandle((77 << 34) | 1)));
}

#[test]
fn walk_lists_every_linked_vma_covering_the_index() {
    for era in Era::ALL {
        let mut r = with_a(era);
        let mut page = PageDesc::default();
        r.page_add_new_anon_rmap(&mut page, VmaId(1), ADDR).expect("A maps");
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        r.anon_vma_fork(VmaId(3), VmaId(2)).expect("fork");
        let hits = r.rmap_walk(&page).expect("walk");
        assert_eq!(hits.len(), 3, "era {era}");
        assert!(hits.iter().all(|h| h.address == ADDR));
        let mut vmas: Vec<u64> = hits.iter().map(|h| h.vma.0).collect();
        vmas.sort();
        assert_eq!(vmas, vec![1, 2, 3]);
    }
}
