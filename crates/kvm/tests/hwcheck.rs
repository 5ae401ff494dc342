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

/// The check is not vacuous: a walker with the old QEMU-style rule (A set on
/// the PML4E even when the access then faults) and one that drops the U
/// bit from error codes are both caught, on the entry or outcome at fault.
#[test]
fn a_wrong_walker_is_caught() {
    use pgtable::{PhysAddr, PhysMem};
    let opts = CheckOptions { seed: 3, accesses: 400 };
    let mut sets_a_on_fault = |mem: &mut dyn PhysMem,
                               cr3: PhysAddr,
                               va: pgtable::VirtAddr,
                               access,
                               cpu: &pgtable::CpuState| {
        let r = pgtable::translate(mem, cr3, va, access, cpu);
        if r.is_err() {
            let at = PhysAddr::new(cr3.as_u64() + 8 * va.pml4_index() as u64).unwrap();
            let e = mem.read_u64(at).unwrap();
            if e & 1 != 0 && e & 0x80 == 0 {
                mem.write_u64(at, e | 0x20).unwrap();
            }
        }
        r
    };
    let report = match ptemu_kvm::check::run_with_walker(&opts, &mut sets_a_on_fault) {
        Ok(r) => r,
        Err(KvmError::NoKvm(why)) => {
            eprintln!("SKIPPED: /dev/kvm is not usable here ({why})");
            return;
        }
        Err(e) => panic!("hwcheck failed to run: {e}"),
    };
    assert!(report.agreed < report.total, "the A-on-fault walker went unnoticed");
    let t = &report.disagreements[0];
    assert_eq!(t.hw, t.ptemu, "only the entries should differ: {t}");
    assert_eq!(t.entries[0].ptemu_after, t.entries[0].cpu_after | 0x20, "{t}");

    let mut no_user_bit = |mem: &mut dyn PhysMem, cr3, va, access, cpu: &pgtable::CpuState| {
        pgtable::translate(mem, cr3, va, access, cpu).map_err(|f| match f {
            pgtable::Fault::PageFault(mut pf) => {
                pf.error_code.remove(pgtable::PfErrorCode::USER);
                pgtable::Fault::PageFault(pf)
            }
            other => other,
        })
    };
    let report = ptemu_kvm::check::run_with_walker(&opts, &mut no_user_bit).unwrap();
    assert!(report.agreed < report.total);
    let t = &report.disagreements[0];
    assert!(t.cpu.user, "{t}");
    match (&t.hw, &t.ptemu) {
        (
            ptemu_kvm::check::Outcome::PageFault { error_code: hw, .. },
            ptemu_kvm::check::Outcome::PageFault { error_code: ours, .. },
        ) => assert_eq!(*hw, ours | 0x4, "{t}"),
        _ => panic!("expected two page faults: {t}"),
    }
}
