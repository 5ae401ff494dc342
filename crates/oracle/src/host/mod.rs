//! The host side: the scenario run on the real kernel, with real processes,
//! a real swap file and a memory cgroup per allocating step.
//!
//! This is the one module of the crate allowed `unsafe`: it forks, execs,
//! maps memory at fixed addresses, performs raw loads and stores, passes
//! descriptors and calls swapon. Every block says why it is sound.

mod channel;
mod controller;
mod machine;
mod procfs;
mod worker;

pub use controller::{PAUSE_ENV, WorkerCommand, run_kernel};
pub use worker::worker_main;

/// Whether this host can run the oracle; the reason when it cannot.
pub fn host_available() -> Result<(), crate::error::OracleError> {
    machine::check_host()
}
