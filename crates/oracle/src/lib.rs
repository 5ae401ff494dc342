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
    let ptemu = emulator::run_ptemu(plan)?;
    let kernel = host::run_kernel(plan, worker)?;
    Ok(compare::compare(plan, &kernel, &ptemu))
}
