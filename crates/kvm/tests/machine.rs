//! The harness on the real CPU: a read, a write and faults through hand-made
//! tables. Skips (visibly) when /dev/kvm is not usable.

use pgtable::{Access, CpuState, Pfn, PhysMem, VirtAddr};
use phys::PhysMemory;
use ptemu_kvm::{HwAccess, HwOutcome};

mod common;
use common::{DATA, PD, PDPT, PML4, PT, machine, pa};

fn cpu(user: bool) -> CpuState {
    CpuState { user, maxphyaddr: 48, ..CpuState::default() }
}

#[test]
fn read_write_and_faults() {
    let Some(mut m) = machine() else { return };
    m.map_table_window(Pfn(PML4), 4).unwrap();
    let va = VirtAddr::new(0x40_0000 + 0x18).unwrap(); // PML4 0, PDPT 0, PD 2, PT 0
    let table = 0x7; // P | RW | US
    let writes = [
        (pa(PML4 * 4096), (PDPT * 4096) | table),
        (pa(PDPT * 4096), (PD * 4096) | table),
        (pa(PD * 4096 + 2 * 8), (PT * 4096) | table),
        (pa(PT * 4096), (DATA * 4096) | table),
    ];
    let mut mem: &PhysMemory = m.mem();
    mem.write_u64(pa(DATA * 4096 + 0x18), 0x1122_3344_5566_7788).unwrap();
    let read = HwAccess { va, access: Access::Read, cpu: cpu(true), write_value: 0 };
    assert_eq!(m.access(&read, &writes).unwrap(), HwOutcome::Done { value: 0x1122_3344_5566_7788 });
    let mem: &PhysMemory = m.mem();
    // The CPU set Accessed on every entry of the walk, Dirty nowhere.
    assert_eq!(mem.load(pa(PT * 4096)).unwrap(), (DATA * 4096) | table | 0x20);
    assert_eq!(mem.load(pa(PML4 * 4096)).unwrap() & 0x60, 0x20);

    let write = HwAccess { va, access: Access::Write, cpu: cpu(false), write_value: 0xabcd };
    assert!(matches!(m.access(&write, &writes).unwrap(), HwOutcome::Done { .. }));
    let mem: &PhysMemory = m.mem();
    assert_eq!(mem.load(pa(DATA * 4096 + 0x18)).unwrap(), 0xabcd);
    assert_eq!(mem.load(pa(PT * 4096)).unwrap(), (DATA * 4096) | table | 0x60);

    // Not present at the PTE: error code U (user read), CR2 = address.
    let mut w2 = writes;
    w2[3].1 = 0;
    assert_eq!(
        m.access(&read, &w2).unwrap(),
        HwOutcome::PageFault { error_code: 0x4, cr2: va.as_u64() }
    );
    // Read-only PTE, user write: P | W | U.
    w2[3].1 = (DATA * 4096) | 0x5;
    let uw = HwAccess { cpu: cpu(true), ..write };
    assert_eq!(
        m.access(&uw, &w2).unwrap(),
        HwOutcome::PageFault { error_code: 0x7, cr2: va.as_u64() }
    );
}

#[test]
fn access_beyond_ram_is_an_mmio_exit_and_the_vcpu_recovers() {
    let Some(mut m) = machine() else { return };
    m.map_table_window(Pfn(PML4), 4).unwrap();
    let va = VirtAddr::new(0x40_0000 + 0x18).unwrap();
    let table = 0x7;
    let mut writes = [
        (pa(PML4 * 4096), (PDPT * 4096) | table),
        (pa(PDPT * 4096), (PD * 4096) | table),
        (pa(PD * 4096 + 2 * 8), (PT * 4096) | table),
        // A frame at 1 TiB: within MAXPHYADDR, far beyond the 8 MiB of RAM.
        (pa(PT * 4096), (1 << 40) | table),
    ];
    let read = HwAccess { va, access: Access::Read, cpu: cpu(false), write_value: 0 };
    assert_eq!(m.access(&read, &writes).unwrap(), HwOutcome::Mmio { addr: (1 << 40) + 0x18 });
    // The next access runs normally.
    writes[3].1 = (DATA * 4096) | table;
    let mut mem: &PhysMemory = m.mem();
    mem.write_u64(pa(DATA * 4096 + 0x18), 42).unwrap();
    assert_eq!(m.access(&read, &writes).unwrap(), HwOutcome::Done { value: 42 });
}
