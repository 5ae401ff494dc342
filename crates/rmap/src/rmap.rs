//! The rmap state: the anon_vma cache, the chain links, the per-VMA records,
//! and the VMA-side operations (anon_vma_prepare, anon_vma_clone,
//! anon_vma_fork, unlink_anon_vmas).
//!
//! The anon_vma cache behaves as the kernel's SLAB_TYPESAFE_BY_RCU cache: a
//! freed anon_vma's slot is not handed out again until the caller declares
//! an RCU grace period, and a handle that outlived its anon_vma is caught by
//! its generation and reported as an [`Oops`].
//!
//! Lifetime rule (every era): an anon_vma is freed when it has no chain
//! link and no reference left. References are get_anon_vma pins and, in
//! eras with `root_pinned`, one per descendant for its root. Without AVC
//! (2.6.33) the same rule gives the old "free when the VMA list empties".

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::anon_vma::{AnonVma, AnonVmaChain, AnonVmaId, AvcId, LinkKey, VmaId, VmaRange, VmaRmap};
use crate::era::{CloneOrder, ForkReuse, PrepareReuse, RmapSemantics};
use crate::error::{Oops, OopsKind, RmapError};
use crate::handle::{AnonVmaHandle, MAX_SLOTS};

/// One slot of the anon_vma cache.
#[derive(Clone, Debug)]
struct Slot {
    /// Generation of the current or next occupant; bumped on every free.
    generation: u32,
    /// The occupant, if the slot is allocated.
    live: Option<AnonVma>,
}

/// What is remembered of a freed anon_vma, to explain a stale handle.
#[derive(Clone, Debug)]
struct Tombstone {
    id: AnonVmaId,
    freed_at_step: String,
    freed_by: &'static str,
}

/// The anonymous rmap of one emulated machine, in one era.
#[derive(Clone, Debug)]
pub struct Rmap {
    sem: RmapSemantics,
    slots: Vec<Slot>,
    /// Freed (slot, generation) pairs, for oops reports.
    tombstones: BTreeMap<(u32, u32), Tombstone>,
    /// Slots freed since the last grace period: not reusable yet.
    rcu_pending: Vec<u32>,
    /// Slots past a grace period; the lowest is reused first.
    reusable: BTreeSet<u32>,
    next_anon_vma_id: u64,
    vmas: BTreeMap<VmaId, VmaRmap>,
    avcs: BTreeMap<AvcId, AnonVmaChain>,
    next_avc_id: u64,
    live_count: usize,
    step: String,
}

impl Rmap {
    /// An empty rmap with the given era or custom switches.
    pub fn new(semantics: impl Into<RmapSemantics>) -> Self {
        Self {
            sem: semantics.into(),
            slots: Vec::new(),
            tombstones: BTreeMap::new(),
            rcu_pending: Vec::new(),
            reusable: BTreeSet::new(),
            next_anon_vma_id: 1,
            vmas: BTreeMap::new(),
            avcs: BTreeMap::new(),
            next_avc_id: 1,
            live_count: 0,
            step: String::new(),
        }
    }

    /// The switches in force.
    pub fn semantics(&self) -> RmapSemantics {
        self.sem
    }

    /// Name the caller's current step (e.g. a scenario line "B exit"); frees
    /// record it so an oops can say where its anon_vma died.
    pub fn set_step(&mut self, label: impl Into<String>) {
        self.step = label.into();
    }

    /// The current step label.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// An RCU grace period: slots freed before it may now be reused.
    pub fn rcu_grace_period(&mut self) {
        self.reusable.extend(self.rcu_pending.drain(..));
    }

    // ----- anon_vma cache -----

    /// The live anon_vma a handle names, or the oops of following it.
    pub fn anon_vma(&self, h: AnonVmaHandle) -> Result<&AnonVma, RmapError> {
        self.lookup(h, "anon_vma lookup")
    }

    /// Whether a handle names a live anon_vma.
    #[inline]
    pub fn is_live(&self, h: AnonVmaHandle) -> bool {
        self.lookup(h, "is_live").is_ok()
    }

    /// The display id a handle was issued for, live or freed.
    pub fn display_id(&self, h: AnonVmaHandle) -> Result<AnonVmaId, RmapError> {
        match self.lookup(h, "display_id") {
            Ok(av) => Ok(av.id),
            Err(RmapError::Oops(o)) => Ok(o.anon_vma),
            Err(e) => Err(e),
        }
    }

    /// Number of live anon_vmas.
    pub fn live_anon_vma_count(&self) -> usize {
        self.live_count
    }

    /// Every live anon_vma with its handle, in allocation (display id) order.
    pub fn live_anon_vmas(&self) -> Vec<(AnonVmaHandle, &AnonVma)> {
        let mut v: Vec<_> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let slot = u32::try_from(i).ok()?;
                s.live.as_ref().map(|av| (AnonVmaHandle { slot, generation: s.generation }, av))
            })
            .collect();
        v.sort_by_key(|(_, av)| av.id);
        v
    }

    /// An anon_vma_chain link.
    pub fn avc(&self, id: AvcId) -> Option<&AnonVmaChain> {
        self.avcs.get(&id)
    }

    /// Number of anon_vma_chain links in existence.
    pub fn avc_count(&self) -> usize {
        self.avcs.len()
    }

    /// get_anon_vma: pin an anon_vma (as page_get_anon_vma, KSM or
    /// migration do) so it outlives its links.
    pub fn get_anon_vma(&mut self, h: AnonVmaHandle) -> Result<(), RmapError> {
        let av = self.lookup_mut(h, "get_anon_vma")?;
        av.refcount =
            av.refcount.checked_add(1).ok_or(RmapError::Overflow { what: "anon_vma refcount" })?;
        Ok(())
    }

    /// put_anon_vma: drop a pin; frees the anon_vma if nothing else holds it.
    pub fn put_anon_vma(&mut self, h: AnonVmaHandle) -> Result<(), RmapError> {
        let av = self.lookup_mut(h, "put_anon_vma")?;
        if av.refcount == 0 {
            return Err(RmapError::NoReference(av.id));
        }
        av.refcount -= 1;
        self.maybe_free(h, "put_anon_vma")
    }

    #[inline]
    pub(crate) fn lookup(&self, h: AnonVmaHandle, op: &'static str) -> Result<&AnonVma, RmapError> {
        let Some(slot) = self.slots.get(h.slot as usize) else {
            return Err(RmapError::BadHandle(h.to_mapping()));
        };
        if slot.generation == h.generation {
            if let Some(av) = slot.live.as_ref() {
                return Ok(av);
            }
        }
        Err(self.stale(h, op))
    }

    fn lookup_mut(
        &mut self,
        h: AnonVmaHandle,
        op: &'static str,
    ) -> Result<&mut AnonVma, RmapError> {
        let live = self
            .slots
            .get(h.slot as usize)
            .is_some_and(|s| s.generation == h.generation && s.live.is_some());
        if !live {
            return Err(self.stale(h, op));
        }
        match self.slots.get_mut(h.slot as usize).and_then(|s| s.live.as_mut()) {
            Some(av) => Ok(av),
            None => Err(RmapError::BadHandle(h.to_mapping())),
        }
    }

    /// The error for a handle that does not name a live anon_vma.
    fn stale(&self, h: AnonVmaHandle, op: &'static str) -> RmapError {
        let Some(slot) = self.slots.get(h.slot as usize) else {
            return RmapError::BadHandle(h.to_mapping());
        };
        let Some(t) = self.tombstones.get(&(h.slot, h.generation)) else {
            return RmapError::BadHandle(h.to_mapping());
        };
        let kind = match slot.live.as_ref() {
            Some(now) => OopsKind::ReusedAsAnother { now: now.id },
            None => OopsKind::UseAfterFree,
        };
        Oops {
            kind,
            anon_vma: t.id,
            freed_at_step: t.freed_at_step.clone(),
            freed_by: t.freed_by,
            op,
            mapping: h.to_mapping(),
        }
        .into()
    }

    /// anon_vma_alloc: a fresh anon_vma, its own root until told otherwise.
    fn alloc_anon_vma(&mut self) -> Result<AnonVmaHandle, RmapError> {
        let slot = match self.reusable.pop_first() {
            Some(s) => s,
            None => {
                let n = self.slots.len() as u64;
                if n >= MAX_SLOTS {
                    return Err(RmapError::CacheExhausted);
                }
                self.slots.push(Slot { generation: 0, live: None });
                u32::try_from(n).map_err(|_| RmapError::CacheExhausted)?
            }
        };
        let id = AnonVmaId(self.next_anon_vma_id);
        self.next_anon_vma_id += 1;
        let s = self.slots.get_mut(slot as usize).ok_or(RmapError::CacheExhausted)?;
        let h = AnonVmaHandle { slot, generation: s.generation };
        s.live = Some(AnonVma {
            id,
            root: h,
            parent: None,
            refcount: 0,
            // 7a3ef208e662 starts degree at one, for the first VMA.
            degree: u32::from(self.sem.fork_reuse == ForkReuse::Degree),
            num_children: 0,
            num_active_vmas: 0,
            links: BTreeSet::new(),
        });
        self.live_count += 1;
        Ok(h)
    }

    /// Free `h` if it has neither links nor references; with `root_pinned`
    /// also drop its reference on its root, which may free that too.
    fn maybe_free(&mut self, h: AnonVmaHandle, freed_by: &'static str) -> Result<(), RmapError> {
        let Ok(av) = self.lookup(h, freed_by) else { return Ok(()) };
        if !av.links.is_empty() || av.refcount > 0 {
            return Ok(());
        }
        let root = av.root;
        let id = av.id;
        let step = self.step.clone();
        if let Some(s) = self.slots.get_mut(h.slot as usize) {
            s.live = None;
            self.tombstones
                .insert((h.slot, h.generation), Tombstone { id, freed_at_step: step, freed_by });
            self.live_count -= 1;
            // A slot whose generation cannot advance is retired, so a stale
            // handle can never alias a later occupant.
            if let Some(g) = s.generation.checked_add(1) {
                s.generation = g;
                self.rcu_pending.push(h.slot);
            }
        }
        if self.sem.root_pinned && root != h {
            let r = self.lookup_mut(root, freed_by)?;
            r.refcount = r.refcount.saturating_sub(1);
            if r.refcount == 0 {
                return self.maybe_free(root, freed_by);
            }
        }
        Ok(())
    }

    // ----- VMA records -----

    /// Tell rmap about a new VMA (mmap): no anon_vma, empty chain.
    pub fn vma_register(&mut self, id: VmaId, range: VmaRange) -> Result<(), RmapError> {
        if self.vmas.contains_key(&id) {
            return Err(RmapError::VmaExists(id));
        }
        self.vmas.insert(id, VmaRmap { range, anon_vma: None, mm: 0, chain: VecDeque::new() });
        Ok(())
    }

    /// Sets a VMA's `vm_mm` word (see [`VmaRmap::mm`]).
    pub fn vma_set_mm(&mut self, id: VmaId, mm: u64) -> Result<(), RmapError> {
        match self.vmas.get_mut(&id) {
            Some(rec) => {
                rec.mm = mm;
                Ok(())
            }
            None => Err(RmapError::NoSuchVma(id)),
        }
    }

    /// vm_area_dup: register `dst` as a copy of `src` (same range, same
    /// vma->anon_vma pointer, same vm_mm) with an empty chain, as
    /// __split_vma and dup_mmap start (dup_mmap then sets the child's
    /// vm_mm). Follow with anon_vma_clone or anon_vma_fork.
    pub fn vma_dup(&mut self, dst: VmaId, src: VmaId) -> Result<(), RmapError> {
        let s = self.vma(src)?;
        let rec =
            VmaRmap { range: s.range, anon_vma: s.anon_vma, mm: s.mm, chain: VecDeque::new() };
        if self.vmas.contains_key(&dst) {
            return Err(RmapError::VmaExists(dst));
        }
        self.vmas.insert(dst, rec);
        Ok(())
    }

    /// Move or resize a VMA (split, mremap): re-key its links in every
    /// anon_vma's interval set.
    pub fn vma_set_range(&mut self, id: VmaId, range: VmaRange) -> Result<(), RmapError> {
        let rec = self.vmas.get_mut(&id).ok_or(RmapError::NoSuchVma(id))?;
        let old = rec.range;
        rec.range = range;
        let chain: Vec<AvcId> = rec.chain.iter().copied().collect();
        for avc_id in chain {
            let Some(avc) = self.avcs.get(&avc_id).copied() else { continue };
            let av = self.lookup_mut(avc.anon_vma, "vma_set_range")?;
            av.links.remove(&link_key(old, id, avc_id));
            av.links.insert(link_key(range, id, avc_id));
        }
        Ok(())
    }

    /// What rmap holds for a VMA.
    #[inline]
    pub fn vma(&self, id: VmaId) -> Result<&VmaRmap, RmapError> {
        // Built only on the error path: an eager `ok_or` value is dropped
        // (an out-of-line drop_in_place call) on every successful lookup,
        // and every fault looks VMAs up.
        match self.vmas.get(&id) {
            Some(rec) => Ok(rec),
            None => Err(RmapError::NoSuchVma(id)),
        }
    }

    /// A VMA's chain, newest first: (link, anon_vma).
    pub fn vma_chain(&self, id: VmaId) -> Result<Vec<(AvcId, AnonVmaHandle)>, RmapError> {
        let rec = self.vma(id)?;
        Ok(rec.chain.iter().filter_map(|a| self.avcs.get(a).map(|c| (c.id, c.anon_vma))).collect())
    }

    /// Every VMA rmap knows, in id order.
    pub fn vma_ids(&self) -> impl Iterator<Item = VmaId> + '_ {
        self.vmas.keys().copied()
    }

    /// Forget a VMA (remove_vma): unlink_anon_vmas, then drop the record.
    pub fn vma_remove(&mut self, id: VmaId) -> Result<(), RmapError> {
        let r = self.unlink_anon_vmas(id);
        self.vmas.remove(&id);
        r
    }

    /// anon_vma_chain_link: a new link, first on the VMA's chain.
    fn chain_link(&mut self, vma: VmaId, h: AnonVmaHandle) -> Result<AvcId, RmapError> {
        let range = self.vma(vma)?.range;
        let id = AvcId(self.next_avc_id);
        let av = self.lookup_mut(h, "anon_vma_chain_link")?;
        av.links.insert(link_key(range, vma, id));
        self.next_avc_id += 1;
        self.avcs.insert(id, AnonVmaChain { id, vma, anon_vma: h });
        if let Some(rec) = self.vmas.get_mut(&vma) {
            rec.chain.push_front(id);
        }
        Ok(id)
    }

    fn set_vma_anon_vma(&mut self, vma: VmaId, h: Option<AnonVmaHandle>) -> Result<(), RmapError> {
        self.vmas.get_mut(&vma).ok_or(RmapError::NoSuchVma(vma))?.anon_vma = h;
        Ok(())
    }

    // ----- the VMA-side operations -----

    /// anon_vma_prepare: give `vma` an anon_vma before its first anonymous
    /// page. `neighbours` are the VMAs the caller's VMA tree places next to
    /// it that the caller judged compatible in flags and policy, in the
    /// kernel's order (the following VMA, then the preceding one); rmap
    /// checks they abut in address and page offset and applies the era's
    /// reuse rule (find_mergeable_anon_vma). Returns vma->anon_vma.
    pub fn anon_vma_prepare(
        &mut self,
        vma: VmaId,
        neighbours: &[VmaId],
    ) -> Result<AnonVmaHandle, RmapError> {
        let rec = self.vma(vma)?;
        if let Some(h) = rec.anon_vma {
            self.lookup(h, "anon_vma_prepare")?;
            return Ok(h);
        }
        let range = rec.range;
        let mut reuse = None;
        for &n in neighbours {
            if n == vma {
                continue;
            }
            let nrec = self.vma(n)?;
            let abuts = nrec.range.is_followed_by(&range) || range.is_followed_by(&nrec.range);
            let Some(nav) = nrec.anon_vma else { continue };
            let allowed = match self.sem.prepare_reuse {
                PrepareReuse::AnyNeighbour => true,
                PrepareReuse::SingletonNeighbour => nrec.chain.len() == 1,
            };
            if abuts && allowed {
                reuse = Some(nav);
                break;
            }
        }
        let (h, new) = match reuse {
            Some(h) => {
                self.lookup(h, "anon_vma_prepare")?;
                (h, false)
            }
            None => (self.alloc_anon_vma()?, true),
        };
        self.chain_link(vma, h)?;
        self.set_vma_anon_vma(vma, Some(h))?;
        let fork_reuse = self.sem.fork_reuse;
        let av = self.lookup_mut(h, "anon_vma_prepare")?;
        match fork_reuse {
            ForkReuse::None => {}
            // The VMA's reference, or for a new root its link to itself as
            // parent (the allocation already counted the VMA).
            ForkReuse::Degree => av.degree += 1,
            ForkReuse::NumChildrenActiveVmas => {
                if new {
                    av.num_children += 1;
                }
                av.num_active_vmas += 1;
            }
        }
        Ok(h)
    }

    /// anon_vma_clone: link `dst` to every anon_vma `src` is linked to
    /// (__split_vma, copy_vma, and the first half of anon_vma_fork). `dst`
    /// must be registered (see [`Rmap::vma_dup`]) with an empty chain. In
    /// eras with fork-time reuse, a `dst` without anon_vma may adopt one of
    /// the ancestors. Without AVC (2.6.33) this links `dst` to its shared
    /// anon_vma, as the old vma_adjust did.
    pub fn anon_vma_clone(&mut self, dst: VmaId, src: VmaId) -> Result<(), RmapError> {
        if !self.vma(dst)?.chain.is_empty() {
            return Err(RmapError::ChainNotEmpty(dst));
        }
        let srec = self.vma(src)?;
        let src_av = srec.anon_vma;
        if !self.sem.avc {
            if let Some(h) = self.vma(dst)?.anon_vma {
                self.chain_link(dst, h)?;
            }
            return Ok(());
        }
        let src_links: Vec<AnonVmaHandle> =
            srec.chain.iter().filter_map(|a| self.avcs.get(a).map(|c| c.anon_vma)).collect();
        let order: Vec<AnonVmaHandle> = match self.sem.clone_order {
            // Oldest first, each prepended: the copy keeps src's order.
            CloneOrder::Preserved => src_links.into_iter().rev().collect(),
            // Newest first, each prepended: the copy comes out reversed.
            CloneOrder::Reversed => src_links,
        };
        for h in order {
            self.chain_link(dst, h)?;
            let dst_has = self.vma(dst)?.anon_vma.is_some();
            if dst_has || src_av.is_none() {
                continue;
            }
            let av = self.lookup(h, "anon_vma_clone")?;
            let adopt = match self.sem.fork_reuse {
                ForkReuse::None => false,
                ForkReuse::Degree => Some(h) != src_av && av.degree < 2,
                ForkReuse::NumChildrenActiveVmas => av.num_children < 2 && av.num_active_vmas == 0,
            };
            if adopt {
                self.set_vma_anon_vma(dst, Some(h))?;
            }
        }
        if let Some(h) = self.vma(dst)?.anon_vma {
            let fork_reuse = self.sem.fork_reuse;
            let av = self.lookup_mut(h, "anon_vma_clone")?;
            match fork_reuse {
                ForkReuse::None => {}
                ForkReuse::Degree => av.degree += 1,
                ForkReuse::NumChildrenActiveVmas => av.num_active_vmas += 1,
            }
        }
        Ok(())
    }

    /// dup_anon_vma: when a VMA merge makes `dst` take over pages of `src`
    /// (vma_expand, and vma_adjust's "importer" before it), `dst` without
    /// an anon_vma takes `src`'s and links to every anon_vma `src` is
    /// linked to. Nothing happens when `dst` has one or `src` has none.
    pub fn dup_anon_vma(&mut self, dst: VmaId, src: VmaId) -> Result<(), RmapError> {
        let src_av = self.vma(src)?.anon_vma;
        if self.vma(dst)?.anon_vma.is_some() {
            return Ok(());
        }
        let Some(h) = src_av else { return Ok(()) };
        if !self.vma(dst)?.chain.is_empty() {
            return Err(RmapError::ChainNotEmpty(dst));
        }
        self.lookup(h, "dup_anon_vma")?;
        self.set_vma_anon_vma(dst, Some(h))?;
        self.anon_vma_clone(dst, src)
    }

    /// anon_vma_fork: at fork, link the child's copy of a VMA to the
    /// parent's anon_vmas and give it its own (or, with fork-time reuse, an
    /// adopted one). `child` is registered as a copy of `parent` if rmap
    /// does not know it yet. Returns the child's anon_vma (None when the
    /// parent VMA never had one). Without AVC (2.6.33) the child shares the
    /// parent's anon_vma (the old anon_vma_link).
    pub fn anon_vma_fork(
        &mut self,
        child: VmaId,
        parent: VmaId,
    ) -> Result<Option<AnonVmaHandle>, RmapError> {
        if !self.vmas.contains_key(&child) {
            self.vma_dup(child, parent)?;
        }
        if !self.vma(child)?.chain.is_empty() {
            return Err(RmapError::ChainNotEmpty(child));
        }
        let Some(pav) = self.vma(parent)?.anon_vma else {
            self.set_vma_anon_vma(child, None)?;
            return Ok(None);
        };
        if !self.sem.avc {
            self.lookup(pav, "anon_vma_fork")?;
            self.set_vma_anon_vma(child, Some(pav))?;
            self.chain_link(child, pav)?;
            return Ok(Some(pav));
        }
        self.set_vma_anon_vma(child, None)?;
        self.anon_vma_clone(child, parent)?;
        if let Some(adopted) = self.vma(child)?.anon_vma {
            return Ok(Some(adopted));
        }
        let root = self.lookup(pav, "anon_vma_fork")?.root;
        let fork_reuse = self.sem.fork_reuse;
        let h = self.alloc_anon_vma()?;
        {
            let av = self.lookup_mut(h, "anon_vma_fork")?;
            av.root = root;
            av.parent = Some(pav);
            if fork_reuse == ForkReuse::NumChildrenActiveVmas {
                av.num_active_vmas += 1;
            }
        }
        if self.sem.root_pinned {
            let r = self.lookup_mut(root, "anon_vma_fork")?;
            r.refcount = r
                .refcount
                .checked_add(1)
                .ok_or(RmapError::Overflow { what: "anon_vma refcount" })?;
        }
        self.set_vma_anon_vma(child, Some(h))?;
        self.chain_link(child, h)?;
        let p = self.lookup_mut(pav, "anon_vma_fork")?;
        match fork_reuse {
            ForkReuse::None => {}
            ForkReuse::Degree => p.degree += 1,
            ForkReuse::NumChildrenActiveVmas => p.num_children += 1,
        }
        Ok(Some(h))
    }

    /// unlink_anon_vmas: drop every link of `vma` (munmap, exit), newest
    /// first, and free the anon_vmas left with no link and no reference.
    /// The VMA stays registered with no anon_vma. A stale anon_vma met on
    /// the way is reported after the rest of the unlink is done.
    pub fn unlink_anon_vmas(&mut self, vma: VmaId) -> Result<(), RmapError> {
        let rec = self.vmas.get_mut(&vma).ok_or(RmapError::NoSuchVma(vma))?;
        let chain = std::mem::take(&mut rec.chain);
        let own = rec.anon_vma.take();
        let range = rec.range;
        let fork_reuse = self.sem.fork_reuse;
        let mut first_err = None;
        let mut emptied = Vec::new();
        for avc_id in chain {
            let Some(avc) = self.avcs.remove(&avc_id) else { continue };
            let h = avc.anon_vma;
            let parent = match self.lookup_mut(h, "unlink_anon_vmas") {
                Ok(av) => {
                    av.links.remove(&link_key(range, vma, avc_id));
                    if !av.links.is_empty() {
                        continue;
                    }
                    emptied.push(h);
                    av.parent.unwrap_or(h)
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            // An emptied anon_vma stops counting as a child of its parent
            // (a root as its own).
            if fork_reuse != ForkReuse::None {
                match self.lookup_mut(parent, "unlink_anon_vmas") {
                    Ok(p) if fork_reuse == ForkReuse::Degree => {
                        p.degree = p.degree.saturating_sub(1)
                    }
                    Ok(p) => p.num_children = p.num_children.saturating_sub(1),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(h) = own {
            if fork_reuse != ForkReuse::None {
                match self.lookup_mut(h, "unlink_anon_vmas") {
                    Ok(av) if fork_reuse == ForkReuse::Degree => {
                        av.degree = av.degree.saturating_sub(1)
                    }
                    Ok(av) => av.num_active_vmas = av.num_active_vmas.saturating_sub(1),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        for h in emptied {
            if let Err(e) = self.maybe_free(h, "unlink_anon_vmas") {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn link_key(range: VmaRange, vma: VmaId, avc: AvcId) -> LinkKey {
    LinkKey { pgoff_start: range.pgoff(), pgoff_last: range.pgoff_last(), vma, avc }
}
