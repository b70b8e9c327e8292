//! Who receives what in the reflector: each connection's outgoing bytes
//! (an outbox its writer task drains) and the exact topics subscribed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{BufMut, BytesMut};
use sluice::codec::put_varint;
use tokio::sync::Notify;

use crate::frames::PublishParts;

/// QoS 0 bytes an outbox holds before it drops more: a subscriber that
/// falls behind (open-loop fan-out) must not grow the reflector without
/// bound; 100 subscribers hold 400 MB at most. QoS 1 is never dropped:
/// the generator's window bounds it.
const MAX_PENDING_QOS0: usize = 4 * 1024 * 1024;

/// Bytes waiting for one connection's writer task.
#[derive(Default)]
pub struct Pending {
    pub buf: BytesMut,
    /// The last packet id given to a QoS 1 delivery on this connection.
    last_id: u16,
    pub closed: bool,
}

impl Pending {
    /// Appends PUBLISH packets as they arrived (QoS 0, no retain flag, same
    /// protocol version): one copy for a whole run of them.
    pub fn put_verbatim(&mut self, packets: &[u8]) {
        if !self.closed && self.buf.len() < MAX_PENDING_QOS0 {
            self.buf.extend_from_slice(packets);
        }
    }

    /// Appends one PUBLISH re-encoded for a subscriber: its QoS, its own
    /// packet id, its protocol version's properties. Topic, properties and
    /// payload are copied as they are.
    pub fn put_publish(&mut self, packet: &[u8], parts: &PublishParts, pub_v5: bool, sub: &Sub) {
        let qos = parts.qos.min(sub.qos);
        if self.closed || (qos == 0 && self.buf.len() >= MAX_PENDING_QOS0) {
            return;
        }
        let props: &[u8] = match (sub.v5, pub_v5) {
            (false, _) => &[],
            (true, true) => &packet[parts.properties.clone()],
            (true, false) => &[0],
        };
        let topic = &packet[parts.topic.start - 2..parts.topic.end];
        let payload = &packet[parts.payload.clone()];
        let id_len = if qos > 0 { 2 } else { 0 };
        let remaining = topic.len() + id_len + props.len() + payload.len();
        self.buf.put_u8(0x30 | (qos << 1));
        // Below the varint limit: it came in a packet of at least this size.
        let _ = put_varint(&mut self.buf, remaining as u32);
        self.buf.put_slice(topic);
        if qos > 0 {
            self.last_id = self.last_id.checked_add(1).unwrap_or(1);
            self.buf.put_u16(self.last_id);
        }
        self.buf.put_slice(props);
        self.buf.put_slice(payload);
    }
}

/// One connection's outgoing side, shared by every connection that
/// forwards to it.
#[derive(Default)]
pub struct Outbox {
    pending: Mutex<Pending>,
    pub ready: Notify,
}

impl Outbox {
    pub fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends bytes and wakes the writer.
    pub fn send(&self, bytes: &[u8]) {
        let mut p = self.lock();
        if !p.closed {
            p.buf.extend_from_slice(bytes);
        }
        drop(p);
        self.ready.notify_one();
    }

    /// No more bytes: the writer flushes what is left and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

/// A subscription to one exact topic.
#[derive(Clone)]
pub struct Sub {
    pub outbox: Arc<Outbox>,
    /// Granted QoS (0 or 1).
    pub qos: u8,
    pub v5: bool,
}

/// Filters to their subscribers: exact topics, and `PREFIX/#` (what
/// fan-in subscribes to) kept whole and matched by prefix. Readers cache
/// the list of the topic they last published to and look again only when
/// `generation` moved.
#[derive(Default)]
pub struct Routes {
    topics: Mutex<HashMap<Vec<u8>, Arc<[Sub]>>>,
    generation: AtomicU64,
}

impl Routes {
    fn topics(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Arc<[Sub]>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Subscribers of the exact topic, then of every `PREFIX/#` above it
    /// (a linear scan of the filters: done once per topic and generation).
    pub fn lookup(&self, topic: &[u8]) -> Arc<[Sub]> {
        let topics = self.topics();
        let mut subs: Vec<Sub> = topics.get(topic).map(|s| s.to_vec()).unwrap_or_default();
        for (filter, more) in topics.iter() {
            if let Some(prefix) = filter.strip_suffix(b"#") {
                if topic.starts_with(prefix) && !topic.starts_with(b"$") {
                    subs.extend(more.iter().cloned());
                }
            }
        }
        subs.into()
    }

    /// Adds `sub` to `topic` (replacing the same connection's earlier one).
    pub fn subscribe(&self, topic: &[u8], sub: Sub) {
        let mut topics = self.topics();
        let mut subs: Vec<Sub> = topics
            .get(topic)
            .map(|s| {
                s.iter()
                    .filter(|o| !Arc::ptr_eq(&o.outbox, &sub.outbox))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        subs.push(sub);
        topics.insert(topic.to_vec(), subs.into());
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes `outbox` off `topic`.
    pub fn unsubscribe(&self, topic: &[u8], outbox: &Arc<Outbox>) {
        let mut topics = self.topics();
        if let Some(subs) = topics.get(topic) {
            let rest: Vec<Sub> = subs
                .iter()
                .filter(|o| !Arc::ptr_eq(&o.outbox, outbox))
                .cloned()
                .collect();
            if rest.is_empty() {
                topics.remove(topic);
            } else {
                topics.insert(topic.to_vec(), rest.into());
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
