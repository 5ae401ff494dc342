//! The parsed form of a scenario: machine setup, then operations and
//! expectations in file order, each carrying the position it was written at.
//!
//! Nothing here has run yet; a value of these types only promises that the
//! text was well formed and within the documented limits.

use serde::Serialize;

/// A 1-based line and column (in characters) in a scenario file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value with the position of the text it was parsed from.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where its text starts.
    pub pos: Pos,
}

/// A process name as written (`A`, `parent`, `child2`).
pub type ProcName = Spanned<String>;

/// An era name, checked at parse time against the known eras.
pub type EraName = Spanned<String>;

/// A whole scenario file.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Scenario {
    /// The file name used in messages.
    pub file: String,
    /// The machine the steps run on.
    pub setup: Setup,
    /// Operations and expectations, in file order.
    pub steps: Vec<Step>,
}

/// Machine setup: what `era`/`eras`, `memory` and `swap` said, or defaults.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Setup {
    /// The eras to run under, in the order written; never empty.
    pub eras: Vec<EraName>,
    /// Physical memory size in bytes.
    pub memory: Spanned<u64>,
    /// One size in bytes per swap device; index = swap type.
    pub swaps: Vec<Spanned<u64>>,
}

/// One statement after the setup.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Step {
    /// Where the statement starts.
    pub pos: Pos,
    /// The statement as written, without its comment (for reports).
    pub text: String,
    /// What it says.
    pub kind: StepKind,
}

/// An operation or an expectation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub enum StepKind {
    /// Something that changes (or prints) the machine's state.
    Op(Op),
    /// A claim about the state after the last operation.
    Expect(Expectation),
}

/// Protection of a mapping, as written (`none r rw rx rwx`): mm's own type,
/// whose `as_str` is the scenario spelling.
pub use mm::Prot;

/// What a system call returned, as a scenario states it after `=`:
/// `0`, or an errno name (`ENOMEM`). mm's own type.
pub use mm::{Errno, SysResult};

/// The advice of `madvise` (only MADV_DONTNEED so far).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum Advice {
    /// MADV_DONTNEED: zap the range's pages.
    DontNeed,
}

/// An operation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub enum Op {
    /// `spawn P`: a new process with an empty address space.
    Spawn {
        /// The new process.
        proc: ProcName,
    },
    /// `P mmap ADDR LEN PROT [= RESULT]`: an anonymous private mapping.
    Mmap {
        /// The process.
        proc: ProcName,
        /// Start address.
        addr: Spanned<u64>,
        /// Length in bytes.
        len: Spanned<u64>,
        /// Protection.
        prot: Spanned<Prot>,
        /// The result stated after `=`, if any.
        result: Option<Spanned<SysResult>>,
    },
    /// `P munmap ADDR LEN [= RESULT]`.
    Munmap {
        /// The process.
        proc: ProcName,
        /// Start address.
        addr: Spanned<u64>,
        /// Length in bytes.
        len: Spanned<u64>,
        /// The result stated after `=`, if any.
        result: Option<Spanned<SysResult>>,
    },
    /// `P mprotect ADDR LEN PROT [= RESULT]`.
    Mprotect {
        /// The process.
        proc: ProcName,
        /// Start address.
        addr: Spanned<u64>,
        /// Length in bytes.
        len: Spanned<u64>,
        /// New protection.
        prot: Spanned<Prot>,
        /// The result stated after `=`, if any.
        result: Option<Spanned<SysResult>>,
    },
    /// `P madvise ADDR LEN dontneed [= RESULT]`.
    Madvise {
        /// The process.
        proc: ProcName,
        /// Start address.
        addr: Spanned<u64>,
        /// Length in bytes.
        len: Spanned<u64>,
        /// The advice.
        advice: Spanned<Advice>,
        /// The result stated after `=`, if any.
        result: Option<Spanned<SysResult>>,
    },
    /// `P write ADDR [VALUE]`: a one-byte user store.
    Write {
        /// The process.
        proc: ProcName,
        /// The address stored to.
        addr: Spanned<u64>,
        /// The byte; absent means "some non-zero byte" (see docs/fixtures.md).
        value: Option<Spanned<u8>>,
    },
    /// `P read ADDR [= VALUE]`: a one-byte user load, optionally asserted.
    Read {
        /// The process.
        proc: ProcName,
        /// The address loaded from.
        addr: Spanned<u64>,
        /// The byte the load must return, if asserted.
        expect: Option<Spanned<u8>>,
    },
    /// `P fork C`: C becomes P's child.
    Fork {
        /// The parent.
        parent: ProcName,
        /// The new child.
        child: ProcName,
    },
    /// `P exit`.
    Exit {
        /// The process.
        proc: ProcName,
    },
    /// `P execve`: replace the address space by an empty one.
    Execve {
        /// The process.
        proc: ProcName,
    },
    /// `reclaim P ADDR [LEN] [keep-cache]`.
    Reclaim {
        /// The process whose mappings name the pages.
        proc: ProcName,
        /// Start address.
        addr: Spanned<u64>,
        /// Length in bytes; absent means one page.
        len: Option<Spanned<u64>>,
        /// Leave the written page in the swap cache instead of freeing it.
        keep_cache: bool,
    },
    /// `rmap-walk P ADDR`: what page_referenced does to the page mapped there.
    RmapWalk {
        /// The process.
        proc: ProcName,
        /// The address.
        addr: Spanned<u64>,
    },
    /// `rcu-grace-period`: freed anon_vmas may be reused from now on.
    RcuGracePeriod,
    /// `dump P [ADDR]`: print entries (no effect on state).
    Dump {
        /// The process.
        proc: ProcName,
        /// One address, or the whole address space.
        addr: Option<Spanned<u64>>,
    },
}

impl Op {
    /// The statement's keyword, for logs.
    pub const fn verb(&self) -> &'static str {
        match self {
            Op::Spawn { .. } => "spawn",
            Op::Mmap { .. } => "mmap",
            Op::Munmap { .. } => "munmap",
            Op::Mprotect { .. } => "mprotect",
            Op::Madvise { .. } => "madvise",
            Op::Write { .. } => "write",
            Op::Read { .. } => "read",
            Op::Fork { .. } => "fork",
            Op::Exit { .. } => "exit",
            Op::Execve { .. } => "execve",
            Op::Reclaim { .. } => "reclaim",
            Op::RmapWalk { .. } => "rmap-walk",
            Op::RcuGracePeriod => "rcu-grace-period",
            Op::Dump { .. } => "dump",
        }
    }
}

/// An expectation, possibly limited to some eras.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Expectation {
    /// `[e1 e2]`: only these eras check it; `None` means every era.
    pub eras: Option<Vec<EraName>>,
    /// What must hold.
    pub what: Expect,
}

impl Expectation {
    /// Whether this expectation applies when running under `era`.
    pub fn applies_to(&self, era: &str) -> bool {
        match &self.eras {
            None => true,
            Some(list) => list.iter().any(|e| e.value == era),
        }
    }
}

/// The state a PTE is claimed to be in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum PteState {
    /// `present`: Linux's pte_present (P, or PROT_NONE).
    Present,
    /// `swapped`: a swap entry.
    Swapped,
    /// `none`: the empty entry.
    None,
}

/// A yes/no field of `expect P ADDR ...`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
pub enum FlagField {
    /// `writable=`: the PTE's R/W bit.
    Writable,
    /// `dirty=`: the PTE's D bit.
    Dirty,
    /// `accessed=`: the PTE's A bit.
    Accessed,
    /// `exclusive=`: pagemap bit 56.
    Exclusive,
    /// `swapcache=`: the page's PG_swapcache.
    SwapCache,
    /// `anon-exclusive=`: PageAnonExclusive.
    AnonExclusive,
}

impl FlagField {
    /// The spelling used in scenario files.
    pub const fn as_str(self) -> &'static str {
        match self {
            FlagField::Writable => "writable",
            FlagField::Dirty => "dirty",
            FlagField::Accessed => "accessed",
            FlagField::Exclusive => "exclusive",
            FlagField::SwapCache => "swapcache",
            FlagField::AnonExclusive => "anon-exclusive",
        }
    }
}

/// A numeric field of `expect P ADDR ...`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
pub enum NumField {
    /// `mapcount=`: the page's mapcount.
    MapCount,
    /// `type=`: the swap entry's type.
    SwapType,
    /// `offset=`: the swap entry's offset.
    SwapOffset,
    /// `swapcount=`: the swap slot's count of references from entries (an
    /// addition to the contract; the swap cache's hold is not counted).
    SwapCount,
}

impl NumField {
    /// The spelling used in scenario files.
    pub const fn as_str(self) -> &'static str {
        match self {
            NumField::MapCount => "mapcount",
            NumField::SwapType => "type",
            NumField::SwapOffset => "offset",
            NumField::SwapCount => "swapcount",
        }
    }
}

/// One condition on the entry at `P ADDR`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub enum Condition {
    /// `writable=yes` and the other yes/no fields.
    Flag {
        /// Which field.
        field: FlagField,
        /// The value claimed.
        value: bool,
    },
    /// `mapcount=2`, `type=0`, `offset=1`.
    Num {
        /// Which field.
        field: NumField,
        /// The value claimed.
        value: u64,
    },
    /// `pte=VALUE`, `pte=VALUE|pfn` or `pte=VALUE^pfn`.
    Pte {
        /// The raw 64-bit value, before the frame number is mixed in.
        value: u64,
        /// How the frame number of whatever the entry maps joins `value`.
        pfn: PfnMix,
    },
    /// `same-page Q ADDR2`: both entries map the same frame.
    SamePage {
        /// The other process.
        proc: ProcName,
        /// The other address.
        addr: Spanned<u64>,
    },
}

/// How `pte=` combines the frame number the entry maps with the value written.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum PfnMix {
    /// `pte=VALUE`: the value as written.
    None,
    /// `pte=VALUE|pfn`: OR in `pfn << 12` (present entries).
    Or,
    /// `pte=VALUE^pfn`: XOR in `pfn << 12`, for entries that store their
    /// frame number inverted (L1TF-era PROT_NONE); an addition to the contract.
    Xor,
}

/// How `anon-vmas` compares the live count.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum CountCmp {
    /// `anon-vmas N`: exactly N.
    Eq,
    /// `anon-vmas <= N`: at most N (an addition, see docs/fixtures.md).
    AtMost,
    /// `anon-vmas >= N`: at least N (an addition, see docs/fixtures.md).
    AtLeast,
}

/// Oops kinds a scenario can expect.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
pub enum OopsKind {
    /// The anon_vma named by page->mapping was freed and not reused yet.
    AnonVmaUseAfterFree,
    /// The freed anon_vma's slot already holds another anon_vma.
    AnonVmaReused,
}

impl OopsKind {
    /// Every kind, in spelling order.
    pub const ALL: [OopsKind; 2] = [OopsKind::AnonVmaUseAfterFree, OopsKind::AnonVmaReused];

    /// The spelling used in scenario files.
    pub const fn as_str(self) -> &'static str {
        match self {
            OopsKind::AnonVmaUseAfterFree => "anon-vma-use-after-free",
            OopsKind::AnonVmaReused => "anon-vma-reused",
        }
    }
}

/// Invariant names the checker reports: mm's own kinds, whose `as_str` is
/// the scenario spelling.
pub use mm::InvariantKind;

/// What an expectation claims.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub enum Expect {
    /// `expect P ADDR [present|swapped|none] CONDITION...`.
    Entry {
        /// The process.
        proc: ProcName,
        /// The address.
        addr: Spanned<u64>,
        /// The state claimed, if any.
        state: Option<Spanned<PteState>>,
        /// Further conditions, in the order written (at least one of
        /// `state` and `conditions` is given).
        conditions: Vec<Spanned<Condition>>,
    },
    /// `expect segv`.
    Segv,
    /// `expect oops KIND`.
    Oops(Spanned<OopsKind>),
    /// `expect invariant NAME`.
    Invariant(Spanned<InvariantKind>),
    /// `expect anon-vmas [<=|>=] N`.
    AnonVmas {
        /// How to compare.
        cmp: CountCmp,
        /// The bound.
        count: Spanned<u64>,
    },
    /// `expect clean`.
    Clean,
    /// `expect maps P [START-END PERMS]...`: the process's VMAs exactly,
    /// as /proc/PID/maps lists them.
    Maps {
        /// The process.
        proc: ProcName,
        /// Every VMA, in the order written (which must be address order).
        vmas: Vec<Spanned<MapsVma>>,
    },
    /// `expect no-leaks`.
    NoLeaks,
}

/// One VMA of `expect maps`: `0x7f0000000000-0x7f0000002000 rw-p`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct MapsVma {
    /// vm_start.
    pub start: u64,
    /// vm_end.
    pub end: u64,
    /// The protection (`rw-` of `rw-p`).
    pub prot: Prot,
}

impl std::fmt::Display for MapsVma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = if self.prot.readable() { 'r' } else { '-' };
        let w = if self.prot.writable() { 'w' } else { '-' };
        let x = if self.prot.executable() { 'x' } else { '-' };
        write!(f, "{:#x}-{:#x} {r}{w}{x}p", self.start, self.end)
    }
}
