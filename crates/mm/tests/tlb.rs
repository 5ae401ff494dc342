//! The emulated TLB shootdown: a flush is recorded exactly where the kernel
//! flushes after changing or removing a present PTE, for the right process
//! and pages, and nowhere a not-present entry was merely filled in.

use ptemu_mm as mm;

use mm::{Era, Machine, MachineConfig, Outcome, Pid, Prot, TlbFlush};
use pgtable::walk::PfErrorCode;

const V: u64 = 0x7f00_0000_0000;

fn done<T: std::fmt::Debug>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        other => panic!("expected completion, got {other:?}"),
    }
}

fn page(pid: Pid, va: u64) -> TlbFlush {
    TlbFlush { pid, start: va, end: va + 4096 }
}

fn setup(era: Era) -> (Machine, Pid) {
    let mut m = Machine::new(MachineConfig::new(era)).unwrap();
    m.track_tlb_flushes(true);
    let a = m.spawn().unwrap();
    done(m.mmap(a, V, 4 * 4096, Prot::Rw).unwrap()).unwrap();
    (m, a)
}

#[test]
fn untracked_machine_records_nothing() {
    let mut m = Machine::new(MachineConfig::new(Era::V2_6_34)).unwrap();
    let a = m.spawn().unwrap();
    done(m.mmap(a, V, 4096, Prot::Rw).unwrap()).unwrap();
    done(m.write(a, V, 1).unwrap());
    done(m.munmap(a, V, 4096).unwrap()).unwrap();
    assert!(!m.tlb_flush_pending());
    assert!(m.take_tlb_flushes().is_empty());
}

#[test]
fn filling_not_present_entries_needs_no_flush() {
    for era in [Era::V2_6_33, Era::V2_6_34Rc3, Era::V6_18] {
        let (mut m, a) = setup(era);
        done(m.read(a, V).unwrap()); // zero page
        done(m.write(a, V + 4096, 7).unwrap()); // do_anonymous_page
        done(m.reclaim(a, V + 4096, 4096, false).unwrap());
        m.take_tlb_flushes();
        done(m.read(a, V + 4096).unwrap()); // do_swap_page
        assert_eq!(m.take_tlb_flushes(), vec![], "{era:?}");
    }
}

#[test]
fn cow_reclaim_mprotect_munmap_fork_and_exit_flush_where_linux_does() {
    for era in [Era::V2_6_33, Era::V2_6_34Rc3, Era::V6_18] {
        let (mut m, a) = setup(era);
        done(m.write(a, V, 1).unwrap());
        done(m.write(a, V + 4096, 2).unwrap());
        assert_eq!(m.take_tlb_flushes(), vec![]);

        // fork: flush_tlb_mm(parent) only.
        let b = done(m.fork(a).unwrap());
        let f = m.take_tlb_flushes();
        assert_eq!(f.len(), 1, "{era:?} {f:?}");
        assert!(f[0].pid == a && f[0].is_whole_mm());

        // COW in the child: ptep_clear_flush of that page, in the child.
        done(m.write(b, V, 3).unwrap());
        assert_eq!(m.take_tlb_flushes(), vec![page(b, V)], "{era:?}");

        // Reclaim of a page both map: one flush per mapping.
        done(m.reclaim(a, V + 4096, 4096, false).unwrap());
        let mut f = m.take_tlb_flushes();
        f.sort_by_key(|f| f.pid);
        assert_eq!(f, vec![page(a, V + 4096), page(b, V + 4096)], "{era:?}");

        // The parent's write reuses its now-unshared page (wp_page_reuse).
        done(m.write(a, V, 4).unwrap());
        assert_eq!(m.take_tlb_flushes(), vec![page(a, V)], "{era:?}");

        // mprotect taking write permission from a present entry:
        // flush_tlb_range over the VMA it changed.
        done(m.mprotect(a, V, 2 * 4096, Prot::R).unwrap()).unwrap();
        assert_eq!(m.take_tlb_flushes(), vec![TlbFlush { pid: a, start: V, end: V + 2 * 4096 }]);

        // munmap: the zapped range.
        done(m.munmap(a, V + 2 * 4096, 4096).unwrap()).unwrap();
        assert_eq!(
            m.take_tlb_flushes(),
            vec![TlbFlush { pid: a, start: V + 2 * 4096, end: V + 3 * 4096 }]
        );

        // exit: every VMA's range.
        done(m.exit(b).unwrap());
        let f = m.take_tlb_flushes();
        assert!(!f.is_empty() && f.iter().all(|f| f.pid == b), "{f:?}");
        assert!(f.iter().any(|f| f.covers(V)) && f.iter().any(|f| f.covers(V + 3 * 4096)));
        assert!(m.check().unwrap().is_empty());
    }
}

#[test]
fn page_fault_entry_runs_the_handler_for_an_external_walker() {
    let (mut m, a) = setup(Era::V2_6_34);
    // A write #PF on a not-present page: do_anonymous_page maps it.
    let code = PfErrorCode::USER | PfErrorCode::WRITE;
    done(m.page_fault(a, V + 8, code).unwrap());
    assert!(m.mapped_pfn(a, V).unwrap().is_some());
    // Outside every VMA: SIGSEGV with that error code and address.
    let s = m.page_fault(a, 0x1000, code).unwrap();
    let s = s.segv().expect("segv");
    assert_eq!((s.addr, s.error_code), (0x1000, code.bits()));
}
