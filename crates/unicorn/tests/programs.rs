//! Real compiled programs run under Unicorn with ptemu as MMU and kernel,
//! checked byte for byte against the same program on the host kernel.

use std::path::PathBuf;
use std::process::Command;

use mm::{Era, InvariantKind, OopsKind};
use ptemu_unicorn::{EmuConfig, Emulator, Exit, Image, RunReport, image};

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests")
}

/// Builds `name`.c, runs it natively and under the emulator; returns the
/// native (stdout, exit code) and the emulated report.
fn run_both(name: &str, cfg: &EmuConfig) -> ((Vec<u8>, i32), RunReport) {
    let src = image::guest_dir().join(format!("{name}.c"));
    // One directory per test thread: tests run in parallel and may build
    // the same program.
    let thread = std::thread::current().name().unwrap_or("main").replace("::", "-");
    let dir = out_dir().join(format!("{thread}-{name}-{}", cfg.era.name()));
    let (bin, native) = image::build(&src, &dir, true).unwrap_or_else(|e| panic!("{e}"));
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

const FIXED: [Era; 5] = [Era::V2_6_33, Era::Seed, Era::V2_6_34, Era::V2_6_36, Era::V6_18];

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

#[test]
fn memcpy_under_memory_pressure_reclaims_inside_faults_and_still_matches() {
    // 8 MiB of RAM for 12 MiB of data: faults allocate by reclaiming other
    // pages of the running process, whose cached translations must go.
    let mut cfg = EmuConfig::new(Era::V2_6_34, 8 << 20);
    cfg.swap = 16 << 20;
    cfg.check_every_fault = false;
    let r = assert_same("memcpy", &cfg);
    assert!(r.stats.shootdowns > 1000 && r.stats.tlb_flushes > 1000, "{:?}", r.stats);
}

#[test]
fn sieve_and_heapsort_over_twelve_mib_match_native() {
    let mut cfg = EmuConfig::new(Era::V2_6_36, 32 << 20);
    cfg.check_every_fault = false;
    let r = assert_same("sort", &cfg);
    assert!(
        r.output.starts_with(b"primes 0x0000000000089bc3\n"),
        "{}",
        String::from_utf8_lossy(&r.output)
    );
}

#[test]
fn fork_cow_and_swap_check_every_byte_in_every_fixed_era() {
    for era in FIXED {
        let mut cfg = EmuConfig::new(era, 16 << 20);
        // The checker after every fault in the oldest and newest eras
        // (it is quadratic in the run's size), after every syscall in all.
        cfg.check_every_fault = matches!(era, Era::V2_6_33 | Era::V6_18);
        let r = assert_same("forkcow", &cfg);
        assert_eq!(r.exits.len(), 2, "{era:?}");
        assert!(r.stats.switches >= 4 && r.stats.shootdowns > 100, "{era:?} {:?}", r.stats);
        if cfg.check_every_fault {
            assert!(r.stats.checks > r.stats.faults, "{era:?} {:?}", r.stats);
        }
    }
}

#[test]
fn no_stale_translation_survives_cow_reclaim_dontneed_mprotect_or_munmap() {
    for era in FIXED {
        let cfg = EmuConfig::new(era, 16 << 20);
        let r = assert_same("stale", &cfg);
        // The children killed by the write after mprotect and the read
        // after munmap, with ptemu's error codes and exact addresses.
        let segvs: Vec<_> = r
            .exits
            .values()
            .filter_map(|e| match e {
                Exit::Segv(s) => Some((s.addr, s.error_code, s.code.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            segvs,
            vec![(0x4000_0000_3000, 0x7, "accerr"), (0x4000_0000_0000, 0x4, "maperr")],
            "{era:?}"
        );
    }
}

#[test]
fn ignoring_the_shootdowns_lets_stale_translations_through() {
    // The control: the same program with mm's shootdowns ignored sees the
    // parent's post-fork write in the child and a reused frame after
    // reclaim. If this ever matched the native run, the test above would
    // prove nothing.
    let mut cfg = EmuConfig::new(Era::V2_6_34, 16 << 20);
    cfg.ignore_shootdowns = true;
    let ((native, _), r) = run_both("stale", &cfg);
    let out = String::from_utf8_lossy(&r.output);
    assert_ne!(r.output, native, "{out}");
    assert!(out.contains("child-saw 0x0000000000000002"), "{out}");
    assert!(!out.contains("after-reclaim 0x0000000000000505"), "{out}");
}

#[test]
fn the_seeds_oops_is_reached_by_machine_code_under_2_6_34_rc3() {
    let cfg = EmuConfig::new(Era::V2_6_34Rc3, 16 << 20);
    let ((native, _), r) = run_both("seed", &cfg);
    let oops = r.oops.as_ref().expect("2.6.34-rc3 must oops");
    assert_eq!(oops.kind, OopsKind::UseAfterFree);
    assert_eq!(oops.during, "rmap_walk");
    assert_eq!(oops.freed_by, "unlink_anon_vmas");
    assert_eq!(oops.freed_at_step, "process 2 exit_group");
    assert_eq!(oops.step, "process 1 reclaim");
    // Everything printed before the oops is what the host printed.
    assert!(native.starts_with(&r.output) && !r.output.is_empty());
    assert!(!String::from_utf8_lossy(&r.output).contains("a-read-again"));
    // The checker saw A's mapping become unreachable at A's swap-in
    // fault, then, at B's exit, the mapping freed (and the unreachable
    // mapping now naming a freed anon_vma), each once.
    let kinds: Vec<_> = r.violations.iter().map(|(at, v)| (at.as_str(), v.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("fault (process 1 read fault at 0x7f0000000000)", InvariantKind::RmapUnreachable),
            ("syscall (process 2 exit_group)", InvariantKind::RmapUnreachable),
            ("syscall (process 2 exit_group)", InvariantKind::MappingFreed),
        ]
    );
}

#[test]
fn the_seeds_program_runs_clean_in_the_fixed_eras() {
    for era in FIXED {
        let r = assert_same("seed", &EmuConfig::new(era, 16 << 20));
        assert!(String::from_utf8_lossy(&r.output).contains("a-read-again 0x00000000000000aa"));
    }
}
