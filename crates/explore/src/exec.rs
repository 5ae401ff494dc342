//! Runs operations one at a time on a [`Machine`], exactly as `ptemu run`
//! runs the same statements (the runner in crates/scenario), and reports
//! after each what the judges care about: a SIGSEGV, an oops, and the
//! violations the checker reports for the first time.
//!
//! "For the first time" follows the runner: a violation is identified by
//! its kind and subject, and is new when the previous check did not report
//! it. The minimizer relies on this match: a sequence whose steps produce a
//! chain of anomalies here produces the same chain under `ptemu run`, and
//! the file it writes is checked there before it is kept.

use std::collections::{BTreeMap, BTreeSet};

use mm::{InvariantKind, Machine, MmError, Outcome, Pid, Subject, Violation};
use scenario::ast::{Op, Spanned};

use crate::Target;

/// What the judges saw go wrong: an invariant the checker reports for the
/// first time, an oops, or an emulator error that is itself a bug.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Anomaly {
    /// The checker reports a violation of this kind for the first time.
    Invariant(InvariantKind),
    /// The operation oopsed.
    Oops(mm::OopsKind),
    /// The emulator reported an internal inconsistency (`MmError::KernelBug`)
    /// or an oops as an error: a bug of ptemu, not of the era.
    EmulatorError,
}

impl Anomaly {
    /// The name used in reports and class keys.
    pub fn name(self) -> String {
        match self {
            Anomaly::Invariant(k) => k.as_str().to_string(),
            Anomaly::Oops(k) => format!("oops {}", k.as_str()),
            Anomaly::EmulatorError => "emulator-error".to_string(),
        }
    }
}

/// What one operation did, as the judges see it.
#[derive(Clone, Debug, Default)]
pub struct StepResult {
    /// The process got SIGSEGV.
    pub segv: bool,
    /// The operation oopsed, of this kind.
    pub oops: Option<mm::OopsKind>,
    /// Violations reported now that the previous check did not report.
    pub new: Vec<Violation>,
    /// The emulator's own error, when it is a bug (see [`Anomaly`]).
    pub emulator_error: Option<String>,
    /// What a system call (mmap, munmap, mprotect, madvise) returned.
    pub sys: Option<mm::SysResult>,
}

impl StepResult {
    /// The anomalies of this step, in a fixed order: new invariant kinds
    /// (each once, in the checker's order), then the oops or error.
    pub fn anomalies(&self) -> Vec<Anomaly> {
        let kinds: BTreeSet<InvariantKind> = self.new.iter().map(|v| v.kind).collect();
        let mut out: Vec<Anomaly> = kinds.into_iter().map(Anomaly::Invariant).collect();
        if let Some(k) = self.oops {
            out.push(Anomaly::Oops(k));
        }
        if self.emulator_error.is_some() {
            out.push(Anomaly::EmulatorError);
        }
        out
    }
}

/// An operation that cannot be run: it names a process that does not
/// exist, or the emulator refused it (overlapping mmap, no memory...).
/// Not a finding: the generator avoids these and the minimizer discards
/// candidates that contain one.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The statement names a process that does not exist (or has exited).
    #[error("no process named {0}")]
    NoProcess(String),
    /// `spawn`/`fork` names a process that is still alive.
    #[error("process {0} already exists")]
    NameInUse(String),
    /// The emulator refused the operation.
    #[error(transparent)]
    Mm(#[from] MmError),
}

/// The machine, the scenario's process names, and the violations known
/// after the last check.
pub struct Exec {
    m: Machine,
    names: BTreeMap<String, Pid>,
    known: BTreeSet<(InvariantKind, Subject)>,
}

impl Exec {
    /// A fresh machine for `target`.
    pub fn new(target: &Target) -> Result<Self, MmError> {
        let m =
            Machine::new(target.machine_config().memory(target.memory).swap(vec![target.swap]))?;
        let known = m.check()?.into_iter().map(|v| (v.kind, v.subject)).collect();
        Ok(Exec { m, names: BTreeMap::new(), known })
    }

    /// The machine (read-only: the generator looks at VMAs and entries).
    pub fn machine(&self) -> &Machine {
        &self.m
    }

    /// The live process with this name.
    pub fn pid(&self, name: &str) -> Option<Pid> {
        self.names.get(name).copied().filter(|p| self.m.process_exists(*p))
    }

    /// Live processes by name, in name order.
    pub fn live(&self) -> Vec<(String, Pid)> {
        self.names
            .iter()
            .filter(|(_, p)| self.m.process_exists(**p))
            .map(|(n, p)| (n.clone(), *p))
            .collect()
    }

    /// The name of a live process.
    pub fn name_of(&self, pid: Pid) -> Option<&str> {
        self.names.iter().find(|(_, p)| **p == pid).map(|(n, _)| n.as_str())
    }

    fn need(&self, name: &Spanned<String>) -> Result<Pid, ExecError> {
        self.pid(&name.value).ok_or_else(|| ExecError::NoProcess(name.value.clone()))
    }

    fn bind(&mut self, name: &Spanned<String>, pid: Pid) -> Result<(), ExecError> {
        if self.pid(&name.value).is_some() {
            return Err(ExecError::NameInUse(name.value.clone()));
        }
        self.names.insert(name.value.clone(), pid);
        Ok(())
    }

    /// Runs one operation and the checker.
    pub fn step(&mut self, op: &Op) -> Result<StepResult, ExecError> {
        let mut r = StepResult::default();
        match self.run_op(op, &mut r) {
            Ok(()) => {}
            Err(ExecError::Mm(MmError::KernelBug { at, what })) => {
                r.emulator_error = Some(format!("kernel bug at {at}: {what}"));
                return Ok(r);
            }
            Err(ExecError::Mm(MmError::Oops(o))) => {
                r.emulator_error = Some(format!("oops as an error: {o}"));
                return Ok(r);
            }
            Err(e) => return Err(e),
        }
        let now = self.m.check()?;
        let mut known = BTreeSet::new();
        for v in now {
            let key = (v.kind, v.subject.clone());
            if !self.known.contains(&key) {
                r.new.push(v);
            }
            known.insert(key);
        }
        self.known = known;
        Ok(r)
    }

    fn syscall(o: Outcome<mm::SysResult>, r: &mut StepResult) {
        r.sys = Self::outcome(o, r);
    }

    fn outcome<T>(o: Outcome<T>, r: &mut StepResult) -> Option<T> {
        match o {
            Outcome::Done(v) => Some(v),
            Outcome::Segv(_) => {
                r.segv = true;
                None
            }
            Outcome::Oops(o) => {
                r.oops = Some(o.kind);
                None
            }
        }
    }

    fn run_op(&mut self, op: &Op, r: &mut StepResult) -> Result<(), ExecError> {
        match op {
            Op::Spawn { proc } => {
                if self.pid(&proc.value).is_some() {
                    return Err(ExecError::NameInUse(proc.value.clone()));
                }
                let pid = self.m.spawn()?;
                self.bind(proc, pid)?;
            }
            // A stated result is not held here: the file written states the
            // result each call returns (see scn.rs).
            Op::Mmap { proc, addr, len, prot, .. } => {
                let pid = self.need(proc)?;
                Self::syscall(self.m.mmap(pid, addr.value, len.value, prot.value)?, r);
            }
            Op::Munmap { proc, addr, len, .. } => {
                let pid = self.need(proc)?;
                Self::syscall(self.m.munmap(pid, addr.value, len.value)?, r);
            }
            Op::Mprotect { proc, addr, len, prot, .. } => {
                let pid = self.need(proc)?;
                Self::syscall(self.m.mprotect(pid, addr.value, len.value, prot.value)?, r);
            }
            Op::Madvise { proc, addr, len, .. } => {
                let pid = self.need(proc)?;
                Self::syscall(self.m.madvise_dontneed(pid, addr.value, len.value)?, r);
            }
            Op::Write { proc, addr, value } => {
                let pid = self.need(proc)?;
                let v = value.as_ref().map_or(scenario::limits::DEFAULT_WRITE_VALUE, |v| v.value);
                Self::outcome(self.m.write(pid, addr.value, v)?, r);
            }
            Op::Read { proc, addr, .. } => {
                let pid = self.need(proc)?;
                Self::outcome(self.m.read(pid, addr.value)?, r);
            }
            Op::Fork { parent, child } => {
                let pid = self.need(parent)?;
                if self.pid(&child.value).is_some() {
                    return Err(ExecError::NameInUse(child.value.clone()));
                }
                if let Some(c) = Self::outcome(self.m.fork(pid)?, r) {
                    self.bind(child, c)?;
                }
            }
            Op::Exit { proc } => {
                let pid = self.need(proc)?;
                Self::outcome(self.m.exit(pid)?, r);
            }
            Op::Execve { proc } => {
                let pid = self.need(proc)?;
                Self::outcome(self.m.execve(pid)?, r);
            }
            Op::Reclaim { proc, addr, len, keep_cache } => {
                let pid = self.need(proc)?;
                let l = len.as_ref().map_or(4096, |l| l.value);
                Self::outcome(self.m.reclaim(pid, addr.value, l, *keep_cache)?, r);
            }
            Op::RmapWalk { proc, addr } => {
                let pid = self.need(proc)?;
                Self::outcome(self.m.rmap_walk(pid, addr.value)?, r);
            }
            Op::RcuGracePeriod => self.m.rcu_grace_period(),
            Op::Dump { proc, .. } => {
                self.need(proc)?;
            }
        }
        Ok(())
    }
}
