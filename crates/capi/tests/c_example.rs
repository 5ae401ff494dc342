//! examples/mmu_demo.c, compiled with the machine's C compiler against
//! include/ptemu.h and the static or the shared library, runs and passes
//! every check; and the header is usable from C++.

use std::path::{Path, PathBuf};
use std::process::Command;

/// target/<profile>/deps/, beside this test binary: where `cargo test`
/// builds libptemu_capi.a and .so (they are copied up to target/<profile>/
/// only by `cargo build`, so those copies may be stale).
fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().expect("target/<profile>/deps/<test>").to_path_buf()
}

/// What `rustc --print native-static-libs` lists for a std staticlib on
/// Linux.
const NATIVE_LIBS: [&str; 7] = ["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

fn compiler(var: &str, default: &str) -> Command {
    Command::new(std::env::var(var).unwrap_or_else(|_| default.into()))
}

fn build(mut cmd: Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run the compiler for {what}: {e}"));
    assert!(status.success(), "building {what} failed: {status}");
}

/// Runs the demo; returns the number of checks it passed.
fn run_demo(exe: &Path) -> u32 {
    let run = Command::new(exe).output().expect("run mmu_demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    print!("{stdout}");
    assert!(run.status.success(), "mmu_demo failed ({}):\n{stdout}", run.status);
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    last.strip_prefix("all ")
        .and_then(|s| s.strip_suffix(" checks passed"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected last line {last:?}"))
}

fn demo_compile(out: &Path) -> Command {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cc = compiler("CC", "cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join("examples/mmu_demo.c"))
        .arg("-o")
        .arg(out);
    cc
}

#[test]
fn c_program_runs_against_the_static_library() {
    let lib = artifact_dir().join("libptemu_capi.a");
    assert!(lib.exists(), "{} was not built", lib.display());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmu_demo_static");
    let mut cc = demo_compile(&out);
    cc.arg(&lib).args(NATIVE_LIBS);
    build(cc, "mmu_demo.c (static)");
    // Every check ran: the argument checks, then three memories' worth.
    let n = run_demo(&out);
    assert!(n >= 80, "only {n} checks ran");
}

#[test]
fn c_program_runs_against_the_shared_library() {
    let deps = artifact_dir();
    assert!(deps.join("libptemu_capi.so").exists(), "libptemu_capi.so was not built");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmu_demo_shared");
    let mut cc = demo_compile(&out);
    cc.arg("-L").arg(&deps).arg("-lptemu_capi").arg(format!("-Wl,-rpath,{}", deps.display()));
    build(cc, "mmu_demo.c (shared)");
    let n = run_demo(&out);
    assert!(n >= 80, "only {n} checks ran");
}

#[test]
fn header_works_from_cpp() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let src = tmp.join("header_check.cpp");
    std::fs::write(
        &src,
        r#"#include "ptemu.h"
int main() {
    PtemuConfig cfg = ptemu_config_default();
    PtemuMmu *mmu = nullptr;
    alignas(8) static unsigned char ram[4096];
    if (ptemu_mmu_new_flat(&cfg, ram, sizeof ram, &mmu) != PTEMU_STATUS_OK) return 1;
    uint64_t pa = 0;
    // Paging is off after creation: identity translation.
    PtemuStatus s = ptemu_translate(mmu, 0x123, PTEMU_ACCESS_READ, &pa);
    ptemu_mmu_free(mmu);
    return s == PTEMU_STATUS_OK && pa == 0x123 ? 0 : 2;
}
"#,
    )
    .expect("write header_check.cpp");
    let out = tmp.join("header_check");
    let mut cxx = compiler("CXX", "c++");
    cxx.args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(dir.join("include"))
        .arg(&src)
        .arg(artifact_dir().join("libptemu_capi.a"))
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&out);
    build(cxx, "header_check.cpp");
    let status = Command::new(&out).status().expect("run header_check");
    assert!(status.success(), "header_check failed: {status}");
}
