//! The random comparison against the CPU, a few thousand accesses. Skips
//! (visibly) when /dev/kvm is not usable.

use ptemu_kvm::KvmError;
use ptemu_kvm::check::{CheckOptions, run};

#[test]
fn random_accesses_agree_with_the_cpu() {
    let report = match run(&CheckOptions { seed: 1, accesses: 3000 }) {
        Ok(r) => r,
        Err(KvmError::NoKvm(why)) => {
            eprintln!("SKIPPED: /dev/kvm is not usable here ({why})");
            return;
        }
        Err(e) => panic!("hwcheck failed to run: {e}"),
    };
    for t in &report.disagreements {
        eprintln!("{t}");
    }
    assert_eq!(report.total, 3000);
    assert_eq!(report.agreed, report.total, "{} disagreements", report.total - report.agreed);
    // The run really exercised both outcomes and every page size offered.
    let c = &report.coverage.counts;
    if report.features.gbpages {
        assert!(c.get("path ends: 1 GiB leaf").copied().unwrap_or(0) > 0);
    }
    for k in [
        "CPU: access completed",
        "CPU: #PF not present",
        "CPU: #PF protection",
        "CPU: #PF reserved bit",
        "path ends: 4 KiB leaf",
        "path ends: 2 MiB leaf",
        "CPU set a Dirty bit",
    ] {
        assert!(c.get(k).copied().unwrap_or(0) > 0, "nothing counted under {k:?}: {c:?}");
    }
}
