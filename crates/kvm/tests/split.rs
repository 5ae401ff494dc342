//! Accesses that cross a 4 KiB boundary, on the real CPU and through
//! ptemu-mmu's `translate_sized`: the same outcome, the same CR2 and error
//! code when the first or the second page faults, and the same A/D bits
//! left in both PTEs. Skips (visibly) when /dev/kvm is not usable.

use mmu::{Access, Config, Mmu, Regs};
use pgtable::{CpuState, Pfn, PhysMem, VirtAddr};
use phys::PhysMemory;
use ptemu_kvm::{HwAccess, HwMachine, HwOutcome};

mod common;
use common::{DATA, PD, PDPT, PML4, PT, machine, pa};

/// PML4 0, PDPT 0, PD 2, PT 0 and 1.
const PAGE0: u64 = 0x40_0000;

/// One case: the two PTEs, the access, its address.
struct Case {
    name: &'static str,
    pte0: u64,
    pte1: u64,
    access: Access,
    offset: u64,
}

fn run(m: &mut HwMachine, c: &Case) {
    let table = 0x7; // P | RW | US
    let writes = [
        (pa(PML4 * 4096), (PDPT * 4096) | table | 0x20),
        (pa(PDPT * 4096), (PD * 4096) | table | 0x20),
        (pa(PD * 4096 + 2 * 8), (PT * 4096) | table | 0x20),
        (pa(PT * 4096), c.pte0),
        (pa(PT * 4096 + 8), c.pte1),
    ];
    let va = PAGE0 + c.offset;
    let data0 = pa(DATA * 4096 + 0xff8);
    let data1 = pa((DATA + 1) * 4096);
    let value = 0x1122_3344_5566_7788u64;
    let reset = |m: &HwMachine| {
        let mut mem: &PhysMemory = m.mem();
        mem.write_u64(data0, 0xaaaa_aaaa_aaaa_aaaa).unwrap();
        mem.write_u64(data1, 0xbbbb_bbbb_bbbb_bbbb).unwrap();
        for (at, v) in writes {
            mem.write_u64(at, v).unwrap();
        }
    };

    // The CPU, in ring 3, with an 8-byte access.
    reset(m);
    let cpu = CpuState { user: true, maxphyaddr: 48, ..CpuState::default() };
    let req =
        HwAccess { va: VirtAddr::new(va).unwrap(), access: c.access, cpu, write_value: value };
    let mut hw = m.access(&req, &writes).unwrap();
    if c.access == Access::Write {
        if let HwOutcome::Done { value } = &mut hw {
            *value = 0; // a completed write reports nothing
        }
    }
    let mem: &PhysMemory = m.mem();
    let hw_ptes = (mem.load(pa(PT * 4096)).unwrap(), mem.load(pa(PT * 4096 + 8)).unwrap());
    let hw_data = (mem.load(data0).unwrap(), mem.load(data1).unwrap());

    // ptemu-mmu on the same tables, from the same starting state.
    reset(m);
    let mut mmu = Mmu::new(Config { maxphyaddr: 48, ..Config::default() }).unwrap();
    mmu.set_regs(Regs::long_mode(PML4 * 4096)).unwrap();
    mmu.set_cpl(3);
    let mut mem: &PhysMemory = m.mem();
    let ours = match mmu.translate_sized(&mut mem, va, 8, c.access) {
        Ok(span) => {
            let mut bytes = [0u8; 8];
            if c.access == Access::Write {
                let le = value.to_le_bytes();
                let (a, b) = le.split_at(span.first_len);
                for (k, byte) in a.iter().enumerate() {
                    write_byte(&mut mem, span.first.as_u64() + k as u64, *byte);
                }
                for (k, byte) in b.iter().enumerate() {
                    write_byte(&mut mem, span.second.unwrap().as_u64() + k as u64, *byte);
                }
                HwOutcome::Done { value: 0 }
            } else {
                for (k, byte) in bytes.iter_mut().enumerate() {
                    let at = if k < span.first_len {
                        span.first.as_u64() + k as u64
                    } else {
                        span.second.unwrap().as_u64() + (k - span.first_len) as u64
                    };
                    *byte = read_byte(&mem, at);
                }
                HwOutcome::Done { value: u64::from_le_bytes(bytes) }
            }
        }
        Err(e) => {
            let pf = e.page_fault().unwrap_or_else(|| panic!("{}: {e}", c.name));
            HwOutcome::PageFault { error_code: pf.error_code.bits(), cr2: pf.addr.as_u64() }
        }
    };
    let our_ptes = (mem.load(pa(PT * 4096)).unwrap(), mem.load(pa(PT * 4096 + 8)).unwrap());
    let our_data = (mem.load(data0).unwrap(), mem.load(data1).unwrap());
    eprintln!("{}: CPU {hw:?}, PTEs {:#x} {:#x}", c.name, hw_ptes.0, hw_ptes.1);
    assert_eq!(ours, hw, "{}: outcome", c.name);
    assert_eq!(our_ptes, hw_ptes, "{}: A/D bits in the two PTEs", c.name);
    assert_eq!(our_data, hw_data, "{}: data bytes", c.name);
}

fn read_byte(mem: &&PhysMemory, at: u64) -> u8 {
    let w = mem.read_u64(pa(at & !7)).unwrap();
    (w >> (8 * (at & 7))) as u8
}

fn write_byte(mem: &mut &PhysMemory, at: u64, b: u8) {
    let w = mem.read_u64(pa(at & !7)).unwrap();
    let sh = 8 * (at & 7);
    mem.write_u64(pa(at & !7), (w & !(0xff << sh)) | (u64::from(b) << sh)).unwrap();
}

#[test]
fn split_accesses_match_the_cpu() {
    let Some(mut m) = machine() else { return };
    m.map_table_window(Pfn(PML4), 4).unwrap();
    let rw = 0x7; // P | RW | US
    let ro = 0x5; // P | US
    let p0 = DATA * 4096;
    let p1 = (DATA + 1) * 4096;
    let cases = [
        Case {
            name: "read, both present",
            pte0: p0 | rw,
            pte1: p1 | rw,
            access: Access::Read,
            offset: 0xffc,
        },
        Case {
            name: "write, both present",
            pte0: p0 | rw,
            pte1: p1 | rw,
            access: Access::Write,
            offset: 0xffa,
        },
        Case {
            name: "read, 2nd not present",
            pte0: p0 | rw,
            pte1: 0,
            access: Access::Read,
            offset: 0xffc,
        },
        Case {
            name: "write, 2nd not present",
            pte0: p0 | rw,
            pte1: 0,
            access: Access::Write,
            offset: 0xffd,
        },
        Case {
            name: "write, 2nd read-only",
            pte0: p0 | rw,
            pte1: p1 | ro,
            access: Access::Write,
            offset: 0xff9,
        },
        Case {
            name: "write, 1st read-only",
            pte0: p0 | ro,
            pte1: p1 | rw,
            access: Access::Write,
            offset: 0xffc,
        },
        Case {
            name: "read, 1st not present",
            pte0: 0,
            pte1: p1 | rw,
            access: Access::Read,
            offset: 0xffe,
        },
        Case {
            name: "read, neither present",
            pte0: 0,
            pte1: 0,
            access: Access::Read,
            offset: 0xffb,
        },
    ];
    for c in &cases {
        run(&mut m, c);
    }
}
