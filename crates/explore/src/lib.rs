//! `ptemu explore`: a random search over the emulated mm paths that finds
//! invariant violations and oopses by itself, shrinks each to a smallest
//! scenario, and writes it in the fixture language (docs/explore.md).
//!
//! - [`generate`] chooses operations from the machine's state, weighted toward
//!   the seed's paths; [`exec`] runs them as `ptemu run` would and reports
//!   what the judges see; [`sequence`] runs one sequence to its first
//!   anomaly and follows it.
//! - [`minimize`] is delta debugging over operations, processes,
//!   addresses, lengths and values; [`scn`] writes the result and checks it
//!   with the scenario runner under every era.
//! - [`oracle_judge`] adds the host kernel as a judge (`--oracle`).
//! - [`explore`] spreads sequences over threads; what it finds depends only
//!   on the seed and the step budget (sequence `i` is seeded from `(seed,
//!   i)` and gets a fixed share of the budget), never on the thread count.
//!   [`merge`] combines the JSON reports of shards.
#![forbid(unsafe_code)]

pub mod exec;
pub mod generate;
pub mod minimize;
pub mod oracle_judge;
pub mod render;
pub mod rng;
pub mod scn;
pub mod sequence;
pub mod target;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use exec::Anomaly;
pub use generate::GenOptions;
pub use oracle_judge::{JudgeError, OracleJudge};
pub use sequence::{RawFinding, class_of, run_sequence};
pub use target::{Target, TargetError};

/// Operations per sequence (its share of a `--steps` budget).
pub const SEQUENCE_STEPS: u64 = 48;
/// Operations per sequence with the oracle (each runs on the host too).
pub const ORACLE_SEQUENCE_STEPS: u64 = 16;
/// Default follow-up after a first anomaly.
pub const FOLLOW: u64 = 24;

/// How long to search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// This many generated operations in all (follow-ups not counted),
    /// shared among sequences deterministically.
    Steps(u64),
    /// Until this much time has passed.
    Time(Duration),
}

/// A search.
pub struct Config<'a> {
    /// The semantics searched.
    pub target: Target,
    /// The run's seed.
    pub seed: u64,
    /// How long.
    pub budget: Budget,
    /// Threads.
    pub jobs: usize,
    /// `(i, n)`: run only sequences whose index is `i` mod `n`.
    pub shard: (u64, u64),
    /// Operations followed after a first anomaly.
    pub follow: u64,
    /// Operations per sequence.
    pub sequence_steps: u64,
    /// The kernel oracle, when it judges too.
    pub oracle: Option<&'a OracleJudge>,
    /// Minimize and write the findings (off: report raw findings).
    pub minimize: bool,
    /// The command line, for the reproducers' headers.
    pub command: String,
}

/// What the search has done so far (for progress display).
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Sequences finished.
    pub sequences: u64,
    /// Operations run (search and follow-up).
    pub steps: u64,
    /// Distinct finding classes.
    pub classes: u64,
    /// Time since the start.
    pub elapsed: Duration,
    /// The planned number of search operations, for a step budget.
    pub planned_steps: Option<u64>,
    /// The deadline, for a time budget.
    pub deadline: Option<Duration>,
    /// The search is over and findings are being minimized.
    pub minimizing: bool,
}

/// One class of finding in a report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FindingReport {
    /// The chain of anomalies (`rmap-unreachable > mapping-freed > oops ...`).
    pub class: String,
    /// Sequences that found this class.
    pub count: u64,
    /// The run seed of the sequence reported.
    pub seed: u64,
    /// Its index, and its own seed.
    pub sequence: u64,
    /// The sequence's own seed.
    pub sequence_seed: u64,
    /// Operation (1-based) of the sequence at which its first anomaly came.
    pub first_step: u64,
    /// Search operations run, in sequence order, up to and including the
    /// first one of this class.
    pub steps_to_first: u64,
    /// Seconds from the start of the search until a sequence of this class
    /// finished (wall clock; depends on the machine and `--jobs`).
    pub secs_to_first: f64,
    /// Operations of the sequence as found.
    pub raw_ops: u64,
    /// Operations of the minimized scenario.
    pub ops: u64,
    /// Candidates the minimizer tried.
    pub minimizer_tests: u64,
    /// The scenario (minimized when minimization was on).
    pub scenario: String,
    /// Where it was written.
    pub file: Option<String>,
    /// Eras under which `ptemu run` passes it.
    pub passes_under: Vec<String>,
    /// Eras under which it fails.
    pub fails_under: Vec<String>,
    /// The emulator's error text, for an emulator-error class.
    pub error: Option<String>,
}

/// Totals of the oracle judge.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OracleTotals {
    /// Sequences run on the host.
    pub sequences: u64,
    /// Operations compared.
    pub steps_compared: u64,
    /// Fields compared.
    pub fields_compared: u64,
    /// Sequences the oracle could not run (error text counted by kind).
    pub errors: u64,
}

/// A search's report (`--json`), and what `merge` combines.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The target searched.
    pub target: String,
    /// Run seeds (one, or several after a merge).
    pub seeds: Vec<u64>,
    /// The step budget, if it was one.
    pub budget_steps: Option<u64>,
    /// The time budget in seconds, if it was one.
    pub budget_secs: Option<f64>,
    /// Shards covered, `i/n` each.
    pub shards: Vec<String>,
    /// Sequences run.
    pub sequences: u64,
    /// Search operations run.
    pub steps: u64,
    /// Follow-up operations run.
    pub follow_steps: u64,
    /// Sequences cut short because the emulator refused an operation.
    pub refused: u64,
    /// Wall-clock seconds of the search (not of the minimization).
    pub search_secs: f64,
    /// Seconds spent minimizing.
    pub minimize_secs: f64,
    /// Threads.
    pub jobs: usize,
    /// Operations per second per thread.
    pub steps_per_sec_per_job: f64,
    /// The oracle's totals, when it judged.
    pub oracle: Option<OracleTotals>,
    /// One entry per class, in class order.
    pub findings: Vec<FindingReport>,
    /// The signal that stopped an oracle search early (its findings are
    /// then left unminimized: every candidate would be another host run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<i32>,
}

struct ClassAcc {
    count: u64,
    best: (u64, RawFinding),
    secs: f64,
}

fn assignment(cfg: &Config<'_>, k: u64) -> Option<(u64, u64)> {
    let (si, sn) = cfg.shard;
    let index = si + k * sn;
    match cfg.budget {
        Budget::Steps(n) => {
            let start = index.checked_mul(cfg.sequence_steps)?;
            (start < n).then(|| (index, cfg.sequence_steps.min(n - start)))
        }
        Budget::Time(_) => Some((index, cfg.sequence_steps)),
    }
}

/// Runs a search and minimizes what it found.
pub fn explore(cfg: &Config<'_>, progress: &(dyn Fn(Progress) + Sync)) -> Report {
    let start = Instant::now();
    let next = AtomicU64::new(0);
    let steps_done = AtomicU64::new(0);
    let seqs_done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let interrupted = AtomicI32::new(0);
    let workers_left = AtomicU64::new(cfg.jobs.max(1) as u64);
    let classes: Mutex<BTreeMap<String, ClassAcc>> = Mutex::new(BTreeMap::new());
    // Per sequence index (among this shard's): search steps.
    let per_seq: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
    let totals = Mutex::new((0u64, 0u64, 0u64, OracleTotals::default()));
    let planned = match cfg.budget {
        Budget::Steps(n) => {
            let (si, sn) = cfg.shard;
            let seqs = n.div_ceil(cfg.sequence_steps.max(1));
            let mine = (si..seqs).step_by(sn.max(1) as usize);
            Some(mine.map(|i| cfg.sequence_steps.min(n - i * cfg.sequence_steps)).sum())
        }
        Budget::Time(_) => None,
    };
    let deadline = match cfg.budget {
        Budget::Time(d) => Some(d),
        Budget::Steps(_) => None,
    };
    let opts = GenOptions { oracle: cfg.oracle.is_some() };
    let snapshot = |minimizing| Progress {
        sequences: seqs_done.load(Ordering::Relaxed),
        steps: steps_done.load(Ordering::Relaxed),
        classes: classes.lock().map(|c| c.len() as u64).unwrap_or(0),
        elapsed: start.elapsed(),
        planned_steps: planned,
        deadline,
        minimizing,
    };
    std::thread::scope(|s| {
        for _ in 0..cfg.jobs.max(1) {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if deadline.is_some_and(|d| start.elapsed() >= d) {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((index, steps)) = assignment(cfg, k) else { break };
                    let seed = rng::sequence_seed(cfg.seed, index);
                    let out = run_sequence(&cfg.target, seed, steps, cfg.follow, opts);
                    let mut finding = out.finding.clone();
                    let mut oracle_stats = None;
                    if let (Some(judge), None) = (cfg.oracle, &finding) {
                        let ops = replay_ops(&cfg.target, seed, steps, opts);
                        match judge.judge(&cfg.target, &ops) {
                            Ok(v) => {
                                if let Some(c) = v.classes.first() {
                                    finding = Some(RawFinding {
                                        ops,
                                        chain: Vec::new(),
                                        first_step: 0,
                                        error: Some(c.clone()),
                                    });
                                }
                                oracle_stats = Some(Ok(v));
                            }
                            Err(JudgeError::Interrupted(sig)) => {
                                interrupted.store(sig, Ordering::Relaxed);
                                stop.store(true, Ordering::Relaxed);
                            }
                            Err(e) => oracle_stats = Some(Err(e)),
                        }
                    }
                    {
                        let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                        t.0 += out.steps;
                        t.1 += out.follow_steps;
                        t.2 += u64::from(out.refused.is_some());
                        match oracle_stats {
                            Some(Ok(v)) => {
                                t.3.sequences += 1;
                                t.3.steps_compared += v.steps_compared;
                                t.3.fields_compared += v.fields_compared;
                            }
                            Some(Err(_)) => t.3.errors += 1,
                            None => {}
                        }
                    }
                    per_seq.lock().unwrap_or_else(|p| p.into_inner()).insert(index, out.steps);
                    if let Some(f) = finding {
                        let class = finding_class(&f);
                        let secs = start.elapsed().as_secs_f64();
                        let mut c = classes.lock().unwrap_or_else(|p| p.into_inner());
                        let acc = c.entry(class).or_insert_with(|| ClassAcc {
                            count: 0,
                            best: (index, f.clone()),
                            secs,
                        });
                        acc.count += 1;
                        acc.secs = acc.secs.min(secs);
                        if index < acc.best.0 {
                            acc.best = (index, f);
                        }
                    }
                    steps_done.fetch_add(out.steps + out.follow_steps, Ordering::Relaxed);
                    seqs_done.fetch_add(1, Ordering::Relaxed);
                }
                workers_left.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // The progress reporter, until every worker has left.
        s.spawn(|| {
            let mut last = Instant::now();
            while workers_left.load(Ordering::Relaxed) > 0 {
                if last.elapsed() >= Duration::from_millis(250) {
                    progress(snapshot(false));
                    last = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
    });
    let search_secs = start.elapsed().as_secs_f64();
    progress(snapshot(true));
    let (steps, follow_steps, refused, otot) =
        totals.into_inner().unwrap_or_else(|p| p.into_inner());
    let per_seq = per_seq.into_inner().unwrap_or_else(|p| p.into_inner());
    let classes = classes.into_inner().unwrap_or_else(|p| p.into_inner());
    let interrupted = match interrupted.into_inner() {
        0 => None,
        sig => Some(sig),
    };
    let mstart = Instant::now();
    let findings = finish(cfg, classes, &per_seq, search_secs, interrupted.is_none());
    let minimize_secs = mstart.elapsed().as_secs_f64();
    let jobs = cfg.jobs.max(1);
    Report {
        target: cfg.target.name.clone(),
        seeds: vec![cfg.seed],
        budget_steps: match cfg.budget {
            Budget::Steps(n) => Some(n),
            Budget::Time(_) => None,
        },
        budget_secs: deadline.map(|d| d.as_secs_f64()),
        shards: vec![format!("{}/{}", cfg.shard.0, cfg.shard.1)],
        sequences: per_seq.len() as u64,
        steps,
        follow_steps,
        refused,
        search_secs,
        minimize_secs,
        jobs,
        steps_per_sec_per_job: if search_secs > 0.0 {
            (steps + follow_steps) as f64 / search_secs / jobs as f64
        } else {
            0.0
        },
        oracle: cfg.oracle.map(|_| otot),
        findings,
        interrupted,
    }
}

/// The sequence's operations, generated again (the oracle judges the whole
/// sequence the checker passed).
fn replay_ops(target: &Target, seed: u64, steps: u64, opts: GenOptions) -> Vec<scenario::ast::Op> {
    let mut ex = match exec::Exec::new(target) {
        Ok(e) => e,
        Err(_) => return Vec::new(),
    };
    let mut g = generate::Gen::new(seed, opts);
    let mut ops = Vec::new();
    for _ in 0..steps {
        let op = g.next(&ex);
        if ex.step(&op).is_err() {
            break;
        }
        ops.push(op);
    }
    ops
}

fn finding_class(f: &RawFinding) -> String {
    if f.chain.is_empty() {
        // An oracle disagreement: its class is in `error`.
        f.error.clone().unwrap_or_else(|| "oracle".into())
    } else {
        class_of(&f.chain)
    }
}

fn finish(
    cfg: &Config<'_>,
    classes: BTreeMap<String, ClassAcc>,
    per_seq: &BTreeMap<u64, u64>,
    search_secs: f64,
    minimize: bool,
) -> Vec<FindingReport> {
    let work: Vec<(String, ClassAcc)> = classes.into_iter().collect();
    let results: Mutex<Vec<Option<FindingReport>>> = Mutex::new(vec![None; work.len()]);
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..cfg.jobs.max(1).min(work.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((class, acc)) = work.get(i) else { break };
                    let r = report_class(cfg, class, acc, per_seq, search_secs, minimize);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}

fn report_class(
    cfg: &Config<'_>,
    class: &str,
    acc: &ClassAcc,
    per_seq: &BTreeMap<u64, u64>,
    search_secs: f64,
    minimize: bool,
) -> FindingReport {
    let (index, raw) = (&acc.best.0, &acc.best.1);
    let steps_to_first: u64 = per_seq.range(..*index).map(|(_, s)| s).sum::<u64>()
        + raw.first_step.min(raw.ops.len()) as u64;
    let oracle_class = raw.chain.is_empty();
    let test = |ops: &[scenario::ast::Op]| -> bool {
        if oracle_class {
            let clean = sequence::replay(&cfg.target, ops).is_ok_and(|(c, _)| c.is_empty());
            clean
                && cfg.oracle.is_some_and(|j| {
                    j.judge(&cfg.target, ops).is_ok_and(|v| v.classes.iter().any(|c| c == class))
                })
        } else {
            sequence::replay(&cfg.target, ops).is_ok_and(|(c, _)| c == raw.chain)
        }
    };
    let (ops, stats) = if cfg.minimize && minimize {
        minimize::minimize(&raw.ops, &test)
    } else {
        (raw.ops.clone(), minimize::MinStats::default())
    };
    let header = format!(
        "# Found by `{}`\n# (sequence {index}, sequence seed {:#018x}) after {search_secs:.1} s of search;\n\
         # minimized from {} operations to {} ({} candidates tried).\n# Finding: {class}\n",
        cfg.command,
        rng::sequence_seed(cfg.seed, *index),
        raw.ops.len(),
        ops.len(),
        stats.tests,
    );
    let (scenario, passes, fails) = if oracle_class {
        let semantics = match cfg.target.era {
            Some(_) => String::new(),
            None => format!(" --semantics {}", cfg.target.name),
        };
        let replay = format!("# Replay: `ptemu oracle{semantics} FILE` (as root) shows it.\n");
        let header = header.replacen("# Finding:", &format!("{replay}# Finding:"), 1);
        (format!("{header}{}", oracle_judge::plain_text(&cfg.target, &ops)), Vec::new(), Vec::new())
    } else {
        match scn::write(&cfg.target, &ops, &header) {
            Ok((text, v)) => {
                let note = format!(
                    "# ptemu run: passes under {}; fails under {}.\n",
                    list(&v.passes),
                    list(&v.fails)
                );
                (text.replacen("# Finding:", &format!("{note}# Finding:"), 1), v.passes, v.fails)
            }
            Err(e) => (format!("{header}# could not be written: {e}\n"), Vec::new(), Vec::new()),
        }
    };
    FindingReport {
        class: class.to_string(),
        count: acc.count,
        seed: cfg.seed,
        sequence: *index,
        sequence_seed: rng::sequence_seed(cfg.seed, *index),
        first_step: raw.first_step as u64,
        steps_to_first,
        secs_to_first: acc.secs,
        raw_ops: raw.ops.len() as u64,
        ops: ops.len() as u64,
        minimizer_tests: stats.tests,
        scenario,
        file: None,
        passes_under: passes,
        fails_under: fails,
        error: if oracle_class { None } else { raw.error.clone() },
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(" ") }
}

/// A report that cannot be merged with the others.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// Reports of different targets.
    #[error("reports of different targets: {0} and {1}")]
    Targets(String, String),
}

/// Combines shard reports: totals added, findings deduplicated by class
/// (keeping the shortest reproducer, then the lowest seed and sequence),
/// counts added.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    let mut out = first.clone();
    out.findings.clear();
    out.seeds.clear();
    out.shards.clear();
    out.sequences = 0;
    out.steps = 0;
    out.follow_steps = 0;
    out.refused = 0;
    out.search_secs = 0.0;
    out.minimize_secs = 0.0;
    out.jobs = 0;
    out.oracle = None;
    out.interrupted = None;
    let mut weighted_rate = 0.0;
    let mut by_class: BTreeMap<String, FindingReport> = BTreeMap::new();
    for r in reports {
        if r.target != first.target {
            return Err(MergeError::Targets(first.target.clone(), r.target.clone()));
        }
        for s in &r.seeds {
            if !out.seeds.contains(s) {
                out.seeds.push(*s);
            }
        }
        out.shards.extend(r.shards.iter().cloned());
        out.sequences += r.sequences;
        out.steps += r.steps;
        out.follow_steps += r.follow_steps;
        out.refused += r.refused;
        out.interrupted = out.interrupted.or(r.interrupted);
        out.search_secs = out.search_secs.max(r.search_secs);
        out.minimize_secs += r.minimize_secs;
        out.jobs += r.jobs;
        weighted_rate += r.steps_per_sec_per_job * r.jobs as f64;
        out.oracle = match (out.oracle, r.oracle) {
            (None, o) | (o, None) => o,
            (Some(a), Some(b)) => Some(OracleTotals {
                sequences: a.sequences + b.sequences,
                steps_compared: a.steps_compared + b.steps_compared,
                fields_compared: a.fields_compared + b.fields_compared,
                errors: a.errors + b.errors,
            }),
        };
        for f in &r.findings {
            match by_class.get_mut(&f.class) {
                None => {
                    by_class.insert(f.class.clone(), f.clone());
                }
                Some(kept) => {
                    let count = kept.count + f.count;
                    let secs = kept.secs_to_first.min(f.secs_to_first);
                    if (f.ops, f.seed, f.sequence) < (kept.ops, kept.seed, kept.sequence) {
                        *kept = f.clone();
                    }
                    kept.count = count;
                    kept.secs_to_first = secs;
                }
            }
        }
    }
    out.seeds.sort_unstable();
    out.steps_per_sec_per_job = if out.jobs > 0 { weighted_rate / out.jobs as f64 } else { 0.0 };
    out.findings = by_class.into_values().collect();
    Ok(out)
}
