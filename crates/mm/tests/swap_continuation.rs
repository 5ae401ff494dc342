//! A page shared by hundreds of processes is reclaimed, swapped in and
//! torn down: its swap count goes past SWAP_MAP_MAX (62) into a count
//! continuation page, as mm/swapfile.c's add_swap_count_continuation and
//! swap_count_continued keep it, in every era (continuations are 2.6.33's).

use ptemu_mm as mm;

use mm::{Era, Machine, MachineConfig, Outcome, Prot, ReclaimResult};

const V: u64 = 0x7f00_0000_0000;

fn clean(m: &Machine, what: &str) {
    let v = m.check().unwrap();
    assert!(v.is_empty(), "{what}: {v:?}");
}

#[test]
fn three_hundred_sharers_reclaim_swap_in_and_exit_without_leaks() {
    for era in Era::ALL {
        let mut m =
            Machine::new(MachineConfig::new(era).memory(16 << 20).swap(vec![1 << 20])).unwrap();
        let a = m.spawn().unwrap();
        assert_eq!(m.mmap(a, V, 4096, Prot::Rw).unwrap(), Outcome::Done(Ok(())));
        m.write(a, V, 0x5a).unwrap();
        let mut procs = vec![a];
        for _ in 1..300 {
            procs.push(m.fork(a).unwrap().done().unwrap());
        }
        let pfn = m.mapped_pfn(a, V).unwrap().unwrap();
        assert_eq!(m.page(pfn).unwrap().mapcount, 300, "{era}");
        let free_before = m.free_frames();
        // Reclaim: try_to_unmap gives each of the 300 mappings a swap PTE
        // and a swap count; the 63rd takes a continuation page.
        let r = m.reclaim(a, V, 4096, false).unwrap().done().unwrap();
        let [ReclaimResult::Freed { slot, .. }] = r[..] else { panic!("{era}: {r:?}") };
        assert_eq!(slot, (0, 1));
        let sv = m.swap_slot(0, 1).unwrap();
        assert_eq!(sv.count, 300, "{era}: full count");
        let cont = m.swap_continuation_frames();
        assert_eq!(cont.len(), 1, "{era}: one continuation page");
        // The page's frame is free again; one frame went to the continuation.
        assert_eq!(m.free_frames(), free_before + 1 - 1, "{era}");
        for &p in &procs {
            assert!(m.pte(p, V).unwrap().kind.as_swap().is_some(), "{era}: {p}");
        }
        clean(&m, "after reclaim");
        // Swap in from every process: each fault frees one count.
        for (i, &p) in procs.iter().enumerate() {
            assert_eq!(m.read(p, V).unwrap(), Outcome::Done(0x5a), "{era}: {p}");
            if i % 50 == 0 || i == 299 {
                clean(&m, "during swap-in");
                if i < 299 {
                    let left = m.swap_slot(0, 1).unwrap().count;
                    assert_eq!(left, 299 - i as u32, "{era}: count after {} swap-ins", i + 1);
                }
            }
        }
        let pfn = m.mapped_pfn(a, V).unwrap().unwrap();
        assert_eq!(m.page(pfn).unwrap().mapcount, 300, "{era}");
        // Reclaim once more (the continuation page is reused, not
        // added again), then every process exits.
        let r = m.reclaim(a, V, 4096, false).unwrap().done().unwrap();
        assert!(matches!(r[..], [ReclaimResult::Freed { .. }]), "{era}: {r:?}");
        assert_eq!(m.swap_continuation_frames(), cont, "{era}");
        clean(&m, "second reclaim");
        for &p in procs.iter().rev() {
            assert!(m.exit(p).unwrap().is_done());
        }
        clean(&m, "after every exit");
        assert!(m.swap_slots().is_empty(), "{era}: {:?}", m.swap_slots());
        // Only the zero page and the continuation page (kept until
        // swapoff, as in Linux) are allocated.
        assert_eq!(m.free_frames(), m.frame_count() - 2, "{era}");
        assert_eq!(m.live_anon_vmas(), 0, "{era}");
    }
}

/// The count carries into a second continuation digit past 63 * 128 - 1:
/// driven through swap's API, which mm uses (a machine with 8064
/// processes would be slow for no gain).
#[test]
fn fork_of_swap_entries_takes_continuation_pages_too() {
    let mut m = Machine::new(MachineConfig::new(Era::V6_18).memory(16 << 20)).unwrap();
    let a = m.spawn().unwrap();
    m.mmap(a, V, 4096, Prot::Rw).unwrap();
    m.write(a, V, 7).unwrap();
    m.reclaim(a, V, 4096, false).unwrap();
    // fork duplicates the swap entry (copy_nonpresent_pte) 100 times.
    let kids: Vec<_> = (0..100).map(|_| m.fork(a).unwrap().done().unwrap()).collect();
    assert_eq!(m.swap_slot(0, 1).unwrap().count, 101);
    assert_eq!(m.swap_continuation_frames().len(), 1);
    clean(&m, "after 100 forks of a swap entry");
    for k in kids {
        m.exit(k).unwrap();
    }
    assert_eq!(m.swap_slot(0, 1).unwrap().count, 1);
    assert_eq!(m.read(a, V).unwrap(), Outcome::Done(7));
    m.exit(a).unwrap();
    clean(&m, "end");
}
