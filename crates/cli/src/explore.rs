//! `ptemu explore`: random search with the checker (and optionally the
//! host kernel) as judges, minimized findings written as scenario files
//! (crates/explore, docs/explore.md); and `ptemu explore merge`.
//!
//! Exit status: 0 when the search found nothing, 1 when it found something,
//! 2 on a usage error.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use explore::{Budget, Config, OracleJudge, Progress, Report, Target};
use indicatif::{ProgressBar, ProgressStyle};
use oracle::WorkerCommand;

/// Arguments of `ptemu explore`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExploreArgs {
    #[command(subcommand)]
    command: Option<ExploreCommand>,
    /// Era to search, or a custom set: ERA+switch=value+... (docs/eras.md
    /// switch names, kebab-case values), e.g. seed+clone_order=preserved.
    #[arg(long)]
    era: Option<String>,
    /// Run seed: sequence i is seeded from (seed, i).
    #[arg(long, default_value = "1")]
    seed: String,
    /// Budget: generated operations in all (default 100000).
    #[arg(long, conflicts_with = "time")]
    steps: Option<String>,
    /// Budget: wall-clock time (90, 30s, 5m, 2h).
    #[arg(long)]
    time: Option<String>,
    /// Threads (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only the sequences of shard I of N (I in 0..N).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Write each finding's minimized scenario (and report.json) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also judge by the host kernel (root; era 6.18, or a set built from
    /// it to ask whether the kernel agrees with a changed rule): every
    /// disagreement with `ptemu oracle` is a finding.
    #[arg(long)]
    oracle: bool,
    /// Operations followed after a first violation, to see what it becomes.
    #[arg(long, default_value_t = explore::FOLLOW)]
    follow: u64,
    /// Operations per sequence.
    #[arg(long)]
    sequence_steps: Option<u64>,
    /// Report findings as found, without minimizing.
    #[arg(long)]
    no_minimize: bool,
}

#[derive(clap::Subcommand, Debug)]
enum ExploreCommand {
    /// Combine JSON reports (e.g. of shards) and deduplicate their findings.
    Merge {
        /// Reports written by `ptemu explore --json` or `--out`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Write the merged findings' scenarios (and report.json) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ptemu explore: {msg}");
    ExitCode::from(2)
}

fn number(s: &str) -> Option<u64> {
    let t = s.replace('_', "");
    match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => {
            if let Some((m, e)) = t.split_once('e') {
                let m: u64 = m.parse().ok()?;
                let e: u32 = e.parse().ok()?;
                m.checked_mul(10u64.checked_pow(e)?)
            } else {
                t.parse().ok()
            }
        }
    }
}

fn duration(s: &str) -> Option<Duration> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

fn shard(s: &str) -> Option<(u64, u64)> {
    let (i, n) = s.split_once('/')?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (n > 0 && i < n).then_some((i, n))
}

fn slug(class: &str) -> String {
    let mut out = String::new();
    for c in class.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn write_out(dir: &Path, report: &mut Report) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for f in &mut report.findings {
        let name = format!("{}--{}.scn", slug(&report.target), slug(&f.class));
        let path = dir.join(name);
        std::fs::write(&path, &f.scenario).map_err(|e| format!("{}: {e}", path.display()))?;
        f.file = Some(path.display().to_string());
    }
    let path = dir.join("report.json");
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(&path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn print_text(r: &Report) {
    println!(
        "ptemu explore: {} seed(s) {:?}: {} sequences, {} steps (+{} follow-up) in {:.1} s, {:.0} steps/s per thread ({} threads)",
        r.target,
        r.seeds,
        r.sequences,
        r.steps,
        r.follow_steps,
        r.search_secs,
        r.steps_per_sec_per_job,
        r.jobs
    );
    if let Some(o) = &r.oracle {
        println!(
            "oracle: {} sequences on the host, {} steps and {} fields compared, {} errors",
            o.sequences, o.steps_compared, o.fields_compared, o.errors
        );
    }
    if r.findings.is_empty() {
        println!("no findings");
    }
    for f in &r.findings {
        println!(
            "finding: {}\n  {} sequence(s); first: sequence {} at step {} ({} search steps, {:.2} s); reproducer {} ops (from {}){}",
            f.class,
            f.count,
            f.sequence,
            f.first_step,
            f.steps_to_first,
            f.secs_to_first,
            f.ops,
            f.raw_ops,
            f.file.as_ref().map(|p| format!(" -> {p}")).unwrap_or_default()
        );
        if !f.passes_under.is_empty() || !f.fails_under.is_empty() {
            println!(
                "  ptemu run passes under: {}; fails under: {}",
                f.passes_under.join(" "),
                f.fails_under.join(" ")
            );
        }
        if let Some(e) = &f.error {
            println!("  {e}");
        }
    }
}

fn finish(mut report: Report, out: Option<&Path>, json: bool) -> ExitCode {
    if let Some(dir) = out {
        if let Err(e) = write_out(dir, &mut report) {
            return usage(e);
        }
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return usage(e),
        }
    } else {
        print_text(&report);
    }
    if let Some(sig) = report.interrupted {
        eprintln!(
            "ptemu explore: interrupted by signal {sig}: the report covers the sequences run \
             until then, its findings unminimized"
        );
        return ExitCode::from(128u8.saturating_add(sig as u8));
    }
    if report.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn merge(files: &[PathBuf], json: bool, out: Option<&Path>) -> ExitCode {
    let mut reports = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => return usage(format!("{}: {e}", f.display())),
        };
        match serde_json::from_str::<Report>(&text) {
            Ok(r) => reports.push(r),
            Err(e) => {
                return usage(format!(
                    "{}:{}:{}: not an explore report: {e}",
                    f.display(),
                    e.line(),
                    e.column()
                ));
            }
        }
    }
    match explore::merge(&reports) {
        Ok(r) => finish(r, out, json),
        Err(e) => usage(e),
    }
}

/// Runs `ptemu explore`.
pub fn run(args: ExploreArgs) -> ExitCode {
    if let Some(ExploreCommand::Merge { files, json, out }) = &args.command {
        return merge(files, *json, out.as_deref());
    }
    let Some(era) = &args.era else { return usage("--era is required (or `explore merge`)") };
    let target = match Target::parse(era) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let Some(seed) = number(&args.seed) else {
        return usage(format!("--seed {:?} is not a number", args.seed));
    };
    let budget = match (&args.steps, &args.time) {
        (_, Some(t)) => match duration(t) {
            Some(d) => Budget::Time(d),
            None => return usage(format!("--time {t:?} is not a duration (90, 30s, 5m, 2h)")),
        },
        (Some(s), None) => match number(s) {
            Some(n) if n > 0 => Budget::Steps(n),
            _ => return usage(format!("--steps {s:?} is not a positive number")),
        },
        (None, None) => Budget::Steps(100_000),
    };
    let shard = match &args.shard {
        Some(s) => match shard(s) {
            Some(x) => x,
            None => return usage(format!("--shard {s:?} is not I/N with I < N")),
        },
        None => (0, 1),
    };
    let jobs =
        args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        return usage("--jobs must be at least 1");
    }
    let judge = if args.oracle {
        if target.semantics_base() != rmap::Era::V6_18.name() {
            return usage(
                "--oracle compares with the host kernel: it needs --era 6.18 \
                 or a set built from it (6.18+switch=value)",
            );
        }
        if let Err(e) = oracle::host_available() {
            return usage(e);
        }
        let program = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                return usage(format!("cannot find the ptemu executable to run workers: {e}"));
            }
        };
        Some(OracleJudge::new(WorkerCommand {
            program,
            args: vec![OsString::from("oracle-worker")],
        }))
    } else {
        None
    };
    let sequence_steps = args.sequence_steps.unwrap_or(if args.oracle {
        explore::ORACLE_SEQUENCE_STEPS
    } else {
        explore::SEQUENCE_STEPS
    });
    if sequence_steps == 0 {
        return usage("--sequence-steps must be at least 1");
    }
    let mut command = format!("ptemu explore --era {era} --seed {seed}");
    match budget {
        Budget::Steps(n) => command.push_str(&format!(" --steps {n}")),
        Budget::Time(d) => command.push_str(&format!(" --time {}s", d.as_secs_f64())),
    }
    if args.shard.is_some() {
        command.push_str(&format!(" --shard {}/{}", shard.0, shard.1));
    }
    if args.oracle {
        command.push_str(" --oracle");
    }
    let cfg = Config {
        target,
        seed,
        budget,
        jobs,
        shard,
        follow: args.follow,
        sequence_steps,
        oracle: judge.as_ref(),
        minimize: !args.no_minimize,
        command,
    };
    let report = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(match budget {
            Budget::Steps(_) => 1000,
            Budget::Time(d) => d.as_millis() as u64,
        });
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let r = explore::explore(&cfg, &|p: Progress| {
            bar.set_position(fraction(&p, budget));
            bar.set_message(line(&p));
        });
        bar.finish_and_clear();
        r
    } else {
        let last = std::sync::Mutex::new(std::time::Instant::now());
        explore::explore(&cfg, &|p: Progress| {
            let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
            if p.minimizing || l.elapsed() >= Duration::from_secs(10) {
                eprintln!("ptemu explore: {}", line(&p));
                *l = std::time::Instant::now();
            }
        })
    };
    finish(report, args.out.as_deref(), args.json)
}

fn fraction(p: &Progress, budget: Budget) -> u64 {
    match budget {
        Budget::Steps(_) => {
            p.planned_steps.map_or(0, |t| (p.steps.min(t) * 1000).checked_div(t).unwrap_or(0))
        }
        Budget::Time(d) => p.elapsed.min(d).as_millis() as u64,
    }
}

fn line(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64();
    let rate = if secs > 0.0 { p.steps as f64 / secs } else { 0.0 };
    let left = match (p.deadline, p.planned_steps) {
        (Some(d), _) => d.saturating_sub(p.elapsed).as_secs_f64(),
        (None, Some(t)) if rate > 0.0 => t.saturating_sub(p.steps) as f64 / rate,
        _ => 0.0,
    };
    if p.minimizing {
        format!(
            "{} sequences, {} steps, {} finding classes; minimizing",
            p.sequences, p.steps, p.classes
        )
    } else {
        format!(
            "{:.0} steps/s, {} sequences, {} steps, {} finding classes, {:.0} s left",
            rate, p.sequences, p.steps, p.classes, left
        )
    }
}
