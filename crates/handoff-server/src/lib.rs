//! The Handoff server.
#![forbid(unsafe_code)]

pub mod realtime;
