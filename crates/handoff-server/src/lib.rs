//! The Handoff server.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod error;
pub mod realtime;
pub mod service;
pub mod store;
