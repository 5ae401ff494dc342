//! The search end to end, on small budgets: what it finds under the seed's
//! eras, nothing under the fixed ones, the same result whatever the thread
//! count, shards that merge back into the whole, and reproducers that
//! `ptemu run`'s runner passes under the era they were found in and fails
//! under the eras that fixed the bug.

use ptemu_explore::{Budget, Config, Report, Target, explore, merge};
use scenario::ast::Op;

fn cfg(era: &str, seed: u64, steps: u64, jobs: usize, shard: (u64, u64)) -> Config<'static> {
    Config {
        target: Target::parse(era).unwrap(),
        seed,
        budget: Budget::Steps(steps),
        jobs,
        shard,
        follow: ptemu_explore::FOLLOW,
        sequence_steps: ptemu_explore::SEQUENCE_STEPS,
        oracle: None,
        minimize: true,
        command: format!("test {era}"),
    }
}

fn run(c: &Config<'_>) -> Report {
    explore(c, &|_| {})
}

/// The scenario without its header comment (which holds timings).
fn body(s: &str) -> String {
    s.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
}

const SEED_BUG: &str = "rmap-unreachable > mapping-freed > oops anon-vma-use-after-free";

#[test]
fn rc3_finds_the_seed_bug_and_its_reproducer_is_a_fixture() {
    let r = run(&cfg("2.6.34-rc3", 1, 4000, 2, (0, 1)));
    let f = r.findings.iter().find(|f| f.class == SEED_BUG).expect("the seed's chain");
    // No longer than the seed's own scenario (9 operations).
    assert!(f.ops <= 9, "{} ops:\n{}", f.ops, f.scenario);
    assert!(f.passes_under.iter().any(|e| e == "2.6.34-rc3"));
    for fixed in ["2.6.33", "2.6.34", "2.6.36", "6.18"] {
        assert!(f.fails_under.iter().any(|e| e == fixed), "{fixed}: {:?}", f.fails_under);
    }
    // The runner agrees, reading the text.
    let sc = scenario::parse_str("f.scn", &f.scenario).unwrap();
    assert!(scenario::run_era(&sc, "2.6.34-rc3", None).0.passed());
    assert!(!scenario::run_era(&sc, "2.6.34", None).0.passed());
    assert!(f.scenario.contains("expect oops anon-vma-use-after-free"));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let one = run(&cfg("2.6.34-rc3", 7, 3000, 1, (0, 1)));
    let two = run(&cfg("2.6.34-rc3", 7, 3000, 3, (0, 1)));
    assert_eq!(
        (one.sequences, one.steps, one.follow_steps),
        (two.sequences, two.steps, two.follow_steps)
    );
    let key = |r: &Report| -> Vec<(String, u64, u64, u64, String)> {
        r.findings
            .iter()
            .map(|f| (f.class.clone(), f.count, f.sequence, f.steps_to_first, body(&f.scenario)))
            .collect()
    };
    assert_eq!(key(&one), key(&two));
    assert!(!one.findings.is_empty());
}

#[test]
fn shards_merge_into_the_whole() {
    let whole = run(&cfg("2.6.34-rc3", 3, 3000, 2, (0, 1)));
    let a = run(&cfg("2.6.34-rc3", 3, 3000, 1, (0, 2)));
    let b = run(&cfg("2.6.34-rc3", 3, 3000, 1, (1, 2)));
    let m = merge(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(m.sequences, whole.sequences);
    assert_eq!(m.steps, whole.steps);
    let classes =
        |r: &Report| r.findings.iter().map(|f| (f.class.clone(), f.count)).collect::<Vec<_>>();
    assert_eq!(classes(&m), classes(&whole));
    // A report round-trips through JSON, and merging it with itself only
    // adds the counts.
    let text = serde_json::to_string(&a).unwrap();
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, a);
    let twice = merge(&[a.clone(), a.clone()]).unwrap();
    assert_eq!(twice.findings.len(), a.findings.len());
    assert_eq!(twice.steps, 2 * a.steps);
    let other = run(&cfg("2.6.34", 3, 100, 1, (0, 1)));
    assert!(merge(&[a, other]).is_err());
}

#[test]
fn the_fixed_eras_hold_on_a_small_budget() {
    for era in ["2.6.33", "2.6.34", "2.6.36", "6.18"] {
        let r = run(&cfg(era, 1, 3000, 2, (0, 1)));
        assert!(
            r.findings.is_empty(),
            "{era}: {:?}",
            r.findings.iter().map(|f| &f.scenario).collect::<Vec<_>>()
        );
        assert_eq!(r.steps, 3000, "{era}: every sequence ran its share (refused: {})", r.refused);
    }
}

#[test]
fn a_custom_set_is_searched_too() {
    // The seed's patch with the clone order fixed: is that alone enough for
    // the seed's chain? The search under it must not find the seed's bug.
    let r = run(&cfg("seed+clone_order=preserved", 1, 3000, 2, (0, 1)));
    assert!(r.findings.iter().all(|f| f.class != SEED_BUG), "{:?}", r.findings);
    assert_eq!(r.target, "seed+clone_order=preserved");
}

#[test]
fn generated_operations_round_trip_through_the_parser() {
    let target = Target::parse("2.6.34-rc3").unwrap();
    let mut ex = ptemu_explore::exec::Exec::new(&target).unwrap();
    let mut g = ptemu_explore::generate::Gen::new(11, Default::default());
    let mut ops: Vec<Op> = Vec::new();
    for _ in 0..300 {
        let op = g.next(&ex);
        if ex.step(&op).is_err() {
            break;
        }
        ops.push(op);
    }
    assert!(ops.len() > 50);
    let text: String = ops.iter().map(|o| ptemu_explore::render::op_text(o) + "\n").collect();
    let sc = scenario::parse_str("t.scn", &format!("era 2.6.34-rc3\n{text}")).unwrap();
    let parsed: Vec<String> = sc
        .steps
        .iter()
        .map(|s| match &s.kind {
            scenario::ast::StepKind::Op(o) => ptemu_explore::render::op_text(o),
            _ => String::new(),
        })
        .collect();
    let ours: Vec<String> = ops.iter().map(ptemu_explore::render::op_text).collect();
    assert_eq!(parsed, ours);
}

/// The reproducers committed under fixtures/explore/ (written by `ptemu
/// explore`, not by hand) pass under the eras they state and fail under
/// the eras that fixed the seed's bug.
#[test]
fn committed_reproducers_fail_under_the_fixed_eras() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/explore");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "scn") {
            continue;
        }
        n += 1;
        let sc = scenario::parse_file(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("# Found by `ptemu explore"), "{}: not generated", p.display());
        for era in &sc.setup.eras {
            assert!(
                scenario::run_era(&sc, &era.value, None).0.passed(),
                "{} under {}",
                p.display(),
                era.value
            );
        }
        for fixed in ["2.6.33", "2.6.34", "2.6.36", "6.18"] {
            assert!(
                !scenario::run_era(&sc, fixed, None).0.passed(),
                "{} passes under {fixed}",
                p.display()
            );
        }
    }
    assert!(n >= 2, "the seed's bug and the grandchild case");
}
