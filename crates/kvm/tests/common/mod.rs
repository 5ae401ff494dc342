//! The hand-made machine the KVM tests share: its table frames, the data
//! frame, the harness frame, and a VM over 8 MiB that skips (visibly) when
//! /dev/kvm is not usable.

use pgtable::{Pfn, PhysAddr};
use phys::PhysMemory;
use ptemu_kvm::{HwMachine, KvmError};

pub const PML4: u64 = 0x100;
pub const PDPT: u64 = 0x101;
pub const PD: u64 = 0x102;
pub const PT: u64 = 0x103;
pub const DATA: u64 = 0x200;
const HARNESS: u64 = 0x300;

pub fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x).unwrap()
}

/// The VM, or `None` (after saying SKIPPED) where there is no usable KVM.
pub fn machine() -> Option<HwMachine> {
    let mem = PhysMemory::new(8 << 20).unwrap();
    match HwMachine::new(mem, Pfn(PML4).addr(), Pfn(HARNESS)) {
        Ok(m) => Some(m),
        Err(KvmError::NoKvm(why)) => {
            eprintln!("SKIPPED: /dev/kvm is not usable here ({why})");
            None
        }
        Err(e) => panic!("KVM set-up failed: {e}"),
    }
}
