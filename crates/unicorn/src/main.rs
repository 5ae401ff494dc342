//! `ptemu-unicorn`: Unicorn executes x86-64 code with ptemu as its MMU and
//! kernel (`run`), and QEMU's page walker is checked against ptemu's
//! (`check`). GPL-2.0-or-later, as it links Unicorn; the `ptemu` binary
//! does not. Exit status: 0 success, 1 a check failed or the guest was
//! killed, 2 usage or input error.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mm::Era;
use ptemu_unicorn::{EmuConfig, Emulator, Exit, Image, image};

/// ptemu-unicorn: real x86-64 code on ptemu's page tables and Linux mm.
#[derive(Parser, Debug)]
#[command(name = "ptemu-unicorn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a guest program (a flat image, or a C file built with guest/rt.h).
    Run(RunArgs),
    /// Compare QEMU's page walker with ptemu's on random tables and accesses.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Seed of the random tables and accesses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of accesses.
    #[arg(long, default_value_t = 10_000)]
    accesses: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Do not also run the accesses on the CPU through KVM.
    #[arg(long)]
    no_kvm: bool,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// A `.c` source (built with the machine's cc) or a flat `.bin` image.
    program: PathBuf,
    /// The kernel era.
    #[arg(long, default_value = "6.18")]
    era: String,
    /// Physical memory, MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: u64,
    /// Swap, MiB.
    #[arg(long, default_value_t = 64)]
    swap_mib: u64,
    /// Run the invariant checker after every fault too (it always runs
    /// after every syscall and exit).
    #[arg(long)]
    check_every_fault: bool,
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
        Command::Run(a) => run(a),
        Command::Check(a) => check(a),
    }
}

fn run(a: RunArgs) -> ExitCode {
    let era: Era = match a.era.parse() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ptemu-unicorn: --era {}: {e}", a.era);
            return ExitCode::from(2);
        }
    };
    let bin = if a.program.extension().is_some_and(|e| e == "c") {
        let dir = std::env::temp_dir().join(format!("ptemu-unicorn-{}", std::process::id()));
        match image::build(&a.program, &dir, false) {
            Ok((bin, _)) => bin,
            Err(e) => {
                eprintln!("ptemu-unicorn: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        a.program.clone()
    };
    let img = Image::open(&bin);
    if bin != a.program {
        // The build directory was ours (a temporary one per run).
        if let Some(d) = bin.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let img = match img {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ptemu-unicorn: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = EmuConfig::new(era, a.memory_mib << 20);
    cfg.swap = a.swap_mib << 20;
    cfg.check_every_fault = a.check_every_fault;
    let report = match Emulator::new(&cfg, &img).and_then(Emulator::run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ptemu-unicorn: {e}");
            return ExitCode::from(1);
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().write_all(&report.output);
    let mut failed = false;
    for (pid, exit) in &report.exits {
        eprintln!("process {pid}: {exit}");
    }
    // The exit status is the first process's, as a shell sees it.
    failed |= !matches!(report.first_exit(), Some(Exit::Code(0)));
    for (after, v) in &report.violations {
        eprintln!("invariant after {after}: {v}");
        failed = true;
    }
    if let Some(o) = &report.oops {
        eprintln!("{o}");
        failed = true;
    }
    let s = report.stats;
    eprintln!(
        "era {}: {} TLB fills, {} faults, {} syscalls, {} shootdowns, {} TLB flushes, {} switches",
        era.name(),
        s.fills,
        s.faults,
        s.syscalls,
        s.shootdowns,
        s.tlb_flushes,
        s.switches
    );
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn check(a: CheckArgs) -> ExitCode {
    use ptemu_unicorn::check::{self, Class, KvmClass as Class3, QemuCheckOptions};
    let r = match check::run(&QemuCheckOptions {
        seed: a.seed,
        accesses: a.accesses,
        kvm: !a.no_kvm,
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ptemu-unicorn check: {e}");
            return ExitCode::from(2);
        }
    };
    let unexplained = r.classes.get(&Class::Unexplained).copied().unwrap_or(0)
        + r.three_way.as_ref().map_or(0, |tw| {
            tw.table.iter().filter(|((_, k), _)| *k == Class3::Unexplained).map(|(_, n)| n).sum()
        });
    if a.json {
        let classes: serde_json::Map<String, serde_json::Value> =
            r.classes.iter().map(|(c, n)| (c.name().to_string(), (*n).into())).collect();
        let dis: Vec<serde_json::Value> = r
            .disagreements
            .iter()
            .map(|(c, t)| {
                serde_json::json!({
                    "class": c.name(),
                    "index": t.index,
                    "va": format!("{:#x}", t.va),
                    "access": format!("{:?}", t.access).to_lowercase(),
                    "user": t.cpu.user,
                    "ptemu": t.ptemu.to_string(),
                    "qemu": t.hw.to_string(),
                    "entries": t.entries.iter().map(|e| serde_json::json!({
                        "level": format!("{:?}", e.level),
                        "pa": format!("{:#x}", e.pa),
                        "before": format!("{:#x}", e.before),
                        "qemu": format!("{:#x}", e.cpu_after),
                        "ptemu": format!("{:#x}", e.ptemu_after),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "seed": r.seed,
            "total": r.total,
            "agreed": r.agreed,
            "classes": classes,
            "error_code_offset": r.error_code_offset,
            "coverage": r.coverage.counts,
            "not_tested": r.not_tested,
            "disagreements": dis,
            "kvm_unavailable": r.kvm_unavailable,
            "three_way": r.three_way.as_ref().map(|tw| serde_json::json!({
                "host": tw.host,
                "table": tw.table.iter().map(|((q, k), n)| serde_json::json!({
                    "qemu_vs_ptemu": q.name(), "kvm_vs_ptemu": k.name(), "accesses": n,
                })).collect::<Vec<_>>(),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for (c, t) in &r.disagreements {
            println!("[{}]", c.name());
            println!("{}", t.to_string().replace("  cpu:", "  qemu:").replace(" cpu ", " qemu "));
        }
        println!(
            "seed {}; QEMU's #PF error code read at context offset {}",
            r.seed, r.error_code_offset
        );
        for (k, n) in &r.coverage.counts {
            println!("  {n:>8}  {}", k.replace("CPU", "QEMU"));
        }
        for n in &r.not_tested {
            println!("  not tested: {n}");
        }
        if let Some(tw) = &r.three_way {
            for (c, t) in tw.kvm_disagreements.iter().filter(|(c, _)| *c == Class3::Unexplained) {
                println!("[kvm: {}]", c.name());
                println!("{t}");
            }
            println!(
                "three-way: the same {} accesses on ptemu, KVM ({}) and QEMU:",
                r.total, tw.host
            );
            println!("  {:>8}  {:<78}  KVM vs ptemu", "accesses", "QEMU vs ptemu");
            for ((q, k), n) in &tw.table {
                println!("  {n:>8}  {:<78}  {}", q.name(), k.name());
            }
        } else if let Some(why) = &r.kvm_unavailable {
            println!("three-way: KVM not usable ({why}); ptemu and QEMU only");
        }
        for (c, n) in &r.classes {
            println!("class {}: {n}", c.name());
        }
        println!("qemucheck: {}/{} accesses agree", r.agreed, r.total);
    }
    if unexplained > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
