//! The KVM virtual machine whose guest RAM is ptemu's physical memory.
//!
//! This is the only module with `unsafe`: registering the mmap'd region of a
//! [`PhysMemory`] as the guest's memory slot 0. The [`Vm`] owns that memory,
//! so the mapping outlives every use KVM makes of it (fields drop in
//! declaration order: the vCPU and VM file descriptors go before the memory).

#![allow(unsafe_code)]

use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, kvm_regs, kvm_sregs, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use phys::PhysMemory;

use crate::error::KvmError;

/// Why the vCPU returned to us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An `out` to `port` (the harness's way to report).
    Out {
        /// The port written.
        port: u16,
    },
    /// The guest touched guest-physical memory outside RAM.
    Mmio {
        /// The guest-physical address.
        addr: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// Anything else (halt, shutdown, failed entry...), described.
    Other(String),
}

fn ioctl(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { op, source }
}

/// A VM with one vCPU and ptemu's physical memory as its RAM at
/// guest-physical address 0.
pub struct Vm {
    vcpu: VcpuFd,
    _vm: VmFd,
    cpuid: CpuId,
    _kvm: Kvm,
    mem: PhysMemory,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("mem_size", &self.mem.size()).finish_non_exhaustive()
    }
}

impl Vm {
    /// Opens /dev/kvm, creates the VM and its vCPU 0 with the CPUID KVM
    /// supports, and hands `mem` to the guest as RAM (no copy).
    pub fn new(mem: PhysMemory) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(|e| KvmError::NoKvm(format!("open: {e}")))?;
        let vm = kvm.create_vm().map_err(|e| KvmError::NoKvm(format!("KVM_CREATE_VM: {e}")))?;
        let size = mem.size();
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: size,
            userspace_addr: mem.as_ptr() as u64,
        };
        // SAFETY: the region is `mem`'s whole mapping (page-aligned, `size`
        // bytes, from `PhysMemory::as_ptr`), which `Vm` owns and drops only
        // after the VM fd, so KVM never sees it unmapped. The guest writes it
        // only while `run` blocks in KVM_RUN on this thread, and the phys
        // crate touches it solely through atomic word accesses and never
        // holds Rust references over it, so the guest's stores race with no
        // reference.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        let vcpu = vm.create_vcpu(0).map_err(ioctl("KVM_CREATE_VCPU"))?;
        vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;
        Ok(Self { vcpu, _vm: vm, cpuid, _kvm: kvm, mem })
    }

    /// The guest's RAM, which is ptemu's physical memory.
    pub fn mem(&self) -> &PhysMemory {
        &self.mem
    }

    /// The CPUID leaves the guest sees (what KVM supports on this host).
    pub fn cpuid(&self) -> &CpuId {
        &self.cpuid
    }

    /// The vCPU's special registers.
    pub fn sregs(&self) -> Result<kvm_sregs, KvmError> {
        self.vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))
    }

    /// Sets the vCPU's special registers (control registers, segments).
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<(), KvmError> {
        self.vcpu.set_sregs(sregs).map_err(ioctl("KVM_SET_SREGS"))
    }

    /// The vCPU's general registers.
    pub fn regs(&self) -> Result<kvm_regs, KvmError> {
        self.vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))
    }

    /// Sets the vCPU's general registers.
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<(), KvmError> {
        self.vcpu.set_regs(regs).map_err(ioctl("KVM_SET_REGS"))
    }

    /// Lets KVM finish an instruction it left pending at the last exit (an
    /// MMIO access) without running the guest on, so that the next register
    /// load starts from a clean vCPU (KVM's documented use of
    /// `immediate_exit`).
    pub fn complete_pending(&mut self) -> Result<(), KvmError> {
        self.vcpu.set_kvm_immediate_exit(1);
        let r = self.vcpu.run().map(|_| ()).map_err(|e| (e.errno(), e));
        self.vcpu.set_kvm_immediate_exit(0);
        match r {
            Ok(()) => Ok(()),
            Err((errno, _)) if errno == libc_eintr() => Ok(()),
            Err((_, source)) => Err(KvmError::Ioctl { op: "KVM_RUN (immediate exit)", source }),
        }
    }

    /// Runs the vCPU until it exits to us, retrying on signal interruptions.
    pub fn run(&mut self) -> Result<Exit, KvmError> {
        loop {
            let exit = match self.vcpu.run() {
                Ok(e) => e,
                Err(e) if e.errno() == libc_eintr() => continue,
                Err(source) => return Err(KvmError::Ioctl { op: "KVM_RUN", source }),
            };
            return Ok(match exit {
                VcpuExit::IoOut(port, _) => Exit::Out { port },
                VcpuExit::IoIn(port, _) => Exit::Other(format!("in from port {port:#x}")),
                VcpuExit::MmioRead(addr, _) => Exit::Mmio { addr, write: false },
                VcpuExit::MmioWrite(addr, _) => Exit::Mmio { addr, write: true },
                VcpuExit::Intr => continue,
                other => Exit::Other(format!("{other:?}")),
            });
        }
    }
}

/// EINTR, without a libc dependency for one constant.
const fn libc_eintr() -> i32 {
    4
}
