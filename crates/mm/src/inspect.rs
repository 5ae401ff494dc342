//! Read-only inspection for the scenario runner, the CLI and tests: one
//! PTE, one page descriptor, whether two mappings share a frame, the
//! anon_vma graph, and a structured dump of the whole machine.

use std::fmt::Write as _;

use pgtable::{EntryKind, Level, Pfn};
use phys::PageDesc;

use crate::error::MmError;
use crate::machine::Machine;
use crate::process::Pid;

/// A PTE as found for (process, address).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PteView {
    /// The raw 64-bit entry (0 when no page table covers the address).
    pub raw: u64,
    /// What it means to Linux in the machine's era.
    pub kind: EntryKind,
    /// Physical address of the entry, when the page table exists.
    pub slot: Option<u64>,
}

impl PteView {
    /// The frame a present or PROT_NONE entry maps.
    pub fn pfn(&self) -> Option<Pfn> {
        self.kind.pfn()
    }
}

/// One swap slot's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlotView {
    /// Swap type (device index).
    pub swap_type: u8,
    /// Offset on the device.
    pub offset: u64,
    /// Swap PTEs naming it (swap_map count).
    pub count: u32,
    /// SWAP_HAS_CACHE.
    pub has_cache: bool,
    /// The swap-cache page, if any.
    pub cached: Option<Pfn>,
}

/// One anon_vma as the dump shows it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AnonVmaView {
    /// Display id (`av3`).
    pub id: String,
    /// Its page->mapping word.
    pub mapping: u64,
    /// Display id of its root.
    pub root: String,
    /// Display id of its parent, if any.
    pub parent: Option<String>,
    /// Non-link references.
    pub refcount: u32,
    /// Linked VMAs as (process, VMA start), in interval order.
    pub links: Vec<(Option<Pid>, u64)>,
}

/// One entry the hardware walk reads on its way from CR3 to a PTE.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WalkEntry {
    /// The table's level.
    pub level: Level,
    /// The table's frame.
    pub table: Pfn,
    /// The entry's index in the table.
    pub index: usize,
    /// The raw entry.
    pub raw: u64,
    /// What it means at that level in the machine's era.
    pub kind: EntryKind,
}

/// Where a page's `page->mapping` points, as the pictures draw it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MappingView {
    /// Not an anon page (mapping clear or not an anon_vma word).
    NotAnon,
    /// A live anon_vma.
    Live {
        /// Its display id (`av2`).
        id: String,
    },
    /// An anon_vma that has been freed; its slot is still unused.
    Freed {
        /// The display id it had.
        id: String,
        /// The step label current when it was freed.
        freed_at_step: String,
    },
    /// An anon_vma that has been freed and whose slot now holds another.
    Reused {
        /// The display id it had.
        id: String,
        /// The live anon_vma now in its slot.
        now: String,
        /// The step label current when it was freed.
        freed_at_step: String,
    },
}

/// One anon_vma_chain of a VMA, in the VMA's chain order (newest first).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AvcView {
    /// Display id of the link (`avc3`).
    pub id: String,
    /// Display id of the anon_vma it links to.
    pub anon_vma: String,
    /// Whether that anon_vma is live.
    pub live: bool,
}

/// One PTE of a process inside its VMAs that is not none.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MappedPte {
    /// The page address.
    pub addr: u64,
    /// The entry.
    pub pte: PteView,
}

impl Machine {
    /// The entries a walk for `addr` in `pid` reads, PML4 first, down to
    /// the PTE or to the first entry that points at no lower table.
    pub fn walk_entries(&self, pid: Pid, addr: u64) -> Result<Vec<WalkEntry>, MmError> {
        let va = pgtable::VirtAddr::new_truncate(addr);
        let mut table = self.proc(pid)?.pml4;
        let mut level = Level::Pml4;
        let mut out = Vec::new();
        loop {
            let index = va.index(level);
            let raw = self.read_slot(crate::table::slot_pa(table, index))?;
            let kind = pgtable::decode(raw, level, self.format)?;
            out.push(WalkEntry { level, table, index, raw, kind });
            let leaf = matches!(level, Level::Pd | Level::Pdpt)
                && raw & pgtable::entry::EntryFlags::PS.bits() != 0;
            match (level.next_lower(), kind) {
                (Some(lower), EntryKind::Present(_)) if !leaf => {
                    table = Pfn((raw & pgtable::entry::ADDR_MASK) >> 12);
                    level = lower;
                }
                _ => return Ok(out),
            }
        }
    }

    /// The PTE for `addr` in `pid`.
    pub fn pte(&self, pid: Pid, addr: u64) -> Result<PteView, MmError> {
        let p = self.proc(pid)?;
        let Some(slot) = self.pte_slot(p.pml4, addr & !0xfff)? else {
            return Ok(PteView { raw: 0, kind: EntryKind::None, slot: None });
        };
        let raw = self.read_slot(slot)?;
        Ok(PteView {
            raw,
            kind: pgtable::decode(raw, Level::Pt, self.format)?,
            slot: Some(slot.as_u64()),
        })
    }

    /// The frame `pid` maps at `addr` (present or PROT_NONE), if any.
    pub fn mapped_pfn(&self, pid: Pid, addr: u64) -> Result<Option<Pfn>, MmError> {
        Ok(self.pte(pid, addr)?.pfn())
    }

    /// The descriptor of a frame.
    pub fn page(&self, pfn: Pfn) -> Result<PageDesc, MmError> {
        Ok(*self.pages.get(pfn)?)
    }

    /// Whether both addresses map the same frame (false if either maps none).
    pub fn same_page(&self, a: (Pid, u64), b: (Pid, u64)) -> Result<bool, MmError> {
        let pa = self.mapped_pfn(a.0, a.1)?;
        let pb = self.mapped_pfn(b.0, b.1)?;
        Ok(pa.is_some() && pa == pb)
    }

    /// Number of live anon_vmas.
    pub fn live_anon_vmas(&self) -> usize {
        self.rmap.live_anon_vma_count()
    }

    /// Where a page's mapping points, as a display id (`av2`), or a note
    /// that it names a freed anon_vma; `None` for a page that is not anon.
    pub fn page_anon_vma(&self, pfn: Pfn) -> Result<Option<String>, MmError> {
        let d = self.pages.get(pfn)?;
        if !d.is_anon() {
            return Ok(None);
        }
        Ok(Some(match self.rmap.page_anon_vma(d) {
            Ok((_, av)) => av.id.to_string(),
            Err(rmap::RmapError::Oops(o)) => format!("{} (freed)", o.anon_vma),
            Err(e) => return Err(e.into()),
        }))
    }

    /// The state of a swap slot.
    pub fn swap_slot(&self, swap_type: u8, offset: u64) -> Result<SlotView, MmError> {
        if self.swap.device_pages(swap_type).is_none() {
            return Err(MmError::NoSuchSwapDevice(swap_type));
        }
        let e = crate::swap_state::swp_entry(swap_type, offset)?;
        Ok(SlotView {
            swap_type,
            offset,
            count: self.swap.swap_count(e)?,
            has_cache: self.swap.has_cache(e),
            cached: self.swap.lookup(e),
        })
    }

    /// Every swap slot in use, in (type, offset) order.
    pub fn swap_slots(&self) -> Vec<SlotView> {
        self.swap
            .used_slots()
            .into_iter()
            .map(|(e, count, has_cache)| SlotView {
                swap_type: e.swap_type(),
                offset: e.offset(),
                count,
                has_cache,
                cached: self.swap.lookup(e),
            })
            .collect()
    }

    /// Every live anon_vma with its links.
    pub fn anon_vmas(&self) -> Vec<AnonVmaView> {
        let name = |h: rmap::AnonVmaHandle| {
            self.rmap
                .display_id(h)
                .map_or_else(|_| format!("{:#x}(freed)", h.to_mapping()), |i| i.to_string())
        };
        self.rmap
            .live_anon_vmas()
            .into_iter()
            .map(|(h, av)| AnonVmaView {
                id: av.id.to_string(),
                mapping: h.to_mapping(),
                root: name(av.root),
                parent: av.parent.map(name),
                refcount: av.refcount,
                links: av
                    .links()
                    .map(|k| {
                        let pid = self.vma_owner.get(&k.vma).copied();
                        let start = self.rmap.vma(k.vma).map_or(0, |v| v.range.start());
                        (pid, start)
                    })
                    .collect(),
            })
            .collect()
    }

    /// A VMA's anon_vma chain as display ids, newest first.
    pub fn vma_chain(&self, pid: Pid, addr: u64) -> Result<Vec<String>, MmError> {
        let Some(v) = self.proc(pid)?.vma_at(addr) else { return Ok(Vec::new()) };
        Ok(self
            .rmap
            .vma_chain(v.id)?
            .into_iter()
            .map(|(_, h)| {
                self.rmap.display_id(h).map_or_else(|_| "freed".to_string(), |i| i.to_string())
            })
            .collect())
    }

    /// Where a page's mapping points: live, freed, or freed and reused.
    pub fn page_mapping(&self, pfn: Pfn) -> Result<MappingView, MmError> {
        let d = self.pages.get(pfn)?;
        if !d.is_anon() {
            return Ok(MappingView::NotAnon);
        }
        Ok(match self.rmap.page_anon_vma(d) {
            Ok((_, av)) => MappingView::Live { id: av.id.to_string() },
            Err(rmap::RmapError::Oops(o)) => match o.kind {
                rmap::OopsKind::UseAfterFree => MappingView::Freed {
                    id: o.anon_vma.to_string(),
                    freed_at_step: o.freed_at_step.clone(),
                },
                rmap::OopsKind::ReusedAsAnother { now } => MappingView::Reused {
                    id: o.anon_vma.to_string(),
                    now: now.to_string(),
                    freed_at_step: o.freed_at_step.clone(),
                },
            },
            Err(rmap::RmapError::NotAnon(_)) => MappingView::NotAnon,
            Err(e) => return Err(e.into()),
        })
    }

    /// vma->anon_vma of the VMA at `addr`, as a display id, if it has one.
    pub fn vma_anon_vma(&self, pid: Pid, addr: u64) -> Result<Option<String>, MmError> {
        let Some(v) = self.proc(pid)?.vma_at(addr) else { return Ok(None) };
        Ok(self.rmap.vma(v.id)?.anon_vma.map(|h| {
            self.rmap.display_id(h).map_or_else(|_| "freed".to_string(), |i| i.to_string())
        }))
    }

    /// The anon_vma_chains of the VMA at `addr`, newest first (the order of
    /// vma->anon_vma_chain).
    pub fn vma_avcs(&self, pid: Pid, addr: u64) -> Result<Vec<AvcView>, MmError> {
        let Some(v) = self.proc(pid)?.vma_at(addr) else { return Ok(Vec::new()) };
        Ok(self
            .rmap
            .vma_chain(v.id)?
            .into_iter()
            .map(|(avc, h)| AvcView {
                id: avc.to_string(),
                anon_vma: self
                    .rmap
                    .display_id(h)
                    .map_or_else(|_| "freed".to_string(), |i| i.to_string()),
                live: self.rmap.is_live(h),
            })
            .collect())
    }

    /// Every PTE of `pid` inside its VMAs that is not none, by address.
    pub fn mapped_ptes(&self, pid: Pid) -> Result<Vec<MappedPte>, MmError> {
        let p = self.proc(pid)?;
        let mut out = Vec::new();
        for v in p.vmas.values() {
            self.for_each_pte(p.pml4, v.start, v.end, |va, slot, raw| {
                if raw != 0 {
                    let kind = pgtable::decode(raw, Level::Pt, self.format)?;
                    if !kind.is_none() {
                        out.push(MappedPte {
                            addr: va,
                            pte: PteView { raw, kind, slot: Some(slot.as_u64()) },
                        });
                    }
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// A readable dump: per process (or just `only`), its VMAs, its tables
    /// level by level with raw entries, its PTEs decoded with their page
    /// descriptors; then the anon_vma graph and the swap slots.
    pub fn dump(&self, only: Option<Pid>) -> Result<String, MmError> {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "machine: era {} ({} frames, {} free)",
            self.era_name,
            self.pages.len(),
            self.free_frames()
        );
        for (&pid, p) in &self.procs {
            if only.is_some_and(|o| o != pid) {
                continue;
            }
            let _ = writeln!(s, "process {pid}: cr3 {:#x}", p.pml4.addr().as_u64());
            for v in p.vmas.values() {
                let chain = self.vma_chain(pid, v.start)?;
                // The perms column as /proc/PID/maps prints it, and
                // VM_ACCOUNT, which maps does not show but merging compares.
                let perms = crate::maps::MapsEntry::anon(v).perms();
                let _ = writeln!(
                    s,
                    "  vma {:#x}-{:#x} {perms} pgoff {:#x}{} chain [{}]",
                    v.start,
                    v.end,
                    v.pgoff,
                    if v.account { " account" } else { "" },
                    chain.join(" ")
                );
            }
            for (level, table, va) in self.tables_of(p.pml4)? {
                if level == Level::Pml4 {
                    continue;
                }
                let _ = writeln!(s, "  L{} table at frame {table} covers {va:#x}", level as u8);
            }
            let mut lines = Vec::new();
            for v in p.vmas.values() {
                self.for_each_pte(p.pml4, v.start, v.end, |va, _, raw| {
                    lines.push((va, raw));
                    Ok(())
                })?;
            }
            for (va, raw) in lines {
                let kind = pgtable::decode(raw, Level::Pt, self.format)?;
                let _ = write!(s, "    {va:#014x}: pte {raw:#018x} {}", kind.name());
                match kind {
                    EntryKind::Swap(sw) => {
                        let _ = write!(s, " type {} offset {:#x}", sw.swap_type, sw.offset);
                        if sw.exclusive {
                            let _ = write!(s, " exclusive");
                        }
                    }
                    _ => {
                        if let Some(pfn) = kind.pfn() {
                            let d = self.pages.get(pfn)?;
                            let _ = write!(
                                s,
                                " pfn {pfn} refcount {} mapcount {} flags {:?}",
                                d.refcount, d.mapcount, d.flags
                            );
                            if let Some(av) = self.page_anon_vma(pfn)? {
                                let _ = write!(s, " mapping {av} index {:#x}", d.index);
                            }
                        }
                    }
                }
                let _ = writeln!(s);
            }
        }
        if only.is_none() {
            let _ = writeln!(s, "anon_vmas: {} live", self.live_anon_vmas());
            for av in self.anon_vmas() {
                let links: Vec<String> = av
                    .links
                    .iter()
                    .map(|(p, a)| {
                        format!("{}@{a:#x}", p.map_or("?".to_string(), |p| p.to_string()))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "  {} root {} parent {} refcount {} links [{}]",
                    av.id,
                    av.root,
                    av.parent.as_deref().unwrap_or("-"),
                    av.refcount,
                    links.join(" ")
                );
            }
            let _ = writeln!(s, "swap slots:");
            for sl in self.swap_slots() {
                let _ = writeln!(
                    s,
                    "  type {} offset {:#x}: count {} cache {}{}",
                    sl.swap_type,
                    sl.offset,
                    sl.count,
                    sl.has_cache,
                    sl.cached.map_or(String::new(), |p| format!(" page {p}"))
                );
            }
        }
        Ok(s)
    }
}
