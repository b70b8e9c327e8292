//! The configured sink of a bridge, built from its configuration.

use std::time::Duration;

use sluice_bridges::http::{HttpSink, HttpSinkConfig};
use sluice_bridges::kafka::{KafkaSink, KafkaSinkConfig};
use sluice_bridges::{Record, Sink, SinkError};

use crate::config::BridgeSinkConfig;

/// One of the sinks the broker knows. An enum rather than a trait object:
/// `Sink::send` returns an `impl Future`.
pub enum AnySink {
    /// Boxed: far larger than the Kafka handle, and built once per bridge.
    Http(Box<HttpSink>),
    Kafka(KafkaSink),
}

impl AnySink {
    /// Checks everything that can be checked before the first record
    /// (headers, CA files, librdkafka options); the error names the problem.
    pub fn build(cfg: &BridgeSinkConfig) -> Result<AnySink, String> {
        match cfg {
            BridgeSinkConfig::Http {
                method,
                headers,
                headers_from_env,
                timeout_secs,
                batch,
                tls_ca,
                batch_max_records,
                batch_max_bytes,
                linger_ms,
                ..
            } => {
                let mut all: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (header, var) in headers_from_env {
                    let value = std::env::var(var).map_err(|_| {
                        format!("header {header}: environment variable {var} is not set")
                    })?;
                    all.push((header.clone(), value));
                }
                HttpSink::new(HttpSinkConfig {
                    method: *method,
                    headers: all,
                    timeout: Duration::from_secs((*timeout_secs).max(1)),
                    batch: *batch,
                    tls_ca: tls_ca.clone(),
                    max_batch_records: *batch_max_records,
                    max_batch_bytes: *batch_max_bytes,
                    linger: Duration::from_millis(*linger_ms),
                    ..HttpSinkConfig::default()
                })
                .map(|s| AnySink::Http(Box::new(s)))
                .map_err(|e| e.to_string())
            }
            BridgeSinkConfig::Kafka {
                bootstrap_servers,
                acks,
                compression,
                max_in_flight,
                message_timeout_secs,
                record_retries,
                options,
                ..
            } => KafkaSink::new(KafkaSinkConfig {
                bootstrap_servers: bootstrap_servers.clone(),
                acks: acks.clone(),
                compression: *compression,
                max_in_flight: *max_in_flight,
                message_timeout: Duration::from_secs((*message_timeout_secs).max(1)),
                record_retries: *record_retries,
                options: options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .map(AnySink::Kafka)
            .map_err(|e| e.to_string()),
        }
    }
}

impl Sink for AnySink {
    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        match self {
            AnySink::Http(s) => s.send(batch).await,
            AnySink::Kafka(s) => s.send(batch).await,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AnySink::Http(s) => s.kind(),
            AnySink::Kafka(s) => s.kind(),
        }
    }

    fn max_batch(&self) -> usize {
        match self {
            AnySink::Http(s) => s.max_batch(),
            AnySink::Kafka(s) => s.max_batch(),
        }
    }

    fn max_batch_bytes(&self) -> usize {
        match self {
            AnySink::Http(s) => s.max_batch_bytes(),
            AnySink::Kafka(s) => s.max_batch_bytes(),
        }
    }

    fn linger(&self) -> Duration {
        match self {
            AnySink::Http(s) => s.linger(),
            AnySink::Kafka(s) => s.linger(),
        }
    }

    fn retry_after(&mut self) -> Option<Duration> {
        match self {
            AnySink::Http(s) => s.retry_after(),
            AnySink::Kafka(s) => s.retry_after(),
        }
    }
}
