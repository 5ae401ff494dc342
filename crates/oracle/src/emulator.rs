//! The ptemu side: the same plan on an emulated machine under era 6.18,
//! read through mm's pagemap / kpagecount / kpageflags views.

use mm::{Era, Machine, MachineConfig, Outcome, Pid};
use pgtable::Pfn;
use phys::PageFlags;
use scenario::ast::Advice;

use crate::compare::{Side, SideRun, StepNote};
use crate::error::OracleError;
use crate::observe::{AccessOutcome, KPF_MAPPEDTODISK, MapLine, PageObs, StepObs};
use crate::plan::{Action, Plan, PlannedStep, ProcId};

/// The era the host kernel is the oracle of.
pub const ORACLE_ERA: Era = Era::V6_18;

/// What one emulated step came to.
enum Step {
    Done(Option<AccessOutcome>, Option<i32>),
    Stop(String),
}

/// Runs `plan` on ptemu (era 6.18) and reads every step's state.
pub fn run_ptemu(plan: &Plan) -> Result<SideRun, OracleError> {
    run_ptemu_as(plan, MachineConfig::new(ORACLE_ERA))
}

/// Runs `plan` on ptemu under `config`'s semantics (its memory and swap
/// replaced by the plan's) and reads every step's state.
pub fn run_ptemu_as(plan: &Plan, config: MachineConfig) -> Result<SideRun, OracleError> {
    let cfg = config.memory(plan.memory).swap(plan.swaps.clone());
    let mut m = Machine::new(cfg).map_err(|e| OracleError::Emulator {
        file: plan.file.clone(),
        line: 0,
        what: e.to_string(),
    })?;
    let mut pids: Vec<Option<Pid>> = vec![None; plan.procs.len()];
    let mut side = SideRun::default();
    let mut stopped = false;
    for (i, step) in plan.steps.iter().enumerate() {
        if stopped {
            side.steps.push(None);
            continue;
        }
        m.set_step(format!("step {} (line {})", step.number, step.line));
        let outcome = match run_step(&mut m, &mut pids, step) {
            Ok(o) => o,
            Err(e) => Step::Stop(format!("ptemu refused the step: {e}")),
        };
        match outcome {
            Step::Done(access, result) => {
                let mut obs = observe(&m, &pids, step).map_err(|e| OracleError::Emulator {
                    file: plan.file.clone(),
                    line: step.line,
                    what: e.to_string(),
                })?;
                obs.access = access;
                obs.result = result;
                side.steps.push(Some(obs));
            }
            Step::Stop(why) => {
                let rest = plan.steps.len() - i - 1;
                side.notes.push(StepNote {
                    step: step.number,
                    line: step.line,
                    side: Side::Ptemu,
                    what: format!("{why}; this step and the {rest} after it are not compared"),
                });
                side.steps.push(None);
                stopped = true;
            }
        }
    }
    Ok(side)
}

/// Why an emulated step could not run.
#[derive(Debug, thiserror::Error)]
enum EmuError {
    #[error(transparent)]
    Mm(#[from] mm::MmError),
    #[error("scenario process #{0} has no emulated process")]
    NoProcess(ProcId),
}

fn pid_of(pids: &[Option<Pid>], p: ProcId) -> Result<Pid, EmuError> {
    pids.get(p).copied().flatten().ok_or(EmuError::NoProcess(p))
}

/// Turns an mm outcome into a step result: a SIGSEGV is an access outcome,
/// an oops is where ptemu stops (the host kernel never oopses here).
fn settle<T>(o: Outcome<T>) -> Result<Step, EmuError> {
    Ok(match o {
        Outcome::Done(_) => Step::Done(None, None),
        Outcome::Segv(_) => Step::Done(Some(AccessOutcome { segv: true, value: None }), None),
        Outcome::Oops(oops) => {
            Step::Stop(format!("ptemu oopsed ({:?} on anon_vma {})", oops.kind, oops.anon_vma))
        }
    })
}

/// A system call's outcome: its result (0 or the errno) is compared.
fn syscall(o: Outcome<mm::SysResult>) -> Result<Step, EmuError> {
    Ok(match o {
        Outcome::Done(Ok(())) => Step::Done(None, Some(0)),
        Outcome::Done(Err(e)) => Step::Done(None, Some(e as i32)),
        other => settle(other)?,
    })
}

fn run_step(
    m: &mut Machine,
    pids: &mut [Option<Pid>],
    step: &PlannedStep,
) -> Result<Step, EmuError> {
    Ok(match step.action {
        Action::Spawn { proc } => {
            let pid = m.spawn()?;
            if let Some(slot) = pids.get_mut(proc) {
                *slot = Some(pid);
            }
            Step::Done(None, None)
        }
        Action::Mmap { proc, addr, len, prot: p } => {
            syscall(m.mmap(pid_of(pids, proc)?, addr, len, p)?)?
        }
        Action::Munmap { proc, addr, len } => syscall(m.munmap(pid_of(pids, proc)?, addr, len)?)?,
        Action::Mprotect { proc, addr, len, prot: p } => {
            syscall(m.mprotect(pid_of(pids, proc)?, addr, len, p)?)?
        }
        Action::Madvise { proc, addr, len, advice } => match advice {
            Advice::DontNeed => syscall(m.madvise_dontneed(pid_of(pids, proc)?, addr, len)?)?,
        },
        Action::Write { proc, addr, value } => match m.write(pid_of(pids, proc)?, addr, value)? {
            Outcome::Done(()) => Step::Done(Some(AccessOutcome { segv: false, value: None }), None),
            other => settle(other)?,
        },
        Action::Read { proc, addr } => match m.read(pid_of(pids, proc)?, addr)? {
            Outcome::Done(v) => {
                Step::Done(Some(AccessOutcome { segv: false, value: Some(v) }), None)
            }
            other => settle(other)?,
        },
        Action::Fork { parent, child } => match m.fork(pid_of(pids, parent)?)? {
            Outcome::Done(pid) => {
                if let Some(slot) = pids.get_mut(child) {
                    *slot = Some(pid);
                }
                Step::Done(None, None)
            }
            other => settle(other)?,
        },
        Action::Exit { proc } => {
            let s = settle(m.exit(pid_of(pids, proc)?)?)?;
            if let Some(slot) = pids.get_mut(proc) {
                *slot = None;
            }
            s
        }
        Action::Execve { proc } => settle(m.execve(pid_of(pids, proc)?)?)?,
        Action::Reclaim { proc, addr, len, keep_cache } => {
            settle(m.reclaim(pid_of(pids, proc)?, addr, len, keep_cache)?)?
        }
        Action::RmapWalk { proc, addr } => settle(m.rmap_walk(pid_of(pids, proc)?, addr)?)?,
        Action::RcuGracePeriod => {
            m.rcu_grace_period();
            Step::Done(None, None)
        }
        Action::Dump => Step::Done(None, None),
    })
}

fn observe(m: &Machine, pids: &[Option<Pid>], step: &PlannedStep) -> Result<StepObs, EmuError> {
    let mut obs = StepObs::default();
    for &(p, va) in &step.observe {
        let pid = pid_of(pids, p)?;
        let mut page = PageObs { pagemap: m.pagemap(pid, va)?, kpagecount: None, kpageflags: None };
        if let Some(pfn) = page.pfn() {
            let pfn = Pfn(pfn);
            let mut flags = m.kpageflags(pfn)?;
            // mm's kpageflags view leaves out the "kernel hacking" bit 34
            // (KPF_MAPPEDTODISK), which on 6.18 carries PG_anon_exclusive;
            // read that flag from the page descriptor instead.
            let desc = m.page(pfn)?;
            if desc.is_anon() && desc.flags.contains(PageFlags::ANON_EXCLUSIVE) {
                flags |= KPF_MAPPEDTODISK;
            }
            page.kpagecount = Some(m.kpagecount(pfn)?);
            page.kpageflags = Some(flags);
        }
        obs.pages.insert((p, va), page);
    }
    for (p, pid) in pids.iter().enumerate() {
        let Some(pid) = *pid else { continue };
        let pages: Vec<u64> =
            step.observe.iter().filter(|(q, _)| *q == p).map(|&(_, va)| va).collect();
        let lines = m
            .vmas(pid)?
            .into_iter()
            .filter(|v| {
                let i = pages.partition_point(|&va| va < v.start);
                pages.get(i).is_some_and(|&va| va < v.end)
            })
            .map(|v| MapLine { start: v.start, end: v.end, perms: perms(v.prot) })
            .collect();
        obs.maps.insert(p, lines);
    }
    Ok(obs)
}

/// The perms column of /proc/PID/maps for a private anonymous mapping.
fn perms(p: mm::Prot) -> String {
    let mut s = String::with_capacity(4);
    s.push(if p.readable() { 'r' } else { '-' });
    s.push(if p.writable() { 'w' } else { '-' });
    s.push(if p.executable() { 'x' } else { '-' });
    s.push('p');
    s
}
