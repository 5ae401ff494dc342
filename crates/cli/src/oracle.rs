//! `ptemu oracle FILE... [--json]`: each scenario on the host kernel and on
//! ptemu's 6.18 era, compared step by step (crates/oracle, docs/oracle.md).
//!
//! Also the hidden `ptemu oracle-worker`: the process image the oracle runs
//! as each scenario process on the host.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use oracle::{OracleError, Summary, WorkerCommand};

/// Arguments of `ptemu oracle`.
#[derive(clap::Args, Debug)]
pub struct OracleArgs {
    /// Scenario files (fixtures/*.scn).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print a machine-readable report (JSON) instead of text.
    #[arg(long)]
    json: bool,
    /// Run ptemu's side under a set built from 6.18 with switches changed
    /// (`6.18+merge_refuses_fork_children=no`, names as for `ptemu
    /// explore --era`), to see where the host kernel disagrees with the
    /// change. Default: 6.18 itself.
    #[arg(long, value_name = "6.18+SWITCH=VALUE")]
    semantics: Option<String>,
}

fn fail(e: &OracleError) -> ExitCode {
    eprintln!("ptemu oracle: {e}");
    match e {
        OracleError::Interrupted(sig) => ExitCode::from(128u8.saturating_add(*sig as u8)),
        _ => ExitCode::from(2),
    }
}

/// Runs `ptemu oracle`.
pub fn run(args: OracleArgs) -> ExitCode {
    let config = match &args.semantics {
        None => mm::MachineConfig::new(oracle::emulator::ORACLE_ERA),
        Some(spec) => match explore::Target::parse(spec) {
            Ok(t) if t.semantics_base() == oracle::emulator::ORACLE_ERA.name() => {
                t.machine_config()
            }
            Ok(_) => {
                eprintln!(
                    "ptemu oracle: --semantics {spec:?}: the host kernel is 6.18's oracle; \
                     the set must be built from 6.18"
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("ptemu oracle: --semantics {spec:?}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    // Every file is parsed before the machine is touched.
    let mut plans = Vec::new();
    for f in &args.files {
        match oracle::load(f) {
            Ok(p) => plans.push(p),
            Err(e) => return fail(&e),
        }
    }
    if let Err(e) = oracle::host_available() {
        return fail(&e);
    }
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ptemu oracle: cannot find the ptemu executable to run workers: {e}");
            return ExitCode::from(2);
        }
    };
    let worker = WorkerCommand { program, args: vec![OsString::from("oracle-worker")] };
    let mut reports = Vec::new();
    for plan in &plans {
        match oracle::run_plan_as(plan, &worker, config.clone()) {
            Ok(r) => reports.push(r),
            Err(e) => return fail(&e),
        }
    }
    let failed = reports.iter().any(|r| !r.disagreements.is_empty());
    if args.json {
        match serde_json::to_string_pretty(&Summary::new(reports)) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(&OracleError::Report(e.to_string())),
        }
    } else {
        print!("{}", oracle::render_text(&reports));
    }
    ExitCode::from(u8::from(failed))
}

/// Runs the hidden `ptemu oracle-worker`; returns only when started by hand.
pub fn worker() -> ExitCode {
    let why = oracle::worker_main();
    eprintln!("ptemu oracle-worker: {why}");
    ExitCode::from(2)
}
