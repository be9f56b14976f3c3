//! The embeddable Handoff chat widget.
//!
//! Site owners paste one script tag; the loader (`loader/widget.js`, served at `/widget.js`)
//! defines `window.Handoff` at once and imports this crate's wasm, whose `mount` builds the chat
//! window in a Shadow DOM on a [`handoff_client::HandoffClient`]: transport, reconnect-then-poll,
//! catch-up, outbox, typing and presence timers all live in the client and the protocol crate;
//! this crate is the view. [`model`] is the pure view model (tested natively); `ui` renders it.
#![forbid(unsafe_code)]

pub mod i18n;
pub mod model;

#[cfg(target_arch = "wasm32")]
mod dom;
#[cfg(target_arch = "wasm32")]
mod ui;

#[cfg(target_arch = "wasm32")]
pub use ui::{mount, Widget};
