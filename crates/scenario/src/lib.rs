//! The ptemu scenario language: parse a scenario file, run it under one or
//! more kernel eras against the emulated machine, check its expectations and
//! report what happened step by step.
//!
//! The language is specified in shared/design/scenario-language.md (a
//! contract) and documented with examples in docs/fixtures.md. This crate
//! drives the emulator only through `mm`'s public API: it implements no
//! page-table, fault, fork or rmap semantics of its own.
#![forbid(unsafe_code)]

pub mod ast;
pub mod era;
pub mod error;
pub mod lexer;
pub mod limits;
pub mod parser;
pub mod report;
pub mod run;

pub use ast::Scenario;
pub use error::Error;
pub use parser::{parse_bytes, parse_file, parse_str};
pub use report::{FileReport, failure_lines, render_run};
pub use run::{EraRun, Failure, Observation, run_era, run_era_observed, run_scenario};
