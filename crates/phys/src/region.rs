//! One mmap'd region, touched only through atomic operations.
//!
//! This is the crate's only `unsafe` code. The region is mapped with
//! memmap2's [`MmapRaw`], which never hands out references, and every access
//! here turns a pointer into the mapping into an `&AtomicU64` or `&AtomicU8`
//! for the duration of one load, store or compare-exchange. No `&[u8]` or
//! `&mut [u8]` over the mapping ever exists, so the region may be shared
//! with a concurrent writer outside Rust's view (a KVM vCPU setting Accessed
//! bits in page tables, another process with the backing file mapped)
//! without a data race in Rust's sense: both sides do whole-word accesses.
//!
//! Single words use acquire/release ordering, so a value published by one
//! side is seen whole by the other. Bulk copies use relaxed word accesses:
//! they move bytes, they do not synchronise, and a concurrent writer of the
//! same bytes gets an unspecified mix of old and new words (as real DMA would).
//!
//! The one exception is [`MappedRegion::fill_zero_exclusive`] and
//! [`MappedRegion::copy_exclusive`]: plain `memset`/`memmove` (which use
//! `rep stosb`/vector stores) for bytes nobody else can be touching, such as
//! a frame just taken from the allocator and not yet in any page table.
//! They take `&mut self`, so no other thread of this process can access the
//! region during the call, and [`MappedRegion::as_ptr`] obliges agents
//! outside Rust to keep off the bytes they write.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::PhysError;

/// Granularity of every region size: one 4 KiB frame.
const GRANULE: u64 = pgtable::PAGE_SIZE;

/// Largest region: 2^52 bytes, the architectural physical address limit.
const MAX_SIZE: u64 = 1 << pgtable::addr::MAX_PHYS_ADDR_BITS;

/// An mmap'd region of whole 4 KiB frames, anonymous or backed by a file.
///
/// Every method takes `&self`: accesses are atomic, so the region can be
/// shared between threads (it is `Send + Sync`) and with a KVM guest.
#[derive(Debug)]
pub struct MappedRegion {
    map: MmapRaw,
    size: u64,
    /// The backing file, if any (for error messages).
    path: Option<PathBuf>,
}

fn check_size(size: u64) -> Result<usize, PhysError> {
    if size == 0 {
        return Err(PhysError::BadSize { size, reason: "it is zero" });
    }
    if size % GRANULE != 0 {
        return Err(PhysError::BadSize { size, reason: "it is not a multiple of 4 KiB" });
    }
    if size > MAX_SIZE {
        return Err(PhysError::BadSize { size, reason: "it exceeds 2^52 bytes" });
    }
    usize::try_from(size).map_err(|_| PhysError::BadSize {
        size,
        reason: "it does not fit the host's address space",
    })
}

impl MappedRegion {
    /// An anonymous, zero-filled region of `size` bytes (a multiple of 4 KiB).
    ///
    /// Pages are allocated by the host lazily, so a large region costs
    /// nothing until it is touched.
    ///
    /// The region is advised MADV_HUGEPAGE: the host backs it with 2 MiB
    /// pages where it can, as Linux's direct map covers a real machine's
    /// RAM with 2 MiB and 1 GiB pages. Clearing or copying a frame then
    /// does not also pay for a host TLB miss per 4 KiB frame (under
    /// virtualisation, a two-dimensional walk), which the emulated kernel
    /// would not. Only advice: where the host has no transparent huge
    /// pages the region works the same with 4 KiB pages.
    pub fn anonymous(size: u64) -> Result<Self, PhysError> {
        let len = check_size(size)?;
        let map = MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|source| PhysError::Mmap { size, source })?;
        #[cfg(target_os = "linux")]
        if len >= 2 << 20 {
            // Advice only: EINVAL without CONFIG_TRANSPARENT_HUGEPAGE.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(Self { map: MmapRaw::from(map), size, path: None })
    }

    /// A region backed by the file at `path`, created (or truncated) and
    /// sized to `size` bytes of zeros. Writes reach the file through the
    /// shared mapping, so other tools can inspect it (after [`Self::flush`]
    /// for tools that read it with `read(2)` on another machine).
    pub fn create_file(path: &Path, size: u64) -> Result<Self, PhysError> {
        check_size(size)?;
        let io = |source| PhysError::Io { path: path.to_path_buf(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        file.set_len(size).map_err(io)?;
        Self::map_file(&file, path, size)
    }

    /// A region over an existing file at `path`, keeping its contents; its
    /// size must be a non-zero multiple of 4 KiB.
    pub fn open_file(path: &Path) -> Result<Self, PhysError> {
        let io = |source| PhysError::Io { path: path.to_path_buf(), source };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        check_size(size)?;
        Self::map_file(&file, path, size)
    }

    fn map_file(file: &File, path: &Path, size: u64) -> Result<Self, PhysError> {
        let len = check_size(size)?;
        // MAP_SHARED: our writes are the file's contents. If another process
        // truncates the file under us, accesses fault with SIGBUS; memmap2
        // documents that as outside Rust's memory-safety guarantees, not UB.
        let map = MmapOptions::new()
            .len(len)
            .map_raw(file)
            .map_err(|source| PhysError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { map, size, path: Some(path.to_path_buf()) })
    }

    /// The backing file, or `None` for an anonymous region.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Size of the region in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host address of the region's first byte.
    ///
    /// For handing the region to something outside Rust, such as
    /// `KVM_SET_USER_MEMORY_REGION`. The pointer stays valid as long as
    /// `self` lives. Whoever dereferences it must access the memory only with
    /// naturally aligned atomic (or hardware) accesses while this region is
    /// in use, as this module does; it must never create Rust references over
    /// the memory. It must also keep off bytes that the owner of the region
    /// treats as exclusively its own (the `_exclusive` methods): in practice
    /// it touches only frames the emulated machine has handed it (page
    /// tables it was given, harness frames), never a frame the machine's
    /// allocator has just handed out and not yet linked anywhere.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Writes dirty pages of a file-backed region to the file (msync).
    /// Does nothing useful, but no harm, for an anonymous region.
    pub fn flush(&self) -> Result<(), PhysError> {
        self.map.flush().map_err(|source| PhysError::Io {
            path: self.path.clone().unwrap_or_else(|| "<anonymous mapping>".into()),
            source,
        })
    }

    /// Checks that `offset..offset+len` lies inside the region.
    #[inline]
    pub fn check_range(&self, offset: u64, len: u64) -> Result<(), PhysError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(PhysError::OutOfRange { offset, len, size: self.size }),
        }
    }

    #[inline]
    fn check_word(&self, offset: u64) -> Result<(), PhysError> {
        if offset % 8 != 0 {
            return Err(PhysError::Unaligned(offset));
        }
        self.check_range(offset, 8)
    }

    /// The atomic word at `offset`. Callers have checked alignment and range.
    #[inline]
    fn word(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= self.size);
        // The mapping is page aligned and `offset` is a multiple of 8 inside
        // it (checked by every caller), so the pointer is aligned and in
        // bounds; `offset < size <= isize::MAX` because `size` fit in usize
        // and mmap never returns more than isize::MAX bytes.
        let ptr = self.map.as_mut_ptr().wrapping_add(offset as usize).cast::<u64>();
        // SAFETY: `ptr` is 8-byte aligned and points to 8 bytes inside the
        // live mapping, which outlives the returned reference (it borrows
        // `self`, which owns the mapping). The memory is only ever accessed
        // through atomics (this module creates no other references and
        // `as_ptr` obliges outside users to the same), so no non-atomic
        // access races with this one.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    /// The atomic byte at `offset`. Callers have checked the range.
    #[inline]
    fn byte(&self, offset: u64) -> &AtomicU8 {
        debug_assert!(offset < self.size);
        let ptr = self.map.as_mut_ptr().wrapping_add(offset as usize);
        // SAFETY: `ptr` points to one byte inside the live mapping, which
        // outlives the returned reference; AtomicU8 has alignment 1; the
        // memory is only accessed through atomics (see `word`).
        unsafe { AtomicU8::from_ptr(ptr) }
    }

    /// Loads the little-endian word at `offset` (acquire).
    #[inline]
    pub fn load_u64(&self, offset: u64) -> Result<u64, PhysError> {
        self.check_word(offset)?;
        Ok(u64::from_le(self.word(offset).load(Ordering::Acquire)))
    }

    /// Stores the little-endian word `value` at `offset` (release).
    #[inline]
    pub fn store_u64(&self, offset: u64, value: u64) -> Result<(), PhysError> {
        self.check_word(offset)?;
        self.word(offset).store(value.to_le(), Ordering::Release);
        Ok(())
    }

    /// Stores `new` at `offset` if the word there is `current`, atomically.
    /// `Ok(Ok(current))` when it stored, `Ok(Err(actual))` when it did not.
    #[inline]
    pub fn compare_exchange_u64(
        &self,
        offset: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, PhysError> {
        self.check_word(offset)?;
        Ok(self
            .word(offset)
            .compare_exchange(current.to_le(), new.to_le(), Ordering::AcqRel, Ordering::Acquire)
            .map(u64::from_le)
            .map_err(u64::from_le))
    }

    /// Loads the byte at `offset` (relaxed, as [`Self::read_bytes`] does).
    #[inline]
    pub fn load_u8(&self, offset: u64) -> Result<u8, PhysError> {
        if offset >= self.size {
            return Err(PhysError::OutOfRange { offset, len: 1, size: self.size });
        }
        Ok(self.byte(offset).load(Ordering::Relaxed))
    }

    /// Stores the byte `value` at `offset` (relaxed, as
    /// [`Self::write_bytes`] does): a user's one-byte store, without
    /// `write_bytes`' loop.
    #[inline]
    pub fn store_u8(&self, offset: u64, value: u8) -> Result<(), PhysError> {
        if offset >= self.size {
            return Err(PhysError::OutOfRange { offset, len: 1, size: self.size });
        }
        self.byte(offset).store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the region.
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<(), PhysError> {
        self.check_range(offset, buf.len() as u64)?;
        let mut i = 0usize;
        while i < buf.len() {
            let at = offset + i as u64;
            if at % 8 == 0 && buf.len() - i >= 8 {
                let w = self.word(at).load(Ordering::Relaxed);
                buf[i..i + 8].copy_from_slice(&w.to_ne_bytes());
                i += 8;
            } else {
                buf[i] = self.byte(at).load(Ordering::Relaxed);
                i += 1;
            }
        }
        Ok(())
    }

    /// Copies `buf` into the region starting at `offset`.
    pub fn write_bytes(&self, offset: u64, buf: &[u8]) -> Result<(), PhysError> {
        self.check_range(offset, buf.len() as u64)?;
        let mut i = 0usize;
        while i < buf.len() {
            let at = offset + i as u64;
            if at % 8 == 0 && buf.len() - i >= 8 {
                let mut w = [0u8; 8];
                w.copy_from_slice(&buf[i..i + 8]);
                self.word(at).store(u64::from_ne_bytes(w), Ordering::Relaxed);
                i += 8;
            } else {
                self.byte(at).store(buf[i], Ordering::Relaxed);
                i += 1;
            }
        }
        Ok(())
    }

    /// Sets `len` bytes starting at `offset` to zero.
    pub fn fill_zero(&self, offset: u64, len: u64) -> Result<(), PhysError> {
        self.check_range(offset, len)?;
        let end = offset + len;
        let mut at = offset;
        while at < end {
            if at % 8 == 0 && end - at >= 8 {
                self.word(at).store(0, Ordering::Relaxed);
                at += 8;
            } else {
                self.byte(at).store(0, Ordering::Relaxed);
                at += 1;
            }
        }
        Ok(())
    }

    /// Asks the CPU to start loading `offset..offset+len` into its caches
    /// (the L2, `prefetcht1` on every 64-byte line), and returns at once.
    /// Only a hint: no byte is read or written and nothing visible
    /// changes; on other architectures it does nothing. The fault path
    /// issues it for the frame the next allocation will hand out, so that
    /// the memory latency of clearing a cold frame overlaps with the work
    /// between two faults.
    #[inline]
    pub fn prefetch(&self, offset: u64, len: u64) -> Result<(), PhysError> {
        self.check_range(offset, len)?;
        #[cfg(target_arch = "x86_64")]
        {
            let base = self.map.as_ptr();
            let mut at = offset;
            while at < offset + len {
                // In bounds (checked above), so the cast cannot truncate.
                let ptr = base.wrapping_add(at as usize).cast::<i8>();
                // SAFETY: a prefetch reads and writes no memory and cannot
                // fault, whatever the address; `ptr` lies inside the live
                // mapping anyway. The intrinsic is `unsafe` only for its
                // target feature, SSE, which every x86-64 CPU has.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(ptr)
                };
                at += 64;
            }
        }
        Ok(())
    }

    /// Sets `len` bytes starting at `offset` to zero with one `memset`,
    /// for bytes the caller owns exclusively (a frame just allocated and
    /// not yet reachable from any page table).
    ///
    /// Same result as [`Self::fill_zero`], several times faster on a whole
    /// frame: no per-word atomic store. `&mut self` keeps every other thread
    /// of this process off the region for the duration of the call.
    #[inline]
    pub fn fill_zero_exclusive(&mut self, offset: u64, len: u64) -> Result<(), PhysError> {
        self.check_range(offset, len)?;
        // In bounds (checked above) and `offset + len <= size`, which fit
        // usize when the region was mapped, so neither cast truncates.
        let ptr = self.map.as_mut_ptr().wrapping_add(offset as usize);
        // SAFETY: `ptr..ptr+len` lies inside the live mapping (range checked
        // above; the mapping lives as long as `self`). Nothing in this
        // process can access those bytes concurrently: this module never
        // creates references over the mapping except the transient atomic
        // ones of `word`/`byte`, which borrow `self`, and we hold `&mut self`
        // so no such borrow (and no other thread's call) is live. Agents
        // outside Rust (a KVM vCPU, another process mapping the file) are
        // bound by `as_ptr`'s contract to keep off bytes their owner treats
        // as exclusive; their concurrent atomic accesses to *other* frames
        // touch disjoint memory and do not race with this write. u8 has no
        // alignment requirement and every byte pattern is valid.
        unsafe { std::ptr::write_bytes(ptr, 0, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes from `src_offset` to `dst_offset` within this
    /// region with one `memmove`, for a destination the caller owns
    /// exclusively (a frame just allocated for a copy-on-write) and a source
    /// nobody writes during the call. Overlapping ranges are copied as
    /// `memmove` would. Same result as [`Self::copy_from`] with `src = self`.
    #[inline]
    pub fn copy_exclusive(
        &mut self,
        dst_offset: u64,
        src_offset: u64,
        len: u64,
    ) -> Result<(), PhysError> {
        self.check_range(dst_offset, len)?;
        self.check_range(src_offset, len)?;
        let base = self.map.as_mut_ptr();
        let dst = base.wrapping_add(dst_offset as usize);
        let src = base.wrapping_add(src_offset as usize).cast_const();
        // SAFETY: both ranges lie inside the live mapping (checked above).
        // As in `fill_zero_exclusive`, `&mut self` rules out any other access
        // from this process for the duration of the call, and `as_ptr`'s
        // contract keeps outside agents off the exclusively owned
        // destination; the source may be mapped elsewhere (the page being
        // copied on write), but the caller's contract is that nobody writes
        // it meanwhile, so reading it non-atomically races with nothing.
        // `ptr::copy` allows the ranges to overlap.
        unsafe { std::ptr::copy(src, dst, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes from `src` at `src_offset` to `self` at
    /// `dst_offset` with one `memcpy`, holding both regions exclusively
    /// (a page written to or read from a swap device). Same result as
    /// [`Self::copy_from`]; two `&mut` borrows cannot name the same region,
    /// so the ranges never overlap.
    pub fn copy_from_exclusive(
        &mut self,
        dst_offset: u64,
        src: &mut MappedRegion,
        src_offset: u64,
        len: u64,
    ) -> Result<(), PhysError> {
        self.check_range(dst_offset, len)?;
        src.check_range(src_offset, len)?;
        let dst = self.map.as_mut_ptr().wrapping_add(dst_offset as usize);
        let from = src.map.as_mut_ptr().wrapping_add(src_offset as usize).cast_const();
        // SAFETY: each range lies inside its live mapping (checked above;
        // the casts cannot truncate, as in `fill_zero_exclusive`). The two
        // regions are distinct mappings (two `&mut` borrows cannot alias),
        // so the ranges do not overlap. Holding both `&mut` rules out any
        // other access from this process during the call; `as_ptr`'s
        // contract keeps outside agents off bytes their owner holds
        // exclusively. u8 has no alignment requirement.
        unsafe { std::ptr::copy_nonoverlapping(from, dst, len as usize) };
        Ok(())
    }

    /// Copies `len` bytes from `src` at `src_offset` to `self` at
    /// `dst_offset`. `src` may be `self`; overlapping ranges are copied as
    /// `memmove` would.
    pub fn copy_from(
        &self,
        dst_offset: u64,
        src: &MappedRegion,
        src_offset: u64,
        len: u64,
    ) -> Result<(), PhysError> {
        self.check_range(dst_offset, len)?;
        src.check_range(src_offset, len)?;
        let same = std::ptr::eq(self, src);
        let backward = same && dst_offset > src_offset && dst_offset < src_offset + len;
        let step = if (dst_offset | src_offset | len) % 8 == 0 { 8 } else { 1 };
        let count = len / step;
        for k in 0..count {
            let k = if backward { count - 1 - k } else { k };
            let (d, s) = (dst_offset + k * step, src_offset + k * step);
            if step == 8 {
                self.word(d).store(src.word(s).load(Ordering::Relaxed), Ordering::Relaxed);
            } else {
                self.byte(d).store(src.byte(s).load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(MappedRegion::anonymous(0), Err(PhysError::BadSize { size: 0, .. })));
        assert!(matches!(
            MappedRegion::anonymous(4097),
            Err(PhysError::BadSize { size: 4097, .. })
        ));
        assert!(matches!(
            MappedRegion::anonymous(1 << 53),
            Err(PhysError::BadSize { size: 0x20_0000_0000_0000, .. })
        ));
        assert_eq!(MappedRegion::anonymous(8192).map(|r| r.size()).ok(), Some(8192));
    }

    #[test]
    fn unaligned_bytes_round_trip() {
        let r = MappedRegion::anonymous(8192).unwrap();
        let data: Vec<u8> = (0..37u8).map(|b| b.wrapping_mul(7).wrapping_add(3)).collect();
        r.write_bytes(4093, &data).unwrap();
        let mut back = vec![0u8; 37];
        r.read_bytes(4093, &mut back).unwrap();
        assert_eq!(back, data);
        // The neighbours were not touched.
        let mut edge = [0xffu8; 2];
        r.read_bytes(4092, &mut edge[..1]).unwrap();
        r.read_bytes(4130, &mut edge[1..]).unwrap();
        assert_eq!(edge, [0, 0]);
        assert!(matches!(
            r.read_bytes(8190, &mut [0u8; 3]),
            Err(PhysError::OutOfRange { offset: 8190, len: 3, size: 8192 })
        ));
    }

    #[test]
    fn single_bytes_match_the_byte_slices() {
        let r = MappedRegion::anonymous(4096).unwrap();
        r.store_u8(4095, 0xa5).unwrap();
        r.store_u8(13, 0x3c).unwrap();
        let mut b = [0u8; 2];
        r.read_bytes(4094, &mut b).unwrap();
        assert_eq!(b, [0, 0xa5]);
        r.write_bytes(12, &[7, 8, 9]).unwrap();
        assert_eq!([r.load_u8(12).unwrap(), r.load_u8(13).unwrap()], [7, 8]);
        for bad in [4096, u64::MAX] {
            let oor = |e| matches!(e, PhysError::OutOfRange { offset, len: 1, size: 4096 } if offset == bad);
            assert!(r.store_u8(bad, 1).is_err_and(oor));
            assert!(r.load_u8(bad).is_err_and(oor));
        }
    }

    #[test]
    fn exclusive_zero_matches_atomic_zero() {
        let mut r = MappedRegion::anonymous(3 * 4096).unwrap();
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8 + 1).collect();
        r.write_bytes(0, &data).unwrap();
        r.fill_zero_exclusive(4096 + 5, 4096 - 9).unwrap();
        let mut back = vec![0u8; 3 * 4096];
        r.read_bytes(0, &mut back).unwrap();
        let mut expect = data.clone();
        expect[4096 + 5..2 * 4096 - 4].fill(0);
        assert_eq!(back, expect);
        // The atomic path gives the same bytes.
        let shared = MappedRegion::anonymous(3 * 4096).unwrap();
        shared.write_bytes(0, &data).unwrap();
        shared.fill_zero(4096 + 5, 4096 - 9).unwrap();
        shared.read_bytes(0, &mut back).unwrap();
        assert_eq!(back, expect);
        assert!(matches!(
            r.fill_zero_exclusive(2 * 4096, 4097),
            Err(PhysError::OutOfRange { offset: 8192, len: 4097, size: 12288 })
        ));
        assert!(matches!(
            r.fill_zero_exclusive(u64::MAX, 2),
            Err(PhysError::OutOfRange { offset: u64::MAX, len: 2, .. })
        ));
    }

    #[test]
    fn exclusive_copy_is_memmove() {
        let mut r = MappedRegion::anonymous(2 * 4096).unwrap();
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8 ^ 0x5a).collect();
        r.write_bytes(0, &data).unwrap();
        r.copy_exclusive(4096, 0, 4096).unwrap();
        let mut back = vec![0u8; 4096];
        r.read_bytes(4096, &mut back).unwrap();
        assert_eq!(back, data);
        // Overlap, both directions, at odd offsets.
        r.copy_exclusive(11, 3, 100).unwrap();
        r.read_bytes(11, &mut back[..100]).unwrap();
        assert_eq!(&back[..100], &data[3..103]);
        r.write_bytes(0, &data).unwrap();
        r.copy_exclusive(3, 11, 100).unwrap();
        r.read_bytes(3, &mut back[..100]).unwrap();
        assert_eq!(&back[..100], &data[11..111]);
        assert!(matches!(
            r.copy_exclusive(0, 4097, 4096),
            Err(PhysError::OutOfRange { offset: 4097, len: 4096, size: 8192 })
        ));
        assert!(matches!(
            r.copy_exclusive(4097, 0, 4096),
            Err(PhysError::OutOfRange { offset: 4097, len: 4096, size: 8192 })
        ));
    }

    #[test]
    fn exclusive_copy_between_regions_matches_the_atomic_copy() {
        let mut a = MappedRegion::anonymous(2 * 4096).unwrap();
        let mut b = MappedRegion::anonymous(3 * 4096).unwrap();
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 241) as u8 ^ 0x33).collect();
        a.write_bytes(4096, &data).unwrap();
        b.copy_from_exclusive(2 * 4096 + 8, &mut a, 4096 + 3, 4000).unwrap();
        let mut back = vec![0u8; 4000];
        b.read_bytes(2 * 4096 + 8, &mut back).unwrap();
        assert_eq!(back, data[3..4003]);
        let c = MappedRegion::anonymous(3 * 4096).unwrap();
        c.copy_from(2 * 4096 + 8, &a, 4096 + 3, 4000).unwrap();
        let mut atomic = vec![0u8; 3 * 4096];
        let mut bulk = vec![0u8; 3 * 4096];
        c.read_bytes(0, &mut atomic).unwrap();
        b.read_bytes(0, &mut bulk).unwrap();
        assert_eq!(atomic, bulk);
        assert!(matches!(
            b.copy_from_exclusive(2 * 4096 + 1, &mut a, 0, 4096),
            Err(PhysError::OutOfRange { offset: 8193, len: 4096, size: 12288 })
        ));
        assert!(matches!(
            b.copy_from_exclusive(0, &mut a, 4097, 4096),
            Err(PhysError::OutOfRange { offset: 4097, len: 4096, size: 8192 })
        ));
    }

    #[test]
    fn overlapping_copy_is_memmove() {
        let r = MappedRegion::anonymous(4096).unwrap();
        let data: Vec<u8> = (0..64u8).collect();
        r.write_bytes(0, &data).unwrap();
        r.copy_from(8, &r, 0, 64).unwrap();
        let mut back = vec![0u8; 72];
        r.read_bytes(0, &mut back).unwrap();
        assert_eq!(&back[8..72], &data[..]);
        r.copy_from(0, &r, 3, 61).unwrap();
        r.read_bytes(0, &mut back[..61]).unwrap();
        let mut expect = [0u8; 61];
        expect[..5].copy_from_slice(&[3, 4, 5, 6, 7]);
        expect[5..].copy_from_slice(&data[..56]);
        assert_eq!(&back[..61], &expect[..]);
    }
}
