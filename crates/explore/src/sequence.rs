//! One random sequence: generate, run, judge after every step; stop at the
//! first anomaly, then follow it for at most `follow` operations to see
//! what it becomes (an oops ends the follow-up at once).
//!
//! A finding's *class* is its chain: the anomalies in the order they first
//! appeared (`rmap-unreachable > mapping-freed > oops
//! anon-vma-use-after-free` is the seed's bug in full). The minimizer keeps
//! the chain, and findings are deduplicated by it.

use mm::Subject;
use scenario::ast::Op;

use crate::Target;
use crate::exec::{Anomaly, Exec};
use crate::generate::{Focus, Gen, GenOptions};

/// A sequence's chain of anomalies and the operations that produced it.
#[derive(Clone, Debug)]
pub struct RawFinding {
    /// The operations run, the last being the one that completed the chain.
    pub ops: Vec<Op>,
    /// The anomalies in order of first appearance.
    pub chain: Vec<Anomaly>,
    /// 1-based number of the operation at which the first anomaly appeared.
    pub first_step: usize,
    /// Emulator error text, for an [`Anomaly::EmulatorError`].
    pub error: Option<String>,
}

/// The class name of a chain: its anomalies joined by ` > `.
pub fn class_of(chain: &[Anomaly]) -> String {
    chain.iter().map(|a| a.name()).collect::<Vec<_>>().join(" > ")
}

/// What one sequence did.
#[derive(Clone, Debug, Default)]
pub struct SeqOutcome {
    /// Operations run before the first anomaly (or all, without one).
    pub steps: u64,
    /// Operations run while following a finding.
    pub follow_steps: u64,
    /// The finding, if the judges saw one.
    pub finding: Option<RawFinding>,
    /// The emulator refused an operation (a generator slip, not a finding):
    /// the sequence ended there.
    pub refused: Option<String>,
}

/// One replayed step: its anomalies and, for a system call, its result.
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    /// The step's anomalies ([`crate::exec::StepResult::anomalies`]).
    pub anomalies: Vec<Anomaly>,
    /// What a system call returned.
    pub sys: Option<mm::SysResult>,
}

/// Runs `ops` from scratch: the chain (anomalies in order of first
/// appearance) and each step as replayed, up to an oops. `Err` when an
/// operation cannot run.
pub fn replay(target: &Target, ops: &[Op]) -> Result<(Vec<Anomaly>, Vec<Replayed>), String> {
    let mut ex = Exec::new(target).map_err(|e| e.to_string())?;
    let mut chain = Vec::new();
    let mut per_step = Vec::with_capacity(ops.len());
    for op in ops {
        let r = ex.step(op).map_err(|e| e.to_string())?;
        let an = r.anomalies();
        for a in &an {
            if !chain.contains(a) {
                chain.push(*a);
            }
        }
        let stop = r.oops.is_some() || r.emulator_error.is_some();
        per_step.push(Replayed { anomalies: an, sys: r.sys });
        if stop {
            break;
        }
    }
    Ok((chain, per_step))
}

fn focus_of(ex: &Exec, v: &[mm::Violation], focus: &mut Focus) {
    for v in v {
        if let Subject::Pte { pid, addr, .. } = v.subject {
            if let Some(n) = ex.name_of(pid) {
                let f = (n.to_string(), addr);
                if !focus.contains(&f) {
                    focus.push(f);
                }
            }
        }
    }
}

/// Runs one sequence of at most `max_steps` generated operations (plus at
/// most `follow` after a first anomaly) from `seed`.
pub fn run_sequence(
    target: &Target,
    seed: u64,
    max_steps: u64,
    follow: u64,
    opts: GenOptions,
) -> SeqOutcome {
    let mut out = SeqOutcome::default();
    let mut ex = match Exec::new(target) {
        Ok(e) => e,
        Err(e) => {
            out.refused = Some(e.to_string());
            return out;
        }
    };
    let mut g = Gen::new(seed, opts);
    let mut ops: Vec<Op> = Vec::new();
    let mut chain: Vec<Anomaly> = Vec::new();
    let mut first_step = 0usize;
    let mut focus: Focus = Vec::new();
    let mut follow_left = follow;
    let mut error = None;
    loop {
        let following = !chain.is_empty();
        if following && follow_left == 0 || !following && out.steps >= max_steps {
            break;
        }
        let op = if following { g.follow(&ex, &focus) } else { g.next(&ex) };
        let r = match ex.step(&op) {
            Ok(r) => r,
            Err(e) => {
                out.refused = Some(format!("{}: {e}", crate::render::op_text(&op)));
                break;
            }
        };
        ops.push(op);
        if following {
            out.follow_steps += 1;
            follow_left -= 1;
        } else {
            out.steps += 1;
        }
        let an = r.anomalies();
        if an.is_empty() {
            continue;
        }
        if chain.is_empty() {
            first_step = ops.len();
        }
        let grew = an.iter().any(|a| !chain.contains(a));
        for a in an {
            if !chain.contains(&a) {
                chain.push(a);
            }
        }
        focus_of(&ex, &r.new, &mut focus);
        if r.emulator_error.is_some() {
            error = r.emulator_error.clone();
        }
        if r.oops.is_some() || r.emulator_error.is_some() {
            break;
        }
        // A chain that grows is followed afresh from its new link.
        if grew && following {
            follow_left = follow;
        }
    }
    if !chain.is_empty() {
        // Cut what followed the chain's last new link.
        let last = last_growth(target, &ops).unwrap_or(ops.len());
        ops.truncate(last);
        out.finding = Some(RawFinding { ops, chain, first_step, error });
    }
    out
}

/// The number of operations after which `ops`'s chain stops growing.
fn last_growth(target: &Target, ops: &[Op]) -> Option<usize> {
    let (chain, per_step) = replay(target, ops).ok()?;
    let mut seen = Vec::new();
    let mut last = 0;
    for (i, st) in per_step.iter().enumerate() {
        for a in &st.anomalies {
            if !seen.contains(a) {
                seen.push(*a);
                last = i + 1;
            }
        }
    }
    (seen == chain).then_some(last)
}
