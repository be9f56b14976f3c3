//! `handoff-server` binary.

fn main() {}
