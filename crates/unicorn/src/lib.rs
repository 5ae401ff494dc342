//! Unicorn (QEMU's TCG behind a C API) executes x86-64 code with ptemu as
//! its MMU and Linux mm, and QEMU's own page walker becomes a third
//! reference beside ptemu's and KVM's.
//!
//! - [`emu`]: Unicorn's TLB fills answered by ptemu's walk over a
//!   [`mm::Machine`] process's tables, faults handled by mm's page-fault
//!   handler, a `syscall` kernel (mmap, munmap, mprotect, madvise, fork,
//!   exit, wait4, reclaim), and mm's TLB shootdowns flushing Unicorn's TLB.
//! - [`check`]: QEMU's page walker (`TlbType::CPU`) against ptemu's on
//!   hwcheck's random tables and accesses.
//! - [`image`]: C guest programs built with the machine's compiler into a
//!   flat image, and the loader.
//!
//! Licence: this crate links Unicorn (GPL-2.0) and is therefore under the
//! GPL-2.0-or-later; nothing else in the workspace depends on it.
#![deny(unsafe_code)]

pub mod check;
pub mod emu;
pub mod error;
pub mod image;

pub use emu::{EmuConfig, Emulator, Exit, RunReport, Stats};
pub use error::UnicornError;
pub use image::Image;
