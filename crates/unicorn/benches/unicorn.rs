//! Criterion group `unicorn`: the same memory-bound guest loop
//! (guest/sweep.c: one load per page over 16 MiB, four rounds) on the same
//! page tables (built by ptemu's mm), with Unicorn's TLB flushed before
//! each run, translated
//! - by QEMU's own x86 walker (`TlbType::CPU`, CR3 = the process's PML4),
//! - by ptemu (`TlbType::VIRTUAL`, each fill answered by
//!   `ptemu_unicorn::emu::walk_fill`, the Emulator's fill path).
//!
//! Lives in this GPL crate, not in benches/ (which must not link Unicorn).
// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use mm::{Era, Machine, MachineConfig, Outcome, Pid, Prot};
use pgtable::walk::CpuState;
use pgtable::{PhysAddr, VirtAddr};
use ptemu_unicorn::emu::{access_of, walk_fill};
use ptemu_unicorn::{Image, image};
use unicorn_engine::{Arch, Mode, Prot as UcProt, RegisterX86, TlbType, Unicorn};

const DATA: u64 = 0x1000_0000_0000;
const PAGES: u64 = 4096;

fn machine() -> (Machine, Pid, u64) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-guest");
    let (bin, _) = image::build(&image::guest_dir().join("sweep.c"), &dir, false).unwrap();
    let img = Image::open(&bin).unwrap();
    let mut m = Machine::new(MachineConfig::new(Era::V6_18).memory(64 << 20)).unwrap();
    let pid = m.spawn().unwrap();
    img.load(&mut m, pid).unwrap();
    assert_eq!(m.mmap(pid, DATA, PAGES * 4096, Prot::Rw).unwrap(), Outcome::Done(Ok(())));
    for i in 0..PAGES {
        let va = DATA + i * 4096 + (i & 511) * 8;
        assert_eq!(m.write(pid, va, 1).unwrap(), Outcome::Done(()));
    }
    (m, pid, img.entry)
}

/// Maps `mem` as the engine's guest-physical RAM.
#[allow(unsafe_code)]
fn map<D>(uc: &mut Unicorn<'static, D>, mem: &phys::PhysMemory) {
    // SAFETY: the machine's mmap'd region outlives both engines: it is
    // owned by the ptemu engine's data, which is dropped last; QEMU
    // accesses it with the guest's loads and its walker's, on this thread
    // only, while no Rust code touches it.
    unsafe { uc.mem_map_ptr(0, mem.size(), UcProt::ALL, mem.as_ptr().cast()) }.unwrap();
}

fn run<D>(uc: &mut Unicorn<'static, D>, entry: u64) {
    uc.ctl_flush_tlb().unwrap();
    uc.emu_start(entry, 0, 0, 0).unwrap();
    assert_eq!(uc.reg_read(RegisterX86::RAX).unwrap(), 4 * PAGES);
}

fn bench(c: &mut Criterion) {
    let (m, pid, entry) = machine();
    let cr3: PhysAddr = m.cr3(pid).unwrap().addr();

    // ptemu answering every fill; the engine owns the machine.
    let mut pt = Unicorn::new_with_data(Arch::X86, Mode::MODE_64, m).unwrap();
    pt.ctl_set_tlb_type(TlbType::VIRTUAL).unwrap();
    let mem: *const phys::PhysMemory = pt.get_data().phys_memory();
    // SAFETY: see `map`; the pointer is to the machine inside `pt`'s data,
    // which does not move (boxed by the engine) and outlives `qemu`.
    #[allow(unsafe_code)]
    let mem: &phys::PhysMemory = unsafe { &*mem };
    map(&mut pt, mem);
    let cpu = CpuState::default();
    pt.add_tlb_hook(1, 0, move |uc: &mut Unicorn<'_, Machine>, va, ty| {
        walk_fill(uc.get_data().phys_memory(), cr3, VirtAddr::new(va).ok()?, access_of(ty), &cpu)
            .ok()
    })
    .unwrap();

    // QEMU's walker over the same tables.
    let mut qemu = Unicorn::new(Arch::X86, Mode::MODE_64).unwrap();
    qemu.ctl_set_tlb_type(TlbType::CPU).unwrap();
    map(&mut qemu, mem);
    let mut efer = [0u8; 16];
    efer[..4].copy_from_slice(&0xc000_0080u32.to_le_bytes());
    efer[8..].copy_from_slice(&((1u64 << 8) | (1 << 10) | (1 << 11)).to_le_bytes());
    qemu.reg_write_long(RegisterX86::MSR, &efer).unwrap();
    qemu.reg_write(RegisterX86::CR3, cr3.as_u64()).unwrap();
    qemu.reg_write(RegisterX86::CR4, 1 << 5).unwrap();
    qemu.reg_write(RegisterX86::CR0, (1 << 0) | (1 << 16) | (1 << 31)).unwrap();
    run(&mut qemu, entry);
    run(&mut pt, entry);

    let mut g = c.benchmark_group("unicorn");
    g.bench_function("sweep 16 MiB x4, QEMU's MMU (TlbType::CPU)", |b| {
        b.iter(|| run(&mut qemu, entry))
    });
    g.bench_function("sweep 16 MiB x4, ptemu's MMU (TlbType::VIRTUAL)", |b| {
        b.iter(|| run(&mut pt, entry))
    });
    g.finish();
    drop(qemu);
    drop(pt);
}

criterion_group!(benches, bench);
criterion_main!(benches);
