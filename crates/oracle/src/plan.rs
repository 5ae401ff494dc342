//! A scenario reduced to what both sides of the oracle execute: its
//! operations in order, each with the line it came from and the set of
//! (process, page) pairs to read after it.
//!
//! Expectations are dropped: the oracle compares states, not claims. The
//! page sets are derived here, once, from the operations alone (mmap adds a
//! range, munmap removes it, fork copies, execve and exit empty), so that the
//! kernel and ptemu are read at exactly the same places.

use std::collections::BTreeSet;

use scenario::Scenario;
use scenario::ast::{Advice, Op, Prot, StepKind};
use serde::Serialize;

use crate::error::OracleError;

/// Bytes per page (x86-64 base pages; the only size the scenario language uses).
pub const PAGE_SIZE: u64 = 4096;

/// Most (process, page) pairs read after one step; bounds the work of a run.
pub const MAX_OBSERVED_PAGES: usize = 4096;

/// A scenario process, numbered in order of creation (`spawn` or `fork`).
pub type ProcId = usize;

/// One operation, with process names resolved to [`ProcId`]s.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub enum Action {
    /// `spawn P`.
    Spawn {
        /// The new process.
        proc: ProcId,
    },
    /// `P mmap ADDR LEN PROT`.
    Mmap {
        /// The process.
        proc: ProcId,
        /// Start.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// Protection.
        prot: Prot,
    },
    /// `P munmap ADDR LEN`.
    Munmap {
        /// The process.
        proc: ProcId,
        /// Start.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `P mprotect ADDR LEN PROT`.
    Mprotect {
        /// The process.
        proc: ProcId,
        /// Start.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// New protection.
        prot: Prot,
    },
    /// `P madvise ADDR LEN ADVICE`.
    Madvise {
        /// The process.
        proc: ProcId,
        /// Start.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// The advice.
        advice: Advice,
    },
    /// `P write ADDR [VALUE]`.
    Write {
        /// The process.
        proc: ProcId,
        /// Address.
        addr: u64,
        /// The byte stored (the scenario's default when it gave none).
        value: u8,
    },
    /// `P read ADDR`.
    Read {
        /// The process.
        proc: ProcId,
        /// Address.
        addr: u64,
    },
    /// `P fork C`.
    Fork {
        /// The parent.
        parent: ProcId,
        /// The child.
        child: ProcId,
    },
    /// `P exit`.
    Exit {
        /// The process.
        proc: ProcId,
    },
    /// `P execve`.
    Execve {
        /// The process.
        proc: ProcId,
    },
    /// `reclaim P ADDR [LEN] [keep-cache]`.
    Reclaim {
        /// The process whose mappings name the pages.
        proc: ProcId,
        /// Start.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// Leave the pages in the swap cache.
        keep_cache: bool,
    },
    /// `rmap-walk P ADDR`.
    RmapWalk {
        /// The process.
        proc: ProcId,
        /// Address.
        addr: u64,
    },
    /// `rcu-grace-period`.
    RcuGracePeriod,
    /// `dump ...` (no effect on state).
    Dump,
}

impl Action {
    /// The statement's keyword.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Spawn { .. } => "spawn",
            Action::Mmap { .. } => "mmap",
            Action::Munmap { .. } => "munmap",
            Action::Mprotect { .. } => "mprotect",
            Action::Madvise { .. } => "madvise",
            Action::Write { .. } => "write",
            Action::Read { .. } => "read",
            Action::Fork { .. } => "fork",
            Action::Exit { .. } => "exit",
            Action::Execve { .. } => "execve",
            Action::Reclaim { .. } => "reclaim",
            Action::RmapWalk { .. } => "rmap-walk",
            Action::RcuGracePeriod => "rcu-grace-period",
            Action::Dump => "dump",
        }
    }
}

/// One operation of the plan.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct PlannedStep {
    /// 1-based number among the scenario's operations.
    pub number: usize,
    /// The line it was written on.
    pub line: u32,
    /// What to do.
    pub action: Action,
    /// Every (process, page address) inside a scenario mapping after the
    /// step, in (process, address) order.
    pub observe: Vec<(ProcId, u64)>,
}

/// A scenario as the oracle runs it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Plan {
    /// The file name used in messages.
    pub file: String,
    /// Process names, indexed by [`ProcId`].
    pub procs: Vec<String>,
    /// Physical memory of the emulated machine, in bytes.
    pub memory: u64,
    /// Swap device sizes in bytes; index = swap type (one 64M device when
    /// the scenario names none, as the contract says).
    pub swaps: Vec<u64>,
    /// The operations.
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// The name of process `id` (or `?` for an id the plan never made).
    pub fn proc_name(&self, id: ProcId) -> &str {
        self.procs.get(id).map_or("?", String::as_str)
    }

    /// Reduces a parsed scenario to its plan.
    pub fn from_scenario(sc: &Scenario) -> Result<Plan, OracleError> {
        let mut b = Builder { file: sc.file.clone(), procs: Vec::new(), pages: Vec::new() };
        let mut steps = Vec::new();
        for step in &sc.steps {
            let StepKind::Op(op) = &step.kind else { continue };
            let line = step.pos.line;
            let action = b.action(op, line)?;
            b.apply(&action);
            let observe = b.observed();
            if observe.len() > MAX_OBSERVED_PAGES {
                return Err(OracleError::Plan {
                    file: b.file.clone(),
                    line,
                    what: format!(
                        "{} pages mapped after this step; the oracle reads at most {MAX_OBSERVED_PAGES}",
                        observe.len()
                    ),
                });
            }
            steps.push(PlannedStep { number: steps.len() + 1, line, action, observe });
        }
        Ok(Plan {
            file: sc.file.clone(),
            procs: b.procs,
            memory: sc.setup.memory.value,
            // No `swap` line is the contract's default machine: one 64M
            // device, on both sides.
            swaps: if sc.setup.swaps.is_empty() {
                vec![mm::config::DEFAULT_SWAP]
            } else {
                sc.setup.swaps.iter().map(|s| s.value).collect()
            },
            steps,
        })
    }
}

/// State carried while building a plan.
struct Builder {
    file: String,
    procs: Vec<String>,
    /// Per process: `None` once it exited, else its mapped pages.
    pages: Vec<Option<BTreeSet<u64>>>,
}

impl Builder {
    fn err(&self, line: u32, what: String) -> OracleError {
        OracleError::Plan { file: self.file.clone(), line, what }
    }

    /// The id of an existing, live process.
    fn live(&self, name: &str, line: u32) -> Result<ProcId, OracleError> {
        match self.procs.iter().position(|p| p == name) {
            Some(id) if matches!(self.pages.get(id), Some(Some(_))) => Ok(id),
            Some(_) => Err(self.err(line, format!("process {name} has exited"))),
            None => Err(self.err(line, format!("no process named {name}"))),
        }
    }

    fn new_proc(&mut self, name: &str, line: u32) -> Result<ProcId, OracleError> {
        if self.procs.iter().any(|p| p == name) {
            return Err(self.err(line, format!("process {name} already exists")));
        }
        self.procs.push(name.to_string());
        self.pages.push(Some(BTreeSet::new()));
        Ok(self.procs.len() - 1)
    }

    fn action(&mut self, op: &Op, line: u32) -> Result<Action, OracleError> {
        Ok(match op {
            Op::Spawn { proc } => Action::Spawn { proc: self.new_proc(&proc.value, line)? },
            Op::Mmap { proc, addr, len, prot, .. } => Action::Mmap {
                proc: self.live(&proc.value, line)?,
                addr: addr.value,
                len: len.value,
                prot: prot.value,
            },
            Op::Munmap { proc, addr, len, .. } => Action::Munmap {
                proc: self.live(&proc.value, line)?,
                addr: addr.value,
                len: len.value,
            },
            Op::Mprotect { proc, addr, len, prot, .. } => Action::Mprotect {
                proc: self.live(&proc.value, line)?,
                addr: addr.value,
                len: len.value,
                prot: prot.value,
            },
            Op::Madvise { proc, addr, len, advice, .. } => Action::Madvise {
                proc: self.live(&proc.value, line)?,
                addr: addr.value,
                len: len.value,
                advice: advice.value,
            },
            Op::Write { proc, addr, value } => Action::Write {
                proc: self.live(&proc.value, line)?,
                addr: addr.value,
                value: value.as_ref().map_or(scenario::limits::DEFAULT_WRITE_VALUE, |v| v.value),
            },
            Op::Read { proc, addr, .. } => {
                Action::Read { proc: self.live(&proc.value, line)?, addr: addr.value }
            }
            Op::Fork { parent, child } => {
                let parent = self.live(&parent.value, line)?;
                Action::Fork { parent, child: self.new_proc(&child.value, line)? }
            }
            Op::Exit { proc } => Action::Exit { proc: self.live(&proc.value, line)? },
            Op::Execve { proc } => Action::Execve { proc: self.live(&proc.value, line)? },
            Op::Reclaim { proc, addr, len, keep_cache } => Action::Reclaim {
                proc: self.live(&proc.value, line)?,
                addr: addr.value,
                len: len.as_ref().map_or(PAGE_SIZE, |l| l.value),
                keep_cache: *keep_cache,
            },
            Op::RmapWalk { proc, addr } => {
                Action::RmapWalk { proc: self.live(&proc.value, line)?, addr: addr.value }
            }
            Op::RcuGracePeriod => Action::RcuGracePeriod,
            Op::Dump { .. } => Action::Dump,
        })
    }

    fn set(&mut self, proc: ProcId) -> Option<&mut BTreeSet<u64>> {
        self.pages.get_mut(proc).and_then(Option::as_mut)
    }

    fn apply(&mut self, action: &Action) {
        match *action {
            Action::Mmap { proc, addr, len, .. } => {
                // A range past user space cannot be mapped (ENOMEM) and
                // has no pagemap entries to read.
                if let Some(set) = self.set(proc) {
                    set.extend(page_range(addr, len).filter(|&va| va < mm::TASK_SIZE));
                }
            }
            Action::Munmap { proc, addr, len } => {
                if let Some(set) = self.set(proc) {
                    for va in page_range(addr, len) {
                        set.remove(&va);
                    }
                }
            }
            Action::Fork { parent, child } => {
                let copy = self.pages.get(parent).cloned().flatten();
                if let Some(slot) = self.pages.get_mut(child) {
                    *slot = copy;
                }
            }
            Action::Execve { proc } => {
                if let Some(set) = self.set(proc) {
                    set.clear();
                }
            }
            Action::Exit { proc } => {
                if let Some(slot) = self.pages.get_mut(proc) {
                    *slot = None;
                }
            }
            _ => {}
        }
    }

    fn observed(&self) -> Vec<(ProcId, u64)> {
        let mut out = Vec::new();
        for (id, set) in self.pages.iter().enumerate() {
            if let Some(set) = set {
                out.extend(set.iter().map(|&va| (id, va)));
            }
        }
        out
    }
}

/// The page addresses of `[addr, addr + len)`, rounded out to whole pages
/// (as mmap and munmap round the length up). An empty or overflowing range
/// yields nothing; the parser's limits keep real ranges far below overflow.
pub fn page_range(addr: u64, len: u64) -> impl Iterator<Item = u64> {
    let start = addr & !(PAGE_SIZE - 1);
    let end = addr
        .checked_add(len)
        .and_then(|e| e.checked_add(PAGE_SIZE - 1))
        .map_or(start, |e| e & !(PAGE_SIZE - 1));
    (start..end).step_by(PAGE_SIZE as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        let sc = scenario::parse_str("t.scn", text).expect("test scenario parses");
        Plan::from_scenario(&sc).expect("test scenario plans")
    }

    #[test]
    fn pages_follow_mmap_fork_munmap_exit() {
        let p = plan(
            "swap 1M\nspawn A\nA mmap 0x7f0000000000 12K rw\nA fork B\n\
             B munmap 0x7f0000001000 4K\nA exit\nexpect B 0x7f0000000000 none\n",
        );
        assert_eq!(p.procs, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(p.swaps, vec![1 << 20]);
        let obs: Vec<_> = p.steps.iter().map(|s| s.observe.len()).collect();
        assert_eq!(obs, vec![0, 3, 6, 5, 2]);
        assert_eq!(p.steps[4].observe, vec![(1, 0x7f0000000000), (1, 0x7f0000002000)]);
        assert_eq!(p.steps[4].line, 6);
        assert_eq!(p.steps[3].action, Action::Munmap { proc: 1, addr: 0x7f0000001000, len: 4096 });
    }

    #[test]
    fn write_default_and_reclaim_length() {
        let p = plan("spawn A\nA mmap 0x1000 4K rw\nA write 0x1000\nreclaim A 0x1000 keep-cache\n");
        assert_eq!(
            p.steps[2].action,
            Action::Write { proc: 0, addr: 0x1000, value: scenario::limits::DEFAULT_WRITE_VALUE }
        );
        assert_eq!(
            p.steps[3].action,
            Action::Reclaim { proc: 0, addr: 0x1000, len: 4096, keep_cache: true }
        );
    }

    #[test]
    fn execve_empties_and_page_range_rounds() {
        let p = plan("spawn A\nA mmap 0x1000 4K rw\nA execve\n");
        assert!(p.steps[2].observe.is_empty());
        assert_eq!(page_range(0x1800, 0x1000).collect::<Vec<_>>(), vec![0x1000, 0x2000]);
        assert_eq!(page_range(0x1000, 0).count(), 0);
        assert_eq!(page_range(u64::MAX - 10, 100).count(), 0);
    }
}
