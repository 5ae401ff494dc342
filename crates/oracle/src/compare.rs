//! Field-by-field comparison of the two sides and the report it produces.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use std::collections::BTreeSet;

use crate::observe::{Field, Place, StepObs, Value, derive_fields};
use crate::plan::{Action, Plan, ProcId};

/// Which machine a note or a value comes from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The host's Linux kernel.
    Kernel,
    /// ptemu under era 6.18.
    Ptemu,
}

impl Side {
    /// The side's name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Kernel => "kernel",
            Side::Ptemu => "ptemu",
        }
    }
}

/// Why a step (or a stretch of steps) is left out of the comparison.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct StepNote {
    /// The step's number (1-based among operations).
    pub step: usize,
    /// Its line.
    pub line: u32,
    /// The side that could not do or read it.
    pub side: Side,
    /// What, precisely.
    pub what: String,
}

/// What one side produced for a plan.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct SideRun {
    /// Per step: what was read, or `None` when the step is not compared
    /// (the reason is in `notes`).
    pub steps: Vec<Option<StepObs>>,
    /// Steps left out, and why.
    pub notes: Vec<StepNote>,
    /// Fields this side cannot read at all, and why.
    pub unreadable: BTreeMap<Field, String>,
}

/// What kind of difference a [`Disagreement`] is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffClass {
    /// The two kernels disagree on something neither policy explains.
    Mismatch,
    /// Under memory pressure the two kernels evicted different pages: the
    /// field is one that depends on which page was taken (present or
    /// swapped, which slot, which frame, in the swap cache or not, and the
    /// mapcount and exclusivity a later partial swap-in leaves), on a page
    /// that pressure reclaim (not a `reclaim` step) swapped out on either
    /// side. Both choices are shown.
    EvictionPolicy,
    /// The kernel kept a present page in the swap cache where ptemu freed
    /// it. 6.18's do_swap_page frees the swap cache on a write fault only
    /// when the folio's reference count is exactly the cache's and the
    /// fault's; a reference held elsewhere at that instant (a per-CPU LRU
    /// batch the swap-in was added to and not yet drained) keeps it. Which
    /// of the two the host does depends on the CPU's batch state, not on
    /// the scenario; ptemu's model has no per-CPU batches and frees it.
    /// Only the direction kernel "yes", ptemu "no" on a present page is
    /// classed so; the other direction stays a mismatch.
    SwapCacheKept,
}

/// One field on which the two sides disagree.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Disagreement {
    /// A mismatch, or a difference of eviction policy.
    pub class: DiffClass,
    /// The step's number.
    pub step: usize,
    /// Its line.
    pub line: u32,
    /// The operation.
    pub op: String,
    /// The scenario process read (for an access outcome: the one accessing).
    pub process: String,
    /// The page address (absent for an access outcome).
    pub address: Option<u64>,
    /// The field.
    pub field: Field,
    /// The kernel's value.
    pub kernel: String,
    /// ptemu's value.
    pub ptemu: String,
}

/// A field one side cannot read, left out everywhere.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Excluded {
    /// The field.
    pub field: Field,
    /// The side.
    pub side: Side,
    /// Why.
    pub why: String,
}

/// The comparison of one scenario file.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct FileReport {
    /// The scenario file.
    pub file: String,
    /// Operations in the scenario.
    pub steps: usize,
    /// Operations whose state was compared.
    pub steps_compared: usize,
    /// Fields compared.
    pub fields_compared: u64,
    /// Fields on which both sides agree.
    pub fields_agreeing: u64,
    /// Every mismatch, in step order.
    pub disagreements: Vec<Disagreement>,
    /// Fields that differ only because the two kernels' pressure reclaim
    /// took different pages (counted among the fields compared, not among
    /// those agreeing), in step order.
    pub policy: Vec<Disagreement>,
    /// Steps left out, and why.
    pub notes: Vec<StepNote>,
    /// Fields left out, and why.
    pub excluded: Vec<Excluded>,
}

impl FileReport {
    /// Agreement in percent of fields compared (100 when nothing was compared).
    pub fn agreement(&self) -> f64 {
        percent(self.fields_agreeing, self.fields_compared)
    }
}

/// The reports of several files with the overall agreement (the `--json` form).
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct Summary {
    /// One report per file, in the order given.
    pub files: Vec<FileReport>,
    /// Fields compared over all files.
    pub fields_compared: u64,
    /// Fields agreeing over all files.
    pub fields_agreeing: u64,
    /// Agreement in percent.
    pub agreement_percent: f64,
    /// Mismatches over all files.
    pub disagreements: usize,
    /// Eviction-policy differences over all files.
    pub policy_differences: usize,
    /// Operations over all files.
    pub steps: usize,
    /// Operations compared over all files.
    pub steps_compared: usize,
}

impl Summary {
    /// Sums up `files`.
    pub fn new(files: Vec<FileReport>) -> Summary {
        let fields_compared = files.iter().map(|f| f.fields_compared).sum();
        let fields_agreeing = files.iter().map(|f| f.fields_agreeing).sum();
        let disagreements = files.iter().map(|f| f.disagreements.len()).sum();
        let policy_differences = files.iter().map(|f| f.policy.len()).sum();
        let steps = files.iter().map(|f| f.steps).sum();
        let steps_compared = files.iter().map(|f| f.steps_compared).sum();
        Summary {
            files,
            fields_compared,
            fields_agreeing,
            agreement_percent: percent(fields_agreeing, fields_compared),
            disagreements,
            policy_differences,
            steps,
            steps_compared,
        }
    }
}

/// Percentage with a defined value for an empty comparison.
pub fn percent(agree: u64, total: u64) -> f64 {
    if total == 0 { 100.0 } else { agree as f64 * 100.0 / total as f64 }
}

/// Compares the two sides' runs of `plan`.
pub fn compare(plan: &Plan, kernel: &SideRun, ptemu: &SideRun) -> FileReport {
    let names = |p| plan.proc_name(p).to_string();
    let mut report = FileReport {
        file: plan.file.clone(),
        steps: plan.steps.len(),
        steps_compared: 0,
        fields_compared: 0,
        fields_agreeing: 0,
        disagreements: Vec::new(),
        policy: Vec::new(),
        notes: kernel.notes.iter().chain(&ptemu.notes).cloned().collect(),
        excluded: Vec::new(),
    };
    report.notes.sort_by_key(|n| (n.step, n.side));
    for (side, run) in [(Side::Kernel, kernel), (Side::Ptemu, ptemu)] {
        for (field, why) in &run.unreadable {
            report.excluded.push(Excluded { field: *field, side, why: why.clone() });
        }
    }
    let skip = |f: &Field| kernel.unreadable.contains_key(f) || ptemu.unreadable.contains_key(f);
    let mut kt = PressureTrack::default();
    let mut pt = PressureTrack::default();
    for (i, step) in plan.steps.iter().enumerate() {
        let ko = kernel.steps.get(i).and_then(Option::as_ref);
        let po = ptemu.steps.get(i).and_then(Option::as_ref);
        kt.step(&step.action, ko);
        pt.step(&step.action, po);
        let (Some(k), Some(p)) = (ko, po) else {
            continue;
        };
        let touched: BTreeSet<(ProcId, u64)> = kt.touched.union(&pt.touched).copied().collect();
        let touched_labels: BTreeSet<String> =
            touched.iter().map(|&(q, va)| format!("{}:{va:#x}", names(q))).collect();
        report.steps_compared += 1;
        let kf = derive_fields(k, &names);
        let pf = derive_fields(p, &names);
        for ((place, field), kv) in &kf {
            if skip(field) {
                continue;
            }
            let Some(pv) = pf.get(&(*place, *field)) else { continue };
            report.fields_compared += 1;
            if kv == pv {
                report.fields_agreeing += 1;
                continue;
            }
            let (process, address) = match *place {
                Place::Access => (access_proc(plan, i), None),
                Place::Process(proc) => (names(proc), None),
                Place::Page(proc, va) => (names(proc), Some(va)),
            };
            let policy = match *place {
                Place::Page(proc, va) => {
                    POLICY_FIELDS.contains(field)
                        && (touched.contains(&(proc, va))
                            || [kv, pv].iter().any(
                                |v| matches!(v, Value::Class(c) if touched_labels.contains(c)),
                            ))
                }
                _ => false,
            };
            let kept = !policy
                && matches!(place, Place::Page(..))
                && *field == Field::Swapcache
                && *kv == Value::Bool(true)
                && *pv == Value::Bool(false);
            let class = if policy {
                DiffClass::EvictionPolicy
            } else if kept {
                DiffClass::SwapCacheKept
            } else {
                DiffClass::Mismatch
            };
            let list = if policy || kept { &mut report.policy } else { &mut report.disagreements };
            list.push(Disagreement {
                class,
                step: step.number,
                line: step.line,
                op: step.action.verb().to_string(),
                process,
                address,
                field: *field,
                kernel: value_text(kv),
                ptemu: value_text(pv),
            });
        }
    }
    report
}

/// The fields whose value depends on which pages reclaim took.
const POLICY_FIELDS: [Field; 9] = [
    Field::Present,
    Field::Swapped,
    Field::SwapType,
    Field::SwapSlot,
    Field::Swapcache,
    Field::Frame,
    Field::Mapcount,
    Field::Exclusive,
    Field::AnonExclusive,
];

/// One side's record of the entries pressure reclaim has swapped out:
/// an entry that was not a swap entry before a step other than `reclaim`
/// and is one after it. The mark stays while the entry lives (its later
/// swap-in, swap cache and sharing follow from that choice), goes with
/// the entry (zapped, unmapped, the process gone), and a fork copies it.
#[derive(Default)]
struct PressureTrack {
    prev: Option<StepObs>,
    touched: BTreeSet<(ProcId, u64)>,
}

impl PressureTrack {
    fn step(&mut self, action: &Action, obs: Option<&StepObs>) {
        if let Action::Fork { parent, child } = *action {
            let inherited: Vec<u64> =
                self.touched.iter().filter(|(q, _)| *q == parent).map(|&(_, va)| va).collect();
            self.touched.extend(inherited.into_iter().map(|va| (child, va)));
        }
        let Some(obs) = obs else {
            // Not read on this side: nothing to learn, and the next read
            // must not compare against a stale state.
            self.prev = None;
            return;
        };
        let reclaim = matches!(action, Action::Reclaim { .. });
        self.touched.retain(|key| {
            obs.pages.get(key).is_some_and(|p| p.pfn().is_some() || p.swap_entry().is_some())
        });
        if let Some(prev) = &self.prev {
            if !reclaim {
                for (&key, page) in &obs.pages {
                    // Present before, or faulted in and taken again within
                    // the step (the kernel can pick the page it just
                    // charged).
                    let was_swapped =
                        prev.pages.get(&key).is_some_and(|p| p.swap_entry().is_some());
                    if !was_swapped && page.swap_entry().is_some() {
                        self.touched.insert(key);
                    }
                }
            }
        }
        self.prev = Some(obs.clone());
    }
}

fn value_text(v: &Value) -> String {
    v.to_string()
}

fn access_proc(plan: &Plan, i: usize) -> String {
    match plan.steps.get(i).map(|s| &s.action) {
        Some(
            Action::Write { proc, .. }
            | Action::Read { proc, .. }
            | Action::Mmap { proc, .. }
            | Action::Munmap { proc, .. }
            | Action::Mprotect { proc, .. }
            | Action::Madvise { proc, .. },
        ) => plan.proc_name(*proc).to_string(),
        _ => "-".to_string(),
    }
}

/// The human-readable report of several files, with the overall agreement.
pub fn render_text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    let (mut agree, mut total, mut steps, mut compared, mut policy, mut mismatches) =
        (0u64, 0u64, 0usize, 0usize, 0usize, 0usize);
    for r in reports {
        agree += r.fields_agreeing;
        total += r.fields_compared;
        steps += r.steps;
        compared += r.steps_compared;
        policy += r.policy.len();
        mismatches += r.disagreements.len();
        let pol = if r.policy.is_empty() {
            String::new()
        } else {
            format!("; {} differ by eviction policy", r.policy.len())
        };
        let _ = writeln!(
            out,
            "{}: {} steps, {} compared; {} fields compared, {} agree ({:.2}%){pol}",
            r.file,
            r.steps,
            r.steps_compared,
            r.fields_compared,
            r.fields_agreeing,
            r.agreement()
        );
        for d in &r.disagreements {
            let _ = writeln!(out, "  {}", diff_line(d));
        }
        // A policy difference usually lasts several steps: show where each
        // (entry, field) first differs and for how many steps it does.
        let mut seen: BTreeMap<(String, Option<u64>, Field), usize> = BTreeMap::new();
        for d in &r.policy {
            *seen.entry((d.process.clone(), d.address, d.field)).or_default() += 1;
        }
        for d in &r.policy {
            let Some(n) = seen.remove(&(d.process.clone(), d.address, d.field)) else { continue };
            let more = if n > 1 { format!(" (differs at {n} steps)") } else { String::new() };
            let what = match d.class {
                DiffClass::SwapCacheKept => "swap cache kept by the kernel",
                _ => "eviction policy",
            };
            let _ = writeln!(out, "  {what}: {}{more}", diff_line(d));
        }
        for n in &r.notes {
            let _ = writeln!(
                out,
                "  not compared: step {} (line {}): {}: {}",
                n.step,
                n.line,
                n.side.as_str(),
                n.what
            );
        }
        for e in &r.excluded {
            let _ = writeln!(
                out,
                "  field {} left out: {} cannot read it: {}",
                e.field.as_str(),
                e.side.as_str(),
                e.why
            );
        }
    }
    let _ = writeln!(
        out,
        "total: {} files, {compared} of {steps} steps compared, {total} fields compared, \
         {agree} agree ({:.2}%), {mismatches} disagree, {policy} differ by eviction policy",
        reports.len(),
        percent(agree, total)
    );
    out
}

fn diff_line(d: &Disagreement) -> String {
    let at = d.address.map_or(String::new(), |a| format!(" {a:#x}"));
    format!(
        "step {} (line {}, {}): {}{} {}: kernel {}, ptemu {}",
        d.step,
        d.line,
        d.op,
        d.process,
        at,
        d.field.as_str(),
        d.kernel,
        d.ptemu
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{AccessOutcome, KPF_ANON, PM_EXCLUSIVE, PM_PRESENT, PageObs};

    fn plan() -> Plan {
        let sc = scenario::parse_str(
            "t.scn",
            "spawn A\nA mmap 0x7f0000000000 8K rw\nA write 0x7f0000000000\nrmap-walk A 0x7f0000000000\n",
        )
        .expect("parses");
        Plan::from_scenario(&sc).expect("plans")
    }

    fn obs(excl: bool, count: u64) -> StepObs {
        let mut o = StepObs::default();
        o.pages.insert(
            (0, 0x7f0000000000),
            PageObs {
                pagemap: PM_PRESENT | if excl { PM_EXCLUSIVE } else { 0 } | 42,
                kpagecount: Some(count),
                kpageflags: Some(KPF_ANON),
            },
        );
        o.pages.insert((0, 0x7f0000001000), PageObs::default());
        o
    }

    #[test]
    fn counts_and_reports_each_disagreement() {
        let p = plan();
        let kernel = SideRun {
            steps: vec![
                Some(StepObs::default()),
                Some(StepObs::default()),
                Some(obs(true, 1)),
                None,
            ],
            notes: vec![StepNote {
                step: 4,
                line: 4,
                side: Side::Kernel,
                what: "no rmap walk".into(),
            }],
            unreadable: BTreeMap::new(),
        };
        let mut ptemu_unreadable = BTreeMap::new();
        ptemu_unreadable.insert(Field::Swapcache, "not exposed".to_string());
        let ptemu = SideRun {
            steps: vec![
                Some(StepObs::default()),
                Some(StepObs::default()),
                Some(obs(false, 2)),
                Some(obs(false, 2)),
            ],
            notes: vec![],
            unreadable: ptemu_unreadable,
        };
        let r = compare(&p, &kernel, &ptemu);
        assert_eq!(r.steps_compared, 3);
        // Page 1: present, swapped, exclusive, frame, mapcount, anon, zero-page,
        // anon-exclusive (swapcache left out); page 2: present, swapped.
        assert_eq!(r.fields_compared, 10);
        assert_eq!(r.fields_agreeing, 8);
        let fields: Vec<_> = r.disagreements.iter().map(|d| d.field).collect();
        assert_eq!(fields, vec![Field::Exclusive, Field::Mapcount]);
        assert_eq!(r.disagreements[1].kernel, "1");
        assert_eq!(r.disagreements[1].ptemu, "2");
        assert_eq!(r.disagreements[0].line, 3);
        let text = render_text(&[r]);
        assert!(
            text.contains(
                "step 3 (line 3, write): A 0x7f0000000000 exclusive: kernel yes, ptemu no"
            ),
            "{text}"
        );
        assert!(text.contains("not compared: step 4 (line 4): kernel: no rmap walk"), "{text}");
        assert!(
            text.contains(
                "total: 1 files, 3 of 4 steps compared, 10 fields compared, 8 agree (80.00%), \
                 2 disagree, 0 differ by eviction policy"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_swap_cache_the_kernel_kept_is_its_own_class() {
        use crate::observe::KPF_SWAPCACHE;
        let sc = scenario::parse_str(
            "t.scn",
            "spawn A\nA mmap 0x7f0000000000 4K rw\nA write 0x7f0000000000\n",
        )
        .expect("parses");
        let p = Plan::from_scenario(&sc).expect("plans");
        let page = |flags| PageObs {
            pagemap: PM_PRESENT | 5,
            kpageflags: Some(KPF_ANON | flags),
            ..Default::default()
        };
        let run = |flags| SideRun {
            steps: vec![
                Some(StepObs::default()),
                Some(StepObs::default()),
                Some({
                    let mut o = StepObs::default();
                    o.pages.insert((0, 0x7f0000000000), page(flags));
                    o
                }),
            ],
            ..Default::default()
        };
        // Kernel kept it, ptemu freed it: the batch-reference class.
        let r = compare(&p, &run(KPF_SWAPCACHE), &run(0));
        assert!(r.disagreements.is_empty(), "{:?}", r.disagreements);
        let classes: Vec<_> = r.policy.iter().map(|d| (d.field, d.class)).collect();
        assert_eq!(classes, vec![(Field::Swapcache, DiffClass::SwapCacheKept)]);
        assert!(render_text(&[r]).contains("swap cache kept by the kernel"));
        // The other direction is ptemu keeping what the kernel freed: a
        // mismatch.
        let r = compare(&p, &run(0), &run(KPF_SWAPCACHE));
        assert!(r.policy.is_empty(), "{:?}", r.policy);
        let fields: Vec<_> = r.disagreements.iter().map(|d| (d.field, d.class)).collect();
        assert_eq!(fields, vec![(Field::Swapcache, DiffClass::Mismatch)]);
    }

    #[test]
    fn pressure_evictions_are_their_own_class() {
        use crate::observe::PM_SWAPPED;
        let sc = scenario::parse_str(
            "t.scn",
            "memory 256K\nspawn A\nA mmap 0x7f0000000000 8K rw\nA write 0x7f0000000000\n\
             A write 0x7f0000001000\nA read 0x7f0000000000\n",
        )
        .expect("parses");
        let p = Plan::from_scenario(&sc).expect("plans");
        let present = |pfn| PageObs { pagemap: PM_PRESENT | pfn, ..Default::default() };
        let swapped = PageObs { pagemap: PM_SWAPPED | (1 << 5), ..Default::default() };
        let step = |a: PageObs, b: PageObs, value: Option<u8>| {
            let mut o = StepObs::default();
            o.pages.insert((0, 0x7f0000000000), a);
            o.pages.insert((0, 0x7f0000001000), b);
            o.access = value.map(|v| AccessOutcome { segv: false, value: Some(v) });
            o
        };
        let none = PageObs::default();
        // The kernel's pressure reclaim took the first page at the second
        // write; ptemu's took none. The read still agrees on the value.
        let kernel = SideRun {
            steps: vec![
                Some(StepObs::default()),
                Some(step(none, none, None)),
                Some(step(present(5), none, None)),
                Some(step(swapped, present(6), None)),
                Some(step(swapped, present(6), Some(0xaa))),
            ],
            ..Default::default()
        };
        let ptemu = SideRun {
            steps: vec![
                Some(StepObs::default()),
                Some(step(none, none, None)),
                Some(step(present(9), none, None)),
                Some(step(present(9), present(10), None)),
                Some(step(present(9), present(10), Some(0xaa))),
            ],
            ..Default::default()
        };
        let r = compare(&p, &kernel, &ptemu);
        assert!(r.disagreements.is_empty(), "{:?}", r.disagreements);
        let fields: Vec<_> = r.policy.iter().map(|d| (d.step, d.field)).collect();
        assert_eq!(
            fields,
            vec![
                (4, Field::Present),
                (4, Field::Swapped),
                (5, Field::Present),
                (5, Field::Swapped)
            ]
        );
        assert_eq!(r.policy[0].class, DiffClass::EvictionPolicy);
        assert_eq!((r.policy[0].kernel.as_str(), r.policy[0].ptemu.as_str()), ("no", "yes"));
        // The same difference with no pressure behind it (an explicit
        // reclaim step) is a mismatch.
        let mut sc2 = p.clone();
        sc2.steps[3].action =
            Action::Reclaim { proc: 0, addr: 0x7f0000000000, len: 4096, keep_cache: false };
        let r = compare(&sc2, &kernel, &ptemu);
        assert_eq!(r.disagreements.len(), 4);
        assert!(r.policy.is_empty());
    }
}
