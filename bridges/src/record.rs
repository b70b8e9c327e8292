//! What flows through a bridge.

use bytes::Bytes;

/// A message as the broker hands it to a bridge, before the transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Wall-clock milliseconds since the Unix epoch when the broker accepted it.
    pub timestamp_ms: u64,
    /// MQTT 5 user properties, in order.
    pub user_properties: Vec<(String, String)>,
}

/// A record ready for a sink: the transformed payload and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unique per bridge and never reused, carried to the sink (Kafka
    /// header / HTTP header `sluice-record-id`) so consumers can drop the
    /// duplicates that at-least-once delivery allows after a crash.
    pub id: u64,
    /// Kafka topic or HTTP URL, rendered from the bridge's template.
    pub destination: String,
    /// Kafka key, rendered from the bridge's key template.
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// Extra headers (the MQTT topic, user properties, ...).
    pub headers: Vec<(String, Bytes)>,
    pub timestamp_ms: u64,
}
