//! A buffered record as the PUBLISH the remote receives: its topic checked,
//! its QoS capped, its retain flag kept or cleared, its user properties and
//! the bridge's loop marker (MQTT 5).

use bytestring::ByteString;
use sluice_codec::{Properties, Publish, QoS};

use super::config::{MqttSinkConfig, RemoteProtocol, RetainPolicy};
use crate::record::{Record, MESSAGE_ID_HEADER, TOPIC_HEADER};
use crate::transform::{MQTT_QOS_HEADER, MQTT_RETAIN_HEADER};

/// The user property every message the bridge publishes carries (MQTT 5),
/// naming the bridge's client id: a bridge taking messages in from a
/// remote does not send those back out, so two brokers bridged both ways
/// do not loop.
pub const LOOP_MARKER: &str = "sluice-bridge";

/// The user property holding the local broker's message id, for consumers
/// that de-duplicate what at-least-once delivery may repeat.
pub const MESSAGE_ID_PROPERTY: &str = "sluice-msg-id";

/// One record ready to go: its id (which fixes its packet id) and its
/// PUBLISH, without a packet id yet.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) id: u64,
    pub(crate) publish: Publish,
}

/// The PUBLISH for `record`, or why the remote can never take it (the
/// record goes to the dead-letter file).
pub(crate) fn outgoing(record: &Record, cfg: &MqttSinkConfig) -> Result<Outgoing, String> {
    let topic = record.destination.as_str();
    if topic.is_empty() {
        return Err("the remote topic rendered empty".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "the remote topic `{topic}` holds a wildcard or NUL"
        ));
    }
    if topic.len() > usize::from(u16::MAX) {
        return Err("the remote topic is longer than 65535 bytes".into());
    }
    let header = |name: &str| {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    };
    let published = match header(MQTT_QOS_HEADER) {
        Some(b"0") => 0,
        Some(b"2") => 2,
        _ => 1,
    };
    let qos = QoS::from_u8(published.min(cfg.qos)).unwrap_or(QoS::AtLeastOnce);
    let retain = cfg.retain == RetainPolicy::Keep && header(MQTT_RETAIN_HEADER) == Some(b"1");
    let mut properties = Properties::default();
    if cfg.protocol == RemoteProtocol::V5 {
        for (k, v) in &record.headers {
            let internal = [
                TOPIC_HEADER,
                MQTT_QOS_HEADER,
                MQTT_RETAIN_HEADER,
                MESSAGE_ID_HEADER,
            ];
            if internal.contains(&k.as_str()) || k == LOOP_MARKER {
                continue;
            }
            if let Ok(v) = std::str::from_utf8(v) {
                properties
                    .user_properties
                    .push((ByteString::from(k.as_str()), ByteString::from(v)));
            }
        }
        properties.user_properties.push((
            ByteString::from_static(MESSAGE_ID_PROPERTY),
            ByteString::from(record.dedup_id()),
        ));
        properties.user_properties.push((
            ByteString::from_static(LOOP_MARKER),
            ByteString::from(cfg.client_id.as_str()),
        ));
    }
    Ok(Outgoing {
        id: record.id,
        publish: Publish {
            dup: false,
            qos,
            retain,
            topic: ByteString::from(topic),
            packet_id: None,
            properties,
            payload: record.payload.clone(),
        },
    })
}
