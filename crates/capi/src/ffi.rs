//! The exported functions. Every one checks its pointers for null and its
//! integer arguments for range, and returns a [`PtemuStatus`]; none panics.
//! The `unsafe` here is dereferencing the caller's pointers, each under the
//! contract stated in the function's documentation (and the header).
#![allow(unsafe_code)]

use core::ffi::c_char;
use std::cell::RefCell;
use std::ffi::CString;

use crate::mem::{CallbackMem, FlatMem, Memory};
use crate::{
    PtemuAccess, PtemuConfig, PtemuFault, PtemuMemOps, PtemuRegs, PtemuStats, PtemuStatus,
    classify, status_text,
};

/// An MMU and the memory it translates over. Opaque to C.
pub struct PtemuMmu {
    mmu: ptemu_mmu::Mmu,
    mem: Memory,
    fault: PtemuFault,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::from(c"no error"));
}

/// Records `msg` as this thread's last error and returns `status`.
fn fail(status: PtemuStatus, msg: impl core::fmt::Display) -> PtemuStatus {
    let text = format!("{msg}").replace('\0', " ");
    let c = CString::new(text).unwrap_or_else(|_| CString::from(c"(unprintable error)"));
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
    status
}

fn invalid(msg: &str) -> PtemuStatus {
    fail(PtemuStatus::InvalidArgument, msg)
}

impl PtemuMmu {
    /// Maps an MMU result to a status, recording the fault and the message.
    fn finish<T>(&mut self, r: Result<T, ptemu_mmu::Error>) -> Result<T, PtemuStatus> {
        match r {
            Ok(v) => {
                self.fault = PtemuFault::default();
                Ok(v)
            }
            Err(e) => {
                let (status, fault) = classify(&e);
                self.fault = fault;
                Err(fail(status, e))
            }
        }
    }

    fn status(&mut self, r: Result<(), ptemu_mmu::Error>) -> PtemuStatus {
        match self.finish(r) {
            Ok(()) => PtemuStatus::Ok,
            Err(s) => s,
        }
    }
}

/// The default TLB configuration (256 slots per table, 4 PCID contexts,
/// MAXPHYADDR 52, faithful stale entries, paging-structure caches of 4
/// PML4 entries, 4 PDPTEs and 32 PDEs per context).
#[unsafe(no_mangle)]
pub extern "C" fn ptemu_config_default() -> PtemuConfig {
    ptemu_mmu::Config::default().into()
}

/// Registers for 4-level paging with the tables at `cr3`: CR0.PE|WP|PG,
/// CR4.PAE, EFER.LME|LMA|NXE, CPL 0, PKRU 0.
#[unsafe(no_mangle)]
pub extern "C" fn ptemu_regs_long_mode(cr3: u64) -> PtemuRegs {
    ptemu_mmu::Regs::long_mode(cr3).into()
}

fn new_handle(config: *const PtemuConfig, mem: Memory, out: *mut *mut PtemuMmu) -> PtemuStatus {
    if out.is_null() {
        return invalid("out is NULL");
    }
    let cfg = if config.is_null() {
        ptemu_mmu::Config::default()
    } else {
        // SAFETY: non-null, and the caller passes a pointer to a readable
        // PtemuConfig (the function's contract); it is plain old data.
        match unsafe { *config }.to_mmu() {
            Ok(c) => c,
            Err(m) => return invalid(m),
        }
    };
    let m = match ptemu_mmu::Mmu::new(cfg) {
        Ok(m) => m,
        Err(e) => return fail(PtemuStatus::InvalidArgument, e),
    };
    let h = Box::new(PtemuMmu { mmu: m, mem, fault: PtemuFault::default() });
    // SAFETY: `out` is non-null and, by contract, writable.
    unsafe { *out = Box::into_raw(h) };
    PtemuStatus::Ok
}

/// Creates an MMU over the caller's memory callbacks, in the RESET state
/// (paging off). `config` may be NULL for the defaults.
///
/// # Safety
/// `config` is NULL or points to a readable `PtemuConfig`; `ops` points to
/// a readable `PtemuMemOps` whose callbacks stay callable with its `ctx`
/// until `ptemu_mmu_free`; `out` points to a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_mmu_new_callbacks(
    config: *const PtemuConfig,
    ops: *const PtemuMemOps,
    out: *mut *mut PtemuMmu,
) -> PtemuStatus {
    if ops.is_null() {
        return invalid("ops is NULL");
    }
    // SAFETY: non-null and, by contract, a readable PtemuMemOps (copied).
    let ops = unsafe { *ops };
    let Some(mem) = CallbackMem::new(ops) else {
        return invalid("read_u64, write_u64 and cmpxchg_u64 are required");
    };
    new_handle(config, Memory::Callbacks(mem), out)
}

/// Creates an MMU over a flat buffer: physical address `a` is `base[a]`,
/// for `a < len`. `base` must be 8-byte aligned.
///
/// # Safety
/// `base` is valid for reads and writes of `len` bytes until
/// `ptemu_mmu_free`; while an MMU call runs, other threads touch the buffer
/// only with atomic operations. `config` and `out` as for
/// `ptemu_mmu_new_callbacks`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_mmu_new_flat(
    config: *const PtemuConfig,
    base: *mut u8,
    len: usize,
    out: *mut *mut PtemuMmu,
) -> PtemuStatus {
    let Some(mem) = FlatMem::new(base, len) else {
        return invalid("base must be non-NULL and 8-byte aligned");
    };
    new_handle(config, Memory::Flat(mem), out)
}

/// Frees an MMU (NULL is allowed and does nothing).
///
/// # Safety
/// `mmu` is NULL or a pointer from `ptemu_mmu_new_*` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_mmu_free(mmu: *mut PtemuMmu) {
    if !mmu.is_null() {
        // SAFETY: by contract it came from Box::into_raw in new_handle and
        // is freed once.
        drop(unsafe { Box::from_raw(mmu) });
    }
}

/// The handle behind `p`, or InvalidArgument.
///
/// # Safety
/// `p` is NULL or a live pointer from `ptemu_mmu_new_*`, not used by
/// another thread during the call.
unsafe fn handle<'a>(p: *mut PtemuMmu) -> Result<&'a mut PtemuMmu, PtemuStatus> {
    // SAFETY: the caller's contract (above).
    unsafe { p.as_mut() }.ok_or_else(|| invalid("mmu is NULL"))
}

macro_rules! with_handle {
    ($p:expr, $h:ident => $body:expr) => {
        // SAFETY: every exported function taking `mmu` requires a live
        // handle used by one thread at a time (stated in the header).
        match unsafe { handle($p) } {
            Ok($h) => $body,
            Err(s) => s,
        }
    };
}

/// Loads the whole paging state (vCPU setup, snapshot restore); drops every
/// TLB entry.
///
/// # Safety
/// `mmu` is a live handle; `regs` points to a readable `PtemuRegs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_set_regs(mmu: *mut PtemuMmu, regs: *const PtemuRegs) -> PtemuStatus {
    if regs.is_null() {
        return invalid("regs is NULL");
    }
    // SAFETY: non-null and readable by contract; plain old data.
    let r = match unsafe { *regs }.to_mmu() {
        Ok(r) => r,
        Err(m) => return invalid(m),
    };
    with_handle!(mmu, h => { let r = h.mmu.set_regs(r); h.status(r) })
}

/// Copies the paging registers to `*out`.
///
/// # Safety
/// `mmu` is a live handle; `out` points to a writable `PtemuRegs`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_get_regs(mmu: *mut PtemuMmu, out: *mut PtemuRegs) -> PtemuStatus {
    if out.is_null() {
        return invalid("out is NULL");
    }
    with_handle!(mmu, h => {
        // SAFETY: non-null and writable by contract.
        unsafe { *out = (*h.mmu.regs()).into() };
        PtemuStatus::Ok
    })
}

/// Translates the byte at `va` for `access` (0 read, 1 write, 2 fetch):
/// a TLB hit, or a walk that sets A/D. On success `*pa` is the physical
/// address.
///
/// # Safety
/// `mmu` is a live handle; `pa` points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_translate(
    mmu: *mut PtemuMmu,
    va: u64,
    access: u32,
    pa: *mut u64,
) -> PtemuStatus {
    if pa.is_null() {
        return invalid("pa is NULL");
    }
    let Some(kind) = PtemuAccess::from_raw(access) else {
        return invalid("access must be 0 (read), 1 (write) or 2 (fetch)");
    };
    with_handle!(mmu, h => {
        let r = h.mmu.translate(&mut h.mem, va, kind);
        match h.finish(r) {
            Ok(p) => {
                // SAFETY: non-null and writable by contract.
                unsafe { *pa = p.as_u64() };
                PtemuStatus::Ok
            }
            Err(s) => s,
        }
    })
}

/// The caller's `len`-byte buffer, or InvalidArgument for NULL with a
/// non-zero length.
fn check_buf(p: *const u8, len: usize) -> Result<(), PtemuStatus> {
    if p.is_null() && len != 0 {
        return Err(invalid("buffer is NULL"));
    }
    Ok(())
}

/// ptemu_read and ptemu_fetch: translate `len` bytes at `va` as a data
/// read or an instruction fetch into a local buffer, then copy them out.
///
/// # Safety
/// `mmu` is a live handle; `buf`, when non-null (checked here), is
/// writable for `len` bytes.
unsafe fn read_into(
    mmu: *mut PtemuMmu,
    va: u64,
    buf: *mut u8,
    len: usize,
    fetch: bool,
) -> PtemuStatus {
    if let Err(s) = check_buf(buf, len) {
        return s;
    }
    with_handle!(mmu, h => {
        let mut tmp = [0u8; ptemu_mmu::MAX_ACCESS];
        let Some(dst) = tmp.get_mut(..len) else {
            let r = Err(ptemu_mmu::Error::BadSize(len));
            return h.status(r);
        };
        let r = if fetch {
            h.mmu.fetch(&mut h.mem, va, dst)
        } else {
            h.mmu.read(&mut h.mem, va, dst)
        };
        if r.is_ok() && len != 0 {
            // SAFETY: `buf` is non-null (len != 0) and writable for `len`
            // bytes by contract; `tmp` is a distinct local.
            unsafe { core::ptr::copy_nonoverlapping(tmp.as_ptr(), buf, len) };
        }
        h.status(r)
    })
}

/// Reads `len` (1..=64) bytes at `va` into `buf`, as the CPU's data read:
/// split at a page boundary, both pages checked before any byte moves.
///
/// # Safety
/// `mmu` is a live handle; `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_read(
    mmu: *mut PtemuMmu,
    va: u64,
    buf: *mut u8,
    len: usize,
) -> PtemuStatus {
    // SAFETY: the caller's contract for `mmu` and `buf`, forwarded.
    unsafe { read_into(mmu, va, buf, len, false) }
}

/// Fetches `len` (1..=64) instruction bytes at `va` into `buf`.
///
/// # Safety
/// As for `ptemu_read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_fetch(
    mmu: *mut PtemuMmu,
    va: u64,
    buf: *mut u8,
    len: usize,
) -> PtemuStatus {
    // SAFETY: as in ptemu_read.
    unsafe { read_into(mmu, va, buf, len, true) }
}

/// Writes `len` (1..=64) bytes from `data` at `va`. Both pages of a split
/// write are checked (and their A/D set) before any byte is written.
///
/// # Safety
/// `mmu` is a live handle; `data` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_write(
    mmu: *mut PtemuMmu,
    va: u64,
    data: *const u8,
    len: usize,
) -> PtemuStatus {
    if let Err(s) = check_buf(data, len) {
        return s;
    }
    with_handle!(mmu, h => {
        let mut tmp = [0u8; ptemu_mmu::MAX_ACCESS];
        let Some(src) = tmp.get_mut(..len) else {
            let r = Err(ptemu_mmu::Error::BadSize(len));
            return h.status(r);
        };
        if len != 0 {
            // SAFETY: `data` is non-null (len != 0) and readable for `len`
            // bytes by contract; `src` is a distinct local.
            unsafe { core::ptr::copy_nonoverlapping(data, src.as_mut_ptr(), len) };
        }
        let r = h.mmu.write(&mut h.mem, va, src);
        h.status(r)
    })
}

/// MOV to CR0 (flushes when PG, WP or PE change).
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_write_cr0(mmu: *mut PtemuMmu, value: u64) -> PtemuStatus {
    with_handle!(mmu, h => { let r = h.mmu.write_cr0(value); h.status(r) })
}

/// MOV to CR3, bit 63 included as the instruction's operand (with
/// CR4.PCIDE=1 it keeps the new PCID's entries).
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_write_cr3(mmu: *mut PtemuMmu, value: u64) -> PtemuStatus {
    with_handle!(mmu, h => { let r = h.mmu.write_cr3(value); h.status(r) })
}

/// MOV to CR4 (PGE, PCIDE, PAE, SMEP, SMAP, PKE changes as the SDM says).
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_write_cr4(mmu: *mut PtemuMmu, value: u64) -> PtemuStatus {
    with_handle!(mmu, h => { let r = h.mmu.write_cr4(value); h.status(r) })
}

/// WRMSR to IA32_EFER.
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_write_efer(mmu: *mut PtemuMmu, value: u64) -> PtemuStatus {
    with_handle!(mmu, h => { let r = h.mmu.write_efer(value); h.status(r) })
}

/// WRPKRU.
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_write_pkru(mmu: *mut PtemuMmu, value: u32) -> PtemuStatus {
    with_handle!(mmu, h => { h.mmu.write_pkru(value); PtemuStatus::Ok })
}

/// Sets the current privilege level (0..=3).
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_set_cpl(mmu: *mut PtemuMmu, cpl: u8) -> PtemuStatus {
    if cpl > 3 {
        return invalid("cpl must be 0..=3");
    }
    with_handle!(mmu, h => { h.mmu.set_cpl(cpl); PtemuStatus::Ok })
}

/// Sets EFLAGS.AC (0 or 1).
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_set_ac(mmu: *mut PtemuMmu, ac: u8) -> PtemuStatus {
    if ac > 1 {
        return invalid("ac must be 0 or 1");
    }
    with_handle!(mmu, h => { h.mmu.set_ac(ac != 0); PtemuStatus::Ok })
}

/// INVLPG `va` (a non-canonical address is a no-op, as on the CPU).
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_invlpg(mmu: *mut PtemuMmu, va: u64) -> PtemuStatus {
    with_handle!(mmu, h => { h.mmu.invlpg(va); PtemuStatus::Ok })
}

/// INVPCID of type `kind` (0..=3) with the descriptor's low quadword (the
/// PCID) and high quadword (the linear address); invalid operands are #GP.
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_invpcid(
    mmu: *mut PtemuMmu,
    kind: u64,
    descriptor_lo: u64,
    va: u64,
) -> PtemuStatus {
    with_handle!(mmu, h => {
        let r = ptemu_mmu::Invpcid::from_raw(kind, descriptor_lo, va).and_then(|op| h.mmu.invpcid(op));
        h.status(r)
    })
}

/// Drops every TLB entry.
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_flush_all(mmu: *mut PtemuMmu) -> PtemuStatus {
    with_handle!(mmu, h => { h.mmu.flush_all(); PtemuStatus::Ok })
}

/// Copies the counters to `*out`.
///
/// # Safety
/// `mmu` is a live handle; `out` points to a writable `PtemuStats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_get_stats(mmu: *mut PtemuMmu, out: *mut PtemuStats) -> PtemuStatus {
    if out.is_null() {
        return invalid("out is NULL");
    }
    with_handle!(mmu, h => {
        // SAFETY: non-null and writable by contract.
        unsafe { *out = h.mmu.stats().into() };
        PtemuStatus::Ok
    })
}

/// Zeroes the counters.
///
/// # Safety
/// `mmu` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_reset_stats(mmu: *mut PtemuMmu) -> PtemuStatus {
    with_handle!(mmu, h => { h.mmu.reset_stats(); PtemuStatus::Ok })
}

/// Copies the exception of the last access or instruction on this MMU
/// (vector 0 if it raised none) to `*out`.
///
/// # Safety
/// `mmu` is a live handle; `out` points to a writable `PtemuFault`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptemu_last_fault(mmu: *mut PtemuMmu, out: *mut PtemuFault) -> PtemuStatus {
    if out.is_null() {
        return invalid("out is NULL");
    }
    with_handle!(mmu, h => {
        // SAFETY: non-null and writable by contract.
        unsafe { *out = h.fault };
        PtemuStatus::Ok
    })
}

/// The message of the last failed call on this thread (NUL-terminated;
/// valid until the next failing call on this thread).
#[unsafe(no_mangle)]
pub extern "C" fn ptemu_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A fixed description of a status value (static storage), or of an
/// unknown value.
#[unsafe(no_mangle)]
pub extern "C" fn ptemu_status_name(status: i32) -> *const c_char {
    let s = match status {
        0 => PtemuStatus::Ok,
        1 => PtemuStatus::PageFault,
        2 => PtemuStatus::GeneralProtection,
        3 => PtemuStatus::Memory,
        4 => PtemuStatus::Contended,
        5 => PtemuStatus::BadSize,
        6 => PtemuStatus::Unsupported,
        7 => PtemuStatus::InvalidArgument,
        _ => return c"unknown status".as_ptr(),
    };
    status_text(s).as_ptr()
}
