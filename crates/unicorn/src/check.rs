//! `ptemu-unicorn check`: QEMU's x86 page walker (Unicorn with
//! `TlbType::CPU`) against ptemu's, on the random paths and accesses of
//! `ptemu hwcheck` (`kvm::check::Generator`, the same generator and the
//! same comparison domain: outcome, #PF error code, CR2, every path entry
//! afterwards).
//!
//! The tables live in Unicorn's guest-physical memory (the check's
//! `PhysMemory`, mapped with `mem_map_ptr`); CR3, CR0.WP, CR4.PAE and
//! EFER.NXE/SCE are set with `reg_write`. A small harness, mapped through
//! PML4 slot 511 as hwcheck's is, holds the access routines: a read
//! (`mov rax, [rdi]`), a write (`mov [rdi], rsi`) and a fetch (`jmp rdi`
//! to a stub `mov eax, tag; ud2` at the target, reporting its physical
//! address). User-mode accesses enter ring 3 by `sysretq` (Unicorn's
//! 64-bit segment-register writes set only the selector, never the CPL).
//!
//! Unicorn does not deliver exceptions through the guest's IDT: it stops
//! and calls the interrupt hook with the vector. CR2 is a register; the
//! #PF error code is QEMU's `env->error_code`, which Unicorn's API does not
//! expose but its saved CPU context holds: its offset is found once per run
//! by calibration (faults with known, distinct error codes) and read from
//! the context after each #PF.
//!
//! QEMU's known deviation from the SDM: its walker sets Accessed on each
//! paging-structure entry as it descends, before the checks below it, so a
//! faulting walk can leave A set on upper levels where the CPU (and ptemu)
//! leave them unchanged. Such trials are classified as QEMU's, with the
//! entries as evidence, and counted separately.

use std::collections::{BTreeMap, BTreeSet};

use kvm::HostFeatures;
use kvm::check::{Coverage, Generator, Outcome, PathEntry, Plan, Trial, pattern, table_pool};
use pgtable::{Access, Level, PAGE_SIZE, PhysAddr, PhysMem};
use phys::PhysMemory;
use unicorn_engine::{Arch, Mode, Prot as UcProt, RegisterX86, TlbType, Unicorn};

use crate::error::UnicornError;

/// Physical memory of the check: hwcheck's layout (1 GiB of data, the
/// table area and the harness above it).
pub const MEM_SIZE: u64 = kvm::check::CHECK_MEM_SIZE;
const HARNESS: u64 = kvm::check::HARNESS_PFN * PAGE_SIZE;
/// The harness's linear base: PML4 slot 511, PDPT/PD/PT index 0.
const CODE_VA: u64 = 0xffff_ff80_0000_0000;
const READ_OFF: u64 = 0x00;
const WRITE_OFF: u64 = 0x10;
const FETCH_OFF: u64 = 0x20;
const SYSRET_OFF: u64 = 0x30;
/// Write markers (as hwcheck's): top bits never in a pattern word.
const MARKER_BASE: u64 = 0xd00d_0000_0000_0000;
/// Disagreements kept in full.
pub const MAX_KEPT: usize = 200;

/// How a trial came out.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Class {
    /// Same outcome, same entries afterwards.
    Agree,
    /// Same outcome (a fault), but QEMU set Accessed on paging-structure
    /// entries above the level that faulted: QEMU's deviation from the SDM.
    QemuAccessedBeforeFault,
    /// Same outcome (a protection fault on a 1 GiB page), but QEMU set
    /// Accessed on the PDPTE leaf: its walker sets A on the PDPTE before
    /// looking at PS, so a 1 GiB leaf gets A before the permission check.
    QemuAccessedOn1GLeafBeforeFault,
    /// Anything else: a disagreement nobody has explained.
    Unexplained,
}

impl Class {
    /// The report's name of the class.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Agree => "agree",
            Class::QemuAccessedBeforeFault => {
                "qemu: Accessed set on upper levels before a fault (known QEMU deviation)"
            }
            Class::QemuAccessedOn1GLeafBeforeFault => {
                "qemu: Accessed set on a 1 GiB leaf before its protection fault (same deviation)"
            }
            Class::Unexplained => "unexplained",
        }
    }
}

/// Options of a run.
#[derive(Clone, Copy, Debug)]
pub struct QemuCheckOptions {
    /// Seed of the random tables and accesses.
    pub seed: u64,
    /// Number of accesses.
    pub accesses: u64,
    /// Also run every access on the CPU through KVM (hwcheck's harness)
    /// when /dev/kvm is usable, for a three-way table.
    pub kvm: bool,
}

/// How KVM's run of a trial compared with ptemu's.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum KvmClass {
    /// Same outcome, same entries afterwards.
    Agree,
    /// Not run on KVM: the plan was made for QEMU's 40-bit MAXPHYADDR and
    /// a present entry has a bit between 40 and the host's MAXPHYADDR,
    /// reserved for QEMU and ptemu, an address bit (beyond the guest's
    /// RAM) for the host. A difference of model, not of walker.
    MaxPhyAddrModel,
    /// The host offers guests no 1 GiB pages (CPUID PDPE1GB clear), so
    /// the CPU faults with RSVD on a PS PDPTE, which QEMU's walker and
    /// ptemu's map. A difference of model, not of walker.
    NoGbPagesModel,
    /// Anything else.
    Unexplained,
}

impl KvmClass {
    /// The report's name of the class.
    pub const fn name(self) -> &'static str {
        match self {
            KvmClass::Agree => "agree",
            KvmClass::MaxPhyAddrModel => {
                "not run: bit 40..MAXPHYADDR (reserved in QEMU's model only)"
            }
            KvmClass::NoGbPagesModel => "model: the host offers no 1 GiB pages (CPU: RSVD)",
            KvmClass::Unexplained => "unexplained",
        }
    }
}

/// The same accesses on ptemu, KVM and QEMU.
#[derive(Clone, Debug)]
pub struct ThreeWay {
    /// The host's MAXPHYADDR and KVM module.
    pub host: String,
    /// Trials per (QEMU-vs-ptemu class, KVM-vs-ptemu class).
    pub table: BTreeMap<(Class, KvmClass), u64>,
    /// The first [`MAX_KEPT`] trials where KVM and ptemu differ.
    pub kvm_disagreements: Vec<(KvmClass, Trial)>,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct QemuCheckReport {
    /// The seed.
    pub seed: u64,
    /// Accesses performed.
    pub total: u64,
    /// Accesses on which both sides agreed on everything.
    pub agreed: u64,
    /// Trials per class.
    pub classes: BTreeMap<Class, u64>,
    /// The first [`MAX_KEPT`] trials that did not agree, with their class.
    pub disagreements: Vec<(Class, Trial)>,
    /// What the accesses exercised (QEMU-side outcomes).
    pub coverage: Coverage,
    /// The CPU features the generator was told QEMU's CPU model has.
    pub features: HostFeatures,
    /// The offset of `error_code` in Unicorn's saved context, as calibrated.
    pub error_code_offset: usize,
    /// What is not tested, and why.
    pub not_tested: Vec<String>,
    /// The three-way table, when KVM was asked for and usable.
    pub three_way: Option<ThreeWay>,
    /// Why KVM was not used, when it was asked for.
    pub kvm_unavailable: Option<String>,
}

/// What the generator may use on Unicorn's default x86-64 CPU model
/// (QEMU's qemu64: NX, no SMEP, SMAP or PKU; TCG's 40 physical address
/// bits). 1 GiB pages are generated: QEMU's walker accepts a PS PDPTE
/// whatever CPUID says, as ptemu's does.
pub fn qemu_features() -> HostFeatures {
    HostFeatures {
        vendor: "GenuineIntel".into(),
        maxphyaddr: 40,
        nx: true,
        gbpages: true,
        smep: false,
        smap: false,
        pku: false,
        kvm_module: None,
    }
}

struct Harness {
    uc: Unicorn<'static, Stop>,
    mem: PhysMemory,
    base_ctx: unicorn_engine::Context,
    err_off: usize,
}

/// Why the last `emu_start` stopped (set by the interrupt hook).
#[derive(Default)]
struct Stop {
    vector: Option<u32>,
}

fn uerr(what: &'static str) -> impl Fn(unicorn_engine::uc_error) -> UnicornError {
    move |e| UnicornError::Unicorn { what, err: format!("{e:?}") }
}

fn pa(a: u64) -> Result<PhysAddr, UnicornError> {
    PhysAddr::new(a).map_err(|e| UnicornError::Walk(e.to_string()))
}

impl Harness {
    fn new() -> Result<Self, UnicornError> {
        let mem = PhysMemory::new(MEM_SIZE).map_err(|e| UnicornError::Walk(e.to_string()))?;
        let mut uc = Unicorn::new_with_data(Arch::X86, Mode::MODE_64, Stop::default())
            .map_err(uerr("uc_open"))?;
        uc.ctl_set_tlb_type(TlbType::CPU).map_err(uerr("TLB type CPU"))?;
        map_check_memory(&mut uc, &mem)?;
        uc.add_intr_hook(|uc: &mut Unicorn<'_, Stop>, intno: u32| {
            uc.get_data_mut().vector = Some(intno);
            let _ = uc.emu_stop();
        })
        .map_err(uerr("interrupt hook"))?;
        // ud2 (#UD) ends a fetch stub; Unicorn reports it as an invalid
        // instruction rather than as interrupt 6.
        uc.add_insn_invalid_hook(|uc: &mut Unicorn<'_, Stop>| {
            uc.get_data_mut().vector = Some(6);
            false
        })
        .map_err(uerr("invalid-instruction hook"))?;
        // The harness's tables: PML4[511] -> PDPT -> PD -> PT, whose entry 0
        // maps the code page (user, read-only, executable).
        let mut m = &mem;
        let f = |i: u64| HARNESS + i * PAGE_SIZE;
        let table = 0x27; // P|RW|US|A
        m.write_u64(pa(kvm::check::PML4_PFN * PAGE_SIZE + 8 * 511)?, f(0) | table)?;
        m.write_u64(pa(f(0))?, f(1) | table)?;
        m.write_u64(pa(f(1))?, f(2) | table)?;
        m.write_u64(pa(f(2))?, f(3) | 0x25)?; // P|US|A
        let mut code = vec![0x90u8; PAGE_SIZE as usize];
        let put = |code: &mut Vec<u8>, off: u64, b: &[u8]| {
            code[off as usize..off as usize + b.len()].copy_from_slice(b);
        };
        put(&mut code, READ_OFF, &[0x48, 0x8b, 0x07]); // mov rax, [rdi]
        put(&mut code, WRITE_OFF, &[0x48, 0x89, 0x37]); // mov [rdi], rsi
        put(&mut code, FETCH_OFF, &[0xff, 0xe7]); // jmp rdi
        put(&mut code, SYSRET_OFF, &[0x48, 0x0f, 0x07]); // sysretq
        mem.write_bytes(pa(f(3))?, &code).map_err(|e| UnicornError::Walk(e.to_string()))?;
        // STAR: sysret loads CS = 0x23, SS = 0x1b (ring 3).
        write_msr(&mut uc, 0xc000_0081, 0x0010_0000_0000_0000)?;
        let base_ctx = uc.context_alloc().map_err(uerr("context"))?;
        let mut h = Harness { uc, mem, base_ctx, err_off: 0 };
        h.uc.context_save(&mut h.base_ctx).map_err(uerr("context save"))?;
        Ok(h)
    }

    /// Runs `plan` on QEMU: writes its path, sets the CPU state, runs the
    /// routine. Returns (vector it stopped with, RAX, CR2, error code at
    /// the calibrated offset).
    fn run(
        &mut self,
        plan: &Plan,
        marker: u64,
    ) -> Result<(Option<u32>, u64, u64, u32), UnicornError> {
        let mut m = &self.mem;
        for (_, at, v) in &plan.path {
            m.write_u64(pa(*at)?, *v)?;
        }
        let uc = &mut self.uc;
        uc.context_restore(&self.base_ctx).map_err(uerr("context restore"))?;
        uc.get_data_mut().vector = None;
        let c = &plan.cpu;
        let cr3 = kvm::check::PML4_PFN * PAGE_SIZE;
        let efer = (1 << 0) | (1 << 8) | (1 << 10) | if c.nxe { 1 << 11 } else { 0 };
        write_msr(uc, 0xc000_0080, efer)?;
        uc.reg_write(RegisterX86::CR3, cr3).map_err(uerr("CR3"))?;
        uc.reg_write(RegisterX86::CR4, 1 << 5).map_err(uerr("CR4"))?;
        let cr0 = (1 << 0) | (1 << 31) | if c.wp { 1 << 16 } else { 0 };
        uc.reg_write(RegisterX86::CR0, cr0).map_err(uerr("CR0"))?;
        uc.ctl_flush_tlb().map_err(uerr("TLB flush"))?;
        uc.reg_write(RegisterX86::RDI, plan.va).map_err(uerr("RDI"))?;
        uc.reg_write(RegisterX86::RSI, marker).map_err(uerr("RSI"))?;
        uc.reg_write(RegisterX86::RAX, 0).map_err(uerr("RAX"))?;
        uc.reg_write(RegisterX86::CR2, 0).map_err(uerr("CR2"))?;
        let routine = match plan.access {
            Access::Read => READ_OFF,
            Access::Write => WRITE_OFF,
            Access::Fetch => FETCH_OFF,
        };
        if plan.access == Access::Fetch {
            // The stub at the target changes between trials behind QEMU's
            // back: drop every translated block.
            uc.ctl_flush_tb().map_err(uerr("TB flush"))?;
        }
        let until = CODE_VA + routine + 3;
        let begin = if c.user {
            uc.reg_write(RegisterX86::RCX, CODE_VA + routine).map_err(uerr("RCX"))?;
            uc.reg_write(RegisterX86::R11, 0x2).map_err(uerr("R11"))?;
            CODE_VA + SYSRET_OFF
        } else {
            CODE_VA + routine
        };
        let _ = uc.emu_start(begin, until, 0, 64);
        let vector = uc.get_data().vector;
        let rax = uc.reg_read(RegisterX86::RAX).map_err(uerr("RAX"))?;
        let cr2 = uc.reg_read(RegisterX86::CR2).map_err(uerr("CR2"))?;
        let code = if vector == Some(14) { self.context_i32(self.err_off)? } else { 0 };
        Ok((vector, rax, cr2, code as u32))
    }

    /// The CPU context Unicorn saves, as bytes.
    #[allow(unsafe_code)]
    fn context_bytes(&mut self) -> Result<Vec<u8>, UnicornError> {
        let h = self.uc.get_handle();
        let mut ctx: *mut unicorn_engine::uc_context = std::ptr::null_mut();
        // SAFETY: `h` is this harness's live engine; uc_context_alloc
        // writes a pointer to a buffer of uc_context_size(h) bytes, which
        // uc_context_save fills; it is read as bytes while it lives and
        // freed once, here.
        unsafe {
            let size = unicorn_engine::uc_context_size(h);
            let e = unicorn_engine::uc_context_alloc(h, &raw mut ctx);
            if e != unicorn_engine::uc_error::OK || ctx.is_null() {
                return Err(uerr("context alloc")(e));
            }
            let e = unicorn_engine::uc_context_save(h, ctx);
            let bytes = std::slice::from_raw_parts(ctx.cast::<u8>(), size).to_vec();
            unicorn_engine::uc_context_free(ctx);
            if e != unicorn_engine::uc_error::OK {
                return Err(uerr("context save")(e));
            }
            Ok(bytes)
        }
    }

    fn context_i32(&mut self, off: usize) -> Result<i32, UnicornError> {
        let b = self.context_bytes()?;
        b.get(off..off + 4)
            .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or_else(|| UnicornError::Kernel(format!("context shorter than offset {off}")))
    }

    /// Finds where Unicorn's saved context holds `error_code`: runs
    /// faults with known, distinct error codes and keeps the 4-byte
    /// offsets that held each one.
    fn calibrate(&mut self) -> Result<usize, UnicornError> {
        use pgtable::CpuState;
        let pml4 = kvm::check::PML4_PFN * PAGE_SIZE;
        let pool = table_pool();
        // One path: PML4[1] -> PDPT -> PD -> PT -> leaf, all user-writable,
        // the leaf set per case.
        let va = 1u64 << 39;
        let (t1, t2, t3) = (pool[0], pool[1], pool[2]);
        let cpu = |user, wp| CpuState { user, wp, nxe: true, ..CpuState::default() };
        let leaf_ro_nx = (5 << 20) | 0x8000_0000_0000_0025; // P|US|A|NX, read-only
        let cases: [(u64, Access, CpuState, u32); 5] = [
            (0, Access::Read, cpu(true, true), 0x4),
            (0, Access::Write, cpu(true, true), 0x6),
            (leaf_ro_nx, Access::Write, cpu(true, true), 0x7),
            (leaf_ro_nx, Access::Fetch, cpu(true, true), 0x15),
            (leaf_ro_nx, Access::Write, cpu(false, true), 0x3),
        ];
        let mut candidates: Option<BTreeSet<usize>> = None;
        for (leaf, access, cpu, want) in cases {
            let plan = Plan {
                va,
                access,
                cpu,
                path: vec![
                    (Level::Pml4, pml4 + 8, t1 | 0x27),
                    (Level::Pdpt, t1, t2 | 0x27),
                    (Level::Pd, t2, t3 | 0x27),
                    (Level::Pt, t3, leaf),
                ],
                target: None,
            };
            let (vector, _, _, _) = self.run(&plan, 0)?;
            if vector != Some(14) {
                return Err(UnicornError::Kernel(format!(
                    "calibration: expected #PF for {access:?} with leaf {leaf:#x}, got vector {vector:?}"
                )));
            }
            let b = self.context_bytes()?;
            let here: BTreeSet<usize> = (0..b.len().saturating_sub(3))
                .step_by(4)
                .filter(|&o| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) == want)
                .collect();
            candidates = Some(match candidates {
                None => here,
                Some(c) => c.intersection(&here).copied().collect(),
            });
        }
        let c = candidates.unwrap_or_default();
        match c.len() {
            1 => Ok(*c.iter().next().unwrap_or(&0)),
            n => Err(UnicornError::Kernel(format!(
                "calibration: {n} context offsets match the known error codes: {c:?}"
            ))),
        }
    }
}

/// Maps the check's memory as Unicorn's guest-physical RAM.
#[allow(unsafe_code)]
fn map_check_memory(uc: &mut Unicorn<'static, Stop>, mem: &PhysMemory) -> Result<(), UnicornError> {
    // SAFETY: the region is the check's own mmap'd memory, page aligned,
    // MEM_SIZE bytes; the harness owns both it and the engine and drops
    // the engine first (field order). QEMU accesses it only with the
    // guest's loads and stores and its walker's, from this thread, while
    // Rust code touches it only between runs, through the atomic
    // accessors `as_ptr` requires.
    unsafe { uc.mem_map_ptr(0, MEM_SIZE, UcProt::ALL, mem.as_ptr().cast()) }
        .map_err(uerr("map check memory"))
}

fn write_msr(uc: &mut Unicorn<'static, Stop>, rid: u32, value: u64) -> Result<(), UnicornError> {
    // struct uc_x86_msr { uint32_t rid; uint64_t value; }
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&rid.to_le_bytes());
    b[8..].copy_from_slice(&value.to_le_bytes());
    uc.reg_write_long(RegisterX86::MSR, &b).map_err(uerr("MSR"))
}

/// Runs the comparison.
pub fn run(opts: &QemuCheckOptions) -> Result<QemuCheckReport, UnicornError> {
    let mut h = Harness::new()?;
    h.err_off = h.calibrate()?;
    let mut features = qemu_features();
    let (mut hw, kvm_unavailable) = if opts.kvm {
        match kvm::check::HwSide::new() {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let mut three_way = None;
    if let Some(h) = &hw {
        // Paths the host's harness can run too: its PVM hole and vendor.
        let f = h.features();
        features.vendor = f.vendor.clone();
        features.kvm_module = f.kvm_module.clone();
        three_way = Some(ThreeWay {
            host: format!(
                "{} MAXPHYADDR {}, {}",
                f.vendor,
                f.maxphyaddr,
                f.kvm_module.as_deref().unwrap_or("kvm")
            ),
            table: BTreeMap::new(),
            kvm_disagreements: Vec::new(),
        });
    }
    let host_maxphy = hw.as_ref().map_or(40, |h| h.features().maxphyaddr);
    let host_gb = hw.as_ref().is_none_or(|h| h.features().gbpages);
    let mut generator = Generator::new(opts.seed, features.clone());
    let pool = table_pool();
    let mut filled = BTreeSet::new();
    let mut report = QemuCheckReport {
        seed: opts.seed,
        total: 0,
        agreed: 0,
        classes: BTreeMap::new(),
        disagreements: Vec::new(),
        coverage: Coverage::default(),
        features,
        error_code_offset: h.err_off,
        three_way: None,
        kvm_unavailable,
        not_tested: vec![
            "SMEP, SMAP, protection keys: Unicorn's default CPU model (qemu64) has none".into(),
            "global pages and PCIDs (CR4.PGE/PCIDE off: every access walks)".into(),
            "5-level paging, shadow-stack and implicit supervisor accesses".into(),
        ],
    };
    for index in 0..opts.accesses {
        let plan = generator.plan(&pool).map_err(|e| UnicornError::Walk(e.to_string()))?;
        let trial = trial(&mut h, &plan, index, &mut filled)?;
        kvm::check::count(&mut report.coverage, &plan, &trial);
        let class = classify(&trial);
        *report.classes.entry(class).or_default() += 1;
        if let (Some(h), Some(tw)) = (hw.as_mut(), three_way.as_mut()) {
            let kc = if model_bits(&plan, host_maxphy) {
                // Not run on KVM: on the host such an entry names
                // guest-physical memory beyond RAM (KVM stops with an
                // internal error), where QEMU and ptemu see a reserved bit.
                KvmClass::MaxPhyAddrModel
            } else {
                let kt =
                    h.trial(&plan, index).map_err(|e| UnicornError::Kernel(format!("KVM: {e}")))?;
                let kc = classify_kvm(&plan, &kt, host_gb);
                if kc != KvmClass::Agree && tw.kvm_disagreements.len() < MAX_KEPT {
                    tw.kvm_disagreements.push((kc, kt));
                }
                kc
            };
            *tw.table.entry((class, kc)).or_default() += 1;
        }
        report.total += 1;
        if class == Class::Agree {
            report.agreed += 1;
        } else if report.disagreements.len() < MAX_KEPT {
            report.disagreements.push((class, trial));
        }
    }
    report.three_way = three_way;
    Ok(report)
}

/// KVM against ptemu: agreement; on a host without 1 GiB pages, a path
/// through a present PS PDPTE where the CPU reports a reserved-bit fault;
/// or unexplained.
pub fn classify_kvm(plan: &Plan, t: &Trial, host_gb: bool) -> KvmClass {
    if t.agrees() {
        return KvmClass::Agree;
    }
    let gb_leaf =
        plan.path.iter().any(|(l, _, v)| *l == Level::Pdpt && v & 1 != 0 && v & (1 << 7) != 0);
    let cpu_rsvd = matches!(t.hw, Outcome::PageFault { error_code, .. } if error_code & 0x8 != 0);
    if !host_gb && gb_leaf && cpu_rsvd { KvmClass::NoGbPagesModel } else { KvmClass::Unexplained }
}

/// Whether a present entry of the plan has a bit in [40, host
/// MAXPHYADDR): reserved for QEMU's model and ptemu's, an address bit for
/// the host.
pub fn model_bits(plan: &Plan, host_maxphy: u8) -> bool {
    let (lo, hi) = (40u32, u32::from(host_maxphy).max(40));
    let mask = if hi > lo { ((1u64 << hi) - 1) & !((1u64 << lo) - 1) } else { 0 };
    plan.path.iter().any(|(_, _, v)| v & 1 != 0 && v & mask != 0)
}

fn fill_page(mem: &PhysMemory, filled: &mut BTreeSet<u64>, a: u64) -> Result<(), UnicornError> {
    let page = a & !(PAGE_SIZE - 1);
    if filled.insert(page) {
        let mut w = mem;
        for off in (0..PAGE_SIZE).step_by(8) {
            w.write_u64(pa(page + off)?, pattern(page + off))?;
        }
    }
    Ok(())
}

fn trial(
    h: &mut Harness,
    plan: &Plan,
    index: u64,
    filled: &mut BTreeSet<u64>,
) -> Result<Trial, UnicornError> {
    let marker = MARKER_BASE | index;
    if let Some(t) = plan.target {
        fill_page(&h.mem, filled, t)?;
        if plan.access == Access::Fetch {
            let mut w = &h.mem;
            w.write_u64(pa(t)?, kvm::fetch_stub(t as u32))?;
        }
    }
    let (ptemu, ptemu_after) = kvm::check::ptemu_side(plan);
    let (vector, rax, cr2, code) = h.run(plan, marker)?;
    let mem = &h.mem;
    let qemu = match (vector, plan.access) {
        (Some(14), _) => Outcome::PageFault { error_code: code, cr2 },
        (Some(6), Access::Fetch) => Outcome::Access { pa: rax & 0xffff_ffff },
        (Some(v), _) => Outcome::Exception { vector: v as u8, rip: 0 },
        (None, Access::Read) => {
            let a = rax ^ kvm::check::PATTERN_SALT;
            if a < MEM_SIZE && a % 8 == 0 && filled.contains(&(a & !(PAGE_SIZE - 1))) {
                Outcome::Access { pa: a }
            } else {
                Outcome::ReadValue { value: rax }
            }
        }
        (None, Access::Write) => match plan.target {
            Some(t) if mem.load(pa(t)?)? == marker => Outcome::Access { pa: t },
            _ => Outcome::WriteLost,
        },
        (None, Access::Fetch) => Outcome::WriteLost,
    };
    // Restore the data a write or a fetch stub changed.
    let mut w = mem;
    if let (Some(t), Access::Write | Access::Fetch) = (plan.target, plan.access) {
        w.write_u64(pa(t)?, pattern(t))?;
    }
    let mut entries = Vec::with_capacity(plan.path.len());
    for ((level, at, before), after) in plan.path.iter().zip(ptemu_after) {
        entries.push(PathEntry {
            level: *level,
            pa: *at,
            before: *before,
            cpu_after: mem.load(pa(*at)?)?,
            ptemu_after: after,
        });
    }
    Ok(Trial { index, va: plan.va, access: plan.access, cpu: plan.cpu, entries, ptemu, hw: qemu })
}

/// Sorts a trial into its class. QEMU's deviation: the outcomes agree,
/// the access faulted, and every entry that differs is one QEMU set
/// Accessed on and nothing else (before: A clear; QEMU's after: before |
/// A; ptemu's after: before). On a non-leaf entry that is the upper-level
/// case; on a 1 GiB leaf (the PDPTE with PS) it is the same early A.
pub fn classify(t: &Trial) -> Class {
    if t.agrees() {
        return Class::Agree;
    }
    let faulted = matches!(t.ptemu, Outcome::PageFault { .. });
    let a = 1u64 << 5;
    let early_a = |e: &PathEntry| {
        e.ptemu_after == e.before && e.before & a == 0 && e.cpu_after == e.before | a
    };
    let last = t.entries.len().saturating_sub(1);
    let mut leaf_1g = false;
    let ok = t.entries.iter().enumerate().all(|(i, e)| {
        if e.cpu_after == e.ptemu_after {
            return true;
        }
        if !early_a(e) {
            return false;
        }
        if i < last {
            return true;
        }
        // The last entry of the path: only a present 1 GiB leaf.
        let is_1g_leaf = e.level == Level::Pdpt && e.before & 1 != 0 && e.before & (1 << 7) != 0;
        leaf_1g |= is_1g_leaf;
        is_1g_leaf
    });
    if t.ptemu == t.hw && faulted && ok {
        if leaf_1g {
            Class::QemuAccessedOn1GLeafBeforeFault
        } else {
            Class::QemuAccessedBeforeFault
        }
    } else {
        Class::Unexplained
    }
}
