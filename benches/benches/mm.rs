//! Placeholder until this group's benchmarks land.
#![allow(missing_docs)]
fn main() {}
