//! Sluice: an MQTT 3.1.1 + 5.0 broker.
//!
//! Layout:
//! - `codec`: bytes ⇄ packets, strict validation, reason codes.
//! - `topic`: validated topic names and filters, the subscription tree.
//! - `session`: the per-client protocol state machine (no I/O, no clock).
//! - `broker`: the shared state (sessions, router, retained messages).
//! - `server`: listeners and connection tasks that move bytes and timers.
//! - `config`: the TOML/env configuration with validation.
//! - `auth`: mosquitto-compatible password and ACL files.
//! - `store`: the durable journal (fjall) behind sessions and retained messages.
//! - `bridge`: bridges to Kafka and HTTP inside the broker.
//! - `cluster`: cluster mode on NATS JetStream (in progress: topic ⇄ subject).
//! - `admin`: the admin HTTP listener (metrics, health, REST API).
//! - `ops`: `$SYS` topics, process statistics, configuration reloads.
//!
//! A module imports only from the floors below its own (codec; topic,
//! auth; session; store; config; broker; server, bridge, cluster; ops;
//! admin):
//! docs/ARCHITECTURE.md draws them, `tests/layers.rs` checks them.

// No unwrap on anything outside tests (house rule; Cargo.toml says why
// this is not in the [lints] table).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod cluster;
/// The wire codec is a crate of its own (`codec/`, shared with the bridges
/// crate's MQTT client); it keeps its place as the bottom floor here.
pub use sluice_codec as codec;
pub mod config;
pub mod ops;
pub mod server;
pub mod session;
pub mod store;
pub mod topic;
