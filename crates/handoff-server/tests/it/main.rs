//! Integration tests of the server: real HTTP and WebSocket on 127.0.0.1, on SQLite and on
//! PostgreSQL (a fresh database per run; set `HANDOFF_SKIP_PG=1` to skip PostgreSQL).
#![allow(clippy::unwrap_used, clippy::too_many_lines, clippy::missing_panics_doc)]

mod abuse;
mod agents;
mod bot;
mod canned;
mod delivery;
mod edge;
mod email;
mod feedback;
mod harness;
mod history;
mod privacy;
mod realtime;
mod rest;
mod search;
mod socket;
mod socket_abuse;
mod tabs;
mod widget_config;
mod writes;
