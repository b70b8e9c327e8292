//! An application message as the router moves it: one shared allocation per
//! publish, whatever the number of subscribers.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{Properties, QoS};

/// Lets go of a message's copy on disk. Defined here and implemented
/// above (the broker hands in one that submits a delete to the store), so
/// the session core knows nothing of the store's I/O.
pub trait MessageRelease: Send + Sync {
    /// The last in-memory reference to message `id` is gone.
    fn release(&self, id: u64);
}

/// Ties a message in memory to its copy on disk: when the last reference
/// goes (every queue and the retained store let go of it), the copy is
/// deleted. One copy on disk however many sessions queue it.
///
/// The releaser is one shared `Arc` made once by the broker and cloned per
/// message (a reference count, no allocation), as the `Store` handle was.
pub struct StoredMessage {
    pub id: u64,
    release: Arc<dyn MessageRelease>,
}

impl StoredMessage {
    pub fn new(id: u64, release: Arc<dyn MessageRelease>) -> StoredMessage {
        StoredMessage { id, release }
    }
}

impl Drop for StoredMessage {
    fn drop(&mut self) {
        self.release.release(self.id);
    }
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredMessage({})", self.id)
    }
}

/// A message accepted from a publisher (or a will, or a retained copy).
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The v5 properties forwarded unchanged to subscribers: payload format,
    /// content type, response topic, correlation data, user properties.
    /// Boxed and absent when empty, as for most device traffic: a message
    /// in memory stays small (retained stores and queues hold millions).
    pub properties: Option<Box<Properties>>,
    /// From the v5 message expiry interval; the remaining time is written
    /// into each delivery.
    pub expires_at: Option<Instant>,
    /// Client id of the publisher, for no-local. `None` for broker messages.
    pub publisher: Option<ByteString>,
    /// The publisher's authenticated user name (or certificate identity),
    /// for bridges (`{username}`, `.username`). `None` for anonymous
    /// publishers, wills and broker messages.
    pub username: Option<ByteString>,
    /// When the broker accepted the message, ms since the Unix epoch
    /// (bridges' `timestamp`); kept across restarts.
    pub accepted_ms: u64,
    /// Set when the message is on disk.
    pub stored: Option<Arc<StoredMessage>>,
}

impl Message {
    /// A message the broker itself publishes ($SYS, the admin API): no
    /// properties, no expiry, no publisher. `accepted_ms` comes from the
    /// caller's wall clock: the session core reads no clock.
    pub fn from_broker(
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        accepted_ms: u64,
    ) -> Message {
        Message {
            topic,
            payload,
            qos,
            retain,
            properties: None,
            expires_at: None,
            publisher: None,
            username: None,
            accepted_ms,
            stored: None,
        }
    }

    /// Keeps only the properties a subscriber must receive unchanged
    /// (3.3.2.3): aliases, subscription ids and expiry are per hop.
    pub fn forwardable_properties(p: &Properties) -> Option<Box<Properties>> {
        let kept = Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            ..Properties::default()
        };
        (!kept.is_empty()).then(|| Box::new(kept))
    }

    pub fn stored_id(&self) -> Option<u64> {
        self.stored.as_ref().map(|s| s.id)
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Seconds of life left, rounded up, for the outgoing expiry property.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

/// One message bound for one session, with what that session's matching
/// subscriptions decided.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// The QoS to deliver at: min(message QoS, best granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// v5 subscription identifiers of every matching subscription.
    pub subscription_ids: Vec<u32>,
    /// Key of this delivery in the session's outbox on disk, if persisted.
    pub seq: Option<u64>,
    /// Set when this delivery goes to a bridge with `ack = "sink"`: the
    /// publisher's PUBACK waits until the bridge's sink has the record.
    pub sink_ack: Option<Arc<dyn SinkAck>>,
    /// The shared subscription (`$share/group/filter`) that picked this
    /// session: if the session ends before the message is acknowledged, it
    /// goes to another member of the group (v5 4.8.2).
    pub shared_group: Option<ByteString>,
}

/// Tells a waiting publisher connection that a bridge's sink has its
/// message. Dropped without [`SinkAck::fire`] (the delivery was lost from
/// memory, e.g. a full queue), the waiter must learn it was not
/// acknowledged and close the connection instead of sending PUBACK, so the
/// device resends.
///
/// A trait so the session core needs no async runtime: the broker
/// implements it over a tokio oneshot (`broker::OneshotSinkAck`). Used as
/// `Arc<dyn SinkAck>`, made once per (publish, sink-acking bridge), the
/// same single allocation the concrete type had.
pub trait SinkAck: Send + Sync + std::fmt::Debug {
    /// The sink acknowledged (or the message needs no delivery). Only the
    /// first call counts.
    fn fire(&self);

    /// Where the message sits in a cluster's stream, when the sink is a
    /// persistent session fed from there: names the delivery's QoS 2 flow
    /// in the record the cluster keeps of it (`state::Flows`).
    fn position(&self) -> Option<u64> {
        None
    }
}
