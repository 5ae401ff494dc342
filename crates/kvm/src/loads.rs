//! The guest as a benchmark: a loop of loads through ptemu-built tables,
//! timed from the host, for the hardware's walk speed beside ptemu's.
//!
//! The guest runs `mov rax, [array[i & mask]]` for i in 0..loads, in ring 3
//! or ring 0, with CR3 at the caller's PML4 (reloaded once before the loop), so with
//! more pages than the TLB holds most loads miss the TLB and walk. The time
//! is the wall time of the KVM_RUN that ran the loop, so it includes one VM
//! entry and exit (microseconds), which the loop length amortises.

use std::time::Duration;

use pgtable::{CpuState, Pfn, PhysAddr, PhysMem};
use phys::PhysMemory;

use crate::error::KvmError;
use crate::machine::HwMachine;

/// Largest address array: 511 two-MiB pages of 8-byte addresses.
pub const MAX_ADDRESSES: usize = 511 * (2 << 20) / 8;

/// A VM ready to run the load loop over a fixed address array.
#[derive(Debug)]
pub struct LoadLoop {
    machine: HwMachine,
    array_va: u64,
    mask: u64,
}

impl LoadLoop {
    /// Takes `mem`, which already holds page tables rooted at `cr3` mapping
    /// every address of `addrs` to RAM, installs the harness in frames
    /// `harness_base..+HARNESS_FRAMES`, writes `addrs` (a power-of-two
    /// count, at most [`MAX_ADDRESSES`]) at `array_pa` (2 MiB aligned) and
    /// maps that array for the guest. None of these ranges may overlap.
    pub fn new(
        mem: PhysMemory,
        cr3: PhysAddr,
        harness_base: Pfn,
        array_pa: PhysAddr,
        addrs: &[u64],
    ) -> Result<Self, KvmError> {
        let n = addrs.len();
        if n == 0 || !n.is_power_of_two() || n > MAX_ADDRESSES {
            return Err(KvmError::BadWindow {
                first: array_pa,
                count: n as u64,
                reason: "the address array needs a power-of-two length up to 511 * 2 MiB / 8",
            });
        }
        let bytes = n as u64 * 8;
        let pages = bytes.div_ceil(2 << 20);
        if array_pa.as_u64() + pages * (2 << 20) > mem.size() {
            return Err(KvmError::BadMemory {
                size: mem.size(),
                reason: "the address array lies beyond its end",
            });
        }
        {
            let mut m: &PhysMemory = &mem;
            for (i, a) in addrs.iter().enumerate() {
                let at = PhysAddr::new(array_pa.as_u64() + 8 * i as u64).map_err(|_| {
                    KvmError::BadMemory { size: mem.size(), reason: "array address too wide" }
                })?;
                m.write_u64(at, *a)?;
            }
        }
        let mut machine = HwMachine::new(mem, cr3, harness_base)?;
        let array_va = machine.map_buffer(array_pa, pages)?;
        Ok(Self { machine, array_va, mask: n as u64 - 1 })
    }

    /// Runs `loads` loads, in ring 3 when `user` (the tables must then map
    /// the addresses user-accessible) or ring 0, and returns their time.
    pub fn run(&mut self, loads: u64, user: bool) -> Result<Duration, KvmError> {
        let cpu = CpuState {
            user,
            maxphyaddr: self.machine.features().maxphyaddr,
            ..CpuState::default()
        };
        self.machine.run_loads(&cpu, self.array_va, self.mask, loads)
    }

    /// The machine (its memory holds the tables, with the CPU's A/D bits).
    pub fn machine(&self) -> &HwMachine {
        &self.machine
    }
}
