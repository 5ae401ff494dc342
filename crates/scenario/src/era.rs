//! The era names a scenario may use: exactly those of `rmap::Era`, which
//! owns what an era means; a scenario only needs to reject a misspelt name
//! before anything runs.

use rmap::Era;

/// Whether `name` is an era ptemu knows.
pub fn is_known_era(name: &str) -> bool {
    name.parse::<Era>().is_ok()
}

/// The era named `name`, if it is one.
pub fn era(name: &str) -> Option<Era> {
    name.parse::<Era>().ok()
}

/// Every era's name, oldest first, comma-separated (for messages).
pub fn known_names() -> String {
    Era::known_names()
}
