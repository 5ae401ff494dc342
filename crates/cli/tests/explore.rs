//! `ptemu explore` as a user runs it: a small search under 2.6.34-rc3 writes
//! reproducers that `ptemu run` passes under that era and fails under
//! 2.6.34; a fixed era finds nothing (exit 0); shards merge; bad arguments
//! are exit 2 with one line.

use std::process::{Command, Output};

fn ptemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptemu")).args(args).output().expect("the ptemu binary runs")
}

fn usage_error(args: &[&str]) -> String {
    let o = ptemu(args);
    assert_eq!(o.status.code(), Some(2), "{args:?} should be a usage error");
    let err = String::from_utf8(o.stderr).expect("utf-8");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
    err
}

#[test]
fn search_writes_reproducers_that_run_passes_and_fixed_eras_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = ptemu(&[
        "explore",
        "--era",
        "2.6.34-rc3",
        "--steps",
        "3000",
        "--jobs",
        "2",
        "--out",
        out,
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "findings: exit 1; {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    for f in findings {
        let file = f["file"].as_str().unwrap();
        let run = ptemu(&["run", file, "--era", "2.6.34-rc3"]);
        assert_eq!(run.status.code(), Some(0), "{file}: {}", String::from_utf8_lossy(&run.stdout));
        let fixed = ptemu(&["run", file, "--era", "2.6.34"]);
        assert_eq!(fixed.status.code(), Some(1), "{file} should fail under 2.6.34");
    }
    assert!(dir.path().join("report.json").exists());
    // Plain lines, not a bar, when stderr is not a terminal.
    assert!(String::from_utf8_lossy(&o.stderr).contains("ptemu explore:"));
}

#[test]
fn a_fixed_era_finds_nothing_and_shards_merge() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for s in ["0/2", "1/2"] {
        let o = ptemu(&["explore", "--era", "2.6.36", "--steps", "1000", "--shard", s, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
        let p = dir.path().join(format!("{}.json", s.replace('/', "-")));
        std::fs::write(&p, &o.stdout).unwrap();
        files.push(p.to_str().unwrap().to_string());
    }
    let mut args = vec!["explore", "merge", "--json"];
    args.extend(files.iter().map(String::as_str));
    let o = ptemu(&args);
    assert_eq!(o.status.code(), Some(0));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["steps"].as_u64(), Some(1000));
    assert_eq!(m["shards"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_arguments_are_usage_errors() {
    assert!(usage_error(&["explore"]).contains("--era"));
    assert!(usage_error(&["explore", "--era", "2.6.35"]).contains("unknown era"));
    assert!(usage_error(&["explore", "--era", "seed+avc=maybe"]).contains("yes or no"));
    assert!(usage_error(&["explore", "--era", "seed", "--shard", "2/2"]).contains("--shard"));
    assert!(usage_error(&["explore", "--era", "seed", "--time", "soon"]).contains("--time"));
    assert!(usage_error(&["explore", "--era", "seed", "--steps", "0"]).contains("--steps"));
    assert!(usage_error(&["explore", "--era", "seed", "--oracle"]).contains("6.18"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.json");
    std::fs::write(&p, "{}").unwrap();
    assert!(
        usage_error(&["explore", "merge", p.to_str().unwrap()]).contains("not an explore report")
    );
}
