//! VMAs split and merge as Linux's do. Each sequence below was run on the
//! host kernel (6.18) by a C probe (mmap with MAP_FIXED_NOREPLACE,
//! mprotect, munmap, fork, then /proc/self/maps); the 6.18 era must list
//! exactly what the host listed. The 2.6.x eras differ where their
//! sources do: no fork-child rule (965f55dea0e3 is 3.0) and no
//! unaccounting of unfaulted VMAs on mprotect.

use ptemu_mm as mm;

use mm::{Era, Machine, MachineConfig, Outcome, Pid, Prot, SysResult};

const B: u64 = 0x7f00_0000_0000;
const K: u64 = 4096;

fn ok(o: Outcome<SysResult>) {
    match o {
        Outcome::Done(Ok(())) => {}
        other => panic!("expected success, got {other:?}"),
    }
}

struct T {
    m: Machine,
    era: Era,
}

impl T {
    fn new(era: Era) -> (Self, Pid) {
        let mut m = Machine::new(MachineConfig::new(era).memory(4 << 20)).unwrap();
        let a = m.spawn().unwrap();
        (T { m, era }, a)
    }
    fn mmap(&mut self, p: Pid, at: u64, pages: u64, prot: Prot) {
        ok(self.m.mmap(p, B + at * K, pages * K, prot).unwrap());
    }
    fn mprotect(&mut self, p: Pid, at: u64, pages: u64, prot: Prot) {
        ok(self.m.mprotect(p, B + at * K, pages * K, prot).unwrap());
    }
    fn write(&mut self, p: Pid, at: u64) {
        assert_eq!(self.m.write(p, B + at * K, 1).unwrap(), Outcome::Done(()));
    }
    /// The maps as (first page, pages, perms), pages counted from B.
    fn maps(&self, p: Pid) -> Vec<(u64, u64, String)> {
        self.m
            .maps(p)
            .unwrap()
            .iter()
            .map(|e| ((e.start - B) / K, (e.end - e.start) / K, e.perms()))
            .collect()
    }
    fn expect(&self, p: Pid, want: &[(u64, u64, &str)], what: &str) {
        let want: Vec<(u64, u64, String)> =
            want.iter().map(|&(a, n, s)| (a, n, s.to_string())).collect();
        assert_eq!(self.maps(p), want, "{}: {what}", self.era);
        let v = self.m.check().unwrap();
        assert!(v.is_empty(), "{}: {what}: {v:?}", self.era);
    }
    fn modern(&self) -> bool {
        self.era == Era::V6_18
    }
}

#[test]
fn split_and_merge_back() {
    for era in Era::ALL {
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 3, Prot::Rw);
        (0..3).for_each(|i| t.write(a, i));
        t.mprotect(a, 1, 1, Prot::R);
        t.expect(a, &[(0, 1, "rw-p"), (1, 1, "r--p"), (2, 1, "rw-p")], "middle r");
        t.mprotect(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 3, "rw-p")], "back to rw");
        t.mprotect(a, 1, 1, Prot::R);
        t.mprotect(a, 2, 1, Prot::R);
        t.expect(a, &[(0, 1, "rw-p"), (1, 2, "r--p")], "middle r, then the last page joins it");
        // The pages are where they were, through the merged VMAs' rmap.
        for i in 0..3 {
            assert_eq!(t.m.read(a, B + i * K).unwrap(), Outcome::Done(1));
        }
        // munmap of the middle and a new mapping there: one VMA again.
        t.mprotect(a, 0, 3, Prot::Rw);
        t.expect(a, &[(0, 3, "rw-p")], "all rw");
        ok(t.m.munmap(a, B + K, K).unwrap());
        t.expect(a, &[(0, 1, "rw-p"), (2, 1, "rw-p")], "munmap middle");
        t.mmap(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 3, "rw-p")], "remap middle");
        // MADV_DONTNEED splits nothing.
        ok(t.m.madvise_dontneed(a, B + K, K).unwrap());
        t.expect(a, &[(0, 3, "rw-p")], "dontneed middle");
        t.m.exit(a).unwrap();
        assert!(t.m.check().unwrap().is_empty());
    }
}

#[test]
fn adjacent_mmaps_merge() {
    for era in Era::ALL {
        let (mut t, a) = T::new(era);
        t.mmap(a, 1, 1, Prot::Rw);
        t.mmap(a, 0, 1, Prot::Rw);
        t.mmap(a, 2, 1, Prot::Rw);
        t.expect(a, &[(0, 3, "rw-p")], "three adjacent rw mmaps");
        t.mmap(a, 3, 1, Prot::R);
        t.mmap(a, 4, 1, Prot::R);
        t.expect(a, &[(0, 3, "rw-p"), (3, 2, "r--p")], "different protections stay apart");
    }
}

#[test]
fn vm_account_keeps_same_perms_apart() {
    for era in Era::ALL {
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 1, Prot::R);
        t.mmap(a, 1, 1, Prot::Rw);
        t.mprotect(a, 1, 1, Prot::R);
        if t.modern() {
            t.expect(a, &[(0, 2, "r--p")], "unfaulted rw -> r loses VM_ACCOUNT and merges");
        } else {
            t.expect(a, &[(0, 1, "r--p"), (1, 1, "r--p")], "VM_ACCOUNT stays (2.6.x)");
        }
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 1, Prot::R);
        t.mmap(a, 1, 1, Prot::Rw);
        t.write(a, 1);
        t.mprotect(a, 1, 1, Prot::R);
        t.expect(a, &[(0, 1, "r--p"), (1, 1, "r--p")], "faulted rw -> r keeps VM_ACCOUNT");
        t.mprotect(a, 1, 1, Prot::Rw);
        t.mprotect(a, 0, 1, Prot::Rw);
        t.expect(a, &[(0, 2, "rw-p")], "both rw: accounted, mergeable");
    }
}

#[test]
fn different_anon_vmas_merge_only_one_side() {
    for era in Era::ALL {
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 1, Prot::Rw);
        t.mmap(a, 2, 1, Prot::Rw);
        t.write(a, 0);
        t.write(a, 2);
        t.mmap(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 2, "rw-p"), (2, 1, "rw-p")], "new mapping between two anon_vmas");
        // Split and merge back inside the joined VMA: still apart from the right.
        t.write(a, 1);
        t.mprotect(a, 1, 1, Prot::R);
        t.mprotect(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 2, "rw-p"), (2, 1, "rw-p")], "r and back");
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 1, Prot::Rw);
        t.mmap(a, 2, 1, Prot::Rw);
        t.write(a, 2);
        t.mmap(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 3, "rw-p")], "only the right one has an anon_vma: all three join");
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 1, Prot::Rw);
        t.mmap(a, 2, 1, Prot::Rw);
        t.write(a, 0);
        t.write(a, 2);
        t.mmap(a, 1, 1, Prot::R);
        t.mprotect(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 2, "rw-p"), (2, 1, "rw-p")], "mprotect between two anon_vmas");
        for i in [0, 2] {
            assert_eq!(t.m.read(a, B + i * K).unwrap(), Outcome::Done(1));
        }
    }
}

#[test]
fn fork_children_do_not_merge_unfaulted_neighbours_in_6_18() {
    for era in Era::ALL {
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 2, Prot::Rw);
        t.write(a, 0);
        t.mmap(a, 256, 1, Prot::Rw);
        let c = t.m.fork(a).unwrap().done().unwrap();
        t.mmap(c, 2, 1, Prot::Rw);
        if t.modern() {
            t.expect(c, &[(0, 2, "rw-p"), (2, 1, "rw-p"), (256, 1, "rw-p")], "child mmap");
        } else {
            t.expect(c, &[(0, 3, "rw-p"), (256, 1, "rw-p")], "child mmap (2.6.x)");
        }
        // Split and back inside the forked VMA: same anon_vma, merges.
        t.mprotect(c, 0, 1, Prot::R);
        t.mprotect(c, 0, 1, Prot::Rw);
        if t.modern() {
            t.expect(c, &[(0, 2, "rw-p"), (2, 1, "rw-p"), (256, 1, "rw-p")], "child r and back");
        } else {
            t.expect(c, &[(0, 3, "rw-p"), (256, 1, "rw-p")], "child r and back (2.6.x)");
        }
        // A forked VMA the parent never faulted has no anon_vma: merges.
        t.mmap(c, 257, 1, Prot::Rw);
        t.write(c, 256);
        t.mmap(c, 258, 1, Prot::Rw);
        let tail = if t.modern() {
            vec![(0, 2, "rw-p"), (2, 1, "rw-p"), (256, 3, "rw-p")]
        } else {
            vec![(0, 3, "rw-p"), (256, 3, "rw-p")]
        };
        t.expect(c, &tail, "child: unfaulted forked VMA, then its own anon_vma");
        t.mmap(a, 2, 1, Prot::Rw);
        t.expect(a, &[(0, 3, "rw-p"), (256, 1, "rw-p")], "the parent merges");
        assert_eq!(t.m.read(c, B).unwrap(), Outcome::Done(1));
        t.m.exit(c).unwrap();
        t.m.exit(a).unwrap();
        assert!(t.m.check().unwrap().is_empty());
    }
}

#[test]
fn fork_children_mprotect_in_both_directions() {
    for era in Era::ALL {
        // Case 2: the child's range has no anon_vma, the neighbour was cloned.
        let (mut t, a) = T::new(era);
        t.mmap(a, 0, 1, Prot::R);
        t.mmap(a, 1, 1, Prot::Rw);
        t.write(a, 1);
        let c = t.m.fork(a).unwrap().done().unwrap();
        t.mprotect(c, 0, 1, Prot::Rw);
        if t.modern() {
            t.expect(c, &[(0, 1, "rw-p"), (1, 1, "rw-p")], "child: unfaulted -> rw beside forked");
        } else {
            t.expect(c, &[(0, 2, "rw-p")], "child (2.6.x)");
        }
        t.mprotect(a, 0, 1, Prot::Rw);
        t.expect(a, &[(0, 2, "rw-p")], "parent: same call merges");
        // Case 1: the child's range was cloned, the neighbour has none.
        let (mut t, a) = T::new(era);
        t.mmap(a, 1, 1, Prot::Rw);
        t.write(a, 1);
        t.mprotect(a, 1, 1, Prot::R);
        t.mmap(a, 0, 1, Prot::Rw);
        t.expect(a, &[(0, 1, "rw-p"), (1, 1, "r--p")], "rw unfaulted, r faulted");
        let c = t.m.fork(a).unwrap().done().unwrap();
        t.mprotect(c, 1, 1, Prot::Rw);
        if t.modern() {
            t.expect(c, &[(0, 1, "rw-p"), (1, 1, "rw-p")], "child: forked faulted -> rw");
        } else {
            t.expect(c, &[(0, 2, "rw-p")], "child (2.6.x)");
        }
        t.mprotect(a, 1, 1, Prot::Rw);
        t.expect(a, &[(0, 2, "rw-p")], "parent: merges, taking the anon_vma");
        // The merged VMA's rmap reaches the page: reclaim unmaps it from
        // both processes, and both read it back.
        let r = t.m.reclaim(a, B + K, K, false).unwrap().done().unwrap();
        assert!(matches!(r[..], [mm::ReclaimResult::Freed { .. }]), "{era}: {r:?}");
        assert!(t.m.pte(a, B + K).unwrap().kind.as_swap().is_some());
        assert!(t.m.pte(c, B + K).unwrap().kind.as_swap().is_some());
        assert!(t.m.check().unwrap().is_empty());
        assert_eq!(t.m.read(a, B + K).unwrap(), Outcome::Done(1));
        assert_eq!(t.m.read(c, B + K).unwrap(), Outcome::Done(1));
    }
}
