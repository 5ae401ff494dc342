//! Rendering runs for people (a step log) and for programs (JSON).
//!
//! The step log shows, after each operation, where every page the scenario
//! touches has its `page->mapping` and which anon_vmas are alive, so that a
//! reader can follow the seed's bug step by step.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::EraRun;

/// A scenario file's runs, for the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The file.
    pub file: String,
    /// Whether every era's run passed.
    pub passed: bool,
    /// One run per era.
    pub runs: Vec<EraRun>,
}

impl FileReport {
    /// Wraps the runs of `file`.
    pub fn new(file: &str, runs: Vec<EraRun>) -> Self {
        let passed = runs.iter().all(EraRun::passed);
        Self { file: file.to_string(), passed, runs }
    }
}

/// The step log of one era's run of `file`.
pub fn render_run(file: &str, run: &EraRun) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "== {file} [era {}]", run.era);
    let mut last_state = None;
    for step in &run.steps {
        let indent = if step.op_index.is_some() { "" } else { "    " };
        let mark = if step.failed { "!!" } else { "  " };
        let _ = writeln!(
            s,
            "{mark}{:>4}  {indent}{:<54} {}",
            format!("L{}", step.pos.line),
            step.text,
            step.result
        );
        for v in &step.new_violations {
            let _ = writeln!(s, "          new violation: {v}");
        }
        if let Some(out) = &step.output {
            for line in out.lines() {
                let _ = writeln!(s, "          | {line}");
            }
        }
        if let Some(state) = &step.state {
            if last_state.as_ref() != Some(state) {
                for p in &state.pages {
                    let _ = writeln!(
                        s,
                        "          page {:#x}: mapping={} index={:#x} mapcount={}{} mapped by [{}]",
                        p.pfn,
                        p.mapping.as_deref().unwrap_or("-"),
                        p.index,
                        p.mapcount,
                        if p.swapcache { " swapcache" } else { "" },
                        p.mapped_by.join(" ")
                    );
                }
                if state.omitted > 0 {
                    let _ = writeln!(s, "          ({} more addresses not shown)", state.omitted);
                }
                let _ = writeln!(s, "          live anon_vmas: [{}]", state.anon_vmas.join(" "));
                last_state = Some(state.clone());
            }
        }
    }
    for f in &run.failures {
        let _ = writeln!(s, "FAIL {file}:{}:{}: [{}] {}", f.line, f.col, run.era, f.message);
    }
    if let Some(f) = &run.stopped {
        let _ =
            writeln!(s, "FAIL {file}:{}:{}: [{}] stopped: {}", f.line, f.col, run.era, f.message);
    }
    let _ = writeln!(
        s,
        "{} [era {}]: {} expectations held, {} failed, {} for other eras{}",
        if run.passed() { "PASS" } else { "FAIL" },
        run.era,
        run.held,
        run.failures.len(),
        run.skipped,
        if run.stopped.is_some() { ", run stopped early" } else { "" }
    );
    s
}

/// One line per failure, `file:line:col: [era] message`, for test output.
pub fn failure_lines(file: &str, run: &EraRun) -> Vec<String> {
    let mut out: Vec<String> = run
        .failures
        .iter()
        .map(|f| format!("{file}:{}:{}: [{}] {}", f.line, f.col, run.era, f.message))
        .collect();
    if let Some(f) = &run.stopped {
        out.push(format!("{file}:{}:{}: [{}] stopped: {}", f.line, f.col, run.era, f.message));
    }
    out
}
