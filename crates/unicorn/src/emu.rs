//! Unicorn as the CPU, ptemu as its MMU and kernel.
//!
//! Unicorn runs with `TlbType::VIRTUAL`: QEMU's softmmu TLB stays (the
//! fast path of every load, store and fetch), and each TLB fill is handed
//! to [`fill`], which answers with ptemu's hardware walk
//! (`pgtable::walk::translate`, user mode, WP and NXE on) over the current
//! process's tables in the machine's physical memory. That memory is
//! Unicorn's guest-physical RAM: the machine's mmap'd region is mapped at
//! guest-physical 0 with `mem_map_ptr`, so a fill returns the frame the
//! walk found and QEMU reads and writes the very bytes mm owns.
//!
//! A walk that faults goes to mm's page-fault handler
//! ([`mm::Machine::page_fault`]: do_anonymous_page, do_wp_page,
//! do_swap_page in the machine's era) and is retried; SIGSEGV ends the
//! process with ptemu's error code and the exact faulting address.
//!
//! Stale translations: QEMU caches what a fill returned. A write is
//! granted only once the leaf is Dirty (as QEMU and Bochs do), so the
//! first write to a clean page fills again and ptemu sets D. Every PTE
//! the kernel changes or removes is reported by mm's TLB shootdown log
//! ([`mm::Machine::take_tlb_flushes`]); a shootdown for the running process
//! flushes Unicorn's TLB (`uc_ctl` TLB_FLUSH, the only flush Unicorn 2.1
//! exposes: flushing more than required is always legal). A process switch
//! flushes it too (one address space per TLB, as a CR3 write without PCID).
//!
//! The `syscall` instruction is the kernel's entry: [`sys`] gives the guest
//! mmap, munmap, mprotect, madvise, fork, exit, wait4, sched_yield,
//! getpid, write (captured output) and ptemu's reclaim request.

use std::collections::BTreeMap;

use mm::{Era, Machine, MachineConfig, Oops, Outcome, Pid, Prot, Segv, SegvCode, Violation};
use pgtable::walk::{Access, CpuState, PfErrorCode};
use pgtable::{Fault, PhysAddr, VirtAddr};
use unicorn_engine::{
    Arch, Context, MemType, Mode, Prot as UcProt, RegisterX86, TlbEntry, TlbType, Unicorn, X86Insn,
};

use crate::error::UnicornError;
use crate::image::Image;

/// Guest-physical address of the page a SIGSEGV'ing access is sent to, so
/// that its exact address (the fill only names the page) is captured.
const TRAP_PA: u64 = 1 << 44;

/// The syscall number of ptemu's reclaim request: `reclaim(addr, len)`
/// pages out every page mapped in the range (`try_to_unmap` + pageout),
/// as the scenario language's `reclaim` does. Returns the pages freed.
pub const SYS_PTEMU_RECLAIM: u64 = 0x5054_0001;

/// How to build the machine the guest runs on.
#[derive(Clone, Debug)]
pub struct EmuConfig {
    /// The kernel era.
    pub era: Era,
    /// Physical memory in bytes.
    pub memory: u64,
    /// One swap device of this many bytes.
    pub swap: u64,
    /// Run mm's invariant checker after every fault, not only after every
    /// syscall and process exit (where it always runs).
    pub check_every_fault: bool,
    /// Ignore mm's TLB shootdowns (never flush Unicorn's TLB for them).
    /// Wrong on purpose: only for showing what stale translations do.
    pub ignore_shootdowns: bool,
    /// Stop after this many guest instructions in one process slice (0: no
    /// limit). A runaway guest ends the run with an error.
    pub instruction_limit: usize,
}

impl EmuConfig {
    /// A machine of the era with `memory` bytes of RAM and as much swap.
    pub fn new(era: Era, memory: u64) -> Self {
        Self {
            era,
            memory,
            swap: memory,
            check_every_fault: true,
            ignore_shootdowns: false,
            instruction_limit: 0,
        }
    }
}

/// How a process ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by the page-fault handler's SIGSEGV.
    Segv(Segv),
    /// A non-canonical address: #GP, which Linux also answers with SIGSEGV.
    GeneralProtection {
        /// The address.
        addr: u64,
    },
}

impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit({c})"),
            Exit::Segv(s) => write!(f, "{s}"),
            Exit::GeneralProtection { addr } => {
                write!(f, "SIGSEGV (#GP, non-canonical address {addr:#x})")
            }
        }
    }
}

/// Counters of one run.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Stats {
    /// TLB fills Unicorn asked for.
    pub fills: u64,
    /// Page faults the kernel handled (the access then retried).
    pub faults: u64,
    /// Syscalls.
    pub syscalls: u64,
    /// Shootdowns mm reported.
    pub shootdowns: u64,
    /// Unicorn TLB flushes (shootdowns for the running process, switches).
    pub tlb_flushes: u64,
    /// Process switches.
    pub switches: u64,
    /// Invariant-checker runs.
    pub checks: u64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// How each process ended, by pid.
    pub exits: BTreeMap<Pid, Exit>,
    /// Everything the processes wrote to fd 1 and 2, in order.
    pub output: Vec<u8>,
    /// The oops that stopped the machine, if one did.
    pub oops: Option<Oops>,
    /// Violations the checker reported (each once, when it first
    /// appeared), each with the step it ran after.
    pub violations: Vec<(String, Violation)>,
    /// Counters.
    pub stats: Stats,
}

impl RunReport {
    /// The exit of the first process.
    pub fn first_exit(&self) -> Option<&Exit> {
        self.exits.values().next()
    }
}

/// Why emulation of the current slice stopped.
#[derive(Debug)]
enum Stop {
    Yield,
    Fork(Pid),
    Exit(i32),
    Wait {
        child: Pid,
        status: u64,
    },
    Segv(Segv),
    /// The faulting page is known; the exact address comes from the trap
    /// page's callback (or RIP, for a fetch).
    SegvPending(Segv),
    Gp(u64),
    Oops(Oops),
    Error(UnicornError),
}

/// The hooks' state: the machine and the running process.
pub(crate) struct State {
    pub(crate) machine: Machine,
    cur: Pid,
    cr3: PhysAddr,
    cpu: CpuState,
    stop: Option<Stop>,
    stats: Stats,
    check_every_fault: bool,
    ignore_shootdowns: bool,
    violations: Vec<(String, Violation)>,
    /// What the checker found last time: only new violations are
    /// recorded, as the scenario runner reports them.
    last_check: Vec<Violation>,
    output: Vec<u8>,
    mmap_next: u64,
}

#[derive(Debug)]
enum TaskState {
    Runnable,
    Waiting { child: Pid, status: u64 },
}

struct Task {
    ctx: Context,
    state: TaskState,
    /// A value for RAX to take when the task next runs (wait4's result).
    rax: Option<u64>,
}

/// Unicorn with a ptemu machine as MMU and kernel.
pub struct Emulator {
    uc: Unicorn<'static, State>,
    tasks: BTreeMap<Pid, Task>,
    exits: BTreeMap<Pid, Exit>,
    oops: Option<Oops>,
    instruction_limit: usize,
}

impl core::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Emulator").field("tasks", &self.tasks.keys()).finish_non_exhaustive()
    }
}

fn uc_err(what: &'static str) -> impl Fn(unicorn_engine::uc_error) -> UnicornError {
    move |e| UnicornError::Unicorn { what, err: format!("{e:?}") }
}

/// Where the first process's stack ends (exclusive) and how big it is.
pub const STACK_TOP: u64 = 0x7ff0_0000_0000;
/// Stack size.
pub const STACK_SIZE: u64 = 1 << 20;
/// Where mmap(NULL, ...) places mappings, upwards.
pub const MMAP_BASE: u64 = 0x5000_0000_0000;

impl Emulator {
    /// A machine of `cfg`'s era, Unicorn over its memory, and the image
    /// loaded as process 1 (text read-execute, data and bss read-write, a
    /// 1 MiB stack), ready to run at the image's entry point.
    pub fn new(cfg: &EmuConfig, image: &Image) -> Result<Self, UnicornError> {
        let mcfg = MachineConfig::new(cfg.era).memory(cfg.memory).swap(vec![cfg.swap]);
        let mut machine = Machine::new(mcfg)?;
        machine.track_tlb_flushes(true);
        let pid = machine.spawn()?;
        image.load(&mut machine, pid)?;
        if let o @ (Outcome::Done(Err(_)) | Outcome::Segv(_) | Outcome::Oops(_)) =
            machine.mmap(pid, STACK_TOP - STACK_SIZE, STACK_SIZE, Prot::Rw)?
        {
            return Err(UnicornError::Kernel(format!("mapping the stack: {o:?}")));
        }
        machine.take_tlb_flushes();
        let cr3 = machine.cr3(pid)?.addr();
        let mem_ptr = machine.phys_memory().as_ptr();
        let mem_len = machine.phys_memory().size();
        let state = State {
            machine,
            cur: pid,
            cr3,
            cpu: CpuState::default(),
            stop: None,
            stats: Stats::default(),
            check_every_fault: cfg.check_every_fault,
            ignore_shootdowns: cfg.ignore_shootdowns,
            violations: Vec::new(),
            last_check: Vec::new(),
            output: Vec::new(),
            mmap_next: MMAP_BASE,
        };
        let mut uc =
            Unicorn::new_with_data(Arch::X86, Mode::MODE_64, state).map_err(uc_err("uc_open"))?;
        uc.ctl_set_tlb_type(TlbType::VIRTUAL).map_err(uc_err("TLB type VIRTUAL"))?;
        map_machine_memory(&mut uc, mem_ptr, mem_len)?;
        uc.mmio_map(
            TRAP_PA,
            4096,
            Some(|uc: &mut Unicorn<'_, State>, off: u64, _size: usize| {
                trap(uc, off);
                0
            }),
            Some(|uc: &mut Unicorn<'_, State>, off: u64, _size: usize, _v: u64| trap(uc, off)),
        )
        .map_err(uc_err("trap page"))?;
        uc.add_tlb_hook(1, 0, fill).map_err(uc_err("TLB hook"))?;
        uc.add_insn_sys_hook(X86Insn::SYSCALL, 1, 0, sys).map_err(uc_err("syscall hook"))?;
        uc.reg_write(RegisterX86::RSP, STACK_TOP - 64).map_err(uc_err("RSP"))?;
        uc.reg_write(RegisterX86::RIP, image.entry).map_err(uc_err("RIP"))?;
        let mut ctx = uc.context_alloc().map_err(uc_err("context"))?;
        uc.context_save(&mut ctx).map_err(uc_err("context save"))?;
        let mut tasks = BTreeMap::new();
        tasks.insert(pid, Task { ctx, state: TaskState::Runnable, rax: None });
        Ok(Self {
            uc,
            tasks,
            exits: BTreeMap::new(),
            oops: None,
            instruction_limit: cfg.instruction_limit,
        })
    }

    /// The machine, for inspection.
    pub fn machine(&self) -> &Machine {
        &self.uc.get_data().machine
    }

    /// The machine, for operations between runs.
    pub fn machine_mut(&mut self) -> &mut Machine {
        &mut self.uc.get_data_mut().machine
    }

    /// Runs every process until all have exited, or the kernel oopsed.
    /// Scheduling is deterministic: the running process keeps the CPU
    /// until it exits, blocks in wait4 or yields; then the next runnable
    /// process by pid (after the current one, wrapping) runs.
    pub fn run(mut self) -> Result<RunReport, UnicornError> {
        let mut last: Option<Pid> = None;
        // The same process continues, but its saved registers must be
        // reloaded (after a fork, or a wait4 that returned at once).
        let mut restore = false;
        let mut cur = *self.tasks.keys().next().ok_or(UnicornError::NoProcess)?;
        loop {
            // Switch: restore the task's registers, point the MMU at its
            // tables, and drop every cached translation.
            if restore || last != Some(cur) {
                let task = self.tasks.get_mut(&cur).ok_or(UnicornError::NoProcess)?;
                self.uc.context_restore(&task.ctx).map_err(uc_err("context restore"))?;
                if let Some(rax) = task.rax.take() {
                    self.uc.reg_write(RegisterX86::RAX, rax).map_err(uc_err("RAX"))?;
                }
                if last != Some(cur) {
                    let st = self.uc.get_data_mut();
                    st.cur = cur;
                    st.cr3 = st.machine.cr3(cur)?.addr();
                    st.stats.switches += 1;
                    st.stats.tlb_flushes += 1;
                    self.uc.ctl_flush_tlb().map_err(uc_err("TLB flush"))?;
                }
                last = Some(cur);
                restore = false;
            }
            let rip = self.uc.reg_read(RegisterX86::RIP).map_err(uc_err("RIP"))?;
            let r = self.uc.emu_start(rip, 0, 0, self.instruction_limit);
            let stop = self.uc.get_data_mut().stop.take();
            let stop = match (stop, r) {
                (Some(s), _) => s,
                (None, Ok(())) => {
                    return Err(UnicornError::Runaway { pid: cur, limit: self.instruction_limit });
                }
                (None, Err(e)) => {
                    let rip = self.uc.reg_read(RegisterX86::RIP).unwrap_or(0);
                    return Err(UnicornError::Guest { pid: cur, rip, err: format!("{e:?}") });
                }
            };
            let mut ctx = self.uc.context_alloc().map_err(uc_err("context"))?;
            self.uc.context_save(&mut ctx).map_err(uc_err("context save"))?;
            match stop {
                Stop::Yield => {
                    self.task(cur)?.ctx = ctx;
                }
                Stop::Fork(child) => {
                    // The parent's registers (RAX = child pid) are saved;
                    // the child's are the same with RAX = 0.
                    self.task(cur)?.ctx = ctx;
                    self.uc.reg_write(RegisterX86::RAX, 0).map_err(uc_err("RAX"))?;
                    let mut cctx = self.uc.context_alloc().map_err(uc_err("context"))?;
                    self.uc.context_save(&mut cctx).map_err(uc_err("context save"))?;
                    self.tasks
                        .insert(child, Task { ctx: cctx, state: TaskState::Runnable, rax: None });
                    // The parent keeps the CPU (no address-space switch):
                    // its registers were just overwritten for the child.
                    restore = true;
                    continue;
                }
                Stop::Wait { child, status } => {
                    self.task(cur)?.ctx = ctx;
                    if self.exits.contains_key(&child) {
                        // Already a zombie: wait4 returns at once.
                        self.complete_wait(cur, child, status)?;
                        restore = true;
                        continue;
                    }
                    if !self.tasks.contains_key(&child) || child == cur {
                        self.task(cur)?.rax = Some(ECHILD);
                        restore = true;
                        continue;
                    }
                    self.task(cur)?.state = TaskState::Waiting { child, status };
                }
                Stop::Exit(code) => self.reap(cur, Exit::Code(code))?,
                Stop::Segv(s) => self.reap(cur, Exit::Segv(s))?,
                Stop::SegvPending(mut s) => {
                    // A fetch: the fault is at RIP, or on the next page when
                    // the instruction crosses into it.
                    let rip = self.uc.reg_read(RegisterX86::RIP).map_err(uc_err("RIP"))?;
                    if rip & !0xfff == s.addr {
                        s.addr = rip;
                    }
                    self.reap(cur, Exit::Segv(s))?
                }
                Stop::Gp(addr) => self.reap(cur, Exit::GeneralProtection { addr })?,
                Stop::Oops(o) => {
                    self.oops = Some(o);
                    break;
                }
                Stop::Error(e) => return Err(e),
            }
            match self.next_runnable(cur) {
                Some(n) => cur = n,
                None => break,
            }
        }
        let st = self.uc.get_data_mut();
        Ok(RunReport {
            exits: self.exits,
            output: std::mem::take(&mut st.output),
            oops: self.oops,
            violations: std::mem::take(&mut st.violations),
            stats: st.stats,
        })
    }

    fn task(&mut self, pid: Pid) -> Result<&mut Task, UnicornError> {
        self.tasks.get_mut(&pid).ok_or(UnicornError::NoProcess)
    }

    /// The process is gone: its address space torn down (exit_mmap, unless
    /// the exit syscall already did), a waiting parent woken with its
    /// status.
    fn reap(&mut self, pid: Pid, exit: Exit) -> Result<(), UnicornError> {
        self.tasks.remove(&pid);
        let st = self.uc.get_data_mut();
        if st.machine.process_exists(pid) {
            st.machine.set_step(format!("process {pid} killed"));
            match st.machine.exit(pid)? {
                Outcome::Oops(o) => self.oops = Some(o),
                Outcome::Done(()) | Outcome::Segv(_) => {}
            }
            st.machine.take_tlb_flushes();
            check(st, "exit");
        }
        self.exits.insert(pid, exit);
        let waiter = self.tasks.iter().find_map(|(&p, t)| match t.state {
            TaskState::Waiting { child, status } if child == pid => Some((p, status)),
            _ => None,
        });
        if let Some((parent, status_ptr)) = waiter {
            self.complete_wait(parent, pid, status_ptr)?;
        }
        Ok(())
    }

    /// wait4 returns in `parent`: the child's status stored at
    /// `status_ptr` (unless null), RAX = the child's pid.
    fn complete_wait(
        &mut self,
        parent: Pid,
        child: Pid,
        status_ptr: u64,
    ) -> Result<(), UnicornError> {
        let wstatus: u32 = match self.exits.get(&child) {
            Some(Exit::Code(c)) => ((*c as u32) & 0xff) << 8,
            Some(Exit::Segv(_) | Exit::GeneralProtection { .. }) => 11, // WTERMSIG = SIGSEGV
            None => return Err(UnicornError::Kernel(format!("wait4: {child} has not exited"))),
        };
        if status_ptr != 0 {
            let st = self.uc.get_data_mut();
            // The kernel's put_user into the parent: a user write through
            // the parent's tables, faulting as needed.
            if let o @ (Outcome::Segv(_) | Outcome::Oops(_)) =
                st.machine.write_bytes(parent, status_ptr, &wstatus.to_le_bytes())?
            {
                return Err(UnicornError::Kernel(format!("wait4 status write: {o:?}")));
            }
            st.machine.take_tlb_flushes();
        }
        let t = self.task(parent)?;
        t.state = TaskState::Runnable;
        t.rax = Some(u64::from(child.0));
        Ok(())
    }

    fn next_runnable(&self, after: Pid) -> Option<Pid> {
        let runnable = |(p, t): (&Pid, &Task)| matches!(t.state, TaskState::Runnable).then_some(*p);
        self.tasks
            .range(Pid(after.0 + 1)..)
            .find_map(runnable)
            .or_else(|| self.tasks.range(..=after).find_map(runnable))
    }
}

/// Maps the machine's physical memory as Unicorn's guest-physical RAM.
#[allow(unsafe_code)]
fn map_machine_memory(
    uc: &mut Unicorn<'static, State>,
    ptr: *mut u8,
    len: u64,
) -> Result<(), UnicornError> {
    // SAFETY: `ptr..ptr+len` is the machine's mmap'd region (phys's
    // `MappedRegion::as_ptr`), page aligned, and lives as long as the
    // machine, which the Unicorn instance owns in its data and drops after
    // the engine is closed. QEMU touches it only with the guest's own
    // (hardware-like) loads and stores, on single frames the MMU handed it,
    // from this thread, while the machine is not being mutated by Rust
    // (hooks run between guest instructions), which is the contract
    // `as_ptr` states. The frames it reaches are those ptemu's walk
    // returned, and every one that leaves a mapping is shot down first.
    unsafe { uc.mem_map_ptr(0, len, UcProt::ALL, ptr.cast()) }.map_err(uc_err("map machine memory"))
}

/// The trap page's callback: the access of a process the kernel has
/// decided to kill by SIGSEGV reached the page; its offset completes the
/// faulting address.
fn trap(uc: &mut Unicorn<'_, State>, off: u64) {
    let st = uc.get_data_mut();
    if let Some(Stop::SegvPending(mut s)) = st.stop.take() {
        s.addr = (s.addr & !0xfff) | (off & 0xfff);
        st.stop = Some(Stop::Segv(s));
    } else if st.stop.is_none() {
        st.stop = Some(Stop::Error(UnicornError::Kernel(format!(
            "access to the trap page at offset {off:#x} without a pending SIGSEGV"
        ))));
    }
    let _ = uc.emu_stop();
}

/// Runs the checker, recording violations under `after`.
fn check(st: &mut State, after: &str) {
    st.stats.checks += 1;
    match st.machine.check() {
        Ok(v) => {
            let step = format!("{after} ({})", st.machine.step());
            for x in &v {
                if !st.last_check.contains(x) {
                    st.violations.push((step.clone(), x.clone()));
                }
            }
            st.last_check = v;
        }
        Err(e) => st.stop = Some(Stop::Error(e.into())),
    }
}

/// Takes mm's shootdowns; flushes Unicorn's TLB if one concerns the
/// running process.
fn shootdown(uc: &mut Unicorn<'_, State>) {
    let st = uc.get_data_mut();
    let flushes = st.machine.take_tlb_flushes();
    st.stats.shootdowns += flushes.len() as u64;
    if !st.ignore_shootdowns && flushes.iter().any(|f| f.pid == st.cur) {
        st.stats.tlb_flushes += 1;
        if let Err(e) = uc.ctl_flush_tlb() {
            uc.get_data_mut().stop = Some(Stop::Error(uc_err("TLB flush")(e)));
        }
    }
}

/// What a fill answers when the walk succeeds: ptemu's hardware walk over
/// `mem` from `cr3` (setting A, and D for a write), the page's frame, and
/// the permissions QEMU may cache: read; write only once the leaf is Dirty
/// (the first write to a clean page fills again and the walk sets D, as
/// QEMU's own walker and Bochs arrange); execute unless NX.
pub fn walk_fill(
    mem: &phys::PhysMemory,
    cr3: PhysAddr,
    va: VirtAddr,
    access: Access,
    cpu: &CpuState,
) -> Result<TlbEntry, Fault> {
    let mut m = mem;
    let t = pgtable::walk::translate(&mut m, cr3, va, access, cpu)?;
    let mut perms = UcProt::READ;
    if t.perms.writable && t.leaf_entry & (1 << 6) != 0 {
        perms |= UcProt::WRITE;
    }
    if !t.perms.nx {
        perms |= UcProt::EXEC;
    }
    Ok(TlbEntry { paddr: t.pa.as_u64() & !0xfff, perms })
}

/// The access kind of a fill.
pub fn access_of(ty: MemType) -> Access {
    match ty {
        MemType::WRITE => Access::Write,
        MemType::FETCH => Access::Fetch,
        _ => Access::Read,
    }
}

/// The TLB fill: ptemu's walk, the page-fault handler on a fault, retry.
pub(crate) fn fill(uc: &mut Unicorn<'_, State>, va: u64, ty: MemType) -> Option<TlbEntry> {
    let access = access_of(ty);
    {
        let st = uc.get_data_mut();
        if st.stop.is_some() {
            return None;
        }
        st.stats.fills += 1;
    }
    let Ok(vaddr) = VirtAddr::new(va) else {
        uc.get_data_mut().stop = Some(Stop::Gp(va));
        return None;
    };
    for _ in 0..8 {
        let st = uc.get_data_mut();
        match walk_fill(st.machine.phys_memory(), st.cr3, vaddr, access, &st.cpu) {
            Ok(e) => return Some(e),
            Err(Fault::PageFault(pf)) => {
                let pid = st.cur;
                let what = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Fetch => "fetch",
                };
                st.machine.set_step(format!("process {pid} {what} fault at {va:#x}"));
                match st.machine.page_fault(pid, va, pf.error_code) {
                    Ok(Outcome::Done(())) => {
                        st.stats.faults += 1;
                        if st.check_every_fault {
                            check(st, "fault");
                        }
                        shootdown(uc);
                        if uc.get_data().stop.is_some() {
                            return None;
                        }
                    }
                    Ok(Outcome::Segv(s)) => {
                        shootdown(uc);
                        let st = uc.get_data_mut();
                        if access == Access::Fetch {
                            st.stop = Some(Stop::SegvPending(s));
                            return None;
                        }
                        // Send the access to the trap page, whose callback
                        // learns the exact address and stops the CPU.
                        st.stop = Some(Stop::SegvPending(s));
                        return Some(TlbEntry {
                            paddr: TRAP_PA,
                            perms: UcProt::READ | UcProt::WRITE,
                        });
                    }
                    Ok(Outcome::Oops(o)) => {
                        uc.get_data_mut().stop = Some(Stop::Oops(o));
                        return None;
                    }
                    Err(e) => {
                        uc.get_data_mut().stop = Some(Stop::Error(e.into()));
                        return None;
                    }
                }
            }
            Err(e) => {
                st.stop = Some(Stop::Error(UnicornError::Walk(e.to_string())));
                return None;
            }
        }
    }
    let pid = uc.get_data().cur;
    uc.get_data_mut().stop =
        Some(Stop::Error(UnicornError::Kernel(format!("{pid}: access to {va:#x} keeps faulting"))));
    None
}

const EINVAL: u64 = (-22i64) as u64;
const ENOMEM: u64 = (-12i64) as u64;
const ECHILD: u64 = (-10i64) as u64;
const ENOSYS: u64 = (-38i64) as u64;
const EFAULT: u64 = (-14i64) as u64;

fn prot_of(bits: u64) -> Option<Prot> {
    // PROT_READ 1, PROT_WRITE 2, PROT_EXEC 4.
    Some(match bits {
        0 => Prot::None,
        1 => Prot::R,
        3 => Prot::Rw,
        5 => Prot::Rx,
        7 => Prot::Rwx,
        _ => return None,
    })
}

/// The `syscall` instruction: Linux's x86-64 calling convention (number in
/// RAX, arguments in RDI, RSI, RDX, R10, R8, R9; result in RAX, -errno on
/// failure).
pub(crate) fn sys(uc: &mut Unicorn<'_, State>) {
    let r = |uc: &Unicorn<'_, State>, reg| uc.reg_read(reg).unwrap_or(0);
    let nr = r(uc, RegisterX86::RAX);
    let a0 = r(uc, RegisterX86::RDI);
    let a1 = r(uc, RegisterX86::RSI);
    let a2 = r(uc, RegisterX86::RDX);
    let a3 = r(uc, RegisterX86::R10);
    let st = uc.get_data_mut();
    if st.stop.is_some() {
        // The process is being killed (its access reached the trap page).
        let _ = uc.emu_stop();
        return;
    }
    st.stats.syscalls += 1;
    let pid = st.cur;
    let m = &mut st.machine;
    m.set_step(format!("process {pid} {}", sys_name(nr)));
    let mut stop = None;
    let res: Result<Outcome<u64>, mm::MmError> = match nr {
        // write(fd, buf, len): fd 1 and 2 go to the run's output.
        1 => {
            if a0 != 1 && a0 != 2 || a2 > 1 << 20 {
                Ok(Outcome::Done(EINVAL))
            } else {
                let mut buf = vec![0u8; a2 as usize];
                match m.read_bytes(pid, a1, &mut buf) {
                    Ok(Outcome::Done(())) => {
                        st.output.extend_from_slice(&buf);
                        Ok(Outcome::Done(a2))
                    }
                    Ok(Outcome::Segv(_)) => Ok(Outcome::Done(EFAULT)),
                    other => other.map(|o| o.map(|()| 0)),
                }
            }
        }
        // mmap(addr, len, prot, flags, fd, off): private anonymous only;
        // an address is MAP_FIXED_NOREPLACE, none picks the next free one.
        9 => {
            let flags = a3;
            match prot_of(a2) {
                _ if flags & 0x22 != 0x22 => Ok(Outcome::Done(EINVAL)), // MAP_PRIVATE|MAP_ANONYMOUS
                None => Ok(Outcome::Done(EINVAL)),
                Some(prot) => {
                    let addr = if a0 == 0 {
                        let a = st.mmap_next;
                        // A guard gap, so that mappings never touch.
                        st.mmap_next += a1.next_multiple_of(4096) + 4096;
                        a
                    } else {
                        a0
                    };
                    m.mmap(pid, addr, a1, prot).map(|o| o.map(|r| sys_ret(r, addr)))
                }
            }
        }
        // mprotect(addr, len, prot)
        10 => match prot_of(a2) {
            None => Ok(Outcome::Done(EINVAL)),
            Some(prot) => m.mprotect(pid, a0, a1, prot).map(|o| o.map(|r| sys_ret(r, 0))),
        },
        // munmap(addr, len)
        11 => m.munmap(pid, a0, a1).map(|o| o.map(|r| sys_ret(r, 0))),
        // sched_yield()
        24 => {
            stop = Some(Stop::Yield);
            Ok(Outcome::Done(0))
        }
        // madvise(addr, len, advice): MADV_DONTNEED (4) zaps; MADV_PAGEOUT
        // (21) is ptemu's reclaim of the range.
        28 => match a2 {
            4 => m.madvise_dontneed(pid, a0, a1).map(|o| o.map(|r| sys_ret(r, 0))),
            21 => reclaim(m, pid, a0, a1).map(|o| o.map(|_| 0)),
            _ => Ok(Outcome::Done(EINVAL)),
        },
        // getpid()
        39 => Ok(Outcome::Done(u64::from(pid.0))),
        // fork()
        57 => match m.fork(pid) {
            Ok(Outcome::Done(child)) => {
                stop = Some(Stop::Fork(child));
                Ok(Outcome::Done(u64::from(child.0)))
            }
            Ok(Outcome::Segv(s)) => Ok(Outcome::Segv(s)),
            Ok(Outcome::Oops(o)) => Ok(Outcome::Oops(o)),
            Err(mm::MmError::OutOfMemory { .. }) => Ok(Outcome::Done(ENOMEM)),
            Err(e) => Err(e),
        },
        // exit(code), exit_group(code)
        60 | 231 => {
            let r = m.exit(pid);
            stop = Some(Stop::Exit(a0 as i32));
            r.map(|o| o.map(|()| 0))
        }
        // wait4(pid, status, options, rusage): a child of ours, blocking.
        61 => {
            let child = Pid(a0 as u32);
            stop = Some(Stop::Wait { child, status: a1 });
            Ok(Outcome::Done(0))
        }
        SYS_PTEMU_RECLAIM => reclaim(m, pid, a0, a1),
        _ => Ok(Outcome::Done(ENOSYS)),
    };
    let st = uc.get_data_mut();
    match res {
        Ok(Outcome::Done(v)) => {
            let _ = uc.reg_write(RegisterX86::RAX, v);
        }
        Ok(Outcome::Oops(o)) => stop = Some(Stop::Oops(o)),
        Ok(Outcome::Segv(s)) => stop = Some(Stop::Segv(s)),
        Err(e) => {
            let _ = st;
            stop = Some(Stop::Error(e.into()));
        }
    }
    shootdown(uc);
    let st = uc.get_data_mut();
    if !matches!(stop, Some(Stop::Oops(_) | Stop::Error(_))) {
        check(st, "syscall");
    }
    if let Some(s) = stop {
        if st.stop.is_none() {
            st.stop = Some(s);
        }
    }
    if st.stop.is_some() {
        let _ = uc.emu_stop();
    }
}

/// The name of a syscall number, for step labels.
fn sys_name(nr: u64) -> String {
    match nr {
        1 => "write".into(),
        9 => "mmap".into(),
        10 => "mprotect".into(),
        11 => "munmap".into(),
        24 => "sched_yield".into(),
        28 => "madvise".into(),
        39 => "getpid".into(),
        57 => "fork".into(),
        60 => "exit".into(),
        61 => "wait4".into(),
        231 => "exit_group".into(),
        SYS_PTEMU_RECLAIM => "reclaim".into(),
        n => format!("syscall {n}"),
    }
}

/// A syscall's return value: `ok` on success, -errno on failure.
fn sys_ret(r: mm::SysResult, ok: u64) -> u64 {
    match r {
        Ok(()) => ok,
        Err(e) => (-i64::from(e.raw())) as u64,
    }
}

/// ptemu's reclaim request over `[addr, addr + len)`: the pages freed.
fn reclaim(m: &mut Machine, pid: Pid, addr: u64, len: u64) -> Result<Outcome<u64>, mm::MmError> {
    match m.reclaim(pid, addr, len.next_multiple_of(4096).max(4096), false) {
        Ok(o) => Ok(o.map(|v| {
            v.iter().filter(|r| matches!(r, mm::ReclaimResult::Freed { .. })).count() as u64
        })),
        Err(mm::MmError::BadAddress { .. } | mm::MmError::BadLength { .. }) => {
            Ok(Outcome::Done(EINVAL))
        }
        Err(e) => Err(e),
    }
}

/// Why a SIGSEGV was sent, for reports.
pub fn segv_code_name(c: SegvCode) -> &'static str {
    c.as_str()
}

/// PfErrorCode bits as the report prints them.
pub fn pf_bits(e: u32) -> PfErrorCode {
    PfErrorCode::from_bits_truncate(e)
}
