//! The cluster link: what this node's clients publish, out to the other
//! nodes. The link is a bridge-like session of the local broker
//! (`$bridge/$cluster`, subscribed to `#`), so the broker's own machinery
//! carries the rules: its queue never drops a QoS 1/2 message, publishers
//! are pushed back while it is behind, and a QoS 1/2 publisher's
//! PUBACK/PUBREC waits for the link (as it waits for a bridge with
//! `ack = "sink"`).
//!
//! A QoS 1/2 message is published to the JetStream stream of the cluster
//! and acknowledged to the session, and so to its publisher, once
//! JetStream has stored it on a majority of its replicas; NATS delivers the
//! same publish to the nodes subscribed to its subject. A QoS 0 message
//! is a plain NATS publish, outside the stream. A retained message (or a
//! retained clear) is also put into the cluster's retained bucket before
//! the acknowledgement.
//!
//! A publish whose acknowledgement fails (NATS unreachable, no JetStream
//! leader) is sent again, under the same id: JetStream's de-duplication
//! keeps one copy, and the receiving nodes skip the repeat
//! ([`super::recent`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::watch;

use super::envelope;
use super::retained::retained_key;
use super::status::ClusterStats;
use super::subject::{SubjectError, SubjectSpace};
use crate::broker::SessionSlot;
use crate::codec::{PacketId, QoS};
use crate::session::{Message, SinkAck};
use crate::store::Store;

/// Messages taken from the link's session per round (all published, then
/// all acknowledgements awaited).
const LINK_BATCH: usize = 1024;

/// Room kept for the envelope's fixed headers (plus three times the
/// node name: origin, id, message id) under NATS' `max_payload`
/// (which counts headers and payload).
const ENVELOPE_HEADERS: usize = 512;

/// Waits between attempts while NATS or JetStream does not answer.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Whether the link puts `message` into the stream: QoS 1/2, and a topic
/// its `#` matches (not a `$` topic, which stays on its node).
pub fn goes_to_stream(message: &Message) -> bool {
    message.qos != QoS::AtMostOnce && !message.topic.starts_with('$')
}

/// Where the link publishes, and as whom.
pub struct Link {
    pub slot: Arc<SessionSlot>,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// The retained bucket, once it exists (before, the link does not run).
    pub retained: Option<kv::Store>,
    /// Subjects of the stream (QoS 1/2) and of plain NATS (QoS 0).
    pub durable: SubjectSpace,
    pub volatile: SubjectSpace,
    pub node: String,
    /// Distinguishes this run's ids from an earlier run's.
    pub incarnation: u64,
    pub next_id: AtomicU64,
    pub stats: Arc<ClusterStats>,
}

/// One message taken from the session, with what it owes.
struct Taken {
    packet_id: Option<PacketId>,
    message: Arc<Message>,
    sink_ack: Option<Arc<dyn SinkAck>>,
}

impl Link {
    fn new_id(&self) -> String {
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}.{}", self.node, self.incarnation, seq)
    }
}

/// Runs until `stop` says so.
pub async fn run(link: Arc<Link>, store: Store, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = take(&link.slot);
        if batch.is_empty() {
            tokio::select! {
                _ = link.slot.notify.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        if !forward(&link, &batch, &mut stop).await {
            // Stopped: the batch was not acknowledged; its publishers get
            // no PUBACK and send again to whichever node they reach next.
            return;
        }
        let mut signals = Vec::new();
        {
            let mut state = link.slot.state.lock();
            for t in batch {
                if let Some(id) = t.packet_id {
                    state.on_puback(id);
                }
                signals.extend(t.sink_ack);
            }
        }
        link.slot.flush_journal(&store);
        for s in signals {
            s.fire();
        }
    }
}

/// Up to [`LINK_BATCH`] messages from the link's session.
fn take(slot: &SessionSlot) -> Vec<Taken> {
    let mut state = slot.state.lock();
    let now = Instant::now();
    let mut batch = Vec::new();
    while batch.len() < LINK_BATCH {
        let next = state.next_delivery(now, 4 * LINK_BATCH, |d, id| (id, Arc::clone(&d.message)));
        match next {
            Some((packet_id, message)) => batch.push(Taken {
                packet_id,
                message,
                sink_ack: None,
            }),
            None => break,
        }
    }
    slot.release_push_back(&state);
    for t in &mut batch {
        if let Some(id) = t.packet_id {
            t.sink_ack = state.take_sink_ack(id);
        }
    }
    batch
}

/// Publishes the batch: QoS 0 as plain NATS messages, the rest into the
/// stream, every acknowledgement awaited (again and again while NATS does
/// not answer). False if stopped first.
async fn forward(link: &Link, batch: &[Taken], stop: &mut watch::Receiver<bool>) -> bool {
    let mut acks = Vec::with_capacity(batch.len());
    // 0 until the first connection: then nothing is refused here.
    let max_payload = link.client.server_info().max_payload;
    for t in batch {
        let durable = t.packet_id.is_some() && t.message.qos != QoS::AtMostOnce;
        let space = if durable {
            &link.durable
        } else {
            &link.volatile
        };
        let subject = match space.topic_subject(&t.message.topic) {
            Ok(s) => s,
            Err(e @ SubjectError::TooLong(_)) => {
                // NATS would close the connection for it, again and again.
                if ClusterStats::add_one_worth_logging(&link.stats.too_large) {
                    tracing::warn!(error = %e, "cluster: topic too long for NATS, delivered on this node only (logged at the 1st, 2nd, 4th… time)");
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(topic = %t.message.topic, error = %e, "cluster: topic not forwarded");
                continue;
            }
        };
        let id = link.new_id();
        let (headers, payload) = envelope::encode(&t.message, &link.node, &id);
        if max_payload > 0 && payload.len() + ENVELOPE_HEADERS + 3 * link.node.len() > max_payload {
            // NATS refuses it for good: retrying would stop the link.
            if ClusterStats::add_one_worth_logging(&link.stats.too_large) {
                tracing::warn!(topic = %t.message.topic, bytes = payload.len(), max_payload, "cluster: message larger than the NATS servers' max_payload, delivered on this node only (logged at the 1st, 2nd, 4th… time)");
            }
            continue;
        }
        if t.message.retain && !put_retained(link, &t.message, payload.clone(), stop).await {
            return false;
        }
        if !durable {
            if let Err(e) = link
                .client
                .publish_with_headers(subject, headers, payload)
                .await
            {
                tracing::debug!(error = %e, "cluster: QoS 0 message not forwarded");
            }
            ClusterStats::add(&link.stats.published_volatile, 1);
            continue;
        }
        let Some(ack) = send(link, &subject, &headers, &payload, stop).await else {
            return false;
        };
        acks.push((subject, headers, payload, ack));
    }
    for (subject, headers, payload, mut ack) in acks {
        let mut delay = RETRY_FIRST;
        loop {
            match ack.await {
                Ok(_) => break,
                Err(e) => {
                    ClusterStats::add(&link.stats.publish_retries, 1);
                    tracing::warn!(error = %e, "cluster: no JetStream acknowledgement, publishing again");
                    if !pause(&mut delay, stop).await {
                        return false;
                    }
                    match send(link, &subject, &headers, &payload, stop).await {
                        Some(a) => ack = a,
                        None => return false,
                    }
                }
            }
        }
        ClusterStats::add(&link.stats.published_durable, 1);
    }
    true
}

/// One publish into the stream, its acknowledgement to come; sent again
/// while the client cannot take it. `None` if stopped first.
async fn send(
    link: &Link,
    subject: &str,
    headers: &HeaderMap,
    payload: &Bytes,
    stop: &mut watch::Receiver<bool>,
) -> Option<jetstream::context::PublishAckFuture> {
    let mut delay = RETRY_FIRST;
    loop {
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .headers(headers.clone());
        match link.js.send_publish(subject.to_owned(), publish).await {
            Ok(ack) => return Some(ack),
            Err(e) => {
                ClusterStats::add(&link.stats.publish_retries, 1);
                tracing::warn!(error = %e, "cluster: cannot publish to JetStream, retrying");
                if !pause(&mut delay, stop).await {
                    return None;
                }
            }
        }
    }
}

/// Puts the topic's retained message (or its clear: an empty payload) into
/// the cluster's bucket, retrying until stored. False if stopped first.
async fn put_retained(
    link: &Link,
    message: &Message,
    value: Bytes,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let key = retained_key(&message.topic);
    let Some(bucket) = &link.retained else {
        return true;
    };
    let mut delay = RETRY_FIRST;
    loop {
        match bucket.put(key.as_str(), value.clone()).await {
            Ok(_) => return true,
            Err(e) => {
                ClusterStats::add(&link.stats.publish_retries, 1);
                tracing::warn!(error = %e, topic = %message.topic, "cluster: cannot store the retained message, retrying");
                if !pause(&mut delay, stop).await {
                    return false;
                }
            }
        }
    }
}

/// Sleeps `delay` (doubling it up to [`RETRY_MAX`]); false if stopped.
async fn pause(delay: &mut Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let wait = *delay;
    *delay = (*delay * 2).min(RETRY_MAX);
    tokio::select! {
        _ = tokio::time::sleep(wait) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}
