//! `ptemu hwcheck`: ptemu's page walk against the CPU's, through KVM.
//!
//! Random page-table paths and random accesses, each done by
//! `pgtable::translate` on a copy and by a KVM guest on the real tables
//! (see the kvm crate's `check` module). Prints every disagreement and ends
//! with `hwcheck: A/N accesses agree`. Exit status: 0 when all agree, 1 when
//! one does not or the guest failed, 2 without a usable /dev/kvm.

use std::process::ExitCode;

use clap::Args;
use kvm::KvmError;
use kvm::check::{CheckOptions, CheckReport, Outcome, Trial, run as run_check};
use serde_json::json;

/// Arguments of `ptemu hwcheck`.
#[derive(Args, Debug)]
pub struct HwcheckArgs {
    /// Seed of the random tables and accesses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of accesses to compare (at least 1).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    accesses: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `ptemu hwcheck`.
pub fn run(args: HwcheckArgs) -> ExitCode {
    let report = match run_check(&CheckOptions { seed: args.seed, accesses: args.accesses }) {
        Ok(r) => r,
        Err(KvmError::NoKvm(why)) => {
            eprintln!(
                "ptemu hwcheck: /dev/kvm is not usable ({why}); the CPU cannot be compared here"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ptemu hwcheck: the guest could not run the check: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print_text(&report);
    }
    if report.agreed == report.total { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn oracle_line(r: &CheckReport) -> String {
    let f = &r.features;
    let module = f.kvm_module.as_deref().unwrap_or("unknown module");
    let how = if module == "kvm_pvm" {
        " — KVM's shadow MMU decides faults and A/D from the guest tables; the hardware walks its shadow copy"
    } else {
        ""
    };
    format!("{} CPU, MAXPHYADDR {}, /dev/kvm from {module}{how}", f.vendor, f.maxphyaddr)
}

fn print_text(r: &CheckReport) {
    println!("hwcheck: seed {}, {} accesses; oracle: {}", r.seed, r.total, oracle_line(r));
    for t in &r.disagreements {
        println!("DISAGREE {t}");
    }
    let shown = r.disagreements.len() as u64;
    let all = r.total - r.agreed;
    if all > shown {
        println!("({} more disagreements not shown)", all - shown);
    }
    println!("covered:");
    for (k, v) in &r.coverage.counts {
        println!("  {k}: {v}");
    }
    println!("not tested:");
    for n in &r.not_tested {
        println!("  {n}");
    }
    println!("hwcheck: {}/{} accesses agree", r.agreed, r.total);
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    match o {
        Outcome::Access { pa } => json!({"kind": "access", "pa": format!("{pa:#x}")}),
        Outcome::ReadValue { value } => {
            json!({"kind": "read-unknown", "value": format!("{value:#x}")})
        }
        Outcome::WriteLost => json!({"kind": "write-lost"}),
        Outcome::PageFault { error_code, cr2 } => {
            json!({"kind": "page-fault", "error_code": format!("{error_code:#x}"), "cr2": format!("{cr2:#x}")})
        }
        Outcome::Exception { vector, rip } => {
            json!({"kind": "exception", "vector": vector, "rip": format!("{rip:#x}")})
        }
        Outcome::Mmio { addr } => json!({"kind": "mmio", "gpa": format!("{addr:#x}")}),
        Outcome::WalkerError(e) => json!({"kind": "walker-error", "message": e}),
    }
}

fn trial_json(t: &Trial) -> serde_json::Value {
    let c = &t.cpu;
    json!({
        "index": t.index,
        "va": format!("{:#x}", t.va),
        "access": format!("{:?}", t.access).to_lowercase(),
        "user": c.user,
        "cr0_wp": c.wp,
        "efer_nxe": c.nxe,
        "cr4_smep": c.smep,
        "cr4_smap": c.smap,
        "eflags_ac": c.ac,
        "entries": t.entries.iter().map(|e| json!({
            "level": e.level as u8,
            "pa": format!("{:#x}", e.pa),
            "before": format!("{:#018x}", e.before),
            "cpu_after": format!("{:#018x}", e.cpu_after),
            "ptemu_after": format!("{:#018x}", e.ptemu_after),
        })).collect::<Vec<_>>(),
        "cpu": outcome_json(&t.hw),
        "ptemu": outcome_json(&t.ptemu),
    })
}

fn to_json(r: &CheckReport) -> serde_json::Value {
    let f = &r.features;
    json!({
        "seed": r.seed,
        "accesses": r.total,
        "agreed": r.agreed,
        "oracle": {
            "vendor": f.vendor,
            "maxphyaddr": f.maxphyaddr,
            "kvm_module": f.kvm_module,
            "nx": f.nx,
            "gbpages": f.gbpages,
            "smep": f.smep,
            "smap": f.smap,
            "pku": f.pku,
        },
        "coverage": r.coverage.counts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "not_tested": r.not_tested,
        "disagreements": r.disagreements.iter().map(trial_json).collect::<Vec<_>>(),
    })
}
