//! The sink a bridge's configuration names, as one type.

use std::time::Duration;

use crate::http::HttpSink;
use crate::kafka::KafkaSink;
use crate::mqtt::MqttSink;
use crate::record::Record;
use crate::sink::{Sink, SinkError};

/// One of the sinks the crate offers, built by
/// [`SinkConfig::build`](crate::config::SinkConfig::build). An enum rather
/// than a trait object: `Sink::send` returns an `impl Future`.
pub enum AnySink {
    /// Boxed: far larger than the Kafka handle, and built once per bridge.
    Http(Box<HttpSink>),
    Kafka(KafkaSink),
    /// Boxed: its settings and TLS connector are far larger than a handle.
    Mqtt(Box<MqttSink>),
}

impl AnySink {
    /// The state of the sink's own connection, for sinks that keep one
    /// (MQTT): connected, remote session present, reconnects, last error.
    pub fn link_status(&self) -> Option<std::sync::Arc<crate::mqtt::LinkStatus>> {
        match self {
            AnySink::Mqtt(s) => Some(s.status()),
            AnySink::Http(_) | AnySink::Kafka(_) => None,
        }
    }

    /// Kafka sinks' per-partition numbers and errors by code.
    pub fn kafka_status(&self) -> Option<std::sync::Arc<crate::kafka::KafkaStatus>> {
        match self {
            AnySink::Kafka(s) => Some(s.status()),
            AnySink::Http(_) | AnySink::Mqtt(_) => None,
        }
    }
}

impl AnySink {
    /// The in direction's receiving end, for sinks that have one (an MQTT
    /// bridge with `inbound` subscriptions); taken once.
    pub fn take_inbound(&mut self) -> Option<tokio::sync::mpsc::Receiver<crate::mqtt::Inbound>> {
        match self {
            AnySink::Mqtt(s) => s.take_inbound(),
            AnySink::Http(_) | AnySink::Kafka(_) => None,
        }
    }
}

impl Sink for AnySink {
    fn start(&mut self) {
        match self {
            AnySink::Http(s) => s.start(),
            AnySink::Kafka(s) => s.start(),
            AnySink::Mqtt(s) => s.start(),
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        match self {
            AnySink::Http(s) => s.send(batch).await,
            AnySink::Kafka(s) => s.send(batch).await,
            AnySink::Mqtt(s) => s.send(batch).await,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AnySink::Http(s) => s.kind(),
            AnySink::Kafka(s) => s.kind(),
            AnySink::Mqtt(s) => s.kind(),
        }
    }

    fn max_batch(&self) -> usize {
        match self {
            AnySink::Http(s) => s.max_batch(),
            AnySink::Kafka(s) => s.max_batch(),
            AnySink::Mqtt(s) => s.max_batch(),
        }
    }

    fn max_batch_bytes(&self) -> usize {
        match self {
            AnySink::Http(s) => s.max_batch_bytes(),
            AnySink::Kafka(s) => s.max_batch_bytes(),
            AnySink::Mqtt(s) => s.max_batch_bytes(),
        }
    }

    fn linger(&self) -> Duration {
        match self {
            AnySink::Http(s) => s.linger(),
            AnySink::Kafka(s) => s.linger(),
            AnySink::Mqtt(s) => s.linger(),
        }
    }

    fn retry_after(&mut self) -> Option<Duration> {
        match self {
            AnySink::Http(s) => s.retry_after(),
            AnySink::Kafka(s) => s.retry_after(),
            AnySink::Mqtt(s) => s.retry_after(),
        }
    }
}
