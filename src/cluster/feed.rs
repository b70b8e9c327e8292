//! Feeding a persistent session from its JetStream consumer (see
//! [`super::consumers`]): while the session is this node's, a task pulls
//! the consumer's messages and queues them for the session; a message is
//! acknowledged to JetStream only once the client acknowledged it (PUBACK,
//! PUBCOMP) or it needs no delivery, so until then it stays in the stream
//! and a node's death loses none. The session's QoS 1/2 messages come only
//! from here ([`is_fed`]; the router leaves such sessions out), so each
//! arrives once whichever node published it.
//!
//! While the client is away the feed pauses (no pull: JetStream keeps what
//! comes, and ends the consumer after the session expiry); it goes on when
//! the client is back. A message JetStream offers again while the session
//! still holds it (its client is slow, or was away past
//! `redeliver_after_secs`) is not queued a second time. When the session leaves this node, the messages it held
//! unacknowledged are handed back at once (negative acknowledgement), so
//! the node that resumes it gets them without waiting.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::Subject;
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::consumers::{consumer_name, Consumers};
use super::envelope;
use super::status::ClusterStats;
use crate::broker::{Broker, SessionSlot};
use crate::session::SinkAck;

/// How often an idle feed checks that its session is still this node's.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest pause between two checks of a resumed session's flows
/// against its consumer's acknowledgement floor.
const TIDY_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Whether `slot`'s QoS 1/2 messages come from its consumer: a persistent
/// session of a client (not a bridge's).
pub fn is_fed(slot: &SessionSlot) -> bool {
    slot.is_persistent() && !slot.is_bridge()
}

/// What a feed owes JetStream: the reply subject of every message its
/// session holds unacknowledged, by stream sequence; and the sequences it
/// acknowledged last, so a copy JetStream sends again anyway (a late
/// negative acknowledgement from a node the session left crossed this
/// node's acknowledgement) is acknowledged again, not delivered twice.
#[derive(Default)]
struct Unacknowledged(Mutex<HashMap<u64, Subject>>, Mutex<Acknowledged>);

/// The last [`ACKNOWLEDGED_KEPT`] sequences a feed acknowledged.
#[derive(Default)]
struct Acknowledged {
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

const ACKNOWLEDGED_KEPT: usize = 4096;

impl Acknowledged {
    fn insert(&mut self, seq: u64) {
        if self.set.insert(seq) {
            self.order.push_back(seq);
        }
        if self.order.len() > ACKNOWLEDGED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Acknowledgements to send: the subject and `+ACK` or `-NAK`.
type Acks = mpsc::UnboundedSender<(Subject, &'static [u8])>;

/// Fires when the client acknowledged the message (or it needs no
/// delivery); dropped unfired (a full queue dropped it, the session went),
/// it asks JetStream to offer the message again.
struct StreamAck {
    seq: u64,
    unacknowledged: Arc<Unacknowledged>,
    acks: Acks,
    fired: AtomicBool,
}

impl std::fmt::Debug for StreamAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamAck({})", self.seq)
    }
}

impl SinkAck for StreamAck {
    fn fire(&self) {
        if self.fired.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(reply) = self.unacknowledged.0.lock().remove(&self.seq) {
            self.unacknowledged.1.lock().insert(self.seq);
            let _ = self.acks.send((reply, b"+ACK"));
        }
    }

    fn position(&self) -> Option<u64> {
        Some(self.seq)
    }
}

/// A negative acknowledgement asking for the message again in a second:
/// soon for the node that resumes a session that left, not at once for a
/// queue that is full.
const NAK_SOON: &[u8] = b"-NAK {\"delay\": 1000000000}";

impl Drop for StreamAck {
    fn drop(&mut self) {
        if self.fired.load(Ordering::Acquire) {
            return;
        }
        if let Some(reply) = self.unacknowledged.0.lock().remove(&self.seq) {
            let _ = self.acks.send((reply, NAK_SOON));
        }
    }
}

/// A session's feed: whether it runs now (it pauses while the client is
/// away), and what the session holds, kept across pauses.
struct Running {
    slot: Weak<SessionSlot>,
    unacknowledged: Arc<Unacknowledged>,
    active: bool,
}

/// The feeds of one node.
pub struct Feeds {
    running: Mutex<HashMap<ByteString, Running>>,
    consumers: Arc<Consumers>,
    broker: Weak<Broker>,
    acks: Acks,
    stats: Arc<ClusterStats>,
    stop: watch::Receiver<bool>,
}

impl Feeds {
    pub fn start(
        client: async_nats::Client,
        consumers: Arc<Consumers>,
        broker: &Arc<Broker>,
        stats: Arc<ClusterStats>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Feeds> {
        let (acks, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_acks(client, rx));
        Arc::new(Feeds {
            running: Mutex::new(HashMap::new()),
            consumers,
            broker: Arc::downgrade(broker),
            acks,
            stats,
            stop,
        })
    }

    /// Feeds `slot` from its consumer unless a feed already does (a
    /// paused feed goes on with what the session holds).
    pub fn ensure(self: &Arc<Self>, slot: &Arc<SessionSlot>) {
        if !is_fed(slot) {
            return;
        }
        slot.state.lock().keep_flows();
        let mut running = self.running.lock();
        let unacknowledged = match running.get_mut(&slot.client_id) {
            Some(r) if std::ptr::eq(r.slot.as_ptr(), Arc::as_ptr(slot)) => {
                if r.active {
                    return;
                }
                r.active = true;
                Arc::clone(&r.unacknowledged)
            }
            _ => {
                let unacknowledged = Arc::new(Unacknowledged::default());
                running.insert(
                    slot.client_id.clone(),
                    Running {
                        slot: Arc::downgrade(slot),
                        unacknowledged: Arc::clone(&unacknowledged),
                        active: true,
                    },
                );
                unacknowledged
            }
        };
        tokio::spawn(feed(Arc::clone(self), Arc::downgrade(slot), unacknowledged));
    }

    /// Forgets the feed of `client_id` once its session left this node.
    pub fn forget(&self, client_id: &ByteString) {
        let mut running = self.running.lock();
        if running.get(client_id).is_some_and(|r| !r.active) {
            running.remove(client_id);
        }
    }

    /// Pauses the feed of a session whose client is away (decided under
    /// the lock [`Feeds::ensure`] takes, after the client's connection
    /// state is read); whether it did. The consumer is not pulled while
    /// the client is away: JetStream keeps what comes meanwhile.
    fn pause_if_offline(&self, slot: &Weak<SessionSlot>) -> bool {
        let mut running = self.running.lock();
        let Some(session) = slot.upgrade() else {
            return false;
        };
        if session.is_online() {
            return false;
        }
        match running.get_mut(&session.client_id) {
            Some(r) if r.slot.ptr_eq(slot) => {
                r.active = false;
                true
            }
            _ => false,
        }
    }

    /// The session, while it is still this node's.
    fn current(&self, slot: &Weak<SessionSlot>) -> Option<(Arc<Broker>, Arc<SessionSlot>)> {
        let broker = self.broker.upgrade()?;
        let slot = slot.upgrade()?;
        let found = broker.find_session(&slot.client_id)?;
        (Arc::ptr_eq(&found, &slot) && !*self.stop.borrow()).then_some((broker, slot))
    }
}

/// Feeds one session until it is no longer this node's (or pauses while
/// its client is away).
async fn feed(feeds: Arc<Feeds>, slot: Weak<SessionSlot>, unacknowledged: Arc<Unacknowledged>) {
    let Some(client_id) = slot.upgrade().map(|s| s.client_id.clone()) else {
        return;
    };
    let name = consumer_name(&client_id);
    let mut delay = Duration::from_millis(100);
    while let Some((_, session)) = feeds.current(&slot) {
        drop(session);
        let consumer = match feeds.consumers.stream.get() {
            Some(stream) => match stream.get_consumer::<pull::Config>(&name).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(client_id = %client_id, error = %e, "cluster: session's consumer not found");
                    None
                }
            },
            None => None,
        };
        match consumer {
            Some(consumer) => match drain(&feeds, &slot, consumer, &unacknowledged).await {
                Drained::Offline if feeds.pause_if_offline(&slot) => return,
                Drained::Offline | Drained::Ended(true) => delay = Duration::from_millis(100),
                Drained::Ended(false) => {}
            },
            // No subscription, no consumer: nothing to feed until one
            // comes (its SUBSCRIBE starts a feed again, see `ensure`).
            None if leave_if_unsubscribed(&feeds, &slot) => return,
            None => record_again(&feeds, &slot),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    // Handed back: whoever feeds the session next gets them now.
    for (_, reply) in unacknowledged.0.lock().drain() {
        let _ = feeds.acks.send((reply, b"-NAK"));
    }
    let mut running = feeds.running.lock();
    if running
        .get(&client_id)
        .is_some_and(|r| r.slot.ptr_eq(&slot))
    {
        running.remove(&client_id);
    }
}

/// Ends the feed of a session without subscriptions; whether it did.
/// Decided under the lock [`Feeds::ensure`] takes, after the session's
/// subscriptions are read: a SUBSCRIBE either finds this feed still
/// running (which then sees its subscription) or starts a new one.
fn leave_if_unsubscribed(feeds: &Feeds, slot: &Weak<SessionSlot>) -> bool {
    let mut running = feeds.running.lock();
    let unsubscribed = slot
        .upgrade()
        .is_none_or(|s| s.subscriptions.lock().is_empty());
    if unsubscribed {
        let client_id = slot.upgrade().map(|s| s.client_id.clone());
        if let Some(id) = client_id {
            if running.get(&id).is_some_and(|r| r.slot.ptr_eq(slot)) {
                running.remove(&id);
            }
        }
    }
    unsubscribed
}

/// A session that has subscriptions but no consumer (its consumer could
/// not be made, or it was persistent before cluster mode): made again
/// while its client is connected here.
fn record_again(feeds: &Feeds, slot: &Weak<SessionSlot>) {
    let Some((_, slot)) = feeds.current(slot) else {
        return;
    };
    if slot.is_online() && !slot.subscriptions.lock().is_empty() {
        drop(feeds.consumers.save(&slot.client_id, slot.record(0)));
    }
}

/// Why a feed stopped pulling.
enum Drained {
    /// The session left, the node stops or the consumer failed; whether
    /// any message came first.
    Ended(bool),
    /// The client is away.
    Offline,
}

/// Queues the consumer's messages for the session until the session is no
/// longer this node's, its client is away or the consumer fails.
async fn drain(
    feeds: &Feeds,
    slot: &Weak<SessionSlot>,
    mut consumer: async_nats::jetstream::consumer::Consumer<pull::Config>,
    unacknowledged: &Arc<Unacknowledged>,
) -> Drained {
    forget_done_flows(slot, &mut consumer, true).await;
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cluster: session's consumer not readable");
            return Drained::Ended(false);
        }
    };
    let mut stop = feeds.stop.clone();
    let mut any = false;
    // Resumed flows are checked against the stream less and less often.
    let mut tidy_every = CHECK_EVERY;
    let mut tidy_at = tokio::time::Instant::now() + tidy_every;
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tokio::time::sleep(CHECK_EVERY) => {
                match feeds.current(slot) {
                    None => {
                        hand_back(feeds, &mut messages).await;
                        return Drained::Ended(any);
                    }
                    Some((_, session)) if !session.is_online() => return Drained::Offline,
                    Some(_) if tokio::time::Instant::now() >= tidy_at => {
                        forget_done_flows(slot, &mut consumer, false).await;
                        tidy_every = (tidy_every * 2).min(TIDY_AT_MOST_EVERY);
                        tidy_at = tokio::time::Instant::now() + tidy_every;
                        continue;
                    }
                    Some(_) => continue,
                }
            }
            _ = stop.changed() => return Drained::Ended(any),
        };
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cluster: session's consumer failed");
                return Drained::Ended(any);
            }
            None => return Drained::Ended(any),
        };
        any = true;
        let Some((broker, session)) = feeds.current(slot) else {
            if let Some(reply) = message.reply.clone() {
                let _ = feeds.acks.send((reply, NAK_SOON));
            }
            hand_back(feeds, &mut messages).await;
            return Drained::Ended(any);
        };
        offer(feeds, &broker, &session, message, unacknowledged);
    }
}

/// Frees the resumed QoS 2 flows of `slot` whose messages the stream will
/// not offer again: those at or below the consumer's acknowledgement
/// floor (`cached`: the consumer was just read, its floor is fresh).
/// Asks JetStream only while some flow waits.
async fn forget_done_flows(
    slot: &Weak<SessionSlot>,
    consumer: &mut async_nats::jetstream::consumer::Consumer<pull::Config>,
    cached: bool,
) {
    if !slot.upgrade().is_some_and(|s| s.state.lock().awaits_any()) {
        return;
    }
    let floor = if cached {
        consumer.cached_info().ack_floor.stream_sequence
    } else {
        match consumer.info().await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(_) => return,
        }
    };
    if let Some(session) = slot.upgrade() {
        session.state.lock().forget_awaiting_through(floor);
    }
}

/// How long a feed whose session left still hands back what its pulls
/// bring, so the node that resumed the session gets it within a second
/// rather than after `redeliver_after_secs`.
const HAND_BACK_FOR: Duration = Duration::from_millis(300);

/// Negatively acknowledges (for redelivery in a second, when this feed no
/// longer pulls) what arrives for a while.
async fn hand_back(feeds: &Feeds, messages: &mut async_nats::jetstream::consumer::pull::Stream) {
    let until = tokio::time::Instant::now() + HAND_BACK_FOR;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, messages.next()).await {
        if let Some(reply) = message.reply.clone() {
            let _ = feeds.acks.send((reply, NAK_SOON));
        }
    }
}

/// One message of the consumer, to the session (or straight back as done
/// when it cannot be read).
fn offer(
    feeds: &Feeds,
    broker: &Broker,
    session: &Arc<SessionSlot>,
    message: async_nats::jetstream::Message,
    unacknowledged: &Arc<Unacknowledged>,
) {
    let (Some(reply), Ok(seq)) = (
        message.reply.clone(),
        message.info().map(|i| i.stream_sequence),
    ) else {
        return;
    };
    if unacknowledged.1.lock().set.contains(&seq) {
        // Done with here already: only the acknowledgement was lost.
        let _ = feeds.acks.send((reply, b"+ACK"));
        return;
    }
    {
        let mut held = unacknowledged.0.lock();
        if let Some(known) = held.get_mut(&seq) {
            // Still held by the session: acknowledged under the newest
            // delivery once the client acknowledges it.
            *known = reply;
            return;
        }
        held.insert(seq, reply.clone());
    }
    let ack = Arc::new(StreamAck {
        seq,
        unacknowledged: Arc::clone(unacknowledged),
        acks: feeds.acks.clone(),
        fired: AtomicBool::new(false),
    });
    match envelope::decode(message.headers.as_ref(), &message.payload) {
        Ok(received) => {
            ClusterStats::add(&feeds.stats.fed, 1);
            broker.deliver_fed(session, received.message, ack);
        }
        Err(e) => {
            ClusterStats::add(&feeds.stats.decode_errors, 1);
            tracing::warn!(error = %e, "cluster: message in the stream is not a node's; dropped");
            ack.fire();
        }
    }
}

/// Sends the feeds' acknowledgements, in order.
async fn send_acks(
    client: async_nats::Client,
    mut acks: mpsc::UnboundedReceiver<(Subject, &'static [u8])>,
) {
    while let Some((subject, body)) = acks.recv().await {
        let _ = client.publish(subject, Bytes::from_static(body)).await;
    }
}
