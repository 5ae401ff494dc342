//! VMA merging as Linux's `vma_merge` does it (2.6.x `vma_merge` and
//! `vma_adjust`; 6.x `vma_merge_new_range`, `vma_merge_existing_range` and
//! `commit_merge` in mm/vma.c).
//!
//! A new mapping (mmap), or a range whose flags mprotect changes, joins the
//! VMA before it and/or after it when they abut, their vm_flags are equal
//! (here: the protection and VM_ACCOUNT; anonymous private mappings share
//! every other flag, and their page offsets are always contiguous because
//! each starts as `addr >> 12`), and their anon_vmas are compatible:
//!
//! - 2.6.x (`is_mergeable_anon_vma`): either side has no anon_vma, or both
//!   have the same one.
//! - Since 965f55dea0e3 (3.0; 6.18's `is_mergeable_anon_vma` with
//!   `vma_is_fork_child`): the same, except that when exactly one side has
//!   an anon_vma, that side must not have been cloned from a parent at
//!   fork (a chain of more than one link): a forked child's faulted VMA
//!   does not absorb a new neighbour, nor a neighbour it.
//!   [`rmap::RmapSemantics::merge_refuses_fork_children`].
//! - Joining both neighbours at once also needs the two neighbours'
//!   anon_vmas to be compatible (none on one side, or the same); otherwise
//!   only the one before is joined.
//!
//! The survivor is the VMA before when it takes part, else the one after.
//! A survivor without an anon_vma takes the anon_vma and chain of the VMA
//! whose pages it takes over (`dup_anon_vma`); the VMAs that disappear are
//! unlinked from their anon_vmas (`unlink_anon_vmas`). Page tables are not
//! touched. Every rule above was checked against the host kernel (6.18)
//! with a probe reading /proc/self/maps (docs/fixtures.md, "VMAs").

use rmap::{AnonVmaHandle, VmaRange};

use crate::error::MmError;
use crate::machine::{Machine, RmapResult, rmap_res};
use crate::outcome::Outcome;
use crate::process::{Pid, Vma};
use crate::prot::Prot;

/// One merge, decided: what survives, its new bounds, what goes.
struct Merge {
    /// The surviving VMA (before the merge).
    target: Vma,
    /// Its new bounds.
    start: u64,
    end: u64,
    /// The VMA whose anon_vma a survivor without one takes.
    dup_from: Option<Vma>,
    /// VMAs that disappear into the survivor.
    remove: Vec<Vma>,
    /// The VMA that keeps part of its range, with its new bounds.
    adjust: Option<(Vma, u64, u64)>,
}

impl Machine {
    fn vma_anon(&self, v: &Vma) -> Result<Option<AnonVmaHandle>, MmError> {
        Ok(self.rmap.vma(v.id)?.anon_vma)
    }

    /// `vma_is_fork_child`: it has an anon_vma and more than one link.
    fn is_fork_child(&self, v: &Vma) -> Result<bool, MmError> {
        let r = self.rmap.vma(v.id)?;
        Ok(r.anon_vma.is_some() && r.chain().count() != 1)
    }

    /// `is_mergeable_anon_vma` for joining `src` (the range whose flags
    /// change; `None` for a new mapping) to the neighbour `tgt`.
    fn anon_mergeable(&self, src: Option<&Vma>, tgt: &Vma) -> Result<bool, MmError> {
        let src_anon = match src {
            Some(s) => self.vma_anon(s)?,
            None => None,
        };
        let tgt_anon = self.vma_anon(tgt)?;
        if !self.sem.merge_refuses_fork_children {
            return Ok(src_anon.is_none() || tgt_anon.is_none() || src_anon == tgt_anon);
        }
        Ok(match (tgt_anon, src_anon) {
            (None, Some(_)) => match src {
                Some(s) => !self.is_fork_child(s)?,
                None => true,
            },
            (Some(_), None) => !self.is_fork_child(tgt)?,
            _ => src_anon == tgt_anon,
        })
    }

    /// Whether `prev` and `next` may end up as one VMA (both sides of a
    /// three-way merge): neither anon_vma set, or the same one.
    fn neighbours_compatible(&self, prev: &Vma, next: &Vma) -> Result<bool, MmError> {
        let (a, b) = (self.vma_anon(prev)?, self.vma_anon(next)?);
        Ok(a.is_none() || b.is_none() || a == b)
    }

    /// The neighbours of `[start, end)` that abut it, with equal flags.
    fn flag_neighbours(
        &self,
        pid: Pid,
        start: u64,
        end: u64,
        prot: Prot,
        account: bool,
    ) -> Result<(Option<Vma>, Option<Vma>), MmError> {
        let p = self.proc(pid)?;
        let same = |v: &&Vma| v.prot == prot && v.account == account;
        let prev = p.vmas.range(..start).next_back().map(|(_, v)| v).filter(|v| v.end == start);
        let next = p.vmas.range(end..).next().map(|(_, v)| v).filter(|v| v.start == end);
        Ok((prev.filter(same).copied(), next.filter(same).copied()))
    }

    /// Which of the flag-compatible neighbours `src` (the range whose flags
    /// change; `None` for a new mapping) may join: each whose anon_vma is
    /// compatible, and the one after only if, when both would join, the two
    /// neighbours' anon_vmas are compatible with each other too.
    fn joinable(
        &self,
        src: Option<&Vma>,
        prev: Option<Vma>,
        next: Option<Vma>,
    ) -> Result<(Option<Vma>, Option<Vma>), MmError> {
        let left = match prev {
            Some(p) if self.anon_mergeable(src, &p)? => Some(p),
            _ => None,
        };
        let right = match next {
            Some(n) if self.anon_mergeable(src, &n)? => match left {
                Some(p) if !self.neighbours_compatible(&p, &n)? => None,
                _ => Some(n),
            },
            _ => None,
        };
        Ok((left, right))
    }

    /// mmap's merge (`vma_merge_new_range`): `Some` when `[start, end)`
    /// joined a neighbour, `None` when a new VMA is needed.
    pub(crate) fn merge_new_range(
        &mut self,
        pid: Pid,
        start: u64,
        end: u64,
        prot: Prot,
        account: bool,
    ) -> Result<Option<Outcome<()>>, MmError> {
        let (prev, next) = self.flag_neighbours(pid, start, end, prot, account)?;
        let plan = match self.joinable(None, prev, next)? {
            (Some(p), Some(n)) => Merge {
                target: p,
                start: p.start,
                end: n.end,
                dup_from: Some(n),
                remove: vec![n],
                adjust: None,
            },
            (Some(p), None) => Merge {
                target: p,
                start: p.start,
                end,
                dup_from: None,
                remove: vec![],
                adjust: None,
            },
            (None, Some(n)) => {
                Merge { target: n, start, end: n.end, dup_from: None, remove: vec![], adjust: None }
            }
            (None, None) => return Ok(None),
        };
        self.commit_merge(pid, plan).map(Some)
    }

    /// mprotect's merge (`vma_merge_existing_range`): `[start, end)` of
    /// `mid` takes `prot`/`account`. `Some` when it joined a neighbour
    /// (the survivor already has the new flags), `None` when the caller
    /// must split instead.
    pub(crate) fn merge_existing_range(
        &mut self,
        pid: Pid,
        mid: Vma,
        start: u64,
        end: u64,
        prot: Prot,
        account: bool,
    ) -> Result<Option<Outcome<()>>, MmError> {
        let (prev, next) = self.flag_neighbours(pid, start, end, prot, account)?;
        // Only a range that reaches the VMA's edge can join across it.
        let prev = prev.filter(|_| start == mid.start);
        let next = next.filter(|_| end == mid.end);
        let plan = match self.joinable(Some(&mid), prev, next)? {
            (Some(p), Some(n)) => {
                let src = if self.vma_anon(&n)?.is_some() { n } else { mid };
                Merge {
                    target: p,
                    start: p.start,
                    end: n.end,
                    dup_from: Some(src),
                    remove: vec![mid, n],
                    adjust: None,
                }
            }
            (Some(p), None) => Merge {
                target: p,
                start: p.start,
                end,
                dup_from: Some(mid),
                remove: if end == mid.end { vec![mid] } else { vec![] },
                adjust: (end < mid.end).then_some((mid, end, mid.end)),
            },
            (None, Some(n)) => Merge {
                target: n,
                start,
                end: n.end,
                dup_from: Some(mid),
                remove: if start == mid.start { vec![mid] } else { vec![] },
                adjust: (start > mid.start).then_some((mid, mid.start, start)),
            },
            (None, None) => return Ok(None),
        };
        self.commit_merge(pid, plan).map(Some)
    }

    /// `commit_merge`: dup_anon_vma into the survivor, new bounds for the
    /// survivor and the adjusted VMA, then the removed VMAs unlinked.
    fn commit_merge(&mut self, pid: Pid, m: Merge) -> Result<Outcome<()>, MmError> {
        if let Some(src) = m.dup_from {
            if let RmapResult::Oops(o) = rmap_res(self.rmap.dup_anon_vma(m.target.id, src.id))? {
                return Ok(Outcome::Oops(self.oops(&o, None)));
            }
        }
        let shift = |v: &Vma, start: u64| -> u64 {
            if start >= v.start {
                v.pgoff + ((start - v.start) >> 12)
            } else {
                v.pgoff - ((v.start - start) >> 12)
            }
        };
        let survivor =
            Vma { start: m.start, end: m.end, pgoff: shift(&m.target, m.start), ..m.target };
        let adjusted = m.adjust.map(|(v, s, e)| Vma { start: s, end: e, pgoff: shift(&v, s), ..v });
        {
            let p = self.proc_mut(pid)?;
            p.vmas.remove(&m.target.start);
            for v in &m.remove {
                p.vmas.remove(&v.start);
            }
            if let Some((v, _, _)) = &m.adjust {
                p.vmas.remove(&v.start);
            }
            p.vmas.insert(survivor.start, survivor);
            if let Some(a) = adjusted {
                p.vmas.insert(a.start, a);
            }
        }
        self.rmap.vma_set_range(
            survivor.id,
            VmaRange::new(survivor.start, survivor.pgoff, survivor.pages())?,
        )?;
        if let Some(a) = adjusted {
            self.rmap.vma_set_range(a.id, VmaRange::new(a.start, a.pgoff, a.pages())?)?;
        }
        let mut oops = None;
        for v in &m.remove {
            self.vma_owner.remove(&v.id);
            if let RmapResult::Oops(o) = rmap_res(self.rmap.vma_remove(v.id))? {
                oops.get_or_insert(o);
            }
        }
        Ok(match oops {
            Some(o) => Outcome::Oops(self.oops(&o, None)),
            None => Outcome::Done(()),
        })
    }
}
