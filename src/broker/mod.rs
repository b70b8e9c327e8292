//! The broker's shared state: sessions, the subscription tree and retained
//! messages, and the routing of a publish to the sessions that want it.
//!
//! The router takes a message and hands deliveries to session slots through
//! one narrow path (`publish`), so a remote node or a bridge can later be
//! just another kind of subscriber.

mod access;
mod budget;
mod retained;
mod signals;
mod slot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub use access::AccessControl;
pub use budget::{BudgetNumbers, Budgets, OpeningCharge};
pub use retained::RetainedStore;
pub use signals::{OneshotSinkAck, StoreRelease};
pub use slot::{Control, SessionSlot, Subscription};

use crate::codec::{QoS, RetainHandling, Will};
use crate::config::Config;
use crate::session::{
    AfterDisconnect, Delivery, Enqueued, Message, MessageRelease, QueueLimits, StoredMessage,
};
use crate::store::{now_ms, MessageRecord, Op, OutboxRecord, OutboxState, Store, Ticket};
use crate::topic::{Pick, SubscriptionTree, TopicFilter};

mod restore;
pub use restore::RestoreSummary;

/// What routing a publish produced.
#[derive(Debug)]
pub struct Published {
    /// Sessions (and shared groups) that were offered the message.
    pub matched: usize,
    /// Durable once everything this publish must keep is on disk: the
    /// publisher's PUBACK/PUBREC waits for it.
    pub ticket: Ticket,
    /// A matching subscriber (a bridge with a full buffer and the `block`
    /// policy) asks publishers to slow down.
    pub saturated: bool,
    /// Not routed at all: the caller asked to refuse when saturated.
    pub refused: bool,
    /// One per bridge with `ack = "sink"` that took a QoS 1/2 copy: the
    /// publisher's acknowledgement waits for all of them.
    pub sink_acks: Vec<tokio::sync::oneshot::Receiver<()>>,
}

/// The store's copy of a message.
pub fn message_record(m: &Message) -> MessageRecord {
    let now = Instant::now();
    MessageRecord {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.clone(),
        expires_at_ms: m
            .expires_at
            .map(|t| (now_ms() + t.saturating_duration_since(now).as_millis() as u64).max(1))
            .unwrap_or(0),
        publisher: m.publisher.clone(),
        username: m.username.clone(),
        accepted_ms: m.accepted_ms,
    }
}

/// What the subscription tree stores per (client, filter).
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub slot: Arc<SessionSlot>,
    pub subscription: Subscription,
}

/// Counters for logs, `$SYS` and the metrics endpoint. Plain relaxed
/// atomics: connections add their counts once per read or write batch.
#[derive(Debug, Default)]
pub struct Stats {
    /// Deliveries dropped because a session's queue was full.
    pub messages_dropped: AtomicU64,
    pub connections_total: AtomicU64,
    /// PUBLISH packets received, by QoS.
    pub received_by_qos: [AtomicU64; 3],
    /// PUBLISH packets sent, by QoS.
    pub sent_by_qos: [AtomicU64; 3],
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// CONNECTs refused for bad credentials or not authorized.
    pub auth_failures: AtomicU64,
    /// CONNECTs refused because their client id belongs to a session of
    /// another identity.
    pub takeover_refused: AtomicU64,
    /// Connections closed because the client stopped reading (a write made
    /// no progress within `limits.write_timeout_secs`).
    pub slow_consumers_disconnected: AtomicU64,
    /// PUBLISHes refused by the ACL.
    pub publish_denied: AtomicU64,
    /// QoS 1/2 PUBLISHes answered 0x97 because a bridge was full.
    pub publish_quota_refused: AtomicU64,
    /// Messages not sent because they exceed the client's maximum packet
    /// size.
    pub dropped_too_large: AtomicU64,
    /// Connected clients by protocol: [3.1.1, 5.0].
    pub connected_by_protocol: [AtomicUsize; 2],
    /// Connections accepted since start by protocol: [3.1.1, 5.0].
    pub connected_total_by_protocol: [AtomicU64; 2],
    /// Most clients connected at once.
    pub max_connected: AtomicUsize,
}

impl Stats {
    pub fn protocol_index(v: crate::codec::ProtocolVersion) -> usize {
        usize::from(v.is_v5())
    }

    pub fn client_connected(&self, v: crate::codec::ProtocolVersion) {
        let i = Stats::protocol_index(v);
        let now = self.connected_by_protocol[i].fetch_add(1, Ordering::Relaxed)
            + 1
            + self.connected_by_protocol[1 - i].load(Ordering::Relaxed);
        self.connected_total_by_protocol[i].fetch_add(1, Ordering::Relaxed);
        self.max_connected.fetch_max(now, Ordering::Relaxed);
    }

    pub fn client_disconnected(&self, v: crate::codec::ProtocolVersion) {
        self.connected_by_protocol[Stats::protocol_index(v)].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn clients_connected(&self) -> usize {
        self.connected_by_protocol
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// What [`Broker::session_totals`] counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionTotals {
    pub online: u64,
    pub offline: u64,
    pub queued: u64,
    pub inflight: u64,
    /// Sessions holding publishers back (`push_back` policy).
    pub pushing_back: u64,
    /// The sessions that lost the most messages to full queues, most
    /// first, at most [`TOP_DROPPING_SESSIONS`]: a per-client view of drops
    /// whose size does not grow with the fleet.
    pub top_dropping: Vec<(ByteString, u64)>,
}

/// How many sessions [`SessionTotals::top_dropping`] names.
pub const TOP_DROPPING_SESSIONS: usize = 10;

pub struct Broker {
    pub config: Config,
    subscriptions: RwLock<SubscriptionTree<RouteEntry>>,
    retained: RwLock<RetainedStore>,
    sessions: Mutex<HashMap<ByteString, Arc<SessionSlot>>>,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    pub stats: Stats,
    /// Global budgets (opening connections, retained, sessions, queues).
    pub budget: Arc<Budgets>,
    started: Instant,
    store: Store,
    /// Deletes a stored message when its last reference goes; made once
    /// here so each stored message only clones it (no allocation).
    release: Arc<dyn MessageRelease>,
    access: ArcSwap<AccessControl>,
    /// Failed logins per source address (kept across reloads).
    pub login_throttle: crate::auth::LoginThrottle,
}

impl Broker {
    pub fn new(config: Config, store: Store) -> Arc<Broker> {
        let (shutdown, _) = watch::channel(false);
        let login_throttle = crate::auth::LoginThrottle::new(
            config.limits.max_auth_failures,
            Duration::from_secs(config.limits.auth_failure_window_secs),
        );
        let budget = Arc::new(Budgets::new(&config.limits));
        Arc::new(Broker {
            config,
            subscriptions: RwLock::new(SubscriptionTree::default()),
            retained: RwLock::new(RetainedStore::default()),
            sessions: Mutex::new(HashMap::new()),
            shutdown,
            connections: AtomicUsize::new(0),
            stats: Stats::default(),
            budget,
            started: Instant::now(),
            release: Arc::new(StoreRelease(store.clone())),
            store,
            access: ArcSwap::from_pointee(AccessControl::default()),
            login_throttle,
        })
    }

    /// The current password file and ACL. A lock-free load: every publish
    /// consults it, so a shared lock here would serialize the publish path.
    pub fn access(&self) -> arc_swap::Guard<Arc<AccessControl>> {
        self.access.load()
    }

    /// Installs new access rules (at startup and on reload).
    pub fn set_access(&self, access: AccessControl) {
        self.access.store(Arc::new(access));
    }

    /// Re-reads the password and ACL files; on error the old rules stay.
    pub fn reload_access(&self) -> Result<(), crate::auth::AuthError> {
        let access = AccessControl::load(
            self.config.password_file.as_ref(),
            self.config.acl_file.as_ref(),
        )?;
        self.set_access(access);
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn queue_limits(&self) -> QueueLimits {
        let l = &self.config.limits;
        QueueLimits {
            max_messages: l.max_queued_messages,
            max_bytes: l.max_queued_bytes,
            policy: l.queue_full_policy,
            global: Some(Arc::clone(&self.budget.queued)),
        }
    }

    /// Resolves when shutdown has been requested.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Reserves a connection slot; false when at `max_connections`.
    pub fn try_add_connection(&self) -> bool {
        let max = self.config.limits.max_connections;
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Sessions online and offline, and the messages they hold (queued and
    /// in flight). Visits every session: for scrapes, not the hot path.
    pub fn session_totals(&self) -> SessionTotals {
        let slots: Vec<Arc<SessionSlot>> = self.sessions.lock().values().cloned().collect();
        let mut t = SessionTotals::default();
        for slot in slots {
            if slot.is_online() {
                t.online += 1;
            } else {
                t.offline += 1;
            }
            t.pushing_back += u64::from(slot.is_pushing_back());
            let state = slot.state.lock();
            t.queued += state.queued_len() as u64;
            t.inflight += state.inflight_len() as u64;
            let dropped = state.dropped;
            drop(state);
            let full = t.top_dropping.len() >= TOP_DROPPING_SESSIONS;
            if dropped > 0 && (!full || t.top_dropping.last().is_some_and(|l| l.1 < dropped)) {
                if full {
                    t.top_dropping.pop();
                }
                let at = t.top_dropping.partition_point(|(_, d)| *d >= dropped);
                t.top_dropping.insert(at, (slot.client_id.clone(), dropped));
            }
        }
        t
    }

    /// Every session, for the admin API (not the hot path).
    pub fn sessions(&self) -> Vec<Arc<SessionSlot>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Live retained messages matching `filter`, in topic order.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained.read().matching(filter, Instant::now())
    }

    /// Drops retained messages whose v5 message expiry has passed (they are
    /// already invisible to subscribers; this frees their memory). Their
    /// store rows go too. Returns how many.
    pub fn purge_expired_retained(&self) -> usize {
        let topics = self.retained.write().purge_expired_topics(Instant::now());
        if self.store.is_enabled() && !topics.is_empty() {
            self.store.submit(
                topics
                    .iter()
                    .map(|topic| Op::DeleteRetained {
                        topic: topic.clone(),
                    })
                    .collect(),
            );
        }
        topics.len()
    }

    /// Periodic upkeep until shutdown: expired retained messages leave
    /// memory and the store.
    pub async fn housekeeping(self: Arc<Self>, every: Duration) {
        let mut shutdown = self.shutdown_signal();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let purged = self.purge_expired_retained();
            if purged > 0 {
                tracing::debug!(purged, "expired retained messages removed");
            }
        }
    }

    /// Removes the retained message of `topic` without publishing anything
    /// (an admin action). False if there was none.
    pub fn delete_retained(&self, topic: &ByteString) -> bool {
        let existed = !self.retained_matching(topic).is_empty();
        if existed {
            let clear = Arc::new(Message::from_broker(
                topic.clone(),
                bytes::Bytes::new(),
                QoS::AtMostOnce,
                true,
                now_ms(),
            ));
            self.retained.write().put(&clear);
            if self.store.is_enabled() {
                self.store.submit(vec![Op::DeleteRetained {
                    topic: topic.clone(),
                }]);
            }
        }
        existed
    }

    /// Every session's client id (for housekeeping, not the hot path).
    pub fn session_ids(&self) -> Vec<ByteString> {
        self.sessions.lock().keys().cloned().collect()
    }

    pub fn find_session(&self, client_id: &ByteString) -> Option<Arc<SessionSlot>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Returns the session to attach to: the existing one unless
    /// `clean_start`, in which case the old state is discarded. The bool is
    /// "session present".
    pub fn open_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
    ) -> (Arc<SessionSlot>, bool) {
        let mut sessions = self.sessions.lock();
        if let Some(existing) = sessions.get(client_id) {
            if !clean_start {
                return (Arc::clone(existing), true);
            }
            let old = Arc::clone(existing);
            sessions.remove(client_id);
            drop(sessions);
            self.drop_subscriptions(&old);
            self.store.submit(vec![Op::DeleteSession {
                client_id: client_id.clone(),
            }]);
            self.hand_over_shared(&old);
            sessions = self.sessions.lock();
        }
        let slot = Arc::new(SessionSlot::new(client_id.clone(), self.queue_limits()));
        sessions.insert(client_id.clone(), Arc::clone(&slot));
        (slot, false)
    }

    /// Ends a session: forgets it and its subscriptions, unless it has
    /// already been replaced by another slot.
    pub fn remove_session(&self, slot: &Arc<SessionSlot>) {
        let mut sessions = self.sessions.lock();
        match sessions.get(&slot.client_id) {
            Some(current) if Arc::ptr_eq(current, slot) => {
                sessions.remove(&slot.client_id);
            }
            _ => return,
        }
        drop(sessions);
        self.drop_subscriptions(slot);
        self.store.submit(vec![Op::DeleteSession {
            client_id: slot.client_id.clone(),
        }]);
        self.hand_over_shared(slot);
    }

    /// Gives the messages a shared subscription picked `slot` for, and
    /// that its client has not acknowledged, to other members of their
    /// groups (v5 4.8.2: the session ended). Called once `slot` has left
    /// the tree, so it is never picked again. A group with no member left
    /// that may read the message drops it (counted).
    fn hand_over_shared(&self, slot: &Arc<SessionSlot>) {
        let taken = slot.state.lock().take_shared_deliveries();
        if taken.is_empty() {
            return;
        }
        let access = self.access();
        let acl = access.acl.as_ref();
        let mut ops = Vec::new();
        let mut handed = Vec::with_capacity(taken.len());
        let mut lost = 0u64;
        {
            let tree = self.subscriptions.read();
            for mut d in taken {
                let picked = d
                    .shared_group
                    .clone()
                    .and_then(|raw| TopicFilter::parse(raw, usize::MAX).ok())
                    .and_then(|filter| {
                        tree.pick_shared(&filter, &|e| shared_rank(acl, e, &d.message.topic))
                            .cloned()
                    });
                let Some(entry) = picked else {
                    lost += 1;
                    continue;
                };
                d.qos = d.message.qos.min(entry.subscription.options.qos);
                d.subscription_ids = entry.subscription.identifier.into_iter().collect();
                d.seq = None;
                if let (Some(message_id), true) = (
                    d.message.stored_id(),
                    d.qos != QoS::AtMostOnce && entry.slot.is_persistent(),
                ) {
                    let seq = entry.slot.next_seq();
                    ops.push(Op::PutOutbox {
                        client_id: entry.slot.client_id.clone(),
                        seq,
                        record: OutboxRecord {
                            message_id,
                            qos: d.qos,
                            retain: d.retain,
                            state: OutboxState::Queued,
                            packet_id: 0,
                            subscription_ids: d.subscription_ids.clone(),
                        },
                    });
                    d.seq = Some(seq);
                }
                handed.push((entry.slot, d));
            }
        }
        self.store.submit(ops);
        tracing::debug!(client_id = %slot.client_id, handed = handed.len(), lost, "shared-subscription messages handed over");
        if lost > 0 {
            self.stats
                .messages_dropped
                .fetch_add(lost, Ordering::Relaxed);
        }
        for (target, d) in handed {
            target.deliver(d, &self.store);
        }
    }

    /// Writes a persistent session's record (subscriptions, will, expiry).
    pub fn persist_session(&self, slot: &SessionSlot, disconnected_at_ms: u64) -> Ticket {
        if !slot.is_persistent() || !self.store.is_enabled() {
            return Ticket::default();
        }
        let record = Box::new(slot.record(disconnected_at_ms));
        self.store.submit(vec![Op::PutSession {
            client_id: slot.client_id.clone(),
            record,
        }])
    }

    /// Carries out what follows a closed connection: publishes a delayed
    /// will and ends the session when their time comes, unless the client
    /// reconnected meanwhile (`generation` changed).
    pub fn schedule_offline(
        self: &Arc<Self>,
        slot: &Arc<SessionSlot>,
        plan: AfterDisconnect,
        generation: u64,
    ) {
        if let Some(after) = plan.will_after {
            let broker = Arc::clone(self);
            let slot = Arc::clone(slot);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if !still_offline(&slot, generation) {
                    return;
                }
                let will = slot.control.lock().will.take();
                if let Some(w) = will {
                    broker.publish_will(&w, &slot);
                    broker.persist_session(&slot, now_ms());
                }
            });
        }
        match plan.session_ends_after {
            Some(d) if d.is_zero() => self.remove_session(slot),
            Some(d) => {
                let broker = Arc::clone(self);
                let slot = Arc::clone(slot);
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    if still_offline(&slot, generation) {
                        tracing::debug!(client_id = %slot.client_id, "session expired");
                        broker.remove_session(&slot);
                    }
                });
            }
            None => {}
        }
    }

    fn drop_subscriptions(&self, slot: &Arc<SessionSlot>) {
        let subs: Vec<Subscription> = slot.subscriptions.lock().drain().map(|(_, s)| s).collect();
        let mut tree = self.subscriptions.write();
        for s in subs {
            tree.remove(&s.filter, &slot.client_id);
        }
    }

    /// Adds (or replaces) a subscription and queues the retained messages it
    /// calls for. Returns whether the subscription already existed.
    pub fn subscribe(&self, slot: &Arc<SessionSlot>, sub: Subscription, now: Instant) -> bool {
        let existed = {
            let mut tree = self.subscriptions.write();
            let entry = RouteEntry {
                slot: Arc::clone(slot),
                subscription: sub.clone(),
            };
            tree.insert(&sub.filter, slot.client_id.clone(), entry)
        };
        slot.subscriptions
            .lock()
            .insert(sub.filter.raw.clone(), sub.clone());
        let send_retained = sub.filter.share_group.is_none()
            && match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            let mut messages = self.retained.read().matching(&sub.filter.filter, now);
            if let Some(acl) = &self.access().acl {
                messages.retain(|m| slot.may_read(acl, &m.topic));
            }
            for message in messages {
                let qos = message.qos.min(sub.options.qos);
                slot.deliver(
                    Delivery {
                        message,
                        qos,
                        retain: true,
                        subscription_ids: sub.identifier.into_iter().collect(),
                        seq: None,
                        sink_ack: None,
                        shared_group: None,
                    },
                    &self.store,
                );
            }
        }
        existed
    }

    /// Removes a subscription by the filter string the client used.
    pub fn unsubscribe(&self, slot: &Arc<SessionSlot>, raw_filter: &ByteString) -> bool {
        let Some(sub) = slot.subscriptions.lock().remove(raw_filter) else {
            return false;
        };
        self.subscriptions
            .write()
            .remove(&sub.filter, &slot.client_id)
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions.read().len()
    }

    /// Routes a message: stores it if retained, then queues one delivery per
    /// matching session (one per shared group). A session with overlapping
    /// subscriptions gets a single copy at the highest granted QoS carrying
    /// every matching subscription identifier. What must survive a crash
    /// (the retained copy, QoS 1/2 deliveries to persistent sessions) goes
    /// to the store first; the returned ticket says when it is durable.
    pub fn publish(&self, message: Message) -> Published {
        self.publish_with(message, false)
    }

    /// As [`Broker::publish`]; with `refuse_if_saturated`, a message that
    /// would reach a saturated subscriber is not routed at all (the caller
    /// answers v5 0x97 quota exceeded and the publisher retries later).
    pub fn publish_with(&self, mut message: Message, refuse_if_saturated: bool) -> Published {
        message = match self.budget_retained(message, refuse_if_saturated) {
            Ok(m) => m,
            Err(refused) => return refused,
        };
        let mut targets: Vec<Target> = Vec::new();
        // Overlapping subscriptions of one session merge into one target.
        // Most publishes match a handful of sessions: a scan finds the
        // earlier target. Past that, targets are pushed as they come and
        // merged once at the end, sorted by session (no hashing per
        // publish: a fan-out to 100 sessions spent 8% of its CPU building
        // a map).
        let mut merge_later = false;
        let access = self.access();
        let acl = access.acl.as_ref();
        let eligible = |e: &RouteEntry| shared_rank(acl, e, &message.topic);
        {
            let tree = self.subscriptions.read();
            tree.for_each_match(&message.topic, &eligible, &mut |m| {
                let e = m.value;
                let opts = &e.subscription.options;
                if !m.shared
                    && opts.no_local
                    && message.publisher.as_ref() == Some(&e.slot.client_id)
                {
                    return;
                }
                let qos = message.qos.min(opts.qos);
                let retain = message.retain && opts.retain_as_published;
                if !m.shared && !merge_later {
                    let key = Arc::as_ptr(&e.slot);
                    let found = targets
                        .iter_mut()
                        .find(|t| !t.shared && Arc::as_ptr(&t.slot) == key);
                    if let Some(t) = found {
                        t.qos = t.qos.max(qos);
                        t.retain |= retain;
                        t.subscription_ids.extend(e.subscription.identifier);
                        return;
                    }
                    merge_later = targets.len() >= MERGE_SCAN_LIMIT;
                }
                targets.push(Target {
                    slot: Arc::clone(&e.slot),
                    qos,
                    retain,
                    subscription_ids: e.subscription.identifier.into_iter().collect(),
                    shared: m.shared,
                    share: m.shared.then(|| e.subscription.filter.raw.clone()),
                });
            });
        }
        if merge_later {
            merge_overlapping(&mut targets);
        }

        if let Some(acl) = acl {
            // Shared picks were checked when they were chosen.
            targets.retain(|t| t.shared || t.slot.may_read(acl, &message.topic));
        }
        let saturated = targets.iter().any(|t| t.slot.is_saturated());
        if saturated && refuse_if_saturated {
            return Published {
                matched: 0,
                ticket: Ticket::default(),
                saturated,
                refused: true,
                sink_acks: Vec::new(),
            };
        }
        let store_on = self.store.is_enabled();
        let mut ops = Vec::new();
        // `$SYS` values are rewritten every few seconds and stale after a
        // restart: kept in memory only.
        let keep_retained =
            message.retain && !message.payload.is_empty() && !message.topic.starts_with("$SYS/");
        let keep_for_sessions = targets
            .iter()
            .any(|t| t.qos != QoS::AtMostOnce && t.slot.is_persistent());
        if store_on && (keep_retained || keep_for_sessions) {
            let id = self.store.next_message_id();
            ops.push(Op::PutMessage {
                id,
                record: message_record(&message),
            });
            message.stored = Some(Arc::new(StoredMessage::new(id, self.release.clone())));
        }
        let message = Arc::new(message);
        if message.retain {
            self.retained.write().put(&message);
            if store_on {
                ops.push(match message.stored_id() {
                    Some(message_id) if keep_retained => Op::PutRetained {
                        topic: message.topic.clone(),
                        message_id,
                    },
                    _ => Op::DeleteRetained {
                        topic: message.topic.clone(),
                    },
                });
            }
        }
        let mut deliveries = Vec::with_capacity(targets.len());
        let mut sink_acks = Vec::new();
        for t in targets {
            let sink_ack = if t.qos != QoS::AtMostOnce && t.slot.acks_on_sink() {
                let (signal, wait) = OneshotSinkAck::pair();
                sink_acks.push(wait);
                Some(signal)
            } else {
                None
            };
            let mut seq = None;
            if let (Some(message_id), true) = (
                message.stored_id(),
                t.qos != QoS::AtMostOnce && t.slot.is_persistent(),
            ) {
                let s = t.slot.next_seq();
                ops.push(Op::PutOutbox {
                    client_id: t.slot.client_id.clone(),
                    seq: s,
                    record: OutboxRecord {
                        message_id,
                        qos: t.qos,
                        retain: t.retain,
                        state: OutboxState::Queued,
                        packet_id: 0,
                        subscription_ids: t.subscription_ids.clone(),
                    },
                });
                seq = Some(s);
            }
            let d = Delivery {
                message: Arc::clone(&message),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.subscription_ids,
                seq,
                sink_ack,
                shared_group: t.share,
            };
            deliveries.push((t.slot, d));
        }
        // Before queueing: a later delete of a queued entry must follow its put.
        let ticket = self.store.submit(ops);
        let matched = deliveries.len();
        for (slot, d) in deliveries {
            if slot.deliver(d, &self.store) != Enqueued::Queued {
                let total = self.stats.messages_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let session_drops = slot.state.lock().dropped;
                // Never silent, never a log line per message either.
                if session_drops == 1 || session_drops % 1000 == 0 {
                    tracing::warn!(
                        client_id = %slot.client_id,
                        session_drops,
                        total_drops = total,
                        policy = ?self.config.limits.queue_full_policy,
                        "session queue full, messages dropped"
                    );
                }
            }
        }
        Published {
            matched,
            ticket,
            saturated,
            refused: false,
            sink_acks,
        }
    }

    /// Publishes a session's will, if its identity may still write the
    /// topic (the ACL may have been reloaded since CONNECT checked it).
    pub fn publish_will(&self, will: &Will, slot: &SessionSlot) {
        if let Some(acl) = &self.access().acl {
            let user = slot.control.lock().username.clone();
            if !acl.check_topic(
                &slot.client_id,
                user.as_deref(),
                &will.topic,
                crate::auth::Access::Write,
            ) {
                tracing::info!(client_id = %slot.client_id, topic = %will.topic, "will not published: the ACL no longer allows it");
                return;
            }
        }
        self.publish(will_message(will, &slot.client_id));
    }

    /// Highest QoS the broker grants.
    pub fn maximum_qos(&self) -> QoS {
        QoS::ExactlyOnce
    }
}

/// One session a publish goes to, before the message is shared.
struct Target {
    slot: Arc<SessionSlot>,
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
    /// Chosen for a shared group: never merged with the session's own
    /// subscriptions (each is a delivery of its own).
    shared: bool,
    /// The shared subscription's filter, for a hand-over if the session
    /// ends before the message is acknowledged.
    share: Option<ByteString>,
}

/// Targets scanned linearly for a session already matched; past this
/// many, they are merged once after the walk ([`merge_overlapping`]).
const MERGE_SCAN_LIMIT: usize = 16;

/// Merges the targets of one session (not shared-group picks, which are
/// deliveries of their own) into one: highest QoS, retain if any says so,
/// every subscription identifier (3.3.4).
fn merge_overlapping(targets: &mut Vec<Target>) {
    targets.sort_unstable_by_key(|t| (t.shared, Arc::as_ptr(&t.slot) as usize));
    targets.dedup_by(|later, kept| {
        if later.shared || kept.shared || !Arc::ptr_eq(&later.slot, &kept.slot) {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain |= later.retain;
        kept.subscription_ids.append(&mut later.subscription_ids);
        true
    });
}

/// How a shared-group member ranks for a message on `topic`: a member
/// that may not read it is never picked (picking first and checking after
/// would lose the message), an online one is preferred.
fn shared_rank(acl: Option<&crate::auth::Acl>, e: &RouteEntry, topic: &str) -> Pick {
    let allowed = acl.is_none_or(|acl| e.slot.may_read(acl, topic));
    match (allowed, e.slot.is_online()) {
        (false, _) => Pick::Never,
        (true, true) => Pick::Preferred,
        (true, false) => Pick::Fallback,
    }
}

fn still_offline(slot: &SessionSlot, generation: u64) -> bool {
    !slot.is_online() && slot.control.lock().generation == generation
}

/// The message a will becomes when it is published.
pub fn will_message(w: &Will, client_id: &ByteString) -> Message {
    Message {
        topic: w.topic.clone(),
        payload: w.payload.clone(),
        qos: w.qos,
        retain: w.retain,
        properties: Message::forwardable_properties(&w.properties),
        expires_at: w
            .properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s))),
        publisher: Some(client_id.clone()),
        username: None,
        accepted_ms: now_ms(),
        stored: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retained(topic: &str, expires_in: Option<Duration>) -> Message {
        Message {
            topic: ByteString::from(topic),
            payload: bytes::Bytes::from_static(b"v"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: None,
            expires_at: expires_in.map(|d| Instant::now() + d),
            publisher: None,
            username: None,
            accepted_ms: 0,
            stored: None,
        }
    }

    /// Past MERGE_SCAN_LIMIT targets the merge happens after the walk: each
    /// session still gets one delivery, at its highest QoS, with every
    /// identifier; a shared-group pick of the same session stays apart.
    #[test]
    fn overlapping_targets_of_many_sessions_merge_into_one_each() {
        let slots: Vec<Arc<SessionSlot>> = (0..MERGE_SCAN_LIMIT + 4)
            .map(|i| {
                Arc::new(SessionSlot::new(
                    ByteString::from(format!("c{i}")),
                    QueueLimits::default(),
                ))
            })
            .collect();
        let target = |slot: &Arc<SessionSlot>, qos, retain, id: u32, shared| Target {
            slot: Arc::clone(slot),
            qos,
            retain,
            subscription_ids: vec![id],
            shared,
            share: None,
        };
        let mut targets: Vec<Target> = Vec::new();
        for s in &slots {
            targets.push(target(s, QoS::AtMostOnce, false, 1, false));
        }
        for s in slots.iter().rev() {
            targets.push(target(s, QoS::AtLeastOnce, true, 2, false));
        }
        targets.push(target(&slots[0], QoS::AtMostOnce, false, 3, true));
        merge_overlapping(&mut targets);
        assert_eq!(targets.len(), slots.len() + 1);
        for t in targets.iter().filter(|t| !t.shared) {
            let mut ids = t.subscription_ids.clone();
            ids.sort_unstable();
            assert_eq!((t.qos, t.retain, ids), (QoS::AtLeastOnce, true, vec![1, 2]));
        }
        let shared: Vec<&Target> = targets.iter().filter(|t| t.shared).collect();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].subscription_ids, vec![3]);
    }

    #[test]
    fn expired_retained_messages_leave_memory_on_purge() {
        let broker = Broker::new(Config::default(), Store::disabled());
        broker.publish(retained("a/short", Some(Duration::from_millis(10))));
        broker.publish(retained("a/long", Some(Duration::from_secs(3600))));
        broker.publish(retained("a/forever", None));
        assert_eq!(broker.retained_count(), 3);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(broker.purge_expired_retained(), 1);
        assert_eq!(broker.retained_count(), 2);
        assert_eq!(broker.purge_expired_retained(), 0);
    }
}
