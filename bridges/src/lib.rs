//! Sluice bridges: forward MQTT messages to other systems without losing
//! what the broker acknowledged.
//!
//! This crate knows nothing of the broker's internals. The broker hands a
//! bridge each matching message as an [`Input`]; the bridge transforms it
//! into a [`Record`], appends it to its durable [`buffer`], and a sink
//! (`http`, `kafka`) drains the buffer, acknowledging records only
//! when the far side has them.
//!
//! Layout: `record` (the data model), `sink` (the trait sinks implement),
//! `buffer` (the durable segment log), `transform` (jq via jaq, payload
//! decoding, templates), `http` (the HTTP sink), `kafka` (the Kafka sink).

pub mod buffer;
pub mod http;
pub mod kafka;
pub mod record;
pub mod sink;
pub mod transform;

pub use record::{Input, Record};
pub use sink::{Sink, SinkError};
