//! The worker: one real process per scenario process, doing exactly what the
//! controller asks over its channel (fd 3) and nothing else.
//!
//! The worker is a fresh image (the controller execs it with address-space
//! randomisation off), so the scenario's addresses are free unless they
//! collide with the image's own mappings, which mmap reports. Its own memory
//! is touched once up front (`warm_up`) so that while it sits in a step's
//! memory cgroup the only pages it faults in are the scenario's.
//!
//! Loads and stores are single x86-64 instructions in inline assembly with a
//! recovery point: a SIGSEGV on exactly that instruction resumes after it
//! with a flag set, which is how the worker reports `segv` like the scenario
//! language does instead of dying.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::channel::{Channel, Msg};

/// The descriptor a worker finds its channel on.
pub(crate) const CHANNEL_FD: RawFd = 3;

/// Opcodes of the worker protocol.
pub(crate) mod op {
    /// mmap(addr, len, prot) with MAP_FIXED_NOREPLACE.
    pub const MMAP: u64 = 1;
    /// munmap(addr, len).
    pub const MUNMAP: u64 = 2;
    /// mprotect(addr, len, prot).
    pub const MPROTECT: u64 = 3;
    /// madvise(addr, len, advice).
    pub const MADVISE: u64 = 4;
    /// Store byte args[1] at args[0].
    pub const WRITE: u64 = 5;
    /// Load the byte at args[0].
    pub const READ: u64 = 6;
    /// Fork; the message carries the child's channel.
    pub const FORK: u64 = 7;
    /// Exit now.
    pub const EXIT: u64 = 8;
    /// Exec a fresh worker image.
    pub const EXECVE: u64 = 9;
    /// mincore of the page at args[0].
    pub const MINCORE: u64 = 10;
    /// Reply: done, result in args[0].
    pub const OK: u64 = 100;
    /// Reply: the call failed with errno args[0].
    pub const ERR: u64 = 101;
    /// Reply: the access faulted (SIGSEGV).
    pub const SEGV: u64 = 102;
    /// Reply from a new image or a new child: its pid in args[0].
    pub const HELLO: u64 = 103;
}

/// Where the SIGSEGV handler resumes; 0 when no access is in flight.
static RESUME: AtomicUsize = AtomicUsize::new(0);

/// Runs the worker loop on fd 3; returns only when fd 3 is not a worker
/// channel (the caller prints the message and exits with status 2).
pub fn worker_main() -> String {
    // SAFETY: fstat on a descriptor number with a valid out-pointer.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(CHANNEL_FD, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    };
    if !is_socket {
        return "oracle-worker is started by `ptemu oracle` only (fd 3 is not its channel)".into();
    }
    let argv: Vec<std::ffi::CString> = std::env::args_os()
        .filter_map(|a| std::ffi::CString::new(a.into_encoded_bytes()).ok())
        .collect();
    install_signals();
    // SAFETY: fd 3 is an open socket handed to us by the controller (checked above).
    let chan = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) });
    warm_up();
    serve(chan, &argv)
}

fn install_signals() {
    // SAFETY: installing handlers; the SIGSEGV handler only touches an
    // atomic and the interrupted context's RIP.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction =
            on_segv as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
    }
}

extern "C" fn on_segv(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let resume = RESUME.load(Ordering::SeqCst);
    if resume == 0 || ctx.is_null() {
        // Not one of our accesses: a real bug. Let it kill the worker.
        // SAFETY: resetting a signal disposition is async-signal-safe.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        return;
    }
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid ucontext.
    unsafe {
        let uc = ctx.cast::<libc::ucontext_t>();
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = resume as i64;
    }
}

/// One user store of `val` at `addr`; true when it faulted.
#[inline(never)]
fn user_write(addr: u64, val: u8) -> bool {
    let faulted: u64;
    // SAFETY: the store goes to scenario memory the Rust program never
    // references; a fault on it is caught by on_segv, which resumes at label
    // 2 with `flag` still 1. RESUME is cleared before returning.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "mov {flag:e}, 1",
            "mov byte ptr [{addr}], {val}",
            "xor {flag:e}, {flag:e}",
            "2:",
            "mov qword ptr [{slot}], 0",
            slot = in(reg) RESUME.as_ptr(),
            addr = in(reg) addr,
            val = in(reg_byte) val,
            tmp = out(reg) _,
            flag = out(reg) faulted,
            options(nostack),
        );
    }
    faulted != 0
}

/// One user load from `addr`; `None` when it faulted.
#[inline(never)]
fn user_read(addr: u64) -> Option<u8> {
    let faulted: u64;
    let val: u64;
    // SAFETY: as for user_write, with a load.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "mov {flag:e}, 1",
            "xor {val:e}, {val:e}",
            "movzx {val:e}, byte ptr [{addr}]",
            "xor {flag:e}, {flag:e}",
            "2:",
            "mov qword ptr [{slot}], 0",
            slot = in(reg) RESUME.as_ptr(),
            addr = in(reg) addr,
            tmp = out(reg) _,
            flag = out(reg) faulted,
            val = out(reg) val,
            options(nostack),
        );
    }
    (faulted == 0).then_some(val as u8)
}

/// Touches the worker's own stack, statics and code paths so that later
/// steps fault in scenario pages only.
#[inline(never)]
fn warm_up() {
    let stack = std::hint::black_box([1u8; 256 << 10]);
    std::hint::black_box(&stack);
    // SAFETY: a private anonymous page of the kernel's choosing, unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            let a = p as u64;
            user_write(a, 1);
            let _ = user_read(a);
            let mut vec = 0u8;
            libc::mincore(p, 4096, &mut vec);
            libc::munmap(p, 4096);
        }
    }
}

fn errno() -> u64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u64
}

fn reply_of(r: libc::c_int) -> Msg {
    if r == 0 { Msg::new(op::OK, [0; 4]) } else { Msg::new(op::ERR, [errno(), 0, 0, 0]) }
}

fn serve(mut chan: Channel, argv: &[std::ffi::CString]) -> String {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u64;
    if chan.send(&Msg::new(op::HELLO, [me, 0, 0, 0]), None).is_err() {
        // SAFETY: leaving at once; nothing to clean up.
        unsafe { libc::_exit(0) };
    }
    loop {
        let Ok((msg, passed)) = chan.recv(None, None) else {
            // The controller is gone: nothing left to serve.
            // SAFETY: leaving at once.
            unsafe { libc::_exit(0) };
        };
        let [a, b, c, _] = msg.args;
        let reply = match msg.op {
            op::MMAP => do_mmap(a, b, c as i32),
            // SAFETY (this and the next two): the controller only names ranges
            // of the scenario's own mappings, which the program never uses.
            op::MUNMAP => reply_of(unsafe { libc::munmap(a as *mut _, b as usize) }),
            op::MPROTECT => reply_of(unsafe { libc::mprotect(a as *mut _, b as usize, c as i32) }),
            op::MADVISE => reply_of(unsafe { libc::madvise(a as *mut _, b as usize, c as i32) }),
            op::WRITE => {
                if user_write(a, b as u8) {
                    Msg::new(op::SEGV, [0; 4])
                } else {
                    Msg::new(op::OK, [0; 4])
                }
            }
            op::READ => match user_read(a) {
                Some(v) => Msg::new(op::OK, [u64::from(v), 0, 0, 0]),
                None => Msg::new(op::SEGV, [0; 4]),
            },
            op::MINCORE => {
                let mut vec = 0u8;
                // SAFETY: one page, one result byte.
                let r = unsafe { libc::mincore(a as *mut _, 4096, &mut vec) };
                if r == 0 { Msg::new(op::OK, [u64::from(vec & 1), 0, 0, 0]) } else { reply_of(r) }
            }
            op::FORK => match passed {
                None => Msg::new(op::ERR, [libc::EINVAL as u64, 0, 0, 0]),
                Some(fd) => match do_fork(fd) {
                    Ok(Some(child)) => {
                        // fork write-protected our own pages too: take our
                        // copies now, while in the top cgroup, not during a
                        // later step.
                        warm_up();
                        Msg::new(op::OK, [child, 0, 0, 0])
                    }
                    Ok(None) => {
                        // In the child: the new channel is on fd 3 now.
                        // SAFETY: do_fork placed the child's channel on fd 3.
                        let new = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) });
                        // The old Channel also names fd 3, which now holds the
                        // new socket: forget it rather than close it.
                        std::mem::forget(std::mem::replace(&mut chan, new));
                        warm_up();
                        // SAFETY: getpid has no preconditions.
                        let me = unsafe { libc::getpid() } as u64;
                        Msg::new(op::HELLO, [me, 0, 0, 0])
                    }
                    Err(e) => Msg::new(op::ERR, [e, 0, 0, 0]),
                },
            },
            // SAFETY: leaving at once, as the scenario's exit asks.
            op::EXIT => unsafe { libc::_exit(0) },
            op::EXECVE => Msg::new(op::ERR, [do_execve(argv), 0, 0, 0]),
            _ => Msg::new(op::ERR, [libc::ENOSYS as u64, 0, 0, 0]),
        };
        if chan.send(&reply, None).is_err() {
            // SAFETY: leaving at once.
            unsafe { libc::_exit(0) };
        }
    }
}

fn do_mmap(addr: u64, len: u64, prot: i32) -> Msg {
    // SAFETY: a private anonymous mapping at an address the controller chose
    // for the scenario; NOREPLACE never touches an existing mapping.
    let p = unsafe {
        libc::mmap(
            addr as *mut _,
            len as usize,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Msg::new(op::ERR, [errno(), 0, 0, 0]);
    }
    if p as u64 != addr {
        // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
        // SAFETY: unmapping what this call just mapped.
        unsafe { libc::munmap(p, len as usize) };
        return Msg::new(op::ERR, [libc::EEXIST as u64, 0, 0, 0]);
    }
    Msg::new(op::OK, [0; 4])
}

/// Forks; in the parent returns the child's pid, in the child moves `fd` to
/// fd 3 and returns `None`.
fn do_fork(fd: OwnedFd) -> Result<Option<u64>, u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: the worker is single-threaded, so the child may run Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno());
    }
    if pid > 0 {
        drop(fd);
        return Ok(Some(pid as u64));
    }
    // SAFETY: dup2 replaces fd 3 (the parent's channel) with the child's and
    // clears close-on-exec on it; the received descriptor is then closed.
    unsafe {
        if libc::dup2(fd.as_raw_fd(), CHANNEL_FD) < 0 {
            libc::_exit(1);
        }
    }
    drop(fd);
    Ok(None)
}

/// Execs a fresh worker image on the same channel; returns only on failure.
fn do_execve(argv: &[std::ffi::CString]) -> u64 {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let exe = c"/proc/self/exe";
    // SAFETY: fd 3 stays open across exec (flags cleared); argv is a
    // null-terminated array of valid C strings that outlive the call.
    unsafe {
        libc::fcntl(CHANNEL_FD, libc::F_SETFD, 0);
        libc::execv(exe.as_ptr(), ptrs.as_ptr());
    }
    errno()
}
