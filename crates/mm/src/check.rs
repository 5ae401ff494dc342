//! The invariant checker: every way the emulated state can disagree with
//! itself, under the names of the scenario language. It reads; it never
//! changes anything (the rmap walks it does are side-effect free).

use std::collections::{BTreeMap, BTreeSet};

use pgtable::entry::{ADDR_MASK, USER_TABLE_FLAGS};
use pgtable::{EntryKind, Level, Pfn};
use phys::PageFlags;

use crate::error::MmError;
use crate::machine::Machine;
use crate::process::Pid;
use crate::pte::pte_special;
use crate::swap_state::SwpEntry;

/// The kinds of violation (scenario-language.md).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum InvariantKind {
    /// A PTE maps an anon page that the rmap walk from its mapping misses.
    RmapUnreachable,
    /// A mapped or swap-cached anon page's mapping names a freed anon_vma.
    MappingFreed,
    /// A page's mapcount differs from the PTEs mapping it.
    MapcountMismatch,
    /// A page's refcount differs from its mappings plus the swap cache.
    RefcountMismatch,
    /// A slot's count differs from the swap PTEs naming it.
    SwapcountMismatch,
    /// Swap cache, PG_swapcache / private and SWAP_HAS_CACHE disagree.
    SwapcacheMismatch,
    /// An entry with reserved bits, a malformed or dangling swap entry, an
    /// entry outside every VMA, or a mapping of a free or table frame.
    BadEntry,
    /// A frame, table, slot or anon_vma that nothing owns.
    Leak,
}

impl InvariantKind {
    /// Every kind, in the order scenario-language.md lists them.
    pub const ALL: [InvariantKind; 8] = [
        InvariantKind::RmapUnreachable,
        InvariantKind::MappingFreed,
        InvariantKind::MapcountMismatch,
        InvariantKind::RefcountMismatch,
        InvariantKind::SwapcountMismatch,
        InvariantKind::SwapcacheMismatch,
        InvariantKind::BadEntry,
        InvariantKind::Leak,
    ];

    /// The scenario-language name.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvariantKind::RmapUnreachable => "rmap-unreachable",
            InvariantKind::MappingFreed => "mapping-freed",
            InvariantKind::MapcountMismatch => "mapcount-mismatch",
            InvariantKind::RefcountMismatch => "refcount-mismatch",
            InvariantKind::SwapcountMismatch => "swapcount-mismatch",
            InvariantKind::SwapcacheMismatch => "swapcache-mismatch",
            InvariantKind::BadEntry => "bad-entry",
            InvariantKind::Leak => "leak",
        }
    }
}

/// What a violation is about. Together with the kind it identifies the
/// violation from one check to the next.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Subject {
    /// A PTE of a process (and the frame it maps, if any).
    Pte {
        /// The process.
        pid: Pid,
        /// The page address.
        addr: u64,
        /// The frame mapped.
        pfn: Option<Pfn>,
    },
    /// A page frame.
    Page {
        /// The frame.
        pfn: Pfn,
    },
    /// A page-table frame.
    Table {
        /// The frame.
        pfn: Pfn,
    },
    /// A swap slot.
    Slot {
        /// Swap type.
        swap_type: u8,
        /// Offset.
        offset: u64,
    },
    /// An anon_vma, by display id.
    AnonVma {
        /// Display id (`av3`).
        id: String,
    },
}

impl core::fmt::Display for Subject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Subject::Pte { pid, addr, pfn: Some(p) } => {
                write!(f, "process {pid} address {addr:#x} page {p}")
            }
            Subject::Pte { pid, addr, pfn: None } => write!(f, "process {pid} address {addr:#x}"),
            Subject::Page { pfn } => write!(f, "page {pfn}"),
            Subject::Table { pfn } => write!(f, "table frame {pfn}"),
            Subject::Slot { swap_type, offset } => write!(f, "swap slot {swap_type}:{offset:#x}"),
            Subject::AnonVma { id } => write!(f, "anon_vma {id}"),
        }
    }
}

/// One broken invariant.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Violation {
    /// Which invariant.
    pub kind: InvariantKind,
    /// What it concerns.
    pub subject: Subject,
    /// A human-readable explanation.
    pub detail: String,
}

impl Violation {
    /// The scenario-language name of the invariant.
    pub fn name(&self) -> &'static str {
        self.kind.as_str()
    }
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({}): {}", self.kind.as_str(), self.subject, self.detail)
    }
}

impl Machine {
    /// Checks every invariant; returns every violation, sorted.
    pub fn check(&self) -> Result<Vec<Violation>, MmError> {
        let mut out = BTreeSet::new();
        let mut add = |kind, subject, detail: String| {
            out.insert(Violation { kind, subject, detail });
        };
        // Per page: the PTEs mapping it; per slot: the swap PTEs naming it.
        let mut maps: BTreeMap<Pfn, Vec<(Pid, u64)>> = BTreeMap::new();
        let mut swaps: BTreeMap<SwpEntry, u32> = BTreeMap::new();
        let mut tables: BTreeSet<Pfn> = BTreeSet::new();
        let frames = self.pages.len();
        for (&pid, p) in &self.procs {
            for (level, table, base) in self.tables_of(p.pml4)? {
                if !tables.insert(table) {
                    add(
                        InvariantKind::BadEntry,
                        Subject::Table { pfn: table },
                        "table frame linked twice".into(),
                    );
                    continue;
                }
                for idx in 0..512u64 {
                    let raw = self.mem.load(crate::table::slot_pa(table, idx as usize))?;
                    if raw == 0 {
                        continue;
                    }
                    let va = base | (idx << level.shift());
                    if level != Level::Pt {
                        if raw & !ADDR_MASK != USER_TABLE_FLAGS.bits()
                            || (raw & ADDR_MASK) >> 12 >= frames
                        {
                            add(
                                InvariantKind::BadEntry,
                                Subject::Table { pfn: table },
                                format!(
                                    "L{} entry {idx} = {raw:#x} is not a user table entry",
                                    level as u8
                                ),
                            );
                        }
                        continue;
                    }
                    let subj = |pfn| Subject::Pte { pid, addr: va, pfn };
                    if p.vma_at(va).is_none() {
                        add(
                            InvariantKind::BadEntry,
                            subj(None),
                            format!("entry {raw:#x} outside every VMA"),
                        );
                    }
                    let kind = match pgtable::decode(raw, Level::Pt, self.format) {
                        Ok(k) => k,
                        Err(e) => {
                            add(
                                InvariantKind::BadEntry,
                                subj(None),
                                format!("entry {raw:#x}: {e}"),
                            );
                            continue;
                        }
                    };
                    match kind {
                        EntryKind::None => {}
                        EntryKind::Swap(s) => {
                            let e = crate::swap_state::swp_entry(s.swap_type, s.offset)?;
                            let in_range = self
                                .swap
                                .device_pages(s.swap_type)
                                .is_some_and(|n| s.offset > 0 && s.offset < n);
                            if !in_range {
                                add(
                                    InvariantKind::BadEntry,
                                    subj(None),
                                    format!("swap entry {raw:#x} names no slot"),
                                );
                            } else if s.exclusive && !self.sem.anon_exclusive {
                                add(
                                    InvariantKind::BadEntry,
                                    subj(None),
                                    format!("exclusive swap bit in {raw:#x}"),
                                );
                            } else {
                                *swaps.entry(e).or_default() += 1;
                            }
                        }
                        EntryKind::Present(_) | EntryKind::ProtNone(_) => {
                            let Some(pfn) = kind.pfn() else { continue };
                            if let Err(e) = pgtable::entry::check_reserved(
                                raw & !pgtable::EntryFlags::PROTNONE.bits() | 1,
                                Level::Pt,
                                52,
                                true,
                            ) {
                                add(
                                    InvariantKind::BadEntry,
                                    subj(Some(pfn)),
                                    format!("entry {raw:#x}: {e}"),
                                );
                                continue;
                            }
                            if pfn.0 >= frames {
                                add(
                                    InvariantKind::BadEntry,
                                    subj(Some(pfn)),
                                    format!("entry {raw:#x} maps beyond memory"),
                                );
                                continue;
                            }
                            if pte_special(raw) {
                                if pfn != self.zero_pfn {
                                    add(
                                        InvariantKind::BadEntry,
                                        subj(Some(pfn)),
                                        "special entry not the zero page".into(),
                                    );
                                }
                                continue;
                            }
                            let d = self.pages.get(pfn)?;
                            if d.flags.intersects(PageFlags::BUDDY | PageFlags::PGTABLE)
                                || pfn == self.zero_pfn
                            {
                                add(
                                    InvariantKind::BadEntry,
                                    subj(Some(pfn)),
                                    format!(
                                        "maps a free, table or zero frame without special: {:?}",
                                        d.flags
                                    ),
                                );
                                continue;
                            }
                            maps.entry(pfn).or_default().push((pid, va));
                        }
                    }
                }
            }
        }
        // The swap cache against the page flags and the slots.
        let cache: BTreeMap<SwpEntry, Pfn> = self.swap.cache_entries().into_iter().collect();
        for (&e, &pfn) in &cache {
            let d = self.pages.get(pfn)?;
            if !d.flags.contains(PageFlags::SWAPCACHE)
                || d.private != e.raw()
                || !self.swap.has_cache(e)
            {
                add(
                    InvariantKind::SwapcacheMismatch,
                    Subject::Page { pfn },
                    format!(
                        "cached under {:#x}: PG_swapcache {} private {:#x} has_cache {}",
                        e.raw(),
                        d.flags.contains(PageFlags::SWAPCACHE),
                        d.private,
                        self.swap.has_cache(e)
                    ),
                );
            }
        }
        for (pfn, d) in self.pages.iter() {
            if d.flags.contains(PageFlags::SWAPCACHE)
                && SwpEntry::from_raw(d.private).ok().and_then(|e| cache.get(&e)) != Some(&pfn)
            {
                add(
                    InvariantKind::SwapcacheMismatch,
                    Subject::Page { pfn },
                    format!("PG_swapcache with private {:#x} not in the cache", d.private),
                );
            }
        }
        for (e, count, has_cache) in self.swap.used_slots() {
            let subj = Subject::Slot { swap_type: e.swap_type(), offset: e.offset() };
            let ptes = swaps.get(&e).copied().unwrap_or(0);
            if count != ptes {
                add(
                    InvariantKind::SwapcountMismatch,
                    subj.clone(),
                    format!("count {count}, swap PTEs {ptes}"),
                );
            }
            if has_cache != cache.contains_key(&e) {
                add(
                    InvariantKind::SwapcacheMismatch,
                    subj.clone(),
                    format!("SWAP_HAS_CACHE {has_cache} but cache page {:?}", cache.get(&e)),
                );
            }
            if ptes == 0 && !cache.contains_key(&e) {
                add(
                    InvariantKind::Leak,
                    subj,
                    "slot in use with no swap PTE and no cache page".into(),
                );
            }
        }
        for (e, &n) in &swaps {
            if !self.swap.is_valid(*e) {
                add(
                    InvariantKind::SwapcountMismatch,
                    Subject::Slot { swap_type: e.swap_type(), offset: e.offset() },
                    format!("{n} swap PTEs name a free slot"),
                );
            }
        }
        // Counts and rmap reachability of mapped pages.
        for (pfn, users) in &maps {
            let d = self.pages.get(*pfn)?;
            let n = users.len() as u32;
            if d.mapcount != n {
                add(
                    InvariantKind::MapcountMismatch,
                    Subject::Page { pfn: *pfn },
                    format!("mapcount {} but {n} PTEs", d.mapcount),
                );
            }
            let expect = n + d.flags.contains(PageFlags::SWAPCACHE) as u32;
            if d.refcount != expect {
                add(
                    InvariantKind::RefcountMismatch,
                    Subject::Page { pfn: *pfn },
                    format!("refcount {} but {n} mappings + swap cache", d.refcount),
                );
            }
            if !d.is_anon() {
                add(
                    InvariantKind::BadEntry,
                    Subject::Page { pfn: *pfn },
                    "mapped page is not anonymous".into(),
                );
                continue;
            }
            match self.rmap.rmap_walk(d) {
                Ok(hits) => {
                    for &(pid, va) in users {
                        let found = hits
                            .iter()
                            .any(|h| h.address == va && self.vma_owner.get(&h.vma) == Some(&pid));
                        if !found {
                            add(
                                InvariantKind::RmapUnreachable,
                                Subject::Pte { pid, addr: va, pfn: Some(*pfn) },
                                format!(
                                    "rmap walk from {} does not find this mapping",
                                    self.page_anon_vma(*pfn)?.unwrap_or_default()
                                ),
                            );
                        }
                    }
                }
                Err(rmap::RmapError::Oops(o)) => {
                    add(
                        InvariantKind::MappingFreed,
                        Subject::Page { pfn: *pfn },
                        format!(
                            "mapping names {}, freed by {} at step '{}'",
                            o.anon_vma, o.freed_by, o.freed_at_step
                        ),
                    );
                    for &(pid, va) in users {
                        add(
                            InvariantKind::RmapUnreachable,
                            Subject::Pte { pid, addr: va, pfn: Some(*pfn) },
                            format!("mapping names freed {}", o.anon_vma),
                        );
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Unmapped swap-cache pages: counts and mapping.
        for &pfn in cache.values() {
            if maps.contains_key(&pfn) {
                continue;
            }
            let d = self.pages.get(pfn)?;
            if d.mapcount != 0 {
                add(
                    InvariantKind::MapcountMismatch,
                    Subject::Page { pfn },
                    format!("mapcount {} but no PTE", d.mapcount),
                );
            }
            if d.refcount != 1 {
                add(
                    InvariantKind::RefcountMismatch,
                    Subject::Page { pfn },
                    format!("refcount {} but only the swap cache holds it", d.refcount),
                );
            }
            // Only a swap PTE naming the slot can bring this page back.
            // With none left, nothing but reclaim would ever find it: an
            // orphan. Linux's zap never leaves one (free_swap_cache drops
            // a page nobody maps whose slot no swap PTE names, and
            // free_swap_and_cache does the same from the swap PTE's side);
            // only races ptemu does not have (a failed trylock, writeback
            // in flight) let the kernel leave it to reclaim. So here it is
            // a frame and a slot that nothing owns.
            let reachable = SwpEntry::from_raw(d.private)
                .ok()
                .and_then(|e| self.swap.swap_count(e).ok())
                .unwrap_or(0)
                > 0;
            if !reachable {
                add(
                    InvariantKind::Leak,
                    Subject::Page { pfn },
                    format!(
                        "swap-cache page under {:#x} that no PTE maps and no swap PTE names",
                        d.private
                    ),
                );
            }
            if d.is_anon() && reachable {
                if let Err(rmap::RmapError::Oops(o)) = self.rmap.page_anon_vma(d) {
                    add(
                        InvariantKind::MappingFreed,
                        Subject::Page { pfn },
                        format!(
                            "mapping names {}, freed by {} at step '{}'",
                            o.anon_vma, o.freed_by, o.freed_at_step
                        ),
                    );
                }
            }
        }
        // Frames nobody owns.
        let continuation: BTreeSet<Pfn> =
            self.swap.inner.continuation_frames().into_iter().collect();
        for (pfn, order) in self.frames.allocated() {
            if order != 0
                || pfn == self.zero_pfn
                || continuation.contains(&pfn)
                || tables.contains(&pfn)
                || maps.contains_key(&pfn)
            {
                continue;
            }
            if cache.values().any(|&p| p == pfn) {
                continue;
            }
            let d = self.pages.get(pfn)?;
            let what = if d.flags.contains(PageFlags::PGTABLE) {
                Subject::Table { pfn }
            } else {
                Subject::Page { pfn }
            };
            add(
                InvariantKind::Leak,
                what,
                format!(
                    "allocated frame with no owner (refcount {}, mapcount {})",
                    d.refcount, d.mapcount
                ),
            );
        }
        // anon_vmas nobody reaches: not on a live VMA's chain, nor (when
        // roots are pinned) the root of one that is.
        let mut reach: BTreeSet<rmap::AnonVmaHandle> = BTreeSet::new();
        for p in self.procs.values() {
            for v in p.vmas.values() {
                for (_, h) in self.rmap.vma_chain(v.id)? {
                    reach.insert(h);
                }
            }
        }
        if self.sem.root_pinned {
            let roots: Vec<_> =
                reach.iter().filter_map(|&h| self.rmap.anon_vma(h).ok().map(|a| a.root)).collect();
            reach.extend(roots);
        }
        for (h, av) in self.rmap.live_anon_vmas() {
            if !reach.contains(&h) {
                add(
                    InvariantKind::Leak,
                    Subject::AnonVma { id: av.id.to_string() },
                    "live anon_vma linked to no live VMA".into(),
                );
            }
        }
        Ok(out.into_iter().collect())
    }
}
