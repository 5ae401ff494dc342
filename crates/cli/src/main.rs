//! `ptemu`: the command-line front end.
//!
//! Each subcommand lives in its own module; this file only parses the
//! command line and dispatches. Exit status: 0 success, 1 a check or
//! expectation failed, 2 usage or input error.
#![forbid(unsafe_code)]

mod explore;
mod hwcheck;
mod oracle;
mod pictures;
mod pte;
mod scenarios;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ptemu: x86-64 page tables and Linux anonymous memory, emulated.
#[derive(Parser, Debug)]
#[command(name = "ptemu", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build and explain raw page-table entries (swap PTEs, decode).
    Pte(pte::PteArgs),
    /// Compare ptemu's page walk with the CPU's on random tables (needs /dev/kvm).
    Hwcheck(hwcheck::HwcheckArgs),
    /// Run scenario files under their eras and check their expectations.
    Run(scenarios::RunArgs),
    /// Parse scenario files without running them.
    Check(scenarios::CheckArgs),
    /// Print a scenario's machine state at its end or after operation N.
    Dump(scenarios::DumpArgs),
    /// Run scenarios on the host Linux kernel and compare every step with ptemu's 6.18 era.
    Oracle(oracle::OracleArgs),
    /// Search random operation sequences for violations and oopses; write minimized scenarios.
    Explore(explore::ExploreArgs),
    /// Internal: a scenario process of `ptemu oracle` (started by it, never by hand).
    #[command(hide = true)]
    OracleWorker,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Pte(args) => pte::run(args),
        Command::Run(args) => scenarios::run(args),
        Command::Check(args) => scenarios::check(args),
        Command::Dump(args) => scenarios::dump(args),
        Command::Hwcheck(args) => hwcheck::run(args),
        Command::Oracle(args) => oracle::run(args),
        Command::Explore(args) => explore::run(args),
        Command::OracleWorker => oracle::worker(),
    }
}
