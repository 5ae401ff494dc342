//! The era names a scenario may use.
//!
//! The emulator's rmap crate owns the meaning of an era; a scenario only
//! needs to reject a misspelt name before anything runs.

/// Every era, oldest first, spelt as in scenario files.
pub const KNOWN_ERAS: [&str; 6] = ["2.6.33", "2.6.34-rc3", "seed", "2.6.34", "2.6.36", "6.18"];

/// Whether `name` is an era ptemu knows.
pub fn is_known_era(name: &str) -> bool {
    KNOWN_ERAS.contains(&name)
}
