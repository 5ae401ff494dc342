//! The minimizer: delta debugging over the operations (Zeller's ddmin,
//! then single removals to a fixpoint), then over processes (all of one
//! process's operations at once), then names, addresses, lengths and
//! values, each change kept only when the predicate (the same finding)
//! still holds. The passes repeat until none changes anything.

use std::collections::BTreeMap;

use mm::Prot;
use scenario::ast::{Op, Spanned};

use crate::generate::proc_name;
use crate::render::sp;

/// How much work a minimization did.
#[derive(Clone, Copy, Debug, Default)]
pub struct MinStats {
    /// Candidates tried.
    pub tests: u64,
}

struct Min<'a> {
    test: &'a dyn Fn(&[Op]) -> bool,
    stats: MinStats,
}

impl Min<'_> {
    fn holds(&mut self, ops: &[Op]) -> bool {
        self.stats.tests += 1;
        (self.test)(ops)
    }

    fn ddmin(&mut self, mut ops: Vec<Op>) -> Vec<Op> {
        let mut n = 2usize;
        while ops.len() >= 2 {
            let chunk = ops.len().div_ceil(n);
            let mut found = None;
            for i in 0..n {
                let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(ops.len()));
                if lo >= hi {
                    continue;
                }
                let cand: Vec<Op> = ops[..lo].iter().chain(&ops[hi..]).cloned().collect();
                if self.holds(&cand) {
                    found = Some(cand);
                    break;
                }
            }
            let reduced = found.is_some();
            if let Some(cand) = found {
                ops = cand;
                n = (n - 1).max(2);
            }
            if !reduced {
                if n >= ops.len() {
                    break;
                }
                n = (2 * n).min(ops.len());
            }
        }
        ops
    }

    fn singles(&mut self, mut ops: Vec<Op>) -> Vec<Op> {
        let mut i = ops.len();
        while i > 0 {
            i -= 1;
            if i >= ops.len() {
                continue;
            }
            let mut cand = ops.clone();
            cand.remove(i);
            if self.holds(&cand) {
                ops = cand;
            }
        }
        ops
    }

    fn processes(&mut self, mut ops: Vec<Op>) -> Vec<Op> {
        // A child folded into its parent: the fork dropped, the child's
        // operations done by the parent; failing that, the same without
        // the child's exit and execve (which, done by the parent, would
        // end it before its own later operations).
        let mut i = 0;
        while i < ops.len() {
            if let Op::Fork { parent, child } = &ops[i] {
                let map: BTreeMap<String, String> =
                    [(child.value.clone(), parent.value.clone())].into_iter().collect();
                let ends_child = |o: &Op| match o {
                    Op::Exit { proc } | Op::Execve { proc } => proc.value == child.value,
                    _ => false,
                };
                let fold = |keep_ends: bool| -> Vec<Op> {
                    ops.iter()
                        .enumerate()
                        .filter(|(j, o)| *j != i && (keep_ends || !ends_child(o)))
                        .map(|(_, o)| rename(o, &map))
                        .collect()
                };
                let (with_ends, without) = (fold(true), fold(false));
                if self.holds(&with_ends) {
                    ops = with_ends;
                    continue;
                }
                if without.len() < with_ends.len() && self.holds(&without) {
                    ops = without;
                    continue;
                }
            }
            i += 1;
        }
        for name in names_in_order(&ops) {
            let cand: Vec<Op> = ops.iter().filter(|o| !mentions(o, &name)).cloned().collect();
            if cand.len() < ops.len() && self.holds(&cand) {
                ops = cand;
            }
        }
        ops
    }

    /// Tries `f` on each operation in turn; keeps each change that holds.
    fn each(&mut self, mut ops: Vec<Op>, f: &dyn Fn(&Op) -> Vec<Op>) -> Vec<Op> {
        for i in 0..ops.len() {
            for alt in f(&ops[i]) {
                if alt == ops[i] {
                    continue;
                }
                let mut cand = ops.clone();
                cand[i] = alt;
                if self.holds(&cand) {
                    ops = cand;
                    break;
                }
            }
        }
        ops
    }

    fn addresses(&mut self, ops: Vec<Op>) -> Vec<Op> {
        // The whole scenario moved down to 0x7f0000000000.
        let mut ops = ops;
        if let Some(lo) = ops.iter().filter_map(addr_of).min() {
            let base = 0x7f00_0000_0000u64;
            if lo > base {
                let cand: Vec<Op> = ops.iter().map(|o| map_addr(o, &|a| a - (lo - base))).collect();
                if self.holds(&cand) {
                    ops = cand;
                }
            }
        }
        // Fewer distinct addresses: every use of one address moved to
        // another, lower one (an access and the mapping around it move
        // together); then each access alone.
        let mut distinct: Vec<u64> = ops.iter().filter_map(addr_of).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for (i, &a) in distinct.iter().enumerate().rev() {
            for &b in &distinct[..i] {
                let cand: Vec<Op> =
                    ops.iter().map(|o| map_addr(o, &|x| if x == a { b } else { x })).collect();
                if self.holds(&cand) {
                    ops = cand;
                    break;
                }
            }
        }
        let used: Vec<u64> = {
            let mut v: Vec<u64> = ops.iter().filter_map(addr_of).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        self.each(ops, &|o| {
            if matches!(
                o,
                Op::Mmap { .. } | Op::Munmap { .. } | Op::Mprotect { .. } | Op::Madvise { .. }
            ) {
                return Vec::new();
            }
            used.iter().map(|&a| map_addr(o, &|_| a)).collect()
        })
    }

    fn lengths(&mut self, ops: Vec<Op>) -> Vec<Op> {
        self.each(ops, &|o| {
            let mut alts = Vec::new();
            match o {
                Op::Reclaim { proc, addr, len: Some(l), keep_cache } => {
                    alts.push(Op::Reclaim {
                        proc: proc.clone(),
                        addr: addr.clone(),
                        len: None,
                        keep_cache: *keep_cache,
                    });
                    let _ = l;
                }
                _ => {
                    if let Some(l) = len_of(o) {
                        let mut cands = vec![4096u64];
                        let mut h = l / 2;
                        while h > 4096 {
                            cands.push(h & !0xfff);
                            h /= 2;
                        }
                        for c in cands.into_iter().filter(|&c| c < l) {
                            alts.push(with_len(o, c));
                        }
                    }
                }
            }
            alts
        })
    }

    fn values(&mut self, ops: Vec<Op>) -> Vec<Op> {
        self.each(ops, &|o| match o {
            Op::Write { proc, addr, value: Some(_) } => {
                vec![Op::Write { proc: proc.clone(), addr: addr.clone(), value: None }]
            }
            Op::Mmap { proc, addr, len, prot, result } if prot.value != Prot::Rw => {
                vec![Op::Mmap {
                    proc: proc.clone(),
                    addr: addr.clone(),
                    len: len.clone(),
                    prot: sp(Prot::Rw),
                    result: result.clone(),
                }]
            }
            // A child that needs nothing of its parent: a new process.
            Op::Fork { child, .. } => vec![Op::Spawn { proc: child.clone() }],
            Op::Reclaim { proc, addr, len, keep_cache: true } => vec![Op::Reclaim {
                proc: proc.clone(),
                addr: addr.clone(),
                len: len.clone(),
                keep_cache: false,
            }],
            _ => Vec::new(),
        })
    }

    fn rename(&mut self, ops: Vec<Op>) -> Vec<Op> {
        let map: BTreeMap<String, String> = names_in_order(&ops)
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, proc_name(i as u32)))
            .collect();
        let cand: Vec<Op> = ops.iter().map(|o| rename(o, &map)).collect();
        if cand != ops && self.holds(&cand) { cand } else { ops }
    }
}

/// Shrinks `ops` to a smallest sequence for which `test` holds. `test`
/// must hold for `ops` itself (otherwise `ops` is returned unchanged).
pub fn minimize(ops: &[Op], test: &dyn Fn(&[Op]) -> bool) -> (Vec<Op>, MinStats) {
    let mut m = Min { test, stats: MinStats::default() };
    if !m.holds(ops) {
        return (ops.to_vec(), m.stats);
    }
    let mut cur = ops.to_vec();
    for _ in 0..4 {
        let before = cur.clone();
        cur = m.ddmin(cur);
        cur = m.singles(cur);
        cur = m.processes(cur);
        cur = m.addresses(cur);
        cur = m.lengths(cur);
        cur = m.values(cur);
        if cur == before {
            break;
        }
    }
    cur = m.rename(cur);
    (cur, m.stats)
}

/// The process names an operation mentions, to read or rewrite. The one
/// list of which operation names which processes: the readers below take
/// it from a copy (the minimizer replays a whole machine per candidate, a
/// copy of one operation is nothing next to that).
fn procs_mut(o: &mut Op) -> Vec<&mut Spanned<String>> {
    match o {
        Op::Fork { parent, child } => vec![parent, child],
        Op::Spawn { proc }
        | Op::Mmap { proc, .. }
        | Op::Munmap { proc, .. }
        | Op::Mprotect { proc, .. }
        | Op::Madvise { proc, .. }
        | Op::Write { proc, .. }
        | Op::Read { proc, .. }
        | Op::Exit { proc }
        | Op::Execve { proc }
        | Op::Reclaim { proc, .. }
        | Op::RmapWalk { proc, .. }
        | Op::Dump { proc, .. } => vec![proc],
        Op::RcuGracePeriod => Vec::new(),
    }
}

fn proc_names(o: &Op) -> Vec<String> {
    procs_mut(&mut o.clone()).into_iter().map(|n| n.value.clone()).collect()
}

fn names_in_order(ops: &[Op]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in ops {
        for n in proc_names(o) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

fn mentions(o: &Op, name: &str) -> bool {
    proc_names(o).iter().any(|n| n == name)
}

fn rename(o: &Op, map: &BTreeMap<String, String>) -> Op {
    let mut o = o.clone();
    for n in procs_mut(&mut o) {
        if let Some(to) = map.get(&n.value) {
            *n = sp(to.clone());
        }
    }
    o
}

/// The operation's address, to read or rewrite.
fn addr_mut(o: &mut Op) -> Option<&mut Spanned<u64>> {
    match o {
        Op::Mmap { addr, .. }
        | Op::Munmap { addr, .. }
        | Op::Mprotect { addr, .. }
        | Op::Madvise { addr, .. }
        | Op::Write { addr, .. }
        | Op::Read { addr, .. }
        | Op::Reclaim { addr, .. }
        | Op::RmapWalk { addr, .. } => Some(addr),
        _ => None,
    }
}

fn addr_of(o: &Op) -> Option<u64> {
    addr_mut(&mut o.clone()).map(|a| a.value)
}

fn map_addr(o: &Op, f: &dyn Fn(u64) -> u64) -> Op {
    let mut o = o.clone();
    if let Some(a) = addr_mut(&mut o) {
        a.value = f(a.value);
    }
    o
}

/// The operation's length, to read or rewrite.
fn len_mut(o: &mut Op) -> Option<&mut Spanned<u64>> {
    match o {
        Op::Mmap { len, .. }
        | Op::Munmap { len, .. }
        | Op::Mprotect { len, .. }
        | Op::Madvise { len, .. } => Some(len),
        _ => None,
    }
}

fn len_of(o: &Op) -> Option<u64> {
    len_mut(&mut o.clone()).map(|l| l.value)
}

fn with_len(o: &Op, l: u64) -> Op {
    let mut o = o.clone();
    if let Some(len) = len_mut(&mut o) {
        len.value = l;
    }
    o
}
