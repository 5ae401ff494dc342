//! Errors of the KVM oracle: each names the value or the ioctl that failed.

use pgtable::{PhysAddr, VirtAddr};

/// A failure to set up or run the guest, or a request it cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// /dev/kvm cannot be opened or does not answer (no KVM on this host).
    #[error("/dev/kvm is not usable: {0}")]
    NoKvm(String),
    /// A KVM ioctl failed.
    #[error("KVM ioctl {op} failed: {source}")]
    Ioctl {
        /// Which operation.
        op: &'static str,
        /// The errno KVM returned.
        source: kvm_ioctls::Error,
    },
    /// The physical memory is too small or too large for the harness.
    #[error("physical memory of {size:#x} bytes cannot hold the harness: {reason}")]
    BadMemory {
        /// Size of the memory.
        size: u64,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// A physical-memory access of the harness failed.
    #[error("physical memory access failed: {0}")]
    Mem(#[from] pgtable::MemError),
    /// The host CPU (as KVM exposes it) lacks a feature the access asks for.
    #[error("the host CPU does not offer {0} to guests")]
    Unsupported(&'static str),
    /// A page-table write asked of the guest lies outside the mapped window.
    #[error("table entry at {0} is outside the guest's table window")]
    OutsideWindow(PhysAddr),
    /// Too many table writes for one access (the mailbox holds 255).
    #[error("{0} table writes requested; the mailbox holds at most 255")]
    TooManyWrites(usize),
    /// The window or buffer mapping asked for does not fit the harness.
    #[error("cannot map {count} frames at {first}: {reason}")]
    BadWindow {
        /// First frame of the request.
        first: PhysAddr,
        /// Number of frames (or 2 MiB pages for buffers).
        count: u64,
        /// Why not.
        reason: &'static str,
    },
    /// The address is one the harness reserves for itself.
    #[error("{0} lies in the harness's reserved PML4 slot 511")]
    ReservedAddress(VirtAddr),
    /// The guest stopped in a way the harness never produces on purpose.
    #[error("the guest stopped unexpectedly: {0}")]
    UnexpectedExit(String),
}
