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

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

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
    let is_socket = std::fs::read_link(format!("/proc/self/fd/{CHANNEL_FD}"))
        .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"));
    if !is_socket {
        return "oracle-worker is started by `ptemu oracle` only (fd 3 is not its channel)".into();
    }
    // SAFETY: descriptor 3 is open and a socket (checked above): the channel
    // the controller hands a worker. The process adopts it once, here, and
    // nothing else in it names fd 3.
    let fd = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    let argv: Vec<OsString> = std::env::args_os().collect();
    install_signals();
    let chan = Channel::from_fd(fd);
    warm_up();
    serve(chan, &argv)
}

fn install_signals() {
    // SAFETY: installing signal dispositions: three to SIG_IGN and SIGSEGV
    // to on_segv, which only reads an atomic and rewrites the interrupted
    // context's RIP (async-signal-safe).
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
    let ours = resume != 0 && !ctx.is_null();
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid ucontext,
    // whose RIP is rewritten to the access's recovery point. A fault that
    // is not one of our accesses is a real bug: the disposition goes back to
    // the default (async-signal-safe) and the re-executed instruction kills
    // the worker.
    unsafe {
        if ours {
            let uc = ctx.cast::<libc::ucontext_t>();
            (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = resume as i64;
        } else {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
    }
}

/// One user store of `val` at `addr`; true when it faulted.
#[inline(never)]
fn user_write(addr: u64, val: u8) -> bool {
    let faulted: u64;
    // SAFETY: the store goes to scenario memory the Rust program never
    // references (or, in warm_up, to a buffer it owns); a fault on it is
    // caught by on_segv, which resumes at label 2 with `flag` still 1.
    // RESUME is cleared before returning.
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

/// mincore of the one page at `addr`: whether it is resident (for a swap
/// entry: whether its slot's page is in the swap cache). Neither rustix
/// nor nix wraps mincore.
fn mincore_page(addr: u64) -> Result<bool, u64> {
    let mut vec = 0u8;
    // SAFETY: mincore only reads the page tables of [addr, addr + 4096) and
    // writes one result byte, to `vec`, which lives for the call.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, 4096, &mut vec) };
    if r == 0 { Ok(vec & 1 != 0) } else { Err(errno()) }
}

/// Touches the worker's own stack, statics and code paths so that later
/// steps fault in scenario pages only.
#[inline(never)]
fn warm_up() {
    let stack = std::hint::black_box([1u8; 256 << 10]);
    std::hint::black_box(&stack);
    // A page-aligned page of the worker's own heap, for the access and
    // mincore paths.
    let mut buf = std::hint::black_box(vec![0u8; 2 * 4096]);
    let off = buf.as_ptr().align_offset(4096);
    if let Some(page) = buf.get_mut(off..off + 4096) {
        let a = page.as_mut_ptr() as u64;
        user_write(a, 1);
        let _ = user_read(a);
        let _ = mincore_page(a);
    }
    std::hint::black_box(&buf);
}

fn errno() -> u64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u64
}

fn reply_of(r: rustix::io::Result<()>) -> Msg {
    match r {
        Ok(()) => Msg::new(op::OK, [0; 4]),
        Err(e) => Msg::new(op::ERR, [e.raw_os_error() as u64, 0, 0, 0]),
    }
}

fn prot_flags(bits: u64) -> (ProtFlags, MprotectFlags) {
    let bits = bits as u32;
    (ProtFlags::from_bits_retain(bits), MprotectFlags::from_bits_retain(bits))
}

/// munmap, mprotect or madvise of a scenario range.
fn range_call(opcode: u64, addr: u64, len: u64, arg: u64) -> Msg {
    let p = addr as *mut std::ffi::c_void;
    let len = len as usize;
    // SAFETY: the controller only names ranges of the scenario's own
    // mappings (or holes between them), which the Rust program never
    // references; unmapping, reprotecting or zapping them cannot invalidate
    // anything the program holds.
    let r = unsafe {
        match opcode {
            op::MUNMAP => rustix::mm::munmap(p, len),
            op::MPROTECT => rustix::mm::mprotect(p, len, prot_flags(arg).1),
            _ => match arg {
                a if a == libc::MADV_DONTNEED as u64 => {
                    rustix::mm::madvise(p, len, rustix::mm::Advice::LinuxDontNeed)
                }
                a if a == libc::MADV_WILLNEED as u64 => {
                    rustix::mm::madvise(p, len, rustix::mm::Advice::WillNeed)
                }
                _ => Err(rustix::io::Errno::INVAL),
            },
        }
    };
    reply_of(r)
}

fn serve(mut chan: Channel, argv: &[OsString]) -> String {
    let me = u64::from(std::process::id());
    if chan.send(&Msg::new(op::HELLO, [me, 0, 0, 0]), None).is_err() {
        std::process::exit(0);
    }
    loop {
        let Ok((msg, passed)) = chan.recv(None, None) else {
            // The controller is gone: nothing left to serve.
            std::process::exit(0);
        };
        let [a, b, c, _] = msg.args;
        let reply = match msg.op {
            op::MMAP => do_mmap(a, b, c),
            op::MUNMAP | op::MPROTECT | op::MADVISE => range_call(msg.op, a, b, c),
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
            op::MINCORE => match mincore_page(a) {
                Ok(resident) => Msg::new(op::OK, [u64::from(resident), 0, 0, 0]),
                Err(e) => Msg::new(op::ERR, [e, 0, 0, 0]),
            },
            op::FORK => match passed {
                None => Msg::new(op::ERR, [libc::EINVAL as u64, 0, 0, 0]),
                Some(fd) => match do_fork(&mut chan, fd) {
                    Ok(Some(child)) => {
                        // fork write-protected our own pages too: take our
                        // copies now, while in the top cgroup, not during a
                        // later step.
                        warm_up();
                        Msg::new(op::OK, [child, 0, 0, 0])
                    }
                    Ok(None) => {
                        // In the child: fd 3 now holds the new channel.
                        warm_up();
                        Msg::new(op::HELLO, [u64::from(std::process::id()), 0, 0, 0])
                    }
                    Err(e) => Msg::new(op::ERR, [e, 0, 0, 0]),
                },
            },
            // Leaving at once, as the scenario's exit asks.
            op::EXIT => std::process::exit(0),
            op::EXECVE => Msg::new(op::ERR, [do_execve(&chan, argv), 0, 0, 0]),
            _ => Msg::new(op::ERR, [libc::ENOSYS as u64, 0, 0, 0]),
        };
        if chan.send(&reply, None).is_err() {
            std::process::exit(0);
        }
    }
}

fn do_mmap(addr: u64, len: u64, prot: u64) -> Msg {
    let flags = MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE;
    let len = len as usize;
    // SAFETY: a private anonymous mapping at an address the controller chose
    // for the scenario; NOREPLACE never touches an existing mapping, so
    // nothing the program holds can change. A kernel without
    // MAP_FIXED_NOREPLACE treats the address as a hint: what it mapped
    // elsewhere is unmapped again, and nothing else knows of it.
    let r = unsafe {
        match rustix::mm::mmap_anonymous(addr as *mut _, len, prot_flags(prot).0, flags) {
            Ok(p) if p as u64 != addr => {
                let _ = rustix::mm::munmap(p, len);
                Err(rustix::io::Errno::EXIST)
            }
            other => other.map(|_| ()),
        }
    };
    reply_of(r)
}

/// Forks; in the parent returns the child's pid, in the child makes `chan`
/// (fd 3) the passed channel and returns `None`.
fn do_fork(chan: &mut Channel, fd: OwnedFd) -> Result<Option<u64>, u64> {
    // SAFETY: the worker is single-threaded, so the child may go on running
    // Rust code (no lock can be held by a thread that does not exist there).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno());
    }
    if pid > 0 {
        drop(fd);
        return Ok(Some(pid as u64));
    }
    // The child: fd 3 (the parent's channel) becomes the child's own, and
    // the received descriptor is closed.
    if chan.replace_with(fd).is_err() {
        std::process::exit(1);
    }
    Ok(None)
}

/// Execs a fresh worker image on the same channel; returns only on failure.
fn do_execve(chan: &Channel, argv: &[OsString]) -> u64 {
    use std::os::unix::process::CommandExt;
    // fd 3 must stay open across exec.
    if let Err(e) = rustix::io::fcntl_setfd(chan.fd(), rustix::io::FdFlags::empty()) {
        return e.raw_os_error() as u64;
    }
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some((arg0, rest)) = argv.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    let e = cmd.exec();
    e.raw_os_error().unwrap_or(libc::ENOEXEC) as u64
}
