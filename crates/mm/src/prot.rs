//! Protections of anonymous private mappings and the PTE bits Linux derives
//! from them (`vm_page_prot`, x86-64's `protection_map`).
//!
//! Every era writes the same base bits here: `PAGE_NONE` is PROTNONE|A,
//! `PAGE_READONLY`/`PAGE_COPY` are P|US|A|NX and their `_EXEC` forms drop NX.
//! A private mapping never carries R/W in `vm_page_prot`: write permission
//! is granted per PTE by the fault paths (`maybe_mkwrite`), which is what
//! makes copy-on-write work.

use pgtable::EntryFlags;

/// Protection of a mapping: the combinations ptemu supports.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Prot {
    /// PROT_NONE.
    None,
    /// PROT_READ.
    R,
    /// PROT_READ | PROT_WRITE.
    Rw,
    /// PROT_READ | PROT_EXEC.
    Rx,
    /// PROT_READ | PROT_WRITE | PROT_EXEC.
    Rwx,
}

impl Prot {
    /// Every protection, in spelling order.
    pub const ALL: [Prot; 5] = [Prot::None, Prot::R, Prot::Rw, Prot::Rx, Prot::Rwx];

    /// The spelling of scenario files (`none r rw rx rwx`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Prot::None => "none",
            Prot::R => "r",
            Prot::Rw => "rw",
            Prot::Rx => "rx",
            Prot::Rwx => "rwx",
        }
    }

    /// VM_READ.
    pub const fn readable(self) -> bool {
        !matches!(self, Prot::None)
    }

    /// VM_WRITE.
    pub const fn writable(self) -> bool {
        matches!(self, Prot::Rw | Prot::Rwx)
    }

    /// VM_EXEC.
    pub const fn executable(self) -> bool {
        matches!(self, Prot::Rx | Prot::Rwx)
    }

    /// `vm_page_prot` of a private mapping with this protection, as x86-64
    /// Linux computes it from `protection_map` (NX supported by the CPU).
    pub const fn vm_page_prot(self) -> u64 {
        let a = EntryFlags::ACCESSED.bits();
        let base = EntryFlags::PRESENT.bits() | EntryFlags::USER.bits() | a;
        match self {
            Prot::None => EntryFlags::PROTNONE.bits() | a,
            Prot::R | Prot::Rw => base | EntryFlags::NX.bits(),
            Prot::Rx | Prot::Rwx => base,
        }
    }
}

impl core::fmt::Display for Prot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Prot {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Prot::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown protection '{s}' (known: none, r, rw, rx, rwx)"))
    }
}
