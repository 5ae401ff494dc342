//! Shared helpers for the rmap behaviour tests: processes with one private
//! anonymous VMA each, driven through rmap the way mm drives it.
#![allow(dead_code)]

use phys::PageDesc;
use ptemu_rmap::{AnonVmaHandle, Era, Rmap, RmapHit, VmaId, VmaRange};

/// Start of every test VMA.
pub const START: u64 = 0x7f00_0000_0000;
/// vm_pgoff of every test VMA (mmap's anonymous pgoff is the address >> 12).
pub const PGOFF: u64 = START >> 12;
/// Pages per test VMA.
pub const PAGES: u64 = 16;
/// The address the tests' page lives at (page 3 of the VMA).
pub const ADDR: u64 = START + 3 * 4096;

/// The common VMA range.
pub fn range() -> VmaRange {
    VmaRange::new(START, PGOFF, PAGES).expect("constant range is valid")
}

/// A fresh rmap with process A's VMA (vma 1) registered and prepared.
pub fn with_a(era: Era) -> Rmap {
    let mut r = Rmap::new(era);
    r.vma_register(VmaId(1), range()).expect("register A");
    r.anon_vma_prepare(VmaId(1), &[]).expect("prepare A");
    r
}

/// Display names of a VMA's chain, newest first ("av2,av1").
pub fn chain(r: &Rmap, vma: u64) -> String {
    r.vma_chain(VmaId(vma))
        .expect("vma known")
        .iter()
        .map(|(_, h)| r.display_id(*h).expect("issued").to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Display name of the anon_vma a page's mapping names (live or not).
pub fn mapping_name(r: &Rmap, page: &PageDesc) -> String {
    let h = AnonVmaHandle::from_mapping(page.mapping).expect("anon page");
    r.display_id(h).expect("issued").to_string()
}

/// Display name of a VMA's own anon_vma.
pub fn own_name(r: &Rmap, vma: u64) -> String {
    let h = r.vma(VmaId(vma)).expect("vma").anon_vma.expect("has anon_vma");
    r.display_id(h).expect("issued").to_string()
}

/// A process exits: its PTE for `page` (if mapped) goes, then its VMA.
pub fn exit(r: &mut Rmap, vma: u64, page: Option<&mut PageDesc>, label: &str) {
    r.set_step(label);
    if let Some(p) = page {
        r.page_remove_rmap(p).expect("mapped");
    }
    r.vma_remove(VmaId(vma)).expect("remove");
}

/// The VMAs an rmap walk from `page` reaches.
pub fn walk_vmas(r: &Rmap, page: &PageDesc) -> Vec<u64> {
    r.rmap_walk(page).expect("walk").iter().map(|h: &RmapHit| h.vma.0).collect()
}
