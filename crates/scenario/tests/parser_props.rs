//! Property tests of the parser: no input panics it, every error points
//! inside the text, parsing is deterministic, and well-formed statements
//! built from the grammar always parse.
//!
//! Inputs: arbitrary strings and bytes, token soup from the language's own
//! vocabulary, and the fixtures under fixtures/ mutated (tokens deleted,
//! duplicated, swapped, replaced; bytes flipped; lines shuffled). The case
//! count per property is PROPTEST_CASES (default 1000 here).

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::Config;

use ptemu_scenario::{Error, parse_bytes, parse_str};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

fn fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "scn"));
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
}

const VOCAB: &[&str] = &[
    "era",
    "eras",
    "memory",
    "swap",
    "spawn",
    "A",
    "B",
    "C",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "dontneed",
    "write",
    "read",
    "fork",
    "exit",
    "execve",
    "reclaim",
    "keep-cache",
    "rmap-walk",
    "rcu-grace-period",
    "dump",
    "expect",
    "present",
    "swapped",
    "none",
    "segv",
    "oops",
    "invariant",
    "anon-vmas",
    "clean",
    "no-leaks",
    "writable",
    "dirty",
    "accessed",
    "mapcount",
    "exclusive",
    "swapcache",
    "anon-exclusive",
    "type",
    "offset",
    "swapcount",
    "pte",
    "pfn",
    "same-page",
    "yes",
    "no",
    "r",
    "rw",
    "rx",
    "rwx",
    "2.6.33",
    "2.6.34-rc3",
    "seed",
    "2.6.34",
    "2.6.36",
    "6.18",
    "0x7f0000000000",
    "4K",
    "16M",
    "1G",
    "0",
    "1",
    "0xff",
    "0x100",
    "0xffffffffffffffff",
    "0x10000000000000000",
    "99999999999999999999",
    "1T",
    "anon-vma-use-after-free",
    "anon-vma-reused",
    "rmap-unreachable",
    "leak",
    "[",
    "]",
    "=",
    "|",
    "^",
    "<",
    ">",
    "#",
    "\n",
    "\t",
    "é",
    "\u{0}",
];

/// Checks what every parse, good or bad, must satisfy.
fn check_outcome(text: &str, r: &Result<ptemu_scenario::Scenario, Error>) {
    match r {
        Ok(s) => {
            assert!(!s.setup.eras.is_empty());
            // Deterministic: the same text gives the same tree.
            assert_eq!(parse_str("p.scn", text).ok().as_ref(), Some(s));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("p.scn"), "{msg}");
            // A message stays short whatever the input's size.
            assert!(msg.len() < 600, "message of {} bytes", msg.len());
            if let Some((line, col)) = e.position() {
                let lines = text.split('\n').count() as u32;
                assert!(line >= 1 && line <= lines, "line {line} of {lines}: {msg}");
                let width =
                    text.split('\n').nth(line as usize - 1).map_or(0, |l| l.chars().count());
                assert!(col >= 1 && col as usize <= width + 1, "col {col} of {width}: {msg}");
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, usize),
    FlipByte(usize, u8),
    Truncate(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Replace(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::FlipByte(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// Splits text into tokens and the separators between them, so mutations
/// act on the language's units while keeping line structure.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c == ' ' || c == '\n' {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn mutate(text: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut p = pieces(text);
    let mut bytes: Option<Vec<u8>> = None;
    for m in muts {
        if p.is_empty() {
            break;
        }
        let n = p.len();
        match *m {
            Mutation::Delete(i) => {
                p.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let t = p[i % n].clone();
                p.insert(i % n, t);
            }
            Mutation::Swap(a, b) => p.swap(a % n, b % n),
            Mutation::Replace(i, v) => p[i % n] = VOCAB[v % VOCAB.len()].to_string(),
            Mutation::FlipByte(i, x) => {
                let mut b = p.concat().into_bytes();
                if !b.is_empty() {
                    let k = i % b.len();
                    b[k] ^= x | 1;
                }
                bytes = Some(b);
            }
            Mutation::Truncate(i) => {
                p.truncate(i % n);
            }
            Mutation::SwapLines(a, b) => {
                let joined = p.concat();
                let mut lines: Vec<&str> = joined.split('\n').collect();
                let ln = lines.len();
                lines.swap(a % ln, b % ln);
                p = pieces(&lines.join("\n"));
            }
        }
    }
    bytes.unwrap_or_else(|| p.concat().into_bytes())
}

proptest! {
    #![proptest_config(Config { cases: cases(), ..Config::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in ".{0,400}") {
        let r = parse_str("p.scn", &text);
        check_outcome(&text, &r);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let r = parse_bytes("p.scn", &bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            check_outcome(text, &r);
        } else {
            let not_utf8 = matches!(r, Err(Error::NotUtf8 { .. }));
            prop_assert!(not_utf8);
        }
    }

    #[test]
    fn vocabulary_soup_never_panics(
        words in proptest::collection::vec(0..VOCAB.len(), 0..60),
        seps in proptest::collection::vec(0..4usize, 60),
    ) {
        let mut text = String::new();
        for (i, w) in words.iter().enumerate() {
            text.push_str(VOCAB[*w]);
            text.push_str([" ", " ", "\n", ""][seps[i % seps.len()]]);
        }
        let r = parse_str("p.scn", &text);
        check_outcome(&text, &r);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let all = fixtures();
        prop_assume!(!all.is_empty());
        let base = &all[which % all.len()];
        let bytes = mutate(base, &muts);
        let r = parse_bytes("p.scn", &bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            check_outcome(text, &r);
        }
    }

    #[test]
    fn generated_statements_parse(
        stmts in proptest::collection::vec(statement(), 1..40),
    ) {
        let text = format!("spawn A\nspawn B\n{}", stmts.join("\n"));
        let r = parse_str("p.scn", &text);
        prop_assert!(r.is_ok(), "{:?}\n{}", r.err().map(|e| e.to_string()), text);
        let s = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(s.steps.len(), stmts.len() + 2);
    }

    #[test]
    fn numbers_round_trip(v in any::<u64>(), hex in any::<bool>()) {
        let lit = if hex { format!("{v:#x}") } else { v.to_string() };
        let s = parse_str("p.scn", &format!("expect A {lit} none\n"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let step = &s.steps[0];
        match &step.kind {
            ptemu_scenario::ast::StepKind::Expect(e) => match &e.what {
                ptemu_scenario::ast::Expect::Entry { addr, .. } => prop_assert_eq!(addr.value, v),
                other => prop_assert!(false, "{:?}", other),
            },
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

fn num() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|v| format!("{v:#x}")),
        any::<u64>().prop_map(|v| v.to_string()),
    ]
}

fn len() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..=1 << 30).prop_map(|v| format!("{v:#x}")),
        (1u64..=1024).prop_map(|v| format!("{v}K")),
        (1u64..=1024).prop_map(|v| format!("{v}M")),
        Just("1G".to_string()),
    ]
}

fn byte() -> impl Strategy<Value = String> {
    any::<u8>().prop_map(|v| format!("{v:#x}"))
}

fn proc_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_-]{0,10}"
        .prop_filter("keyword", |s| !ptemu_scenario::parser::RESERVED.contains(&s.as_str()))
}

fn prot() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["none", "r", "rw", "rx", "rwx"])
}

fn eras_filter() -> impl Strategy<Value = String> {
    prop::sample::subsequence(
        vec!["2.6.33", "2.6.34-rc3", "seed", "2.6.34", "2.6.36", "6.18"],
        0..=6,
    )
    .prop_map(|v| if v.is_empty() { String::new() } else { format!("[{}] ", v.join(" ")) })
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec![
                "writable",
                "dirty",
                "accessed",
                "exclusive",
                "swapcache",
                "anon-exclusive"
            ]),
            any::<bool>()
        )
            .prop_map(|(f, b)| format!("{f}={}", if b { "yes" } else { "no" })),
        (prop::sample::select(vec!["mapcount", "offset", "swapcount"]), num())
            .prop_map(|(f, n)| format!("{f}={n}")),
        (0u64..32).prop_map(|t| format!("type={t}")),
        (num(), prop::sample::select(vec!["", "|pfn", "^pfn"]))
            .prop_map(|(n, s)| format!("pte={n}{s}")),
        (proc_name(), num()).prop_map(|(p, a)| format!("same-page {p} {a}")),
    ]
}

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        proc_name().prop_map(|p| format!("spawn {p}")),
        (num(), len(), prot()).prop_map(|(a, l, p)| format!("A mmap {a} {l} {p}")),
        (num(), len()).prop_map(|(a, l)| format!("A munmap {a} {l}")),
        (num(), len(), prot()).prop_map(|(a, l, p)| format!("B mprotect {a} {l} {p}")),
        (num(), len()).prop_map(|(a, l)| format!("A madvise {a} {l} dontneed")),
        (num(), proptest::option::of(byte())).prop_map(|(a, v)| match v {
            Some(v) => format!("A write {a} {v}"),
            None => format!("A write {a}"),
        }),
        (num(), proptest::option::of(byte())).prop_map(|(a, v)| match v {
            Some(v) => format!("A read {a} = {v}"),
            None => format!("A read {a}"),
        }),
        proc_name().prop_map(|c| format!("A fork {c}")),
        Just("B exit".to_string()),
        Just("B execve".to_string()),
        (num(), proptest::option::of(len()), any::<bool>()).prop_map(|(a, l, k)| {
            format!(
                "reclaim A {a}{}{}",
                l.map(|l| format!(" {l}")).unwrap_or_default(),
                if k { " keep-cache" } else { "" }
            )
        }),
        num().prop_map(|a| format!("rmap-walk A {a}")),
        Just("rcu-grace-period".to_string()),
        proptest::option::of(num())
            .prop_map(|a| format!("dump A{}", a.map(|a| format!(" {a}")).unwrap_or_default())),
        (
            eras_filter(),
            num(),
            proptest::option::of(prop::sample::select(vec!["present", "swapped", "none"])),
            proptest::collection::vec(condition(), 0..4)
        )
            .prop_filter("needs a state or condition", |(_, _, s, c)| s.is_some() || !c.is_empty())
            .prop_filter("no repeated field", |(_, _, _, c)| {
                let keys: Vec<&str> = c
                    .iter()
                    .filter(|x| !x.starts_with("same-page"))
                    .map(|x| x.split('=').next().unwrap_or_default())
                    .collect();
                let mut d = keys.clone();
                d.sort();
                d.dedup();
                d.len() == keys.len()
            })
            .prop_map(|(e, a, s, c)| format!(
                "expect {e}A {a} {} {}",
                s.unwrap_or_default(),
                c.join(" ")
            )),
        (
            eras_filter(),
            prop::sample::select(vec![
                "segv",
                "clean",
                "no-leaks",
                "oops anon-vma-use-after-free",
                "oops anon-vma-reused",
                "invariant rmap-unreachable",
                "invariant mapping-freed",
                "invariant mapcount-mismatch",
                "invariant refcount-mismatch",
                "invariant swapcount-mismatch",
                "invariant swapcache-mismatch",
                "invariant bad-entry",
                "invariant leak",
                "anon-vmas 3",
                "anon-vmas <= 3",
                "anon-vmas >=0x10",
            ])
        )
            .prop_map(|(e, w)| format!("expect {e}{w}")),
    ]
}

#[test]
fn every_fixture_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "scn") {
            if let Err(e) = ptemu_scenario::parse_file(&path) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n >= 8, "only {n} fixtures found in {}", dir.display());
}

proptest! {
    // A run costs far more than a parse: a fifth of the parser properties' cases.
    #![proptest_config(Config { cases: (cases() / 5).max(1), ..Config::default() })]

    #[test]
    fn mutated_fixtures_run_without_panic(
        which in any::<usize>(),
        era in 0usize..6,
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let all = fixtures();
        prop_assume!(!all.is_empty());
        let base = &all[which % all.len()];
        let bytes = mutate(base, &muts);
        if let Ok(scn) = parse_bytes("p.scn", &bytes) {
            let name = ptemu_scenario::era::known_names();
            let eras: Vec<&str> = name.split(", ").collect();
            let (run, _) = ptemu_scenario::run_era(&scn, eras[era % eras.len()], None);
            // Whatever happened is reported with a line inside the text.
            let lines = bytes.split(|b| *b == b'\n').count() as u32;
            for f in run.failures.iter().chain(run.stopped.iter()) {
                prop_assert!(f.line <= lines, "{:?}", f);
            }
            let _ = ptemu_scenario::render_run("p.scn", &run);
        }
    }
}
