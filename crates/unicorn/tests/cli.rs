//! The `ptemu-unicorn` binary: `run` on a C program, `check --json`.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ptemu-unicorn"))
}

#[test]
fn run_builds_and_runs_a_c_program_and_reports_its_processes() {
    let src = ptemu_unicorn::image::guest_dir().join("seed.c");
    let out =
        bin().args(["run", "--era", "2.6.34", "--memory-mib", "16"]).arg(&src).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.ends_with("a-read-again 0x00000000000000aa\n"), "{stdout}");
    assert!(stderr.contains("process 2: exit(0)"), "{stderr}");
    // Under 2.6.34-rc3 the oops is printed and the status is 1.
    let out = bin().args(["run", "--era", "2.6.34-rc3"]).arg(&src).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("oops (anon-vma-use-after-free) in rmap_walk"), "{stderr}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = bin().args(["run", "--era", "2.7"]).arg("x.c").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["run", "/nonexistent.bin"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.bin"));
}

#[test]
fn check_prints_its_verdict_line_and_json() {
    let out =
        bin().args(["check", "--accesses", "300", "--seed", "5", "--no-kvm"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("qemucheck: ") && last.ends_with("/300 accesses agree"), "{last}");
    let out = bin()
        .args(["check", "--accesses", "300", "--seed", "5", "--no-kvm", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"], 300);
    assert_eq!(v["seed"], 5);
    assert!(v["classes"]["agree"].as_u64().unwrap() > 100);
}
