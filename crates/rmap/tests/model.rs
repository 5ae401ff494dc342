//! Model-based property test: random fork / exit / write / swap-out /
//! swap-in / COW-reuse sequences over processes with one anonymous VMA
//! each, driving rmap as mm would. Invariant: every page that some live
//! process maps is reachable by an rmap walk from its mapping, through
//! every process that maps it. The fixed eras must never break it; the
//! 2.6.34-rc3 era must break it on the seed's sequence (checked in
//! lifetime.rs), and proptest must be able to find a break there too.

mod common;

use std::collections::BTreeSet;

use common::*;
use phys::{PageDesc, PageFlags};
use proptest::prelude::*;
use ptemu_rmap::{Era, Rmap, VmaId};

#[derive(Clone, Debug)]
enum Op {
    Fork(usize),
    Exit(usize),
    Write(usize),
    SwapOutAll,
    SwapIn(usize, usize),
    Reuse(usize, usize),
    Grace,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..8usize).prop_map(Op::Fork),
        2 => (0..8usize).prop_map(Op::Exit),
        2 => (0..8usize).prop_map(Op::Write),
        2 => Just(Op::SwapOutAll),
        4 => (0..8usize, 0..16usize).prop_map(|(p, g)| Op::SwapIn(p, g)),
        1 => (0..8usize, 0..16usize).prop_map(|(p, g)| Op::Reuse(p, g)),
        1 => Just(Op::Grace),
    ]
}

/// A page and who references it: `present` map it now, `swapped` hold a
/// swap entry for it (the page stays in the swap cache in this model).
struct Page {
    desc: PageDesc,
    present: BTreeSet<u64>,
    swapped: BTreeSet<u64>,
}

struct World {
    r: Rmap,
    alive: Vec<u64>,
    next_vma: u64,
    pages: Vec<Page>,
}

impl World {
    fn new(era: Era) -> Self {
        Self { r: with_a(era), alive: vec![1], next_vma: 2, pages: Vec::new() }
    }

    fn pick(&self, i: usize) -> Option<u64> {
        (!self.alive.is_empty()).then(|| self.alive[i % self.alive.len()])
    }

    /// Apply one op as mm would.
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Fork(i) => {
                let Some(p) = self.pick(i) else { return };
                if self.alive.len() >= 8 {
                    return;
                }
                let c = self.next_vma;
                self.next_vma += 1;
                self.r.anon_vma_fork(VmaId(c), VmaId(p)).expect("fork");
                for pg in &mut self.pages {
                    if pg.present.contains(&p) {
                        pg.present.insert(c);
                        pg.desc.mapcount += 1;
                        pg.desc.flags.remove(PageFlags::ANON_EXCLUSIVE);
                    }
                    if pg.swapped.contains(&p) {
                        pg.swapped.insert(c);
                    }
                }
                self.alive.push(c);
            }
            Op::Exit(i) => {
                let Some(p) = self.pick(i) else { return };
                self.r.set_step(format!("exit {p}"));
                for pg in &mut self.pages {
                    if pg.present.remove(&p) {
                        self.r.page_remove_rmap(&mut pg.desc).expect("mapped");
                    }
                    pg.swapped.remove(&p);
                }
                self.r.vma_remove(VmaId(p)).expect("exit");
                self.alive.retain(|&v| v != p);
            }
            Op::Write(i) => {
                let Some(p) = self.pick(i) else { return };
                if self.pages.len() >= 16 {
                    return;
                }
                let mut desc = PageDesc::default();
                self.r.page_add_new_anon_rmap(&mut desc, VmaId(p), ADDR).expect("new page");
                self.pages.push(Page { desc, present: [p].into(), swapped: BTreeSet::new() });
            }
            Op::SwapOutAll => {
                for pg in &mut self.pages {
                    for v in std::mem::take(&mut pg.present) {
                        self.r.page_remove_rmap(&mut pg.desc).expect("mapped");
                        pg.swapped.insert(v);
                    }
                    pg.desc.flags.remove(PageFlags::ANON_EXCLUSIVE);
                }
            }
            Op::SwapIn(i, g) => {
                let Some(p) = self.pick(i) else { return };
                let n = self.pages.len().max(1);
                let Some(pg) = self.pages.get_mut(g % n) else { return };
                if !pg.swapped.remove(&p) {
                    return;
                }
                let exclusive = pg.swapped.is_empty() && pg.present.is_empty();
                self.r
                    .page_add_anon_rmap(&mut pg.desc, VmaId(p), ADDR, exclusive)
                    .expect("swap in");
                pg.present.insert(p);
            }
            Op::Reuse(i, g) => {
                let Some(p) = self.pick(i) else { return };
                let n = self.pages.len().max(1);
                let Some(pg) = self.pages.get_mut(g % n) else { return };
                // do_wp_page reuse: the writer is the page's only user.
                if pg.present.len() == 1 && pg.present.contains(&p) && pg.swapped.is_empty() {
                    self.r.page_move_anon_rmap(&mut pg.desc, VmaId(p)).expect("move");
                }
            }
            Op::Grace => self.r.rcu_grace_period(),
        }
    }

    /// Every mapped page reachable through every VMA that maps it.
    fn check(&self) -> Result<(), String> {
        for (n, pg) in self.pages.iter().enumerate() {
            if pg.present.is_empty() {
                continue;
            }
            let hits = self.r.rmap_walk(&pg.desc).map_err(|e| format!("page {n}: {e}"))?;
            let found: BTreeSet<u64> = hits.iter().map(|h| h.vma.0).collect();
            if !pg.present.is_subset(&found) {
                return Err(format!("page {n}: mapped by {:?}, walk finds {found:?}", pg.present));
            }
        }
        Ok(())
    }
}

fn run(era: Era, ops: &[Op]) -> Result<(), String> {
    let mut w = World::new(era);
    for (k, op) in ops.iter().enumerate() {
        w.apply(op);
        w.check().map_err(|e| format!("after op {k} {op:?}: {e}"))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fixed_eras_keep_every_mapped_page_reachable(ops in proptest::collection::vec(op(), 1..60)) {
        for era in [Era::V2_6_33, Era::V2_6_34, Era::V2_6_36, Era::V6_18] {
            if let Err(e) = run(era, &ops) {
                return Err(TestCaseError::fail(format!("era {era}: {e}")));
            }
        }
    }
}

#[test]
fn the_model_catches_the_seed_bug_in_2_6_34_rc3() {
    // A writes, forks B, everything is swapped out, B swaps in first, then
    // A, then B exits: A's page names B's freed anon_vma.
    let ops = [
        Op::Write(0),
        Op::Fork(0),
        Op::SwapOutAll,
        Op::SwapIn(1, 0),
        Op::SwapIn(0, 0),
        Op::Exit(1),
    ];
    // Flagged as soon as A maps the page (architecture.md, step 5): A's VMA
    // is not on the anon_vma the page now names. lifetime.rs shows the
    // oops that follows at B's exit.
    let err = run(Era::V2_6_34Rc3, &ops).expect_err("the bug");
    assert_eq!(err, "after op 4 SwapIn(0, 0): page 0: mapped by {1, 2}, walk finds {2}");
    for era in [Era::V2_6_33, Era::Seed, Era::V2_6_34, Era::V2_6_36, Era::V6_18] {
        assert_eq!(run(era, &ops), Ok(()), "era {era}");
    }
}

#[test]
fn the_model_catches_the_grandchild_case_in_the_seed_era() {
    // A writes, forks B, B forks C, swap-out, C swaps in first, then A;
    // the page names B's anon_vma.
    let ops = [
        Op::Write(0),
        Op::Fork(0),
        Op::Fork(1),
        Op::SwapOutAll,
        Op::SwapIn(2, 0),
        Op::SwapIn(0, 0),
        Op::Exit(2),
        Op::Exit(1),
    ];
    // Unreachable from A as soon as A maps it: the page names av2, which
    // only B and C link to.
    let err = run(Era::Seed, &ops).expect_err("grandchild case");
    assert_eq!(err, "after op 5 SwapIn(0, 0): page 0: mapped by {1, 3}, walk finds {2, 3}");
    assert_eq!(run(Era::V2_6_34, &ops), Ok(()));
}

#[test]
fn random_sequences_find_the_bug_in_the_buggy_eras() {
    // The property above is only worth something if it can fail: the same
    // generator, with a fixed seed, must find a counterexample in the eras
    // that had the bug.
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    for era in [Era::V2_6_34Rc3, Era::Seed] {
        let config =
            ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
            run(era, &ops).map_err(TestCaseError::fail)
        });
        assert!(result.is_err(), "era {era}: no counterexample found");
    }
}
