//! Running a parsed scenario on an emulated machine, once per era.
//!
//! The runner translates statements into calls of `mm`'s public API, runs
//! the invariant checker after every operation and holds the expectations
//! that follow an operation against the state it left. It decides nothing
//! about paging or rmap itself: every fact it reports comes from `mm`.
//!
//! Violations are identified by their kind and what they concern; one is
//! "new" at the first step after which the checker reports it. A new
//! violation or an oops that no expectation of that step names fails the
//! era's run there, and the run stops (the state is no longer one the
//! scenario describes); a failed expectation is recorded and the run goes on.

use std::collections::{BTreeMap, BTreeSet};

use mm::{Machine, MachineConfig, MmError, Outcome, Pid, SysResult, Violation};
use pgtable::{EntryKind, Pfn};
use phys::PageFlags;
use serde::Serialize;

use crate::ast::{
    Condition, CountCmp, Expect, Expectation, FlagField, MapsVma, NumField, Op, PfnMix, Pos,
    PteState, Scenario, Spanned, Step, StepKind,
};
use crate::limits;

/// One era's run of a scenario.
#[derive(Clone, Debug, Serialize)]
pub struct EraRun {
    /// The era's name.
    pub era: String,
    /// Every statement executed, in order.
    pub steps: Vec<StepRecord>,
    /// Expectations that held.
    pub held: usize,
    /// Expectations skipped because their era filter excludes this era.
    pub skipped: usize,
    /// Everything that went wrong, in order.
    pub failures: Vec<Failure>,
    /// The failure that stopped the run early, if one did.
    pub stopped: Option<Failure>,
}

impl EraRun {
    /// Whether every expectation held and nothing unexpected happened.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.stopped.is_none()
    }
}

/// What went wrong, and where.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Failure {
    /// Line of the statement.
    pub line: u32,
    /// Column of the statement (or of the argument at fault).
    pub col: u32,
    /// What happened.
    pub message: String,
}

/// One executed statement.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    /// Where it was written.
    pub pos: Pos,
    /// The statement's text.
    pub text: String,
    /// 1-based operation number (for `ptemu dump --step`); `None` for an
    /// expectation.
    pub op_index: Option<usize>,
    /// What the operation did (`ok`, `read 0xaa`, `SIGSEGV ...`, `oops ...`)
    /// or the expectation's verdict (`ok`, `skipped`, `FAILED: ...`).
    pub result: String,
    /// Whether this statement failed.
    pub failed: bool,
    /// Violations the checker reported for the first time after this operation.
    pub new_violations: Vec<String>,
    /// The pages the scenario touches and the live anon_vmas, after an operation.
    pub state: Option<StateSummary>,
    /// Output of a `dump` statement.
    pub output: Option<String>,
}

/// Where each page the scenario touches points, and which anon_vmas live.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct StateSummary {
    /// One line per page: mapped at an address the scenario names, or in
    /// the swap cache.
    pub pages: Vec<PageSummary>,
    /// Addresses the scenario names that were not looked at because the
    /// summary already shows [`limits::SUMMARY_PAGES`] pages.
    pub omitted: usize,
    /// Live anon_vmas, each with the process it was made for: `av1(A)`.
    pub anon_vmas: Vec<String>,
}

/// One page's rmap-relevant state.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct PageSummary {
    /// Frame number.
    pub pfn: u64,
    /// page->mapping's anon_vma (`av2 (B)`), `freed` noted; `None` if not anon.
    pub mapping: Option<String>,
    /// page->index.
    pub index: u64,
    /// Mapcount.
    pub mapcount: u32,
    /// In the swap cache.
    pub swapcache: bool,
    /// Who maps it: `A@0x7f0000000000`.
    pub mapped_by: Vec<String>,
}

/// The outcome of an operation, as far as expectations care.
#[derive(Default)]
struct LastOp {
    segv: Option<String>,
    oops: Option<(mm::OopsKind, String)>,
}

/// A violation's identity: its kind and what it concerns.
type ViolationKey = (mm::InvariantKind, mm::Subject);

/// Runs `scenario` under each of its eras, or only under `era` if given.
pub fn run_scenario(scenario: &Scenario, era: Option<&str>) -> Vec<EraRun> {
    match era {
        Some(e) => vec![run_era(scenario, e, None).0],
        None => scenario.setup.eras.iter().map(|e| run_era(scenario, &e.value, None).0).collect(),
    }
}

/// Runs `scenario` under `era`, stopping after operation `stop_after` (1-based)
/// if given; returns the run and the machine as it was left (if it was built).
pub fn run_era(
    scenario: &Scenario,
    era: &str,
    stop_after: Option<usize>,
) -> (EraRun, Option<Machine>) {
    run_era_observed(scenario, era, stop_after, &mut |_| {})
}

/// The machine between two operations, as [`run_era_observed`] shows it to
/// its observer: read-only, with the scenario's names for what it holds.
pub struct Observation<'a> {
    /// Operations done so far (0: the empty machine before the first).
    pub op_index: usize,
    /// The machine.
    pub machine: &'a Machine,
    /// The scenario's name of each process it has named.
    pub process_names: &'a BTreeMap<Pid, String>,
    /// Which process each anon_vma (by display id) was made for.
    pub anon_vma_owners: &'a BTreeMap<String, String>,
    /// The (process name, page address) pairs the scenario names anywhere.
    pub touched: &'a BTreeSet<(String, u64)>,
}

/// [`run_era`], calling `observe` with the empty machine and again after
/// every operation that completes (after the checker has run, before the
/// expectations that follow it are held).
pub fn run_era_observed(
    scenario: &Scenario,
    era: &str,
    stop_after: Option<usize>,
    observe: &mut dyn FnMut(&Observation<'_>),
) -> (EraRun, Option<Machine>) {
    let mut run = EraRun {
        era: era.to_string(),
        steps: Vec::new(),
        held: 0,
        skipped: 0,
        failures: Vec::new(),
        stopped: None,
    };
    let Some(era_value) = crate::era::era(era) else {
        let f = Failure { line: 0, col: 0, message: format!("unknown era {era}") };
        run.stopped = Some(f);
        return (run, None);
    };
    let swaps: Vec<u64> = scenario.setup.swaps.iter().map(|s| s.value).collect();
    let mut cfg = MachineConfig::new(era_value).memory(scenario.setup.memory.value);
    if !swaps.is_empty() {
        cfg = cfg.swap(swaps);
    }
    let machine = match Machine::new(cfg) {
        Ok(m) => m,
        Err(e) => {
            let pos = scenario.setup.memory.pos;
            run.stopped = Some(Failure {
                line: pos.line,
                col: pos.col,
                message: format!("cannot build the machine: {e}"),
            });
            return (run, None);
        }
    };
    let mut r = Runner {
        m: machine,
        era: era.to_string(),
        names: BTreeMap::new(),
        pid_names: BTreeMap::new(),
        av_owner: BTreeMap::new(),
        known: BTreeSet::new(),
        touched: BTreeSet::new(),
    };
    r.collect_touched(&scenario.steps);
    r.observe(0, observe);
    let steps = &scenario.steps;
    let mut i = 0;
    let mut ops = 0usize;
    // Expectations before the first operation describe the empty machine.
    let mut last = LastOp::default();
    let mut pending_violations: Vec<Violation> = match r.m.check() {
        Ok(v) => v,
        Err(e) => {
            run.stopped = Some(Failure { line: 0, col: 0, message: format!("checker: {e}") });
            return (run, Some(r.m));
        }
    };
    let mut op_line = Pos::default();
    let mut op_record: Option<usize> = None;
    loop {
        // The expectations that follow the last operation (or the start).
        let group_start = i;
        while i < steps.len() && matches!(steps[i].kind, StepKind::Expect(_)) {
            i += 1;
        }
        let group: Vec<&Step> = steps[group_start..i].iter().collect();
        let stop = r.hold_group(&mut run, &group, &last, &pending_violations, op_line, op_record);
        if stop {
            break;
        }
        if i >= steps.len() || stop_after.is_some_and(|n| ops >= n) {
            break;
        }
        let step = &steps[i];
        i += 1;
        let StepKind::Op(op) = &step.kind else { continue };
        ops += 1;
        op_line = step.pos;
        r.m.set_step(format!("line {}: {}", step.pos.line, step.text));
        let mut rec = StepRecord {
            pos: step.pos,
            text: step.text.clone(),
            op_index: Some(ops),
            result: String::new(),
            failed: false,
            new_violations: Vec::new(),
            state: None,
            output: None,
        };
        last = LastOp::default();
        match r.exec(op, &mut last, &mut rec) {
            Ok(()) => {}
            Err(msg) => {
                rec.result = format!("error: {msg}");
                rec.failed = true;
                let f = Failure { line: step.pos.line, col: step.pos.col, message: msg };
                run.steps.push(rec);
                run.stopped = Some(f);
                break;
            }
        }
        pending_violations = match r.m.check() {
            Ok(v) => v,
            Err(e) => {
                let f = Failure {
                    line: step.pos.line,
                    col: step.pos.col,
                    message: format!("checker: {e}"),
                };
                run.steps.push(rec);
                run.stopped = Some(f);
                break;
            }
        };
        for v in &pending_violations {
            if !r.known.contains(&(v.kind, v.subject.clone())) {
                rec.new_violations.push(r.describe_violation(v));
            }
        }
        r.note_new_anon_vmas(op);
        rec.state = Some(r.summary());
        run.steps.push(rec);
        op_record = Some(run.steps.len() - 1);
        r.observe(ops, observe);
    }
    (run, Some(r.m))
}

struct Runner {
    m: Machine,
    era: String,
    names: BTreeMap<String, Pid>,
    pid_names: BTreeMap<Pid, String>,
    /// Which process each anon_vma (by display id) was made for, for reports.
    av_owner: BTreeMap<String, String>,
    /// Violations that existed after the previous operation.
    known: BTreeSet<ViolationKey>,
    /// (process name, page address) pairs the scenario names, for summaries.
    touched: BTreeSet<(String, u64)>,
}

impl Runner {
    fn observe(&self, op_index: usize, observe: &mut dyn FnMut(&Observation<'_>)) {
        observe(&Observation {
            op_index,
            machine: &self.m,
            process_names: &self.pid_names,
            anon_vma_owners: &self.av_owner,
            touched: &self.touched,
        });
    }

    fn collect_touched(&mut self, steps: &[Step]) {
        for s in steps {
            let (p, a) = match &s.kind {
                StepKind::Op(
                    Op::Write { proc, addr, .. }
                    | Op::Read { proc, addr, .. }
                    | Op::Reclaim { proc, addr, .. }
                    | Op::RmapWalk { proc, addr },
                ) => (proc, addr),
                StepKind::Expect(Expectation {
                    what: Expect::Entry { proc, addr, .. }, ..
                }) => (proc, addr),
                _ => continue,
            };
            self.touched.insert((p.value.clone(), a.value & !0xfff));
        }
    }

    fn pid(&self, name: &Spanned<String>) -> Result<Pid, String> {
        self.names
            .get(&name.value)
            .copied()
            .ok_or_else(|| format!("no process named {}", name.value))
    }

    fn name_of(&self, pid: Pid) -> String {
        self.pid_names.get(&pid).cloned().unwrap_or_else(|| format!("pid{pid}"))
    }

    fn bind(&mut self, name: &Spanned<String>, pid: Pid) -> Result<(), String> {
        if let Some(old) = self.names.get(&name.value) {
            if self.m.process_exists(*old) {
                return Err(format!("process {} already exists", name.value));
            }
        }
        self.names.insert(name.value.clone(), pid);
        self.pid_names.insert(pid, name.value.clone());
        Ok(())
    }

    /// Records what an outcome was; returns the completed value.
    fn outcome<T>(&self, o: Outcome<T>, last: &mut LastOp, rec: &mut StepRecord) -> Option<T> {
        match o {
            Outcome::Done(v) => Some(v),
            Outcome::Segv(s) => {
                let text = format!("SIGSEGV ({}) at {:#x}", s.code.as_str(), s.addr);
                rec.result = text.clone();
                last.segv = Some(text);
                None
            }
            Outcome::Oops(o) => {
                rec.result = o.to_string();
                last.oops = Some((o.kind, o.to_string()));
                None
            }
        }
    }

    /// Records a system call's result (`= 0` or `= -1 ENOMEM ...`) and holds
    /// it against the one stated: a different result, or a failure with no
    /// result stated, fails the run at this line, and the run goes on.
    fn syscall(
        &self,
        o: Outcome<SysResult>,
        stated: Option<&Spanned<SysResult>>,
        last: &mut LastOp,
        rec: &mut StepRecord,
    ) {
        let Some(got) = self.outcome(o, last, rec) else { return };
        rec.result = match got {
            Ok(()) => "= 0".to_string(),
            Err(e) => format!("= -1 {e}"),
        };
        let want = stated.map(|s| s.value);
        let failed = match want {
            Some(w) => w != got,
            None => got.is_err(),
        };
        if failed {
            rec.failed = true;
            let said = |r: SysResult| match r {
                Ok(()) => "0".to_string(),
                Err(e) => e.name().to_string(),
            };
            rec.result = match want {
                Some(w) => format!("FAILED: returned {}, expected {}", said(got), said(w)),
                None => format!("FAILED: returned {} (no result stated)", said(got)),
            };
        }
    }

    fn exec(&mut self, op: &Op, last: &mut LastOp, rec: &mut StepRecord) -> Result<(), String> {
        let e = |e: MmError| e.to_string();
        rec.result = "ok".to_string();
        match op {
            Op::Spawn { proc } => {
                let pid = self.m.spawn().map_err(e)?;
                self.bind(proc, pid)?;
            }
            Op::Mmap { proc, addr, len, prot, result } => {
                let pid = self.pid(proc)?;
                let o = self.m.mmap(pid, addr.value, len.value, prot.value).map_err(e)?;
                self.syscall(o, result.as_ref(), last, rec);
            }
            Op::Munmap { proc, addr, len, result } => {
                let pid = self.pid(proc)?;
                let o = self.m.munmap(pid, addr.value, len.value).map_err(e)?;
                self.syscall(o, result.as_ref(), last, rec);
            }
            Op::Mprotect { proc, addr, len, prot, result } => {
                let pid = self.pid(proc)?;
                let o = self.m.mprotect(pid, addr.value, len.value, prot.value).map_err(e)?;
                self.syscall(o, result.as_ref(), last, rec);
            }
            Op::Madvise { proc, addr, len, result, .. } => {
                let pid = self.pid(proc)?;
                let o = self.m.madvise_dontneed(pid, addr.value, len.value).map_err(e)?;
                self.syscall(o, result.as_ref(), last, rec);
            }
            Op::Write { proc, addr, value } => {
                let pid = self.pid(proc)?;
                let v = value.as_ref().map_or(limits::DEFAULT_WRITE_VALUE, |v| v.value);
                let o = self.m.write(pid, addr.value, v).map_err(e)?;
                self.outcome(o, last, rec);
            }
            Op::Read { proc, addr, expect } => {
                let pid = self.pid(proc)?;
                let o = self.m.read(pid, addr.value).map_err(e)?;
                if let Some(v) = self.outcome(o, last, rec) {
                    rec.result = format!("read {v:#04x}");
                    if let Some(want) = expect {
                        if v != want.value {
                            rec.failed = true;
                            rec.result =
                                format!("FAILED: read {v:#04x}, expected {:#04x}", want.value);
                        }
                    }
                } else if expect.is_some() {
                    rec.failed = true;
                    rec.result = format!("FAILED: {} (expected a value)", rec.result);
                }
            }
            Op::Fork { parent, child } => {
                let pid = self.pid(parent)?;
                let o = self.m.fork(pid).map_err(e)?;
                if let Some(c) = self.outcome(o, last, rec) {
                    self.bind(child, c)?;
                    rec.result = format!("ok: {} is pid {c}", child.value);
                }
            }
            Op::Exit { proc } => {
                let pid = self.pid(proc)?;
                let o = self.m.exit(pid).map_err(e)?;
                self.outcome(o, last, rec);
            }
            Op::Execve { proc } => {
                let pid = self.pid(proc)?;
                let o = self.m.execve(pid).map_err(e)?;
                self.outcome(o, last, rec);
            }
            Op::Reclaim { proc, addr, len, keep_cache } => {
                let pid = self.pid(proc)?;
                let l = len.as_ref().map_or(4096, |l| l.value);
                let o = self.m.reclaim(pid, addr.value, l, *keep_cache).map_err(e)?;
                if let Some(results) = self.outcome(o, last, rec) {
                    let parts: Vec<String> = results.iter().map(reclaim_text).collect();
                    rec.result = if parts.is_empty() {
                        "nothing to reclaim".into()
                    } else {
                        parts.join("; ")
                    };
                }
            }
            Op::RmapWalk { proc, addr } => {
                let pid = self.pid(proc)?;
                let o = self.m.rmap_walk(pid, addr.value).map_err(e)?;
                if let Some(hits) = self.outcome(o, last, rec) {
                    rec.result = match hits {
                        None => "no anon page mapped there".into(),
                        Some(h) => {
                            let found: Vec<String> = h
                                .iter()
                                .map(|h| {
                                    format!(
                                        "{}@{:#x}{}",
                                        self.name_of(h.pid),
                                        h.address,
                                        if h.mapped { "" } else { " (not mapped)" }
                                    )
                                })
                                .collect();
                            format!("walk found [{}]", found.join(" "))
                        }
                    };
                }
            }
            Op::RcuGracePeriod => self.m.rcu_grace_period(),
            Op::Dump { proc, addr } => {
                let pid = self.pid(proc)?;
                rec.output = Some(match addr {
                    None => self.m.dump(Some(pid)).map_err(e)?,
                    Some(a) => self.dump_one(pid, a.value).map_err(e)?,
                });
            }
        }
        Ok(())
    }

    fn dump_one(&self, pid: Pid, addr: u64) -> Result<String, MmError> {
        let mut s = String::new();
        for w in self.m.walk_entries(pid, addr)? {
            let what = match w.kind.pfn() {
                Some(p) if w.level != pgtable::Level::Pt => {
                    format!("{} -> frame {p}", w.kind.name())
                }
                _ => w.kind.name().to_string(),
            };
            s.push_str(&format!(
                "L{} table {} [{:3}] {:#018x} {what}\n",
                w.level as u8, w.table, w.index, w.raw
            ));
        }
        let pte = self.m.pte(pid, addr)?;
        s.push_str(&format!("{addr:#014x}: pte {:#018x} {}", pte.raw, pte.kind.name()));
        match pte.kind {
            EntryKind::Swap(sw) => {
                s.push_str(&format!(" type {} offset {:#x}", sw.swap_type, sw.offset));
                if sw.exclusive {
                    s.push_str(" exclusive");
                }
            }
            k => {
                if let Some(pfn) = k.pfn() {
                    let d = self.m.page(pfn)?;
                    s.push_str(&format!(
                        " pfn {pfn} refcount {} mapcount {} flags {:?}",
                        d.refcount, d.mapcount, d.flags
                    ));
                }
            }
        }
        s.push_str(&format!("\n  pagemap {:#018x}", self.m.pagemap(pid, addr)?));
        Ok(s)
    }

    /// Labels anon_vmas that appeared during `op` with the process they were
    /// made for (the forked child, or the faulting process), for reports.
    fn note_new_anon_vmas(&mut self, op: &Op) {
        let who = match op {
            Op::Fork { child, .. } => child.value.clone(),
            Op::Write { proc, .. }
            | Op::Read { proc, .. }
            | Op::Spawn { proc }
            | Op::Mmap { proc, .. }
            | Op::Mprotect { proc, .. } => proc.value.clone(),
            _ => return,
        };
        for av in self.m.anon_vmas() {
            self.av_owner.entry(av.id).or_insert_with(|| who.clone());
        }
    }

    fn label_av(&self, id: &str) -> String {
        // A freed anon_vma is shown as "avN (freed)" by mm.
        let base = id.split_whitespace().next().unwrap_or(id);
        let freed = id.contains("freed");
        match self.av_owner.get(base) {
            Some(owner) => format!("{base} ({owner}){}", if freed { " [freed]" } else { "" }),
            None => id.to_string(),
        }
    }

    fn summary(&self) -> StateSummary {
        let mut pages: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut omitted = 0usize;
        for (name, addr) in &self.touched {
            if pages.len() >= limits::SUMMARY_PAGES {
                omitted += 1;
                continue;
            }
            let Some(&pid) = self.names.get(name) else { continue };
            if !self.m.process_exists(pid) {
                continue;
            }
            if let Ok(Some(pfn)) = self.m.mapped_pfn(pid, *addr) {
                if pfn == self.m.zero_pfn() {
                    continue;
                }
                pages.entry(pfn.0).or_default().push(format!("{name}@{addr:#x}"));
            }
        }
        for slot in self.m.swap_slots() {
            if let Some(pfn) = slot.cached {
                pages.entry(pfn.0).or_default();
            }
        }
        let mut out = Vec::new();
        for (pfn, mapped_by) in pages {
            let Ok(d) = self.m.page(Pfn(pfn)) else { continue };
            let mapping = self.m.page_anon_vma(Pfn(pfn)).ok().flatten().map(|a| self.label_av(&a));
            out.push(PageSummary {
                pfn,
                mapping,
                index: d.index,
                mapcount: d.mapcount,
                swapcache: d.flags.contains(PageFlags::SWAPCACHE),
                mapped_by,
            });
        }
        let anon_vmas = self
            .m
            .anon_vmas()
            .into_iter()
            .map(|av| match self.av_owner.get(&av.id) {
                Some(o) => format!("{}({o})", av.id),
                None => av.id,
            })
            .collect();
        StateSummary { pages: out, omitted, anon_vmas }
    }

    fn describe_violation(&self, v: &Violation) -> String {
        let subject = match &v.subject {
            mm::Subject::Pte { pid, addr, pfn } => format!(
                "{}@{addr:#x}{}",
                self.name_of(*pid),
                pfn.map_or(String::new(), |p| format!(" page {p}"))
            ),
            other => other.to_string(),
        };
        format!("{} ({subject}): {}", v.name(), v.detail)
    }

    /// Holds the expectations that follow one operation; then fails the run
    /// on a new violation or oops nobody expected. Returns whether to stop.
    fn hold_group(
        &mut self,
        run: &mut EraRun,
        group: &[&Step],
        last: &LastOp,
        now: &[Violation],
        op_pos: Pos,
        op_record: Option<usize>,
    ) -> bool {
        let mut acknowledged: BTreeSet<ViolationKey> = BTreeSet::new();
        let mut oops_expected = false;
        let mut segv_expected = false;
        // What the group names for this era, so that `expect clean` before
        // `expect oops` in the same group judges the oops as expected.
        for s in group {
            if let StepKind::Expect(e) = &s.kind {
                if !e.applies_to(&self.era) {
                    continue;
                }
                match &e.what {
                    Expect::Oops(k)
                        if last
                            .oops
                            .as_ref()
                            .is_some_and(|(kind, _)| oops_matches(*kind, k.value)) =>
                    {
                        oops_expected = true;
                    }
                    Expect::Segv => segv_expected = true,
                    _ => {}
                }
            }
        }
        for s in group {
            let StepKind::Expect(e) = &s.kind else { continue };
            let mut rec = StepRecord {
                pos: s.pos,
                text: s.text.clone(),
                op_index: None,
                result: String::new(),
                failed: false,
                new_violations: Vec::new(),
                state: None,
                output: None,
            };
            if !e.applies_to(&self.era) {
                rec.result = "skipped (other eras)".into();
                run.skipped += 1;
                run.steps.push(rec);
                continue;
            }
            match self.hold(e, last, now, oops_expected, &mut acknowledged) {
                Ok(()) => {
                    rec.result = "ok".into();
                    run.held += 1;
                }
                Err(msg) => {
                    rec.result = format!("FAILED: {msg}");
                    rec.failed = true;
                    run.failures.push(Failure { line: s.pos.line, col: s.pos.col, message: msg });
                }
            }
            run.steps.push(rec);
        }
        // A failed `read ... = V` of the operation itself.
        if let Some(idx) = op_record {
            if let Some(r) = run.steps.get(idx) {
                if r.failed && r.result.starts_with("FAILED") {
                    let f = Failure {
                        line: r.pos.line,
                        col: r.pos.col,
                        message: r.result.trim_start_matches("FAILED: ").to_string(),
                    };
                    if !run.failures.contains(&f) {
                        run.failures.push(f);
                    }
                }
            }
        }
        if let Some(segv) = &last.segv {
            if !segv_expected {
                if let Some(r) = op_record.and_then(|i| run.steps.get_mut(i)) {
                    r.failed = true;
                }
                run.failures.push(Failure {
                    line: op_pos.line,
                    col: op_pos.col,
                    message: format!("unexpected {segv}"),
                });
            }
        }
        if let Some((_, text)) = &last.oops {
            if !oops_expected {
                run.stopped = Some(Failure {
                    line: op_pos.line,
                    col: op_pos.col,
                    message: format!("unexpected {text}"),
                });
                return true;
            }
        }
        let mut unexpected = Vec::new();
        for v in now {
            let key = (v.kind, v.subject.clone());
            if !self.known.contains(&key) && !acknowledged.contains(&key) {
                unexpected.push(self.describe_violation(v));
            }
        }
        self.known = now.iter().map(|v| (v.kind, v.subject.clone())).collect();
        if !unexpected.is_empty() {
            run.stopped = Some(Failure {
                line: op_pos.line,
                col: op_pos.col,
                message: format!("unexpected violation: {}", unexpected.join("; ")),
            });
            return true;
        }
        false
    }

    fn hold(
        &self,
        e: &Expectation,
        last: &LastOp,
        now: &[Violation],
        oops_expected: bool,
        acknowledged: &mut BTreeSet<ViolationKey>,
    ) -> Result<(), String> {
        match &e.what {
            Expect::Segv => match &last.segv {
                Some(_) => Ok(()),
                None => Err("the operation did not fault with SIGSEGV".into()),
            },
            Expect::Oops(k) => match &last.oops {
                Some((kind, _)) if oops_matches(*kind, k.value) => Ok(()),
                Some((_, text)) => Err(format!("expected oops {}, got {text}", k.value.as_str())),
                None => {
                    Err(format!("expected oops {}, the operation did not oops", k.value.as_str()))
                }
            },
            Expect::Invariant(n) => {
                let name = n.value.as_str();
                let hits: Vec<&Violation> = now.iter().filter(|v| v.kind == n.value).collect();
                if hits.is_empty() {
                    return Err(format!("the checker reports no {name} violation"));
                }
                for v in hits {
                    acknowledged.insert((v.kind, v.subject.clone()));
                }
                Ok(())
            }
            Expect::AnonVmas { cmp, count } => {
                let live = self.m.live_anon_vmas() as u64;
                let ok = match cmp {
                    CountCmp::Eq => live == count.value,
                    CountCmp::AtMost => live <= count.value,
                    CountCmp::AtLeast => live >= count.value,
                };
                if ok {
                    Ok(())
                } else {
                    let op = match cmp {
                        CountCmp::Eq => "",
                        CountCmp::AtMost => "<= ",
                        CountCmp::AtLeast => ">= ",
                    };
                    Err(format!("{live} live anon_vmas, expected {op}{}", count.value))
                }
            }
            Expect::Clean => {
                let mut problems: Vec<String> =
                    now.iter().map(|v| self.describe_violation(v)).collect();
                if let Some((_, text)) = &last.oops {
                    if !oops_expected {
                        problems.push(format!("unexpected {text}"));
                    }
                }
                if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
            }
            Expect::NoLeaks => {
                let leaks: Vec<String> = now
                    .iter()
                    .filter(|v| v.kind == mm::InvariantKind::Leak)
                    .map(|v| self.describe_violation(v))
                    .collect();
                if leaks.is_empty() { Ok(()) } else { Err(leaks.join("; ")) }
            }
            Expect::Entry { proc, addr, state, conditions } => {
                self.hold_entry(proc, addr.value, state.as_ref().map(|s| s.value), conditions)
            }
            Expect::Maps { proc, vmas } => {
                let pid = self.pid(proc)?;
                let have: Vec<MapsVma> = self
                    .m
                    .maps(pid)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|e| MapsVma { start: e.start, end: e.end, prot: e.prot })
                    .collect();
                let want: Vec<MapsVma> = vmas.iter().map(|v| v.value).collect();
                if have == want {
                    Ok(())
                } else {
                    let show = |l: &[MapsVma]| {
                        if l.is_empty() {
                            "(none)".to_string()
                        } else {
                            l.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
                        }
                    };
                    Err(format!("{} maps {}, expected {}", proc.value, show(&have), show(&want)))
                }
            }
        }
    }

    fn hold_entry(
        &self,
        proc: &Spanned<String>,
        addr: u64,
        state: Option<PteState>,
        conditions: &[Spanned<Condition>],
    ) -> Result<(), String> {
        let pid = self.pid(proc)?;
        let pte = self.m.pte(pid, addr).map_err(|e| e.to_string())?;
        let raw = pte.raw;
        let mut wrong: Vec<String> = Vec::new();
        let desc = |k: &EntryKind| match k {
            EntryKind::None => "none",
            EntryKind::Present(_) => "present",
            EntryKind::ProtNone(_) => "present (PROT_NONE)",
            EntryKind::Swap(_) => "swapped",
        };
        if let Some(st) = state {
            let ok = match st {
                PteState::Present => pte.kind.is_present(),
                PteState::Swapped => matches!(pte.kind, EntryKind::Swap(_)),
                PteState::None => pte.kind.is_none(),
            };
            if !ok {
                wrong.push(format!("entry is {} ({raw:#018x})", desc(&pte.kind)));
            }
        }
        // The page behind the entry: the mapped frame, or for a swap entry
        // the swap-cache page of its slot.
        let swap = pte.kind.as_swap();
        let slot = match swap {
            Some(sw) => self.m.swap_slot(sw.swap_type, sw.offset).ok(),
            None => None,
        };
        let page_pfn = pte.pfn().or(slot.and_then(|s| s.cached));
        let page = page_pfn.and_then(|p| self.m.page(p).ok());
        for c in conditions {
            match &c.value {
                Condition::Flag { field, value } => {
                    let actual = match field {
                        FlagField::Writable => raw & (1 << 1) != 0,
                        FlagField::Dirty => raw & (1 << 6) != 0,
                        FlagField::Accessed => raw & (1 << 5) != 0,
                        FlagField::Exclusive => {
                            let pm = self.m.pagemap(pid, addr).map_err(|e| e.to_string())?;
                            pm & (1 << 56) != 0
                        }
                        FlagField::SwapCache => {
                            page.is_some_and(|d| d.flags.contains(PageFlags::SWAPCACHE))
                        }
                        FlagField::AnonExclusive => {
                            page.is_some_and(|d| d.flags.contains(PageFlags::ANON_EXCLUSIVE))
                        }
                    };
                    if actual != *value {
                        wrong.push(format!("{}={}", field.as_str(), yes_no(actual)));
                    }
                }
                Condition::Num { field, value } => {
                    let actual = match field {
                        NumField::MapCount => Some(page.map_or(0, |d| u64::from(d.mapcount))),
                        NumField::SwapType => swap.map(|s| u64::from(s.swap_type)),
                        NumField::SwapOffset => swap.map(|s| s.offset),
                        NumField::SwapCount => slot.map(|s| u64::from(s.count)),
                    };
                    match actual {
                        Some(a) if a == *value => {}
                        Some(a) => wrong.push(format!("{}={a}", field.as_str())),
                        None => wrong.push(format!("{}= (not a swap entry)", field.as_str())),
                    }
                }
                Condition::Pte { value, pfn } => {
                    let want = match (pfn, pte.pfn()) {
                        (PfnMix::None, _) => Some(*value),
                        (PfnMix::Or, Some(p)) => Some(*value | (p.0 << 12)),
                        (PfnMix::Xor, Some(p)) => Some(*value ^ (p.0 << 12)),
                        (_, None) => None,
                    };
                    match want {
                        Some(w) if w == raw => {}
                        Some(w) => wrong.push(format!("pte={raw:#018x}, expected {w:#018x}")),
                        None => wrong.push(format!("pte={raw:#018x} maps no frame")),
                    }
                }
                Condition::SamePage { proc: other, addr: other_addr } => {
                    let opid = self.pid(other)?;
                    let same = self
                        .m
                        .same_page((pid, addr), (opid, other_addr.value))
                        .map_err(|e| e.to_string())?;
                    if !same {
                        let theirs = self.m.mapped_pfn(opid, other_addr.value).ok().flatten();
                        wrong.push(format!(
                            "maps {} but {}@{:#x} maps {}",
                            pte.pfn().map_or("no frame".to_string(), |p| format!("frame {p}")),
                            other.value,
                            other_addr.value,
                            theirs.map_or("no frame".to_string(), |p| format!("frame {p}"))
                        ));
                    }
                }
            }
        }
        if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn oops_matches(kind: mm::OopsKind, want: crate::ast::OopsKind) -> bool {
    matches!(
        (kind, want),
        (mm::OopsKind::UseAfterFree, crate::ast::OopsKind::AnonVmaUseAfterFree)
            | (mm::OopsKind::Reused, crate::ast::OopsKind::AnonVmaReused)
    )
}

fn reclaim_text(r: &mm::ReclaimResult) -> String {
    match r {
        mm::ReclaimResult::Freed { pfn, slot } => {
            format!("page {pfn} -> swap {}:{:#x}, freed", slot.0, slot.1)
        }
        mm::ReclaimResult::KeptInSwapCache { pfn, slot } => {
            format!("page {pfn} -> swap {}:{:#x}, kept in swap cache", slot.0, slot.1)
        }
        mm::ReclaimResult::StillMapped { pfn, mapcount } => {
            format!("page {pfn} still mapped {mapcount} times (rmap missed a mapping)")
        }
        mm::ReclaimResult::NoSwapSpace { pfn } => format!("page {pfn}: no free swap slot"),
    }
}
