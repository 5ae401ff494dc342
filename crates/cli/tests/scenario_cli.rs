//! `ptemu run`, `check` and `dump` as a user runs them: exit statuses,
//! messages with file:line:col, and the seed fixture's story.

use std::path::PathBuf;
use std::process::{Command, Output};

fn ptemu(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_ptemu")).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run ptemu: {e}"),
    }
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_scenario(body: &str) -> tempfile::NamedTempFile {
    let f = match tempfile::Builder::new().suffix(".scn").tempfile() {
        Ok(f) => f,
        Err(e) => panic!("tempfile: {e}"),
    };
    if let Err(e) = std::fs::write(f.path(), body) {
        panic!("write: {e}");
    }
    f
}

#[test]
fn the_seed_fixture_shows_the_bug_under_rc3_and_passes_everywhere() {
    let o = ptemu(&["run", &fixture("seed-swapin.scn")]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    for era in ["2.6.33", "2.6.34-rc3", "seed", "2.6.34", "2.6.36", "6.18"] {
        assert!(out.contains(&format!("PASS [era {era}]")), "{era}: {out}");
    }
    assert!(out.contains("mapping=av2 (B) [freed]"), "{out}");
    assert!(out.contains("oops (anon-vma-use-after-free)"), "{out}");
    assert!(out.contains("oops (anon-vma-reused)"), "{out}");
    assert!(out.contains("new violation: rmap-unreachable"), "{out}");
    assert!(out.contains("6 scenario run(s) over 1 file(s): 6 passed, 0 failed"), "{out}");
}

#[test]
fn era_override_runs_one_era() {
    let o = ptemu(&["run", "--era", "2.6.34", &fixture("seed-swapin.scn")]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains("PASS [era 2.6.34]"));
    assert!(!out.contains("[era 2.6.34-rc3]"), "{out}");
    let o = ptemu(&["run", "--era", "2.6.35", &fixture("seed-swapin.scn")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("unknown era"), "{}", text(&o.stderr));
}

#[test]
fn a_parse_error_is_exit_2_with_its_position_and_nothing_runs() {
    let bad = temp_scenario("spawn A\nA mmap 0x7f0000000000 4K rwz\n");
    let path = bad.path().display().to_string();
    let o = ptemu(&["run", &fixture("seed-swapin.scn"), &path]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("{path}:2:26: expected a protection")), "{err}");
    assert!(text(&o.stdout).is_empty(), "ran something: {}", text(&o.stdout));
    let o = ptemu(&["check", &path]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_failed_expectation_is_exit_1_naming_file_line_and_era() {
    let f = temp_scenario(
        "eras 2.6.34 6.18\nspawn A\nA mmap 0x7f0000000000 4K rw\nA write 0x7f0000000000 1\n\
         expect [6.18] A 0x7f0000000000 pte=0x8000000000000063|pfn\n",
    );
    let path = f.path().display().to_string();
    let o = ptemu(&["run", &path]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("PASS [era 2.6.34]"), "{out}");
    assert!(out.contains(&format!("FAIL {path}:5:1: [6.18]")), "{out}");
}

#[test]
fn json_report_is_machine_readable() {
    let o = ptemu(&["run", "--json", "--era", "2.6.34-rc3", &fixture("seed-swapin.scn")]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON: {e}: {}", text(&o.stdout)),
    };
    assert_eq!(v[0]["passed"], serde_json::Value::Bool(true));
    assert_eq!(v[0]["runs"][0]["era"], "2.6.34-rc3");
    let steps = v[0]["runs"][0]["steps"].as_array().map_or(0, Vec::len);
    assert!(steps > 40, "{steps} steps");
}

#[test]
fn check_parses_every_fixture() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut files: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "scn"))
            .map(|p| p.display().to_string())
            .collect(),
        Err(e) => panic!("{e}"),
    };
    files.sort();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let o = ptemu(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().filter(|l| l.contains(": ok (")).count(), files.len());
}

#[test]
fn dump_shows_the_state_after_step_n() {
    let f = fixture("seed-swapin.scn");
    let o = ptemu(&["dump", &f, "--step", "4", "--era", "2.6.34-rc3"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("state after operation 4 (line 41: A fork B)"), "{out}");
    assert!(out.contains("pte 0x8000"), "{out}");
    assert!(out.contains("anon_vmas: 2 live"), "{out}");
    let o = ptemu(&["dump", &f, "--step", "999"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ptemu(&["dump", &f, "--step", "0"]);
    assert!(text(&o.stdout).contains("before the first operation"));
}
