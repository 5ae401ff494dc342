//! Kernel eras: named sets of rmap behaviours, and the switches they set.
//!
//! An [`Era`] is a name for one [`RmapSemantics`]; a user may also build a
//! custom `RmapSemantics` to try combinations no kernel ever shipped (for
//! instance the seed's patch with the clone order fixed). docs/eras.md says
//! which commit introduced each switch.

use std::fmt;
use std::str::FromStr;

use crate::error::RmapError;

/// Order in which anon_vma_clone copies the parent's chain into the child's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CloneOrder {
    /// 2.6.34-rc1..rc3: the parent's chain was walked newest first and each
    /// link prepended, so the child's copy came out reversed and "the last
    /// link is the oldest anon_vma" stopped holding from the grandchild on.
    Reversed,
    /// From the clone-order fix on: the parent's chain is walked oldest
    /// first, so the child's copy keeps the parent's order.
    Preserved,
}

/// Which neighbouring VMA's anon_vma anon_vma_prepare may reuse.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PrepareReuse {
    /// Any compatible neighbour's anon_vma (2.6.33 and 2.6.34-rc1..rc3).
    AnyNeighbour,
    /// Only the anon_vma of a neighbour whose chain has exactly one link
    /// (d0e9fe1758f2), so VMAs sharing an anon_vma share the whole chain.
    SingletonNeighbour,
}

/// Which anon_vma a page's mapping names when rmap first sets it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FirstMapAnonVma {
    /// The mapping VMA's own anon_vma, for new and old pages alike
    /// (2.6.33, where it is shared anyway, and 2.6.34-rc1..rc3).
    VmaOwn,
    /// The anon_vma of the last link of the VMA's chain, for every page
    /// (the seed's patch, ea90002b0fa7, on its own).
    LastLink,
    /// Exclusive (brand-new) pages: the VMA's own anon_vma; others: the
    /// last link of the chain (Rik van Riel's follow-up to the seed).
    NewOwnElseLastLink,
    /// Exclusive pages: the VMA's own anon_vma; others: the root
    /// (288468c334e9, and every kernel since).
    NewOwnElseRoot,
}

/// Fork-time reuse of an existing anon_vma instead of allocating one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ForkReuse {
    /// Every forked VMA gets a fresh anon_vma (2.6.34 .. 3.18).
    None,
    /// 7a3ef208e662: reuse an ancestor whose `degree` (VMAs using it plus
    /// child anon_vmas) is below two.
    Degree,
    /// 2555283eb40d: reuse an ancestor with fewer than two children and no
    /// VMA using it as its own anon_vma.
    NumChildrenActiveVmas,
}

/// x86-64 swap PTE layout of an era. rmap does not use it; it lives here so
/// that one era value configures the whole emulated kernel (the mm crate
/// reads it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SwapPteFormat {
    /// Pre-L1TF: type in bits 1..5, offset from bit 9, not inverted.
    Classic,
    /// L1TF-hardened (4.19+): type in 63..59, offset inverted in 58..9, with
    /// the exclusive, soft-dirty and uffd-wp software bits.
    L1tf,
}

/// The visible switches that make up an era's rmap behaviour.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RmapSemantics {
    /// anon_vma_chain design (5beb49305251): each forked VMA has its own
    /// anon_vma linked to its ancestors'. Off: parent and child share one
    /// anon_vma and each VMA has exactly one link (pre-2.6.34).
    pub avc: bool,
    /// How anon_vma_clone orders the copied chain (ignored without `avc`).
    pub clone_order: CloneOrder,
    /// Which neighbour anon_vma_prepare may take its anon_vma from.
    pub prepare_reuse: PrepareReuse,
    /// Which anon_vma a first mapping sets page->mapping to.
    pub first_map: FirstMapAnonVma,
    /// Whether page_add_anon_rmap honours its `exclusive` argument (the
    /// swap-in path tells it the page is the faulting VMA's alone). Before
    /// that, every page it maps is treated as shared.
    pub add_anon_exclusive_arg: bool,
    /// Whether a first mapping may overwrite the mapping of a page that is
    /// already anon (true until 288468c334e9).
    pub rewrite_anon_mapping: bool,
    /// Whether each anon_vma pins its root with a reference, so the root is
    /// freed last whatever else holds the children (2.6.36).
    pub root_pinned: bool,
    /// Fork-time reuse of ancestor anon_vmas.
    pub fork_reuse: ForkReuse,
    /// PG_anon_exclusive is kept on pages (5.19+).
    pub anon_exclusive: bool,
    /// Swap PTE layout written by the era (used by mm, not by rmap).
    pub swap_pte_format: SwapPteFormat,
    /// VMA merging refuses an anon_vma-less VMA joining one that was
    /// cloned from a parent at fork (its chain has more than one link), in
    /// either direction (965f55dea0e3 "mmap: avoid merging cloned VMAs",
    /// 3.0; today `vma_is_fork_child` in mm/vma.c). Before it, an
    /// anon_vma-less VMA merged with any neighbour. Used by mm's vma_merge.
    pub merge_refuses_fork_children: bool,
    /// mprotect to a non-writable protection drops VM_ACCOUNT from an
    /// anonymous VMA that has no anon_vma yet (6.x mprotect_fixup), so it
    /// can merge again with a never-writable neighbour. Before, VM_ACCOUNT
    /// once set stayed. Used by mm (vm_flags, not rmap).
    pub mprotect_unaccounts_unfaulted: bool,
}

/// A named kernel era (semantics.md section 3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Era {
    /// 2.6.33: one shared anon_vma per fork family, no chains.
    V2_6_33,
    /// 2.6.34-rc3: anon_vma chains with the reversed clone order; the bug.
    V2_6_34Rc3,
    /// 2.6.34-rc3 plus the seed's patch (oldest = last link) alone.
    Seed,
    /// 2.6.34: the April 2010 fixes (singleton reuse, clone order, oldest
    /// anon_vma for shared pages, newest for exclusive ones).
    V2_6_34,
    /// 2.6.36: anon_vma->root, root pinned, anon mappings never rewritten.
    V2_6_36,
    /// 6.18: as 2.6.36 plus fork-time reuse and PageAnonExclusive.
    V6_18,
}

impl Era {
    /// Every era, oldest first.
    pub const ALL: [Era; 6] =
        [Era::V2_6_33, Era::V2_6_34Rc3, Era::Seed, Era::V2_6_34, Era::V2_6_36, Era::V6_18];

    /// The canonical name, as parsed by [`Era::from_str`].
    pub const fn name(self) -> &'static str {
        match self {
            Era::V2_6_33 => "2.6.33",
            Era::V2_6_34Rc3 => "2.6.34-rc3",
            Era::Seed => "seed",
            Era::V2_6_34 => "2.6.34",
            Era::V2_6_36 => "2.6.36",
            Era::V6_18 => "6.18",
        }
    }

    /// The switches this era sets.
    pub const fn semantics(self) -> RmapSemantics {
        let rc3 = RmapSemantics {
            avc: true,
            clone_order: CloneOrder::Reversed,
            prepare_reuse: PrepareReuse::AnyNeighbour,
            first_map: FirstMapAnonVma::VmaOwn,
            add_anon_exclusive_arg: false,
            rewrite_anon_mapping: true,
            root_pinned: false,
            fork_reuse: ForkReuse::None,
            anon_exclusive: false,
            swap_pte_format: SwapPteFormat::Classic,
            merge_refuses_fork_children: false,
            mprotect_unaccounts_unfaulted: false,
        };
        match self {
            Era::V2_6_33 => RmapSemantics { avc: false, clone_order: CloneOrder::Preserved, ..rc3 },
            Era::V2_6_34Rc3 => rc3,
            Era::Seed => RmapSemantics { first_map: FirstMapAnonVma::LastLink, ..rc3 },
            Era::V2_6_34 => RmapSemantics {
                clone_order: CloneOrder::Preserved,
                prepare_reuse: PrepareReuse::SingletonNeighbour,
                first_map: FirstMapAnonVma::NewOwnElseLastLink,
                ..rc3
            },
            // Each later era is the one before it plus what it changed.
            Era::V2_6_36 => RmapSemantics {
                first_map: FirstMapAnonVma::NewOwnElseRoot,
                add_anon_exclusive_arg: true,
                rewrite_anon_mapping: false,
                root_pinned: true,
                ..Era::V2_6_34.semantics()
            },
            Era::V6_18 => RmapSemantics {
                fork_reuse: ForkReuse::NumChildrenActiveVmas,
                anon_exclusive: true,
                swap_pte_format: SwapPteFormat::L1tf,
                merge_refuses_fork_children: true,
                mprotect_unaccounts_unfaulted: true,
                ..Era::V2_6_36.semantics()
            },
        }
    }

    /// The known names, comma separated, for error messages and help.
    pub fn known_names() -> String {
        Era::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Era {
    type Err = RmapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Era::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| RmapError::UnknownEra { name: s.to_string(), known: Era::known_names() })
    }
}

impl From<Era> for RmapSemantics {
    fn from(era: Era) -> Self {
        era.semantics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for era in Era::ALL {
            assert_eq!(era.to_string().parse::<Era>(), Ok(era));
        }
        assert_eq!(Era::known_names(), "2.6.33, 2.6.34-rc3, seed, 2.6.34, 2.6.36, 6.18");
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let err = "2.6.35".parse::<Era>().expect_err("not an era");
        assert_eq!(
            err.to_string(),
            "unknown era '2.6.35' (known: 2.6.33, 2.6.34-rc3, seed, 2.6.34, 2.6.36, 6.18)"
        );
        assert!("".parse::<Era>().is_err());
        assert!("6.18 ".parse::<Era>().is_err());
    }

    #[test]
    fn every_era_is_a_distinct_switch_set() {
        for (i, a) in Era::ALL.iter().enumerate() {
            for b in &Era::ALL[i + 1..] {
                assert_ne!(a.semantics(), b.semantics(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn the_seed_era_differs_from_rc3_only_in_the_first_map_choice() {
        let rc3 = Era::V2_6_34Rc3.semantics();
        let seed = Era::Seed.semantics();
        assert_eq!(RmapSemantics { first_map: rc3.first_map, ..seed }, rc3);
        assert_eq!(seed.first_map, FirstMapAnonVma::LastLink);
    }
}
