//! `ptemu`: the command-line front end.
//!
//! Each subcommand lives in its own module; this file only parses the
//! command line and dispatches. Exit status: 0 success, 1 a check or
//! expectation failed, 2 usage or input error.
#![forbid(unsafe_code)]

mod pte;

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
    }
}
