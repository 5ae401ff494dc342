//! Shared set-up for ptemu's criterion benchmarks.
#![forbid(unsafe_code)]
