//! What a picture shows of one moment of a run, read through `mm`'s
//! inspection API and named with the scenario's names.
//!
//! Every item has a stable key (`page:0x5`, `av:av2`, `vma:A:0x7f0000000000`
//! ...) and a signature (the text it shows); comparing two snapshots by key
//! and signature is how the pictures find what changed since the previous
//! step.

use std::collections::{BTreeMap, BTreeSet};

use mm::{InvariantKind, MappingView, Pid, Subject};
use pgtable::{EntryKind, Level, Pfn};
use phys::PageFlags;
use scenario::Observation;

/// Pages drawn at most per picture (the rest are counted, not drawn).
pub const MAX_PAGES: usize = 48;
/// PTEs listed at most per VMA.
pub const MAX_PTES_PER_VMA: usize = 12;

/// One process.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProcNode {
    /// The scenario's name (`A`), or `pid N`.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// The PML4 frame.
    pub cr3: u64,
    /// Its VMAs by address.
    pub vmas: Vec<VmaNode>,
}

/// One VMA.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmaNode {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Protection (`rw`).
    pub prot: String,
    /// vm_pgoff.
    pub pgoff: u64,
    /// vma->anon_vma, display id.
    pub anon_vma: Option<String>,
    /// The anon_vma_chains, newest first.
    pub avcs: Vec<AvcNode>,
    /// The PTEs in it that are not none, by address (at most
    /// [`MAX_PTES_PER_VMA`]).
    pub ptes: Vec<PteNode>,
    /// PTEs not listed.
    pub ptes_omitted: usize,
}

/// One anon_vma_chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AvcNode {
    /// Display id (`avc3`).
    pub id: String,
    /// The anon_vma it links to.
    pub anon_vma: String,
}

/// What a PTE points at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PteTarget {
    /// A frame (present or PROT_NONE).
    Page(u64),
    /// A swap slot (type, offset).
    Slot(u8, u64),
    /// Nothing the picture draws.
    Nothing,
}

/// One PTE.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PteNode {
    /// Page address.
    pub addr: u64,
    /// Raw entry.
    pub raw: u64,
    /// `present`, `swap`, `protnone`.
    pub kind: String,
    /// Where it points.
    pub target: PteTarget,
    /// The checker says an rmap walk from the page's mapping misses it.
    pub unreachable: bool,
}

/// The state of an anon_vma node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AvState {
    /// Allocated and linked.
    Live,
    /// Freed; something still names it.
    Freed {
        /// The step that freed it.
        at: String,
    },
    /// Freed, and its slot now holds another anon_vma.
    Reused {
        /// The anon_vma now in the slot.
        now: String,
        /// The step that freed it.
        at: String,
    },
}

/// One anon_vma (live, or freed but still named).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AvNode {
    /// Display id (`av2`).
    pub id: String,
    /// The process it was made for, if known.
    pub owner: Option<String>,
    /// Root display id.
    pub root: Option<String>,
    /// Parent display id.
    pub parent: Option<String>,
    /// Non-link references.
    pub refcount: u32,
    /// Linked VMAs.
    pub links: usize,
    /// Live, freed or reused.
    pub state: AvState,
}

impl AvNode {
    /// `av2 (B)`.
    pub fn label(&self) -> String {
        match &self.owner {
            Some(o) => format!("{} ({o})", self.id),
            None => self.id.clone(),
        }
    }
}

/// One page frame the picture shows.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PageNode {
    /// Frame number.
    pub pfn: u64,
    /// page->mapping's target.
    pub mapping: MappingView,
    /// The raw mapping word.
    pub mapping_word: u64,
    /// page->index.
    pub index: u64,
    /// Mapcount.
    pub mapcount: u32,
    /// Refcount.
    pub refcount: u32,
    /// PG_* names set.
    pub flags: Vec<String>,
    /// The swap slot whose cache holds it.
    pub swapcache: Option<(u8, u64)>,
    /// The checker says its mapping names a freed anon_vma.
    pub mapping_freed: bool,
}

/// One swap slot in use.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SlotNode {
    /// Device.
    pub swap_type: u8,
    /// Offset.
    pub offset: u64,
    /// swap_map count.
    pub count: u32,
    /// SWAP_HAS_CACHE.
    pub has_cache: bool,
    /// The swap-cache page.
    pub cached: Option<u64>,
}

/// One entry of a hardware walk.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WalkStep {
    /// Level (4 PML4 .. 1 PT).
    pub level: u8,
    /// The table's frame.
    pub table: u64,
    /// Index in the table.
    pub index: usize,
    /// Raw entry.
    pub raw: u64,
    /// `present`, `none`, `swap`, `protnone`.
    pub kind: String,
    /// Frame it points at (lower table or page).
    pub pfn: Option<u64>,
    /// Flag names set.
    pub flags: Vec<String>,
    /// Further decoding (swap type and offset).
    pub detail: String,
}

/// The walk of one (process, address) the scenario names.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WalkNode {
    /// Process name.
    pub proc: String,
    /// Address.
    pub addr: u64,
    /// Entries from the PML4 down.
    pub steps: Vec<WalkStep>,
}

/// One moment of a run.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Snapshot {
    /// The era.
    pub era: String,
    /// Operations done (0: before the first).
    pub op_index: usize,
    /// Processes by pid.
    pub procs: Vec<ProcNode>,
    /// anon_vmas: live ones in id order, then freed ones still named.
    pub anon_vmas: Vec<AvNode>,
    /// Pages in the order they are first reached.
    pub pages: Vec<PageNode>,
    /// Pages not drawn (over [`MAX_PAGES`]).
    pub pages_omitted: usize,
    /// Swap slots in use.
    pub slots: Vec<SlotNode>,
    /// Walks for the addresses the scenario names.
    pub walks: Vec<WalkNode>,
    /// The checker's violations, as text.
    pub violations: Vec<String>,
    /// Free frames.
    pub free_frames: u64,
}

/// Reads a snapshot of the machine in `obs`.
pub fn capture(obs: &Observation<'_>) -> Snapshot {
    let m = obs.machine;
    let mut s = Snapshot {
        era: m.era_name().to_string(),
        op_index: obs.op_index,
        free_frames: m.free_frames(),
        ..Snapshot::default()
    };
    let name = |pid: Pid| obs.process_names.get(&pid).cloned().unwrap_or(format!("pid {pid}"));
    let violations = m.check().unwrap_or_default();
    let mut unreachable: BTreeSet<(Pid, u64)> = BTreeSet::new();
    let mut freed_pages: BTreeSet<u64> = BTreeSet::new();
    for v in &violations {
        match (&v.kind, &v.subject) {
            (InvariantKind::RmapUnreachable, Subject::Pte { pid, addr, .. }) => {
                unreachable.insert((*pid, *addr));
            }
            (InvariantKind::MappingFreed, Subject::Page { pfn }) => {
                freed_pages.insert(pfn.0);
            }
            _ => {}
        }
        let subject = match &v.subject {
            Subject::Pte { pid, addr, pfn } => format!(
                "{}@{addr:#x}{}",
                name(*pid),
                pfn.map_or(String::new(), |p| format!(" page {p}"))
            ),
            other => other.to_string(),
        };
        s.violations.push(format!("{} ({subject}): {}", v.name(), v.detail));
    }

    // Pages in the order PTEs reach them, then swap-cache pages.
    let mut page_order: Vec<u64> = Vec::new();
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let zero = m.zero_pfn().0;
    for pid in m.processes() {
        let Ok(cr3) = m.cr3(pid) else { continue };
        let ptes = m.mapped_ptes(pid).unwrap_or_default();
        let mut vmas = Vec::new();
        for v in m.vmas(pid).unwrap_or_default() {
            let mut node = VmaNode {
                start: v.start,
                end: v.end,
                prot: v.prot.to_string(),
                pgoff: v.pgoff,
                anon_vma: m.vma_anon_vma(pid, v.start).ok().flatten(),
                avcs: m
                    .vma_avcs(pid, v.start)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| AvcNode { id: a.id, anon_vma: a.anon_vma })
                    .collect(),
                ptes: Vec::new(),
                ptes_omitted: 0,
            };
            for p in ptes.iter().filter(|p| v.contains(p.addr)) {
                if node.ptes.len() >= MAX_PTES_PER_VMA {
                    node.ptes_omitted += 1;
                    continue;
                }
                let target = match p.pte.kind {
                    EntryKind::Swap(sw) => PteTarget::Slot(sw.swap_type, sw.offset),
                    k => match k.pfn() {
                        Some(pfn) => PteTarget::Page(pfn.0),
                        None => PteTarget::Nothing,
                    },
                };
                if let PteTarget::Page(pfn) = target {
                    if seen.insert(pfn) {
                        page_order.push(pfn);
                    }
                }
                node.ptes.push(PteNode {
                    addr: p.addr,
                    raw: p.pte.raw,
                    kind: p.pte.kind.name().to_string(),
                    target,
                    unreachable: unreachable.contains(&(pid, p.addr)),
                });
            }
            vmas.push(node);
        }
        s.procs.push(ProcNode { name: name(pid), pid: pid.0, cr3: cr3.0, vmas });
    }
    let slots = m.swap_slots();
    for sl in &slots {
        if let Some(p) = sl.cached {
            if seen.insert(p.0) {
                page_order.push(p.0);
            }
        }
        s.slots.push(SlotNode {
            swap_type: sl.swap_type,
            offset: sl.offset,
            count: sl.count,
            has_cache: sl.has_cache,
            cached: sl.cached.map(|p| p.0),
        });
    }
    for pfn in page_order {
        if s.pages.len() >= MAX_PAGES {
            s.pages_omitted += 1;
            continue;
        }
        let Ok(d) = m.page(Pfn(pfn)) else { continue };
        let mut flags: Vec<String> = d.flags.iter_names().map(|(n, _)| n.to_string()).collect();
        if pfn == zero && !flags.iter().any(|f| f == "ZERO_PAGE") {
            flags.push("ZERO_PAGE".into());
        }
        let swapcache = if d.flags.contains(PageFlags::SWAPCACHE) {
            slots.iter().find(|sl| sl.cached == Some(Pfn(pfn))).map(|sl| (sl.swap_type, sl.offset))
        } else {
            None
        };
        s.pages.push(PageNode {
            pfn,
            mapping: m.page_mapping(Pfn(pfn)).unwrap_or(MappingView::NotAnon),
            mapping_word: d.mapping,
            index: d.index,
            mapcount: d.mapcount,
            refcount: d.refcount,
            flags,
            swapcache,
            mapping_freed: freed_pages.contains(&pfn),
        });
    }

    // anon_vmas: live ones, then freed ones a page or a chain still names.
    let owner = |id: &str| obs.anon_vma_owners.get(id).cloned();
    let mut av_ids: BTreeSet<String> = BTreeSet::new();
    for av in m.anon_vmas() {
        av_ids.insert(av.id.clone());
        s.anon_vmas.push(AvNode {
            owner: owner(&av.id),
            root: Some(av.root.clone()).filter(|r| *r != av.id),
            parent: av.parent.clone(),
            refcount: av.refcount,
            links: av.links.len(),
            state: AvState::Live,
            id: av.id,
        });
    }
    for p in &s.pages {
        let (id, state) = match &p.mapping {
            MappingView::Freed { id, freed_at_step } => {
                (id.clone(), AvState::Freed { at: freed_at_step.clone() })
            }
            MappingView::Reused { id, now, freed_at_step } => {
                (id.clone(), AvState::Reused { now: now.clone(), at: freed_at_step.clone() })
            }
            _ => continue,
        };
        if av_ids.insert(id.clone()) {
            s.anon_vmas.push(AvNode {
                owner: owner(&id),
                root: None,
                parent: None,
                refcount: 0,
                links: 0,
                state,
                id,
            });
        }
    }

    // The walks for the addresses the scenario names, by process and address.
    let by_name: BTreeMap<&String, Pid> = obs.process_names.iter().map(|(p, n)| (n, *p)).collect();
    for (pname, addr) in obs.touched {
        let Some(&pid) = by_name.get(pname) else { continue };
        if !m.process_exists(pid) {
            continue;
        }
        let Ok(entries) = m.walk_entries(pid, *addr) else { continue };
        let steps = entries
            .into_iter()
            .map(|w| {
                let detail = match w.kind {
                    EntryKind::Swap(sw) => format!(
                        "swap type {} offset {:#x}{}",
                        sw.swap_type,
                        sw.offset,
                        if sw.exclusive { " exclusive" } else { "" }
                    ),
                    EntryKind::ProtNone(_) => "PROT_NONE (P clear, frame kept)".to_string(),
                    _ => String::new(),
                };
                WalkStep {
                    level: w.level as u8,
                    table: w.table.0,
                    index: w.index,
                    raw: w.raw,
                    kind: w.kind.name().to_string(),
                    pfn: w.kind.pfn().map(|p| p.0),
                    flags: if w.raw == 0 {
                        Vec::new()
                    } else {
                        pgtable::entry::flag_names(w.raw, level_of(w.level as u8))
                    },
                    detail,
                }
            })
            .collect();
        s.walks.push(WalkNode { proc: pname.clone(), addr: *addr, steps });
    }
    s.walks.sort_by(|a, b| {
        let pa = by_name.get(&a.proc);
        let pb = by_name.get(&b.proc);
        (pa, a.addr).cmp(&(pb, b.addr))
    });
    s
}

fn level_of(l: u8) -> Level {
    match l {
        4 => Level::Pml4,
        3 => Level::Pdpt,
        2 => Level::Pd,
        _ => Level::Pt,
    }
}

/// Keys with signatures: what a picture compares between two steps.
pub(crate) fn signatures(s: &Snapshot) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in &s.procs {
        out.insert(format!("proc:{}", p.name), format!("{}", p.cr3));
        for v in &p.vmas {
            out.insert(
                format!("vma:{}:{:#x}", p.name, v.start),
                format!("{:#x} {} {:?}", v.end, v.prot, v.anon_vma),
            );
            for a in &v.avcs {
                out.insert(format!("avc:{}", a.id), a.anon_vma.clone());
                out.insert(
                    format!("edge:avc:{}:{:#x}:{}", p.name, v.start, a.id),
                    a.anon_vma.clone(),
                );
            }
            for t in &v.ptes {
                out.insert(
                    format!("pte:{}:{:#x}", p.name, t.addr),
                    format!("{:#x} {}", t.raw, t.unreachable),
                );
            }
        }
    }
    for a in &s.anon_vmas {
        out.insert(format!("av:{}", a.id), format!("{a:?}"));
    }
    for p in &s.pages {
        out.insert(
            format!("page:{:#x}", p.pfn),
            format!("{} {} {:?} {:?}", p.mapcount, p.refcount, p.flags, p.swapcache),
        );
        out.insert(format!("mapping:{:#x}", p.pfn), format!("{:?}", p.mapping));
    }
    for sl in &s.slots {
        out.insert(
            format!("slot:{}:{:#x}", sl.swap_type, sl.offset),
            format!("{} {} {:?}", sl.count, sl.has_cache, sl.cached),
        );
    }
    for w in &s.walks {
        for st in &w.steps {
            out.insert(
                format!("entry:{}:{}:{}", w.proc, st.table, st.index),
                format!("{}", st.raw),
            );
        }
    }
    out
}

/// The keys that are new or changed in `now` since `prev` (everything is
/// "changed" when there is no previous step).
pub(crate) fn changed(prev: Option<&Snapshot>, now: &Snapshot) -> BTreeSet<String> {
    let n = signatures(now);
    let Some(prev) = prev else { return BTreeSet::new() };
    let p = signatures(prev);
    n.into_iter().filter(|(k, v)| p.get(k) != Some(v)).map(|(k, _)| k).collect()
}
