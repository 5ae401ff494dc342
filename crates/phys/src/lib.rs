//! The emulated machine's physical memory: one mmap'd region, a buddy frame
//! allocator and page descriptors (the emulator's `struct page`).
//!
//! This is the only crate besides the KVM one with `unsafe`, confined to the
//! module that touches the mmap'd region. It knows nothing of processes,
//! swap or rmap: a descriptor's `mapping` is an opaque word here.
#![deny(unsafe_code)]

pub mod error;
pub mod page;

pub use error::PhysError;
pub use page::{PAGE_MAPPING_ANON, PageDesc, PageDescs, PageFlags};
