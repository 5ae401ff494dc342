//! Physical memory as the walker and mapper see it, and where table frames
//! come from.
//!
//! [`PhysMem`] is the only way page-table code touches memory: a 64-bit word
//! at a physical address, read, written or compare-exchanged. Anything that
//! can do that (an mmap'd region, a guest RAM of an emulator, a `Vec<u8>`)
//! can hold page tables.

use crate::addr::{PAGE_SIZE, Pfn, PhysAddr};
use crate::error::MemError;

/// Word-granular access to physical memory.
///
/// Addresses must be 8-byte aligned and the whole word must lie inside the
/// memory; anything else is a [`MemError`], never a panic. Writes take
/// `&mut self` so that a plain byte slice can implement the trait;
/// implementations over shared memory (see the `phys` crate) make each word
/// access atomic so that a concurrent walker (a vCPU, say) sees whole words.
pub trait PhysMem {
    /// Reads the little-endian word at `pa`.
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError>;

    /// Writes the little-endian word `value` at `pa`.
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError>;

    /// Stores `new` at `pa` if the word there equals `current`.
    ///
    /// Returns `Ok(Ok(current))` when it stored, `Ok(Err(actual))` with the
    /// value found when it did not. This is how the walker sets Accessed and
    /// Dirty, as the CPU does with a locked read-modify-write.
    ///
    /// The default is a read followed by a write. That is exact for memory
    /// that only its `&mut` owner touches (a byte slice, a map). Memory that
    /// a concurrent walker or vCPU can see must override it with a real
    /// atomic compare-exchange, as phys's `PhysMemory` does.
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let actual = self.read_u64(pa)?;
        if actual != current {
            return Ok(Err(actual));
        }
        self.write_u64(pa, new)?;
        Ok(Ok(current))
    }

    /// Size of the memory in bytes; addresses at or above it are out of range.
    fn size(&self) -> u64;
}

fn slice_word(len: usize, pa: PhysAddr) -> Result<usize, MemError> {
    let a = pa.as_u64();
    if a % 8 != 0 {
        return Err(MemError::Unaligned(pa));
    }
    match a.checked_add(8) {
        Some(end) if end <= len as u64 => Ok(a as usize),
        _ => Err(MemError::OutOfRange { addr: pa, size: len as u64 }),
    }
}

impl PhysMem for [u8] {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let i = slice_word(self.len(), pa)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(&self[i..i + 8]);
        Ok(u64::from_le_bytes(w))
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        let i = slice_word(self.len(), pa)?;
        self[i..i + 8].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }
}

#[cfg(feature = "alloc")]
impl PhysMem for alloc::vec::Vec<u8> {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        self.as_slice().read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        self.as_mut_slice().write_u64(pa, value)
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl<M: PhysMem + ?Sized> PhysMem for &mut M {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        (**self).read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        (**self).write_u64(pa, value)
    }
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        (**self).compare_exchange_u64(pa, current, new)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

/// One 4 KiB frame as 512 little-endian-in-memory words, aligned to 4 KiB
/// so that a frame can also be viewed as a hardware page table by code that
/// needs a real pointer (a KVM guest, another paging library).
#[derive(Clone, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct Frame(pub [u64; 512]);

impl Default for Frame {
    fn default() -> Self {
        Self([0; 512])
    }
}

/// Physical memory as a vector of 4 KiB-aligned frames, starting at
/// physical address 0.
///
/// Word access is an index into one frame, so a walk costs one bounds check
/// per level; the alignment makes each frame usable as a `#[repr(align(4096))]`
/// page-table structure.
#[cfg(feature = "alloc")]
#[derive(Clone, Default)]
pub struct FrameMem {
    frames: alloc::vec::Vec<Frame>,
}

#[cfg(feature = "alloc")]
impl FrameMem {
    /// `count` zeroed frames (physical addresses `0..count * 4096`).
    pub fn new(count: usize) -> Self {
        Self { frames: alloc::vec![Frame::default(); count] }
    }

    /// The frames, frame `n` at physical address `n * 4096`.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The frames, mutably.
    pub fn frames_mut(&mut self) -> &mut [Frame] {
        &mut self.frames
    }

    #[inline]
    fn word(&self, pa: PhysAddr) -> Result<(usize, usize), MemError> {
        let a = pa.as_u64();
        if a & 7 != 0 {
            return Err(MemError::Unaligned(pa));
        }
        let f = (a >> 12) as usize;
        if f >= self.frames.len() {
            return Err(MemError::OutOfRange { addr: pa, size: self.size() });
        }
        Ok((f, ((a >> 3) & 511) as usize))
    }
}

#[cfg(feature = "alloc")]
impl core::fmt::Debug for FrameMem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FrameMem({} frames)", self.frames.len())
    }
}

#[cfg(feature = "alloc")]
impl PhysMem for FrameMem {
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let a = pa.as_u64();
        // One combined test on the fast path: aligned and inside memory.
        match self.frames.get((a >> 12) as usize) {
            Some(fr) if a & 7 == 0 => Ok(fr.0[((a >> 3) & 511) as usize]),
            _ => self.word(pa).map(|_| 0),
        }
    }

    #[inline]
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        let (f, w) = self.word(pa)?;
        self.frames[f].0[w] = value;
        Ok(())
    }

    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let (f, w) = self.word(pa)?;
        let slot = &mut self.frames[f].0[w];
        if *slot != current {
            return Ok(Err(*slot));
        }
        *slot = new;
        Ok(Ok(current))
    }

    fn size(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE
    }
}

/// Where the mapper gets frames for new page tables and returns emptied ones.
///
/// The mapper zeroes a frame it receives before linking it in, so a source
/// need not; it never hands back a frame it did not get from the source.
pub trait FrameSource {
    /// A frame for a new page table, or an error when none is left.
    fn alloc_table_frame(&mut self) -> Result<Pfn, MemError>;

    /// Returns a table frame the mapper no longer uses.
    fn free_table_frame(&mut self, pfn: Pfn);
}

/// A trivial [`FrameSource`] handing out frames upward from a start frame,
/// with a free list; for tests and for embedders with a reserved table area.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct BumpFrames {
    next: u64,
    end: u64,
    freed: alloc::vec::Vec<Pfn>,
}

#[cfg(feature = "alloc")]
impl BumpFrames {
    /// Frames `start..end` (frame numbers), lowest first.
    pub fn new(start: Pfn, end: Pfn) -> Self {
        Self { next: start.0, end: end.0, freed: alloc::vec::Vec::new() }
    }

    /// Number of frames currently handed out.
    pub fn in_use(&self, start: Pfn) -> u64 {
        self.next - start.0 - self.freed.len() as u64
    }
}

#[cfg(feature = "alloc")]
impl FrameSource for BumpFrames {
    fn alloc_table_frame(&mut self) -> Result<Pfn, MemError> {
        if let Some(p) = self.freed.pop() {
            return Ok(p);
        }
        if self.next >= self.end {
            return Err(MemError::NoFrames);
        }
        self.next += 1;
        Ok(Pfn(self.next - 1))
    }

    fn free_table_frame(&mut self, pfn: Pfn) {
        self.freed.push(pfn);
    }
}

/// Zeroes the 4 KiB frame `pfn` through `mem`, word by word.
pub fn zero_frame<M: PhysMem + ?Sized>(mem: &mut M, pfn: Pfn) -> Result<(), MemError> {
    let base = pfn.addr().as_u64();
    let mut off = 0;
    while off < PAGE_SIZE {
        mem.write_u64(
            PhysAddr::new(base + off)
                .map_err(|_| MemError::OutOfRange { addr: pfn.addr(), size: mem.size() })?,
            0,
        )?;
        off += 8;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_words() {
        let mut m = vec![0u8; 64];
        let pa = PhysAddr::new(8).unwrap();
        m.write_u64(pa, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m[8], 0x88);
        assert_eq!(m.read_u64(pa).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.compare_exchange_u64(pa, 1, 2).unwrap(), Err(0x1122_3344_5566_7788));
        assert_eq!(
            m.compare_exchange_u64(pa, 0x1122_3344_5566_7788, 2).unwrap(),
            Ok(0x1122_3344_5566_7788)
        );
        assert_eq!(m.read_u64(pa).unwrap(), 2);
        assert_eq!(
            m.read_u64(PhysAddr::new(4).unwrap()),
            Err(MemError::Unaligned(PhysAddr::new(4).unwrap()))
        );
        assert!(matches!(m.read_u64(PhysAddr::new(64).unwrap()), Err(MemError::OutOfRange { .. })));
        assert!(matches!(m.read_u64(PhysAddr::new(56).unwrap()), Ok(0)));
    }

    #[test]
    fn bump_frames() {
        let mut f = BumpFrames::new(Pfn(4), Pfn(6));
        assert_eq!(f.alloc_table_frame(), Ok(Pfn(4)));
        assert_eq!(f.alloc_table_frame(), Ok(Pfn(5)));
        assert_eq!(f.alloc_table_frame(), Err(MemError::NoFrames));
        f.free_table_frame(Pfn(4));
        assert_eq!(f.in_use(Pfn(4)), 1);
        assert_eq!(f.alloc_table_frame(), Ok(Pfn(4)));
    }
}
