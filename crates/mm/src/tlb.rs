//! The emulated TLB shootdown: where the kernel would flush TLBs after
//! changing or removing a PTE, the machine records which process and which
//! pages, so that an embedder caching translations (an emulator's TLB, a
//! softmmu such as QEMU's) drops exactly those.
//!
//! Recorded where Linux flushes on x86:
//! - `ptep_clear_flush` in `wp_page_copy` (COW) and in `try_to_unmap`
//!   (reclaim), one page each;
//! - `wp_page_reuse` (2.6.x `ptep_set_access_flags` flushed the page when
//!   the entry changed; a flush more than 6.18 does is always legal);
//! - `page_referenced`'s `ptep_clear_flush_young` (the Accessed bit
//!   cleared);
//! - `flush_tlb_range` after `change_protection` (mprotect) and after
//!   zapping (munmap, MADV_DONTNEED, exit), over the range;
//! - `flush_tlb_mm(oldmm)` at the end of `dup_mmap` (fork write-protected
//!   the parent's entries), the whole address space.
//!
//! Installing an entry where none was present (do_anonymous_page,
//! do_swap_page) or only raising A/D never needs a flush: nothing can have
//! cached a not-present entry.
//!
//! Recording is off until [`Machine::track_tlb_flushes`] turns it on, so a
//! machine nobody embeds pays one branch per flush site.

use crate::machine::{Machine, TASK_SIZE};
use crate::process::Pid;

/// One shootdown: translations of `pid` for `[start, end)` (page aligned)
/// may be stale and must be dropped before `pid` runs again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlbFlush {
    /// The address space.
    pub pid: Pid,
    /// First address (page aligned).
    pub start: u64,
    /// One past the last address (page aligned).
    pub end: u64,
}

impl TlbFlush {
    /// Whether the flush covers the page containing `va`.
    pub fn covers(&self, va: u64) -> bool {
        (self.start..self.end).contains(&(va & !0xfff))
    }

    /// Whether this flushes the whole address space (`flush_tlb_mm`).
    pub fn is_whole_mm(&self) -> bool {
        self.start == 0 && self.end >= TASK_SIZE
    }
}

impl Machine {
    /// Starts (or stops, dropping what was pending) recording shootdowns.
    pub fn track_tlb_flushes(&mut self, on: bool) {
        self.tlb_flushes = on.then(Vec::new);
    }

    /// The shootdowns recorded since the last call, oldest first.
    pub fn take_tlb_flushes(&mut self) -> Vec<TlbFlush> {
        match &mut self.tlb_flushes {
            Some(v) => std::mem::take(v),
            None => Vec::new(),
        }
    }

    /// Whether shootdowns are pending.
    pub fn tlb_flush_pending(&self) -> bool {
        self.tlb_flushes.as_ref().is_some_and(|v| !v.is_empty())
    }

    /// `flush_tlb_range`/`flush_tlb_page`: records `[start, end)` of `pid`.
    pub(crate) fn flush_tlb_range(&mut self, pid: Pid, start: u64, end: u64) {
        if let Some(v) = &mut self.tlb_flushes {
            v.push(TlbFlush { pid, start: start & !0xfff, end: (end + 0xfff) & !0xfff });
        }
    }

    /// `flush_tlb_page` for the page at `addr` of the VMA `vma`. The
    /// "not tracked" test is inlined (every COW fault flushes); the
    /// recording is out of line.
    #[inline(always)]
    pub(crate) fn flush_tlb_vma_page(&mut self, vma: rmap::VmaId, addr: u64) {
        if self.tlb_flushes.is_some() {
            self.flush_tlb_vma_page_tracked(vma, addr);
        }
    }

    #[inline(never)]
    fn flush_tlb_vma_page_tracked(&mut self, vma: rmap::VmaId, addr: u64) {
        if let Some(&pid) = self.vma_owner.get(&vma) {
            self.flush_tlb_range(pid, addr, addr + 4096);
        }
    }

    /// `flush_tlb_mm`: the whole address space of `pid`.
    pub(crate) fn flush_tlb_mm(&mut self, pid: Pid) {
        self.flush_tlb_range(pid, 0, TASK_SIZE);
    }
}
