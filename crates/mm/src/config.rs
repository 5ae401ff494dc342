//! How a machine is built: the era, physical memory size and swap devices.

use rmap::{Era, RmapSemantics};

/// Default physical memory: 64 MiB, as the scenario language's default.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// Default swap: one device of 64 MiB.
pub const DEFAULT_SWAP: u64 = 64 << 20;

/// The configuration of a [`crate::Machine`].
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// A name for the semantics (the era's name, or "custom").
    pub era_name: String,
    /// The behaviour switches (an era's, or a custom set).
    pub semantics: RmapSemantics,
    /// Physical memory size in bytes (a non-zero multiple of 4 KiB).
    pub memory: u64,
    /// One size in bytes per swap device; index = swap type.
    pub swap: Vec<u64>,
}

impl MachineConfig {
    /// An era's machine with the default memory and one default swap device.
    pub fn new(era: Era) -> Self {
        Self {
            era_name: era.name().to_string(),
            semantics: era.semantics(),
            memory: DEFAULT_MEMORY,
            swap: vec![DEFAULT_SWAP],
        }
    }

    /// A machine with custom switches, named `name` in reports.
    pub fn custom(name: impl Into<String>, semantics: RmapSemantics) -> Self {
        Self { era_name: name.into(), semantics, memory: DEFAULT_MEMORY, swap: vec![DEFAULT_SWAP] }
    }

    /// Sets the memory size in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Sets the swap devices, one size in bytes each.
    pub fn swap(mut self, sizes: Vec<u64>) -> Self {
        self.swap = sizes;
        self
    }
}
