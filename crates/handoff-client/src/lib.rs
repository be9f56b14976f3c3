#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod error;
pub mod subs;
pub mod url;

#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
pub use browser::{connect_supabase, AgentClient, HandoffClient, RealtimeChannel, RealtimeClient};

pub use error::ClientError;
pub use handoff_protocol;
