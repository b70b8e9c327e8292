//! A session as the broker holds it: the protocol state behind its own
//! lock (never a global one), a wake-up for the connection that serves it,
//! and the bookkeeping of which connection that is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytestring::ByteString;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::codec::{ProtocolVersion, ReasonCode, SubscriptionOptions, Will};
use crate::session::{Change, Delivery, Enqueued, Flows, QueueLimits, SessionState};
use crate::store::{Op, SessionRecord, Store, SubscriptionRecord, Ticket};
use crate::topic::TopicFilter;

/// Wakes a connection parked in the server's idle table (a connection
/// with nothing to do is a record there, not a task waiting on `notify`).
/// The server floor implements it and registers it once.
pub trait ParkedWaker: Send + Sync {
    fn wake(&self, token: u64);
}

static PARKED_WAKER: OnceLock<Box<dyn ParkedWaker>> = OnceLock::new();

/// Registers the idle table's waker (the first registration stays).
pub fn set_parked_waker(waker: Box<dyn ParkedWaker>) {
    let _ = PARKED_WAKER.set(waker);
}

/// One subscription of a session.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// What the connection serving a session must know to be told to leave.
#[derive(Debug, Default)]
pub struct Control {
    /// Bumped on every new connection; timers compare it to know whether
    /// the session was resumed meanwhile.
    pub generation: u64,
    /// Tells the serving connection to close, with the reason.
    pub kick: Option<oneshot::Sender<ReasonCode>>,
    /// The will of the current or last connection.
    /// Boxed: a `Will` carries its v5 properties inline (~470 bytes), and
    /// most sessions have none.
    pub will: Option<Box<Will>>,
    pub will_delay: u32,
    pub session_expiry: u32,
    pub protocol: Option<ProtocolVersion>,
    /// The authenticated user name of the current or last connection, for
    /// ACL checks on delivery.
    pub username: Option<ByteString>,
    /// Restored from a record that kept no identity (data format 1): the
    /// first identity to connect adopts the session.
    pub owner_unknown: bool,
    /// Address of the current or last connection (admin API).
    pub peer: Option<std::net::SocketAddr>,
    /// When the current or last connection was accepted, ms since the epoch.
    pub connected_at_ms: u64,
    /// Keep alive in force, in seconds.
    pub keep_alive: u16,
}

#[derive(Debug)]
pub struct SessionSlot {
    pub client_id: ByteString,
    pub state: Mutex<SessionState>,
    pub subscriptions: Mutex<HashMap<ByteString, Subscription>>,
    pub control: Mutex<Control>,
    /// Wakes the connection task when a message is queued.
    pub notify: Notify,
    online: AtomicBool,
    /// Whether the session outlives its connection and is kept on disk.
    persistent: AtomicBool,
    /// Set by a bridge whose buffer is full under the `block` policy.
    saturated: AtomicBool,
    /// Set while this session's full queue holds publishers back (the
    /// `push_back` queue policy, or a bridge's session); cleared by its
    /// connection (a bridge's intake) as it drains.
    pushing_back: AtomicBool,
    /// A bridge without a configured user name: trusted to read whatever
    /// its own filters name, so the ACL is not applied to it.
    acl_exempt: AtomicBool,
    /// A bridge with `ack = "sink"`: publishers' acknowledgements wait for
    /// its sink.
    ack_on_sink: AtomicBool,
    /// A bridge's session: a QoS 1 publisher's acknowledgement waits for
    /// the bridge (its buffer, or its sink with `ack = "sink"`) instead of
    /// the store keeping a copy of the message for it; its queue never
    /// drops a QoS 1/2 delivery (it pushes back instead).
    bridge: AtomicBool,
    /// Next outbox key for deliveries persisted for this session.
    next_seq: AtomicU64,
    /// The idle table's token while the serving connection is parked
    /// there, else 0.
    parked: AtomicU64,
    /// Held by the serving connection for its lifetime, so a takeover waits
    /// until the previous connection has finished with the session.
    pub connection_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SessionSlot {
    pub fn new(client_id: ByteString, limits: QueueLimits) -> SessionSlot {
        SessionSlot {
            client_id,
            state: Mutex::new(SessionState::new(limits)),
            subscriptions: Mutex::new(HashMap::new()),
            control: Mutex::new(Control::default()),
            notify: Notify::new(),
            online: AtomicBool::new(false),
            persistent: AtomicBool::new(false),
            saturated: AtomicBool::new(false),
            pushing_back: AtomicBool::new(false),
            acl_exempt: AtomicBool::new(false),
            ack_on_sink: AtomicBool::new(false),
            bridge: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            parked: AtomicU64::new(0),
            connection_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Wakes the serving connection, whether it waits as a task or is
    /// parked in the idle table.
    pub fn wake(&self) {
        self.notify.notify_one();
        let token = self.parked.load(Ordering::SeqCst);
        if token != 0 {
            if let Some(waker) = PARKED_WAKER.get() {
                waker.wake(token);
            }
        }
    }

    /// Notes that the serving connection is parked under `token` (0: it
    /// is a task again).
    pub fn set_parked(&self, token: u64) {
        self.parked.store(token, Ordering::SeqCst);
    }

    /// Tells the serving connection, if any, to leave with `reason`;
    /// whether there was one to tell.
    pub fn kick(&self, reason: ReasonCode) -> bool {
        let kick = self.control.lock().kick.take();
        let Some(k) = kick else {
            return false;
        };
        let _ = k.send(reason);
        self.wake();
        true
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    pub fn is_persistent(&self) -> bool {
        self.persistent.load(Ordering::Acquire)
    }

    pub fn set_persistent(&self, persistent: bool) {
        self.persistent.store(persistent, Ordering::Release);
        self.state.lock().set_persistent(persistent);
    }

    /// Whether publishers must wait for this session: a bridge whose
    /// buffer is full (`block`), or a full queue under `push_back` (or a
    /// bridge's, whatever the policy).
    pub fn is_saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed) || self.pushing_back.load(Ordering::Relaxed)
    }

    pub fn is_pushing_back(&self) -> bool {
        self.pushing_back.load(Ordering::Relaxed)
    }

    /// Ends a push-back once the queue has room again (called by the
    /// draining connection with the state it holds locked).
    pub fn release_push_back(&self, state: &SessionState) {
        if self.pushing_back.load(Ordering::Relaxed) && state.push_back_may_end() {
            self.pushing_back.store(false, Ordering::Relaxed);
        }
    }

    pub fn set_saturated(&self, saturated: bool) {
        self.saturated.store(saturated, Ordering::Relaxed);
    }

    pub fn set_acl_exempt(&self, exempt: bool) {
        self.acl_exempt.store(exempt, Ordering::Relaxed);
    }

    /// Whether this session may receive a message on `topic` under `acl`:
    /// as its user (or anonymous), unless it is exempt (a trusted bridge).
    pub fn may_read(&self, acl: &crate::auth::Acl, topic: &str) -> bool {
        if self.acl_exempt.load(Ordering::Relaxed) {
            return true;
        }
        let user = self.control.lock().username.clone();
        acl.check_topic(
            &self.client_id,
            user.as_deref(),
            topic,
            crate::auth::Access::Read,
        )
    }

    pub fn acks_on_sink(&self) -> bool {
        self.ack_on_sink.load(Ordering::Relaxed)
    }

    pub fn set_ack_on_sink(&self, on: bool) {
        self.ack_on_sink.store(on, Ordering::Relaxed);
    }

    pub fn is_bridge(&self) -> bool {
        self.bridge.load(Ordering::Relaxed)
    }

    /// Marks a bridge's session, whose queue is lossless: what the broker
    /// acknowledged on its way to the bridge is never dropped, whatever
    /// the queue policy (see `session::SessionState::set_lossless`).
    pub fn set_bridge(&self, on: bool) {
        self.bridge.store(on, Ordering::Relaxed);
        self.state.lock().set_lossless(on);
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Continues outbox numbering after a restart.
    pub fn set_next_seq(&self, seq: u64) {
        self.next_seq.store(seq, Ordering::Relaxed);
    }

    /// Queues a delivery and wakes the connection, if any.
    pub fn deliver(&self, d: Delivery, store: &Store) -> Enqueued {
        let outcome = {
            let mut state = self.state.lock();
            let outcome = state.enqueue(d);
            if state.wants_push_back() {
                self.pushing_back.store(true, Ordering::Relaxed);
            }
            submit_journal(&self.client_id, &mut state, store);
            outcome
        };
        if outcome != Enqueued::DroppedNew {
            self.wake();
        }
        outcome
    }

    /// Hands the session's journaled changes to the store, in order, and
    /// returns what the serving connection must wait for before writing
    /// more (also for changes another thread submitted meanwhile), and
    /// the session's QoS 2 flows when a cluster keeps them and they
    /// changed (the output waits for their record too).
    pub fn flush_journal(&self, store: &Store) -> (Ticket, Option<Flows>) {
        let mut state = self.state.lock();
        submit_journal(&self.client_id, &mut state, store);
        (state.take_wait(), state.take_changed_flows())
    }

    /// The session's journaled changes as store operations, for the caller
    /// to submit in one commit with its own (a client's QoS 2 publish: the
    /// incoming packet id with the message), what the serving connection
    /// must wait for besides (changes others submitted), and the QoS 2
    /// flows when a cluster keeps them and they changed (for the caller
    /// to record once its message is stored).
    pub fn take_journal_ops(&self, store: &Store) -> (Vec<Op>, Ticket, Option<Flows>) {
        let mut state = self.state.lock();
        let (changes, _) = state.take_journal();
        let ops = if store.is_enabled() {
            journal_ops(&self.client_id, changes)
        } else {
            Vec::new()
        };
        (ops, state.take_wait(), state.take_changed_flows())
    }

    /// The session as the store keeps it.
    pub fn record(&self, disconnected_at_ms: u64) -> SessionRecord {
        let subscriptions = self
            .subscriptions
            .lock()
            .values()
            .map(|s| SubscriptionRecord {
                filter: s.filter.raw.clone(),
                options: s.options,
                identifier: s.identifier,
            })
            .collect();
        let c = self.control.lock();
        SessionRecord {
            protocol: c.protocol.unwrap_or(ProtocolVersion::V311),
            session_expiry: c.session_expiry,
            disconnected_at_ms,
            will: c.will.as_deref().cloned(),
            will_delay: c.will_delay,
            subscriptions,
            username: c.username.clone(),
            owner_unknown: c.owner_unknown,
        }
    }
}

fn submit_journal(client_id: &ByteString, state: &mut SessionState, store: &Store) {
    let (changes, must_wait) = state.take_journal();
    if changes.is_empty() || !store.is_enabled() {
        return;
    }
    let ticket = store.submit(journal_ops(client_id, changes));
    if must_wait {
        state.raise_wait(ticket);
    }
}

/// A session's journaled changes as store operations.
fn journal_ops(client_id: &ByteString, changes: Vec<Change>) -> Vec<Op> {
    changes
        .into_iter()
        .map(|c| match c {
            Change::Outbox {
                seq,
                record: Some(record),
            } => Op::PutOutbox {
                client_id: client_id.clone(),
                seq,
                record,
            },
            Change::Outbox { seq, record: None } => Op::DeleteOutbox {
                client_id: client_id.clone(),
                seq,
            },
            Change::Incoming {
                packet_id,
                present: true,
            } => Op::PutIncoming {
                client_id: client_id.clone(),
                packet_id,
            },
            Change::Incoming {
                packet_id,
                present: false,
            } => Op::DeleteIncoming {
                client_id: client_id.clone(),
                packet_id,
            },
        })
        .collect()
}
