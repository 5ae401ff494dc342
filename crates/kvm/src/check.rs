//! The comparison behind `ptemu hwcheck`: random page-table paths and random
//! accesses, each done by ptemu's walker (`pgtable::translate` on a copy of
//! the path's entries) and by the CPU, compared on outcome, #PF error code,
//! CR2 and the value of every entry of the path afterwards (so A and D).
//!
//! Every access gets a freshly written path: four (or fewer) entries from
//! the PML4 down, each with random permission bits, random initial A/D,
//! random ignored and protection-key bits, now and then a reserved bit,
//! NX, PS at every level (so 4 KiB, 2 MiB and 1 GiB leaves) and, at a random
//! level, a non-present entry: zero, a swap entry in either of Linux's
//! layouts, a PROT_NONE entry, or junk with P clear.
//!
//! Where an access lands is read off memory: every data word holds a
//! pattern of its own physical address, a fetch target holds a stub that
//! reports its physical address, and a write stores a marker that is then
//! looked for.

use std::collections::{BTreeMap, BTreeSet};

use pgtable::{
    Access, CpuState, EntryFormat, EntryKind, Level, MemError, PAGE_SIZE, Pfn, PhysAddr, PhysMem,
    VirtAddr, entry_kind::ProtNoneEntry, entry_kind::SwapPte,
};
use phys::PhysMemory;

use crate::error::KvmError;
use crate::harness::{HARNESS_PML4_SLOT, fetch_stub};
use crate::machine::{HostFeatures, HwAccess, HwMachine, HwOutcome};

/// Physical memory of the check: 1 GiB (so a 1 GiB page at frame 0 is RAM)
/// plus the table pool and the harness above it. Pages are touched lazily.
pub const CHECK_MEM_SIZE: u64 = (1 << 30) + (4 << 20);
/// The PML4's frame, first of the table area at 1 GiB.
pub const PML4_PFN: u64 = (1 << 30) / PAGE_SIZE;
/// Table frames the random paths draw from (after the PML4).
pub const POOL_FRAMES: u64 = 128;
/// The harness's frames, 2 MiB above the table area.
pub const HARNESS_PFN: u64 = PML4_PFN + 512;
/// 4 KiB leaves point into the first 64 MiB, 2 MiB leaves into the first
/// 256 MiB, 1 GiB leaves at frame 0 with offsets below 256 MiB: the touched
/// memory stays small.
const DATA_4K_FRAMES: u64 = (64 << 20) / PAGE_SIZE;
const DATA_2M_PAGES: u64 = 128;
const DATA_SPAN: u64 = 256 << 20;
/// XORed with a word's physical address to give its contents.
pub const PATTERN_SALT: u64 = 0x5a5a_0000_0000_0000;
/// Write markers: top bits never seen in a pattern word.
const MARKER_BASE: u64 = 0xd00d_0000_0000_0000;
/// Under PVM (kvm_pvm), user-mode accesses through PML4 slot 256 fault as
/// not present whatever the tables say: the hypervisor keeps that slot for
/// itself in the guest's user-mode shadow tables. The slot is left out there.
const PVM_USER_HOLE_SLOT: u64 = 256;
/// Disagreements kept in full in the report (all are counted).
pub const MAX_KEPT: usize = 200;

/// The contents of the data word at physical address `pa`.
pub const fn pattern(pa: u64) -> u64 {
    pa ^ PATTERN_SALT
}

/// SplitMix64: small, fast, deterministic for a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What an access did, in terms both sides can produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The access completed at this physical address.
    Access {
        /// Physical address of the byte accessed.
        pa: u64,
    },
    /// A read completed but returned a word that is no address's pattern.
    ReadValue {
        /// The word read.
        value: u64,
    },
    /// A write completed but its marker was found nowhere.
    WriteLost,
    /// #PF.
    PageFault {
        /// The error code.
        error_code: u32,
        /// CR2.
        cr2: u64,
    },
    /// Another exception (CPU only).
    Exception {
        /// Vector.
        vector: u8,
        /// RIP it was raised at.
        rip: u64,
    },
    /// The access reached guest-physical memory outside RAM (CPU only).
    Mmio {
        /// Guest-physical address.
        addr: u64,
    },
    /// ptemu's walker returned something other than a translation or #PF.
    WalkerError(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Access { pa } => write!(f, "completed at pa {pa:#x}"),
            Outcome::ReadValue { value } => write!(f, "read {value:#x} (no known address)"),
            Outcome::WriteLost => write!(f, "write completed, marker not found"),
            Outcome::PageFault { error_code, cr2 } => {
                write!(
                    f,
                    "#PF error code {error_code:#x} ({}) CR2 {cr2:#x}",
                    error_code_names(*error_code)
                )
            }
            Outcome::Exception { vector, rip } => write!(f, "exception {vector} at RIP {rip:#x}"),
            Outcome::Mmio { addr } => write!(f, "MMIO exit at gpa {addr:#x}"),
            Outcome::WalkerError(e) => write!(f, "walker error: {e}"),
        }
    }
}

/// "P|W|U|RSVD|I/D|PK" names of an error code.
pub fn error_code_names(code: u32) -> String {
    let names = ["P", "W", "U", "RSVD", "I/D", "PK", "SS"];
    let v: Vec<&str> =
        names.iter().enumerate().filter(|(i, _)| code & (1 << i) != 0).map(|(_, n)| *n).collect();
    if v.is_empty() { "-".to_string() } else { v.join("|") }
}

/// One entry of an access's path, before and after both walks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    /// Its level.
    pub level: Level,
    /// Its physical address.
    pub pa: u64,
    /// Its value as written before the access.
    pub before: u64,
    /// Its value after the CPU's access.
    pub cpu_after: u64,
    /// Its value after ptemu's walk.
    pub ptemu_after: u64,
}

/// One random access and what both sides made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trial {
    /// Index in the run (0-based).
    pub index: u64,
    /// The linear address.
    pub va: u64,
    /// Read, write or fetch.
    pub access: Access,
    /// CPU state (WP, NXE, SMEP, SMAP, AC, ring).
    pub cpu: CpuState,
    /// The path's entries, PML4 first.
    pub entries: Vec<PathEntry>,
    /// ptemu's outcome.
    pub ptemu: Outcome,
    /// The CPU's outcome.
    pub hw: Outcome,
}

impl Trial {
    /// Both sides agree on the outcome and on every entry afterwards.
    pub fn agrees(&self) -> bool {
        self.ptemu == self.hw && self.entries.iter().all(|e| e.cpu_after == e.ptemu_after)
    }
}

/// Counts of what the run exercised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Named counters, in a stable order.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Coverage {
    /// Adds one to counter `k`.
    pub fn bump(&mut self, k: &'static str) {
        *self.counts.entry(k).or_default() += 1;
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The seed.
    pub seed: u64,
    /// Accesses performed.
    pub total: u64,
    /// Accesses on which both sides agreed.
    pub agreed: u64,
    /// The first [`MAX_KEPT`] disagreements.
    pub disagreements: Vec<Trial>,
    /// What the host offers the guest.
    pub features: HostFeatures,
    /// What the random accesses exercised (CPU-side outcomes and inputs).
    pub coverage: Coverage,
    /// Features not tested, each with why.
    pub not_tested: Vec<String>,
}

/// Options of a run.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// Seed of the random tables and accesses.
    pub seed: u64,
    /// Number of accesses.
    pub accesses: u64,
}

/// A sparse copy of the path's entries, for ptemu's walker: reads of words
/// never copied in return 0 (the copy holds only what the path needs).
#[derive(Clone, Debug, Default)]
struct PathCopy {
    words: BTreeMap<u64, u64>,
}

impl PhysMem for PathCopy {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let a = pa.as_u64();
        if a % 8 != 0 {
            return Err(MemError::Unaligned(pa));
        }
        if a + 8 > CHECK_MEM_SIZE {
            return Err(MemError::OutOfRange { addr: pa, size: CHECK_MEM_SIZE });
        }
        Ok(self.words.get(&a).copied().unwrap_or(0))
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> Result<(), MemError> {
        self.read_u64(pa)?;
        self.words.insert(pa.as_u64(), value);
        Ok(())
    }
    fn size(&self) -> u64 {
        CHECK_MEM_SIZE
    }
}

/// A generated access: the path's entries and what the access targets.
/// Public so that other references (QEMU's walker, in the GPL crate
/// ptemu-unicorn) check the very same accesses.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The linear address.
    pub va: u64,
    /// Read, write or fetch.
    pub access: Access,
    /// The CPU state of the access.
    pub cpu: CpuState,
    /// (level, entry pa, value), PML4 first.
    pub path: Vec<(Level, u64, u64)>,
    /// Physical address the leaf maps `va` to, when the path ends in a
    /// present leaf (whether or not the access is permitted).
    pub target: Option<u64>,
}

fn phys(raw: u64) -> Result<PhysAddr, KvmError> {
    PhysAddr::new(raw).map_err(|_| KvmError::BadMemory { size: raw, reason: "address too wide" })
}

/// The random generator of paths, accesses and CPU states: paths from the
/// PML4 at [`PML4_PFN`] through tables drawn from [`table_pool`], never
/// through the harness's PML4 slot.
#[derive(Clone, Debug)]
pub struct Generator {
    rng: Rng,
    features: HostFeatures,
}

/// The table frames' physical addresses the generator draws from.
pub fn table_pool() -> Vec<u64> {
    (1..=POOL_FRAMES).map(|i| (PML4_PFN + i) * PAGE_SIZE).collect()
}

impl Generator {
    /// A generator for `seed` producing what a CPU with `features` can run.
    pub fn new(seed: u64, features: HostFeatures) -> Self {
        Self { rng: Rng::new(seed), features }
    }

    fn pvm(&self) -> bool {
        self.features.kvm_module.as_deref() == Some("kvm_pvm")
    }

    fn amd(&self) -> bool {
        self.features.vendor == "AuthenticAMD"
    }

    fn cpu(&mut self) -> CpuState {
        let f = &self.features;
        let r = &mut self.rng;
        CpuState {
            wp: r.chance(70),
            nxe: f.nx && r.chance(80),
            smep: f.smep && r.chance(40),
            smap: f.smap && r.chance(40),
            pke: false,
            ac: r.chance(30),
            pkru: 0,
            user: r.chance(50),
            maxphyaddr: f.maxphyaddr,
        }
    }

    /// Random ignored, cache-control and key bits, and permission bits.
    fn random_flags(&mut self, level: Level, leaf: bool) -> u64 {
        let amd = self.amd();
        let r = &mut self.rng;
        let mut v = 1; // P
        if r.chance(80) {
            v |= 1 << 1;
        }
        if r.chance(75) {
            v |= 1 << 2;
        }
        if r.chance(20) {
            v |= 1 << 3;
        }
        if r.chance(20) {
            v |= 1 << 4;
        }
        if r.chance(50) {
            v |= 1 << 5;
        }
        if r.chance(if leaf { 50 } else { 20 }) {
            v |= 1 << 6;
        }
        // Bit 8: G in a leaf (ignored, CR4.PGE is off); in a table pointer
        // ignored, except in a PML4E on AMD, which reserves it there (ptemu
        // models Intel, so that case is left out on AMD hosts).
        if r.chance(if leaf { 20 } else { 5 }) && (level != Level::Pml4 || !amd) {
            v |= 1 << 8;
        }
        v |= (r.next_u64() & 0x7) << 9; // bits 11..9, ignored
        if r.chance(15) {
            v |= (r.next_u64() & 0x7f) << 52; // bits 58..52, ignored
        }
        if r.chance(15) {
            v |= (r.next_u64() & 0xf) << 59; // protection key (PKE off)
        }
        if r.chance(20) {
            v |= 1 << 63; // NX, or reserved when EFER.NXE is off
        }
        v
    }

    /// A non-present entry at `level`, in one of Linux's encodings or junk.
    fn non_present(&mut self, level: Level) -> Result<u64, KvmError> {
        let r = &mut self.rng;
        let bad = |_| KvmError::UnexpectedExit("entry encoding refused a generated value".into());
        Ok(match r.below(6) {
            0 => 0,
            1 | 2 => {
                let format = if r.chance(50) { EntryFormat::L1tf } else { EntryFormat::Classic };
                let max = match format {
                    EntryFormat::L1tf => pgtable::entry_kind::MAX_L1TF_SWAP_OFFSET,
                    EntryFormat::Classic => (1 << 40) - 1,
                };
                let swp = SwapPte {
                    swap_type: r.below(32) as u8,
                    offset: if r.chance(50) { r.below(1 << 20) } else { r.below(max) },
                    exclusive: format == EntryFormat::L1tf && r.chance(50),
                    soft_dirty: format == EntryFormat::L1tf && r.chance(30),
                    uffd_wp: format == EntryFormat::L1tf && r.chance(20),
                };
                match pgtable::entry_kind::encode_swap(swp, format) {
                    // The one entry of each format that encodes as empty.
                    Err(pgtable::EntryError::SwapEncodesAsNone { .. }) => 0,
                    r => r.map_err(bad)?,
                }
            }
            3 | 4 => {
                let format = if r.chance(70) { EntryFormat::L1tf } else { EntryFormat::Classic };
                let flags = pgtable::EntryFlags::from_bits_retain(
                    (1 << 8) | (r.next_u64() & 0x66) | if r.chance(30) { 1 << 63 } else { 0 },
                );
                let pfn = Pfn(r.below(DATA_4K_FRAMES));
                let kind = EntryKind::ProtNone(ProtNoneEntry { pfn, flags });
                pgtable::entry_kind::encode(&kind, Level::Pt, format).map_err(bad)?
            }
            _ => {
                let _ = level;
                r.next_u64() & !1
            }
        })
    }

    /// A reserved bit for a present entry at `level` (large: a PS leaf).
    fn reserved_bit(&mut self, level: Level, large: bool) -> u64 {
        let r = &mut self.rng;
        let maxphy = u64::from(self.features.maxphyaddr);
        let high = 1 << (maxphy + r.below(52 - maxphy.min(51)));
        match (level, large, r.below(2)) {
            (Level::Pml4, _, 0) => 1 << 7,
            (Level::Pdpt, true, 0) => 1 << (13 + r.below(17)),
            (Level::Pd, true, 0) => 1 << (13 + r.below(8)),
            _ => high,
        }
    }

    /// The next random access and its path.
    pub fn plan(&mut self, pool: &[u64]) -> Result<Plan, KvmError> {
        let cpu = self.cpu();
        let access = match self.rng.below(3) {
            0 => Access::Read,
            1 => Access::Write,
            _ => Access::Fetch,
        };
        let slot = loop {
            let s = self.rng.below(512);
            if s != HARNESS_PML4_SLOT as u64 && !(s == PVM_USER_HOLE_SLOT && self.pvm()) {
                break s;
            }
        };
        // Leaf size: 4 KiB half of the time, else 2 MiB or 1 GiB.
        let leaf_level = match self.rng.below(4) {
            0 | 1 => Level::Pt,
            3 if self.features.gbpages => Level::Pdpt,
            _ => Level::Pd,
        };
        let (page_bytes, frame) = match leaf_level {
            Level::Pt => (PAGE_SIZE, self.rng.below(DATA_4K_FRAMES) * PAGE_SIZE),
            Level::Pd => (2 << 20, self.rng.below(DATA_2M_PAGES) * (2 << 20)),
            _ => (1 << 30, 0),
        };
        // The offset in the page: 8-aligned; in a 1 GiB page below DATA_SPAN.
        let span = page_bytes.min(DATA_SPAN);
        let offset = self.rng.below(span / 8) * 8;
        let low = self.rng.next_u64() & ((1 << 39) - 1) & !(page_bytes - 1);
        let mut va = (slot << 39) | low | offset;
        if slot >= 256 {
            va |= 0xffff_0000_0000_0000;
        }
        let vaddr =
            VirtAddr::new(va).map_err(|_| KvmError::ReservedAddress(VirtAddr::new_truncate(va)))?;
        // Distinct table frames for the three lower tables.
        let mut tables = [0u64; 3];
        for i in 0..3 {
            tables[i] = loop {
                let f = pool[self.rng.below(pool.len() as u64) as usize];
                if !tables[..i].contains(&f) {
                    break f;
                }
            };
        }
        let mut path = Vec::with_capacity(4);
        let mut table = PML4_PFN * PAGE_SIZE;
        let mut target = None;
        let mut level = Level::Pml4;
        let mut next = 0;
        loop {
            let entry_pa = table + 8 * vaddr.index(level) as u64;
            if self.rng.chance(6) {
                path.push((level, entry_pa, self.non_present(level)?));
                break;
            }
            let is_leaf = level == leaf_level;
            let mut v = self.random_flags(level, is_leaf);
            if is_leaf {
                v |= frame;
                if level != Level::Pt {
                    v |= 1 << 7; // PS
                    if self.rng.chance(15) {
                        v |= 1 << 12; // PAT of a large page
                    }
                } else if self.rng.chance(15) {
                    v |= 1 << 7; // PAT of a 4 KiB page
                }
            } else {
                v |= tables[next];
            }
            if self.rng.chance(4) {
                v |= self.reserved_bit(level, is_leaf && level != Level::Pt);
            }
            path.push((level, entry_pa, v));
            if is_leaf {
                target = Some(frame + (va & (page_bytes - 1)));
                break;
            }
            table = tables[next];
            next += 1;
            match level.next_lower() {
                Some(l) => level = l,
                None => break,
            }
        }
        Ok(Plan { va, access, cpu, path, target })
    }
}

/// The walker under test: `pgtable::translate`'s signature over any memory.
pub type Walker<'a> = dyn FnMut(
        &mut dyn PhysMem,
        PhysAddr,
        VirtAddr,
        Access,
        &CpuState,
    ) -> Result<pgtable::Translation, pgtable::Fault>
    + 'a;

/// ptemu's side of a plan: `pgtable::translate` over a copy of the path
/// (the PML4 at [`PML4_PFN`]); its outcome and each path entry's value
/// afterwards, PML4 first.
pub fn ptemu_side(plan: &Plan) -> (Outcome, Vec<u64>) {
    let mut copy = PathCopy::default();
    for (_, at, v) in &plan.path {
        copy.words.insert(*at, *v);
    }
    let out = match VirtAddr::new(plan.va) {
        Err(e) => Outcome::WalkerError(e.to_string()),
        Ok(va) => {
            match pgtable::translate(&mut copy, Pfn(PML4_PFN).addr(), va, plan.access, &plan.cpu) {
                Ok(t) => Outcome::Access { pa: t.pa.as_u64() },
                Err(pgtable::Fault::PageFault(pf)) => {
                    Outcome::PageFault { error_code: pf.error_code.bits(), cr2: pf.addr.as_u64() }
                }
                Err(e) => Outcome::WalkerError(e.to_string()),
            }
        }
    };
    let after =
        plan.path.iter().map(|(_, at, _)| copy.words.get(at).copied().unwrap_or(0)).collect();
    (out, after)
}

/// Runs the comparison of `pgtable::translate` against the CPU.
pub fn run(opts: &CheckOptions) -> Result<CheckReport, KvmError> {
    run_with_walker(opts, &mut |mem, cr3, va, access, cpu| {
        pgtable::translate(mem, cr3, va, access, cpu)
    })
}

/// Runs the comparison with another walker in ptemu's place (to show the
/// check catches a wrong one).
pub fn run_with_walker(
    opts: &CheckOptions,
    walker: &mut Walker<'_>,
) -> Result<CheckReport, KvmError> {
    let mem = PhysMemory::new(CHECK_MEM_SIZE)
        .map_err(|_| KvmError::BadMemory { size: CHECK_MEM_SIZE, reason: "cannot map it" })?;
    let mut m = HwMachine::new(mem, Pfn(PML4_PFN).addr(), Pfn(HARNESS_PFN))?;
    m.map_table_window(Pfn(PML4_PFN), 1 + POOL_FRAMES)?;
    let features = m.features().clone();
    let pool = table_pool();
    let mut generator = Generator::new(opts.seed, features.clone());
    let mut filled: BTreeSet<u64> = BTreeSet::new();
    let mut report = CheckReport {
        seed: opts.seed,
        total: 0,
        agreed: 0,
        disagreements: Vec::new(),
        features: features.clone(),
        coverage: Coverage::default(),
        not_tested: not_tested(&features),
    };
    for index in 0..opts.accesses {
        let plan = generator.plan(&pool)?;
        let trial = run_one(&mut m, &plan, index, &mut filled, walker)?;
        count(&mut report.coverage, &plan, &trial);
        report.total += 1;
        if trial.agrees() {
            report.agreed += 1;
        } else if report.disagreements.len() < MAX_KEPT {
            report.disagreements.push(trial);
        }
    }
    Ok(report)
}

/// The CPU's side of hwcheck, for plans generated elsewhere (the
/// three-way check of ptemu, KVM and QEMU in ptemu-unicorn): the same
/// memory layout, harness and comparison as [`run`].
#[derive(Debug)]
pub struct HwSide {
    m: HwMachine,
    filled: BTreeSet<u64>,
}

impl HwSide {
    /// A VM with hwcheck's memory, PML4 and harness.
    pub fn new() -> Result<Self, KvmError> {
        let mem = PhysMemory::new(CHECK_MEM_SIZE)
            .map_err(|_| KvmError::BadMemory { size: CHECK_MEM_SIZE, reason: "cannot map it" })?;
        let mut m = HwMachine::new(mem, Pfn(PML4_PFN).addr(), Pfn(HARNESS_PFN))?;
        m.map_table_window(Pfn(PML4_PFN), 1 + POOL_FRAMES)?;
        Ok(Self { m, filled: BTreeSet::new() })
    }

    /// What the host offers the guest.
    pub fn features(&self) -> &HostFeatures {
        self.m.features()
    }

    /// Runs `plan` on the CPU and on ptemu's walker.
    pub fn trial(&mut self, plan: &Plan, index: u64) -> Result<Trial, KvmError> {
        run_one(&mut self.m, plan, index, &mut self.filled, &mut |mem, cr3, va, access, cpu| {
            pgtable::translate(mem, cr3, va, access, cpu)
        })
    }
}

fn not_tested(f: &HostFeatures) -> Vec<String> {
    let mut v: Vec<String> =
        f.missing().iter().map(|n| format!("{n}: the host does not offer it to guests")).collect();
    if f.pku {
        v.push("protection keys: the harness has no WRPKRU step yet".into());
    }
    if f.vendor == "AuthenticAMD" {
        v.push("bit 8 of a PML4E: reserved on AMD, ignored on Intel; ptemu models Intel, so it is not generated".into());
    }
    if f.kvm_module.as_deref() == Some("kvm_pvm") {
        v.push("PML4 slot 256: under PVM user accesses there fault not-present whatever the tables hold (the hypervisor's), so it is not generated".into());
    }
    v.push("global pages (CR4.PGE off, so G is ignored and every access walks)".into());
    v.push(
        "5-level paging (LA57), shadow-stack accesses (SS), implicit supervisor accesses".into(),
    );
    v
}

fn fill_page(mem: &PhysMemory, filled: &mut BTreeSet<u64>, pa: u64) -> Result<(), KvmError> {
    let page = pa & !(PAGE_SIZE - 1);
    if filled.insert(page) {
        let mut w = mem;
        for off in (0..PAGE_SIZE).step_by(8) {
            w.write_u64(phys(page + off)?, pattern(page + off))?;
        }
    }
    Ok(())
}

fn run_one(
    m: &mut HwMachine,
    plan: &Plan,
    index: u64,
    filled: &mut BTreeSet<u64>,
    walker: &mut Walker<'_>,
) -> Result<Trial, KvmError> {
    let va = VirtAddr::new(plan.va)
        .map_err(|_| KvmError::ReservedAddress(VirtAddr::new_truncate(plan.va)))?;
    let marker = MARKER_BASE | index;
    // Data at the target: the pattern, and for a fetch the reporting stub.
    if let Some(t) = plan.target {
        fill_page(m.mem(), filled, t)?;
        if plan.access == Access::Fetch {
            let mut w: &PhysMemory = m.mem();
            w.write_u64(phys(t)?, fetch_stub(t as u32))?;
        }
    }
    // ptemu's walk, on a copy of the path.
    let mut copy = PathCopy::default();
    for (_, at, v) in &plan.path {
        copy.words.insert(*at, *v);
    }
    let cr3 = m.cr3();
    let ptemu = match walker(&mut copy, cr3, va, plan.access, &plan.cpu) {
        Ok(t) => Outcome::Access { pa: t.pa.as_u64() },
        Err(pgtable::Fault::PageFault(pf)) => {
            Outcome::PageFault { error_code: pf.error_code.bits(), cr2: pf.addr.as_u64() }
        }
        Err(e) => Outcome::WalkerError(e.to_string()),
    };
    // The CPU's.
    let writes: Vec<(PhysAddr, u64)> =
        plan.path.iter().map(|(_, at, v)| Ok((phys(*at)?, *v))).collect::<Result<_, KvmError>>()?;
    let req = HwAccess { va, access: plan.access, cpu: plan.cpu, write_value: marker };
    let hw_raw = m.access(&req, &writes)?;
    let mem = m.mem();
    let hw = match hw_raw {
        HwOutcome::Done { value } => match plan.access {
            Access::Read => {
                let pa = value ^ PATTERN_SALT;
                if pa < CHECK_MEM_SIZE && pa % 8 == 0 && filled.contains(&(pa & !(PAGE_SIZE - 1))) {
                    Outcome::Access { pa }
                } else {
                    Outcome::ReadValue { value }
                }
            }
            Access::Fetch => Outcome::Access { pa: value & 0xffff_ffff },
            Access::Write => find_marker(mem, filled, plan.target, marker)?,
        },
        HwOutcome::PageFault { error_code, cr2 } => Outcome::PageFault { error_code, cr2 },
        HwOutcome::Exception { vector, rip } => Outcome::Exception { vector, rip },
        HwOutcome::Mmio { addr } => Outcome::Mmio { addr },
    };
    // Restore the data word a write or fetch stub changed.
    let mut w = mem;
    if let Outcome::Access { pa } = hw {
        if plan.access == Access::Write && pa % 8 == 0 {
            w.write_u64(phys(pa)?, pattern(pa))?;
        }
    }
    if let (Some(t), Access::Fetch) = (plan.target, plan.access) {
        w.write_u64(phys(t)?, pattern(t))?;
    }
    // The path, before and after on both sides.
    let mut entries = Vec::with_capacity(plan.path.len());
    for (level, at, before) in &plan.path {
        let p = phys(*at)?;
        entries.push(PathEntry {
            level: *level,
            pa: *at,
            before: *before,
            cpu_after: mem.read_u64(p)?,
            ptemu_after: copy.read_u64(p)?,
        });
    }
    Ok(Trial { index, va: plan.va, access: plan.access, cpu: plan.cpu, entries, ptemu, hw })
}

fn find_marker(
    mem: &PhysMemory,
    filled: &BTreeSet<u64>,
    hint: Option<u64>,
    marker: u64,
) -> Result<Outcome, KvmError> {
    if let Some(t) = hint {
        if mem.read_u64(phys(t)?)? == marker {
            return Ok(Outcome::Access { pa: t });
        }
    }
    for page in filled {
        for off in (0..PAGE_SIZE).step_by(8) {
            if mem.read_u64(phys(page + off)?)? == marker {
                return Ok(Outcome::Access { pa: page + off });
            }
        }
    }
    Ok(Outcome::WriteLost)
}

/// Counts what `plan` exercised and what the reference did with it.
pub fn count(c: &mut Coverage, plan: &Plan, t: &Trial) {
    c.bump(match plan.access {
        Access::Read => "access: read",
        Access::Write => "access: write",
        Access::Fetch => "access: fetch",
    });
    c.bump(if plan.cpu.user { "ring: user" } else { "ring: supervisor" });
    for (on, name) in [
        (plan.cpu.wp, "CR0.WP on"),
        (plan.cpu.nxe, "EFER.NXE on"),
        (plan.cpu.smep, "CR4.SMEP on"),
        (plan.cpu.smap, "CR4.SMAP on"),
        (plan.cpu.ac && plan.cpu.smap && !plan.cpu.user, "SMAP lifted by EFLAGS.AC"),
    ] {
        if on {
            c.bump(name);
        }
    }
    if let Some((level, _, v)) = plan.path.last() {
        if v & 1 == 0 {
            c.bump(if *v == 0 {
                "path ends: none entry"
            } else {
                "path ends: non-present entry (swap, PROT_NONE, junk)"
            });
        } else {
            c.bump(match level {
                Level::Pt => "path ends: 4 KiB leaf",
                Level::Pd => "path ends: 2 MiB leaf",
                Level::Pdpt => "path ends: 1 GiB leaf",
                Level::Pml4 => "path ends: PML4 entry",
            });
        }
    }
    match &t.hw {
        Outcome::Access { .. } => c.bump("CPU: access completed"),
        Outcome::PageFault { error_code, .. } => {
            if error_code & 0x8 != 0 {
                c.bump("CPU: #PF reserved bit");
            } else if error_code & 0x1 != 0 {
                c.bump("CPU: #PF protection");
            } else {
                c.bump("CPU: #PF not present");
            }
        }
        _ => c.bump("CPU: other"),
    }
    let set_a = t.entries.iter().any(|e| e.cpu_after & 0x20 != 0 && e.before & 0x20 == 0);
    let set_d = t.entries.iter().any(|e| e.cpu_after & 0x40 != 0 && e.before & 0x40 == 0);
    if set_a {
        c.bump("CPU set an Accessed bit");
    }
    if set_d {
        c.bump("CPU set a Dirty bit");
    }
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::Fetch => "fetch",
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Pml4 => "PML4E",
        Level::Pdpt => "PDPTE",
        Level::Pd => "PDE",
        Level::Pt => "PTE",
    }
}

impl std::fmt::Display for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.cpu;
        writeln!(
            f,
            "access #{}: {} {} at {:#x} (CR0.WP={} EFER.NXE={} CR4.SMEP={} CR4.SMAP={} EFLAGS.AC={})",
            self.index,
            if c.user { "user" } else { "supervisor" },
            access_name(self.access),
            self.va,
            u8::from(c.wp),
            u8::from(c.nxe),
            u8::from(c.smep),
            u8::from(c.smap),
            u8::from(c.ac),
        )?;
        for e in &self.entries {
            let mark = if e.cpu_after == e.ptemu_after { "" } else { "   <-- differs" };
            writeln!(
                f,
                "  {:<5} @ {:#011x}: before {:#018x}  cpu {:#018x}  ptemu {:#018x}{mark}",
                level_name(e.level),
                e.pa,
                e.before,
                e.cpu_after,
                e.ptemu_after
            )?;
        }
        writeln!(f, "  cpu:   {}", self.hw)?;
        write!(f, "  ptemu: {}", self.ptemu)
    }
}
