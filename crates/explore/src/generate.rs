//! The generator: one random operation at a time, chosen from the state of
//! the machine it runs on (which processes live, what they map, which
//! entries are present or swapped), so that nearly every operation does
//! something.
//!
//! Weighted toward the seed's paths. Operations come in a rotating bias
//! ("phase"): populate (mmap, write), fork, reclaim of what is mapped
//! (often shared pages, with and without keep-cache), swap-in by any
//! process (reads and writes of swapped entries), exits and execves, rmap
//! walks and RCU grace periods. Each phase multiplies its operations'
//! weights and the phase moves on at random, so the seed's order of events
//! comes up often but every other order does too.
//!
//! After a first violation the sequence may be followed for a few more
//! operations ([`Gen::follow`]): exits, rmap walks and reads of the pages
//! the violation concerns, to see whether it becomes an oops.

use mm::{Pid, Prot};
use pgtable::EntryKind;
use scenario::ast::{Advice, Op};

use crate::exec::Exec;
use crate::render::sp;
use crate::rng::Rng;

/// The first page of the window every sequence works in: 16 pages that
/// straddle a 2 MiB boundary, so that forks, reclaims and faults meet on the
/// same pages and page tables are both shared and freed.
pub const WINDOW_START: u64 = 0x7f00_0000_0000 + (1 << 21) - 8 * 4096;
/// Pages in the window.
pub const WINDOW_PAGES: u64 = 16;
/// Most live processes at once.
pub const MAX_PROCS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Spawn,
    Mmap,
    Munmap,
    Mprotect,
    Madvise,
    Write,
    Read,
    Fork,
    Exit,
    Execve,
    Reclaim,
    RmapWalk,
    Rcu,
}

const KINDS: [Kind; 13] = [
    Kind::Spawn,
    Kind::Mmap,
    Kind::Munmap,
    Kind::Mprotect,
    Kind::Madvise,
    Kind::Write,
    Kind::Read,
    Kind::Fork,
    Kind::Exit,
    Kind::Execve,
    Kind::Reclaim,
    Kind::RmapWalk,
    Kind::Rcu,
];

/// Base weights, in the order of [`KINDS`].
const BASE: [u32; 13] = [1, 2, 1, 1, 1, 6, 5, 3, 2, 1, 4, 2, 1];
/// The phases, each the operations it favours.
const PHASES: [&[Kind]; 6] = [
    &[Kind::Mmap, Kind::Write],
    &[Kind::Fork],
    &[Kind::Reclaim],
    &[Kind::Read, Kind::Write],
    &[Kind::Exit, Kind::Execve, Kind::Munmap],
    &[Kind::RmapWalk, Kind::Rcu],
];
/// How much a phase multiplies its operations' weights.
const PHASE_BOOST: u32 = 4;

/// What the generator may produce.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct GenOptions {
    /// Leave out what the kernel oracle cannot perform on the host
    /// (`rmap-walk`: no interface runs one on a chosen page).
    pub oracle: bool,
}

/// Pages a follow-up should look at: (process name, address).
pub type Focus = Vec<(String, u64)>;

/// A sequence's generator.
pub struct Gen {
    rng: Rng,
    opts: GenOptions,
    phase: usize,
    names: u32,
}

fn page_addr(page: u64) -> u64 {
    WINDOW_START + page * 4096
}

/// The name of the `n`th process created in a sequence: A..Z, then P26...
pub fn proc_name(n: u32) -> String {
    if n < 26 { char::from(b'A' + n as u8).to_string() } else { format!("P{n}") }
}

impl Gen {
    /// A generator for the sequence with this seed.
    pub fn new(seed: u64, opts: GenOptions) -> Self {
        let mut rng = Rng::new(seed);
        let phase = rng.index(PHASES.len());
        Gen { rng, opts, phase, names: 0 }
    }

    fn fresh_name(&mut self) -> String {
        let n = proc_name(self.names);
        self.names += 1;
        n
    }

    /// The next operation of the search.
    pub fn next(&mut self, ex: &Exec) -> Op {
        let live = ex.live();
        if live.is_empty() {
            return Op::Spawn { proc: sp(self.fresh_name()) };
        }
        let (name, pid) = live[self.rng.index(live.len())].clone();
        let has_vma = ex.machine().vmas(pid).is_ok_and(|v| !v.is_empty());
        let mut w = BASE;
        for (i, k) in KINDS.iter().enumerate() {
            if PHASES[self.phase].contains(k) {
                w[i] *= PHASE_BOOST;
            }
            let off = match k {
                Kind::Spawn | Kind::Fork => live.len() >= MAX_PROCS,
                Kind::RmapWalk => self.opts.oracle,
                Kind::Munmap | Kind::Mprotect | Kind::Madvise | Kind::Reclaim => !has_vma,
                _ => false,
            };
            if off {
                w[i] = 0;
            }
        }
        if !has_vma {
            w[1] = 12;
        }
        let kind = KINDS[self.rng.weighted(&w)];
        if self.rng.chance(1, 3) {
            self.phase = (self.phase + 1) % PHASES.len();
        }
        self.make(kind, ex, &name, pid, &live, None)
    }

    /// The next operation of a follow-up of a violation at `focus`: exits,
    /// rmap walks, reads and grace periods, mostly on the focus pages.
    pub fn follow(&mut self, ex: &Exec, focus: &Focus) -> Op {
        let live = ex.live();
        if live.is_empty() {
            return Op::RcuGracePeriod;
        }
        let (name, pid) = live[self.rng.index(live.len())].clone();
        // spawn mmap munmap mprotect madvise write read fork exit execve reclaim walk rcu
        let mut w: [u32; 13] = [0, 0, 1, 0, 1, 1, 3, 1, 4, 1, 2, 6, 1];
        if self.opts.oracle {
            w[11] = 0;
        }
        if live.len() >= MAX_PROCS {
            w[7] = 0;
        }
        let kind = KINDS[self.rng.weighted(&w)];
        let live_focus: Vec<&(String, u64)> =
            focus.iter().filter(|(n, _)| ex.pid(n).is_some()).collect();
        if matches!(kind, Kind::RmapWalk | Kind::Read)
            && !live_focus.is_empty()
            && self.rng.chance(2, 3)
        {
            let (n, a) = live_focus[self.rng.index(live_focus.len())].clone();
            let p = ex.pid(&n).unwrap_or(pid);
            return self.make(kind, ex, &n, p, &live, Some(a));
        }
        self.make(kind, ex, &name, pid, &live, None)
    }

    /// A page of one of `pid`'s VMAs, preferring entries of the wanted
    /// kind (`present`/`swapped`) when `want` says so; a window page when
    /// the process maps nothing.
    fn addr_in(&mut self, ex: &Exec, pid: Pid, want: Option<fn(&EntryKind) -> bool>) -> u64 {
        let vmas = ex.machine().vmas(pid).unwrap_or_default();
        if vmas.is_empty() {
            return page_addr(self.rng.below(WINDOW_PAGES));
        }
        let mut pick = || {
            let v = &vmas[self.rng.index(vmas.len())];
            v.start + self.rng.below((v.end - v.start) >> 12) * 4096
        };
        let Some(want) = want else { return pick() };
        let first = pick();
        for a in std::iter::once(first).chain((0..3).map(|_| pick())) {
            if ex.machine().pte(pid, a).is_ok_and(|p| want(&p.kind)) {
                return a;
            }
        }
        first
    }

    /// A range inside one VMA of `pid` (None if it maps nothing).
    fn range_in(&mut self, ex: &Exec, pid: Pid) -> Option<(u64, u64)> {
        let vmas = ex.machine().vmas(pid).ok()?;
        if vmas.is_empty() {
            return None;
        }
        let v = &vmas[self.rng.index(vmas.len())];
        let pages = (v.end - v.start) >> 12;
        if self.rng.chance(1, 2) {
            return Some((v.start, pages * 4096));
        }
        let first = self.rng.below(pages);
        let n = 1 + self.rng.below(pages - first);
        Some((v.start + first * 4096, n * 4096))
    }

    fn prot(&mut self) -> Prot {
        [Prot::Rw, Prot::Rw, Prot::Rw, Prot::Rw, Prot::R, Prot::None, Prot::Rx, Prot::Rwx]
            [self.rng.index(8)]
    }

    fn make(
        &mut self,
        kind: Kind,
        ex: &Exec,
        name: &str,
        pid: Pid,
        live: &[(String, Pid)],
        at: Option<u64>,
    ) -> Op {
        let proc = sp(name.to_string());
        match kind {
            Kind::Spawn => Op::Spawn { proc: sp(self.fresh_name()) },
            Kind::Mmap => {
                let vmas = ex.machine().vmas(pid).unwrap_or_default();
                // Half the time, right next to one of the process's VMAs
                // (half of those with its protection): vma_merge's paths,
                // which random placement in the window rarely reaches.
                if !vmas.is_empty() && self.rng.chance(1, 2) {
                    let v = &vmas[self.rng.index(vmas.len())];
                    let pages = 1 + self.rng.below(4);
                    let (s, e) = if self.rng.chance(1, 2) {
                        (v.end, v.end + pages * 4096)
                    } else {
                        (v.start.saturating_sub(pages * 4096), v.start)
                    };
                    let in_window = s >= page_addr(0) && e <= page_addr(WINDOW_PAGES);
                    if in_window && vmas.iter().all(|w| w.end <= s || w.start >= e) {
                        let prot = if self.rng.chance(1, 2) { v.prot } else { self.prot() };
                        return Op::Mmap {
                            proc,
                            addr: sp(s),
                            len: sp(e - s),
                            prot: sp(prot),
                            result: None,
                        };
                    }
                }
                for _ in 0..6 {
                    let page = self.rng.below(WINDOW_PAGES);
                    let pages = (1 + self.rng.below(4)).min(WINDOW_PAGES - page);
                    let (s, e) = (page_addr(page), page_addr(page + pages));
                    if vmas.iter().all(|v| v.end <= s || v.start >= e) {
                        return Op::Mmap {
                            proc,
                            addr: sp(s),
                            len: sp(pages * 4096),
                            prot: sp(self.prot()),
                            result: None,
                        };
                    }
                }
                let a = self.addr_in(ex, pid, None);
                Op::Write { proc, addr: sp(a), value: Some(sp(self.rng.next_u64() as u8)) }
            }
            Kind::Munmap => {
                let (a, l) = self.range_in(ex, pid).unwrap_or((page_addr(0), 4096));
                Op::Munmap { proc, addr: sp(a), len: sp(l), result: None }
            }
            Kind::Mprotect => match self.range_in(ex, pid) {
                Some((a, l)) => Op::Mprotect {
                    proc,
                    addr: sp(a),
                    len: sp(l),
                    prot: sp(self.prot()),
                    result: None,
                },
                None => Op::RcuGracePeriod,
            },
            Kind::Madvise => match self.range_in(ex, pid) {
                Some((a, l)) => Op::Madvise {
                    proc,
                    addr: sp(a),
                    len: sp(l),
                    advice: sp(Advice::DontNeed),
                    result: None,
                },
                None => Op::RcuGracePeriod,
            },
            Kind::Write => {
                // Swapped entries half the time: a write swap-in.
                let want: Option<fn(&EntryKind) -> bool> = if self.rng.chance(1, 2) {
                    Some(|k| matches!(k, EntryKind::Swap(_)))
                } else {
                    None
                };
                let a = at.unwrap_or_else(|| self.addr_in(ex, pid, want));
                Op::Write { proc, addr: sp(a), value: Some(sp(1 + self.rng.below(255) as u8)) }
            }
            Kind::Read => {
                let a = at.unwrap_or_else(|| {
                    self.addr_in(ex, pid, Some(|k| matches!(k, EntryKind::Swap(_))))
                });
                Op::Read { proc, addr: sp(a), expect: None }
            }
            Kind::Fork => Op::Fork { parent: proc, child: sp(self.fresh_name()) },
            Kind::Exit => {
                // Rather a child than the oldest process.
                let victim = if live.len() > 1 && self.rng.chance(3, 4) {
                    live[1 + self.rng.index(live.len() - 1)].0.clone()
                } else {
                    name.to_string()
                };
                Op::Exit { proc: sp(victim) }
            }
            Kind::Execve => Op::Execve { proc },
            Kind::Reclaim => {
                let keep_cache = self.rng.chance(1, 2);
                if self.rng.chance(1, 4) {
                    if let Some((a, l)) = self.range_in(ex, pid) {
                        return Op::Reclaim { proc, addr: sp(a), len: Some(sp(l)), keep_cache };
                    }
                }
                let a = self.addr_in(ex, pid, Some(|k| k.is_present()));
                Op::Reclaim { proc, addr: sp(a), len: None, keep_cache }
            }
            Kind::RmapWalk => {
                let a = at.unwrap_or_else(|| self.addr_in(ex, pid, Some(|k| k.is_present())));
                Op::RmapWalk { proc, addr: sp(a) }
            }
            Kind::Rcu => Op::RcuGracePeriod,
        }
    }
}
