//! One access at a time on the real CPU (as KVM presents it to a guest).

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use pgtable::{Access, CpuState, PAGE_SIZE, Pfn, PhysAddr, PhysMem, VirtAddr};
use phys::PhysMemory;

use crate::error::KvmError;
use crate::harness::{
    HARNESS_FRAMES, Harness, KERNEL_CS, KERNEL_DS, MAX_TABLE_WRITES, PORT_DONE, PORT_OTHER,
    PORT_PF, Routine, TSS_SEL, is_harness_address,
};
use crate::vm::{Exit, Vm};

/// Offset of the `ud2` in a [`crate::fetch_stub`].
const FETCH_STUB_UD2: u64 = 5;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;
const CR4_PKE: u64 = 1 << 22;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const RFLAGS_FIXED: u64 = 1 << 1;
const RFLAGS_AC: u64 = 1 << 18;

/// What the host CPU offers the guest, from KVM's supported CPUID and from
/// trying each control-register bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFeatures {
    /// CPUID vendor string ("AuthenticAMD", "GenuineIntel").
    pub vendor: String,
    /// MAXPHYADDR the guest sees (CPUID 0x80000008 EAX[7:0]).
    pub maxphyaddr: u8,
    /// EFER.NXE can be set.
    pub nx: bool,
    /// 1 GiB pages (CPUID 0x80000001 EDX bit 26).
    pub gbpages: bool,
    /// CR4.SMEP can be set.
    pub smep: bool,
    /// CR4.SMAP can be set.
    pub smap: bool,
    /// CR4.PKE can be set (protection keys).
    pub pku: bool,
    /// The KVM module providing /dev/kvm, when /sys/module names one
    /// (e.g. "kvm_amd", "kvm_intel", "kvm_pvm").
    pub kvm_module: Option<String>,
}

impl HostFeatures {
    /// Features the host lacks, by name, for "not tested" reports.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (has, name) in [
            (self.nx, "NX (EFER.NXE)"),
            (self.gbpages, "1 GiB pages"),
            (self.smep, "SMEP (CR4.SMEP)"),
            (self.smap, "SMAP (CR4.SMAP, EFLAGS.AC)"),
            (self.pku, "protection keys (CR4.PKE, PKRU)"),
        ] {
            if !has {
                v.push(name);
            }
        }
        v
    }
}

/// One access for the CPU to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwAccess {
    /// The linear address (8-byte aligned for reads and writes, so the
    /// access stays in one page).
    pub va: VirtAddr,
    /// Read, write or instruction fetch.
    pub access: Access,
    /// CR0.WP, EFER.NXE, CR4.SMEP/SMAP/PKE, EFLAGS.AC, PKRU and the ring;
    /// `maxphyaddr` is ignored (the host's applies).
    pub cpu: CpuState,
    /// The 64-bit value a write stores.
    pub write_value: u64,
}

/// What the CPU did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HwOutcome {
    /// The access completed. For a read, `value` is the word read; for a
    /// fetch, the tag the executed [`crate::fetch_stub`] loaded; for a
    /// write, unused (0): find where it landed in memory.
    Done {
        /// The value read or fetch tag.
        value: u64,
    },
    /// #PF with its error code and CR2.
    PageFault {
        /// The error code the CPU pushed.
        error_code: u32,
        /// CR2.
        cr2: u64,
    },
    /// Another exception: its vector and the RIP it was raised at.
    Exception {
        /// The vector.
        vector: u8,
        /// RIP from the exception frame.
        rip: u64,
    },
    /// The access reached guest-physical memory outside RAM.
    Mmio {
        /// The guest-physical address.
        addr: u64,
    },
}

/// A VM ready to perform accesses through ptemu-built page tables.
#[derive(Debug)]
pub struct HwMachine {
    vm: Vm,
    harness: Harness,
    features: HostFeatures,
    template: kvm_sregs,
    /// The control-register state loaded last (sregs are set only on change).
    loaded: Option<(u64, u64, u64, u64)>,
}

fn cpuid(vm: &Vm, function: u32, index: u32) -> Option<kvm_bindings::kvm_cpuid_entry2> {
    vm.cpuid().as_slice().iter().find(|e| e.function == function && e.index == index).copied()
}

fn kvm_module() -> Option<String> {
    ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .find(|m| std::path::Path::new("/sys/module").join(m).exists())
        .map(str::to_string)
}

fn segment(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

impl HwMachine {
    /// Creates the VM over `mem`, installs the harness in frames
    /// `harness_base..+HARNESS_FRAMES` and links it into the PML4 at `pml4`
    /// (slot 511, which the caller's tables must leave alone).
    pub fn new(mem: PhysMemory, pml4: PhysAddr, harness_base: Pfn) -> Result<Self, KvmError> {
        let vm = Vm::new(mem)?;
        let harness = Harness::install(vm.mem(), harness_base, pml4)?;
        let template = vm.sregs()?;
        let vendor = cpuid(&vm, 0, 0)
            .map(|e| {
                let mut b = Vec::with_capacity(12);
                for r in [e.ebx, e.edx, e.ecx] {
                    b.extend_from_slice(&r.to_le_bytes());
                }
                String::from_utf8_lossy(&b).into_owned()
            })
            .unwrap_or_default();
        let leaf7 = cpuid(&vm, 7, 0);
        let ext1 = cpuid(&vm, 0x8000_0001, 0);
        let ext8 = cpuid(&vm, 0x8000_0008, 0);
        let mut features = HostFeatures {
            vendor,
            maxphyaddr: ext8.map_or(36, |e| (e.eax & 0xff) as u8),
            nx: ext1.is_some_and(|e| e.edx & (1 << 20) != 0),
            gbpages: ext1.is_some_and(|e| e.edx & (1 << 26) != 0),
            smep: leaf7.is_some_and(|e| e.ebx & (1 << 7) != 0),
            smap: leaf7.is_some_and(|e| e.ebx & (1 << 20) != 0),
            pku: leaf7.is_some_and(|e| e.ecx & (1 << 3) != 0),
            kvm_module: kvm_module(),
        };
        let mut m = Self { vm, harness, features: features.clone(), template, loaded: None };
        // A feature counts only if KVM accepts the control bit.
        let base = CpuState {
            wp: true,
            nxe: false,
            smep: false,
            smap: false,
            pke: false,
            ..CpuState::default()
        };
        features.nx &= m.load_cpu(&CpuState { nxe: true, ..base }).is_ok();
        features.smep &= m.load_cpu(&CpuState { smep: true, ..base }).is_ok();
        features.smap &= m.load_cpu(&CpuState { smap: true, ..base }).is_ok();
        features.pku &= m.load_cpu(&CpuState { pke: true, ..base }).is_ok();
        m.load_cpu(&base)?;
        m.features = features;
        Ok(m)
    }

    /// What the host offers.
    pub fn features(&self) -> &HostFeatures {
        &self.features
    }

    /// The guest's RAM (ptemu's physical memory).
    pub fn mem(&self) -> &PhysMemory {
        self.vm.mem()
    }

    /// The harness (its reserved frames and addresses).
    pub fn harness(&self) -> &Harness {
        &self.harness
    }

    /// Physical address of the PML4 CR3 points at.
    pub fn cr3(&self) -> PhysAddr {
        self.harness.pml4()
    }

    /// Frames the harness reserves: `harness_base..+HARNESS_FRAMES`.
    pub fn reserved_frames(&self) -> (Pfn, u64) {
        (self.harness.base(), HARNESS_FRAMES)
    }

    /// Lets the guest write page-table entries in frames
    /// `first..first+count` (see [`HwMachine::access`]'s `table_writes`).
    pub fn map_table_window(&mut self, first: Pfn, count: u64) -> Result<(), KvmError> {
        let mem: &PhysMemory = self.vm.mem();
        self.harness.map_window(mem, first, count)
    }

    /// Maps a 2 MiB-aligned buffer of `pages` 2 MiB pages for the guest's
    /// benchmark loop and returns its linear address.
    pub fn map_buffer(&mut self, first: PhysAddr, pages: u64) -> Result<u64, KvmError> {
        let mem: &PhysMemory = self.vm.mem();
        self.harness.map_buffer(mem, first, pages)
    }

    fn load_cpu(&mut self, cpu: &CpuState) -> Result<(), KvmError> {
        if cpu.smep && !self.features.smep {
            return Err(KvmError::Unsupported("SMEP"));
        }
        if cpu.smap && !self.features.smap {
            return Err(KvmError::Unsupported("SMAP"));
        }
        if cpu.pke && !self.features.pku {
            return Err(KvmError::Unsupported("protection keys"));
        }
        if cpu.nxe && !self.features.nx {
            return Err(KvmError::Unsupported("NX"));
        }
        let cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG | if cpu.wp { CR0_WP } else { 0 };
        let cr4 = CR4_PAE
            | CR4_OSFXSR
            | CR4_OSXMMEXCPT
            | if cpu.smep { CR4_SMEP } else { 0 }
            | if cpu.smap { CR4_SMAP } else { 0 }
            | if cpu.pke { CR4_PKE } else { 0 };
        let efer = EFER_LME | EFER_LMA | if cpu.nxe { EFER_NXE } else { 0 };
        let key = (cr0, cr4, efer, self.harness.pml4().as_u64());
        if self.loaded == Some(key) {
            return Ok(());
        }
        let mut s = self.template;
        s.cr0 = cr0;
        s.cr4 = cr4;
        s.efer = efer;
        s.cr3 = self.harness.pml4().as_u64();
        s.cs = segment(KERNEL_CS, true, 0);
        let data = segment(KERNEL_DS, false, 0);
        s.ds = data;
        s.es = data;
        s.fs = data;
        s.gs = data;
        s.ss = data;
        s.tr = kvm_segment {
            base: self.harness.tss(),
            limit: 0x67,
            selector: TSS_SEL,
            type_: 11,
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let (gdt, gdt_limit) = self.harness.gdt();
        s.gdt.base = gdt;
        s.gdt.limit = gdt_limit;
        let (idt, idt_limit) = self.harness.idt();
        s.idt.base = idt;
        s.idt.limit = idt_limit;
        self.loaded = None;
        self.vm.set_sregs(&s)?;
        if cpu.pke {
            // PKRU is not a KVM register; the harness has no WRPKRU step, so
            // protection keys are refused above when absent and would need it
            // when present.
            return Err(KvmError::Unsupported("PKRU loading"));
        }
        self.loaded = Some(key);
        Ok(())
    }

    /// Performs one access: first the guest writes `table_writes` (entry
    /// address, value) into its page tables through the table window, then
    /// it reloads CR3 and INVLPGs `req.va` so the access walks the tables,
    /// then it performs the access in ring 0 or 3. Returns what the CPU did;
    /// read A/D bits and written memory back from [`HwMachine::mem`].
    ///
    /// The guest makes the table writes itself so that a hypervisor that
    /// shadows guest page tables (KVM's shadow MMU) sees every change.
    pub fn access(
        &mut self,
        req: &HwAccess,
        table_writes: &[(PhysAddr, u64)],
    ) -> Result<HwOutcome, KvmError> {
        if is_harness_address(req.va) {
            return Err(KvmError::ReservedAddress(req.va));
        }
        if table_writes.len() > MAX_TABLE_WRITES {
            return Err(KvmError::TooManyWrites(table_writes.len()));
        }
        self.load_cpu(&req.cpu)?;
        let mut mail = Vec::with_capacity(table_writes.len());
        for (at, v) in table_writes {
            mail.push((self.harness.window_va(*at)?, *v));
        }
        let mb = self.harness.mailbox_pa();
        {
            let mut m: &PhysMemory = self.vm.mem();
            m.write_u64(
                PhysAddr::new(mb).map_err(|_| KvmError::OutsideWindow(self.harness.pml4()))?,
                mail.len() as u64,
            )?;
            for (i, (va, v)) in mail.iter().enumerate() {
                let at = mb + 8 + 16 * i as u64;
                m.write_u64(
                    PhysAddr::new(at).map_err(|_| KvmError::OutsideWindow(self.harness.pml4()))?,
                    *va,
                )?;
                m.write_u64(
                    PhysAddr::new(at + 8)
                        .map_err(|_| KvmError::OutsideWindow(self.harness.pml4()))?,
                    *v,
                )?;
            }
        }
        let routine = match req.access {
            Access::Read => Routine::Read,
            Access::Write => Routine::Write,
            Access::Fetch => Routine::Fetch,
        };
        let rflags = RFLAGS_FIXED | if req.cpu.ac { RFLAGS_AC } else { 0 };
        let regs = kvm_regs {
            rip: self.harness.entry(),
            rsp: self.harness.kernel_stack_top(),
            rflags: if req.cpu.user { RFLAGS_FIXED } else { rflags },
            rdi: req.va.as_u64(),
            rdx: req.write_value,
            rcx: self.harness.routine(routine, req.cpu.user),
            r8: u64::from(req.cpu.user),
            r9: self.harness.user_stack_top(),
            r10: rflags,
            r11: self.harness.mailbox_va(),
            ..Default::default()
        };
        self.vm.set_regs(&regs)?;
        match self.vm.run()? {
            Exit::Out { port } if port == PORT_DONE => {
                let r = self.vm.regs()?;
                let rip = self.frame_rip(r.rsp)?;
                // The #UD must come from the routine's own ud2 (or, for a
                // fetch, from the planted stub at the address); any other
                // #UD is an exception like any other.
                let expected = match req.access {
                    Access::Fetch => req.va.as_u64() + FETCH_STUB_UD2,
                    _ => self.harness.routine(routine, req.cpu.user) + Harness::UD2_OFFSET,
                };
                if rip == expected {
                    Ok(HwOutcome::Done { value: r.rax })
                } else {
                    Ok(HwOutcome::Exception { vector: 6, rip })
                }
            }
            Exit::Out { port } if port == PORT_PF => {
                let r = self.vm.regs()?;
                Ok(HwOutcome::PageFault { error_code: r.rsi as u32, cr2: r.rdx })
            }
            Exit::Out { port } if port == PORT_OTHER => {
                let r = self.vm.regs()?;
                let vector = (r.rax & 0xff) as u8;
                // Vectors that push an error code have RIP one word higher.
                let skip = if matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30) { 8 } else { 0 };
                let rip = self.frame_rip(r.rsp + skip)?;
                Ok(HwOutcome::Exception { vector, rip })
            }
            Exit::Mmio { addr, .. } => {
                // The vCPU is mid-instruction: let KVM finish it, and load
                // the control registers afresh next time.
                self.vm.complete_pending()?;
                self.loaded = None;
                Ok(HwOutcome::Mmio { addr })
            }
            other => {
                self.loaded = None;
                Err(KvmError::UnexpectedExit(format!("{other:?}")))
            }
        }
    }

    /// Runs the guest's benchmark loop: `loads` loads, load i from the
    /// address in `array_va[i & mask]` (an array mapped with
    /// [`HwMachine::map_buffer`]), in ring 3 when `cpu.user`, else ring 0,
    /// with CR3 reloaded first. Returns the wall time of the KVM_RUN that
    /// executed them.
    pub fn run_loads(
        &mut self,
        cpu: &CpuState,
        array_va: u64,
        mask: u64,
        loads: u64,
    ) -> Result<std::time::Duration, KvmError> {
        if loads == 0 {
            return Ok(std::time::Duration::ZERO);
        }
        self.load_cpu(cpu)?;
        let mut m: &PhysMemory = self.vm.mem();
        let mb = PhysAddr::new(self.harness.mailbox_pa())
            .map_err(|_| KvmError::OutsideWindow(self.harness.pml4()))?;
        m.write_u64(mb, 0)?;
        let routine = self.harness.bench_routine(cpu.user);
        let regs = kvm_regs {
            rip: self.harness.entry(),
            rsp: self.harness.kernel_stack_top(),
            rflags: RFLAGS_FIXED,
            rdi: array_va,
            rsi: array_va,
            rbp: loads,
            r15: mask,
            rcx: routine,
            r8: u64::from(cpu.user),
            r9: self.harness.user_stack_top(),
            r10: RFLAGS_FIXED,
            r11: self.harness.mailbox_va(),
            ..Default::default()
        };
        self.vm.set_regs(&regs)?;
        let t = std::time::Instant::now();
        let exit = self.vm.run()?;
        let d = t.elapsed();
        let r = self.vm.regs()?;
        match exit {
            Exit::Out { port } if port == PORT_DONE => {
                let rip = self.frame_rip(r.rsp)?;
                if rip == routine + Harness::BENCH_UD2_OFFSET {
                    Ok(d)
                } else {
                    Err(KvmError::UnexpectedExit(format!("#UD in the load loop at {rip:#x}")))
                }
            }
            Exit::Out { port } if port == PORT_PF => Err(KvmError::UnexpectedExit(format!(
                "#PF in the load loop at {:#x}, error code {:#x}",
                r.rdx, r.rsi
            ))),
            other => {
                self.loaded = None;
                Err(KvmError::UnexpectedExit(format!("{other:?}")))
            }
        }
    }

    /// The RIP saved in the exception frame at `rsp` (0 if `rsp` is not on
    /// the kernel stack).
    fn frame_rip(&self, rsp: u64) -> Result<u64, KvmError> {
        match self.harness.stack_pa(rsp) {
            Some(at) => {
                let m: &PhysMemory = self.vm.mem();
                Ok(m.read_u64(at)?)
            }
            None => Ok(0),
        }
    }

    /// Size of the guest's memory in 4 KiB frames.
    pub fn frames(&self) -> u64 {
        self.vm.mem().size() / PAGE_SIZE
    }
}
