//! The caller's memory: its callbacks, or its flat buffer.
//!
//! This module and `ffi` are the only ones allowed `unsafe`: calling the
//! caller's function pointers and touching the caller's buffer are the FFI
//! boundary itself. What makes each block sound is the contract the header
//! states for `ptemu_mmu_new_callbacks` and `ptemu_mmu_new_flat`, which the
//! constructors check as far as a callee can (non-null, aligned, required
//! callbacks present).
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use ptemu_mmu::GuestMem;
use ptemu_mmu::pgtable::{MemError, PhysAddr, PhysMem};

use crate::PtemuMemOps;

/// Bytes of a 52-bit physical address space.
const MAX_PHYS: u64 = 1 << 52;

/// The caller's callbacks, with the required ones checked present.
pub(crate) struct CallbackMem {
    ops: PtemuMemOps,
    size: u64,
    read: unsafe extern "C" fn(*mut core::ffi::c_void, u64, *mut u64) -> i32,
    write: unsafe extern "C" fn(*mut core::ffi::c_void, u64, u64) -> i32,
    cmpxchg: unsafe extern "C" fn(*mut core::ffi::c_void, u64, u64, u64, *mut u64) -> i32,
}

impl CallbackMem {
    /// `None` when a required callback is missing.
    pub(crate) fn new(ops: PtemuMemOps) -> Option<Self> {
        Some(Self {
            size: if ops.size == 0 { MAX_PHYS } else { ops.size.min(MAX_PHYS) },
            read: ops.read_u64?,
            write: ops.write_u64?,
            cmpxchg: ops.cmpxchg_u64?,
            ops,
        })
    }
}

fn word_check(pa: PhysAddr, size: u64) -> Result<(), MemError> {
    if pa.as_u64() & 7 != 0 {
        return Err(MemError::Unaligned(pa));
    }
    match pa.as_u64().checked_add(8) {
        Some(end) if end <= size => Ok(()),
        _ => Err(MemError::OutOfRange { addr: pa, size }),
    }
}

fn range_check(pa: PhysAddr, len: usize, size: u64) -> Result<(), MemError> {
    match pa.as_u64().checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(MemError::OutOfRange { addr: pa, size }),
    }
}

impl PhysMem for CallbackMem {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        word_check(pa, self.size)?;
        let mut out = 0u64;
        // SAFETY: `read` is the caller's non-null callback; the contract of
        // ptemu_mmu_new_callbacks makes it callable with `ctx` until the MMU
        // is freed. `&mut out` is a valid, aligned u64 for the call.
        let r = unsafe { (self.read)(self.ops.ctx, pa.as_u64(), &mut out) };
        if r != 0 { Err(MemError::Unbacked(pa)) } else { Ok(out) }
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        word_check(pa, self.size)?;
        // SAFETY: as in read_u64, for the caller's `write` callback.
        let r = unsafe { (self.write)(self.ops.ctx, pa.as_u64(), value) };
        if r != 0 { Err(MemError::Unbacked(pa)) } else { Ok(()) }
    }

    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        word_check(pa, self.size)?;
        let mut actual = 0u64;
        // SAFETY: as in read_u64, for the caller's `cmpxchg` callback;
        // `&mut actual` is a valid u64 for the call.
        let r = unsafe { (self.cmpxchg)(self.ops.ctx, pa.as_u64(), current, new, &mut actual) };
        if r != 0 {
            return Err(MemError::Unbacked(pa));
        }
        Ok(if actual == current { Ok(current) } else { Err(actual) })
    }

    fn size(&self) -> u64 {
        self.size
    }
}

impl GuestMem for CallbackMem {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let Some(read) = self.ops.read_bytes else {
            return words_read(self, pa, buf);
        };
        range_check(pa, buf.len(), self.size)?;
        // SAFETY: the caller's non-null `read_bytes` callback, callable with
        // `ctx` by contract; `buf` is valid for `buf.len()` byte writes.
        let r = unsafe { read(self.ops.ctx, pa.as_u64(), buf.as_mut_ptr(), buf.len()) };
        if r != 0 { Err(MemError::Unbacked(pa)) } else { Ok(()) }
    }

    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        let Some(write) = self.ops.write_bytes else {
            return words_write(self, pa, data);
        };
        range_check(pa, data.len(), self.size)?;
        // SAFETY: the caller's non-null `write_bytes` callback, callable
        // with `ctx` by contract; `data` is valid for `data.len()` reads.
        let r = unsafe { write(self.ops.ctx, pa.as_u64(), data.as_ptr(), data.len()) };
        if r != 0 { Err(MemError::Unbacked(pa)) } else { Ok(()) }
    }
}

/// Byte reads made of word reads (GuestMem's default, reachable from an
/// override).
fn words_read<M: PhysMem + ?Sized>(m: &M, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
    range_check(pa, buf.len(), m.size())?;
    let start = pa.as_u64();
    let mut done = 0usize;
    while done < buf.len() {
        let a = start + done as u64;
        let off = (a & 7) as usize;
        let n = (8 - off).min(buf.len() - done);
        let w = m.read_u64(PhysAddr::new_truncate(a & !7))?.to_le_bytes();
        buf[done..done + n].copy_from_slice(&w[off..off + n]);
        done += n;
    }
    Ok(())
}

/// Byte writes made of word writes; every word is read first, so a write
/// that would reach unbacked memory fails before changing anything.
fn words_write<M: PhysMem + ?Sized>(m: &mut M, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
    range_check(pa, data.len(), m.size())?;
    let start = pa.as_u64();
    let first = start & !7;
    let last = (start + data.len() as u64).div_ceil(8) * 8;
    let mut a = first;
    while a < last {
        m.read_u64(PhysAddr::new_truncate(a))?;
        a += 8;
    }
    let mut done = 0usize;
    while done < data.len() {
        let a = start + done as u64;
        let word = PhysAddr::new_truncate(a & !7);
        let off = (a & 7) as usize;
        let n = (8 - off).min(data.len() - done);
        let mut w = if n == 8 { [0; 8] } else { m.read_u64(word)?.to_le_bytes() };
        w[off..off + n].copy_from_slice(&data[done..done + n]);
        m.write_u64(word, u64::from_le_bytes(w))?;
        done += n;
    }
    Ok(())
}

/// The caller's buffer as physical memory from address 0.
///
/// Words are accessed atomically (so a vCPU thread of the caller that
/// uses atomic operations on the same buffer sees whole entries and A/D
/// updates as a CPU's locked read-modify-writes); byte ranges are copied.
pub(crate) struct FlatMem {
    base: *mut u8,
    len: u64,
}

impl FlatMem {
    /// `None` unless `base` is non-null and 8-byte aligned (or `len` is 0).
    pub(crate) fn new(base: *mut u8, len: usize) -> Option<Self> {
        if len != 0 && (base.is_null() || (base as usize) & 7 != 0) {
            return None;
        }
        Some(Self { base, len: len as u64 })
    }

    fn word(&self, pa: PhysAddr) -> Result<&AtomicU64, MemError> {
        word_check(pa, self.len)?;
        // SAFETY: `pa + 8 <= len` and `pa` is 8-aligned, as is `base`
        // (checked at construction), so the pointer is an aligned u64 inside
        // the buffer, which the contract of ptemu_mmu_new_flat keeps valid
        // for reads and writes until the MMU is freed, with other threads
        // touching it only atomically.
        Ok(unsafe { AtomicU64::from_ptr(self.base.add(pa.as_u64() as usize).cast::<u64>()) })
    }
}

impl PhysMem for FlatMem {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        Ok(u64::from_le(self.word(pa)?.load(Ordering::Acquire)))
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        self.word(pa)?.store(value.to_le(), Ordering::Release);
        Ok(())
    }

    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        Ok(self
            .word(pa)?
            .compare_exchange(current.to_le(), new.to_le(), Ordering::AcqRel, Ordering::Acquire)
            .map(u64::from_le)
            .map_err(u64::from_le))
    }

    fn size(&self) -> u64 {
        self.len
    }
}

impl GuestMem for FlatMem {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        range_check(pa, buf.len(), self.len)?;
        // SAFETY: `pa + buf.len() <= len`, so the source lies inside the
        // caller's buffer (valid for reads by the contract of
        // ptemu_mmu_new_flat); `buf` is a distinct Rust slice, so the two
        // do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.add(pa.as_u64() as usize),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }

    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        range_check(pa, data.len(), self.len)?;
        // SAFETY: as in read_bytes, with the caller's buffer as the
        // destination (valid for writes by contract).
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.add(pa.as_u64() as usize),
                data.len(),
            );
        }
        Ok(())
    }
}

/// The memory an MMU handle translates over.
pub(crate) enum Memory {
    /// The caller's callbacks.
    Callbacks(CallbackMem),
    /// The caller's buffer.
    Flat(FlatMem),
}

impl PhysMem for Memory {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        match self {
            Memory::Callbacks(m) => m.read_u64(pa),
            Memory::Flat(m) => m.read_u64(pa),
        }
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        match self {
            Memory::Callbacks(m) => m.write_u64(pa, value),
            Memory::Flat(m) => m.write_u64(pa, value),
        }
    }
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        match self {
            Memory::Callbacks(m) => m.compare_exchange_u64(pa, current, new),
            Memory::Flat(m) => m.compare_exchange_u64(pa, current, new),
        }
    }
    fn size(&self) -> u64 {
        match self {
            Memory::Callbacks(m) => m.size(),
            Memory::Flat(m) => m.size(),
        }
    }
}

impl GuestMem for Memory {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        match self {
            Memory::Callbacks(m) => m.read_bytes(pa, buf),
            Memory::Flat(m) => m.read_bytes(pa, buf),
        }
    }
    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        match self {
            Memory::Callbacks(m) => m.write_bytes(pa, data),
            Memory::Flat(m) => m.write_bytes(pa, data),
        }
    }
}
