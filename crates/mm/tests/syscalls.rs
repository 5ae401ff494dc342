//! mmap, munmap, mprotect and madvise fail as Linux's do: the errno and the
//! partial effect of each case below were measured on the host kernel
//! (6.18, a C probe calling the real system calls and reading
//! /proc/self/maps); the 2.6.x sources follow the same rules for these
//! cases, so every era is held to them.

use ptemu_mm as mm;

use mm::{Era, Errno, Machine, MachineConfig, Outcome, Pid, Prot, SysResult, TASK_SIZE};

const B: u64 = 0x7f00_0000_0000;
const K: u64 = 4096;

fn sys(o: Outcome<SysResult>) -> SysResult {
    match o {
        Outcome::Done(r) => r,
        other => panic!("expected the call to return, got {other:?}"),
    }
}

fn maps(m: &Machine, p: Pid) -> Vec<String> {
    m.maps(p).unwrap().iter().map(|e| format!("{:x}-{:x} {}", e.start, e.end, e.perms())).collect()
}

fn setup(era: Era) -> (Machine, Pid) {
    let mut m = Machine::new(MachineConfig::new(era)).unwrap();
    let a = m.spawn().unwrap();
    (m, a)
}

fn clean(m: &Machine) {
    let v = m.check().unwrap();
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn mprotect_errno_and_partial_effects() {
    for era in Era::ALL {
        let (mut m, a) = setup(era);
        sys(m.mmap(a, B, 2 * K, Prot::Rw).unwrap()).unwrap();
        sys(m.mmap(a, B + 3 * K, K, Prot::Rw).unwrap()).unwrap();
        m.write(a, B, 1).unwrap();
        m.write(a, B + K, 2).unwrap();
        // Over a hole: the VMA before it changes, then ENOMEM.
        assert_eq!(sys(m.mprotect(a, B, 4 * K, Prot::R).unwrap()), Err(Errno::ENOMEM), "{era}");
        assert_eq!(
            maps(&m, a),
            ["7f0000000000-7f0000002000 r--p", "7f0000003000-7f0000004000 rw-p"]
        );
        assert_eq!(m.pte(a, B).unwrap().raw & 2, 0, "{era}: the entry follows the VMA");
        // Starting in the hole: nothing changes.
        assert_eq!(sys(m.mprotect(a, B + 2 * K, 2 * K, Prot::R).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(maps(&m, a)[1], "7f0000003000-7f0000004000 rw-p");
        // Running past the last VMA: it changes, then ENOMEM.
        assert_eq!(sys(m.mprotect(a, B + 3 * K, 2 * K, Prot::R).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(maps(&m, a)[1], "7f0000003000-7f0000004000 r--p");
        assert_eq!(sys(m.mprotect(a, B + 1, K, Prot::R).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.mprotect(a, B, 0, Prot::R).unwrap()), Ok(()));
        assert_eq!(sys(m.mprotect(a, B + 8 * K, 0, Prot::R).unwrap()), Ok(()));
        assert_eq!(sys(m.mprotect(a, B + 1, 0, Prot::R).unwrap()), Err(Errno::EINVAL));
        // A length of 100 bytes is one page: the VMA splits.
        assert_eq!(sys(m.mprotect(a, B, 100, Prot::Rw).unwrap()), Ok(()));
        assert_eq!(
            maps(&m, a),
            [
                "7f0000000000-7f0000001000 rw-p",
                "7f0000001000-7f0000002000 r--p",
                "7f0000003000-7f0000004000 r--p"
            ]
        );
        assert_eq!(sys(m.mprotect(a, B + 100 * K, K, Prot::R).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(
            sys(m.mprotect(a, 0x7fff_0000_0000, 0u64.wrapping_sub(K), Prot::R).unwrap()),
            Err(Errno::ENOMEM)
        );
        assert_eq!(m.read(a, B + K).unwrap(), Outcome::Done(2));
        clean(&m);
    }
}

#[test]
fn madvise_dontneed_errno_and_partial_effects() {
    for era in Era::ALL {
        let (mut m, a) = setup(era);
        sys(m.mmap(a, B, 2 * K, Prot::Rw).unwrap()).unwrap();
        sys(m.mmap(a, B + 3 * K, K, Prot::Rw).unwrap()).unwrap();
        m.write(a, B, 1).unwrap();
        m.write(a, B + 3 * K, 2).unwrap();
        // Over a hole: everything mapped is zapped, then ENOMEM.
        assert_eq!(sys(m.madvise_dontneed(a, B, 4 * K).unwrap()), Err(Errno::ENOMEM), "{era}");
        assert!(m.pte(a, B).unwrap().kind.is_none());
        assert!(m.pte(a, B + 3 * K).unwrap().kind.is_none());
        assert_eq!(
            maps(&m, a),
            ["7f0000000000-7f0000002000 rw-p", "7f0000003000-7f0000004000 rw-p"]
        );
        m.write(a, B + 3 * K, 2).unwrap();
        assert_eq!(sys(m.madvise_dontneed(a, B + 2 * K, 2 * K).unwrap()), Err(Errno::ENOMEM));
        assert!(m.pte(a, B + 3 * K).unwrap().kind.is_none(), "{era}: zapped after the hole");
        m.write(a, B + 3 * K, 2).unwrap();
        assert_eq!(sys(m.madvise_dontneed(a, B + 3 * K, 3 * K).unwrap()), Err(Errno::ENOMEM));
        assert!(m.pte(a, B + 3 * K).unwrap().kind.is_none(), "{era}: zapped before the end");
        assert_eq!(sys(m.madvise_dontneed(a, B + 2 * K, K).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.madvise_dontneed(a, B + 100 * K, K).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.madvise_dontneed(a, B + 1, K).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.madvise_dontneed(a, B, 0).unwrap()), Ok(()));
        assert_eq!(sys(m.madvise_dontneed(a, B + 100 * K, 0).unwrap()), Ok(()));
        assert_eq!(sys(m.madvise_dontneed(a, B + 1, 0).unwrap()), Err(Errno::EINVAL));
        let wrap = 0u64.wrapping_sub(K);
        assert_eq!(sys(m.madvise_dontneed(a, 0x7fff_0000_0000, wrap).unwrap()), Err(Errno::EINVAL));
        assert_eq!(
            sys(m.madvise_dontneed(a, 0x7fff_0000_0000, u64::MAX).unwrap()),
            Err(Errno::EINVAL)
        );
        m.write(a, B, 1).unwrap();
        assert_eq!(sys(m.madvise_dontneed(a, B, 100).unwrap()), Ok(()));
        assert_eq!(m.read(a, B).unwrap(), Outcome::Done(0));
        clean(&m);
    }
}

#[test]
fn munmap_errno() {
    for era in Era::ALL {
        let (mut m, a) = setup(era);
        assert_eq!(sys(m.munmap(a, B, K).unwrap()), Ok(()), "{era}: nothing mapped is success");
        assert_eq!(sys(m.munmap(a, B + 1, K).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.munmap(a, B, 0).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.munmap(a, TASK_SIZE - K, 2 * K).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.munmap(a, TASK_SIZE + K, K).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.munmap(a, TASK_SIZE, K).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.munmap(a, TASK_SIZE - K, K).unwrap()), Ok(()));
        sys(m.mmap(a, B, 2 * K, Prot::Rw).unwrap()).unwrap();
        assert_eq!(sys(m.munmap(a, B, 100).unwrap()), Ok(()));
        assert_eq!(maps(&m, a), ["7f0000001000-7f0000002000 rw-p"]);
        clean(&m);
    }
}

#[test]
fn mmap_errno() {
    for era in Era::ALL {
        let (mut m, a) = setup(era);
        assert_eq!(sys(m.mmap(a, B, 0, Prot::Rw).unwrap()), Err(Errno::EINVAL), "{era}");
        assert_eq!(sys(m.mmap(a, B + 1, K, Prot::Rw).unwrap()), Err(Errno::EINVAL));
        assert_eq!(sys(m.mmap(a, B, 100, Prot::Rw).unwrap()), Ok(()));
        assert_eq!(maps(&m, a), ["7f0000000000-7f0000001000 rw-p"]);
        assert_eq!(sys(m.mmap(a, B, K, Prot::Rw).unwrap()), Err(Errno::EEXIST));
        assert_eq!(sys(m.mmap(a, B - K, 4 * K, Prot::Rw).unwrap()), Err(Errno::EEXIST));
        assert_eq!(sys(m.mmap(a, TASK_SIZE - K, 2 * K, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.mmap(a, TASK_SIZE, K, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.mmap(a, 1 << 47, K, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        // Past the end, the range check comes before the alignment check.
        assert_eq!(sys(m.mmap(a, TASK_SIZE + 1, K, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.mmap(a, (1 << 47) + 1, K, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.mmap(a, u64::MAX - 100, K, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        assert_eq!(sys(m.mmap(a, B, u64::MAX, Prot::Rw).unwrap()), Err(Errno::ENOMEM));
        // Root may map below vm.mmap_min_addr (CAP_SYS_RAWIO).
        assert_eq!(sys(m.mmap(a, 0, K, Prot::Rw).unwrap()), Ok(()));
        assert_eq!(sys(m.mmap(a, TASK_SIZE - K, K, Prot::Rw).unwrap()), Ok(()));
        m.write(a, TASK_SIZE - K, 7).unwrap();
        assert_eq!(m.read(a, TASK_SIZE - K).unwrap(), Outcome::Done(7));
        clean(&m);
    }
}

/// A failed call leaves the machine usable and consistent: after each
/// failure above the checker is clean and the process runs on.
#[test]
fn failures_keep_the_machine_running() {
    let (mut m, a) = setup(Era::V6_18);
    sys(m.mmap(a, B, K, Prot::Rw).unwrap()).unwrap();
    for _ in 0..3 {
        assert!(sys(m.mprotect(a, B, 3 * K, Prot::None).unwrap()).is_err());
        assert!(sys(m.madvise_dontneed(a, B, 3 * K).unwrap()).is_err());
        assert!(sys(m.mmap(a, B, K, Prot::Rw).unwrap()).is_err());
    }
    assert_eq!(sys(m.mprotect(a, B, K, Prot::Rw).unwrap()), Ok(()));
    m.write(a, B, 3).unwrap();
    assert_eq!(m.read(a, B).unwrap(), Outcome::Done(3));
    assert_eq!(sys(m.munmap(a, B, K).unwrap()), Ok(()));
    assert!(m.maps(a).unwrap().is_empty());
    m.exit(a).unwrap();
    clean(&m);
}
