//! examples/mmu_demo.c, compiled with the machine's C compiler against the
//! static library and include/ptemu.h, runs and passes every check.

use std::path::{Path, PathBuf};
use std::process::Command;

/// target/<profile>/deps/, beside this test binary: where `cargo test`
/// builds libptemu_capi.a (it is copied up to target/<profile>/ only by
/// `cargo build`, so that copy may be stale).
fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().expect("target/<profile>/deps/<test>").to_path_buf()
}

#[test]
fn c_program_runs_against_the_static_library() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = artifact_dir().join("libptemu_capi.a");
    assert!(lib.exists(), "{} was not built", lib.display());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmu_demo");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join("examples/mmu_demo.c"))
        .arg(&lib)
        // What `rustc --print native-static-libs` lists for a std staticlib
        // on Linux.
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "compiling examples/mmu_demo.c failed: {status}");

    let run = Command::new(&out).output().expect("run mmu_demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    print!("{stdout}");
    assert!(run.status.success(), "mmu_demo failed ({}):\n{stdout}", run.status);
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let n: u32 = last
        .strip_prefix("all ")
        .and_then(|s| s.strip_suffix(" checks passed"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected last line {last:?}"));
    // Every check ran: the argument checks, then three memories' worth.
    assert!(n >= 80, "only {n} checks ran");
}
