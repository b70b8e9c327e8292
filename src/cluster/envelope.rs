//! A message as it travels between nodes: the store's message record
//! (topic, payload, QoS, retain flag, v5 properties, expiry as wall-clock
//! time, publisher and user) as the NATS payload, and who sent it in
//! headers: the node (a node skips what it published itself: its own
//! subscribers had it already) and an id unique in the cluster (JetStream's
//! de-duplication of a resend, and the receiving node's, when one message
//! matches several of its subscriptions).

use std::time::Instant;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::session::Message;
use crate::store::{now_ms, MessageRecord};

/// The node that accepted the message from its publisher.
pub const ORIGIN: &str = "Sluice-Origin";
/// The message's id in the cluster: `<node>.<incarnation>.<sequence>`.
pub const ID: &str = "Sluice-Id";
/// JetStream's de-duplication header (the same id).
const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// The payload's format, so a node of a later version can tell.
const FORMAT: &str = "Sluice-Format";
const FORMAT_V1: &str = "1";

/// Headers and payload for `message` under `id`.
pub fn encode(message: &Message, origin: &str, id: &str) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, origin);
    headers.insert(ID, id);
    headers.insert(NATS_MSG_ID, id);
    headers.insert(FORMAT, FORMAT_V1);
    let record = crate::broker::message_record(message);
    (headers, Bytes::from(record.encode()))
}

/// What a received NATS message says.
#[derive(Debug)]
pub struct Received {
    pub origin: String,
    pub id: String,
    pub message: Message,
}

/// Why a NATS message is not one a node sent.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("payload format {0} is not known to this version")]
    Format(String),
    #[error("bad message record: {0}")]
    Record(String),
}

/// The message a node sent, as this node's broker takes it.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Received, EnvelopeError> {
    let header = |name: &'static str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
            .ok_or(EnvelopeError::Missing(name))
    };
    let format = header(FORMAT)?;
    if format != FORMAT_V1 {
        return Err(EnvelopeError::Format(format));
    }
    let origin = header(ORIGIN)?;
    let id = header(ID)?;
    Ok(Received {
        origin,
        id,
        message: decode_record(payload)?,
    })
}

/// The message a record holds (a stream message's payload, or a value of
/// the retained bucket).
pub fn decode_record(payload: &[u8]) -> Result<Message, EnvelopeError> {
    let r = MessageRecord::decode(payload).map_err(|e| EnvelopeError::Record(e.to_string()))?;
    Ok(crate::broker::message_from_record(
        r,
        None,
        Instant::now(),
        now_ms(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use bytestring::ByteString;
    use std::time::Duration;

    fn message() -> Message {
        Message {
            topic: ByteString::from("a/b"),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: None,
            expires_at: Some(Instant::now() + Duration::from_secs(60)),
            publisher: Some(ByteString::from("pub-1")),
            username: Some(ByteString::from("alice")),
            accepted_ms: 1_700_000_000_000,
            stored: None,
        }
    }

    #[test]
    fn a_message_crosses_unchanged() {
        let (headers, payload) = encode(&message(), "node-a", "node-a.1.7");
        let got = decode(Some(&headers), &payload).expect("decodes");
        assert_eq!(got.origin, "node-a");
        assert_eq!(got.id, "node-a.1.7");
        let m = got.message;
        assert_eq!(m.topic, "a/b");
        assert_eq!(&m.payload[..], b"hello");
        assert_eq!(m.qos, QoS::ExactlyOnce);
        assert!(m.retain);
        assert_eq!(m.publisher.as_deref(), Some("pub-1"));
        assert_eq!(m.username.as_deref(), Some("alice"));
        assert_eq!(m.accepted_ms, 1_700_000_000_000);
        let left = m.expires_at.expect("expiry kept") - Instant::now();
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    }

    #[test]
    fn foreign_and_garbled_messages_are_refused() {
        assert!(matches!(decode(None, b"x"), Err(EnvelopeError::Missing(_))));
        let (mut headers, _) = encode(&message(), "n", "n.1.1");
        assert!(matches!(
            decode(Some(&headers), b"\xff\xff"),
            Err(EnvelopeError::Record(_))
        ));
        headers.insert(FORMAT, "9");
        assert!(matches!(
            decode(Some(&headers), b""),
            Err(EnvelopeError::Format(_))
        ));
    }
}
