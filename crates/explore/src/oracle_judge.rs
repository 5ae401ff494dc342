//! The kernel oracle as a judge (`--oracle`): a sequence the checker finds
//! nothing in is run on the host kernel and on ptemu's 6.18 era (or a
//! custom set built from 6.18) by crates/oracle, and every field on which
//! they disagree is a finding of class `oracle: FIELD after VERB`.
//!
//! The oracle takes a machine-wide lock and real processes; runs are
//! serialized here so parallel search threads wait for each other instead
//! of for the lock.

use std::sync::Mutex;

use oracle::{OracleError, Plan, WorkerCommand};
use scenario::ast::Op;

use crate::Target;
use crate::render::{op_text, size_text};

/// What the oracle said about one sequence.
#[derive(Clone, Debug, Default)]
pub struct OracleVerdict {
    /// Operations compared on both sides.
    pub steps_compared: u64,
    /// Fields compared.
    pub fields_compared: u64,
    /// Distinct disagreement classes, in step order.
    pub classes: Vec<String>,
}

/// Why the oracle gave no verdict on a sequence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JudgeError {
    /// SIGINT, SIGTERM or SIGHUP arrived while the host ran the sequence
    /// (the oracle catches them to take its swap files and cgroups down):
    /// the search must stop, not go on to the next sequence.
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
    /// The sequence could not be run on one side (counted, the search goes on).
    #[error("{0}")]
    Failed(String),
}

/// The oracle and the lock that serializes it.
pub struct OracleJudge {
    worker: WorkerCommand,
    lock: Mutex<()>,
}

/// The plain scenario of `ops` (no expectations) under `target`.
pub fn plain_text(target: &Target, ops: &[Op]) -> String {
    let mut s = format!(
        "era {}\nmemory {}\nswap {}\n",
        target.semantics_base(),
        size_text(target.memory),
        size_text(target.swap)
    );
    for o in ops {
        s.push_str(&op_text(o));
        s.push('\n');
    }
    s
}

impl OracleJudge {
    /// A judge whose host processes run `worker`.
    pub fn new(worker: WorkerCommand) -> Self {
        OracleJudge { worker, lock: Mutex::new(()) }
    }

    /// Runs `ops` on the host and on ptemu and compares them.
    pub fn judge(&self, target: &Target, ops: &[Op]) -> Result<OracleVerdict, JudgeError> {
        let failed = |e: &dyn std::fmt::Display| JudgeError::Failed(e.to_string());
        let text = plain_text(target, ops);
        let sc = scenario::parse_str("explore.scn", &text).map_err(|e| failed(&e))?;
        let plan = Plan::from_scenario(&sc).map_err(|e| failed(&e))?;
        let report = {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            oracle::run_plan_as(&plan, &self.worker, target.machine_config()).map_err(
                |e| match e {
                    OracleError::Interrupted(sig) => JudgeError::Interrupted(sig),
                    e => failed(&e),
                },
            )?
        };
        let mut classes: Vec<String> = Vec::new();
        for d in &report.disagreements {
            let verb = d.op.split_whitespace().find(|w| {
                ["mmap", "munmap", "mprotect", "madvise", "write", "read", "fork", "exit", "execve"]
                    .contains(w)
            });
            let verb = verb.unwrap_or_else(|| d.op.split_whitespace().next().unwrap_or("?"));
            let c = format!("oracle: {} after {verb}", d.field.as_str());
            if !classes.contains(&c) {
                classes.push(c);
            }
        }
        Ok(OracleVerdict {
            steps_compared: report.steps_compared as u64,
            fields_compared: report.fields_compared,
            classes,
        })
    }
}
