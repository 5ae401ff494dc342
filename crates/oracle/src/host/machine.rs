//! The host resources a run borrows and must give back: a machine-wide lock,
//! swap files, a memory cgroup tree, the vm.page-cluster sysctl, the
//! child-subreaper attribute and the SIGINT/SIGTERM/SIGHUP handlers.
//!
//! [`Machine`] restores everything in `teardown`, which its `Drop` also runs,
//! so an error or an interrupt (the handlers only set a flag that every wait
//! polls) still leaves the machine as it was. Whatever a killed run left
//! behind is recognisable by name and removed by the next run, under the
//! lock, before it sets up its own.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::OracleError;

/// The cgroup v1 memory hierarchy.
const MEMCG_ROOT: &str = "/sys/fs/cgroup/memory";
/// Where swap files live (must be a disk file system, not tmpfs).
const SWAP_DIR: &str = "/var/tmp";
/// Prefix of every resource a run creates.
const PREFIX: &str = "ptemu-oracle-";
/// The machine-wide lock: two runs at once would share swap devices.
const LOCK_PATH: &str = "/var/tmp/ptemu-oracle.lock";
/// The sysctl the run changes, and where its old value is kept while changed.
const PAGE_CLUSTER: &str = "/proc/sys/vm/page-cluster";
const PAGE_CLUSTER_SAVE: &str = "/var/tmp/ptemu-oracle.page-cluster";
/// How long to wait for another run to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// Smallest swap file: the header page and one slot (the scenario
/// language's minimum too). Sizes are mirrored exactly, since a full
/// device changes what reclaim does.
const MIN_SWAP_BYTES: u64 = 2 * 4096;

/// Signal number that interrupted the run, 0 while none has.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);
/// Numbers the resources of successive runs in one process.
static RUN_SEQ: AtomicU32 = AtomicU32::new(0);

/// The signal that interrupted the run, or 0.
pub(crate) fn interrupted() -> i32 {
    SIGNALLED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

const CAUGHT: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn write_file(path: &Path, text: &str) -> Result<(), OracleError> {
    let mut f = OpenOptions::new().write(true).open(path).map_err(|e| OracleError::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| OracleError::io(path, e))
}

/// Checks what the oracle needs, without changing anything.
pub(crate) fn check_host() -> Result<(), OracleError> {
    let un = |s: String| Err(OracleError::Unavailable(s));
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 {
        return un(format!("it needs root (running as uid {euid})"));
    }
    let mut b = [0u8; 8];
    match File::open("/proc/kpageflags").and_then(|f| f.read_exact_at(&mut b, 0)) {
        Ok(()) => {}
        Err(e) => return un(format!("/proc/kpageflags is not readable: {e}")),
    }
    if !Path::new(MEMCG_ROOT).join("memory.force_empty").exists() {
        return un(format!(
            "no cgroup v1 memory controller at {MEMCG_ROOT} (memory.force_empty missing)"
        ));
    }
    let swaps = fs::read_to_string("/proc/swaps").map_err(|e| OracleError::io("/proc/swaps", e))?;
    let foreign: Vec<&str> = swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| !is_ours(p))
        .collect();
    if !foreign.is_empty() {
        return un(format!(
            "other swap devices are active ({}); their slots would mix with the oracle's",
            foreign.join(", ")
        ));
    }
    if !Path::new(PAGE_CLUSTER).exists() {
        return un(format!("{PAGE_CLUSTER} is missing"));
    }
    Ok(())
}

fn is_ours(path: &str) -> bool {
    Path::new(path).file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX))
}

/// Everything one run set up. Created by [`Machine::setup`].
#[derive(Debug)]
pub(crate) struct Machine {
    lock: Option<File>,
    /// The run's top memory cgroup; workers live here between steps.
    top: PathBuf,
    top_made: bool,
    /// `top/mem`: limited to the scenario's memory; the step cgroups live
    /// under it, so everything the scenario's accesses allocate counts
    /// against the limit and pressure reclaim happens as in ptemu.
    mem: PathBuf,
    mem_made: bool,
    /// The scenario's memory, in bytes.
    memory: u64,
    /// What creating the step cgroups charged to `mem` itself (the kernel
    /// charges a new memory cgroup's own structures, about 256K with their
    /// per-CPU counters, to its parent): added to the limit, so that the
    /// scenario's pages have exactly `memory` to live in.
    bookkeeping: u64,
    /// Step cgroups in creation order, with their inode numbers.
    steps: Vec<(PathBuf, u64)>,
    /// Swap files created (and whether each is on).
    swaps: Vec<(PathBuf, bool)>,
    page_cluster_saved: bool,
    subreaper_set: bool,
    old_actions: Vec<(libc::c_int, libc::sigaction)>,
    torn_down: bool,
}

impl Machine {
    /// Locks the machine, removes leftovers of killed runs, installs the
    /// signal handlers, and creates one swap file per entry of `swaps`
    /// (type i gets the i-th highest priority) and the cgroup tree.
    pub(crate) fn setup(swaps: &[u64], memory: u64) -> Result<Machine, OracleError> {
        let seq = RUN_SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let top = Path::new(MEMCG_ROOT).join(format!("{PREFIX}{pid}-{seq}"));
        let mut m = Machine {
            lock: None,
            mem: top.join("mem"),
            mem_made: false,
            memory,
            bookkeeping: 0,
            top,
            top_made: false,
            steps: Vec::new(),
            swaps: Vec::new(),
            page_cluster_saved: false,
            subreaper_set: false,
            old_actions: Vec::new(),
            torn_down: false,
        };
        m.install_signals();
        m.lock = Some(take_lock()?);
        remove_leftovers()?;
        check_host()?;
        // Swap-in of one page must read one page: page-cluster 0 turns off
        // both cluster and VMA-based readahead, which would otherwise pull
        // neighbouring slots into the swap cache.
        let old = fs::read_to_string(PAGE_CLUSTER).map_err(|e| OracleError::io(PAGE_CLUSTER, e))?;
        fs::write(PAGE_CLUSTER_SAVE, old.trim())
            .map_err(|e| OracleError::io(PAGE_CLUSTER_SAVE, e))?;
        m.page_cluster_saved = true;
        write_file(Path::new(PAGE_CLUSTER), "0")?;
        fs::create_dir(&m.top).map_err(|e| OracleError::io(&m.top, e))?;
        m.top_made = true;
        write_file(&m.top.join("memory.swappiness"), "100")?;
        fs::create_dir(&m.mem).map_err(|e| OracleError::io(&m.mem, e))?;
        m.mem_made = true;
        write_file(&m.mem.join("memory.swappiness"), "100")?;
        // The scenario's `memory`: the kernel rounds the limit down to whole
        // pages; charges above it are reclaimed from this subtree (to the
        // run's swap devices, whose sizes are the scenario's).
        write_file(&m.mem.join("memory.limit_in_bytes"), &memory.to_string())?;
        for (i, &bytes) in swaps.iter().enumerate() {
            let path = Path::new(SWAP_DIR).join(format!("{PREFIX}{pid}-{seq}-{i}.swap"));
            make_swap_file(&path, bytes.max(MIN_SWAP_BYTES))?;
            m.swaps.push((path.clone(), false));
            let prio = 1000 - i as i32;
            swapon(&path, prio)?;
            if let Some(last) = m.swaps.last_mut() {
                last.1 = true;
            }
        }
        // Orphaned workers (a scenario parent exited before its child) are
        // re-parented to us so that we can reap them.
        if rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok() {
            m.subreaper_set = true;
        }
        check_signal()?;
        Ok(m)
    }

    /// Catches SIGINT, SIGTERM and SIGHUP for the run. A signal caught once
    /// stays recorded for the life of the process: one that lands after a
    /// run's last check must still stop the next run at its first, or a
    /// caller running plan after plan (`ptemu explore --oracle`) would never
    /// notice it.
    fn install_signals(&mut self) {
        for sig in CAUGHT {
            // SAFETY: the handler only stores to an atomic; no SA_RESTART so
            // blocking calls return EINTR and the run notices at once.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut old) == 0 {
                    self.old_actions.push((sig, old));
                }
            }
        }
    }

    /// Moves `pid` into the top cgroup.
    pub(crate) fn enter_top(&self, pid: i32) -> Result<(), OracleError> {
        write_file(&self.top.join("cgroup.procs"), &pid.to_string())
    }

    /// Creates the cgroup of step `n` and moves `pid` into it; pages the
    /// step allocates are charged there, which is what lets a later reclaim
    /// take exactly them.
    pub(crate) fn enter_step(&mut self, n: usize, pid: i32) -> Result<(), OracleError> {
        let dir = self.mem.join(format!("s{n}"));
        if !dir.exists() {
            // Room for the new cgroup's own structures, measured and kept
            // out of the scenario's share; the workers are idle meanwhile.
            let before = self.usage()?;
            self.set_limit(before + (64 << 20))?;
            fs::create_dir(&dir).map_err(|e| OracleError::io(&dir, e))?;
            let after = self.usage()?;
            self.bookkeeping += after.saturating_sub(before);
            self.set_limit(self.memory + self.bookkeeping)?;
            let ino = fs::metadata(&dir).map_err(|e| OracleError::io(&dir, e))?.ino();
            self.steps.push((dir.clone(), ino));
            write_file(&dir.join("memory.swappiness"), "100")?;
        }
        write_file(&dir.join("cgroup.procs"), &pid.to_string())
    }

    fn usage(&self) -> Result<u64, OracleError> {
        let path = self.mem.join("memory.usage_in_bytes");
        let text = fs::read_to_string(&path).map_err(|e| OracleError::io(&path, e))?;
        text.trim().parse().map_err(|_| {
            OracleError::io(&path, std::io::Error::other(format!("not a number: {text:?}")))
        })
    }

    fn set_limit(&self, bytes: u64) -> Result<(), OracleError> {
        write_file(&self.mem.join("memory.limit_in_bytes"), &bytes.to_string())
    }

    /// The step cgroup with inode `ino`, if it is one of ours.
    pub(crate) fn step_cgroup(&self, ino: u64) -> Option<&Path> {
        self.steps.iter().find(|(_, i)| *i == ino).map(|(p, _)| p.as_path())
    }

    /// Whether every swap device of this run is full (from /proc/swaps:
    /// used equals size), in which case reclaim legitimately leaves pages.
    pub(crate) fn swap_full(&self) -> Result<bool, OracleError> {
        let text =
            fs::read_to_string("/proc/swaps").map_err(|e| OracleError::io("/proc/swaps", e))?;
        let mut any = false;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(path), Some(size), Some(used)) = (cols.first(), cols.get(2), cols.get(3))
            else {
                continue;
            };
            if !self.swaps.iter().any(|(p, on)| *on && p.as_os_str() == *path) {
                continue;
            }
            any = true;
            if size != used {
                return Ok(false);
            }
        }
        Ok(any)
    }

    /// Reclaims everything charged to the step cgroup at `dir`.
    pub(crate) fn force_empty(&self, dir: &Path) -> Result<(), OracleError> {
        write_file(&dir.join("memory.force_empty"), "0")
    }

    /// Gives everything back; returns what could not be restored.
    pub(crate) fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        for (path, on) in self.swaps.iter_mut().rev() {
            if *on {
                if let Err(e) = swapoff(path) {
                    problems.push(e.to_string());
                    continue;
                }
                *on = false;
            }
            if let Err(e) = fs::remove_file(&*path) {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        for (dir, _) in self.steps.iter().rev() {
            if let Err(e) = remove_cgroup(dir) {
                problems.push(e);
            }
        }
        if self.mem_made {
            if let Err(e) = remove_cgroup(&self.mem) {
                problems.push(e);
            }
        }
        if self.top_made {
            if let Err(e) = remove_cgroup(&self.top) {
                problems.push(e);
            }
        }
        if self.page_cluster_saved {
            if let Err(e) = restore_page_cluster() {
                problems.push(e.to_string());
            }
        }
        if self.subreaper_set {
            let _ = rustix::process::set_child_subreaper(None);
        }
        for (sig, old) in self.old_actions.drain(..) {
            // SAFETY: restoring the disposition saved at setup.
            unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
        }
        self.lock = None;
        problems
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        for p in self.teardown() {
            eprintln!("ptemu oracle: could not restore: {p}");
        }
    }
}

/// An error when SIGINT/SIGTERM/SIGHUP has arrived.
pub(crate) fn check_signal() -> Result<(), OracleError> {
    match interrupted() {
        0 => Ok(()),
        sig => Err(OracleError::Interrupted(sig)),
    }
}

fn take_lock() -> Result<File, OracleError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(LOCK_PATH)
        .map_err(|e| OracleError::io(LOCK_PATH, e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            return Ok(f);
        }
        check_signal()?;
        if Instant::now() >= deadline {
            return Err(OracleError::Unavailable(format!(
                "another oracle run has held {LOCK_PATH} for over {} s",
                LOCK_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes what a killed run left: its swap files (off first), its cgroups
/// (killing any worker still in them) and the sysctl it changed. Only
/// called under the lock, when no other run can own such resources.
fn remove_leftovers() -> Result<(), OracleError> {
    if Path::new(PAGE_CLUSTER_SAVE).exists() {
        restore_page_cluster()?;
    }
    let swaps = fs::read_to_string("/proc/swaps").map_err(|e| OracleError::io("/proc/swaps", e))?;
    for path in swaps.lines().skip(1).filter_map(|l| l.split_whitespace().next()) {
        if is_ours(path) {
            swapoff(Path::new(path))?;
        }
    }
    if let Ok(dir) = fs::read_dir(SWAP_DIR) {
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PREFIX) && name.ends_with(".swap") {
                fs::remove_file(e.path()).map_err(|err| OracleError::io(e.path(), err))?;
            }
        }
    }
    let dir = fs::read_dir(MEMCG_ROOT).map_err(|e| OracleError::io(MEMCG_ROOT, e))?;
    for e in dir.flatten() {
        if e.file_name().to_string_lossy().starts_with(PREFIX) && e.path().is_dir() {
            // Children before parents: a cgroup with children cannot go.
            let mut all = Vec::new();
            cgroup_tree(&e.path(), &mut all)?;
            for d in &all {
                kill_members(d);
            }
            for d in &all {
                remove_cgroup(d).map_err(OracleError::Unavailable)?;
            }
        }
    }
    Ok(())
}

/// `dir` and every cgroup below it, deepest first.
fn cgroup_tree(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), OracleError> {
    let mut subs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|err| OracleError::io(dir, err))?
        .flatten()
        .map(|s| s.path())
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    for s in &subs {
        cgroup_tree(s, out)?;
    }
    out.push(dir.to_path_buf());
    Ok(())
}

fn kill_members(dir: &Path) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// rmdir with a bounded retry: a cgroup whose last task just exited can be
/// busy for a moment.
fn remove_cgroup(dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                if Instant::now() >= deadline {
                    return Err(format!("{}: {e}", dir.display()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn restore_page_cluster() -> Result<(), OracleError> {
    let old =
        fs::read_to_string(PAGE_CLUSTER_SAVE).map_err(|e| OracleError::io(PAGE_CLUSTER_SAVE, e))?;
    write_file(Path::new(PAGE_CLUSTER), old.trim())?;
    fs::remove_file(PAGE_CLUSTER_SAVE).map_err(|e| OracleError::io(PAGE_CLUSTER_SAVE, e))
}

/// Allocates `bytes` (rounded down to pages) and writes a version-1 swap
/// header: what mkswap would write, minus label and UUID.
fn make_swap_file(path: &Path, bytes: u64) -> Result<(), OracleError> {
    let pages = bytes / 4096;
    let last_page = u32::try_from(pages.saturating_sub(1)).map_err(|_| {
        OracleError::Unavailable(format!("swap size {bytes} is too large for a swap header"))
    })?;
    let f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| OracleError::io(path, e))?;
    if let Err(e) = rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, pages * 4096)
    {
        let _ = fs::remove_file(path);
        return Err(OracleError::Unavailable(format!("fallocate {}: {e}", path.display())));
    }
    let mut header = [0u8; 4096];
    header[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    header[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    header[4086..4096].copy_from_slice(b"SWAPSPACE2");
    f.write_all_at(&header, 0).map_err(|e| OracleError::io(path, e))?;
    f.sync_all().map_err(|e| OracleError::io(path, e))
}

fn cpath(path: &Path) -> Result<std::ffi::CString, OracleError> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| OracleError::Unavailable(format!("{} contains a NUL byte", path.display())))
}

fn swapon(path: &Path, prio: i32) -> Result<(), OracleError> {
    let c = cpath(path)?;
    // <linux/swap.h>: SWAP_FLAG_PREFER and the priority in the low 15 bits.
    const SWAP_FLAG_PREFER: i32 = 0x8000;
    const SWAP_FLAG_PRIO_MASK: i32 = 0x7fff;
    let flags = SWAP_FLAG_PREFER | (prio & SWAP_FLAG_PRIO_MASK);
    // SAFETY: a valid C string path.
    if unsafe { libc::swapon(c.as_ptr(), flags) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(OracleError::Unavailable(format!("swapon {} failed: {e}", path.display())));
    }
    Ok(())
}

fn swapoff(path: &Path) -> Result<(), OracleError> {
    let c = cpath(path)?;
    // swapoff gives up with EINTR when a signal is pending; a second Ctrl-C
    // must not leave the swap file on, so retry a few times.
    for _ in 0..10 {
        // SAFETY: a valid C string path.
        if unsafe { libc::swapoff(c.as_ptr()) } == 0 {
            return Ok(());
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    Err(OracleError::sys(format!("swapoff {}", path.display())))
}
