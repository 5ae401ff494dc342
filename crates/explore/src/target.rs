//! What is searched: an era by name, or a custom `RmapSemantics` set built
//! from one (`seed+clone_order=preserved`), and the machine's size.

use std::fmt;

use mm::MachineConfig;
use rmap::{
    CloneOrder, Era, FirstMapAnonVma, ForkReuse, PrepareReuse, RmapSemantics, SwapPteFormat,
};

/// Physical memory of every generated scenario: small, so that page
/// tables, the allocator's low frames and reclaim are all in play and a
/// check after every step stays cheap.
pub const MEMORY: u64 = 4 << 20;
/// The one swap device of every generated scenario.
pub const SWAP: u64 = 2 << 20;

/// The semantics a search runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As given: an era name, or `ERA+switch=value+...`.
    pub name: String,
    /// The era, when the target is exactly one (then findings are written
    /// as scenarios `ptemu run` can replay).
    pub era: Option<Era>,
    /// The switches.
    pub semantics: RmapSemantics,
    /// Physical memory in bytes.
    pub memory: u64,
    /// Swap device size in bytes.
    pub swap: u64,
}

/// A target that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// The base era is not known.
    #[error("unknown era {0:?} (known: {known})", known = Era::known_names())]
    UnknownEra(String),
    /// A switch is not one of RmapSemantics's.
    #[error("unknown switch {0:?} (known: {SWITCHES})")]
    UnknownSwitch(String),
    /// A switch's value is not one it takes.
    #[error("switch {switch} takes {takes}, not {value:?}")]
    BadValue {
        /// The switch.
        switch: String,
        /// The value given.
        value: String,
        /// What it takes.
        takes: &'static str,
    },
    /// `+switch` without `=value`.
    #[error("{0:?}: expected switch=value")]
    NoValue(String),
}

const SWITCHES: &str = "avc, clone_order, prepare_reuse, first_map, add_anon_exclusive_arg, rewrite_anon_mapping, root_pinned, fork_reuse, anon_exclusive, swap_pte_format, merge_refuses_fork_children, mprotect_unaccounts_unfaulted";

fn yes(switch: &str, v: &str) -> Result<bool, TargetError> {
    match v {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(TargetError::BadValue {
            switch: switch.into(),
            value: v.into(),
            takes: "yes or no",
        }),
    }
}

fn one_of<T: Copy>(
    switch: &str,
    v: &str,
    table: &[(&str, T)],
    takes: &'static str,
) -> Result<T, TargetError> {
    table.iter().find(|(n, _)| *n == v).map(|(_, t)| *t).ok_or_else(|| TargetError::BadValue {
        switch: switch.into(),
        value: v.into(),
        takes,
    })
}

impl Target {
    /// Parses `ERA` or `ERA+switch=value+switch=value` (switch names and
    /// values as in docs/eras.md, values in kebab case: `last-link`).
    pub fn parse(spec: &str) -> Result<Target, TargetError> {
        let mut parts = spec.split('+');
        let base = parts.next().unwrap_or_default();
        let era: Era = base.parse().map_err(|_| TargetError::UnknownEra(base.to_string()))?;
        let mut s = era.semantics();
        let mut custom = false;
        for part in parts {
            custom = true;
            let (k, v) = part.split_once('=').ok_or_else(|| TargetError::NoValue(part.into()))?;
            match k {
                "avc" => s.avc = yes(k, v)?,
                "add_anon_exclusive_arg" => s.add_anon_exclusive_arg = yes(k, v)?,
                "rewrite_anon_mapping" => s.rewrite_anon_mapping = yes(k, v)?,
                "root_pinned" => s.root_pinned = yes(k, v)?,
                "anon_exclusive" => s.anon_exclusive = yes(k, v)?,
                "merge_refuses_fork_children" => s.merge_refuses_fork_children = yes(k, v)?,
                "mprotect_unaccounts_unfaulted" => s.mprotect_unaccounts_unfaulted = yes(k, v)?,
                "clone_order" => {
                    s.clone_order = one_of(
                        k,
                        v,
                        &[("reversed", CloneOrder::Reversed), ("preserved", CloneOrder::Preserved)],
                        "reversed or preserved",
                    )?
                }
                "prepare_reuse" => {
                    s.prepare_reuse = one_of(
                        k,
                        v,
                        &[
                            ("any-neighbour", PrepareReuse::AnyNeighbour),
                            ("singleton-neighbour", PrepareReuse::SingletonNeighbour),
                        ],
                        "any-neighbour or singleton-neighbour",
                    )?
                }
                "first_map" => {
                    s.first_map = one_of(
                        k,
                        v,
                        &[
                            ("vma-own", FirstMapAnonVma::VmaOwn),
                            ("last-link", FirstMapAnonVma::LastLink),
                            ("new-own-else-last-link", FirstMapAnonVma::NewOwnElseLastLink),
                            ("new-own-else-root", FirstMapAnonVma::NewOwnElseRoot),
                        ],
                        "vma-own, last-link, new-own-else-last-link or new-own-else-root",
                    )?
                }
                "fork_reuse" => {
                    s.fork_reuse = one_of(
                        k,
                        v,
                        &[
                            ("none", ForkReuse::None),
                            ("degree", ForkReuse::Degree),
                            ("num-children-active-vmas", ForkReuse::NumChildrenActiveVmas),
                        ],
                        "none, degree or num-children-active-vmas",
                    )?
                }
                "swap_pte_format" => {
                    s.swap_pte_format = one_of(
                        k,
                        v,
                        &[("classic", SwapPteFormat::Classic), ("l1tf", SwapPteFormat::L1tf)],
                        "classic or l1tf",
                    )?
                }
                _ => return Err(TargetError::UnknownSwitch(k.into())),
            }
        }
        let era =
            if custom { Era::ALL.into_iter().find(|e| e.semantics() == s) } else { Some(era) };
        let name = match era {
            Some(e) => e.name().to_string(),
            None => spec.to_string(),
        };
        Ok(Target { name, era, semantics: s, memory: MEMORY, swap: SWAP })
    }
}

impl Target {
    /// A machine configuration for this target: the era's, or the custom
    /// set under the target's name (memory and swap not applied).
    pub fn machine_config(&self) -> MachineConfig {
        match self.era {
            Some(era) => MachineConfig::new(era),
            None => MachineConfig::custom(self.name.clone(), self.semantics),
        }
    }

    /// The era a custom set was built from (the target's own name for an era).
    pub fn semantics_base(&self) -> String {
        self.name.split('+').next().unwrap_or_default().to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_and_custom_sets() {
        let t = Target::parse("seed").unwrap();
        assert_eq!(t.era, Some(Era::Seed));
        let c = Target::parse("seed+clone_order=preserved").unwrap();
        assert_eq!(c.era, None);
        assert_eq!(c.semantics.clone_order, CloneOrder::Preserved);
        assert_eq!(c.semantics.first_map, Era::Seed.semantics().first_map);
        // A "custom" set equal to an era is that era.
        assert_eq!(Target::parse("2.6.34-rc3+first_map=last-link").unwrap().era, Some(Era::Seed));
        assert!(matches!(Target::parse("2.6.35"), Err(TargetError::UnknownEra(_))));
        assert!(matches!(Target::parse("seed+bogus=1"), Err(TargetError::UnknownSwitch(_))));
        assert!(matches!(Target::parse("seed+avc=maybe"), Err(TargetError::BadValue { .. })));
        assert!(matches!(Target::parse("seed+avc"), Err(TargetError::NoValue(_))));
        // The mm-side switches too: 6.18 without the merge rule of 965f55dea0e3.
        let m = Target::parse("6.18+merge_refuses_fork_children=no").unwrap();
        assert_eq!(m.era, None);
        assert!(!m.semantics.merge_refuses_fork_children);
        assert_eq!(m.semantics_base(), "6.18");
    }
}
