//! The hardware walk: every fault reason, every error-code bit, huge pages,
//! Accessed/Dirty updates and reserved bits.

use ptemu_pgtable::{
    Access, BumpFrames, CpuState, EntryFlags, Fault, FrameMem, MemError, PageSize, PfErrorCode,
    Pfn, PhysAddr, PhysMem, VirtAddr, entry_at, lookup, map, new_root, translate,
};

const P: EntryFlags = EntryFlags::PRESENT;
const RW: EntryFlags = EntryFlags::WRITABLE;
const US: EntryFlags = EntryFlags::USER;

struct World {
    mem: FrameMem,
    frames: BumpFrames,
    root: PhysAddr,
}

fn world() -> World {
    let mut mem = FrameMem::new(128);
    let mut frames = BumpFrames::new(Pfn(1), Pfn(128));
    let root = new_root(&mut mem, &mut frames).unwrap();
    World { mem, frames, root }
}

impl World {
    fn map(&mut self, va: u64, pfn: u64, size: PageSize, flags: EntryFlags) {
        map(&mut self.mem, &mut self.frames, self.root, va_(va), Pfn(pfn), size, flags).unwrap();
    }
    fn tr(&mut self, va: u64, access: Access, cpu: &CpuState) -> Result<u64, Fault> {
        translate(&mut self.mem, self.root, va_(va), access, cpu).map(|t| t.pa.as_u64())
    }
    fn code(&mut self, va: u64, access: Access, cpu: &CpuState) -> u32 {
        match translate(&mut self.mem, self.root, va_(va), access, cpu) {
            Err(Fault::PageFault(pf)) => {
                assert_eq!(pf.addr.as_u64(), va);
                pf.error_code.bits()
            }
            other => panic!("expected #PF at {va:#x}, got {other:?}"),
        }
    }
    fn leaf_pa(&self, va: u64) -> PhysAddr {
        entry_at(&self.mem, self.root, va_(va)).unwrap().entry_pa
    }
    fn set_word(&mut self, pa: PhysAddr, f: impl FnOnce(u64) -> u64) {
        let v = self.mem.read_u64(pa).unwrap();
        self.mem.write_u64(pa, f(v)).unwrap();
    }
    /// Physical addresses of the four entries used for `va`, PML4E first.
    fn path(&self, va: u64) -> Vec<PhysAddr> {
        let mut out = Vec::new();
        let mut table = self.root.as_u64();
        for shift in [39u32, 30, 21, 12] {
            let pa = PhysAddr::new(table + (((va >> shift) & 0x1ff) << 3)).unwrap();
            out.push(pa);
            let e = self.mem.read_u64(pa).unwrap();
            if e & 1 == 0 || (shift != 39 && e & 0x80 != 0) {
                break;
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
        out
    }
}

fn va_(v: u64) -> VirtAddr {
    VirtAddr::new(v).unwrap()
}

fn user() -> CpuState {
    CpuState::default()
}

fn kernel() -> CpuState {
    CpuState { user: false, ..CpuState::default() }
}

const U: u64 = 0x40_0000;

#[test]
fn not_present_codes() {
    let mut w = world();
    // Nothing mapped: P=0; W, U and I/D describe the access.
    assert_eq!(w.code(U, Access::Read, &user()), 0x4);
    assert_eq!(w.code(U, Access::Write, &user()), 0x6);
    assert_eq!(w.code(U, Access::Fetch, &user()), 0x14);
    assert_eq!(w.code(U, Access::Read, &kernel()), 0x0);
    assert_eq!(w.code(U, Access::Write, &kernel()), 0x2);
    assert_eq!(w.code(U, Access::Fetch, &kernel()), 0x10);
    // I/D only with NXE or SMEP.
    let no_nx = CpuState { nxe: false, ..user() };
    assert_eq!(w.code(U, Access::Fetch, &no_nx), 0x4);
    let smep_only = CpuState { nxe: false, smep: true, ..user() };
    assert_eq!(w.code(U, Access::Fetch, &smep_only), 0x14);
    // Not present at level 1 with the tables above present.
    w.map(U, 0x500, PageSize::Size4K, P | RW | US);
    assert_eq!(w.code(U + 0x1000, Access::Read, &user()), 0x4);
    // A swap entry is not present for the hardware.
    let pte = w.leaf_pa(U);
    w.set_word(pte, |_| 0x07FF_FFFF_FFFF_FC00);
    assert_eq!(w.code(U, Access::Write, &user()), 0x6);
}

#[test]
fn user_supervisor_and_rw() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW); // supervisor page
    w.map(U + 0x1000, 0x501, PageSize::Size4K, P | US); // user read-only
    assert_eq!(w.code(U, Access::Read, &user()), 0x5);
    assert_eq!(w.code(U, Access::Write, &user()), 0x7);
    assert_eq!(w.tr(U + 0x1abc, Access::Read, &user()), Ok(0x501abc));
    assert_eq!(w.code(U + 0x1000, Access::Write, &user()), 0x7);
    // Supervisor write to a read-only page: faults with WP, allowed without.
    assert_eq!(w.code(U + 0x1000, Access::Write, &kernel()), 0x3);
    let no_wp = CpuState { wp: false, ..kernel() };
    assert_eq!(w.tr(U + 0x1000, Access::Write, &no_wp), Ok(0x501000));
    // ... but WP=0 never lets user mode write.
    let user_no_wp = CpuState { wp: false, ..user() };
    assert_eq!(w.code(U + 0x1000, Access::Write, &user_no_wp), 0x7);
    assert_eq!(w.tr(U, Access::Write, &kernel()), Ok(0x500000));
}

#[test]
fn rw_and_us_are_anded_over_levels() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW | US);
    assert_eq!(w.tr(U, Access::Write, &user()), Ok(0x500000));
    let path = w.path(U);
    // Clear R/W in the PDE only: the leaf's RW no longer suffices.
    w.set_word(path[2], |e| e & !0x2);
    assert_eq!(w.code(U, Access::Write, &user()), 0x7);
    let t = translate(&mut w.mem, w.root, va_(U), Access::Read, &user()).unwrap();
    assert!(!t.perms.writable && t.perms.user && !t.perms.nx);
    // Clear U/S in the PML4E: a user page no more.
    w.set_word(path[0], |e| e & !0x4);
    assert_eq!(w.code(U, Access::Read, &user()), 0x5);
    // NX in the PDPTE makes the whole range non-executable.
    w.set_word(path[0], |e| e | 0x4);
    w.set_word(path[1], |e| e | (1 << 63));
    assert_eq!(w.code(U, Access::Fetch, &user()), 0x15);
    assert!(translate(&mut w.mem, w.root, va_(U), Access::Read, &user()).unwrap().perms.nx);
}

#[test]
fn nx_smep_smap() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW | US | EntryFlags::NX);
    w.map(U + 0x1000, 0x501, PageSize::Size4K, P | RW | US);
    assert_eq!(w.code(U, Access::Fetch, &user()), 0x15);
    assert_eq!(w.code(U, Access::Fetch, &kernel()), 0x11);
    assert_eq!(w.tr(U + 0x1000, Access::Fetch, &user()), Ok(0x501000));
    // SMEP: supervisor fetch from a user page.
    assert_eq!(w.tr(U + 0x1000, Access::Fetch, &kernel()), Ok(0x501000));
    let smep = CpuState { smep: true, ..kernel() };
    assert_eq!(w.code(U + 0x1000, Access::Fetch, &smep), 0x11);
    // SMAP: supervisor data access to a user page unless EFLAGS.AC.
    let smap = CpuState { smap: true, ..kernel() };
    assert_eq!(w.code(U + 0x1000, Access::Read, &smap), 0x1);
    assert_eq!(w.code(U + 0x1000, Access::Write, &smap), 0x3);
    let smap_ac = CpuState { ac: true, ..smap };
    assert_eq!(w.tr(U + 0x1000, Access::Write, &smap_ac), Ok(0x501000));
    // SMAP does not apply to user-mode accesses.
    let user_smap = CpuState { smap: true, ..user() };
    assert_eq!(w.tr(U + 0x1000, Access::Read, &user_smap), Ok(0x501000));
    // With NXE off, bit 63 is reserved rather than NX.
    let no_nx = CpuState { nxe: false, ..user() };
    assert_eq!(w.code(U, Access::Read, &no_nx), 0xd);
}

#[test]
fn protection_keys() {
    let mut w = world();
    let key1 = EntryFlags::PKEY0;
    let key2 = EntryFlags::PKEY1;
    w.map(U, 0x500, PageSize::Size4K, P | RW | US | key1);
    w.map(U + 0x1000, 0x501, PageSize::Size4K, P | RW | US | key2);
    w.map(U + 0x2000, 0x502, PageSize::Size4K, P | RW | key1); // supervisor page
    // Key 1 access-disabled, key 2 write-disabled.
    let pkru = (1 << 2) | (1 << 5);
    let cpu = CpuState { pke: true, pkru, ..user() };
    assert_eq!(w.code(U, Access::Read, &cpu), 0x25);
    assert_eq!(w.code(U, Access::Write, &cpu), 0x27);
    assert_eq!(w.tr(U, Access::Fetch, &cpu), Ok(0x500000), "fetches ignore PKRU");
    assert_eq!(w.tr(U + 0x1000, Access::Read, &cpu), Ok(0x501000));
    assert_eq!(w.code(U + 0x1000, Access::Write, &cpu), 0x27);
    // Supervisor writes obey WD only with CR0.WP.
    let k = CpuState { pke: true, pkru, ..kernel() };
    assert_eq!(w.code(U + 0x1000, Access::Write, &k), 0x23);
    let k_nowp = CpuState { wp: false, ..k };
    assert_eq!(w.tr(U + 0x1000, Access::Write, &k_nowp), Ok(0x501000));
    // ... but AD blocks supervisor data accesses to user pages too.
    assert_eq!(w.code(U, Access::Read, &k), 0x21);
    // Keys do not apply to supervisor pages.
    assert_eq!(w.tr(U + 0x2000, Access::Write, &k), Ok(0x502000));
    // Without CR4.PKE the key bits mean nothing.
    let off = CpuState { pke: false, ..cpu };
    assert_eq!(w.tr(U, Access::Write, &off), Ok(0x500000));
    // PK is reported together with an ordinary R/W violation.
    w.map(U + 0x3000, 0x503, PageSize::Size4K, P | US | key2);
    assert_eq!(w.code(U + 0x3000, Access::Write, &cpu), 0x27);
}

#[test]
fn reserved_bits() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW | US);
    let path = w.path(U);
    let narrow = CpuState { maxphyaddr: 40, ..user() };
    // A leaf frame above MAXPHYADDR.
    w.set_word(path[3], |e| e | (1 << 45));
    assert_eq!(w.code(U, Access::Read, &narrow), 0xd);
    assert_eq!(w.code(U, Access::Write, &narrow), 0xf);
    assert_eq!(w.code(U, Access::Fetch, &narrow), 0x1d);
    assert_eq!(w.tr(U, Access::Read, &user()), Ok(0x2000_0050_0000));
    w.set_word(path[3], |e| e & !(1 << 45));
    // PS in a PML4E.
    w.set_word(path[0], |e| e | 0x80);
    assert_eq!(w.code(U, Access::Read, &user()), 0xd);
    assert_eq!(w.code(U, Access::Read, &kernel()), 0x9);
    w.set_word(path[0], |e| e & !0x80);
    assert_eq!(w.tr(U, Access::Read, &user()), Ok(0x500000));
    // Reserved bits are not checked in a non-present entry.
    w.set_word(path[3], |_| 1 << 51);
    assert_eq!(w.code(U, Access::Read, &narrow), 0x4);
    assert_eq!(
        translate(&mut w.mem, w.root, va_(U), Access::Read, &CpuState { maxphyaddr: 53, ..user() }),
        Err(Fault::BadMaxPhyAddr(53))
    );
}

#[test]
fn huge_pages() {
    let mut w = world();
    w.map(0x4000_0000, 0x4_0000, PageSize::Size1G, P | RW | US);
    w.map(0x20_0000, 0x200, PageSize::Size2M, P | RW | US | EntryFlags::PAT_LARGE);
    let t = translate(&mut w.mem, w.root, va_(0x7654_3210), Access::Write, &user()).unwrap();
    assert_eq!(t.pa.as_u64(), 0x4000_0000 + 0x3654_3210);
    assert_eq!(t.page_size, PageSize::Size1G);
    let t = translate(&mut w.mem, w.root, va_(0x3f_ffff), Access::Read, &user()).unwrap();
    assert_eq!((t.pa.as_u64(), t.page_size), (0x3f_ffff, PageSize::Size2M));
    // PAT_LARGE (bit 12) is not an address bit of a large leaf.
    assert_eq!(t.leaf_entry & 0x1000, 0x1000);
    // Bits below the page size are reserved in a large leaf.
    let pde = w.leaf_pa(0x20_0000);
    w.set_word(pde, |e| e | 0x2000);
    assert_eq!(w.code(0x20_0000, Access::Read, &user()), 0xd);
    let pdpte = w.leaf_pa(0x4000_0000);
    w.set_word(pdpte, |e| e | 0x2000_0000);
    assert_eq!(w.code(0x4000_0000, Access::Read, &user()), 0xd);
    let l = lookup(&w.mem, w.root, va_(0x4000_1234)).unwrap().unwrap();
    assert_eq!(l.level as u8, 3);
}

#[test]
fn accessed_and_dirty() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW | US);
    w.map(U + 0x1000, 0x501, PageSize::Size4K, P | US);
    let path = w.path(U);
    let clear_a = |w: &mut World| {
        for pa in &path {
            w.set_word(*pa, |e| e & !0x60);
        }
    };
    let a_bits = |w: &World| -> Vec<bool> {
        path.iter().map(|pa| w.mem.read_u64(*pa).unwrap() & 0x20 != 0).collect()
    };
    clear_a(&mut w);
    // A read sets A everywhere and D nowhere.
    let t = translate(&mut w.mem, w.root, va_(U), Access::Read, &user()).unwrap();
    assert_eq!(a_bits(&w), [true; 4]);
    assert_eq!(t.leaf_entry & 0x60, 0x20);
    assert_eq!(w.mem.read_u64(path[3]).unwrap() & 0x40, 0);
    // A write sets D on the leaf only.
    let t = translate(&mut w.mem, w.root, va_(U), Access::Write, &user()).unwrap();
    assert_eq!(t.leaf_entry & 0x60, 0x60);
    assert_eq!(w.mem.read_u64(path[3]).unwrap() & 0x60, 0x60);
    assert_eq!(w.mem.read_u64(path[2]).unwrap() & 0x40, 0);
    // A faulting access sets no A bit anywhere (as the CPU does under
    // KVM): a protection fault...
    clear_a(&mut w);
    assert_eq!(w.code(U, Access::Read, &kernel_smap()), 0x1);
    assert_eq!(a_bits(&w), [false; 4]);
    // ...a not-present fault at level 1...
    clear_a(&mut w);
    let pte = path[3];
    let saved = w.mem.read_u64(pte).unwrap();
    w.set_word(pte, |_| 0);
    assert_eq!(w.code(U, Access::Read, &user()), 0x4);
    assert_eq!(a_bits(&w), [false; 4]);
    w.set_word(pte, |_| saved & !0x60);
    // ...and a reserved-bit fault in the PDPTE.
    clear_a(&mut w);
    w.set_word(path[1], |e| e | (1 << 50));
    assert_eq!(w.code(U, Access::Read, &CpuState { maxphyaddr: 48, ..user() }), 0xd);
    assert_eq!(a_bits(&w), [false; 4]);
    w.set_word(path[1], |e| e & !(1 << 50));
    // A write to a read-only page does not set D.
    let ro = w.leaf_pa(U + 0x1000);
    w.set_word(ro, |e| e & !0x60);
    assert_eq!(w.code(U + 0x1000, Access::Write, &user()), 0x7);
    assert_eq!(w.mem.read_u64(ro).unwrap() & 0x60, 0);
}

fn kernel_smap() -> CpuState {
    CpuState { smap: true, ..kernel() }
}

/// A memory whose compare-exchange fails a given number of times, as if a
/// concurrent writer kept changing the entry.
struct Racy {
    inner: FrameMem,
    failures: u32,
}

impl PhysMem for Racy {
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        self.inner.read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, v: u64) -> Result<(), MemError> {
        self.inner.write_u64(pa, v)
    }
    fn compare_exchange_u64(
        &mut self,
        pa: PhysAddr,
        c: u64,
        n: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        if self.failures > 0 {
            self.failures -= 1;
            return Ok(Err(c ^ 1));
        }
        self.inner.compare_exchange_u64(pa, c, n)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
}

#[test]
fn compare_exchange_retries() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW | US);
    let leaf = w.leaf_pa(U);
    w.set_word(leaf, |e| e & !0x60);
    let mut racy = Racy { inner: w.mem.clone(), failures: 5 };
    let t = translate(&mut racy, w.root, va_(U), Access::Write, &user()).unwrap();
    assert_eq!(t.leaf_entry & 0x60, 0x60);
    let mut always = Racy { inner: w.mem.clone(), failures: u32::MAX };
    assert_eq!(
        translate(&mut always, w.root, va_(U), Access::Write, &user()),
        Err(Fault::Contended(va_(U)))
    );
}

#[test]
fn memory_errors_are_errors() {
    let mut w = world();
    w.map(U, 0x500, PageSize::Size4K, P | RW | US);
    // Point the PML4E at a table outside memory.
    let pml4e = w.path(U)[0];
    w.set_word(pml4e, |e| (e & 0xfff) | 0x1000_0000);
    assert!(matches!(
        translate(&mut w.mem, w.root, va_(U), Access::Read, &user()),
        Err(Fault::Mem(MemError::OutOfRange { .. }))
    ));
    assert!(lookup(&w.mem, w.root, va_(U)).is_err());
    let code = PfErrorCode::PRESENT | PfErrorCode::USER;
    assert_eq!(code.bits(), 5);
}
