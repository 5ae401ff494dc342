//! Directed tests: each SDM rule on a hand-built table, with the counters.

use ptemu_mmu::pgtable::{
    BumpFrames, EntryFlags, FrameMem, PageSize, Pfn, PhysAddr, PhysMem, VirtAddr, entry_at, map,
    new_root,
};
use ptemu_mmu::{
    Access, Config, Error, Invpcid, Mmu, PscLevel, PscStats, Regs, StalePolicy, Stats, regs::*,
};

const P: EntryFlags = EntryFlags::PRESENT;
const RW: EntryFlags = EntryFlags::WRITABLE;
const US: EntryFlags = EntryFlags::USER;
const G: EntryFlags = EntryFlags::GLOBAL;

struct Fix {
    mem: FrameMem,
    frames: BumpFrames,
    cr3: PhysAddr,
    mmu: Mmu,
}

fn fix(config: Config) -> Fix {
    let mut mem = FrameMem::new(64);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(64));
    let cr3 = new_root(&mut mem, &mut frames).unwrap();
    let mut mmu = Mmu::new(config).unwrap();
    mmu.set_regs(Regs::long_mode(cr3.as_u64())).unwrap();
    Fix { mem, frames, cr3, mmu }
}

impl Fix {
    fn map(&mut self, va: u64, pfn: u64, size: PageSize, flags: EntryFlags) {
        map(
            &mut self.mem,
            &mut self.frames,
            self.cr3,
            VirtAddr::new(va).unwrap(),
            Pfn(pfn),
            size,
            flags,
        )
        .unwrap();
    }
    fn leaf_pa(&self, va: u64) -> PhysAddr {
        entry_at(&self.mem, self.cr3, VirtAddr::new(va).unwrap()).unwrap().entry_pa
    }
    fn set_leaf(&mut self, va: u64, f: impl Fn(u64) -> u64) {
        let pa = self.leaf_pa(va);
        let v = f(self.mem.read_u64(pa).unwrap());
        self.mem.write_u64(pa, v).unwrap();
    }
    fn leaf(&self, va: u64) -> u64 {
        self.mem.read_u64(self.leaf_pa(va)).unwrap()
    }
    fn tr(&mut self, va: u64, a: Access) -> Result<u64, Error> {
        self.mmu.translate(&mut self.mem, va, a).map(|p| p.as_u64())
    }
}

const VA: u64 = 0x40_0000_0000;

#[test]
fn hit_after_fill_and_counters() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    assert_eq!(f.tr(VA + 8, Access::Read), Ok(0x30008));
    assert_eq!(f.tr(VA + 16, Access::Read), Ok(0x30010));
    let s = f.mmu.stats();
    assert_eq!((s.hits, s.misses, s.fills), (1, 1, 1));
}

/// The counters each kind of miss moves, and nothing else: `Mmu::stats`
/// derives the common miss's counts (a miss, a fill, a PDPTE-cache hit,
/// a PDE-cache fill) from one counter, so every other path has to count
/// itself apart from it.
#[test]
fn counters_of_each_kind_of_miss() {
    let ad = EntryFlags::ACCESSED | EntryFlags::DIRTY;
    for psc in [true, false] {
        let config = if psc { Config::default() } else { Config::default().without_psc() };
        let mut f = fix(config);
        for k in 0..4 {
            f.map(VA + (k << 12), 0x30 + k, PageSize::Size4K, P | RW | ad);
        }
        // A clean page (A set, D clear), a page in the next PDE, a 2 MiB
        // page; the PDE after it is not present.
        f.map(VA + (4 << 12), 0x34, PageSize::Size4K, P | RW | EntryFlags::ACCESSED);
        f.map(VA + (1 << 21), 0x40, PageSize::Size4K, P | RW | ad);
        f.map(VA + (2 << 21), 0x200, PageSize::Size2M, P | RW | ad);
        // The first walk sets A in the table entries; MOV to CR3 then
        // empties the TLB and the paging-structure caches.
        assert_eq!(f.tr(VA, Access::Read), Ok(0x30000));
        f.mmu.write_cr3(f.cr3.as_u64()).unwrap();
        f.mmu.reset_stats();
        let step = |f: &mut Fix, va: u64, access: Access, want: Stats| {
            let before = f.mmu.stats();
            let r = f.tr(va, access);
            let after = f.mmu.stats();
            let d = PscStats {
                pde_hits: after.psc.pde_hits - before.psc.pde_hits,
                pdpte_hits: after.psc.pdpte_hits - before.psc.pdpte_hits,
                pml4_hits: after.psc.pml4_hits - before.psc.pml4_hits,
                pde_fills: after.psc.pde_fills - before.psc.pde_fills,
                pdpte_fills: after.psc.pdpte_fills - before.psc.pdpte_fills,
                pml4_fills: after.psc.pml4_fills - before.psc.pml4_fills,
            };
            let got = (
                after.hits - before.hits,
                after.misses - before.misses,
                after.fills - before.fills,
                after.faults - before.faults,
                d,
            );
            let want = (want.hits, want.misses, want.fills, want.faults, want.psc);
            assert_eq!(got, want, "psc {psc}: {va:#x} {access:?} -> {r:?}");
        };
        let miss = |fills, faults, psc_stats: PscStats| Stats {
            misses: 1,
            fills,
            faults,
            psc: if psc { psc_stats } else { PscStats::default() },
            ..Stats::default()
        };
        let z = PscStats::default();
        // The caches are empty: the read-only walk from CR3 fills all three.
        let all_fills = PscStats { pml4_fills: 1, pdpte_fills: 1, pde_fills: 1, ..z };
        step(&mut f, VA + (1 << 12), Access::Read, miss(1, 0, all_fills));
        // A PDE-cache hit.
        step(&mut f, VA + (2 << 12), Access::Read, miss(1, 0, PscStats { pde_hits: 1, ..z }));
        // The common miss: a PDPTE-cache hit that fills the PDE cache.
        let common = PscStats { pdpte_hits: 1, pde_fills: 1, ..z };
        step(&mut f, VA + (1 << 21), Access::Read, miss(1, 0, common));
        // A 2 MiB page from the PDPTE cache: nothing for the PDE cache.
        step(&mut f, VA + (2 << 21) + 8, Access::Read, miss(1, 0, PscStats { pdpte_hits: 1, ..z }));
        // A PDE not present: the read-only walk and then pgtable's walk
        // from the PDPTE cache, which faults; nothing filled.
        step(&mut f, VA + (3 << 21), Access::Read, miss(0, 1, PscStats { pdpte_hits: 2, ..z }));
        // The first write to a clean page: the read-only walk from the PDE
        // cache cannot set D; the full walk from there does, and fills.
        step(&mut f, VA + (4 << 12), Access::Write, miss(1, 0, PscStats { pde_hits: 2, ..z }));
        // A hit moves the hit counter alone.
        step(&mut f, VA + (4 << 12), Access::Write, Stats { hits: 1, ..Stats::default() });
        // A write to a page cached from a read (its entry was installed
        // with D set: a hit) and a fetch, denied by nothing here.
        step(&mut f, VA + (3 << 12), Access::Read, miss(1, 0, PscStats { pde_hits: 1, ..z }));
        step(&mut f, VA + (3 << 12), Access::Write, Stats { hits: 1, ..Stats::default() });
        // After reset_stats every counter is zero again.
        f.mmu.reset_stats();
        assert_eq!(f.mmu.stats(), Stats::default());
    }
}

#[test]
fn first_write_to_clean_page_walks_and_sets_dirty() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    f.tr(VA, Access::Read).unwrap();
    assert_eq!(f.leaf(VA) & 0x60, 0x20, "a read sets A only");
    let walks = f.mmu.stats().misses;
    f.tr(VA, Access::Write).unwrap();
    assert_eq!(f.mmu.stats().misses, walks + 1, "the first write walks again");
    assert_eq!(f.leaf(VA) & 0x60, 0x60, "and sets D");
    f.tr(VA, Access::Write).unwrap();
    assert_eq!(f.mmu.stats().misses, walks + 1, "later writes hit");
    // D cleared without invalidation is not set again by a hit.
    f.set_leaf(VA, |e| e & !0x40);
    f.tr(VA, Access::Write).unwrap();
    assert_eq!(f.leaf(VA) & 0x40, 0);
    f.mmu.invlpg(VA);
    f.tr(VA, Access::Write).unwrap();
    assert_eq!(f.leaf(VA) & 0x40, 0x40, "after INVLPG the walk sets D again");
}

#[test]
fn cleared_accessed_bit_is_not_set_again_until_invalidated() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    f.tr(VA, Access::Read).unwrap();
    f.set_leaf(VA, |e| e & !0x20);
    f.tr(VA + 8, Access::Read).unwrap();
    assert_eq!(f.leaf(VA) & 0x20, 0, "a hit does not set A");
    f.mmu.invpcid(Invpcid::AllNonGlobal).unwrap();
    f.tr(VA + 8, Access::Read).unwrap();
    assert_eq!(f.leaf(VA) & 0x20, 0x20, "the walk after the flush does");
}

#[test]
fn raised_permission_gives_one_spurious_fault() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P);
    f.tr(VA, Access::Read).unwrap();
    f.set_leaf(VA, |e| e | RW.bits());
    let pf = f.tr(VA, Access::Write).unwrap_err().page_fault().unwrap();
    assert_eq!(pf.error_code.bits(), 0x3, "the stale entry's protection fault");
    assert_eq!(f.mmu.stats().cached_faults, 1);
    assert_eq!(f.tr(VA, Access::Write), Ok(0x30000), "the #PF dropped the entry");
    // With the rewalk policy there is no spurious fault at all.
    let mut f = fix(Config { stale: StalePolicy::Rewalk, ..Config::default() });
    f.map(VA, 0x30, PageSize::Size4K, P);
    f.tr(VA, Access::Read).unwrap();
    f.set_leaf(VA, |e| e | RW.bits());
    assert_eq!(f.tr(VA, Access::Write), Ok(0x30000));
}

#[test]
fn invlpg_inside_a_2m_page_drops_all_of_it() {
    let mut f = fix(Config::default());
    f.map(VA, 0x200, PageSize::Size2M, P | RW);
    for k in 0..8 {
        f.tr(VA + k * 0x1000, Access::Read).unwrap();
    }
    // Move the 2 MiB page; INVLPG one 4 KiB page inside it.
    f.set_leaf(VA, |e| (e & !0x000f_ffff_ffe0_0000) | (0x400 << 12));
    f.mmu.invlpg(VA + 0x1f_f000);
    for k in 0..8 {
        assert_eq!(f.tr(VA + k * 0x1000, Access::Read), Ok(0x40_0000 + k * 0x1000));
    }
}

#[test]
fn invlpg_of_a_1g_page() {
    let mut f = fix(Config::default());
    f.map(VA, 0x40000, PageSize::Size1G, P | RW);
    f.tr(VA + 0x3000_0000, Access::Read).unwrap();
    f.set_leaf(VA, |e| e & !1);
    assert!(f.tr(VA + 0x3000_0000, Access::Read).is_ok(), "stale until invalidated");
    f.mmu.invlpg(VA + 0x1234_5000);
    assert!(f.tr(VA + 0x3000_0000, Access::Read).is_err());
}

#[test]
fn global_entries_survive_cr3_but_not_pge_toggle() {
    let mut f = fix(Config::default());
    f.mmu.write_cr4(CR4_PAE | CR4_PGE).unwrap();
    f.map(VA, 0x30, PageSize::Size4K, P | RW | G);
    f.map(VA + 0x1000, 0x31, PageSize::Size4K, P | RW);
    f.tr(VA, Access::Read).unwrap();
    f.tr(VA + 0x1000, Access::Read).unwrap();
    f.set_leaf(VA, |e| e & !1);
    f.set_leaf(VA + 0x1000, |e| e & !1);
    f.mmu.write_cr3(f.cr3.as_u64()).unwrap();
    assert!(f.tr(VA, Access::Read).is_ok(), "the global entry stays");
    assert!(f.tr(VA + 0x1000, Access::Read).is_err(), "the non-global one went");
    f.mmu.write_cr4(CR4_PAE).unwrap();
    assert!(f.tr(VA, Access::Read).is_err(), "PGE toggle drops globals");
}

#[test]
fn pcid_entries_kept_across_switches() {
    let mut f = fix(Config::default());
    f.mmu.write_cr4(CR4_PAE | CR4_PCIDE).unwrap();
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    let cr3 = f.cr3.as_u64();
    f.mmu.write_cr3(cr3 | 1).unwrap();
    f.tr(VA, Access::Read).unwrap();
    f.set_leaf(VA, |e| e & !1);
    f.mmu.write_cr3(cr3 | 2).unwrap();
    assert!(f.tr(VA, Access::Read).is_err(), "PCID 2 has no entry");
    f.mmu.write_cr3(cr3 | 1 | CR3_NOFLUSH).unwrap();
    assert!(f.tr(VA, Access::Read).is_ok(), "PCID 1 kept its entry (bit 63)");
    assert_eq!(f.mmu.regs().cr3, cr3 | 1, "bit 63 is not part of CR3");
    f.mmu.invpcid(Invpcid::Context { pcid: 2 }).unwrap();
    assert!(f.tr(VA, Access::Read).is_ok(), "INVPCID of another PCID");
    f.mmu.invpcid(Invpcid::Address { pcid: 1, va: VA }).unwrap();
    assert!(f.tr(VA, Access::Read).is_err(), "INVPCID type 0");
    f.set_leaf(VA, |e| e | 1);
    f.tr(VA, Access::Read).unwrap();
    f.set_leaf(VA, |e| e & !1);
    f.mmu.write_cr3(cr3 | 1).unwrap();
    assert!(f.tr(VA, Access::Read).is_err(), "bit 63 clear flushes the new PCID");
    assert!(Invpcid::from_raw(4, 0, 0).is_err());
    assert!(f.mmu.invpcid(Invpcid::Address { pcid: 1, va: 1 << 60 }).is_err());
}

#[test]
fn split_access_checks_both_pages_first() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW | US);
    f.map(VA + 0x1000, 0x31, PageSize::Size4K, P | US);
    f.mmu.set_cpl(3);
    let pf = f.mmu.write(&mut f.mem, VA + 0xffa, &[0xaa; 16]).unwrap_err().page_fault().unwrap();
    assert_eq!(pf.addr.as_u64(), VA + 0x1000, "CR2 is the second page's first byte");
    assert_eq!(pf.error_code.bits(), 0x7);
    f.set_leaf(VA + 0x1000, |e| e | RW.bits());
    f.mmu.invlpg(VA + 0x1000);
    f.mmu.write(&mut f.mem, VA + 0xffa, &(0..16).collect::<Vec<u8>>()).unwrap();
    let mut back = [0u8; 16];
    f.mmu.read(&mut f.mem, VA + 0xffa, &mut back).unwrap();
    assert_eq!(back.to_vec(), (0..16).collect::<Vec<u8>>());
    assert_eq!(f.mmu.read(&mut f.mem, VA, &mut [0u8; 65]), Err(Error::BadSize(65)));
    assert_eq!(f.mmu.read(&mut f.mem, VA, &mut []), Err(Error::BadSize(0)));
}

#[test]
fn split_write_fault_leaves_data_untouched() {
    // Memory big enough for data frames 0x30/0x31.
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    f.map(VA + 0x1000, 0x31, PageSize::Size4K, P);
    let _ = f.mmu.write(&mut f.mem, VA + 0xff8, &[0xff; 16]);
    let data = f.mem.read_u64(PhysAddr::new_truncate(0x30ff8)).unwrap();
    assert_eq!(data, 0, "first page untouched");
}

#[test]
fn smap_and_ac_select_the_table() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW | US);
    f.mmu.write_cr4(CR4_PAE | CR4_SMAP).unwrap();
    let pf = f.tr(VA, Access::Read).unwrap_err().page_fault().unwrap();
    assert_eq!(pf.error_code.bits(), 0x1);
    f.mmu.set_ac(true);
    assert_eq!(f.tr(VA, Access::Read), Ok(0x30000));
    f.mmu.set_ac(false);
    assert!(f.tr(VA, Access::Read).is_err());
}

#[test]
fn pkru_change_applies_to_cached_entries() {
    let mut f = fix(Config::default());
    f.map(VA, 0x30, PageSize::Size4K, P | RW | US);
    f.mmu.write_cr4(CR4_PAE | CR4_PKE).unwrap();
    f.mmu.set_cpl(3);
    f.tr(VA, Access::Write).unwrap();
    f.mmu.write_pkru(0b10); // WD for key 0
    let pf = f.tr(VA, Access::Write).unwrap_err().page_fault().unwrap();
    assert_eq!(pf.error_code.bits(), 0x27);
    assert_eq!(f.tr(VA, Access::Read), Ok(0x30000));
    f.mmu.write_pkru(0);
    assert_eq!(f.tr(VA, Access::Write), Ok(0x30000));
}

#[test]
fn cr_validation() {
    let mut f = fix(Config::default());
    assert!(f.mmu.write_cr3(1 << 63).is_err(), "bit 63 with PCIDE=0");
    assert!(f.mmu.write_cr3(f.cr3.as_u64() | 5).is_ok());
    assert!(f.mmu.write_cr4(CR4_PAE | CR4_PCIDE).is_err(), "PCIDE with CR3[11:0]!=0");
    assert!(f.mmu.write_cr4(0).is_err(), "PAE cleared in long mode");
    assert!(f.mmu.write_cr0(CR0_PG).is_err(), "PG without PE");
    assert!(f.mmu.write_cr4(CR4_PAE | CR4_LA57).is_err());
    assert!(Mmu::new(Config { entries: 100, ..Config::default() }).is_err());
    assert!(Mmu::new(Config { contexts: 0, ..Config::default() }).is_err());
    // Non-canonical access: #GP.
    assert!(matches!(f.tr(1 << 60, Access::Read), Err(Error::GeneralProtection(_))));
}

#[test]
fn victim_cache_catches_conflicts() {
    let mut f = fix(Config { entries: 8, ..Config::default() });
    // Two pages with the same slot (8 pages apart).
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    f.map(VA + 0x8000, 0x31, PageSize::Size4K, P | RW);
    f.tr(VA, Access::Read).unwrap();
    f.tr(VA + 0x8000, Access::Read).unwrap();
    assert_eq!(f.tr(VA, Access::Read), Ok(0x30000));
    assert_eq!(f.mmu.stats().victim_hits, 1);
    assert_eq!(f.mmu.stats().misses, 2);
}

// ----- paging-structure caches (SDM 4.10.3) -----------------------------

/// The physical address of `va`'s entry at `level` (4: PML4E, 3: PDPTE,
/// 2: PDE), read through the tables in memory.
fn upper_pa(f: &Fix, va: u64, level: u32) -> PhysAddr {
    let mut table = f.cr3.as_u64();
    for l in (level..=4).rev() {
        let at = table + ((va >> (12 + 9 * (l - 1))) & 511) * 8;
        if l == level {
            return PhysAddr::new(at).unwrap();
        }
        table = f.mem.read_u64(PhysAddr::new(at).unwrap()).unwrap() & 0x000f_ffff_ffff_f000;
    }
    unreachable!()
}

/// Four 4 KiB pages under one entry of `level`, each under a lower entry
/// of its own (the next page, 2 MiB or 1 GiB further), mapped to frames
/// 0x30..0x34 and accessed once (A set everywhere); after a flush, one
/// access to the first (which fills the caches for it), then the entry
/// made not present in memory without invalidation.
fn psc_fixture(config: Config, level: u32) -> (Fix, [u64; 4]) {
    let mut cfg = config;
    cfg.contexts = 2;
    let mut f = fix(cfg);
    let mut regs = Regs::long_mode(f.cr3.as_u64());
    regs.cr4 |= CR4_PCIDE;
    f.mmu.set_regs(regs).unwrap();
    let step = 1u64 << (12 + 9 * (level - 2));
    let pages = [VA, VA + step, VA + 2 * step, VA + 3 * step];
    for (k, &va) in pages.iter().enumerate() {
        f.map(va, 0x30 + k as u64, PageSize::Size4K, P | RW);
        // The walk sets A on every entry of the page's path: walks that
        // start from a cached entry read them without writing.
        assert_eq!(f.tr(va, Access::Read), Ok((0x30 + k as u64) << 12));
    }
    // Empty the TLB and the caches, then walk the first page again.
    f.mmu.write_cr3(f.cr3.as_u64()).unwrap();
    assert_eq!(f.tr(pages[0], Access::Read), Ok(0x30000));
    let pa = upper_pa(&f, VA, level);
    let e = f.mem.read_u64(pa).unwrap();
    f.mem.write_u64(pa, e & !P.bits()).unwrap();
    (f, pages)
}

fn not_present(r: Result<u64, Error>, va: u64) {
    let pf = r.unwrap_err().page_fault().expect("a #PF");
    assert_eq!((pf.error_code.bits(), pf.addr.as_u64()), (0, va));
}

#[test]
fn an_upper_entry_edited_without_invalidation_keeps_being_used() {
    for level in [2, 3, 4] {
        let (mut f, pages) = psc_fixture(Config::default(), level);
        let before = f.mmu.stats().psc;
        assert_eq!(f.tr(pages[1], Access::Read), Ok(0x31000), "level {level}");
        let after = f.mmu.stats().psc;
        let hits = match level {
            2 => after.pde_hits - before.pde_hits,
            3 => after.pdpte_hits - before.pdpte_hits,
            _ => after.pml4_hits - before.pml4_hits,
        };
        assert_eq!(hits, 1, "level {level}: the walk started from that level's cache");
        let which = match level {
            2 => PscLevel::Pde,
            3 => PscLevel::Pdpte,
            _ => PscLevel::Pml4,
        };
        // The cached entry names the next table the (now not present)
        // entry in memory still names, with the permissions of the path
        // (pgtable's mapper makes table entries writable and user).
        let e = f.mmu.psc_entry(which, pages[1]).expect("a cached entry");
        let in_mem = f.mem.read_u64(upper_pa(&f, VA, level)).unwrap();
        assert_eq!(e.table, in_mem & 0x000f_ffff_ffff_f000, "level {level}");
        assert!(e.writable && e.user && !e.nx, "level {level}: {e:?}");
        // INVLPG of an unrelated address empties the PCID's caches.
        f.mmu.invlpg(0x1000);
        assert_eq!(f.mmu.psc_entry(which, pages[1]), None);
        not_present(f.tr(pages[2], Access::Read), pages[2]);
    }
}

#[test]
fn cr3_write_with_bit_63_keeps_the_caches_without_it_ends_them() {
    for level in [2, 3, 4] {
        let (mut f, pages) = psc_fixture(Config::default(), level);
        let cr3 = f.cr3.as_u64();
        f.mmu.write_cr3(cr3 | CR3_NOFLUSH).unwrap();
        assert_eq!(f.tr(pages[1], Access::Read), Ok(0x31000), "level {level}: kept");
        f.mmu.write_cr3(cr3).unwrap();
        not_present(f.tr(pages[2], Access::Read), pages[2]);
    }
}

#[test]
fn a_page_fault_ends_the_cached_entries_for_its_address() {
    for level in [2, 3, 4] {
        let (mut f, pages) = psc_fixture(Config::default(), level);
        // A page under the entry whose own PTE is not present: the walk
        // from the caches does not complete, the walk from CR3 faults at
        // the edited entry, and that #PF drops the entries it would use.
        let hole = pages[0] + 0x8000;
        not_present(f.tr(hole, Access::Read), hole);
        not_present(f.tr(pages[1], Access::Read), pages[1]);
    }
}

/// A PDE pointed, without invalidation, from the page table the PDE
/// cache holds (where `VA + 0x1000` is not present) to another page table
/// where it is: the cached entry makes the walk fault, memory would not.
fn stale_pde_hiding_a_present_page(config: Config) -> Fix {
    let mut f = fix(config);
    let other = VA + (2 << 20);
    f.map(VA, 0x30, PageSize::Size4K, P | RW);
    f.map(other + 0x1000, 0x41, PageSize::Size4K, P | RW);
    // Both paths walked once (A set everywhere), then VA's PDE cached.
    assert_eq!(f.tr(other + 0x1000, Access::Read), Ok(0x41000));
    f.mmu.write_cr3(f.cr3.as_u64()).unwrap();
    assert_eq!(f.tr(VA, Access::Read), Ok(0x30000));
    let pde = f.mem.read_u64(upper_pa(&f, other, 2)).unwrap();
    f.mem.write_u64(upper_pa(&f, VA, 2), pde).unwrap();
    f
}

#[test]
fn a_stale_cached_entry_faults_once_faithfully_and_never_with_rewalk() {
    // Faithful: the walk from the cached PDE faults (a spurious #PF, as a
    // CPU may raise), and that #PF drops the entry: the retry succeeds.
    let mut f = stale_pde_hiding_a_present_page(Config::default());
    not_present(f.tr(VA + 0x1000, Access::Read), VA + 0x1000);
    assert_eq!(f.tr(VA + 0x1000, Access::Read), Ok(0x41000));
    // Rewalk: no spurious #PF; the walk from CR3 answers at once.
    let mut f =
        stale_pde_hiding_a_present_page(Config { stale: StalePolicy::Rewalk, ..Config::default() });
    assert_eq!(f.tr(VA + 0x1000, Access::Read), Ok(0x41000));
    assert_eq!(f.mmu.stats().faults, 0);
    assert_eq!(f.mmu.psc_entry(PscLevel::Pde, VA), None, "the stale entry was dropped");
}

#[test]
fn without_paging_structure_caches_the_edit_is_seen_at_once() {
    for level in [2, 3, 4] {
        let (mut f, pages) = psc_fixture(Config::default().without_psc(), level);
        not_present(f.tr(pages[1], Access::Read), pages[1]);
        assert_eq!(f.mmu.stats().psc, PscStats::default());
    }
}

#[test]
fn other_pcids_keep_their_caches_and_a_reused_context_loses_them() {
    // PCID 1 fills its caches; INVLPG under PCID 2 leaves them; a third
    // PCID takes the least recently used context (contexts = 2) and PCID
    // 1's caches go with it.
    let (mut f, pages) = psc_fixture(Config::default(), 2);
    let cr3 = f.cr3.as_u64();
    f.mmu.write_cr3(cr3 | 1).unwrap();
    let pa = upper_pa(&f, VA, 2);
    let e = f.mem.read_u64(pa).unwrap();
    f.mem.write_u64(pa, e | P.bits()).unwrap();
    assert_eq!(f.tr(pages[0], Access::Read), Ok(0x30000));
    f.mem.write_u64(pa, e).unwrap();
    f.mmu.write_cr3(cr3 | 2 | CR3_NOFLUSH).unwrap();
    f.mmu.invlpg(0x1000);
    f.mmu.write_cr3(cr3 | 1 | CR3_NOFLUSH).unwrap();
    assert_eq!(f.tr(pages[1], Access::Read), Ok(0x31000), "PCID 1's PDE cache entry");
    f.mmu.write_cr3(cr3 | 2 | CR3_NOFLUSH).unwrap();
    f.mmu.write_cr3(cr3 | 3 | CR3_NOFLUSH).unwrap();
    f.mmu.write_cr3(cr3 | 1 | CR3_NOFLUSH).unwrap();
    not_present(f.tr(pages[2], Access::Read), pages[2]);
}

#[test]
fn bad_paging_structure_cache_sizes_are_refused() {
    use ptemu_mmu::ConfigError;
    let c = Config::default();
    assert_eq!(Mmu::new(Config { pde_cache: 48, ..c }).err(), Some(ConfigError::PdeCache(48)));
    assert_eq!(
        Mmu::new(Config { pdpte_cache: 8192, ..c }).err(),
        Some(ConfigError::PdpteCache(8192))
    );
    assert_eq!(
        Mmu::new(Config { pml4_cache: 1024, ..c }).err(),
        Some(ConfigError::Pml4Cache(1024))
    );
    assert!(Mmu::new(Config { pml4_cache: 512, pdpte_cache: 0, pde_cache: 1, ..c }).is_ok());
}

#[test]
fn a_walk_from_a_cached_pde_sets_accessed_in_a_freed_page_table() {
    // The guest clears the PDE and reuses the page table's frame for data
    // without invalidating: the PDE cache still names the frame, and the
    // walk through it reads the data as PTEs, setting A (and D for a
    // write) in it, as a CPU does (the corruption Linux's
    // tlb_remove_table prevents).
    for psc in [true, false] {
        let config = if psc { Config::default() } else { Config::default().without_psc() };
        let (mut f, pages) = psc_fixture(config, 2);
        // The page table the PDE named (only its P was cleared).
        let pde = f.mem.read_u64(upper_pa(&f, VA, 2)).unwrap();
        let pte =
            PhysAddr::new((pde & 0x000f_ffff_ffff_f000) + ((pages[1] >> 12) & 511) * 8).unwrap();
        let data = 0x40_000 | (P | RW).bits();
        f.mem.write_u64(pte, data).unwrap();
        let hits = f.mmu.stats().psc.pde_hits;
        let r = f.tr(pages[1] + 8, Access::Write);
        if psc {
            assert_eq!(r, Ok(0x40_008));
            assert_eq!(f.mem.read_u64(pte).unwrap(), data | 0x60, "A and D set in the data");
            let walks = f.mmu.stats().psc.pde_hits - hits;
            assert_eq!(walks, 2, "the read-only walk, then the one that sets A and D");
        } else {
            let pf = r.unwrap_err().page_fault().expect("a #PF");
            assert_eq!((pf.error_code.bits(), pf.addr.as_u64()), (2, pages[1] + 8));
            assert_eq!(f.mem.read_u64(pte).unwrap(), data, "memory untouched");
        }
    }
}
