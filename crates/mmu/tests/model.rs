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
//! Four deliberately wrong TLBs (the `fault-injection` knob) must make the
//! property fail: the three, and a first-level table that keeps the
//! copy of an invalidated entry.

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestError, TestRng, TestRunner};
use ptemu_mmu::pgtable::{self, CpuState, FrameMem, PhysMem};
use ptemu_mmu::{Access, Bug, Config, Error, Invpcid, Mmu, Regs, regs::*};

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
}

#[derive(Default, Debug)]
struct Tally {
    sized: u64,
    split: u64,
    strict: u64,
    relaxed: u64,
    stale_answers: u64,
    invalidations: [u64; 12],
}

struct World<const F: usize> {
    mem: FrameMem,
    mmu: Mmu<F>,
    regs: Regs,
    cached: Vec<Cached>,
    slots: Vec<Slot>,
    tally: Tally,
}

impl<const F: usize> World<F> {
    fn new(init: &[Bits], pcide: bool, pge: bool, entries: usize) -> Self {
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
        let config = Config { entries, contexts: 2, maxphyaddr: MAXPHY, ..Config::default() };
        let mut mmu = Mmu::<F>::with_first_level(config).unwrap();
        mmu.set_regs(regs).unwrap();
        Self { mem, mmu, regs, cached: Vec::new(), slots, tally: Tally::default() }
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

    /// Every (outcome, memory after, entry filled) the SDM allows for one
    /// page's access from memory `mem` with `cached` still held: the fresh
    /// walk, and each cached translation covering `va` that can answer.
    fn candidates(&self, mem: &FrameMem, cached: &[Cached], va: u64, access: Access) -> Vec<Cand> {
        let (fresh, fresh_mem) = self.fresh_walk(mem, va, access);
        let pcid = self.pcid();
        let (outcome, fill) = match &fresh {
            Ok(t) => (Outcome::Ok(t.pa.as_u64()), Some(self.cached_of(va, t, pcid))),
            Err(pgtable::Fault::PageFault(pf)) => {
                (Outcome::Pf { code: pf.error_code.bits(), cr2: pf.addr.as_u64() }, None)
            }
            Err(_) => (Outcome::Other, None),
        };
        let mut v = vec![Cand { outcome, mem: fresh_mem, fill }];
        for e in cached
            .iter()
            .filter(|e| (va & !e.size_mask) == e.region && (e.global || e.pcid == pcid))
        {
            if let Some(o) = apply(e, va, access, &self.regs) {
                v.push(Cand { outcome: o, mem: mem.clone(), fill: None });
            }
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
        for c1 in self.candidates(&before, &self.cached, va, access) {
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
                    for c2 in self.candidates(&c1.mem, &cached2, v2, access) {
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
        let Some((_, _, fills)) =
            all.iter().find(|(r, m, _)| *r == got && m.frames() == self.mem.frames())
        else {
            let outs: Vec<&Res> = all.iter().map(|(r, _, _)| r).collect();
            return Err(format!(
                "sized access {va:#x}+{size} {access:?} under {:?}: MMU gave {got:?}, allowed {outs:?}",
                self.regs
            ));
        };
        self.tally.sized += 1;
        if va2.is_some() {
            self.tally.split += 1;
        }
        let fills = fills.clone();
        for e in fills {
            if !self.cached.contains(&e) {
                self.cached.push(e);
            }
        }
        if let Err(Some((_, cr2))) = got {
            let pcid = self.pcid();
            self.drop_where(11, |e| {
                (cr2 & !e.size_mask) == e.region && (e.global || e.pcid == pcid)
            });
        }
        Ok(())
    }

    fn access(&mut self, va: u64, access: Access) -> Result<(), String> {
        let before = self.mem.clone();
        let got = self.mmu.translate(&mut self.mem, va, access);
        let got_o = outcome_of_mmu(&got);
        let untouched = self.mem.frames() == before.frames();
        if self.regs.cr0 & CR0_PG == 0 {
            let want = if va >> MAXPHY == 0 { Outcome::Ok(va) } else { Outcome::Other };
            return if got_o == want && untouched {
                Ok(())
            } else {
                Err(format!("paging off: {va:#x} gave {got_o:?}"))
            };
        }
        // The fresh walk, on a copy of memory as it was.
        let (fresh, fresh_mem) = self.fresh_walk(&before, va, access);
        let fresh_o = match &fresh {
            Ok(t) => Outcome::Ok(t.pa.as_u64()),
            Err(pgtable::Fault::PageFault(pf)) => {
                Outcome::Pf { code: pf.error_code.bits(), cr2: pf.addr.as_u64() }
            }
            Err(_) => Outcome::Other,
        };
        let pcid = self.pcid();
        let covering: Vec<Cached> = self
            .cached
            .iter()
            .filter(|e| (va & !e.size_mask) == e.region && (e.global || e.pcid == pcid))
            .copied()
            .collect();
        let alternatives: Vec<Option<Outcome>> =
            covering.iter().map(|e| apply(e, va, access, &self.regs)).collect();
        // Strict: nothing cached could answer differently from the walk
        // (no edit since the covering invalidation).
        let fresh_changes = fresh_mem.frames() != before.frames();
        let strict = covering.is_empty()
            || (!fresh_changes && alternatives.iter().all(|a| *a == Some(fresh_o) || a.is_none()));
        if strict {
            self.tally.strict += 1;
        } else {
            self.tally.relaxed += 1;
        }
        let as_fresh = got_o == fresh_o && self.mem.frames() == fresh_mem.frames();
        let as_cached = untouched && alternatives.contains(&Some(got_o));
        if !as_fresh && !as_cached {
            return Err(format!(
                "access {va:#x} {access:?} under {:?}: MMU gave {got_o:?} (memory {}), \
                 fresh walk {fresh_o:?}, allowed cached {alternatives:?} from {covering:?}",
                self.regs,
                if untouched { "untouched" } else { "changed" }
            ));
        }
        if !as_fresh {
            self.tally.stale_answers += 1;
        }
        match got_o {
            Outcome::Pf { cr2, .. } => {
                // A #PF invalidates the faulting address's entries.
                self.drop_where(11, |e| {
                    (cr2 & !e.size_mask) == e.region && (e.global || e.pcid == pcid)
                });
            }
            Outcome::Ok(_) if as_fresh => {
                if let Ok(t) = fresh {
                    let e = self.cached_of(va, &t, pcid);
                    if !self.cached.contains(&e) {
                        self.cached.push(e);
                    }
                }
            }
            _ => {}
        }
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
                self.access(va, access_of(kinds.1))?;
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
                }
            }
            Op::Cr3 { pcid: p, noflush } => {
                if self.regs.cr4 & CR4_PCIDE != 0 {
                    let v = (PML4 * 4096) | u64::from(p) | if noflush { CR3_NOFLUSH } else { 0 };
                    self.mmu.write_cr3(v).map_err(|e| format!("CR3 {v:#x}: {e}"))?;
                    self.regs.cr3 = v & !CR3_NOFLUSH;
                    if !noflush {
                        self.drop_where(5, |e| !e.global && e.pcid == p);
                    }
                } else {
                    let v = PML4 * 4096;
                    self.mmu.write_cr3(v).map_err(|e| format!("CR3 {v:#x}: {e}"))?;
                    self.regs.cr3 = v;
                    self.drop_where(5, |e| !e.global);
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
                    } else if toggle == CR4_SMEP && new & CR4_SMEP != 0 {
                        self.drop_where(7, |e| !e.global && e.pcid == pcid);
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
static SIZED: AtomicU64 = AtomicU64::new(0);
static SPLIT: AtomicU64 = AtomicU64::new(0);
static INVALIDATIONS: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];

fn run_case<const F: usize>(case: &Case, bug: Bug, entries: usize) -> Result<(), TestCaseError> {
    let mut w = World::<F>::new(&case.init, case.pcide, case.pge, entries);
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
const SHAPES: [(&str, Run); 3] = [
    ("256-slot first level, 8-slot main tables", |c, b| run_case::<256>(c, b, 8)),
    ("256-slot first level, 1024-slot main tables", |c, b| run_case::<256>(c, b, 1024)),
    ("8-slot first level, 1024-slot main tables", |c, b| run_case::<8>(c, b, 1024)),
];

#[test]
fn tlb_matches_the_sdm_model() {
    for (shape, run) in SHAPES {
        model(shape, run);
    }
}

fn model(shape: &str, run: Run) {
    for a in [&STRICT, &RELAXED, &STALE, &SIZED, &SPLIT].into_iter().chain(&INVALIDATIONS) {
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
    assert!(STALE.load(Ordering::Relaxed) > 0, "no stale entry was ever observed");
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
