#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod error;
pub mod subs;
pub mod url;

#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(all(target_arch = "wasm32", feature = "supabase"))]
pub use browser::{connect_supabase, RealtimeChannel, RealtimeClient};
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
pub use browser::{counts_as_unread, AgentClient};
#[cfg(target_arch = "wasm32")]
pub use browser::{spawn_task, HandoffClient};

pub use error::ClientError;
pub use handoff_protocol;
