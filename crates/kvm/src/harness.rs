//! The guest's own furniture: descriptor tables, a kernel stack, the access
//! routines and the exception handlers, in reserved frames of physical
//! memory mapped through PML4 slot 511, which random test tables never use.
//!
//! Guest code is kept as byte sequences with their assembly beside them
//! (assembled with GNU as and checked against `objdump -d -M intel`).
//!
//! Reports go out through port I/O, one port per event, with the details in
//! registers the host reads with KVM_GET_REGS:
//! * port 0x81: the access completed: the routine (or the fetched stub)
//!   ended in `ud2`, whose #UD handler reports (RAX = value read, or the
//!   fetch tag; the #UD's RIP tells it was the expected `ud2`). `ud2` rather
//!   than a software interrupt because it works the same from both rings
//!   under every hypervisor (PVM refuses `int n` from ring 3);
//! * port 0x0e: #PF (RSI = error code, RDX = CR2);
//! * port 0xef: another exception (AL = vector).

use pgtable::{PAGE_SIZE, Pfn, PhysAddr, PhysMem, VirtAddr};
use phys::PhysMemory;

use crate::error::KvmError;

/// Frames the harness reserves, starting at its base frame.
pub const HARNESS_FRAMES: u64 = 16;

/// The PML4 slot the harness maps itself through.
pub const HARNESS_PML4_SLOT: usize = 511;

/// Linear address of harness page 0: PML4 slot 511, sign-extended.
pub const HARNESS_VA: u64 = 0xffff_ff80_0000_0000;

// Harness pages, by index from the base frame (= by index from HARNESS_VA).
const PG_PDPT: u64 = 0;
const PG_PD: u64 = 1;
const PG_PT: u64 = 2;
const PG_IDT: u64 = 3;
const PG_GDT: u64 = 4;
const PG_KCODE: u64 = 5;
const PG_UCODE: u64 = 6;
const PG_KSTACK: u64 = 7; // and 8
const PG_USTACK: u64 = 9;
const PG_MAILBOX: u64 = 10;

/// First PT slot of the table window (slots below hold harness pages).
const WINDOW_FIRST_SLOT: u64 = 32;
/// Largest window, in frames.
pub const MAX_WINDOW_FRAMES: u64 = 512 - WINDOW_FIRST_SLOT;
/// Largest number of table writes one access may ask of the guest.
pub const MAX_TABLE_WRITES: usize = 255;

/// Offset of the TSS inside the GDT page.
const TSS_OFFSET: u64 = 0x800;

/// Selectors: kernel code/data, user data/code (RPL 3), the TSS.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector, RPL 3.
pub const USER_DS: u16 = 0x23;
/// User code selector, RPL 3.
pub const USER_CS: u16 = 0x2b;
/// TSS selector.
pub const TSS_SEL: u16 = 0x30;

/// Bytes of the GDT: null, kcode, kdata, unused, udata, ucode, TSS (16).
const GDT: [u64; 8] = [
    0,
    0x00af_9b00_0000_ffff, // 0x08: 64-bit code, DPL 0, accessed
    0x00cf_9300_0000_ffff, // 0x10: data, DPL 0, writable, accessed
    0,
    0x00cf_f300_0000_ffff, // 0x20: data, DPL 3, writable, accessed
    0x00af_fb00_0000_ffff, // 0x28: 64-bit code, DPL 3, accessed
    0,                     // 0x30: TSS, low half (filled in at install)
    0,                     // 0x38: TSS, high half
];

/// Entry point, at kernel code offset 0. Inputs: RDI = address accessed,
/// RDX = value to write, RCX = routine to run, R8 = nonzero for ring 3,
/// R9 = user RSP, R10 = user RFLAGS, R11 = mailbox address.
/// It first performs the mailbox's table writes (so that KVM sees the guest
/// itself edit its tables), then reloads CR3 and INVLPGs the address so the
/// access walks the tables, then jumps (ring 0) or IRETQs (ring 3) to RCX.
const ENTRY: [u8; 0x3d] = [
    0x49, 0x8b, 0x1b, //              mov    rbx, [r11]        ; count
    0x4d, 0x8d, 0x63, 0x08, //        lea    r12, [r11+8]      ; first pair
    0x48, 0x85, 0xdb, //        .l:   test   rbx, rbx
    0x74, 0x16, //                    je     .done
    0x4d, 0x8b, 0x2c, 0x24, //        mov    r13, [r12]        ; entry address
    0x4d, 0x8b, 0x74, 0x24, 0x08, //  mov    r14, [r12+8]      ; its new value
    0x4d, 0x89, 0x75, 0x00, //        mov    [r13+0], r14
    0x49, 0x83, 0xc4, 0x10, //        add    r12, 16
    0x48, 0xff, 0xcb, //              dec    rbx
    0xeb, 0xe5, //                    jmp    .l
    0x0f, 0x20, 0xd8, //     .done:   mov    rax, cr3
    0x0f, 0x22, 0xd8, //              mov    cr3, rax          ; flush the TLB
    0x0f, 0x01, 0x3f, //              invlpg [rdi]
    0x4d, 0x85, 0xc0, //              test   r8, r8
    0x75, 0x02, //                    jne    .user
    0xff, 0xe1, //                    jmp    rcx
    0x6a, 0x23, //          .user:    push   0x23              ; SS
    0x41, 0x51, //                    push   r9                ; RSP
    0x41, 0x52, //                    push   r10               ; RFLAGS
    0x6a, 0x2b, //                    push   0x2b              ; CS
    0x51, //                          push   rcx               ; RIP
    0x48, 0xcf, //                    iretq
];

/// Offsets of the three access routines, in both code pages.
const OFF_READ: u64 = 0x100;
const OFF_WRITE: u64 = 0x108;
const OFF_FETCH: u64 = 0x110;
/// `mov rax, [rdi]` then report.
const READ: [u8; 5] = [0x48, 0x8b, 0x07, /* mov rax, [rdi] */ 0x0f, 0x0b /* ud2 */];
/// `mov [rdi], rdx` then report.
const WRITE: [u8; 5] = [0x48, 0x89, 0x17, /* mov [rdi], rdx */ 0x0f, 0x0b /* ud2 */];
/// `jmp rdi`: the fetched page holds a [`fetch_stub`] that reports.
const FETCH: [u8; 2] = [0xff, 0xe7 /* jmp rdi */];

const OFF_PF: u64 = 0x180;
/// #PF handler: the error code is on top of the stack, the address in CR2.
const PF_HANDLER: [u8; 7] = [
    0x5e, //             pop  rsi          ; error code
    0x0f, 0x20, 0xd2, // mov  rdx, cr2
    0xe6, 0x0e, //       out  0x0e, al
    0xf4, //             hlt
];
const OFF_DONE: u64 = 0x190;
/// #UD handler: the access routine reached its `ud2`.
const DONE_HANDLER: [u8; 3] = [0xe6, 0x81 /* out 0x81, al */, 0xf4 /* hlt */];
const OFF_OTHER: u64 = 0x200;
/// Handler of exception `v` (every vector 0..31 but 6 and 14), 8 bytes apart.
const fn other_handler(v: u8) -> [u8; 5] {
    [0xb0, v /* mov al, v */, 0xe6, 0xef /* out 0xef, al */, 0xf4 /* hlt */]
}
const OFF_BENCH: u64 = 0x400;
/// Benchmark loop, in both code pages: RSI = address array, RBP = loads
/// (>= 1), R15 = index mask (array length - 1). Load i reads the address
/// array[i & mask] points at; the final `ud2` reports through #UD. Run
/// through the entry routine (RCX = this loop), so the same loop runs in
/// ring 0 or ring 3.
const BENCH: [u8; 25] = [
    0x31, 0xd2, //             xor  edx, edx
    0x48, 0x89, 0xd0, //  .l:  mov  rax, rdx
    0x4c, 0x21, 0xf8, //       and  rax, r15
    0x48, 0x8b, 0x04, 0xc6, // mov  rax, [rsi+rax*8]
    0x48, 0x8b, 0x00, //       mov  rax, [rax]            ; the measured load
    0x48, 0xff, 0xc2, //       inc  rdx
    0x48, 0x39, 0xea, //       cmp  rdx, rbp
    0x75, 0xeb, //             jne  .l
    0x0f, 0x0b, //             ud2
];

/// Port the harness writes when an access completed.
pub const PORT_DONE: u16 = 0x81;
/// Port the #PF handler writes.
pub const PORT_PF: u16 = 0x0e;
/// Port other exception handlers write (AL = vector).
pub const PORT_OTHER: u16 = 0xef;

/// The 8-byte instruction word planted where a fetch should land:
/// `mov eax, tag; ud2; nop`, so a completed fetch reports `tag` in EAX.
pub const fn fetch_stub(tag: u32) -> u64 {
    let t = tag.to_le_bytes();
    u64::from_le_bytes([0xb8, t[0], t[1], t[2], t[3], 0x0f, 0x0b, 0x90])
}

/// Which routine an access runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routine {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// The harness's reserved frames and what it has mapped.
#[derive(Clone, Debug)]
pub struct Harness {
    base: Pfn,
    pml4: PhysAddr,
    window: Option<(Pfn, u64)>,
    buffers: u64,
}

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const ACC: u64 = 0x20;
const DIRTY: u64 = 0x40;
const PS: u64 = 0x80;

fn pa(raw: u64) -> Result<PhysAddr, KvmError> {
    PhysAddr::new(raw).map_err(|_| KvmError::BadMemory { size: raw, reason: "address too wide" })
}

impl Harness {
    /// Lays out the harness in frames `base..base+HARNESS_FRAMES` and links
    /// it into the PML4 at `pml4` (slot 511). Entries are written with A and
    /// D already set so the guest's own accesses never rewrite them.
    pub fn install(mem: &PhysMemory, base: Pfn, pml4: PhysAddr) -> Result<Self, KvmError> {
        let size = mem.size();
        let end = (base.as_u64() + HARNESS_FRAMES) * PAGE_SIZE;
        if end > size {
            return Err(KvmError::BadMemory {
                size,
                reason: "the harness frames lie beyond its end",
            });
        }
        if pml4.as_u64() % PAGE_SIZE != 0 || pml4.as_u64() + PAGE_SIZE > size {
            return Err(KvmError::BadMemory {
                size,
                reason: "the PML4 is unaligned or outside it",
            });
        }
        let h = Self { base, pml4, window: None, buffers: 0 };
        for i in 0..HARNESS_FRAMES {
            mem.zero_frame(Pfn(base.as_u64() + i))
                .map_err(|_| KvmError::BadMemory { size, reason: "cannot zero a harness frame" })?;
        }
        let mut m = mem;
        // PML4[511] -> PDPT[0] -> PD[0] -> PT. User bits on the tables so the
        // user code page can be reached; each PTE decides.
        let table = P | RW | US | ACC;
        m.write_u64(pa(pml4.as_u64() + 8 * HARNESS_PML4_SLOT as u64)?, h.frame(PG_PDPT) | table)?;
        m.write_u64(pa(h.frame(PG_PDPT))?, h.frame(PG_PD) | table)?;
        m.write_u64(pa(h.frame(PG_PD))?, h.frame(PG_PT) | table)?;
        let sup_rw = P | RW | ACC | DIRTY;
        for (page, flags) in [
            (PG_IDT, sup_rw),
            (PG_GDT, sup_rw),
            (PG_KCODE, P | ACC),
            (PG_UCODE, P | US | ACC),
            (PG_KSTACK, sup_rw),
            (PG_KSTACK + 1, sup_rw),
            (PG_USTACK, sup_rw | US),
            (PG_MAILBOX, sup_rw),
        ] {
            m.write_u64(pa(h.frame(PG_PT) + 8 * page)?, h.frame(page) | flags)?;
        }
        // GDT and TSS.
        let gdt = h.frame(PG_GDT);
        for (i, d) in GDT.iter().enumerate() {
            m.write_u64(pa(gdt + 8 * i as u64)?, *d)?;
        }
        let tss = HARNESS_VA + PG_GDT * PAGE_SIZE + TSS_OFFSET;
        let (lo, hi) = tss_descriptor(tss, 0x67);
        m.write_u64(pa(gdt + 0x30)?, lo)?;
        m.write_u64(pa(gdt + 0x38)?, hi)?;
        // TSS: RSP0 at offset 4 (unaligned: write the two words around it),
        // I/O map base at 0x66 pointing past the limit (no bitmap).
        let rsp0 = h.kernel_stack_top();
        let tss_pa = gdt + TSS_OFFSET;
        m.write_u64(pa(tss_pa)?, (rsp0 & 0xffff_ffff) << 32)?;
        m.write_u64(pa(tss_pa + 8)?, rsp0 >> 32)?;
        m.write_u64(pa(tss_pa + 0x60)?, 0x68u64 << 48)?;
        // IDT: exceptions 0..31, #UD meaning "done".
        let kcode = HARNESS_VA + PG_KCODE * PAGE_SIZE;
        let idt = h.frame(PG_IDT);
        for v in 0u8..32 {
            let target = match v {
                6 => kcode + OFF_DONE,
                14 => kcode + OFF_PF,
                _ => kcode + OFF_OTHER + 8 * v as u64,
            };
            let (lo, hi) = gate(target);
            m.write_u64(pa(idt + 16 * v as u64)?, lo)?;
            m.write_u64(pa(idt + 16 * v as u64 + 8)?, hi)?;
        }
        // Code.
        let kc = h.frame(PG_KCODE);
        let uc = h.frame(PG_UCODE);
        let put = |at: u64, bytes: &[u8]| {
            mem.write_bytes(pa(at)?, bytes)
                .map_err(|_| KvmError::BadMemory { size, reason: "cannot write harness code" })
        };
        put(kc, &ENTRY)?;
        for base in [kc, uc] {
            put(base + OFF_READ, &READ)?;
            put(base + OFF_WRITE, &WRITE)?;
            put(base + OFF_FETCH, &FETCH)?;
        }
        put(kc + OFF_PF, &PF_HANDLER)?;
        put(kc + OFF_DONE, &DONE_HANDLER)?;
        for v in 0u8..32 {
            put(kc + OFF_OTHER + 8 * v as u64, &other_handler(v))?;
        }
        put(kc + OFF_BENCH, &BENCH)?;
        put(uc + OFF_BENCH, &BENCH)?;
        Ok(h)
    }

    fn frame(&self, page: u64) -> u64 {
        (self.base.as_u64() + page) * PAGE_SIZE
    }

    /// First frame the harness reserves.
    pub fn base(&self) -> Pfn {
        self.base
    }

    /// Physical address of the PML4 it is linked into.
    pub fn pml4(&self) -> PhysAddr {
        self.pml4
    }

    /// Linear address of the entry point.
    pub fn entry(&self) -> u64 {
        HARNESS_VA + PG_KCODE * PAGE_SIZE
    }

    /// Linear address of the benchmark loop in the ring-0 or ring-3 page.
    pub fn bench_routine(&self, user: bool) -> u64 {
        let page = if user { PG_UCODE } else { PG_KCODE };
        HARNESS_VA + page * PAGE_SIZE + OFF_BENCH
    }

    /// Offset of the `ud2` ending the benchmark loop.
    pub const BENCH_UD2_OFFSET: u64 = 0x17;

    /// Offset of the `ud2` that ends each data-access routine.
    pub const UD2_OFFSET: u64 = 3;

    /// Linear address of `routine` in the ring-0 or the ring-3 code page.
    pub fn routine(&self, routine: Routine, user: bool) -> u64 {
        let page = if user { PG_UCODE } else { PG_KCODE };
        let off = match routine {
            Routine::Read => OFF_READ,
            Routine::Write => OFF_WRITE,
            Routine::Fetch => OFF_FETCH,
        };
        HARNESS_VA + page * PAGE_SIZE + off
    }

    /// Top of the kernel stack (RSP0).
    pub fn kernel_stack_top(&self) -> u64 {
        HARNESS_VA + (PG_KSTACK + 2) * PAGE_SIZE
    }

    /// Physical address of the kernel-stack word at linear `va`, if it is one.
    pub fn stack_pa(&self, va: u64) -> Option<PhysAddr> {
        let lo = HARNESS_VA + PG_KSTACK * PAGE_SIZE;
        if va < lo || va + 8 > self.kernel_stack_top() || va % 8 != 0 {
            return None;
        }
        PhysAddr::new(self.frame(PG_KSTACK) + (va - lo)).ok()
    }

    /// Top of the user stack.
    pub fn user_stack_top(&self) -> u64 {
        HARNESS_VA + (PG_USTACK + 1) * PAGE_SIZE
    }

    /// Linear address of the mailbox (count, then address/value pairs).
    pub fn mailbox_va(&self) -> u64 {
        HARNESS_VA + PG_MAILBOX * PAGE_SIZE
    }

    /// Physical address of the mailbox.
    pub fn mailbox_pa(&self) -> u64 {
        self.frame(PG_MAILBOX)
    }

    /// Linear and limit of the IDT.
    pub fn idt(&self) -> (u64, u16) {
        (HARNESS_VA + PG_IDT * PAGE_SIZE, 0xfff)
    }

    /// Linear base and limit of the GDT.
    pub fn gdt(&self) -> (u64, u16) {
        (HARNESS_VA + PG_GDT * PAGE_SIZE, 0x3f)
    }

    /// Linear base of the TSS.
    pub fn tss(&self) -> u64 {
        HARNESS_VA + PG_GDT * PAGE_SIZE + TSS_OFFSET
    }

    /// Maps frames `first..first+count` supervisor-writable into the
    /// harness's range, so the guest can write page-table entries there
    /// (see the entry routine's mailbox). Replaces any previous window.
    pub fn map_window(&mut self, mem: &PhysMemory, first: Pfn, count: u64) -> Result<(), KvmError> {
        let bad = |reason| KvmError::BadWindow { first: first.addr(), count, reason };
        if count == 0 || count > MAX_WINDOW_FRAMES {
            return Err(bad("the window holds 1 to 480 frames"));
        }
        if (first.as_u64() + count) * PAGE_SIZE > mem.size() {
            return Err(bad("the frames lie beyond the end of memory"));
        }
        let mut m = mem;
        for i in 0..MAX_WINDOW_FRAMES {
            let slot = pa(self.frame(PG_PT) + 8 * (WINDOW_FIRST_SLOT + i))?;
            let v = if i < count {
                ((first.as_u64() + i) * PAGE_SIZE) | P | RW | ACC | DIRTY
            } else {
                0
            };
            m.write_u64(slot, v)?;
        }
        self.window = Some((first, count));
        Ok(())
    }

    /// The window address through which the guest writes the word at `pa`.
    pub fn window_va(&self, at: PhysAddr) -> Result<u64, KvmError> {
        let (first, count) = self.window.ok_or(KvmError::OutsideWindow(at))?;
        let pfn = at.as_u64() / PAGE_SIZE;
        if pfn < first.as_u64() || pfn >= first.as_u64() + count {
            return Err(KvmError::OutsideWindow(at));
        }
        Ok(HARNESS_VA
            + (WINDOW_FIRST_SLOT + pfn - first.as_u64()) * PAGE_SIZE
            + at.as_u64() % PAGE_SIZE)
    }

    /// Maps `pages` 2 MiB pages of physical memory from `first` (2 MiB
    /// aligned) readable from both rings, after any buffer mapped before, and
    /// returns their linear address. For the benchmark's address array.
    pub fn map_buffer(
        &mut self,
        mem: &PhysMemory,
        first: PhysAddr,
        pages: u64,
    ) -> Result<u64, KvmError> {
        let bad = |reason| KvmError::BadWindow { first, count: pages, reason };
        let big = 2 << 20;
        if first.as_u64() % big != 0 {
            return Err(bad("a buffer must start 2 MiB aligned"));
        }
        if pages == 0 || 1 + self.buffers + pages > 512 {
            return Err(bad("buffers hold 1 to 511 2 MiB pages in all"));
        }
        if first.as_u64() + pages * big > mem.size() {
            return Err(bad("the buffer lies beyond the end of memory"));
        }
        let mut m = mem;
        let slot0 = 1 + self.buffers;
        for i in 0..pages {
            let slot = pa(self.frame(PG_PD) + 8 * (slot0 + i))?;
            m.write_u64(slot, (first.as_u64() + i * big) | P | US | PS | ACC)?;
        }
        self.buffers += pages;
        Ok(HARNESS_VA + slot0 * big)
    }
}

/// A 64-bit interrupt gate to `target` through the kernel code segment.
fn gate(target: u64) -> (u64, u64) {
    let lo = (target & 0xffff)
        | (u64::from(KERNEL_CS) << 16)
        | (0x8e << 40)
        | (((target >> 16) & 0xffff) << 48);
    (lo, target >> 32)
}

/// A 64-bit TSS descriptor (type 0xb, busy, as KVM_SET_SREGS loads it).
fn tss_descriptor(base: u64, limit: u64) -> (u64, u64) {
    let lo = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x8b << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    (lo, base >> 32)
}

/// Returns the linear address through which the harness is reachable:
/// accesses there are the harness's own, never a test's.
pub fn is_harness_address(va: VirtAddr) -> bool {
    va.pml4_index() == HARNESS_PML4_SLOT
}
