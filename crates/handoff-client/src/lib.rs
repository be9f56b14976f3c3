#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod error;
pub mod subs;
pub mod url;

#[cfg(target_arch = "wasm32")]
mod browser;

pub use error::ClientError;
pub use handoff_protocol;
