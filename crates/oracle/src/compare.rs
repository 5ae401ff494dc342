//! Field-by-field comparison of the two sides and the report it produces.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::observe::{Field, Place, StepObs, Value, derive_fields};
use crate::plan::Plan;

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

/// One field on which the two sides disagree.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Disagreement {
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
    /// Every disagreement, in step order.
    pub disagreements: Vec<Disagreement>,
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
    /// Disagreements over all files.
    pub disagreements: usize,
}

impl Summary {
    /// Sums up `files`.
    pub fn new(files: Vec<FileReport>) -> Summary {
        let fields_compared = files.iter().map(|f| f.fields_compared).sum();
        let fields_agreeing = files.iter().map(|f| f.fields_agreeing).sum();
        let disagreements = files.iter().map(|f| f.disagreements.len()).sum();
        Summary {
            files,
            fields_compared,
            fields_agreeing,
            agreement_percent: percent(fields_agreeing, fields_compared),
            disagreements,
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
    for (i, step) in plan.steps.iter().enumerate() {
        let (Some(Some(k)), Some(Some(p))) = (kernel.steps.get(i), ptemu.steps.get(i)) else {
            continue;
        };
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
                Place::Page(proc, va) => (names(proc), Some(va)),
            };
            report.disagreements.push(Disagreement {
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

fn value_text(v: &Value) -> String {
    v.to_string()
}

fn access_proc(plan: &Plan, i: usize) -> String {
    use crate::plan::Action;
    match plan.steps.get(i).map(|s| &s.action) {
        Some(Action::Write { proc, .. } | Action::Read { proc, .. }) => {
            plan.proc_name(*proc).to_string()
        }
        _ => "-".to_string(),
    }
}

/// The human-readable report of several files, with the overall agreement.
pub fn render_text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    let (mut agree, mut total) = (0u64, 0u64);
    for r in reports {
        agree += r.fields_agreeing;
        total += r.fields_compared;
        let _ = writeln!(
            out,
            "{}: {} steps, {} compared; {} fields compared, {} agree ({:.2}%)",
            r.file,
            r.steps,
            r.steps_compared,
            r.fields_compared,
            r.fields_agreeing,
            r.agreement()
        );
        for d in &r.disagreements {
            let at = d.address.map_or(String::new(), |a| format!(" {a:#x}"));
            let _ = writeln!(
                out,
                "  step {} (line {}, {}): {}{} {}: kernel {}, ptemu {}",
                d.step,
                d.line,
                d.op,
                d.process,
                at,
                d.field.as_str(),
                d.kernel,
                d.ptemu
            );
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
        "total: {} files, {total} fields compared, {agree} agree ({:.2}%)",
        reports.len(),
        percent(agree, total)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{KPF_ANON, PM_EXCLUSIVE, PM_PRESENT, PageObs};

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
        assert!(text.contains("total: 1 files, 10 fields compared, 8 agree (80.00%)"), "{text}");
    }
}
