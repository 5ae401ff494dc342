//! Errors of the Unicorn embedding: every one names what failed.

use thiserror::Error;

/// What went wrong running a guest (not the guest's own SIGSEGV or the
/// kernel's oops: those are outcomes in the run's report).
#[derive(Debug, Error)]
pub enum UnicornError {
    /// The emulated machine refused an operation.
    #[error("machine: {0}")]
    Mm(#[from] mm::MmError),
    /// A Unicorn call failed.
    #[error("unicorn: {what}: {err}")]
    Unicorn {
        /// The operation.
        what: &'static str,
        /// Unicorn's error.
        err: String,
    },
    /// The guest stopped for a reason the kernel did not cause (an invalid
    /// instruction, an interrupt nobody handles).
    #[error("process {pid} stopped at rip {rip:#x}: {err}")]
    Guest {
        /// The process.
        pid: mm::Pid,
        /// Where.
        rip: u64,
        /// Unicorn's error.
        err: String,
    },
    /// The instruction limit ran out.
    #[error("process {pid} ran {limit} instructions without stopping")]
    Runaway {
        /// The process.
        pid: mm::Pid,
        /// The limit.
        limit: usize,
    },
    /// The walker failed for a reason other than a page fault.
    #[error("walk: {0}")]
    Walk(String),
    /// The emulated kernel could not complete an operation.
    #[error("kernel: {0}")]
    Kernel(String),
    /// There is no process to run.
    #[error("no process to run")]
    NoProcess,
    /// A guest image is malformed.
    #[error("image {path}: {what}")]
    Image {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// Building a guest program failed.
    #[error("building {what}: {detail}")]
    Build {
        /// The program.
        what: String,
        /// The compiler's or linker's complaint.
        detail: String,
    },
    /// The check's memory refused an access.
    #[error("memory: {0}")]
    Mem(#[from] pgtable::MemError),
    /// An I/O error, with the file.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        err: std::io::Error,
    },
}
