//! Real compiled programs run under Unicorn with ptemu as MMU and kernel,
//! checked byte for byte against the same program on the host kernel.

use std::path::PathBuf;
use std::process::Command;

use mm::Era;
use ptemu_unicorn::{EmuConfig, Emulator, Exit, Image, RunReport, image};

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests")
}

/// Builds `name`.c, runs it natively and under the emulator; returns the
/// native (stdout, exit code) and the emulated report.
fn run_both(name: &str, cfg: &EmuConfig) -> ((Vec<u8>, i32), RunReport) {
    let src = image::guest_dir().join(format!("{name}.c"));
    let (bin, native) =
        image::build(&src, &out_dir().join(format!("{name}-{}", cfg.era.name())), true)
            .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(native.unwrap()).output().unwrap();
    let native = (out.stdout, out.status.code().unwrap_or(-1));
    let img = Image::open(&bin).unwrap();
    let report = Emulator::new(cfg, &img).unwrap().run().unwrap_or_else(|e| panic!("{e}"));
    (native, report)
}

fn assert_same(name: &str, cfg: &EmuConfig) -> RunReport {
    let ((stdout, code), r) = run_both(name, cfg);
    let era = cfg.era.name();
    assert_eq!(
        String::from_utf8_lossy(&r.output),
        String::from_utf8_lossy(&stdout),
        "{name} under {era}: output differs from the native run; exits {:?}",
        r.exits
    );
    assert_eq!(r.output, stdout);
    assert_eq!(r.first_exit(), Some(&Exit::Code(code)), "{name} under {era}");
    assert!(r.oops.is_none(), "{name} under {era}: {:?}", r.oops);
    assert!(r.violations.is_empty(), "{name} under {era}: {:?}", r.violations);
    r
}

#[test]
fn memset_memcpy_over_six_mib_matches_native() {
    for era in [Era::V2_6_33, Era::V6_18] {
        let mut cfg = EmuConfig::new(era, 64 << 20);
        cfg.check_every_fault = false;
        let r = assert_same("memcpy", &cfg);
        // 12 MiB written page by page: at least one fault per page.
        assert!(r.stats.faults >= 2 * 1536, "{:?}", r.stats);
    }
}
