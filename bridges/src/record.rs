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

/// The record header holding the message's MQTT topic (every record the
/// transform makes has it): HTTP sends it as `sluice-mqtt-topic`, the MQTT
/// sink keeps it out of the user properties it forwards.
pub const TOPIC_HEADER: &str = "mqtt-topic";

/// The record header holding the broker's own id for the message, when it
/// has one (every QoS 1 message a durable broker bridges). Unlike
/// [`Record::id`] it survives a crash between buffering a message and
/// acknowledging it to the broker, when the message is buffered again
/// under a new record id.
pub const MESSAGE_ID_HEADER: &str = "msg-id";

impl Record {
    /// What consumers de-duplicate on (`sluice-msg-id` in Kafka,
    /// `sluice-record-id` in HTTP): the broker's message id when the record
    /// carries one, else the record id.
    pub fn dedup_id(&self) -> String {
        self.headers
            .iter()
            .find(|(name, _)| name == MESSAGE_ID_HEADER)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map_or_else(|| self.id.to_string(), str::to_owned)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
