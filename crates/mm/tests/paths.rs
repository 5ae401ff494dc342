//! The fault, fork, zap, mprotect and reclaim paths, entry by entry, with
//! the exact values each era writes.

use ptemu_mm as mm;

use mm::{Era, Machine, MachineConfig, MmError, Outcome, Pid, Prot, SegvCode};
use pgtable::Pfn;
use phys::PageFlags;

const V: u64 = 0x7f00_0000_0000;
const L1TF_SLOT1: u64 = 0x07FF_FFFF_FFFF_FC00;
const CLASSIC_SLOT1: u64 = 0x200;

fn done<T: std::fmt::Debug>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        other => panic!("expected completion, got {other:?}"),
    }
}

fn machine(era: Era) -> Machine {
    Machine::new(MachineConfig::new(era)).unwrap()
}

fn raw(m: &Machine, p: Pid, va: u64) -> u64 {
    m.pte(p, va).unwrap().raw
}

fn pfn(m: &Machine, p: Pid, va: u64) -> u64 {
    m.mapped_pfn(p, va).unwrap().unwrap().0
}

fn clean(m: &Machine) {
    let v = m.check().unwrap();
    assert!(v.is_empty(), "{v:?}");
}

fn modern(era: Era) -> bool {
    era == Era::V6_18
}

#[test]
fn anonymous_faults_write_linux_entries() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 3 * 4096, Prot::Rw).unwrap()).unwrap();
        done(m.mmap(a, V + 0x10000, 4096, Prot::Rx).unwrap()).unwrap();
        // Read: the zero page, special, read-only, NX for a non-exec VMA.
        assert_eq!(done(m.read(a, V).unwrap()), 0);
        let z = m.zero_pfn().0;
        assert_eq!(raw(&m, a, V), 0x8000_0000_0000_0225 | z << 12);
        assert_eq!(done(m.read(a, V + 0x10000).unwrap()), 0);
        assert_eq!(raw(&m, a, V + 0x10000), 0x225 | z << 12);
        // Write: a new zeroed page, P|RW|US|A|D|NX.
        done(m.write(a, V + 4096, 0x5a).unwrap());
        let p = pfn(&m, a, V + 4096);
        assert_eq!(raw(&m, a, V + 4096), 0x8000_0000_0000_0067 | p << 12);
        assert_eq!(done(m.read(a, V + 4096).unwrap()), 0x5a);
        let d = m.page(Pfn(p)).unwrap();
        assert_eq!((d.mapcount, d.refcount), (1, 1));
        assert_eq!(d.flags.contains(PageFlags::ANON_EXCLUSIVE), modern(era));
        assert_eq!(d.flags.contains(PageFlags::ACTIVE), !modern(era));
        // Write to the zero page: do_wp_page gives a new zeroed page.
        done(m.write(a, V, 1).unwrap());
        let q = pfn(&m, a, V);
        assert_ne!(q, z);
        assert_eq!(raw(&m, a, V), 0x8000_0000_0000_0067 | q << 12);
        // Views.
        assert_eq!(m.pagemap(a, V).unwrap(), 1 << 63 | 1 << 56 | q);
        assert_eq!(m.pagemap(a, V + 2 * 4096).unwrap(), 0);
        assert_eq!(m.kpagecount(Pfn(z)).unwrap(), 0);
        // As the host's 6.18 shows them: the zero page ZERO_PAGE|RESERVED;
        // a new anon page UPTODATE|LRU|MMAP|ANON|SWAPBACKED (+ACTIVE in
        // 2.6.x, +bit 34 = PG_anon_exclusive in 6.18).
        assert_eq!(m.kpageflags(Pfn(z)).unwrap(), 1 << 24 | 1 << 32);
        let f = m.kpageflags(Pfn(q)).unwrap();
        let want = if modern(era) { 0x4_0000_5828 } else { 0x5868 };
        assert_eq!(f, want, "{era}: {f:#x}");
        assert_eq!(m.pagemap(a, V + 0x10000).unwrap(), 1 << 63 | z);
        // An adjacent mapping reuses its neighbour's anon_vma
        // (find_mergeable_anon_vma), as the merged VMA Linux would make has one.
        done(m.mmap(a, V + 3 * 4096, 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V + 3 * 4096, 1).unwrap());
        assert_eq!(m.live_anon_vmas(), 1, "{era}");
        clean(&m);
    }
}

#[test]
fn segv_on_no_vma_and_on_protection() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4096, Prot::R).unwrap()).unwrap();
        done(m.mmap(a, V + 4096, 4096, Prot::None).unwrap()).unwrap();
        let s = m.read(a, V - 4096).unwrap();
        assert_eq!(s.segv().map(|s| (s.code, s.error_code)), Some((SegvCode::MapErr, 0x4)));
        let s = m.write(a, V, 1).unwrap();
        assert_eq!(s.segv().map(|s| (s.code, s.error_code)), Some((SegvCode::AccErr, 0x6)));
        done(m.read(a, V).unwrap());
        let s = m.write(a, V, 1).unwrap();
        assert_eq!(s.segv().map(|s| (s.code, s.error_code)), Some((SegvCode::AccErr, 0x7)));
        let s = m.read(a, V + 4096).unwrap();
        assert_eq!(s.segv().map(|s| s.code), Some(SegvCode::AccErr));
        // The process stays inspectable and usable.
        assert!(m.process_exists(a));
        assert_eq!(done(m.read(a, V).unwrap()), 0);
        clean(&m);
    }
}

#[test]
fn cow_after_fork() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 0x11).unwrap());
        let p = pfn(&m, a, V);
        let b = done(m.fork(a).unwrap());
        // Both write-protected; the child's copy is old.
        assert_eq!(raw(&m, a, V), 0x8000_0000_0000_0065 | p << 12);
        assert_eq!(raw(&m, b, V), 0x8000_0000_0000_0045 | p << 12);
        let d = m.page(Pfn(p)).unwrap();
        assert_eq!((d.mapcount, d.refcount), (2, 2));
        assert!(!d.flags.contains(PageFlags::ANON_EXCLUSIVE));
        assert_eq!(m.pagemap(a, V).unwrap() & (1 << 56), 0);
        clean(&m);
        // The child's read sets A through the hardware walk.
        assert_eq!(done(m.read(b, V).unwrap()), 0x11);
        assert_eq!(raw(&m, b, V), 0x8000_0000_0000_0065 | p << 12);
        // The child's write copies.
        done(m.write(b, V, 0x22).unwrap());
        let c = pfn(&m, b, V);
        assert_ne!(c, p);
        assert_eq!(raw(&m, b, V), 0x8000_0000_0000_0067 | c << 12);
        assert_eq!(m.page(Pfn(p)).unwrap().mapcount, 1);
        // The parent, now the only user, reuses its page.
        done(m.write(a, V, 0x33).unwrap());
        assert_eq!(raw(&m, a, V), 0x8000_0000_0000_0067 | p << 12);
        assert_eq!(done(m.read(b, V).unwrap()), 0x22);
        assert_eq!(m.page(Pfn(p)).unwrap().flags.contains(PageFlags::ANON_EXCLUSIVE), modern(era));
        clean(&m);
        done(m.exit(b).unwrap());
        done(m.exit(a).unwrap());
        clean(&m);
        assert_eq!(m.free_frames(), m.frame_count() - 1);
    }
}

#[test]
fn swap_out_and_in_per_era() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 2 * 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 0x77).unwrap());
        done(m.write(a, V + 4096, 0x78).unwrap());
        let r = done(m.reclaim(a, V, 2 * 4096, false).unwrap());
        assert_eq!(r.len(), 2);
        let s1 = if modern(era) { L1TF_SLOT1 | 8 } else { CLASSIC_SLOT1 };
        assert_eq!(raw(&m, a, V), s1, "{era}");
        let sw = m.pte(a, V).unwrap().kind.as_swap().unwrap();
        assert_eq!((sw.swap_type, sw.offset, sw.exclusive), (0, 1, modern(era)));
        assert_eq!(m.pagemap(a, V).unwrap(), 1 << 62 | 1 << 5);
        assert_eq!(m.swap_slot(0, 1).unwrap().count, 1);
        clean(&m);
        // Read fault: 2.6.x maps read-only and keeps the swap cache;
        // 6.18 maps writable (exclusive swap PTE) but clean.
        assert_eq!(done(m.read(a, V).unwrap()), 0x77);
        let p = pfn(&m, a, V);
        let expect = if modern(era) { 0x8000_0000_0000_0027 } else { 0x8000_0000_0000_0025 };
        assert_eq!(raw(&m, a, V), expect | p << 12, "{era}");
        let d = m.page(Pfn(p)).unwrap();
        assert!(d.flags.contains(PageFlags::SWAPCACHE));
        assert_eq!((d.mapcount, d.refcount), (1, 2));
        let slot = m.swap_slot(0, 1).unwrap();
        assert_eq!((slot.count, slot.has_cache), (0, true));
        clean(&m);
        // A write then: 2.6.x faults (reuse_swap_page drops the cache);
        // 6.18 writes through its writable PTE (the CPU sets D).
        done(m.write(a, V, 0x79).unwrap());
        assert_eq!(raw(&m, a, V), 0x8000_0000_0000_0067 | p << 12, "{era}");
        assert_eq!(m.page(Pfn(p)).unwrap().flags.contains(PageFlags::SWAPCACHE), modern(era));
        clean(&m);
        // Write fault on the second page: both eras map it writable and
        // dirty and drop the swap cache.
        done(m.write(a, V + 4096, 0x7a).unwrap());
        let q = pfn(&m, a, V + 4096);
        assert_eq!(raw(&m, a, V + 4096), 0x8000_0000_0000_0067 | q << 12);
        assert!(!m.page(Pfn(q)).unwrap().flags.contains(PageFlags::SWAPCACHE));
        assert_eq!(done(m.read(a, V + 4096).unwrap()), 0x7a);
        clean(&m);
        done(m.exit(a).unwrap());
        clean(&m);
        assert_eq!(done(m.shrink_all().unwrap()), 0, "{era}: teardown left pages for reclaim");
        assert_eq!(m.free_frames(), m.frame_count() - 1, "{era}");
        assert!(m.swap_slots().is_empty());
    }
}

#[test]
fn page_kept_in_swap_cache() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 3).unwrap());
        let p = pfn(&m, a, V);
        let r = done(m.reclaim(a, V, 4096, true).unwrap());
        assert!(matches!(r[0], mm::ReclaimResult::KeptInSwapCache { .. }), "{r:?}");
        let d = m.page(Pfn(p)).unwrap();
        assert!(d.flags.contains(PageFlags::SWAPCACHE) && d.is_anon());
        assert_eq!((d.mapcount, d.refcount), (0, 1));
        assert!(!d.flags.contains(PageFlags::DIRTY));
        clean(&m);
        // The fault finds it in the cache: same frame comes back.
        assert_eq!(done(m.read(a, V).unwrap()), 3);
        assert_eq!(pfn(&m, a, V), p);
        clean(&m);
    }
}

#[test]
fn fork_after_swap_out_and_teardown_of_swapped_ranges() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4 * 4096, Prot::Rw).unwrap()).unwrap();
        for i in 0..4 {
            done(m.write(a, V + i * 4096, i as u8 + 1).unwrap());
        }
        done(m.reclaim(a, V, 4 * 4096, false).unwrap());
        let b = done(m.fork(a).unwrap());
        // copy_nonpresent_pte: one more count, exclusive bit gone in both.
        let s1 = if modern(era) { L1TF_SLOT1 } else { CLASSIC_SLOT1 };
        assert_eq!(raw(&m, a, V), s1, "{era}");
        assert_eq!(raw(&m, b, V), s1, "{era}");
        assert_eq!(m.swap_slot(0, 1).unwrap().count, 2);
        clean(&m);
        assert_eq!(done(m.read(b, V + 4096).unwrap()), 2);
        clean(&m);
        // munmap of a partly swapped range in the child, exit of the parent.
        done(m.munmap(b, V, 2 * 4096).unwrap()).unwrap();
        assert_eq!(m.swap_slot(0, 1).unwrap().count, 1);
        clean(&m);
        done(m.exit(a).unwrap());
        clean(&m);
        assert_eq!(done(m.read(b, V + 3 * 4096).unwrap()), 4);
        done(m.exit(b).unwrap());
        clean(&m);
        assert_eq!(m.live_anon_vmas(), 0);
        assert_eq!(done(m.shrink_all().unwrap()), 0, "{era}: teardown left pages for reclaim");
        assert_eq!(m.free_frames(), m.frame_count() - 1, "{era}");
        assert!(m.swap_slots().is_empty(), "{era}: {:?}", m.swap_slots());
    }
}

#[test]
fn mprotect_none_and_back() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 2 * 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 9).unwrap());
        let p = pfn(&m, a, V);
        done(m.mprotect(a, V, 4096, Prot::None).unwrap()).unwrap();
        assert_eq!(m.vmas(a).unwrap().len(), 2, "split at the bound");
        let expect = if modern(era) {
            (!(p << 12) & 0x000f_ffff_ffff_f000) | 0x160
        } else {
            p << 12 | 0x160
        };
        assert_eq!(raw(&m, a, V), expect, "{era}");
        assert_eq!(m.pte(a, V).unwrap().pfn(), Some(Pfn(p)));
        assert_eq!(m.pagemap(a, V).unwrap(), 1 << 63 | 1 << 56 | p);
        assert_eq!(m.read(a, V).unwrap().segv().map(|s| s.code), Some(SegvCode::AccErr));
        clean(&m);
        done(m.mprotect(a, V, 4096, Prot::Rw).unwrap()).unwrap();
        // 6.18 upgrades the exclusive page at once; 2.6.x waits for a fault.
        let back = if modern(era) { 0x8000_0000_0000_0067 } else { 0x8000_0000_0000_0065 };
        assert_eq!(raw(&m, a, V), back | p << 12, "{era}");
        done(m.write(a, V, 10).unwrap());
        assert_eq!(raw(&m, a, V), 0x8000_0000_0000_0067 | p << 12);
        assert_eq!(done(m.read(a, V).unwrap()), 10);
        clean(&m);
    }
}

#[test]
fn madvise_dontneed_and_execve() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 2 * 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 1).unwrap());
        done(m.write(a, V + 4096, 2).unwrap());
        done(m.reclaim(a, V + 4096, 4096, false).unwrap());
        done(m.madvise_dontneed(a, V, 2 * 4096).unwrap()).unwrap();
        assert_eq!(raw(&m, a, V), 0);
        assert_eq!(raw(&m, a, V + 4096), 0);
        assert_eq!(done(m.read(a, V + 4096).unwrap()), 0);
        assert!(m.swap_slots().is_empty());
        clean(&m);
        done(m.execve(a).unwrap());
        assert!(m.vmas(a).unwrap().is_empty());
        assert!(m.read(a, V).unwrap().segv().is_some());
        clean(&m);
        assert_eq!(m.live_anon_vmas(), 0);
    }
}

#[test]
fn exhaustion_reclaims_then_reports_oom() {
    for era in Era::ALL {
        // 64 frames of memory, 16 slots of swap.
        let cfg = MachineConfig::new(era).memory(64 * 4096).swap(vec![17 * 4096]);
        let mut m = Machine::new(cfg).unwrap();
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 200 * 4096, Prot::Rw).unwrap()).unwrap();
        let mut written = 0u64;
        let err = loop {
            match m.write(a, V + written * 4096, written as u8) {
                Ok(o) => {
                    done(o);
                    written += 1;
                }
                Err(e) => break e,
            }
            assert!(written < 200, "{era}: never ran out");
        };
        assert!(matches!(err, MmError::OutOfMemory { .. }), "{era}: {err}");
        assert!(written > 60, "{era}: reclaim should have made room ({written})");
        clean(&m);
        // Give half back; every page left still reads back what was written.
        let half = written / 2;
        done(m.munmap(a, V, half * 4096).unwrap()).unwrap();
        clean(&m);
        for i in half..written {
            assert_eq!(done(m.read(a, V + i * 4096).unwrap()), i as u8, "{era}: page {i}");
        }
        clean(&m);
        done(m.exit(a).unwrap());
        assert_eq!(done(m.shrink_all().unwrap()), 0, "{era}: teardown left pages for reclaim");
        assert_eq!(m.free_frames(), m.frame_count() - 1, "{era}");
    }
}

#[test]
fn bad_input_is_an_error() {
    let mut m = machine(Era::V6_18);
    let a = m.spawn().unwrap();
    assert!(matches!(m.read(Pid(99), V), Err(MmError::NoSuchProcess(_))));
    assert!(matches!(m.mmap(Pid(99), V, 4096, Prot::Rw), Err(MmError::NoSuchProcess(_))));
    assert!(m.read(a, 0xffff_8000_0000_0000).unwrap().segv().is_some());
    assert!(Machine::new(MachineConfig::new(Era::V6_18).memory(1000)).is_err());
}

#[test]
fn fork_out_of_memory_leaves_no_half_child() {
    for era in Era::ALL {
        let cfg = MachineConfig::new(era).memory(32 * 4096).swap(vec![3 * 4096]);
        let mut m = Machine::new(cfg).unwrap();
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 64 * 4096, Prot::Rw).unwrap()).unwrap();
        let mut i = 0;
        while let Ok(o) = m.write(a, V + i * 4096, 1) {
            done(o);
            i += 1;
        }
        let before = m.processes();
        let r = m.fork(a);
        assert!(matches!(r, Err(MmError::OutOfMemory { .. })), "{era}: {r:?}");
        assert_eq!(m.processes(), before, "{era}");
        clean(&m);
        done(m.exit(a).unwrap());
        assert_eq!(done(m.shrink_all().unwrap()), 0, "{era}: teardown left pages for reclaim");
        clean(&m);
        assert_eq!(m.free_frames(), m.frame_count() - 1, "{era}");
    }
}

/// No violation, except in 2.6.34-rc3 those its anon_vma bug explains (B's
/// exit frees the anon_vma A's page names).
fn clean_but_seed_bug(m: &Machine, era: Era) {
    for v in m.check().unwrap() {
        let explained = era == Era::V2_6_34Rc3
            && matches!(
                v.kind,
                mm::InvariantKind::RmapUnreachable | mm::InvariantKind::MappingFreed
            );
        assert!(explained, "{era}: {v}");
    }
}

/// A page both processes faulted back in from swap: in the swap cache, no
/// swap PTE left (the seed's state before B exits).
fn swapped_in_by_both(era: Era) -> (Machine, Pid, Pid, Pfn) {
    let mut m = machine(era);
    let a = m.spawn().unwrap();
    done(m.mmap(a, V, 4096, Prot::Rw).unwrap()).unwrap();
    done(m.write(a, V, 0xaa).unwrap());
    let b = done(m.fork(a).unwrap());
    done(m.reclaim(a, V, 4096, false).unwrap());
    assert_eq!(done(m.read(b, V).unwrap()), 0xaa);
    assert_eq!(done(m.read(a, V).unwrap()), 0xaa);
    let p = Pfn(pfn(&m, a, V));
    let d = m.page(p).unwrap();
    assert!(d.flags.contains(PageFlags::SWAPCACHE), "{era}");
    assert_eq!((d.mapcount, d.refcount), (2, 3), "{era}");
    assert_eq!(m.swap_slot(0, 1).unwrap().count, 0, "{era}");
    (m, a, b, p)
}

/// zap's free_swap_cache: a swap-cache page keeps its cache while another
/// PTE maps it, and leaves the cache (then memory) with its last mapping
/// when no swap PTE names the slot, whichever way the mapping goes (exit,
/// munmap, MADV_DONTNEED). Before, the page stayed in the swap cache with
/// a slot of count 0 after every process had gone.
#[test]
fn zap_frees_the_swap_cache_nobody_needs() {
    for era in Era::ALL {
        for how in ["exit", "munmap", "dontneed"] {
            let (mut m, a, b, p) = swapped_in_by_both(era);
            done(m.exit(b).unwrap());
            // Still mapped by A: free_swap_cache leaves it alone.
            let d = m.page(p).unwrap();
            assert!(d.flags.contains(PageFlags::SWAPCACHE), "{era} {how}");
            assert_eq!((d.mapcount, d.refcount), (1, 2), "{era} {how}");
            let s = m.swap_slot(0, 1).unwrap();
            assert_eq!((s.count, s.has_cache, s.cached), (0, true, Some(p)), "{era} {how}");
            clean_but_seed_bug(&m, era);
            let frames_before = m.free_frames();
            match how {
                "exit" => done(m.exit(a).unwrap()),
                "munmap" => done(m.munmap(a, V, 4096).unwrap()).unwrap(),
                _ => done(m.madvise_dontneed(a, V, 4096).unwrap()).unwrap(),
            }
            assert!(m.swap_slots().is_empty(), "{era} {how}: {:?}", m.swap_slots());
            assert!(m.free_frames() > frames_before, "{era} {how}");
            assert!(m.page(p).unwrap().flags.contains(PageFlags::BUDDY), "{era} {how}");
            clean_but_seed_bug(&m, era);
            if how == "exit" {
                assert_eq!(m.free_frames(), m.frame_count() - 1, "{era}");
            } else {
                // The VMA (or the range) reads zero again: nothing cached.
                if how == "dontneed" {
                    assert_eq!(done(m.read(a, V).unwrap()), 0, "{era}");
                }
                done(m.exit(a).unwrap());
                clean(&m);
                assert_eq!(m.free_frames(), m.frame_count() - 1, "{era} {how}");
            }
        }
    }
}

/// A swap PTE elsewhere still names the slot: zap of the last mapping
/// keeps the page in the swap cache (the swap PTE can fault it back in),
/// and zap of that swap PTE then frees both (free_swap_and_cache).
#[test]
fn zap_keeps_the_swap_cache_a_swap_pte_needs() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 0x11).unwrap());
        let b = done(m.fork(a).unwrap());
        done(m.reclaim(a, V, 4096, false).unwrap());
        assert_eq!(done(m.read(a, V).unwrap()), 0x11);
        let p = Pfn(pfn(&m, a, V));
        done(m.exit(a).unwrap());
        let s = m.swap_slot(0, 1).unwrap();
        assert_eq!((s.count, s.cached), (1, Some(p)), "{era}");
        assert_eq!(m.page(p).unwrap().mapcount, 0, "{era}");
        clean(&m);
        done(m.exit(b).unwrap());
        assert!(m.swap_slots().is_empty(), "{era}");
        assert_eq!(m.free_frames(), m.frame_count() - 1, "{era}");
        clean(&m);
    }
}

/// kpageflags of a swap-cache page mapped by two processes: SWAPCACHE (13)
/// and SWAPBACKED (14) in every era; in 6.18 also bit 37, the raw
/// PG_owner_priv_1 that PG_swapcache is an alias of, and not bit 34
/// (PG_anon_exclusive: fork made it shared). Once it is the only mapping
/// after a write fault reuses it, 6.18 shows bit 34 and (out of the swap
/// cache) neither 13 nor 37.
#[test]
fn kpageflags_aliases_of_swapcache_and_anon_exclusive() {
    for era in Era::ALL {
        let (mut m, a, b, p) = swapped_in_by_both(era);
        let f = m.kpageflags(p).unwrap();
        let bit = |n: u32| f >> n & 1 == 1;
        assert!(bit(12) && bit(13) && bit(14), "{era}: {f:#x}");
        assert_eq!(bit(37), modern(era), "{era}: {f:#x}");
        assert!(!bit(34), "{era}: {f:#x}");
        done(m.exit(b).unwrap());
        done(m.write(a, V, 1).unwrap());
        assert_eq!(m.mapped_pfn(a, V).unwrap(), Some(p), "{era}: reused");
        let f = m.kpageflags(p).unwrap();
        let bit = |n: u32| f >> n & 1 == 1;
        assert!(!bit(13) && !bit(37), "{era}: {f:#x}");
        assert_eq!(bit(34), modern(era), "{era}: {f:#x}");
    }
}

/// A memory size no machine here can back (32 TiB: refused by mmap, or the
/// descriptor table cannot be reserved) is an error from Machine::new,
/// never an abort; so is a size that is not a whole number of frames.
#[test]
fn impossible_memory_sizes_are_errors() {
    let huge = MachineConfig::new(Era::V6_18).memory(1 << 45);
    assert!(Machine::new(huge).is_err());
    let ragged = MachineConfig::new(Era::V6_18).memory(4096 * 16 + 1);
    assert!(matches!(Machine::new(ragged), Err(mm::MmError::BadConfig(_))));
}

/// `reclaim_into` appends what `reclaim` returns, leaves what the buffer
/// held, and does not count those older results as pages done in its
/// range.
#[test]
fn reclaim_into_appends_what_reclaim_returns() {
    for era in Era::ALL {
        let run = |into: bool| {
            let mut m = machine(era);
            let a = m.spawn().unwrap();
            done(m.mmap(a, V, 3 * 4096, Prot::Rw).unwrap()).unwrap();
            for i in 0..3 {
                done(m.write(a, V + i * 4096, 0x40 + i as u8).unwrap());
            }
            let r = if into {
                let mut out = vec![mm::ReclaimResult::NoSwapSpace { pfn: Pfn(pfn(&m, a, V)) }];
                done(m.reclaim_into(a, V, 3 * 4096, false, &mut out).unwrap());
                assert_eq!(out.len(), 4, "{era}");
                out.split_off(1)
            } else {
                done(m.reclaim(a, V, 3 * 4096, false).unwrap())
            };
            clean(&m);
            (r, (0..3).map(|i| raw(&m, a, V + i * 4096)).collect::<Vec<_>>())
        };
        let (plain, ptes) = run(false);
        assert_eq!(plain.len(), 3, "{era}");
        assert!(plain.iter().all(|r| matches!(r, mm::ReclaimResult::Freed { .. })), "{era}");
        assert_eq!(run(true), (plain, ptes), "{era}");
    }
}

/// Every VMA's rmap record names its owner's page tables (vm_mm): after
/// mmap, a split (mprotect of half), fork and execve; try_to_unmap reaches
/// the PTEs through it.
#[test]
fn rmap_vm_mm_is_the_owners_pml4() {
    for era in Era::ALL {
        let mut m = machine(era);
        let a = m.spawn().unwrap();
        done(m.mmap(a, V, 4 * 4096, Prot::Rw).unwrap()).unwrap();
        done(m.write(a, V, 1).unwrap());
        done(m.mprotect(a, V + 2 * 4096, 2 * 4096, Prot::R).unwrap()).unwrap();
        let b = done(m.fork(a).unwrap());
        let c = done(m.fork(b).unwrap());
        done(m.execve(c).unwrap());
        done(m.mmap(c, V, 4096, Prot::Rw).unwrap()).unwrap();
        let mut seen = 0;
        for p in [a, b, c] {
            for v in m.vmas(p).unwrap() {
                let rec = m.rmap().vma(v.id).unwrap();
                assert_eq!(rec.mm, m.cr3(p).unwrap().0, "{era} {p} {v:?}");
                seen += 1;
            }
        }
        assert_eq!(seen, 5, "{era}");
        // The shared page is unmapped from both of its processes.
        let r = done(m.reclaim(a, V, 4096, false).unwrap());
        assert!(matches!(r[..], [mm::ReclaimResult::Freed { .. }]), "{era} {r:?}");
        assert!(m.pte(a, V).unwrap().kind.as_swap().is_some(), "{era}");
        assert!(m.pte(b, V).unwrap().kind.as_swap().is_some(), "{era}");
        clean(&m);
    }
}

/// A reclaim length that wraps when rounded to pages is an error, not a
/// panic or a wrapped range.
#[test]
fn reclaim_length_that_wraps_is_an_error() {
    let mut m = machine(Era::V6_18);
    let a = m.spawn().unwrap();
    done(m.mmap(a, V, 4096, Prot::Rw).unwrap()).unwrap();
    for len in [u64::MAX, u64::MAX - 0xffe] {
        assert!(matches!(m.reclaim(a, V, len, false), Err(MmError::BadLength { .. })), "{len:#x}");
    }
}
