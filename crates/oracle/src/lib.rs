//! `ptemu oracle`: runs a scenario on the host's Linux kernel, step by step,
//! and on ptemu under era 6.18, and compares what /proc/PID/pagemap,
//! /proc/kpagecount and /proc/kpageflags say after every step.
//!
//! - [`plan`] reduces a parsed scenario to operations and the pages to read.
//! - [`host`] performs them with real processes (a worker per scenario
//!   process), a swap file and memory cgroups it creates and always removes.
//! - [`emulator`] performs them on [`mm::Machine`].
//! - [`observe`] and [`compare`] turn both sides' raw entries into fields
//!   (frames and swap slots as "same as" classes) and list every
//!   disagreement with the agreement over the fields compared.
//!
//! What it does not do: compare what the kernel does not show (PTE bits,
//! anon_vmas, refcounts), or fake a step the kernel cannot do exactly: such
//! a step is reported and left out of the comparison.
#![deny(unsafe_code)]

pub mod compare;
pub mod emulator;
pub mod error;
#[allow(unsafe_code)]
pub mod host;
pub mod observe;
pub mod plan;

use std::path::Path;

pub use compare::{FileReport, Summary, render_text};
pub use error::OracleError;
pub use host::{WorkerCommand, host_available, worker_main};
pub use plan::Plan;

/// Parses a scenario file and reduces it to its plan (no side effects).
pub fn load(path: &Path) -> Result<Plan, OracleError> {
    let sc = scenario::parse_file(path)?;
    Plan::from_scenario(&sc)
}

/// Runs a plan on ptemu and on the host kernel and compares them.
pub fn run_plan(plan: &Plan, worker: &WorkerCommand) -> Result<FileReport, OracleError> {
    run_plan_as(plan, worker, mm::MachineConfig::new(emulator::ORACLE_ERA))
}

/// [`run_plan`] with ptemu's side under `config`'s semantics instead of
/// 6.18's (the plan's memory and swap still apply): a custom set built from
/// 6.18 with one rule changed, to ask whether the host kernel agrees with
/// the change. Every disagreement is then that rule's visible effect.
pub fn run_plan_as(
    plan: &Plan,
    worker: &WorkerCommand,
    config: mm::MachineConfig,
) -> Result<FileReport, OracleError> {
    let ptemu = emulator::run_ptemu_as(plan, config)?;
    let kernel = host::run_kernel(plan, worker)?;
    Ok(compare::compare(plan, &kernel, &ptemu))
}
