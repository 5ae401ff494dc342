//! `ptemu hwcheck` as a user runs it. The comparisons need /dev/kvm: without
//! it they check the documented exit status 2 and say they skipped.

use std::process::{Command, Output};

fn ptemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptemu")).args(args).output().expect("the ptemu binary runs")
}

/// `None` (after saying so) when this host has no usable /dev/kvm.
fn run_or_skip(args: &[&str]) -> Option<Output> {
    let o = ptemu(args);
    if o.status.code() == Some(2) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("/dev/kvm is not usable"),
            "exit 2 without the /dev/kvm message: {err}"
        );
        eprintln!("SKIPPED: {}", err.trim_end());
        return None;
    }
    Some(o)
}

#[test]
fn text_run_agrees_and_ends_with_the_count() {
    let Some(o) = run_or_skip(&["hwcheck", "--seed", "7", "--accesses", "1500"]) else { return };
    let out = String::from_utf8(o.stdout).expect("utf-8");
    assert_eq!(o.status.code(), Some(0), "disagreements:\n{out}");
    assert_eq!(out.lines().last(), Some("hwcheck: 1500/1500 accesses agree"));
    assert!(out.starts_with("hwcheck: seed 7, 1500 accesses; oracle: "), "{out}");
    assert!(out.contains("not tested:"), "{out}");
    assert!(!out.contains("DISAGREE"), "{out}");
}

#[test]
fn json_run_is_deterministic_for_a_seed() {
    let Some(a) = run_or_skip(&["hwcheck", "--seed", "11", "--accesses", "500", "--json"]) else {
        return;
    };
    let Some(b) = run_or_skip(&["hwcheck", "--seed", "11", "--accesses", "500", "--json"]) else {
        return;
    };
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout, "same seed, different report");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("one JSON object");
    assert_eq!(v["accesses"], 500);
    assert_eq!(v["agreed"], 500);
    assert_eq!(v["seed"], 11);
    assert!(v["disagreements"].as_array().is_some_and(|d| d.is_empty()));
    // Features the host lacks are listed, never silently passed.
    let oracle = &v["oracle"];
    for (flag, name) in
        [("smep", "SMEP"), ("smap", "SMAP"), ("pku", "protection keys"), ("gbpages", "1 GiB pages")]
    {
        if oracle[flag] == false {
            let listed = v["not_tested"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_str().unwrap().contains(name));
            assert!(listed, "{name} missing on this host but not listed as not tested");
        }
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in
        [&["hwcheck", "--accesses", "0"][..], &["hwcheck", "--seed", "x"], &["hwcheck", "--bogus"]]
    {
        let o = ptemu(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
