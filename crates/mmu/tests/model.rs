//! Model-based property test of the TLB against the SDM (vol. 3A, 4.10).
//!
//! Random page tables over a small virtual universe, random accesses under
//! random CPU state, random edits of any entry with and without the
//! matching invalidation, random CR/EFER/PKRU/CPL/AC writes and every
//! invalidation the SDM defines.
//!
//! The model keeps, independently of the MMU, every translation the SDM
//! allows a TLB to still hold: each one a completed walk filled under some
//! PCID, removed only when an invalidation that the SDM says covers it
//! happens (or a #PF on its address). After each access the MMU's answer,
//! and what it did to memory, must be either what a fresh walk (pgtable's
//! `translate` on a copy of memory) gives, or what one of the allowed
//! cached translations gives under the current CPU state (with memory left
//! untouched). When no allowed cached translation differs from the fresh
//! walk (no edit since the covering invalidation), that is exactly "equal
//! to a fresh walk"; the test counts how often each case arises.
//!
//! The paging-structure caches (SDM 4.10.3) are modelled the same way: for
//! every PCID and PML4/PDPTE/PDE prefix, every value (next table, R/W and
//! U/S ANDed, XD ORed from the PML4E down) the cache may hold: any the
//! entry held in memory while present, accessed and free of reserved bits,
//! reached from CR3 or from a value the level above may hold, since the
//! last invalidation covering it (a CPU may create such entries at any
//! time, also for addresses it does not access, so the model takes them
//! from memory before and after every access, for the whole universe). An
//! access may also be answered by a walk that starts from any such value
//! and continues through memory (pgtable's walk over scratch tables that
//! stand for the cached levels): its faults, A/D updates and fills are
//! allowed, and nothing else. `EditUpper` edits an upper-level entry
//! between accesses to two pages under it, without invalidation.
//!
//! Seven deliberately wrong TLBs (the `fault-injection` knob) must make the
//! property fail: the three, a first-level table that keeps the
//! copy of an invalidated entry, and INVLPG, a MOV to CR3 or a #PF that
//! leaves the paging-structure caches.

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestError, TestRng, TestRunner};
use ptemu_mmu::pgtable::{self, CpuState, FrameMem, PhysMem};
use ptemu_mmu::{Access, Bug, Config, Error, Invpcid, Mmu, Regs, StalePolicy, regs::*};

const MAXPHY: u8 = 46;
/// Table frames: 1 PML4, 2 PDPTs, 4 PDs, 8 PTs.
const FRAMES: usize = 16;
const PML4: u64 = 1;
const PML4_SLOTS: [u64; 2] = [0, 257];

fn pdpt_frame(a: usize) -> u64 {
    2 + a as u64
}
fn pd_frame(a: usize, b: usize) -> u64 {
    4 + (a * 2 + b) as u64
}
fn pt_frame(a: usize, b: usize, c: usize) -> u64 {
    8 + (a * 4 + b * 2 + c) as u64
}

/// The page-table slots of the universe's 4 KiB pages: two pairs of
/// neighbours (accesses split across 0-1 and 8-9), and page numbers equal
/// modulo 8 but not modulo 256 (0 and 8, 1 and 9), which share a slot of an
/// 8-slot main table but not of the 256-slot first level.
const PT_SLOTS: [u64; 4] = [0, 1, 8, 9];

/// The virtual address of page (a, b, c, d) of the universe.
fn va_of(a: usize, b: usize, c: usize, d: usize) -> u64 {
    let raw = (PML4_SLOTS[a] << 39) | ((b as u64) << 30) | ((c as u64) << 21) | (PT_SLOTS[d] << 12);
    pgtable::VirtAddr::new_truncate(raw).as_u64()
}

/// An entry of the universe's tables: its physical address, its level,
/// and the child table it points to when it is not a leaf.
#[derive(Clone, Copy, Debug)]
struct Slot {
    pa: u64,
    /// The first virtual address the entry maps.
    va: u64,
    level: u8,
    child: Option<u64>,
}

fn slots() -> Vec<Slot> {
    let mut v = Vec::new();
    for (a, pml4_slot) in PML4_SLOTS.iter().enumerate() {
        v.push(Slot {
            pa: PML4 * 4096 + pml4_slot * 8,
            va: va_of(a, 0, 0, 0),
            level: 4,
            child: Some(pdpt_frame(a)),
        });
        for b in 0..2 {
            v.push(Slot {
                pa: pdpt_frame(a) * 4096 + b as u64 * 8,
                va: va_of(a, b, 0, 0),
                level: 3,
                child: Some(pd_frame(a, b)),
            });
            for c in 0..2 {
                v.push(Slot {
                    pa: pd_frame(a, b) * 4096 + c as u64 * 8,
                    va: va_of(a, b, c, 0),
                    level: 2,
                    child: Some(pt_frame(a, b, c)),
                });
                for (d, pt_slot) in PT_SLOTS.iter().enumerate() {
                    v.push(Slot {
                        pa: pt_frame(a, b, c) * 4096 + pt_slot * 8,
                        va: va_of(a, b, c, d),
                        level: 1,
                        child: None,
                    });
                }
            }
        }
    }
    v
}

/// Random bits for one entry; `entry_value` turns them into a raw entry
/// for a given slot.
#[derive(Clone, Copy, Debug)]
struct Bits(u64);

fn entry_value(slot: &Slot, bits: Bits) -> u64 {
    let r = bits.0;
    let pct = |shift: u32, p: u64| ((r >> shift) & 0x7f) % 100 < p;
    let leafy = slot.level == 1;
    // Table entries are mostly permissive so that most walks get to the
    // leaf; leaves carry most of the variety.
    let (p, rw, us) = if leafy { (90, 70, 75) } else { (97, 92, 92) };
    let mut e = 0u64;
    if pct(0, p) {
        e |= 1; // P
    }
    if pct(7, rw) {
        e |= 2; // RW
    }
    if pct(14, us) {
        e |= 4; // US
    }
    if pct(21, 75) {
        e |= 0x20; // A
    }
    if pct(28, 45) {
        e |= 0x40; // D
    }
    if pct(35, if leafy { 20 } else { 5 }) {
        e |= 1 << 63; // XD
    }
    if pct(42, 2) {
        e |= 1 << 50; // reserved above MAXPHYADDR 46
    }
    let big = slot.level >= 2 && slot.level <= 3 && pct(49, 15);
    let leaf = slot.level == 1 || big;
    let frame_choice = (r >> 56) & 3;
    if leaf {
        if pct(51, 40) {
            e |= 0x100; // G
        }
        e |= ((r >> 58) & 3) << 59; // protection key 0..=3
        let size_shift = match slot.level {
            1 => 12,
            2 => 21,
            _ => 30,
        };
        // Frames far above the table frames: the test only translates.
        e |= (0x100 + frame_choice) << size_shift;
        if big {
            e |= 0x80; // PS
        }
    } else if let Some(child) = slot.child {
        e |= child << 12;
    }
    e
}

#[derive(Clone, Debug)]
enum Op {
    Access {
        page: (usize, usize, usize, usize),
        off: u64,
        kind: u8,
    },
    /// 1..=64 bytes starting `back` bytes before the end of the page (so
    /// most cross into the next page).
    Sized {
        page: (usize, usize, usize, usize),
        back: u64,
        size: usize,
        kind: u8,
    },
    Edit {
        slot: usize,
        bits: Bits,
    },
    /// One bit of an entry flipped (what mprotect or a swap-out does to a
    /// live entry), without invalidation.
    Flip {
        slot: usize,
        bit: u8,
    },
    /// Access the page an entry maps, edit the entry, INVLPG the page,
    /// access it again: the matching invalidation of a PTE edit.
    EditInvlpg {
        slot: usize,
        bits: Bits,
        kinds: (u8, u8),
    },
    /// Access a page under a PML4E, PDPTE or PDE, edit that entry
    /// without invalidation, access another page under it: what the
    /// paging-structure caches may keep answering with the old entry.
    EditUpper {
        slot: usize,
        bits: Bits,
        pages: (usize, usize),
        kinds: (u8, u8),
    },
    /// Access a page, edit an entry on its path, reload CR3, access again.
    EditCr3 {
        slot: usize,
        bits: Bits,
        kinds: (u8, u8),
    },
    Invlpg {
        page: (usize, usize, usize, usize),
        noncanon: bool,
    },
    Invpcid {
        kind: u8,
        pcid: u16,
        page: (usize, usize, usize, usize),
    },
    Cr3 {
        pcid: u16,
        noflush: bool,
    },
    Cr4 {
        toggle: u64,
    },
    Cr0Wp,
    /// Paging off, one access, paging on again.
    Cr0PgCycle,
    EferNxe,
    Pkru(u32),
    Cpl(u8),
    Ac(bool),
}

fn page_strategy() -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (0..2usize, 0..2usize, 0..2usize, 0..4usize)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let nslots = slots().len();
    prop_oneof![
        30 => (page_strategy(), 0..4096u64, 0..3u8)
            .prop_map(|(page, off, kind)| Op::Access { page, off, kind }),
        8 => (page_strategy(), 1..72u64, 1..=64usize, 0..3u8)
            .prop_map(|(page, back, size, kind)| Op::Sized { page, back, size, kind }),
        6 => (0..nslots, any::<u64>()).prop_map(|(slot, b)| Op::Edit { slot, bits: Bits(b) }),
        4 => (0..nslots, any::<u64>(), (0..3u8, 0..3u8))
            .prop_map(|(slot, b, kinds)| Op::EditInvlpg { slot, bits: Bits(b), kinds }),
        2 => (0..nslots, any::<u64>(), (0..3u8, 0..3u8))
            .prop_map(|(slot, b, kinds)| Op::EditCr3 { slot, bits: Bits(b), kinds }),
        4 => (0..nslots, any::<u64>(), (0..8usize, 0..8usize), (0..3u8, 0..3u8)).prop_map(
            |(slot, b, pages, kinds)| Op::EditUpper { slot, bits: Bits(b), pages, kinds }
        ),
        6 => (0..nslots, prop::sample::select(vec![0u8, 1, 2, 5, 6, 8, 12, 13, 59, 63]))
            .prop_map(|(slot, bit)| Op::Flip { slot, bit }),
        3 => (page_strategy(), prop::bool::weighted(0.1))
            .prop_map(|(page, noncanon)| Op::Invlpg { page, noncanon }),
        3 => (0..4u8, 0..3u16, page_strategy())
            .prop_map(|(kind, pcid, page)| Op::Invpcid { kind, pcid, page }),
        3 => (0..3u16, any::<bool>()).prop_map(|(pcid, noflush)| Op::Cr3 { pcid, noflush }),
        2 => prop::sample::select(vec![CR4_PGE, CR4_PCIDE, CR4_SMEP, CR4_SMAP, CR4_PKE])
            .prop_map(|toggle| Op::Cr4 { toggle }),
        1 => Just(Op::Cr0Wp),
        1 => Just(Op::Cr0PgCycle),
        1 => Just(Op::EferNxe),
        1 => any::<u32>().prop_map(|v| Op::Pkru(v & 0xff)),
        2 => prop::sample::select(vec![0u8, 3]).prop_map(Op::Cpl),
        1 => any::<bool>().prop_map(Op::Ac),
    ]
}

/// A translation the SDM allows the TLB to still hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cached {
    region: u64,
    size_mask: u64,
    frame: u64,
    pcid: u16,
    global: bool,
    writable: bool,
    user: bool,
    nx: bool,
    dirty: bool,
    pkey: u8,
}

/// What an access produced, in comparable form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok(u64),
    Pf { code: u32, cr2: u64 },
    Other,
}

fn outcome_of_mmu(r: &Result<pgtable::PhysAddr, Error>) -> Outcome {
    match r {
        Ok(pa) => Outcome::Ok(pa.as_u64()),
        Err(Error::PageFault(pf)) => {
            Outcome::Pf { code: pf.error_code.bits(), cr2: pf.addr.as_u64() }
        }
        Err(_) => Outcome::Other,
    }
}

fn access_of(kind: u8) -> Access {
    match kind {
        0 => Access::Read,
        1 => Access::Write,
        _ => Access::Fetch,
    }
}

/// The SDM's leaf checks applied to a cached translation (written from the
/// SDM, independently of the MMU): `None` when the access must walk again
/// (a write through a cached clean entry).
fn apply(e: &Cached, va: u64, access: Access, r: &Regs) -> Option<Outcome> {
    let user = r.cpl == 3;
    let wp = r.cr0 & CR0_WP != 0;
    let smap = r.cr4 & CR4_SMAP != 0 && !r.ac && !user;
    let smep = r.cr4 & CR4_SMEP != 0;
    let nxe = r.efer & EFER_NXE != 0;
    let user_ok = !user || e.user;
    let smep_blocks = !user && e.user && smep;
    let ok = user_ok
        && match access {
            Access::Read => !(smap && e.user),
            Access::Write => !(smap && e.user) && (e.writable || (!user && !wp)),
            Access::Fetch => !e.nx && !smep_blocks,
        };
    let pk = r.cr4 & CR4_PKE != 0 && e.user && access != Access::Fetch && {
        let ad = r.pkru >> (2 * e.pkey) & 1 != 0;
        let wd = r.pkru >> (2 * e.pkey + 1) & 1 != 0;
        ad || (access == Access::Write && wd && (user || wp))
    };
    if !ok || pk {
        let mut code = 1u32;
        if pk {
            code |= 0x20;
        }
        if user {
            code |= 4;
        }
        match access {
            Access::Read => {}
            Access::Write => code |= 2,
            Access::Fetch => {
                if nxe || smep {
                    code |= 0x10;
                }
            }
        }
        return Some(Outcome::Pf { code, cr2: va });
    }
    if access == Access::Write && !e.dirty {
        return None;
    }
    Some(Outcome::Ok(e.frame + (va & e.size_mask)))
}

/// One outcome the SDM allows for a page's access.
struct Cand {
    outcome: Outcome,
    mem: FrameMem,
    fill: Option<Cached>,
    /// Where the walk started: 0 a cached translation (no walk), 1 CR3,
    /// 2..=4 a paging-structure-cache value of that level (4: PML4 cache).
    from: u8,
}

/// A value the SDM allows a paging-structure cache (SDM 4.10.3) to hold
/// for the PCID and address prefix: `level` 4 (PML4 cache, prefix
/// `va >> 39`), 3 (PDPTE cache, `va >> 30`) or 2 (PDE cache, `va >> 21`);
/// `table` the next table's physical address, and the permissions of the
/// entries from the PML4E down to this one combined: R/W and U/S ANDed,
/// XD ORed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PscVal {
    pcid: u16,
    level: u8,
    prefix: u64,
    table: u64,
    writable: bool,
    user: bool,
    nx: bool,
}

const ADDR: u64 = 0x000f_ffff_ffff_f000;

fn psc_shift(level: u8) -> u32 {
    match level {
        4 => 39,
        3 => 30,
        _ => 21,
    }
}

/// Whether a paging-structure entry read at `level` may be cached (SDM
/// 4.10.3.1): present, accessed, no reserved bit set, and for a PDPTE or
/// PDE not a page (PS=0; in a PML4E bit 7 is reserved, so the same test).
/// Written from the SDM's bit layout.
fn psc_cacheable(e: u64, nxe: bool) -> bool {
    let mut rsvd = ADDR & !((1u64 << MAXPHY) - 1);
    if !nxe {
        rsvd |= 1 << 63;
    }
    let ps = e & 0x80 != 0;
    e & 1 != 0 && e & 0x20 != 0 && e & rsvd == 0 && !ps
}

/// The paging-structure-cache value a walk holds after reading entry `e`
/// at `level` for `va`, having come through `above` (None: from CR3).
fn psc_after(above: Option<&PscVal>, e: u64, level: u8, va: u64, pcid: u16) -> PscVal {
    let (w, u, x) = above.map_or((true, true, false), |a| (a.writable, a.user, a.nx));
    PscVal {
        pcid,
        level,
        prefix: va >> psc_shift(level),
        table: e & ADDR,
        writable: w && e & 2 != 0,
        user: u && e & 4 != 0,
        nx: x || e & (1 << 63) != 0,
    }
}

#[derive(Default, Debug)]
struct Tally {
    sized: u64,
    split: u64,
    strict: u64,
    relaxed: u64,
    stale_answers: u64,
    /// Accesses only a walk from a paging-structure-cache value explains.
    psc_answers: u64,
    invalidations: [u64; 12],
}

struct World<const F: usize> {
    mem: FrameMem,
    mmu: Mmu<F>,
    regs: Regs,
    cached: Vec<Cached>,
    /// What the paging-structure caches may hold (every value since the
    /// invalidation covering it).
    psc: Vec<PscVal>,
    slots: Vec<Slot>,
    tally: Tally,
    /// The MMU runs with [`StalePolicy::Rewalk`]: a #PF it raises must be
    /// the fresh walk's.
    rewalk: bool,
}

impl<const F: usize> World<F> {
    fn new(
        init: &[Bits],
        pcide: bool,
        pge: bool,
        entries: usize,
        psc: [usize; 3],
        stale: StalePolicy,
    ) -> Self {
        let slots = slots();
        let mut mem = FrameMem::new(FRAMES);
        for (s, b) in slots.iter().zip(init) {
            mem.write_u64(pgtable::PhysAddr::new_truncate(s.pa), entry_value(s, *b)).unwrap();
        }
        let mut regs = Regs::long_mode(PML4 * 4096);
        if pcide {
            regs.cr4 |= CR4_PCIDE;
        }
        if pge {
            regs.cr4 |= CR4_PGE;
        }
        let config = Config {
            entries,
            contexts: 2,
            maxphyaddr: MAXPHY,
            pml4_cache: psc[0],
            pdpte_cache: psc[1],
            pde_cache: psc[2],
            stale,
        };
        let mut mmu = Mmu::<F>::with_first_level(config).unwrap();
        mmu.set_regs(regs).unwrap();
        Self {
            mem,
            mmu,
            regs,
            cached: Vec::new(),
            psc: Vec::new(),
            slots,
            tally: Tally::default(),
            rewalk: stale == StalePolicy::Rewalk,
        }
    }

    /// The entry the model caches from a completed walk of `va`.
    fn cached_of(&self, va: u64, t: &pgtable::Translation, pcid: u16) -> Cached {
        let size_mask = t.page_size.bytes() - 1;
        let leaf = t.leaf_entry;
        Cached {
            region: va & !size_mask,
            size_mask,
            frame: t.pa.as_u64() & !size_mask,
            pcid,
            global: self.regs.cr4 & CR4_PGE != 0 && leaf & 0x100 != 0,
            writable: t.perms.writable,
            user: t.perms.user,
            nx: t.perms.nx,
            dirty: leaf & 0x40 != 0,
            pkey: ((leaf >> 59) & 0xf) as u8,
        }
    }

    fn pcid(&self) -> u16 {
        self.regs.pcid()
    }

    fn cpu(&self) -> CpuState {
        let r = &self.regs;
        CpuState {
            wp: r.cr0 & CR0_WP != 0,
            nxe: r.efer & EFER_NXE != 0,
            smep: r.cr4 & CR4_SMEP != 0,
            smap: r.cr4 & CR4_SMAP != 0,
            pke: r.cr4 & CR4_PKE != 0,
            ac: r.ac,
            pkru: r.pkru,
            user: r.cpl == 3,
            maxphyaddr: MAXPHY,
        }
    }

    /// pgtable's walk of `va` from CR3 on a copy of `mem`: its result and
    /// the memory it leaves (A/D set).
    fn fresh_walk(
        &self,
        mem: &FrameMem,
        va: u64,
        access: Access,
    ) -> (Result<pgtable::Translation, pgtable::Fault>, FrameMem) {
        let mut m = mem.clone();
        let cr3 = pgtable::PhysAddr::new_truncate(self.regs.cr3 & 0x000f_ffff_ffff_f000);
        let t = pgtable::translate(
            &mut m,
            cr3,
            pgtable::VirtAddr::new(va).unwrap(),
            access,
            &self.cpu(),
        );
        (t, m)
    }

    fn drop_where(&mut self, kind: usize, f: impl Fn(&Cached) -> bool) {
        self.tally.invalidations[kind] += 1;
        self.cached.retain(|e| !f(e));
    }

    /// Drops the paging-structure-cache values an invalidation covers.
    fn psc_drop(&mut self, f: impl Fn(&PscVal) -> bool) {
        self.psc.retain(|v| !f(v));
    }

    /// The values the paging-structure caches may take on from memory
    /// `mem` under the current PCID (a CPU may create entries at any time,
    /// also for addresses it does not access): for every prefix of the
    /// universe, each entry that is cacheable, reached from CR3 or from
    /// any value the cache of the level above may hold.
    fn psc_observed(&self, mem: &FrameMem, known: &[PscVal]) -> Vec<PscVal> {
        let mut out: Vec<PscVal> = Vec::new();
        if self.regs.cr0 & CR0_PG == 0 {
            return out;
        }
        let pcid = self.pcid();
        let nxe = self.regs.efer & EFER_NXE != 0;
        let read = |pa: u64| mem.read_u64(pgtable::PhysAddr::new_truncate(pa)).ok();
        let add = |out: &mut Vec<PscVal>, v: PscVal| {
            if !known.contains(&v) && !out.contains(&v) {
                out.push(v);
            }
        };
        let cr3 = self.regs.cr3 & ADDR;
        for level in [4u8, 3, 2] {
            for a in 0..2 {
                for b in 0..2 {
                    for c in 0..2 {
                        let va = va_of(a, b, c, 0);
                        let idx = (va >> psc_shift(level)) & 511;
                        // Where the walk to this level can come from.
                        let above: Vec<Option<PscVal>> = if level == 4 {
                            vec![None]
                        } else {
                            let pfx = va >> psc_shift(level + 1);
                            known
                                .iter()
                                .chain(out.iter())
                                .filter(|v| v.pcid == pcid && v.level == level + 1)
                                .filter(|v| v.prefix == pfx)
                                .map(|v| Some(*v))
                                .collect()
                        };
                        for up in above {
                            let table = up.map_or(cr3, |u| u.table);
                            let Some(e) = read(table + idx * 8) else { continue };
                            if psc_cacheable(e, nxe) {
                                add(&mut out, psc_after(up.as_ref(), e, level, va, pcid));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Adds what the paging-structure caches may take on from the current
    /// memory.
    fn psc_observe(&mut self) {
        let new = self.psc_observed(&self.mem, &self.psc);
        self.psc.extend(new);
    }

    /// A walk of `va` that starts from the paging-structure-cache value
    /// `v` and goes on through memory `mem` (SDM 4.10.3.2): pgtable's walk
    /// over a copy of memory plus three scratch tables standing for the
    /// levels the cache replaces, whose entries carry `v`'s table and
    /// combined permissions (and A, so the walk writes none of them).
    fn walk_from_psc(
        &self,
        mem: &FrameMem,
        v: &PscVal,
        va: u64,
        access: Access,
    ) -> (Result<pgtable::Translation, pgtable::Fault>, FrameMem) {
        let mut m = FrameMem::new(FRAMES + 3);
        m.frames_mut()[..FRAMES].clone_from_slice(mem.frames());
        let scratch = |k: usize| (FRAMES + k) as u64 * 4096;
        let cached = (v.table & ADDR)
            | 0x21
            | if v.writable { 2 } else { 0 }
            | if v.user { 4 } else { 0 }
            | if v.nx { 1 << 63 } else { 0 };
        let through = |k: usize| scratch(k) | 0x27;
        let put = |m: &mut FrameMem, table: u64, level: u8, e: u64| {
            let at = table + ((va >> psc_shift(level)) & 511) * 8;
            m.write_u64(pgtable::PhysAddr::new_truncate(at), e).unwrap();
        };
        match v.level {
            4 => put(&mut m, scratch(0), 4, cached),
            3 => {
                put(&mut m, scratch(0), 4, through(1));
                put(&mut m, scratch(1), 3, cached);
            }
            _ => {
                put(&mut m, scratch(0), 4, through(1));
                put(&mut m, scratch(1), 3, through(2));
                put(&mut m, scratch(2), 2, cached);
            }
        }
        let t = pgtable::translate(
            &mut m,
            pgtable::PhysAddr::new_truncate(scratch(0)),
            pgtable::VirtAddr::new(va).unwrap(),
            access,
            &self.cpu(),
        );
        let mut out = FrameMem::new(FRAMES);
        out.frames_mut().clone_from_slice(&m.frames()[..FRAMES]);
        (t, out)
    }

    /// Every (outcome, memory after, entry filled) the SDM allows for one
    /// page's access from memory `mem` with `cached` and `psc` still held:
    /// the fresh walk from CR3, each cached translation covering `va` that
    /// can answer, and a walk from each paging-structure-cache value for
    /// `va`'s prefixes.
    fn candidates(
        &self,
        mem: &FrameMem,
        cached: &[Cached],
        psc: &[PscVal],
        va: u64,
        access: Access,
    ) -> Vec<Cand> {
        let pcid = self.pcid();
        let walked = |(t, m): (Result<pgtable::Translation, pgtable::Fault>, FrameMem), from| {
            let (outcome, fill) = match &t {
                Ok(t) => (Outcome::Ok(t.pa.as_u64()), Some(self.cached_of(va, t, pcid))),
                Err(pgtable::Fault::PageFault(pf)) => {
                    (Outcome::Pf { code: pf.error_code.bits(), cr2: pf.addr.as_u64() }, None)
                }
                Err(_) => (Outcome::Other, None),
            };
            Cand { outcome, mem: m, fill, from }
        };
        let mut v = vec![walked(self.fresh_walk(mem, va, access), 1)];
        for e in cached
            .iter()
            .filter(|e| (va & !e.size_mask) == e.region && (e.global || e.pcid == pcid))
        {
            if let Some(o) = apply(e, va, access, &self.regs) {
                v.push(Cand { outcome: o, mem: mem.clone(), fill: None, from: 0 });
            }
        }
        for p in psc.iter().filter(|p| p.pcid == pcid && p.prefix == va >> psc_shift(p.level)) {
            v.push(walked(self.walk_from_psc(mem, p, va, access), p.level));
        }
        v
    }

    /// An access of `size` bytes through `translate_sized`, split at the
    /// page boundary: the first page's candidates, then for each that
    /// succeeded the second page's from the memory it left.
    fn sized_access(&mut self, va: u64, size: usize, access: Access) -> Result<(), String> {
        if self.regs.cr0 & CR0_PG == 0 {
            return Ok(());
        }
        self.psc_observe();
        let before = self.mem.clone();
        let got = match self.mmu.translate_sized(&mut self.mem, va, size, access) {
            Ok(span) => Ok((span.first.as_u64(), span.second.map(|p| p.as_u64()))),
            Err(Error::PageFault(pf)) => Err(Some((pf.error_code.bits(), pf.addr.as_u64()))),
            Err(_) => Err(None),
        };
        let in_first = 4096 - (va & 0xfff);
        let va2 = (size as u64 > in_first).then_some(va + in_first);
        type Res = Result<(u64, Option<u64>), Option<(u32, u64)>>;
        let mut all: Vec<(Res, FrameMem, Vec<Cached>)> = Vec::new();
        for c1 in self.candidates(&before, &self.cached, &self.psc, va, access) {
            match (c1.outcome, va2) {
                (Outcome::Pf { code, cr2 }, _) => {
                    all.push((Err(Some((code, cr2))), c1.mem, vec![]))
                }
                (Outcome::Other, _) => all.push((Err(None), c1.mem, vec![])),
                (Outcome::Ok(pa1), None) => {
                    all.push((Ok((pa1, None)), c1.mem, c1.fill.into_iter().collect()))
                }
                (Outcome::Ok(pa1), Some(v2)) => {
                    let mut cached2 = self.cached.clone();
                    cached2.extend(c1.fill);
                    // What the caches may have taken on from the memory the
                    // first page's walk left.
                    let mut psc2 = self.psc.clone();
                    psc2.extend(self.psc_observed(&c1.mem, &self.psc));
                    for c2 in self.candidates(&c1.mem, &cached2, &psc2, v2, access) {
                        let fills: Vec<Cached> = c1.fill.into_iter().chain(c2.fill).collect();
                        let r = match c2.outcome {
                            Outcome::Ok(pa2) => Ok((pa1, Some(pa2))),
                            Outcome::Pf { code, cr2 } => Err(Some((code, cr2))),
                            Outcome::Other => Err(None),
                        };
                        all.push((r, c2.mem, fills));
                    }
                }
            }
        }
        // Every allowed outcome that matches may be what the MMU did: the
        // entries any of them fills may be cached.
        let fills: Vec<Cached> = all
            .iter()
            .filter(|(r, m, _)| *r == got && m.frames() == self.mem.frames())
            .flat_map(|(_, _, f)| f.iter().copied())
            .collect();
        if !all.iter().any(|(r, m, _)| *r == got && m.frames() == self.mem.frames()) {
            let outs: Vec<&Res> = all.iter().map(|(r, _, _)| r).collect();
            return Err(format!(
                "sized access {va:#x}+{size} {access:?} under {:?}: MMU gave {got:?}, allowed {outs:?}",
                self.regs
            ));
        }
        self.tally.sized += 1;
        if va2.is_some() {
            self.tally.split += 1;
        }
        for e in fills {
            if !self.cached.contains(&e) {
                self.cached.push(e);
            }
        }
        if let Err(Some((_, cr2))) = got {
            self.fault_drops(cr2);
        }
        self.psc_observe();
        Ok(())
    }

    /// A #PF drops the faulting address's TLB entries and the
    /// paging-structure-cache entries a walk of it would use (SDM
    /// 4.10.4.1).
    fn fault_drops(&mut self, cr2: u64) {
        let pcid = self.pcid();
        self.drop_where(11, |e| (cr2 & !e.size_mask) == e.region && (e.global || e.pcid == pcid));
        self.psc_drop(|v| v.pcid == pcid && v.prefix == cr2 >> psc_shift(v.level));
    }

    fn access(&mut self, va: u64, access: Access) -> Result<(), String> {
        if self.regs.cr0 & CR0_PG == 0 {
            let before = self.mem.clone();
            let got = self.mmu.translate(&mut self.mem, va, access);
            let got_o = outcome_of_mmu(&got);
            let untouched = self.mem.frames() == before.frames();
            let want = if va >> MAXPHY == 0 { Outcome::Ok(va) } else { Outcome::Other };
            return if got_o == want && untouched {
                Ok(())
            } else {
                Err(format!("paging off: {va:#x} gave {got_o:?}"))
            };
        }
        self.psc_observe();
        let before = self.mem.clone();
        let got = self.mmu.translate(&mut self.mem, va, access);
        let got_o = outcome_of_mmu(&got);
        let cands = self.candidates(&before, &self.cached, &self.psc, va, access);
        let fresh = &cands[0];
        // Strict: nothing cached could answer differently from the walk
        // (no edit since the covering invalidation).
        let strict = cands
            .iter()
            .all(|c| c.outcome == fresh.outcome && c.mem.frames() == fresh.mem.frames());
        if strict {
            self.tally.strict += 1;
        } else {
            self.tally.relaxed += 1;
        }
        let matching: Vec<&Cand> = cands
            .iter()
            .filter(|c| c.outcome == got_o && c.mem.frames() == self.mem.frames())
            .collect();
        if matching.is_empty() {
            let allowed: Vec<(u8, Outcome)> = cands.iter().map(|c| (c.from, c.outcome)).collect();
            return Err(format!(
                "access {va:#x} {access:?} under {:?}: MMU gave {got_o:?} (memory {}), \
                 allowed (from, outcome) {allowed:?}; TLB may hold {:?}; PSCs may hold {:?}",
                self.regs,
                if self.mem.frames() == before.frames() { "untouched" } else { "changed" },
                self.cached,
                self.psc,
            ));
        }
        // Rewalk: no #PF the tables in memory would not raise (the fresh
        // walk is the first candidate), whatever the caches held.
        if self.rewalk && matches!(got_o, Outcome::Pf { .. }) && got_o != fresh.outcome {
            return Err(format!(
                "access {va:#x} {access:?} with StalePolicy::Rewalk: MMU raised {got_o:?}, \
                 the tables in memory give {:?}",
                fresh.outcome
            ));
        }
        if matching.iter().all(|c| c.from != 1) {
            self.tally.stale_answers += 1;
            if matching.iter().all(|c| c.from >= 2) {
                self.tally.psc_answers += 1;
            }
        }
        let fills: Vec<Cached> = matching.iter().filter_map(|c| c.fill).collect();
        for e in fills {
            if !self.cached.contains(&e) {
                self.cached.push(e);
            }
        }
        if let Outcome::Pf { cr2, .. } = got_o {
            self.fault_drops(cr2);
        }
        self.psc_observe();
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        let pcid = self.pcid();
        match *op {
            Op::Access { page: (a, b, c, d), off, kind } => {
                self.access(va_of(a, b, c, d) + off, access_of(kind))?
            }
            Op::Sized { page: (a, b, c, d), back, size, kind } => {
                self.sized_access(va_of(a, b, c, d) + 4096 - back, size, access_of(kind))?
            }
            Op::Edit { slot, bits } => {
                let s = self.slots[slot];
                let v = entry_value(&s, bits);
                self.mem.write_u64(pgtable::PhysAddr::new_truncate(s.pa), v).unwrap();
            }
            Op::EditInvlpg { slot, bits, kinds } => {
                let s = self.slots[slot];
                let va = s.va + 0x10;
                self.access(va, access_of(kinds.0))?;
                let v = entry_value(&s, bits);
                self.mem.write_u64(pgtable::PhysAddr::new_truncate(s.pa), v).unwrap();
                // INVLPG of the page the entry maps (for a table entry, only
                // its first page: the other pages keep their entries).
                self.mmu.invlpg(va);
                self.drop_where(0, |e| {
                    (va & !e.size_mask) == e.region && (e.global || e.pcid == pcid)
                });
                // INVLPG empties the current PCID's paging-structure caches.
                self.psc_drop(|v| v.pcid == pcid);
                self.access(va, access_of(kinds.1))?;
            }
            Op::EditUpper { slot, bits, pages, kinds } => {
                // The slot's entry if it is a table entry, else its PDE.
                let s = self.slots[slot];
                let s = if s.level == 1 {
                    *self
                        .slots
                        .iter()
                        .find(|u| u.level == 2 && u.va == s.va & !((1 << 21) - 1))
                        .unwrap()
                } else {
                    s
                };
                // Two of the universe's pages the entry maps (possibly the
                // same one).
                let under: Vec<u64> = self
                    .slots
                    .iter()
                    .filter(|u| u.level == 1)
                    .map(|u| u.va)
                    .filter(|&va| {
                        let span = 1u64 << (12 + 9 * u32::from(s.level - 1));
                        va & !(span - 1) == s.va
                    })
                    .collect();
                let va1 = under[pages.0 % under.len()] + 0x30;
                let va2 = under[pages.1 % under.len()] + 0x40;
                self.access(va1, access_of(kinds.0))?;
                let v = entry_value(&s, bits);
                self.mem.write_u64(pgtable::PhysAddr::new_truncate(s.pa), v).unwrap();
                self.access(va2, access_of(kinds.1))?;
            }
            Op::EditCr3 { slot, bits, kinds } => {
                let s = self.slots[slot];
                let va = s.va + 0x20;
                self.access(va, access_of(kinds.0))?;
                let v = entry_value(&s, bits);
                self.mem.write_u64(pgtable::PhysAddr::new_truncate(s.pa), v).unwrap();
                self.step(&Op::Cr3 { pcid, noflush: false })?;
                self.access(va, access_of(kinds.1))?;
            }
            Op::Flip { slot, bit } => {
                let pa = pgtable::PhysAddr::new_truncate(self.slots[slot].pa);
                let v = self.mem.read_u64(pa).unwrap() ^ (1u64 << bit);
                self.mem.write_u64(pa, v).unwrap();
            }
            Op::Invlpg { page: (a, b, c, d), noncanon } => {
                let va = va_of(a, b, c, d);
                if noncanon {
                    // A no-op: the model drops nothing.
                    self.mmu.invlpg(va ^ (1 << 62));
                } else {
                    self.mmu.invlpg(va);
                    self.drop_where(0, |e| {
                        (va & !e.size_mask) == e.region && (e.global || e.pcid == pcid)
                    });
                    self.psc_drop(|v| v.pcid == pcid);
                }
            }
            Op::Invpcid { kind, pcid: p, page: (a, b, c, d) } => {
                let va = va_of(a, b, c, d);
                let pcide = self.regs.cr4 & CR4_PCIDE != 0;
                let op = match kind {
                    0 => Invpcid::Address { pcid: p, va },
                    1 => Invpcid::Context { pcid: p },
                    2 => Invpcid::All,
                    _ => Invpcid::AllNonGlobal,
                };
                let r = self.mmu.invpcid(op);
                let gp = kind <= 1 && !pcide && p != 0;
                if gp != matches!(r, Err(Error::GeneralProtection(_))) {
                    return Err(format!("INVPCID {op:?} with PCIDE={pcide} gave {r:?}"));
                }
                if !gp {
                    match kind {
                        0 => self.drop_where(1, |e| {
                            (va & !e.size_mask) == e.region && !e.global && e.pcid == p
                        }),
                        1 => self.drop_where(2, |e| !e.global && e.pcid == p),
                        2 => self.drop_where(3, |_| true),
                        _ => self.drop_where(4, |e| !e.global),
                    }
                    // Types 0 and 1: the PCID's paging-structure caches (for
                    // type 0 the SDM allows all of them, and the MMU does
                    // so); types 2 and 3: every PCID's.
                    if kind <= 1 {
                        self.psc_drop(|v| v.pcid == p);
                    } else {
                        self.psc_drop(|_| true);
                    }
                }
            }
            Op::Cr3 { pcid: p, noflush } => {
                if self.regs.cr4 & CR4_PCIDE != 0 {
                    let v = (PML4 * 4096) | u64::from(p) | if noflush { CR3_NOFLUSH } else { 0 };
                    self.mmu.write_cr3(v).map_err(|e| format!("CR3 {v:#x}: {e}"))?;
                    self.regs.cr3 = v & !CR3_NOFLUSH;
                    if !noflush {
                        self.drop_where(5, |e| !e.global && e.pcid == p);
                        self.psc_drop(|v| v.pcid == p);
                    }
                } else {
                    let v = PML4 * 4096;
                    self.mmu.write_cr3(v).map_err(|e| format!("CR3 {v:#x}: {e}"))?;
                    self.regs.cr3 = v;
                    self.drop_where(5, |e| !e.global);
                    self.psc_drop(|v| v.pcid == 0);
                }
            }
            Op::Cr4 { toggle } => {
                let old = self.regs.cr4;
                let new = old ^ toggle;
                let r = self.mmu.write_cr4(new);
                let gp = toggle == CR4_PCIDE
                    && new & CR4_PCIDE != 0
                    && (self.regs.cr3 & 0xfff != 0 || self.regs.efer & EFER_LMA == 0);
                if gp != r.is_err() {
                    return Err(format!("CR4 {old:#x} -> {new:#x} gave {r:?}"));
                }
                if !gp {
                    self.regs.cr4 = new;
                    if toggle == CR4_PGE || (toggle == CR4_PCIDE && new & CR4_PCIDE == 0) {
                        self.drop_where(6, |_| true);
                        self.psc_drop(|_| true);
                    } else if toggle == CR4_SMEP && new & CR4_SMEP != 0 {
                        self.drop_where(7, |e| !e.global && e.pcid == pcid);
                        self.psc_drop(|v| v.pcid == pcid);
                    }
                }
            }
            Op::Cr0Wp => {
                let v = self.regs.cr0 ^ CR0_WP;
                self.mmu.write_cr0(v).map_err(|e| format!("CR0 {v:#x}: {e}"))?;
                self.regs.cr0 = v;
                // The SDM requires nothing here: cached entries hold R/W,
                // not the outcome, so they stay allowed.
            }
            Op::Cr0PgCycle => {
                let on = self.regs.cr0;
                let off = on & !CR0_PG;
                let r = self.mmu.write_cr0(off);
                let gp = self.regs.cr4 & CR4_PCIDE != 0;
                if gp != r.is_err() {
                    return Err(format!("CR0 -> {off:#x} gave {r:?}"));
                }
                if !gp {
                    self.regs.cr0 = off;
                    self.regs.efer &= !EFER_LMA;
                    self.drop_where(8, |_| true);
                    self.psc_drop(|_| true);
                    self.access(0x1234, Access::Read)?;
                    self.access(va_of(1, 0, 0, 0), Access::Write)?;
                    self.mmu.write_cr0(on).map_err(|e| format!("CR0 {on:#x}: {e}"))?;
                    self.regs.cr0 = on;
                    self.regs.efer |= EFER_LMA;
                }
            }
            Op::EferNxe => {
                let v = self.regs.efer ^ EFER_NXE;
                self.mmu.write_efer(v).map_err(|e| format!("EFER {v:#x}: {e}"))?;
                self.regs.efer = v;
                // The SDM is silent; the MMU documents a full flush and the
                // model holds it to that.
                self.drop_where(9, |_| true);
                self.psc_drop(|_| true);
            }
            Op::Pkru(v) => {
                self.mmu.write_pkru(v);
                self.regs.pkru = v;
            }
            Op::Cpl(c) => {
                self.mmu.set_cpl(c);
                self.regs.cpl = c;
            }
            Op::Ac(ac) => {
                self.mmu.set_ac(ac);
                self.regs.ac = ac;
            }
        }
        if self.mmu.regs() != &self.regs {
            return Err(format!(
                "registers diverged: MMU {:?}, model {:?}",
                self.mmu.regs(),
                self.regs
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Case {
    init: Vec<Bits>,
    pcide: bool,
    pge: bool,
    ops: Vec<Op>,
}

fn case_strategy(steps: usize) -> impl Strategy<Value = Case> {
    let n = slots().len();
    (
        prop::collection::vec(any::<u64>().prop_map(Bits), n),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(op_strategy(), steps),
    )
        .prop_map(|(init, pcide, pge, ops)| Case { init, pcide, pge, ops })
}

static STRICT: AtomicU64 = AtomicU64::new(0);
static RELAXED: AtomicU64 = AtomicU64::new(0);
static STALE: AtomicU64 = AtomicU64::new(0);
static PSC_STALE: AtomicU64 = AtomicU64::new(0);
static PSC_HITS: AtomicU64 = AtomicU64::new(0);
static SIZED: AtomicU64 = AtomicU64::new(0);
static SPLIT: AtomicU64 = AtomicU64::new(0);
static INVALIDATIONS: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];

fn run_case<const F: usize>(
    case: &Case,
    bug: Bug,
    entries: usize,
    psc: [usize; 3],
) -> Result<(), TestCaseError> {
    run_case_with::<F>(case, bug, entries, psc, StalePolicy::Faithful)
}

fn run_case_with<const F: usize>(
    case: &Case,
    bug: Bug,
    entries: usize,
    psc: [usize; 3],
    stale: StalePolicy,
) -> Result<(), TestCaseError> {
    let mut w = World::<F>::new(&case.init, case.pcide, case.pge, entries, psc, stale);
    w.mmu.inject(bug);
    for (k, op) in case.ops.iter().enumerate() {
        w.step(op).map_err(|e| TestCaseError::fail(format!("step {k} {op:?}: {e}")))?;
    }
    if bug != Bug::None {
        return Ok(());
    }
    STRICT.fetch_add(w.tally.strict, Ordering::Relaxed);
    SIZED.fetch_add(w.tally.sized, Ordering::Relaxed);
    SPLIT.fetch_add(w.tally.split, Ordering::Relaxed);
    RELAXED.fetch_add(w.tally.relaxed, Ordering::Relaxed);
    STALE.fetch_add(w.tally.stale_answers, Ordering::Relaxed);
    PSC_STALE.fetch_add(w.tally.psc_answers, Ordering::Relaxed);
    let p = w.mmu.stats().psc;
    PSC_HITS.fetch_add(p.pde_hits + p.pdpte_hits + p.pml4_hits, Ordering::Relaxed);
    for (a, v) in INVALIDATIONS.iter().zip(w.tally.invalidations) {
        a.fetch_add(v, Ordering::Relaxed);
    }
    Ok(())
}

const STEPS: usize = 200;

fn cases() -> u32 {
    std::env::var("PTEMU_MMU_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

fn runner(cases: u32, shrink: bool) -> TestRunner {
    let config = PtConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: if shrink { 4096 } else { 0 },
        ..PtConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

type Run = fn(&Case, Bug) -> Result<(), TestCaseError>;

/// The TLB shapes the model runs against. The universe's page numbers
/// differ in bits 0 and 3 ([`PT_SLOTS`]), 9 (c), 18 (b) and 27 (a); a
/// first level of F slots is indexed by bits 0..log2(F), a main table of
/// E slots by bits 0..log2(E).
/// - F = 256, E = 8: pages equal in bit 0 share a main slot (conflicts,
///   victim cache), and pages 0 and 8 do so with first-level slots of
///   their own (an entry leaving the main table must take its first-level
///   copy with it);
/// - F = 256, E = 1024: pages differing in c have main slots of their own
///   but share a first-level slot (first-level misses the main table
///   answers), and entries sharing a main slot share a first-level slot;
/// - F = 8, E = 1024: pages differing in bit 3, c, b or a share a
///   first-level slot, most first-level misses are main-table hits.
///
/// Paging-structure caches (PML4, PDPTE, PDE entries per context): the
/// universe's PML4 slots 0 and 257 and its PDPTE and PDE prefixes differ
/// in bit 0 of each level's index, and in the PML4 index above it.
/// - the defaults (4, 4, 32): PDPTEs (and PDEs) under the two PML4 slots
///   share a slot (conflicts evict);
/// - one entry each: every prefix of a level shares the one slot;
/// - (512, 4096, 4096): no conflicts, so entries live until invalidated.
const SHAPES: [(&str, Run); 3] = [
    ("256-slot first level, 8-slot main tables, default PSCs", |c, b| {
        run_case::<256>(c, b, 8, [4, 4, 32])
    }),
    ("256-slot first level, 1024-slot main tables, 1-entry PSCs", |c, b| {
        run_case::<256>(c, b, 1024, [1, 1, 1])
    }),
    ("8-slot first level, 1024-slot main tables, conflict-free PSCs", |c, b| {
        run_case::<8>(c, b, 1024, [512, 4096, 4096])
    }),
];

/// With [`StalePolicy::Rewalk`] the same model holds, and no access raises
/// a #PF that a walk of the tables in memory would not (QEMU's
/// behaviour): neither from a stale TLB entry nor from a stale
/// paging-structure-cache entry.
#[test]
fn rewalk_raises_no_fault_the_tables_would_not() {
    model("256-slot first level, 8-slot main tables, default PSCs, Rewalk", |c, b| {
        run_case_with::<256>(c, b, 8, [4, 4, 32], StalePolicy::Rewalk)
    });
}

#[test]
fn tlb_matches_the_sdm_model() {
    for (shape, run) in SHAPES {
        model(shape, run);
    }
}

fn model(shape: &str, run: Run) {
    for a in [&STRICT, &RELAXED, &STALE, &PSC_STALE, &PSC_HITS, &SIZED, &SPLIT]
        .into_iter()
        .chain(&INVALIDATIONS)
    {
        a.store(0, Ordering::Relaxed);
    }
    let cases = cases();
    let mut r = runner(cases, true);
    let result = r.run(&case_strategy(STEPS), |case| run(&case, Bug::None));
    if let Err(e) = result {
        panic!("{shape}: {e}");
    }
    let inv = INVALIDATIONS.each_ref().map(|a| a.load(Ordering::Relaxed));
    let names = [
        "INVLPG",
        "INVPCID 0",
        "INVPCID 1",
        "INVPCID 2",
        "INVPCID 3",
        "MOV CR3",
        "CR4 PGE/PCIDE",
        "CR4 SMEP",
        "CR0 PG",
        "EFER NXE",
        "-",
        "#PF",
    ];
    println!(
        "model, {shape}: {cases} cases x {STEPS} steps; accesses: {} strict \
         (must equal a fresh walk), {} relaxed (stale entries allowed), {} answered from a \
         stale entry",
        STRICT.load(Ordering::Relaxed),
        RELAXED.load(Ordering::Relaxed),
        STALE.load(Ordering::Relaxed)
    );
    println!(
        "  sized accesses (1..=64 bytes): {}, of which split across a page boundary: {}",
        SIZED.load(Ordering::Relaxed),
        SPLIT.load(Ordering::Relaxed)
    );
    assert!(SPLIT.load(Ordering::Relaxed) > 0);
    for (n, v) in names.iter().zip(inv) {
        if *n != "-" {
            println!("  {n}: {v}");
            assert!(v > 0, "invalidation kind {n} never exercised");
        }
    }
    println!(
        "  walks started from a paging-structure cache: {}; accesses only a walk from a \
         stale paging-structure-cache value explains: {}",
        PSC_HITS.load(Ordering::Relaxed),
        PSC_STALE.load(Ordering::Relaxed)
    );
    assert!(STALE.load(Ordering::Relaxed) > 0, "no stale entry was ever observed");
    assert!(PSC_HITS.load(Ordering::Relaxed) > 0, "the paging-structure caches were never used");
    assert!(
        PSC_STALE.load(Ordering::Relaxed) > 0,
        "no stale paging-structure-cache value was ever observed"
    );
    assert!(RELAXED.load(Ordering::Relaxed) > 0);
}

fn caught(bug: Bug) {
    for (shape, run) in SHAPES {
        let mut r = runner(400, false);
        match r.run(&case_strategy(STEPS), |case| run(&case, bug)) {
            Err(TestError::Fail(why, _)) => println!("{bug:?} caught ({shape}): {why}"),
            other => panic!("{bug:?} was not caught ({shape}): {other:?}"),
        }
    }
}

#[test]
fn catches_invlpg_keeping_the_global_entry() {
    caught(Bug::InvlpgKeepsGlobal);
}

#[test]
fn catches_cr3_write_keeping_non_global_entries() {
    caught(Bug::Cr3KeepsNonGlobal);
}

#[test]
fn catches_write_permission_on_a_clean_page() {
    caught(Bug::WriteOnCleanPage);
}

#[test]
fn catches_a_first_level_copy_outliving_its_entry() {
    caught(Bug::FirstLevelOutlivesEntry);
}

#[test]
fn catches_invlpg_keeping_the_paging_structure_caches() {
    caught(Bug::InvlpgKeepsPsc);
}

#[test]
fn catches_cr3_write_keeping_the_paging_structure_caches() {
    caught(Bug::Cr3KeepsPsc);
}

#[test]
fn catches_a_page_fault_keeping_the_paging_structure_caches() {
    caught(Bug::FaultKeepsPsc);
}
