//! `ptemu`: the command-line front end.
#![forbid(unsafe_code)]

fn main() {}
