//! The emulated machine: physical memory, swap, rmap and processes, and the
//! process-level operations (spawn, mmap, fork, exit, ...).
//!
//! Everything is deterministic: frames and swap slots are handed out lowest
//! first, and every collection that reaches output is ordered.

use std::collections::BTreeMap;

use pgtable::{EntryFormat, Pfn, VirtAddr};
use phys::{FrameAllocator, PageDescs, PageFlags, PhysMemory};
use rmap::{Rmap, RmapError, RmapSemantics, SwapPteFormat, VmaId, VmaRange};

use crate::config::MachineConfig;
use crate::errno::{Errno, SysResult};
use crate::error::MmError;
use crate::outcome::{Oops, Outcome};
use crate::process::{Pid, Process, Vma};
use crate::prot::Prot;
use crate::swap_state::SwapState;

/// Highest user address + 1 (TASK_SIZE of 4-level x86-64: 2^47 - 4096).
pub const TASK_SIZE: u64 = (1 << 47) - 4096;

/// The page size.
pub const PAGE_SIZE: u64 = 4096;

/// `vm.max_map_count`'s default (`DEFAULT_MAX_MAP_COUNT`, 65530): mmap
/// fails with ENOMEM when a process has more VMAs than this, and a split
/// (mprotect, munmap inside a VMA) when it has this many. A ptemu process
/// has no stack, vDSO or binary mappings, so its count is its scenario
/// VMAs alone.
pub const MAX_MAP_COUNT: usize = 65530;

/// `PAGE_ALIGN`: `len` rounded up to whole pages; `None` where Linux's
/// wraps to 0.
pub(crate) const fn page_align(len: u64) -> Option<u64> {
    match len.checked_add(PAGE_SIZE - 1) {
        Some(v) => Some(v & !(PAGE_SIZE - 1)),
        None => None,
    }
}

/// The emulated machine.
#[derive(Debug)]
pub struct Machine {
    pub(crate) era_name: String,
    pub(crate) sem: RmapSemantics,
    pub(crate) format: EntryFormat,
    pub(crate) mem: PhysMemory,
    pub(crate) frames: FrameAllocator,
    pub(crate) pages: PageDescs,
    pub(crate) swap: SwapState,
    pub(crate) rmap: Rmap,
    pub(crate) procs: BTreeMap<Pid, Process>,
    pub(crate) vma_owner: BTreeMap<VmaId, Pid>,
    pub(crate) next_pid: u32,
    pub(crate) next_vma: u64,
    pub(crate) zero_pfn: Pfn,
    pub(crate) step: String,
    /// Recorded TLB shootdowns (tlb.rs), `None` while not tracked.
    pub(crate) tlb_flushes: Option<Vec<crate::tlb::TlbFlush>>,
    /// try_to_unmap's rmap-walk buffer, kept between pages so that
    /// reclaiming one does not allocate (no state: cleared by each walk).
    pub(crate) walk_hits: Vec<rmap::RmapHit>,
}

/// Splits an rmap result into "an oops happened" and real errors.
///
/// The fault paths (fault.rs) pass the results of page_add_new_anon_rmap,
/// page_add_anon_rmap, page_move_anon_rmap and page_remove_rmap up with
/// `?` rather than through here, so an oops there would surface as
/// [`MmError::Rmap`]. None can happen: those look up only the faulting
/// VMA's own anon_vma (or hand out a handle from its chain without
/// following it), and a live VMA's chain keeps its anon_vmas alive; the
/// one lookup a fault can make of another anon_vma, anon_vma_prepare's,
/// comes through here. The only rmap walk under a fault is the shrinker's,
/// inside an allocation, and it comes back as [`MmError::Oops`].
pub(crate) enum RmapResult<T> {
    Ok(T),
    Oops(rmap::Oops),
}

pub(crate) fn rmap_res<T>(r: Result<T, RmapError>) -> Result<RmapResult<T>, MmError> {
    match r {
        Ok(v) => Ok(RmapResult::Ok(v)),
        Err(RmapError::Oops(o)) => Ok(RmapResult::Oops(*o)),
        Err(e) => Err(e.into()),
    }
}

impl Machine {
    /// Builds a machine: memory, one swap device per configured size, an
    /// empty rmap, and the shared zero page (the first frame allocated).
    pub fn new(cfg: MachineConfig) -> Result<Self, MmError> {
        if cfg.memory == 0 || cfg.memory % 4096 != 0 {
            return Err(MmError::BadConfig(format!(
                "memory size {:#x} must be a non-zero multiple of 4096",
                cfg.memory
            )));
        }
        let mem = PhysMemory::new(cfg.memory)?;
        // Descriptors and allocator bookkeeping that cannot be allocated
        // (a huge memory size from an embedder) are an error, not an abort.
        let mut pages = PageDescs::try_new(mem.frames())?;
        let mut frames = FrameAllocator::try_new(&mut pages)?;
        let zero_pfn = frames.alloc(0, &mut pages)?;
        mem.zero_frame(zero_pfn)?;
        pages.get_mut(zero_pfn)?.flags = PageFlags::RESERVED | PageFlags::ZERO_PAGE;
        let format = match cfg.semantics.swap_pte_format {
            SwapPteFormat::Classic => EntryFormat::Classic,
            SwapPteFormat::L1tf => EntryFormat::L1tf,
        };
        let swap = SwapState::new(&cfg.swap)?;
        let mut rmap = Rmap::new(cfg.semantics);
        rmap.set_step("boot");
        Ok(Self {
            era_name: cfg.era_name,
            sem: cfg.semantics,
            format,
            mem,
            frames,
            pages,
            swap,
            rmap,
            procs: BTreeMap::new(),
            vma_owner: BTreeMap::new(),
            next_pid: 1,
            next_vma: 1,
            zero_pfn,
            step: "boot".to_string(),
            tlb_flushes: None,
            walk_hits: Vec::new(),
        })
    }

    /// Touches every free frame (and every free swap slot) so that the host backs the whole emulated
    /// memory now rather than on first use (what MAP_POPULATE would do):
    /// a real machine's RAM exists before the kernel hands it out, and
    /// benchmarks should not time the host's page faults. Free frames'
    /// contents carry no meaning, so zeroing them changes nothing visible.
    pub fn populate_memory(&self) -> Result<(), MmError> {
        for (pfn, order) in self.frames.free_list() {
            self.mem.zero_frames(pfn, order)?;
        }
        // Free swap slots too: their contents mean nothing until written.
        for d in self.swap.inner.devices() {
            for (slot, &v) in d.swap_map().as_bytes().iter().enumerate() {
                if v == 0 {
                    d.region().fill_zero(slot as u64 * 4096, 4096)?;
                }
            }
        }
        Ok(())
    }

    /// The era (or custom semantics) name the machine was built with.
    pub fn era_name(&self) -> &str {
        &self.era_name
    }

    /// The behaviour switches in force.
    pub fn semantics(&self) -> RmapSemantics {
        self.sem
    }

    /// The PTE format the era writes (Classic for 2.6.x, L1TF for 6.18).
    pub fn entry_format(&self) -> EntryFormat {
        self.format
    }

    /// Names the current step, so that oops reports can say which step
    /// freed an anon_vma and which one followed it.
    pub fn set_step(&mut self, label: impl Into<String>) {
        self.step = label.into();
        self.rmap.set_step(self.step.clone());
    }

    /// The current step label.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The shared zero page's frame.
    pub fn zero_pfn(&self) -> Pfn {
        self.zero_pfn
    }

    /// Number of physical frames.
    pub fn frame_count(&self) -> u64 {
        self.pages.len()
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.frames.free_frames()
    }

    /// The machine's physical memory: what an emulator embedding the
    /// machine maps as its guest-physical RAM (frame N at N * 4096).
    pub fn phys_memory(&self) -> &PhysMemory {
        &self.mem
    }

    /// The rmap state (anon_vmas, chains), for inspection.
    pub fn rmap(&self) -> &Rmap {
        &self.rmap
    }

    /// Declares an RCU grace period: freed anon_vma slots may be reused.
    pub fn rcu_grace_period(&mut self) {
        self.rmap.rcu_grace_period();
    }

    // Matches rather than `ok_or`: an eagerly built error costs a drop
    // on every successful lookup (reclaim looks a process up per page).
    pub(crate) fn proc(&self, pid: Pid) -> Result<&Process, MmError> {
        match self.procs.get(&pid) {
            Some(p) => Ok(p),
            None => Err(MmError::NoSuchProcess(pid)),
        }
    }

    pub(crate) fn proc_mut(&mut self, pid: Pid) -> Result<&mut Process, MmError> {
        match self.procs.get_mut(&pid) {
            Some(p) => Ok(p),
            None => Err(MmError::NoSuchProcess(pid)),
        }
    }

    pub(crate) fn oops(&self, o: &rmap::Oops, page: Option<Pfn>) -> Oops {
        Oops::from_rmap(o, page, &self.step)
    }

    // ----- frames -----

    /// An order-0 frame (refcount 1, the caller's), reclaiming an LRU page
    /// when memory is exhausted; out of memory when nothing can be
    /// reclaimed, [`MmError::Oops`] when reclaim oopsed (the operation
    /// turns it into its outcome). `busy` pages are in use by the caller
    /// and not reclaimed.
    pub(crate) fn alloc_frame(
        &mut self,
        during: &'static str,
        busy: &[Pfn],
    ) -> Result<Pfn, MmError> {
        // The common case first, the shrinker's loop out of line.
        match self.frames.alloc(0, &mut self.pages) {
            Ok(p) => Ok(p),
            Err(e) => self.alloc_frame_slow(during, busy, e),
        }
    }

    /// `alloc_frame`, and the frame the next single-frame allocation will
    /// hand out (for the fault paths' prefetch), found by the allocator
    /// on the way instead of by a second search.
    #[inline(always)]
    pub(crate) fn alloc_frame_and_next(
        &mut self,
        during: &'static str,
        busy: &[Pfn],
    ) -> Result<(Pfn, Option<Pfn>), MmError> {
        match self.frames.alloc_one(&mut self.pages) {
            Ok(r) => Ok(r),
            Err(e) => {
                let p = self.alloc_frame_slow(during, busy, e)?;
                Ok((p, self.frames.next_frame()))
            }
        }
    }

    /// `alloc_frame` after a first attempt failed with `first`: shrink
    /// and retry while the shrinker frees something.
    #[cold]
    #[inline(never)]
    fn alloc_frame_slow(
        &mut self,
        during: &'static str,
        busy: &[Pfn],
        first: phys::PhysError,
    ) -> Result<Pfn, MmError> {
        let mut r = Err(first);
        loop {
            match r {
                Ok(p) => return Ok(p),
                Err(phys::PhysError::OutOfMemory { .. }) => match self.shrink_one(busy)? {
                    Outcome::Done(true) => {}
                    Outcome::Done(false) => return Err(MmError::OutOfMemory { during }),
                    Outcome::Oops(o) => return Err(MmError::Oops(Box::new(o))),
                    Outcome::Segv(s) => {
                        return Err(MmError::bug("alloc_frame", format!("shrinker gave {s}")));
                    }
                },
                Err(e) => return Err(e.into()),
            }
            r = self.frames.alloc(0, &mut self.pages);
        }
    }

    /// Drops one reference to a user page; frees it at zero
    /// (`put_page` -> `__page_cache_release` -> `free_unref_page`).
    #[inline(always)]
    pub(crate) fn put_page(&mut self, pfn: Pfn) -> Result<(), MmError> {
        if pfn == self.zero_pfn {
            return Ok(());
        }
        let d = self.pages.get_mut(pfn)?;
        d.refcount = d.refcount.checked_sub(1).ok_or_else(|| {
            MmError::bug("put_page", format!("refcount underflow on frame {pfn}"))
        })?;
        if d.refcount > 0 {
            return Ok(());
        }
        self.free_page_frame(pfn)
    }

    /// Frees a user page whose refcount reached zero: off the LRU
    /// (`__page_cache_release`), back to the buddy allocator.
    pub(crate) fn free_page_frame(&mut self, pfn: Pfn) -> Result<(), MmError> {
        let d = self.pages.get_mut(pfn)?;
        d.flags.remove(PageFlags::LRU | PageFlags::ACTIVE);
        // The allocator's free takes the caller's last reference itself.
        d.refcount = 1;
        self.frames.free(pfn, 0, &mut self.pages)?;
        Ok(())
    }

    /// `lru_cache_add`: a new anon page joins the LRU, on the active list
    /// in the 2.6.x eras (`lru_cache_add_active_or_unevictable`), on the
    /// inactive one in 6.18 (new anon folios start inactive since 5.9).
    /// These are the flags it sets; the fault paths hold the new page's
    /// descriptor already and set them there.
    #[inline(always)]
    pub(crate) fn lru_new_flags(sem: RmapSemantics) -> PageFlags {
        if sem.anon_exclusive { PageFlags::LRU } else { PageFlags::LRU | PageFlags::ACTIVE }
    }

    /// The pages on the LRU (PG_lru), lowest frame first: the order the
    /// shrinker and `shrink_all` take them in. Derived from the flag rather
    /// than kept in a second structure, so the two can never disagree and
    /// the fault path pays only for the flag.
    pub(crate) fn lru_pages(&self) -> Vec<Pfn> {
        self.pages
            .iter()
            .filter(|(_, d)| d.flags.contains(PageFlags::LRU))
            .map(|(pfn, _)| pfn)
            .collect()
    }

    /// `lru_cache_add_anon` of a page read from swap: inactive in every era.
    pub(crate) fn lru_add_inactive(&mut self, pfn: Pfn) -> Result<(), MmError> {
        self.pages.get_mut(pfn)?.flags |= PageFlags::LRU;
        Ok(())
    }

    // ----- processes -----

    /// A new process with an empty address space (its own PML4).
    pub fn spawn(&mut self) -> Result<Pid, MmError> {
        let pml4 = self.alloc_table(&[])?;
        let pid = Pid(self.next_pid);
        self.next_pid = self
            .next_pid
            .checked_add(1)
            .ok_or_else(|| MmError::BadConfig("process ids exhausted".into()))?;
        self.procs.insert(pid, Process { pid, parent: None, pml4, vmas: BTreeMap::new() });
        Ok(pid)
    }

    /// Whether `pid` is a live process.
    pub fn process_exists(&self, pid: Pid) -> bool {
        self.procs.contains_key(&pid)
    }

    /// Every live process, by pid.
    pub fn processes(&self) -> Vec<Pid> {
        self.procs.keys().copied().collect()
    }

    /// The VMAs of a process, by address.
    pub fn vmas(&self, pid: Pid) -> Result<Vec<Vma>, MmError> {
        Ok(self.proc(pid)?.vmas.values().copied().collect())
    }

    /// The PML4 frame of a process (its CR3).
    pub fn cr3(&self, pid: Pid) -> Result<Pfn, MmError> {
        Ok(self.proc(pid)?.pml4)
    }

    pub(crate) fn new_vma_id(&mut self) -> VmaId {
        let id = VmaId(self.next_vma);
        self.next_vma += 1;
        id
    }

    /// Checks a user range: page-aligned start, non-zero page-aligned
    /// length, inside the user address space.
    pub(crate) fn check_range(addr: u64, len: u64) -> Result<u64, MmError> {
        if VirtAddr::new(addr).is_err() || addr >= TASK_SIZE {
            return Err(MmError::BadAddress { addr, reason: "not a user address" });
        }
        if addr % 4096 != 0 {
            return Err(MmError::BadAddress { addr, reason: "not page aligned" });
        }
        if len == 0 || len % 4096 != 0 {
            return Err(MmError::BadLength {
                addr,
                len,
                reason: "must be a non-zero multiple of 4096",
            });
        }
        match addr.checked_add(len) {
            Some(end) if end <= TASK_SIZE => Ok(end),
            _ => Err(MmError::BadLength { addr, len, reason: "runs past the user address space" }),
        }
    }

    /// mmap(addr, len, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE):
    /// a new VMA, no pages yet, or Linux's errno (`do_mmap` and
    /// `__get_unmapped_area`, in their order):
    /// - a zero length is EINVAL; the length is rounded up to whole pages
    ///   (ENOMEM if that overflows);
    /// - ENOMEM when the process already has more than
    ///   [`MAX_MAP_COUNT`] VMAs;
    /// - ENOMEM when the length exceeds [`TASK_SIZE`] or the mapping would
    ///   end past it; only then is an unaligned address EINVAL;
    /// - EEXIST when any page of the range is mapped already.
    ///
    /// A new mapping next to a compatible VMA extends it instead
    /// (`vma_merge_new_range`, see [`crate::vma_merge`]).
    ///
    /// Addresses below `vm.mmap_min_addr` are allowed: ptemu's processes
    /// run as root, which has CAP_SYS_RAWIO (measured on the host: mmap at
    /// 0 succeeds as root). MAP_FIXED_NOREPLACE is 4.17's; in the 2.6.x
    /// eras the same result is what a program gets from a hint address and
    /// a check (the kernel never replaces a mapping there either).
    /// Overcommit accounting (`security_vm_enough_memory_mm`) is not
    /// modelled: a mapping larger than memory and swap succeeds.
    pub fn mmap(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<Outcome<SysResult>, MmError> {
        let p = self.proc(pid)?;
        if len == 0 {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        }
        let Some(len) = page_align(len) else { return Ok(Outcome::Done(Err(Errno::ENOMEM))) };
        if p.vmas.len() > MAX_MAP_COUNT {
            return Ok(Outcome::Done(Err(Errno::ENOMEM)));
        }
        if len > TASK_SIZE || addr > TASK_SIZE - len {
            return Ok(Outcome::Done(Err(Errno::ENOMEM)));
        }
        if addr % PAGE_SIZE != 0 {
            return Ok(Outcome::Done(Err(Errno::EINVAL)));
        }
        let end = addr + len;
        if p.vmas.range(..end).next_back().is_some_and(|(_, v)| v.end > addr) {
            return Ok(Outcome::Done(Err(Errno::EEXIST)));
        }
        // mmap_region: a private writable mapping is accounted (VM_ACCOUNT).
        let account = prot.writable();
        if let Some(o) = self.merge_new_range(pid, addr, end, prot, account)? {
            return Ok(o.map(Ok));
        }
        let id = self.new_vma_id();
        let pgoff = addr >> 12;
        self.rmap.vma_register(id, VmaRange::new(addr, pgoff, len >> 12)?)?;
        self.rmap.vma_set_mm(id, vm_mm(self.proc(pid)?.pml4))?;
        self.vma_owner.insert(id, pid);
        self.proc_mut(pid)?.vmas.insert(addr, Vma { start: addr, end, prot, pgoff, id, account });
        Ok(Outcome::Done(Ok(())))
    }

    /// `__split_vma`: splits the VMA containing `at` (strictly inside it)
    /// into two; the new upper part is a copy linked to the same anon_vmas
    /// (`anon_vma_clone`).
    pub(crate) fn split_vma(&mut self, pid: Pid, at: u64) -> Result<Outcome<()>, MmError> {
        let Some(vma) = self.proc(pid)?.vma_at(at).copied() else { return Ok(Outcome::Done(())) };
        if vma.start == at {
            return Ok(Outcome::Done(()));
        }
        let new_id = self.new_vma_id();
        let upper = Vma {
            start: at,
            end: vma.end,
            prot: vma.prot,
            pgoff: vma.pgoff + ((at - vma.start) >> 12),
            id: new_id,
            account: vma.account,
        };
        // vm_area_dup: the same vm_mm as the VMA split.
        self.rmap.vma_dup(new_id, vma.id)?;
        self.rmap.vma_set_range(new_id, VmaRange::new(upper.start, upper.pgoff, upper.pages())?)?;
        if let RmapResult::Oops(o) = rmap_res(self.rmap.anon_vma_clone(new_id, vma.id))? {
            return Ok(Outcome::Oops(self.oops(&o, None)));
        }
        let lower = Vma { end: at, ..vma };
        self.rmap.vma_set_range(vma.id, VmaRange::new(lower.start, lower.pgoff, lower.pages())?)?;
        self.vma_owner.insert(new_id, pid);
        let p = self.proc_mut(pid)?;
        p.vmas.insert(lower.start, lower);
        p.vmas.insert(upper.start, upper);
        Ok(Outcome::Done(()))
    }

    /// `split_vma`: [`Self::split_vma`] after its map-count check, ENOMEM
    /// when the process already has [`MAX_MAP_COUNT`] VMAs. Nothing to do
    /// (no VMA strictly around `at`) succeeds.
    pub(crate) fn split_vma_checked(
        &mut self,
        pid: Pid,
        at: u64,
    ) -> Result<Outcome<SysResult>, MmError> {
        let p = self.proc(pid)?;
        match p.vma_at(at) {
            Some(v) if v.start != at => {
                if p.vmas.len() >= MAX_MAP_COUNT {
                    return Ok(Outcome::Done(Err(Errno::ENOMEM)));
                }
            }
            _ => return Ok(Outcome::Done(Ok(()))),
        }
        Ok(self.split_vma(pid, at)?.map(Ok))
    }

    /// Splits VMAs so that `[addr, end)` starts and ends on VMA boundaries.
    pub(crate) fn split_around(
        &mut self,
        pid: Pid,
        addr: u64,
        end: u64,
    ) -> Result<Outcome<()>, MmError> {
        if let o @ (Outcome::Oops(_) | Outcome::Segv(_)) = self.split_vma(pid, addr)? {
            return Ok(o);
        }
        self.split_vma(pid, end)
    }
}

/// The word rmap keeps as a VMA's `vm_mm` ([`rmap::VmaRmap::mm`]): the
/// owning process's PML4 frame, what page_vma_mapped_walk starts from
/// (`vma->vm_mm->pgd`). A process keeps its PML4 for as long as it has
/// VMAs (execve unmaps them all before it changes the PML4). Frame 0 is
/// the zero page, so no PML4 is 0, rmap's "not set".
pub(crate) fn vm_mm(pml4: Pfn) -> u64 {
    pml4.as_u64()
}

/// The PML4 a VMA's `vm_mm` word names, `None` when it was never set.
pub(crate) fn vm_mm_pml4(mm: u64) -> Option<Pfn> {
    (mm != 0).then_some(Pfn(mm))
}
