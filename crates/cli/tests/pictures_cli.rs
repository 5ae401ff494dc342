//! `ptemu run --html` and `ptemu dump --svg/--dot` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs ptemu from the workspace root, so that file names are as a user
/// types them.
fn ptemu(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_ptemu")).current_dir(root()).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run ptemu: {e}"),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn run_html_writes_one_report_for_several_files_and_still_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.html");
    let o = ptemu(&[
        "run",
        "fixtures/seed-swapin.scn",
        "fixtures/grandchild-clone-order.scn",
        "--html",
        out.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(log.contains("12 scenario run(s) over 2 file(s): 12 passed"), "{log}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrote"));
    let html = read(&out);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("\"key\":\"seed-swapin\"")
            && html.contains("\"key\":\"grandchild-clone-order\"")
    );
    // The seed's 17 steps in each of its six eras, and the default pair.
    assert_eq!(html.matches("<article class=\"frame\"").count(), 6 * 17 + 6 * 14);
    assert!(html.contains(r#"data-era="2.6.34-rc3" data-step="8""#));
    assert!(html.contains(r#""left":"2.6.34-rc3","right":"2.6.34""#));
}

#[test]
fn run_html_rejects_a_bad_compare_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.html");
    let o = ptemu(&[
        "run",
        "fixtures/seed-swapin.scn",
        "--html",
        out.to_str().expect("utf-8 path"),
        "--compare",
        "2.6.34-rc3,2.6.99",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown era \"2.6.99\""));
    assert!(!out.exists(), "nothing written on a usage error");
}

#[test]
fn dump_svg_and_dot_of_the_seed_key_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("s8.svg");
    let dot = dir.path().join("s8.dot");
    let o = ptemu(&[
        "dump",
        "fixtures/seed-swapin.scn",
        "--era",
        "2.6.34-rc3",
        "--step",
        "8",
        "--svg",
        svg.to_str().expect("utf-8"),
        "--dot",
        dot.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read(&svg);
    // The same picture the README shows.
    assert_eq!(s, read(&root().join("docs/seed-swapin-2.6.34-rc3-step8.svg")));
    let d = read(&dot);
    assert!(d.starts_with("strict digraph ptemu {"), "{d}");
    assert!(d.contains("\"page:0x5\" -> \"av:av2\" [label=\"page->mapping (FREED)\""), "{d}");
    assert!(d.contains("rmap-unreachable"), "{d}");
}

#[test]
fn dump_svg_past_the_last_operation_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("x.svg");
    let o = ptemu(&[
        "dump",
        "fixtures/seed-swapin.scn",
        "--step",
        "99",
        "--svg",
        svg.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--step 99"));
    assert!(!svg.exists());
}
