//! The seed's scenario (Linus, 2010-04-12) in code, under every era, plus
//! the grandchild case and the page that lives only in the swap cache.

use mm::{Era, InvariantKind, Machine, MachineConfig, OopsKind, Outcome, Pid};
use ptemu_mm as mm;

const V: u64 = 0x7f00_0000_0000;

fn names(m: &Machine) -> Vec<&'static str> {
    let mut v: Vec<_> = m.check().unwrap().iter().map(|v| v.name()).collect();
    v.dedup();
    v
}

fn done<T: std::fmt::Debug>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        other => panic!("expected completion, got {other:?}"),
    }
}

/// A writes V, forks B, V is reclaimed, B then A fault it back in.
fn seed_until_both_mapped(era: Era, keep_cache: bool) -> (Machine, Pid, Pid) {
    let mut m = Machine::new(MachineConfig::new(era)).unwrap();
    m.set_step("spawn A");
    let a = m.spawn().unwrap();
    done(m.mmap(a, V, 4096, mm::Prot::Rw).unwrap()).unwrap();
    m.set_step("A write V");
    done(m.write(a, V, 0xaa).unwrap());
    m.set_step("A fork B");
    let b = done(m.fork(a).unwrap());
    m.set_step("reclaim A V");
    let r = done(m.reclaim(a, V, 4096, keep_cache).unwrap());
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(m.pte(a, V).unwrap().kind.as_swap().is_some());
    assert!(m.pte(b, V).unwrap().kind.as_swap().is_some());
    assert_eq!(names(&m), Vec::<&str>::new(), "clean after reclaim under {era}");
    m.set_step("B read V");
    assert_eq!(done(m.read(b, V).unwrap()), 0xaa);
    m.set_step("A read V");
    assert_eq!(done(m.read(a, V).unwrap()), 0xaa);
    assert!(m.same_page((a, V), (b, V)).unwrap());
    (m, a, b)
}

#[test]
fn seed_scenario_every_era() {
    for keep in [false, true] {
        for era in Era::ALL {
            let (mut m, a, b) = seed_until_both_mapped(era, keep);
            let buggy = matches!(era, Era::V2_6_34Rc3);
            let after_map = names(&m);
            if buggy {
                assert_eq!(after_map, vec!["rmap-unreachable"], "{era} keep={keep}");
            } else {
                assert!(after_map.is_empty(), "{era} keep={keep}: {after_map:?}");
            }
            m.set_step("B exit");
            done(m.exit(b).unwrap());
            assert!(!m.process_exists(b));
            let after_exit = m.check().unwrap();
            m.set_step("rmap-walk A V");
            let walk = m.rmap_walk(a, V).unwrap();
            if buggy {
                assert!(
                    after_exit.iter().any(|v| v.kind == InvariantKind::MappingFreed),
                    "{after_exit:?}"
                );
                let o = walk.oops().expect("use after free");
                assert_eq!(o.kind, OopsKind::UseAfterFree);
                assert_eq!(o.freed_at_step, "B exit");
                // Reclaim walks the same freed anon_vma: an oops, after
                // add_to_swap, with the page still mapped by A.
                let r = m.reclaim(a, V, 4096, false).unwrap();
                assert_eq!(r.oops().map(|o| o.kind), Some(OopsKind::UseAfterFree), "{r:?}");
                assert!(m.pte(a, V).unwrap().kind.is_present());
                assert_eq!(done(m.read(a, V).unwrap()), 0xaa);
                // After a grace period a new anon_vma takes the slot.
                m.rcu_grace_period();
                let c = m.spawn().unwrap();
                done(m.mmap(c, V, 4096, mm::Prot::Rw).unwrap()).unwrap();
                done(m.write(c, V, 1).unwrap());
                let again = m.rmap_walk(a, V).unwrap();
                assert_eq!(again.oops().map(|o| o.kind), Some(OopsKind::Reused), "{again:?}");
                // The machine stays usable: A still reads its byte.
                assert_eq!(done(m.read(a, V).unwrap()), 0xaa);
            } else {
                assert!(after_exit.is_empty(), "{era} keep={keep}: {after_exit:?}");
                let hits = done(walk).expect("page mapped");
                assert_eq!(hits.len(), 1);
                assert!(hits[0].mapped && hits[0].pid == a);
                done(m.exit(a).unwrap());
                let fin = m.check().unwrap();
                assert!(fin.is_empty(), "{era}: {fin:?}");
                assert_eq!(
                    done(m.shrink_all().unwrap()),
                    0,
                    "{era}: teardown left pages for reclaim"
                );
                assert_eq!(
                    m.free_frames(),
                    m.frame_count() - 1,
                    "{era}: only the zero page is left"
                );
                assert!(m.swap_slots().is_empty(), "{era}");
                assert_eq!(m.live_anon_vmas(), 0);
            }
        }
    }
}

#[test]
fn grandchild_defeats_the_seed_patch_alone() {
    for era in Era::ALL {
        let mut m = Machine::new(MachineConfig::new(era)).unwrap();
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4096, mm::Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 7).unwrap());
        let b = done(m.fork(a).unwrap());
        let c = done(m.fork(b).unwrap());
        done(m.reclaim(a, V, 4096, false).unwrap());
        m.set_step("C read V");
        assert_eq!(done(m.read(c, V).unwrap()), 7);
        done(m.read(a, V).unwrap());
        done(m.read(b, V).unwrap());
        let v = names(&m);
        let expect_bug = matches!(era, Era::V2_6_34Rc3 | Era::Seed);
        assert_eq!(!v.is_empty(), expect_bug, "{era}: {v:?}");
        if expect_bug {
            assert!(v.contains(&"rmap-unreachable"), "{era}: {v:?}");
        }
    }
}

/// The shrinker used to pass over a page whose rmap walk oopses and go on
/// to the next one. In 2.6.34-rc3, once B's exit has freed the anon_vma
/// A's swapped-in page names, an allocation that has to reclaim that page
/// oopses in try_to_unmap: the operation that allocated ends with that
/// oops, and the machine stays usable.
#[test]
fn shrinker_oops_ends_the_allocating_operation() {
    let cfg = MachineConfig::new(Era::V2_6_34Rc3).memory(64 * 4096).swap(vec![16 * 4096]);
    let mut m = Machine::new(cfg).unwrap();
    let a = m.spawn().unwrap();
    done(m.mmap(a, V, 4096, mm::Prot::Rw).unwrap()).unwrap();
    done(m.write(a, V, 0xaa).unwrap());
    let b = done(m.fork(a).unwrap());
    done(m.reclaim(a, V, 4096, false).unwrap());
    assert_eq!(done(m.read(b, V).unwrap()), 0xaa);
    assert_eq!(done(m.read(a, V).unwrap()), 0xaa);
    m.set_step("B exit");
    done(m.exit(b).unwrap());
    let bad = m.mapped_pfn(a, V).unwrap().unwrap();
    // Fill memory through A's page table (already there: one frame per
    // write, no reclaim yet), every new page above the bad one.
    done(m.mmap(a, V + 4096, 100 * 4096, mm::Prot::Rw).unwrap()).unwrap();
    let mut i = 1;
    while m.free_frames() > 0 {
        m.set_step(format!("fill {i}"));
        done(m.write(a, V + i * 4096, i as u8).unwrap());
        assert!(m.mapped_pfn(a, V + i * 4096).unwrap().unwrap() > bad);
        i += 1;
    }
    assert!(i > 40, "filled only {i} pages");
    let before = m.check().unwrap();
    // execve needs a frame for the new PGD; the shrinker takes the
    // lowest LRU page, the bad one.
    m.set_step("execve A");
    let o = m.execve(a).unwrap();
    let oops = o.oops().unwrap_or_else(|| panic!("expected an oops, got {o:?}"));
    assert_eq!(oops.kind, OopsKind::UseAfterFree);
    assert_eq!(oops.page, Some(bad));
    assert_eq!(oops.freed_at_step, "B exit");
    assert_eq!(oops.step, "execve A");
    // Nothing changed: A keeps its address space and every byte.
    assert_eq!(m.check().unwrap(), before);
    assert_eq!(m.free_frames(), 0);
    assert_eq!(done(m.read(a, V).unwrap()), 0xaa);
    for k in 1..i {
        assert_eq!(done(m.read(a, V + k * 4096).unwrap()), k as u8, "page {k}");
    }
    // fork needs a frame for the child's PGD: the same oops is the fork's
    // outcome, and no half-built child is left behind.
    m.set_step("A fork");
    let procs_before = m.processes().len();
    let f = m.fork(a).unwrap();
    let oops = f.oops().unwrap_or_else(|| panic!("expected an oops from fork, got {f:?}"));
    assert_eq!(
        (oops.kind, oops.page, oops.step.as_str()),
        (OopsKind::UseAfterFree, Some(bad), "A fork")
    );
    assert_eq!(m.processes().len(), procs_before);
    assert_eq!(m.check().unwrap(), before);
    // A write fault that needs a frame meets the same oops, as the
    // access's outcome.
    m.set_step("A write past the fill");
    let w = match m.write(a, V + i * 4096, 1) {
        Ok(Outcome::Oops(o)) => o,
        other => panic!("expected the oops as the write's outcome, got {other:?}"),
    };
    assert_eq!(
        (w.kind, w.page, w.step.as_str()),
        (OopsKind::UseAfterFree, Some(bad), "A write past the fill")
    );
    // Freeing memory another way lets allocations succeed again.
    done(m.munmap(a, V + 4096, 4096).unwrap()).unwrap();
    done(m.write(a, V + i * 4096, 1).unwrap());
    done(m.exit(a).unwrap());
    let left: Vec<_> = m.check().unwrap().into_iter().map(|v| v.name()).collect();
    assert!(left.is_empty(), "{left:?}");
}
