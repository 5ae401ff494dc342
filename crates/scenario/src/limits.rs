//! The documented limits of a scenario (docs/fixtures.md, "Limits").
//!
//! They exist so that no input, however hostile, can make `ptemu run`
//! allocate without bound or run for hours: a scenario beyond them is a parse
//! error with the position of the offending statement.

/// Largest scenario file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Smallest physical memory: 64 frames, enough for tables and a few pages.
pub const MIN_MEMORY: u64 = 256 << 10;
/// Largest physical memory. The checker runs after every operation and
/// looks at every frame, so this bounds the cost of a step.
pub const MAX_MEMORY: u64 = 256 << 20;
/// Default physical memory when the scenario says nothing.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Smallest swap device: the header slot and one usable slot.
pub const MIN_SWAP: u64 = 2 * 4096;
/// Largest swap device, and largest total over all devices: the checker
/// and the step log look at every slot after every operation.
pub const MAX_SWAP: u64 = 256 << 20;
/// Most swap devices (types 0..MAX_SWAP_DEVICES-1).
pub const MAX_SWAP_DEVICES: usize = 8;
/// Largest length of one mmap, munmap, mprotect, madvise or reclaim.
pub const MAX_LEN: u64 = 1 << 30;
/// Most operations in one scenario (the checker runs after each).
pub const MAX_OPERATIONS: usize = 5_000;
/// Most processes created (`spawn` plus `fork`) in one scenario.
pub const MAX_PROCESSES: usize = 256;
/// Longest process name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Default era when the scenario names none.
pub const DEFAULT_ERA: &str = "6.18";
/// The byte `write` stores when the scenario gives no value.
pub const DEFAULT_WRITE_VALUE: u8 = 0xaa;
/// Most pages one step's state summary shows (the step log stays readable
/// and a step's cost does not grow with every address a scenario names).
pub const SUMMARY_PAGES: usize = 32;
