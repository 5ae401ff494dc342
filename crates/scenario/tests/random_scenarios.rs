//! Random well-formed scenarios: a few processes doing writes, reads,
//! forks, exits, reclaims, rmap walks, protection changes and zaps on a
//! few pages, run under every era. No input may panic the runner; and in
//! the eras where the seed's bug is fixed, no sequence may end in an
//! unexpected oops or an rmap/mapping violation (what the fixed kernels
//! guarantee). PROPTEST_CASES sets the count (default 200).

use proptest::prelude::*;
use proptest::test_runner::Config;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000) / 5
}

const ADDRS: [&str; 3] = ["0x7f0000000000", "0x7f0000001000", "0x7f0000002000"];

fn op() -> impl Strategy<Value = (u8, usize, usize, usize)> {
    (0u8..12, 0usize..4, 0usize..3, 0usize..256)
}

fn render(ops: &[(u8, usize, usize, usize)]) -> String {
    let mut s = String::from("memory 4M\nswap 1M\nspawn P0\nP0 mmap 0x7f0000000000 12K rw\n");
    // Only live processes act, so runs are not cut short by an operation
    // on an exited one.
    let mut alive: Vec<usize> = vec![0];
    let mut next = 1;
    for &(kind, p, a, v) in ops {
        if alive.is_empty() {
            break;
        }
        let idx = p % alive.len();
        let p = format!("P{}", alive[idx]);
        let a = ADDRS[a];
        let line = match kind {
            0 | 1 => format!("{p} write {a} {v}"),
            2 | 3 => format!("{p} read {a}"),
            4 => {
                alive.push(next);
                next += 1;
                format!("{p} fork P{}", next - 1)
            }
            5 => {
                alive.remove(idx);
                format!("{p} exit")
            }
            6 => format!("reclaim {p} {a}"),
            7 => format!("reclaim {p} {a} keep-cache"),
            8 => format!("rmap-walk {p} {a}"),
            9 => "rcu-grace-period".to_string(),
            10 => format!("{p} mprotect {a} 4K {}", ["none", "r", "rw"][v % 3]),
            _ => format!("{p} madvise {a} 4K dontneed"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

proptest! {
    #![proptest_config(Config { cases: cases().max(1), ..Config::default() })]

    #[test]
    fn random_scenarios_run_and_fixed_eras_stay_sound(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let text = render(&ops);
        let scn = ptemu_scenario::parse_str("r.scn", &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        for era in ["2.6.33", "2.6.34-rc3", "seed", "2.6.34", "2.6.36", "6.18"] {
            let (run, _) = ptemu_scenario::run_era(&scn, era, None);
            // Only user accesses may fail (SIGSEGV under PROT_NONE or r);
            // nothing else in these scenarios is an error.
            if let Some(f) = &run.stopped {
                let expected_kind = f.message.contains("unexpected");
                prop_assert!(expected_kind, "[{}] line {}: {}\n{}", era, f.line, f.message, text);
            }
            let _ = ptemu_scenario::render_run("r.scn", &run);
            if matches!(era, "2.6.33" | "2.6.34" | "2.6.36" | "6.18") {
                if let Some(f) = &run.stopped {
                    let unsound = f.message.contains("unexpected oops")
                        || f.message.contains("rmap-unreachable")
                        || f.message.contains("mapping-freed");
                    prop_assert!(!unsound, "[{}] line {}: {}\n{}", era, f.line, f.message, text);
                }
            }
        }
    }
}
