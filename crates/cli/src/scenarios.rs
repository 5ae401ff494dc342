//! `ptemu run`, `ptemu check` and `ptemu dump`: the scenario subcommands.
//!
//! Every file is parsed before anything runs, so a typo in the last file
//! costs no time; a parse error prints `file:line:col: ...` and exits 2.
//! `run` exits 1 when any expectation of any era fails.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use scenario::{FileReport, Scenario, parse_file, render_run, run_era, run_scenario};

/// Arguments of `ptemu run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files (.scn).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Run under this era only, whatever the files' `era`/`eras` say.
    #[arg(long, value_name = "ERA")]
    era: Option<String>,
    /// Print a machine-readable JSON report instead of the step log.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report stepping through every run
    /// (pictures of the rmap graph and the page tables at every step).
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// The two eras the report shows side by side at first (default
    /// 2.6.34-rc3,2.6.34 where a file runs both).
    #[arg(long, value_name = "LEFT,RIGHT", requires = "html")]
    compare: Option<String>,
}

/// Arguments of `ptemu check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Scenario files (.scn) to parse.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Arguments of `ptemu dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The scenario file.
    file: PathBuf,
    /// Show the state after this many operations (0: before the first);
    /// default: at the end.
    #[arg(long, value_name = "N")]
    step: Option<usize>,
    /// The era to run under (default: the file's first era).
    #[arg(long, value_name = "ERA")]
    era: Option<String>,
    /// Write the rmap picture of that step as SVG (laid out by ptemu).
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Write that step as Graphviz DOT.
    #[arg(long, value_name = "OUT.dot")]
    dot: Option<PathBuf>,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("ptemu: {msg}");
    ExitCode::from(2)
}

fn check_era(era: Option<&String>) -> Result<(), ExitCode> {
    match era {
        Some(e) if !scenario::era::is_known_era(e) => {
            Err(usage(&format!("unknown era {e:?} (known: {})", scenario::era::known_names())))
        }
        _ => Ok(()),
    }
}

/// Parses every file; on the first error prints it and returns exit status 2.
fn parse_all(files: &[PathBuf]) -> Result<Vec<Scenario>, ExitCode> {
    let mut out = Vec::new();
    let mut bad = false;
    for f in files {
        match parse_file(f) {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad { Err(ExitCode::from(2)) } else { Ok(out) }
}

/// `ptemu run FILE... [--era E] [--json]`.
pub fn run(args: RunArgs) -> ExitCode {
    if let Err(code) = check_era(args.era.as_ref()) {
        return code;
    }
    let scenarios = match parse_all(&args.files) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut reports = Vec::new();
    if let Some(out) = &args.html {
        let compare = match crate::pictures::compare_eras(args.compare.as_deref()) {
            Ok(c) => c,
            Err(e) => return usage(&e),
        };
        let (runs, pics) = crate::pictures::run_with_snapshots(&scenarios, args.era.as_deref());
        match crate::pictures::write_html(out, &pics, &compare) {
            Ok(bytes) => eprintln!("ptemu: wrote {} ({bytes} bytes)", out.display()),
            Err(e) => return usage(&e),
        }
        for (file, runs) in runs {
            reports.push(FileReport::new(&file, runs));
        }
    } else {
        for scn in &scenarios {
            let runs = run_scenario(scn, args.era.as_deref());
            reports.push(FileReport::new(&scn.file, runs));
        }
    }
    let passed = reports.iter().all(|r| r.passed);
    let mut out = std::io::stdout().lock();
    if args.json {
        match serde_json::to_string_pretty(&reports) {
            Ok(j) => {
                let _ = writeln!(out, "{j}");
            }
            Err(e) => return usage(&format!("cannot encode the report: {e}")),
        }
    } else {
        for r in &reports {
            for run in &r.runs {
                let _ = writeln!(out, "{}", render_run(&r.file, run));
            }
        }
        let total: usize = reports.iter().map(|r| r.runs.len()).sum();
        let failed: usize =
            reports.iter().map(|r| r.runs.iter().filter(|x| !x.passed()).count()).sum();
        let _ = writeln!(
            out,
            "{} scenario run(s) over {} file(s): {} passed, {} failed",
            total,
            reports.len(),
            total - failed,
            failed
        );
    }
    if passed { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `ptemu check FILE...`: parse only.
pub fn check(args: CheckArgs) -> ExitCode {
    match parse_all(&args.files) {
        Ok(scenarios) => {
            for s in &scenarios {
                let ops = s
                    .steps
                    .iter()
                    .filter(|st| matches!(st.kind, scenario::ast::StepKind::Op(_)))
                    .count();
                let eras: Vec<&str> = s.setup.eras.iter().map(|e| e.value.as_str()).collect();
                println!(
                    "{}: ok ({} operations, {} expectations; eras {})",
                    s.file,
                    ops,
                    s.steps.len() - ops,
                    eras.join(" ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `ptemu dump FILE [--step N] [--era E]`.
pub fn dump(args: DumpArgs) -> ExitCode {
    if let Err(code) = check_era(args.era.as_ref()) {
        return code;
    }
    let scn = match parse_all(std::slice::from_ref(&args.file)) {
        Ok(mut s) => match s.pop() {
            Some(s) => s,
            None => return usage("no scenario"),
        },
        Err(code) => return code,
    };
    let ops: Vec<&scenario::ast::Step> =
        scn.steps.iter().filter(|st| matches!(st.kind, scenario::ast::StepKind::Op(_))).collect();
    if let Some(n) = args.step {
        if n > ops.len() {
            return usage(&format!("--step {n}: {} has only {} operations", scn.file, ops.len()));
        }
    }
    let era = match args.era.clone().or_else(|| scn.setup.eras.first().map(|e| e.value.clone())) {
        Some(e) => e,
        None => return usage("no era"),
    };
    if args.svg.is_some() || args.dot.is_some() {
        let step = args.step.unwrap_or(ops.len());
        return crate::pictures::write_step_pictures(
            &scn,
            &era,
            step,
            args.svg.as_deref(),
            args.dot.as_deref(),
        );
    }
    let (run, machine) = run_era(&scn, &era, Some(args.step.unwrap_or(usize::MAX)));
    let Some(machine) = machine else {
        let why = run.stopped.map_or_else(String::new, |f| f.message);
        eprintln!("{}: [{era}] {why}", scn.file);
        return ExitCode::from(1);
    };
    let done = run.steps.iter().filter(|s| s.op_index.is_some()).count();
    let mut out = std::io::stdout().lock();
    let _ = match args.step {
        Some(0) => writeln!(out, "{} [era {era}]: state before the first operation", scn.file),
        _ => match ops.get(done.wrapping_sub(1)) {
            Some(st) => writeln!(
                out,
                "{} [era {era}]: state after operation {done} (line {}: {})",
                scn.file, st.pos.line, st.text
            ),
            None => writeln!(out, "{} [era {era}]: state before the first operation", scn.file),
        },
    };
    if let Some(f) = &run.stopped {
        let _ = writeln!(out, "note: the run stopped early at line {}: {}", f.line, f.message);
    }
    match machine.dump(None) {
        Ok(text) => {
            let _ = write!(out, "{text}");
            let _ = write!(out, "{}", walks(&machine));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: [{era}] dump failed: {e}", scn.file);
            ExitCode::from(1)
        }
    }
}

/// The upper levels of every process's tables, which mm's dump lists by
/// frame only: for the first page of each VMA, each entry the walk reads
/// from CR3 down, raw and decoded.
fn walks(m: &mm::Machine) -> String {
    let mut s = String::from("walks (first page of each VMA):\n");
    for pid in m.processes() {
        let Ok(vmas) = m.vmas(pid) else { continue };
        for v in vmas {
            let _ = writeln!(s, "  process {pid} {:#x}:", v.start);
            match m.walk_entries(pid, v.start) {
                Ok(entries) => {
                    for w in entries {
                        let _ = writeln!(
                            s,
                            "    L{} table {} [{:3}] {:#018x} {}{}",
                            w.level as u8,
                            w.table,
                            w.index,
                            w.raw,
                            w.kind.name(),
                            w.kind.pfn().map_or(String::new(), |p| format!(" frame {p}"))
                        );
                    }
                }
                Err(e) => {
                    let _ = writeln!(s, "    walk failed: {e}");
                }
            }
        }
    }
    s
}
