//! QEMU's walker against ptemu's: every disagreement is QEMU's known early
//! Accessed bit, and the classifier does not wave other differences
//! through.

use kvm::check::Outcome;
use ptemu_unicorn::check::{self, Class, QemuCheckOptions};

#[test]
fn qemu_agrees_with_ptemu_but_for_its_early_accessed_bits() {
    let r = check::run(&QemuCheckOptions { seed: 7, accesses: 3000, kvm: false }).unwrap();
    assert_eq!(r.total, 3000);
    let unexplained: Vec<String> = r
        .disagreements
        .iter()
        .filter(|(c, _)| *c == Class::Unexplained)
        .take(3)
        .map(|(_, t)| t.to_string())
        .collect();
    assert!(unexplained.is_empty(), "{}", unexplained.join("\n"));
    assert!(r.agreed > 1500, "{:?}", r.classes);
    assert!(r.classes.get(&Class::QemuAccessedBeforeFault).is_some_and(|&n| n > 100));
    // The comparison saw every kind of outcome, so the error codes and
    // CR2 it agreed on were real ones.
    for k in [
        "CPU: #PF not present",
        "CPU: #PF protection",
        "CPU: #PF reserved bit",
        "CPU: access completed",
    ] {
        assert!(r.coverage.counts.get(k).is_some_and(|&n| n > 100), "{k}: {:?}", r.coverage.counts);
    }
}

#[test]
fn a_different_error_code_or_entry_is_unexplained() {
    let r = check::run(&QemuCheckOptions { seed: 3, accesses: 500, kvm: false }).unwrap();
    let (_, t) = r
        .disagreements
        .iter()
        .find(|(c, _)| *c == Class::QemuAccessedBeforeFault)
        .expect("QEMU's deviation shows in 500 accesses");
    let mut wrong_code = t.clone();
    if let Outcome::PageFault { error_code, .. } = &mut wrong_code.hw {
        *error_code ^= 0x2;
    }
    assert_eq!(check::classify(&wrong_code), Class::Unexplained);
    let mut wrong_bit = t.clone();
    let e = wrong_bit.entries.iter_mut().find(|e| e.cpu_after != e.ptemu_after).unwrap();
    e.cpu_after ^= 1 << 1; // R/W changed as well as A set
    assert_eq!(check::classify(&wrong_bit), Class::Unexplained);
}
