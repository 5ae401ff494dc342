//! Byte access to physical memory, for the MMU's sized reads and writes.
//!
//! pgtable's [`PhysMem`] moves whole aligned 64-bit words, which is all a
//! walk needs. A CPU's data accesses are 1 to 64 bytes at any alignment, so
//! [`GuestMem`] adds byte reads and writes. Its default methods are built
//! on the word methods (a write of part of a word is a read-modify-write);
//! memory that can do better, or that another agent writes concurrently,
//! overrides them.

use pgtable::{FrameMem, MemError, PhysAddr, PhysMem};

/// Physical memory with byte-granular reads and writes.
pub trait GuestMem: PhysMem {
    /// Reads `buf.len()` bytes starting at `pa`.
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let start = pa.as_u64();
        check_range(self.size(), pa, buf.len())?;
        let mut done = 0usize;
        while done < buf.len() {
            let a = start + done as u64;
            let word_pa = a & !7;
            let off = (a & 7) as usize;
            let n = (8 - off).min(buf.len() - done);
            let w = self.read_u64(PhysAddr::new_truncate(word_pa))?.to_le_bytes();
            buf[done..done + n].copy_from_slice(&w[off..off + n]);
            done += n;
        }
        Ok(())
    }

    /// Writes `data` starting at `pa`.
    ///
    /// The default writes whole words and read-modify-writes partial ones;
    /// that is exact for memory only its `&mut` owner touches.
    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        let start = pa.as_u64();
        check_range(self.size(), pa, data.len())?;
        let mut done = 0usize;
        while done < data.len() {
            let a = start + done as u64;
            let word_pa = PhysAddr::new_truncate(a & !7);
            let off = (a & 7) as usize;
            let n = (8 - off).min(data.len() - done);
            let mut w = if n == 8 { [0; 8] } else { self.read_u64(word_pa)?.to_le_bytes() };
            w[off..off + n].copy_from_slice(&data[done..done + n]);
            self.write_u64(word_pa, u64::from_le_bytes(w))?;
            done += n;
        }
        Ok(())
    }
}

/// The whole byte range must lie inside memory, checked before any byte
/// moves so that a failed write changes nothing.
fn check_range(size: u64, pa: PhysAddr, len: usize) -> Result<(), MemError> {
    match pa.as_u64().checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(MemError::OutOfRange { addr: pa, size }),
    }
}

impl GuestMem for FrameMem {}

impl GuestMem for [u8] {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        check_range(self.len() as u64, pa, buf.len())?;
        let a = pa.as_u64() as usize;
        buf.copy_from_slice(&self[a..a + buf.len()]);
        Ok(())
    }

    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        check_range(self.len() as u64, pa, data.len())?;
        let a = pa.as_u64() as usize;
        self[a..a + data.len()].copy_from_slice(data);
        Ok(())
    }
}

impl GuestMem for alloc::vec::Vec<u8> {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.as_slice().read_bytes(pa, buf)
    }

    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.as_mut_slice().write_bytes(pa, data)
    }
}

impl<M: GuestMem + ?Sized> GuestMem for &mut M {
    fn read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read_bytes(pa, buf)
    }

    fn write_bytes(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        (**self).write_bytes(pa, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_defaults_match_slice() {
        let mut fm = FrameMem::new(1);
        let mut v = alloc::vec![0u8; 4096];
        let data: alloc::vec::Vec<u8> = (1..=37u8).collect();
        for start in [0u64, 3, 7, 8, 13, 4096 - 37] {
            fm.write_bytes(PhysAddr::new_truncate(start), &data).unwrap();
            v.write_bytes(PhysAddr::new_truncate(start), &data).unwrap();
            let mut a = [0u8; 37];
            let mut b = [0u8; 37];
            fm.read_bytes(PhysAddr::new_truncate(start), &mut a).unwrap();
            v.read_bytes(PhysAddr::new_truncate(start), &mut b).unwrap();
            assert_eq!(a, b);
            assert_eq!(&a[..], &data[..]);
        }
        for w in 0..512u64 {
            let pa = PhysAddr::new_truncate(w * 8);
            assert_eq!(fm.read_u64(pa).unwrap(), v.read_u64(pa).unwrap());
        }
    }

    #[test]
    fn out_of_range_changes_nothing() {
        let mut fm = FrameMem::new(1);
        let r = fm.write_bytes(PhysAddr::new_truncate(4090), &[0xff; 8]);
        assert!(matches!(r, Err(MemError::OutOfRange { .. })));
        assert!(fm.frames()[0].0.iter().all(|&w| w == 0));
    }
}
