//! Integration tests of `handoff-protocol`: the golden wire files.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod events;
mod frames;
