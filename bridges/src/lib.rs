//! Sluice bridges: forward MQTT messages to other systems without losing
//! what the broker acknowledged.
//!
//! This crate knows nothing of the broker's internals. The broker hands a
//! bridge each matching message as an [`Input`]; the bridge transforms it
//! into a [`Record`], appends it to its durable [`buffer`], and a sink
//! (`http`, `kafka`, `mqtt`) drains the buffer, acknowledging records only
//! when the far side has them.
//!
//! Layout: `record` (the data model), `sink` (the trait sinks implement),
//! `buffer` (the durable segment log), `transform` (jq via jaq, payload
//! decoding, templates), `http` (the HTTP sink), `kafka` (the Kafka sink),
//! `mqtt` (the MQTT sink: store-and-forward to a remote broker),
//! `config` (a bridge's configuration as the broker's file holds it: keys,
//! defaults, validation), `any_sink` (the configured sink as one type),
//! `delivery` (the loop that drains a buffer into a sink).

mod any_sink;
pub mod buffer;
pub mod config;
pub mod delivery;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod record;
pub mod sink;
pub mod transform;

pub use any_sink::AnySink;
pub use config::{BridgeAck, BridgeConfig, SinkBuildError, SinkConfig, CLIENT_ID_PREFIX};
pub use record::{Input, Record};
pub use sink::{Sink, SinkError};
