//! Runs a plan on the host kernel: one worker process per scenario process,
//! each step sent over the worker's channel and answered before the next,
//! and the pages read back from procfs after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scenario::ast::{Advice, Prot};

use super::channel::{Channel, Msg, RecvError};
use super::machine::{Machine, check_signal, interrupted};
use super::procfs::{KPage, Pagemap, observe_page};
use super::worker::{CHANNEL_FD, op};
use crate::compare::{Side, SideRun, StepNote};
use crate::error::OracleError;
use crate::observe::{AccessOutcome, KPF_ANON, KPF_ZERO_PAGE, MapLine, StepObs};
use crate::plan::{Action, PAGE_SIZE, Plan, PlannedStep, ProcId, page_range};

/// How long a worker may take to answer one command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a worker: a program that, run with these arguments, calls
/// [`crate::worker_main`] (the `ptemu` binary's hidden `oracle-worker`).
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Environment variable: milliseconds to wait after setting up the machine
/// before the first step (lets a test interrupt a run at a known point).
pub const PAUSE_ENV: &str = "PTEMU_ORACLE_PAUSE_MS";

/// Runs `plan` on the host kernel and reads every step's state.
pub fn run_kernel(plan: &Plan, worker: &WorkerCommand) -> Result<SideRun, OracleError> {
    let mut machine = Machine::setup(&plan.swaps, plan.memory)?;
    let result = match KPage::open() {
        Ok(kp) => {
            let mut ctl = Controller { plan, worker, machine: &mut machine, kp, procs: Vec::new() };
            let r = pause_for_tests().and_then(|()| ctl.run());
            ctl.kill_all();
            r
        }
        Err(e) => Err(e),
    };
    let problems = machine.teardown();
    if !problems.is_empty() {
        return Err(OracleError::Unavailable(format!(
            "the machine could not be fully restored: {}",
            problems.join("; ")
        )));
    }
    result
}

fn pause_for_tests() -> Result<(), OracleError> {
    let ms = std::env::var(PAUSE_ENV).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        check_signal()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    check_signal()
}

/// One live worker.
struct Worker {
    pid: i32,
    chan: Channel,
    /// Set for workers the controller spawned itself (its children).
    child: Option<Child>,
}

/// What a step came to on the host.
enum Outcome {
    /// Done; read the state (with the access's outcome, or the system
    /// call's result: 0 or the errno).
    Done(Option<AccessOutcome>, Option<i32>),
    /// Not performed, or not exactly; this step is not compared, later ones are.
    Skip(String),
    /// The kernel cannot go on as the scenario says; nothing from here on is compared.
    Stop(String),
}

struct Controller<'a> {
    plan: &'a Plan,
    worker: &'a WorkerCommand,
    machine: &'a mut Machine,
    kp: KPage,
    procs: Vec<Option<Worker>>,
}

fn prot_bits(p: Prot) -> u64 {
    (match p {
        Prot::None => libc::PROT_NONE,
        Prot::R => libc::PROT_READ,
        Prot::Rw => libc::PROT_READ | libc::PROT_WRITE,
        Prot::Rx => libc::PROT_READ | libc::PROT_EXEC,
        Prot::Rwx => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
    }) as u64
}

fn advice_bits(a: Advice) -> u64 {
    (match a {
        Advice::DontNeed => libc::MADV_DONTNEED,
    }) as u64
}

fn errno_text(e: u64) -> String {
    std::io::Error::from_raw_os_error(e as i32).to_string()
}

impl Controller<'_> {
    fn run(&mut self) -> Result<SideRun, OracleError> {
        let mut side = SideRun::default();
        let mut stopped = false;
        let mut prev_pages: BTreeSet<(ProcId, u64)> = BTreeSet::new();
        for (i, step) in self.plan.steps.iter().enumerate() {
            if stopped {
                side.steps.push(None);
                continue;
            }
            check_signal()?;
            let outcome = self.step(i, step, &prev_pages)?;
            prev_pages = step.observe.iter().copied().collect();
            let note = |what: String| StepNote {
                step: step.number,
                line: step.line,
                side: Side::Kernel,
                what,
            };
            match outcome {
                Outcome::Done(access, result) => {
                    let mut obs = self.observe(step)?;
                    obs.access = access;
                    obs.result = result;
                    side.steps.push(Some(obs));
                }
                Outcome::Skip(why) => {
                    side.notes.push(note(why));
                    side.steps.push(None);
                }
                Outcome::Stop(why) => {
                    let rest = self.plan.steps.len() - i - 1;
                    side.notes.push(note(format!(
                        "{why}; this step and the {rest} after it are not compared"
                    )));
                    side.steps.push(None);
                    stopped = true;
                }
            }
        }
        Ok(side)
    }

    fn name(&self, p: ProcId) -> &str {
        self.plan.proc_name(p)
    }

    fn worker(&self, p: ProcId) -> Result<&Worker, OracleError> {
        self.procs.get(p).and_then(Option::as_ref).ok_or_else(|| OracleError::Worker {
            proc: self.name(p).to_string(),
            pid: 0,
            what: "has no live worker".into(),
        })
    }

    fn werr(&self, p: ProcId, pid: i32, what: impl Into<String>) -> OracleError {
        OracleError::Worker { proc: self.name(p).to_string(), pid, what: what.into() }
    }

    fn recv_on(&self, p: ProcId, pid: i32, chan: &Channel) -> Result<Msg, OracleError> {
        let check = || interrupted();
        match chan.recv(Some(Instant::now() + ANSWER_TIMEOUT), Some(&check)) {
            Ok((m, _)) => Ok(m),
            Err(RecvError::Closed) => Err(self.werr(p, pid, "exited unexpectedly")),
            Err(RecvError::Timeout) => Err(self.werr(
                p,
                pid,
                format!("did not answer within {} s", ANSWER_TIMEOUT.as_secs()),
            )),
            Err(RecvError::Interrupted(sig)) => Err(OracleError::Interrupted(sig)),
            Err(RecvError::Io(e)) => Err(self.werr(p, pid, e.to_string())),
        }
    }

    /// Sends one command to `p`'s worker and waits for its answer.
    fn call(&self, p: ProcId, opcode: u64, args: [u64; 4]) -> Result<Msg, OracleError> {
        let w = self.worker(p)?;
        w.chan
            .send(&Msg::new(opcode, args), None)
            .map_err(|e| self.werr(p, w.pid, e.to_string()))?;
        self.recv_on(p, w.pid, &w.chan)
    }

    fn step(
        &mut self,
        _i: usize,
        step: &PlannedStep,
        prev: &BTreeSet<(ProcId, u64)>,
    ) -> Result<Outcome, OracleError> {
        let verb = step.action.verb();
        // A system call's answer: its result is compared like any field
        // (mmap, munmap, mprotect and madvise fail as Linux's do, and the
        // run goes on).
        let syscall = |r: Msg| -> Outcome {
            match r.op {
                op::OK => Outcome::Done(None, Some(0)),
                op::ERR => Outcome::Done(None, Some(r.args[0] as i32)),
                other => Outcome::Stop(format!("{verb}: the worker answered {other}")),
            }
        };
        let plain = |r: Msg| -> Outcome {
            if r.op == op::OK {
                Outcome::Done(None, None)
            } else {
                Outcome::Stop(format!("{verb} failed on the host: {}", errno_text(r.args[0])))
            }
        };
        Ok(match step.action {
            Action::Spawn { proc } => {
                self.spawn(proc)?;
                Outcome::Done(None, None)
            }
            Action::Mmap { proc, addr, len, prot } => {
                let r = self.call(proc, op::MMAP, [addr, len, prot_bits(prot), 0])?;
                let ours = page_range(addr, len).any(|va| prev.contains(&(proc, va)));
                if r.op == op::ERR && r.args[0] == libc::EEXIST as u64 && !ours {
                    Outcome::Stop(format!(
                        "[{addr:#x}, {:#x}) collides with a mapping of the worker process \
                         itself (its program, libraries or stack), so the kernel cannot \
                         place the scenario's mapping there",
                        addr.saturating_add(len)
                    ))
                } else {
                    // EEXIST over the scenario's own mapping is the
                    // contract's answer (MAP_FIXED_NOREPLACE).
                    syscall(r)
                }
            }
            Action::Munmap { proc, addr, len } => {
                syscall(self.call(proc, op::MUNMAP, [addr, len, 0, 0])?)
            }
            Action::Mprotect { proc, addr, len, prot } => {
                syscall(self.call(proc, op::MPROTECT, [addr, len, prot_bits(prot), 0])?)
            }
            Action::Madvise { proc, addr, len, advice } => {
                syscall(self.call(proc, op::MADVISE, [addr, len, advice_bits(advice), 0])?)
            }
            Action::Write { proc, addr, value } => {
                let r = match self.access(
                    step.number,
                    proc,
                    op::WRITE,
                    [addr, u64::from(value), 0, 0],
                )? {
                    Ok(r) => r,
                    Err(why) => return Ok(Outcome::Stop(why)),
                };
                match r.op {
                    op::OK => Outcome::Done(Some(AccessOutcome { segv: false, value: None }), None),
                    op::SEGV => {
                        Outcome::Done(Some(AccessOutcome { segv: true, value: None }), None)
                    }
                    _ => plain(r),
                }
            }
            Action::Read { proc, addr } => {
                let r = match self.access(step.number, proc, op::READ, [addr, 0, 0, 0])? {
                    Ok(r) => r,
                    Err(why) => return Ok(Outcome::Stop(why)),
                };
                match r.op {
                    op::OK => Outcome::Done(
                        Some(AccessOutcome { segv: false, value: Some(r.args[0] as u8) }),
                        None,
                    ),
                    op::SEGV => {
                        Outcome::Done(Some(AccessOutcome { segv: true, value: None }), None)
                    }
                    _ => plain(r),
                }
            }
            Action::Fork { parent, child } => {
                self.fork(parent, child)?;
                Outcome::Done(None, None)
            }
            Action::Exit { proc } => {
                self.exit(proc)?;
                Outcome::Done(None, None)
            }
            Action::Execve { proc } => {
                let w = self.worker(proc)?;
                let pid = w.pid;
                w.chan
                    .send(&Msg::new(op::EXECVE, [0; 4]), None)
                    .map_err(|e| self.werr(proc, pid, e.to_string()))?;
                let r = self.recv_on(proc, pid, &w.chan)?;
                if r.op != op::HELLO || r.args[0] != pid as u64 {
                    return Err(self.werr(
                        proc,
                        pid,
                        format!("execve failed: {}", errno_text(r.args[0])),
                    ));
                }
                Outcome::Done(None, None)
            }
            Action::Reclaim { proc, addr, len, keep_cache } => {
                self.reclaim(step, proc, addr, len, keep_cache)?
            }
            Action::RmapWalk { .. } => Outcome::Skip(
                "no interface of this kernel walks the rmap of a chosen page \
                 (CONFIG_IDLE_PAGE_TRACKING, whose bitmap would, is off); not performed on the host"
                    .into(),
            ),
            Action::RcuGracePeriod => {
                // MEMBARRIER_CMD_GLOBAL returns after synchronize_rcu().
                match rustix::thread::membarrier(rustix::thread::MembarrierCommand::Global) {
                    Ok(()) => Outcome::Done(None, None),
                    Err(e) => Outcome::Skip(format!(
                        "membarrier(MEMBARRIER_CMD_GLOBAL), which waits for an RCU grace period, failed: {e}"
                    )),
                }
            }
            Action::Dump => Outcome::Done(None, None),
        })
    }

    /// A load or store run with the worker in the step's own memory cgroup,
    /// so that whatever page it allocates can later be reclaimed alone.
    /// `Err(why)` when the worker died in the access: the memory cgroup's
    /// OOM killer is the one thing that kills a worker there (the limit
    /// reached with the swap devices full).
    fn access(
        &mut self,
        n: usize,
        p: ProcId,
        opcode: u64,
        args: [u64; 4],
    ) -> Result<Result<Msg, String>, OracleError> {
        let pid = self.worker(p)?.pid;
        self.machine.enter_step(n, pid)?;
        let r = self.call(p, opcode, args);
        if let Err(OracleError::Worker { what, .. }) = &r {
            let why = format!(
                "the worker of {} died in the access ({what}): killed by the memory cgroup's \
                 OOM killer, the limit being reached with no swap left",
                self.name(p)
            );
            if let Some(mut w) = self.procs.get_mut(p).and_then(Option::take) {
                kill_worker(&mut w);
            }
            return Ok(Err(why));
        }
        let back = self.machine.enter_top(pid);
        let r = r?;
        back?;
        Ok(Ok(r))
    }

    fn spawn(&mut self, p: ProcId) -> Result<(), OracleError> {
        let (ours, theirs) = Channel::pair()
            .map_err(|e| OracleError::Sys { call: "socketpair".into(), source: e })?;
        let fd = theirs.raw();
        let mut cmd = Command::new(&self.worker.program);
        cmd.args(&self.worker.args).stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: between fork and exec the closure only makes system calls
        // (dup2, fcntl, personality), which are async-signal-safe. The run
        // holds the lock file and procfs files open, so fd 3 is never free
        // for Command's own exec-error pipe.
        unsafe {
            cmd.pre_exec(move || {
                if fd == CHANNEL_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CHANNEL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A fixed layout keeps the image's own mappings away from
                // the scenario's addresses, and away from them every time.
                let cur = libc::personality(0xffff_ffff);
                if cur != -1 {
                    libc::personality(
                        (cur as libc::c_ulong) | libc::ADDR_NO_RANDOMIZE as libc::c_ulong,
                    );
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| OracleError::Sys {
            call: format!("starting {}", self.worker.program.display()),
            source: e,
        })?;
        drop(theirs);
        let pid = child.id() as i32;
        let mut w = Worker { pid, chan: ours, child: Some(child) };
        let hello = self.recv_on(p, pid, &w.chan);
        match hello {
            Ok(m) if m.op == op::HELLO && m.args[0] == pid as u64 => {}
            other => {
                kill_worker(&mut w);
                return Err(match other {
                    Err(e) => e,
                    Ok(m) => self.werr(p, pid, format!("sent {} instead of hello", m.op)),
                });
            }
        }
        if let Err(e) = self.machine.enter_top(pid) {
            kill_worker(&mut w);
            return Err(e);
        }
        self.put(p, w);
        Ok(())
    }

    fn put(&mut self, p: ProcId, w: Worker) {
        if self.procs.len() <= p {
            self.procs.resize_with(p + 1, || None);
        }
        if let Some(slot) = self.procs.get_mut(p) {
            *slot = Some(w);
        }
    }

    fn fork(&mut self, parent: ProcId, child: ProcId) -> Result<(), OracleError> {
        let (ours, theirs) = Channel::pair()
            .map_err(|e| OracleError::Sys { call: "socketpair".into(), source: e })?;
        let w = self.worker(parent)?;
        let ppid = w.pid;
        w.chan
            .send(&Msg::new(op::FORK, [0; 4]), Some(theirs.fd()))
            .map_err(|e| self.werr(parent, ppid, e.to_string()))?;
        drop(theirs);
        let r = self.recv_on(parent, ppid, &w.chan)?;
        if r.op != op::OK {
            return Err(self.werr(parent, ppid, format!("fork failed: {}", errno_text(r.args[0]))));
        }
        let pid = r.args[0] as i32;
        let hello = self.recv_on(child, pid, &ours)?;
        if hello.op != op::HELLO || hello.args[0] != pid as u64 {
            return Err(self.werr(child, pid, "the forked worker did not say hello"));
        }
        self.put(child, Worker { pid, chan: ours, child: None });
        Ok(())
    }

    fn exit(&mut self, p: ProcId) -> Result<(), OracleError> {
        let Some(mut w) = self.procs.get_mut(p).and_then(Option::take) else {
            return Err(self.werr(p, 0, "has no live worker"));
        };
        let _ = w.chan.send(&Msg::new(op::EXIT, [0; 4]), None);
        // The channel closes in exit_files(), after exit_mm() has torn the
        // address space down: end of file means the state is final.
        let check = || interrupted();
        match w.chan.recv(Some(Instant::now() + ANSWER_TIMEOUT), Some(&check)) {
            Err(RecvError::Closed) => {}
            Err(RecvError::Interrupted(sig)) => {
                kill_worker(&mut w);
                return Err(OracleError::Interrupted(sig));
            }
            other => {
                kill_worker(&mut w);
                return Err(self.werr(p, w.pid, format!("did not exit: {other:?}")));
            }
        }
        reap(&mut w);
        Ok(())
    }

    fn observe(&self, step: &PlannedStep) -> Result<StepObs, OracleError> {
        let mut obs = StepObs::default();
        let mut maps: BTreeMap<ProcId, Pagemap> = BTreeMap::new();
        for &(p, va) in &step.observe {
            let pm = match maps.entry(p) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Pagemap::open(self.worker(p)?.pid)?)
                }
            };
            obs.pages.insert((p, va), observe_page(pm, &self.kp, va)?);
        }
        for (p, w) in self.procs.iter().enumerate() {
            let Some(w) = w else { continue };
            let pages: Vec<u64> =
                step.observe.iter().filter(|(q, _)| *q == p).map(|&(_, va)| va).collect();
            obs.maps.insert(p, scenario_maps(w.pid, &pages)?);
        }
        Ok(obs)
    }

    fn mincore(&self, p: ProcId, va: u64) -> Result<bool, OracleError> {
        let r = self.call(p, op::MINCORE, [va, 0, 0, 0])?;
        if r.op != op::OK {
            return Err(self.werr(p, 0, format!("mincore failed: {}", errno_text(r.args[0]))));
        }
        Ok(r.args[0] != 0)
    }

    /// Reclaim of exactly the named pages: each was charged, when it was
    /// allocated, to the memory cgroup of the step that allocated it, so
    /// emptying those cgroups takes these pages and nothing else that the
    /// scenario maps. Whatever would break that is checked, not assumed.
    fn reclaim(
        &mut self,
        step: &PlannedStep,
        p: ProcId,
        addr: u64,
        len: u64,
        keep_cache: bool,
    ) -> Result<Outcome, OracleError> {
        let pm = Pagemap::open(self.worker(p)?.pid)?;
        let mine: BTreeSet<u64> =
            step.observe.iter().filter(|(q, _)| *q == p).map(|(_, va)| *va).collect();
        let mut named: BTreeMap<u64, u64> = BTreeMap::new();
        for va in page_range(addr, len).filter(|va| mine.contains(va)) {
            let o = observe_page(&pm, &self.kp, va)?;
            let (Some(pfn), Some(flags)) = (o.pfn(), o.kpageflags) else { continue };
            // Reclaim passes over the shared zero page, as the kernel's does.
            if flags & KPF_ZERO_PAGE != 0 || flags & KPF_ANON == 0 {
                continue;
            }
            named.entry(pfn).or_insert(va);
        }
        if named.is_empty() {
            return Ok(Outcome::Done(None, None));
        }
        let label = |q: ProcId, va: u64| format!("{}:{va:#x}", self.plan.proc_name(q));
        let mut groups: BTreeSet<PathBuf> = BTreeSet::new();
        for (&pfn, &va) in &named {
            let ino = self.kp.cgroup(pfn)?;
            match self.machine.step_cgroup(ino) {
                Some(dir) => {
                    groups.insert(dir.to_path_buf());
                }
                None => {
                    return Ok(Outcome::Stop(format!(
                        "the page at {} is charged to memory cgroup inode {ino}, not to a step \
                         cgroup of this run, so it cannot be reclaimed alone",
                        label(p, va)
                    )));
                }
            }
        }
        let before = self.observe(step)?;
        for (&(q, va), o) in &before.pages {
            let Some(pfn) = o.pfn() else { continue };
            if named.contains_key(&pfn) || o.kpageflags.is_some_and(|f| f & KPF_ZERO_PAGE != 0) {
                continue;
            }
            let ino = self.kp.cgroup(pfn)?;
            if self.machine.step_cgroup(ino).is_some_and(|d| groups.contains(d)) {
                return Ok(Outcome::Stop(format!(
                    "reclaiming {} would also reclaim {}, charged to the same memory cgroup",
                    label(p, addr),
                    label(q, va)
                )));
            }
        }
        let mut still_mapped = None;
        for _attempt in 0..5 {
            for dir in &groups {
                self.force_empty(dir)?;
            }
            let after = self.observe(step)?;
            still_mapped = after
                .pages
                .iter()
                .find(|(_, o)| o.pfn().is_some_and(|pfn| named.contains_key(&pfn)))
                .map(|(&(q, va), _)| (q, va));
            if still_mapped.is_none() {
                for (&(q, va), o) in &before.pages {
                    let was_named = o.pfn().is_some_and(|pfn| named.contains_key(&pfn));
                    let now_swapped =
                        after.pages.get(&(q, va)).and_then(|a| a.swap_entry()).is_some();
                    if was_named && !now_swapped {
                        return Ok(Outcome::Stop(format!(
                            "after reclaim {} is not a swap entry",
                            label(q, va)
                        )));
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some((q, va)) = still_mapped {
            if self.machine.swap_full()? {
                // Reclaim found no free slot: the kernel leaves the page
                // mapped, which is what the step means on a full device.
                return Ok(Outcome::Done(None, None));
            }
            return Ok(Outcome::Stop(format!(
                "the kernel did not reclaim the page at {} (memory.force_empty left it mapped)",
                label(q, va)
            )));
        }
        // The swap cache: mincore on a swap entry says whether its slot's
        // page is in the swap cache.
        for &va in named.values() {
            let mut cached = self.mincore(p, va)?;
            if keep_cache && !cached {
                // MADV_WILLNEED reads the slot back into the swap cache
                // without mapping it: the page "stays in the swap cache".
                let r =
                    self.call(p, op::MADVISE, [va, PAGE_SIZE, libc::MADV_WILLNEED as u64, 0])?;
                if r.op != op::OK {
                    return Ok(Outcome::Stop(format!(
                        "keep-cache: MADV_WILLNEED failed: {}",
                        errno_text(r.args[0])
                    )));
                }
                // The read is asynchronous; mincore counts the page once it is
                // up to date in the swap cache.
                let deadline = Instant::now() + Duration::from_secs(2);
                cached = self.mincore(p, va)?;
                while !cached && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    cached = self.mincore(p, va)?;
                }
                if !cached {
                    return Ok(Outcome::Stop(format!(
                        "keep-cache: the page at {} could not be kept in the swap cache",
                        label(p, va)
                    )));
                }
            }
            let mut tries = 0;
            while !keep_cache && cached && tries < 10 {
                // Still in the swap cache: writeback had not finished when
                // the page was last looked at. Another pass frees it.
                std::thread::sleep(Duration::from_millis(20));
                for dir in &groups {
                    self.force_empty(dir)?;
                }
                cached = self.mincore(p, va)?;
                tries += 1;
            }
            if !keep_cache && cached {
                return Ok(Outcome::Stop(format!(
                    "the page at {} stayed in the swap cache after reclaim",
                    label(p, va)
                )));
            }
        }
        Ok(Outcome::Done(None, None))
    }

    fn force_empty(&self, dir: &Path) -> Result<(), OracleError> {
        match self.machine.force_empty(dir) {
            Ok(()) => Ok(()),
            Err(e) => {
                check_signal()?;
                Err(e)
            }
        }
    }

    fn kill_all(&mut self) {
        for w in self.procs.iter_mut().filter_map(Option::take).collect::<Vec<_>>().iter_mut() {
            kill_worker(w);
        }
    }
}

impl Drop for Controller<'_> {
    /// Also on unwinding: no worker outlives the run.
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Kills a worker and reaps it (bounded).
fn kill_worker(w: &mut Worker) {
    if let Some(pid) = rustix::process::Pid::from_raw(w.pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    reap(w);
}

/// Collects an exited worker: our own child through its handle, an orphan
/// re-parented to us through waitpid; a child of a live worker is reaped by
/// that worker (SIGCHLD ignored there), so ECHILD is the normal answer.
fn reap(w: &mut Worker) {
    let deadline = Instant::now() + Duration::from_secs(5);
    if let Some(child) = w.child.as_mut() {
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        return;
    }
    while Instant::now() < deadline {
        let Some(pid) = rustix::process::Pid::from_raw(w.pid) else { return };
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            Ok(None) => {}
            _ => return, // reaped, or not our child (ECHILD)
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The VMAs of /proc/PID/maps that hold a page of the scenario (`pages`,
/// sorted): the worker's own program, libraries, heap and stack are left
/// out.
fn scenario_maps(pid: i32, pages: &[u64]) -> Result<Vec<MapLine>, OracleError> {
    let path = PathBuf::from(format!("/proc/{pid}/maps"));
    let text = std::fs::read_to_string(&path).map_err(|e| OracleError::io(&path, e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        let (Some(range), Some(perms)) = (cols.next(), cols.next()) else { continue };
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let i = pages.partition_point(|&va| va < start);
        if pages.get(i).is_some_and(|&va| va < end) {
            out.push(MapLine { start, end, perms: perms.to_string() });
        }
    }
    Ok(out)
}
