//! Integration tests of `handoff-protocol`: the golden wire files.

mod events;
mod frames;
