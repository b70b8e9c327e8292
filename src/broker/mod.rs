//! The broker's shared state: sessions, the subscription tree and retained
//! messages, and the routing of a publish to the sessions that want it.
//!
//! The router takes a message and hands deliveries to session slots through
//! one narrow path (`publish`), so a remote node or a bridge can later be
//! just another kind of subscriber.

mod retained;
mod slot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub use retained::RetainedStore;
pub use slot::{Control, SessionSlot, Subscription};

use crate::codec::{QoS, RetainHandling};
use crate::config::Config;
use crate::session::{Delivery, Enqueued, Message, QueueLimits};
use crate::topic::SubscriptionTree;

/// What the subscription tree stores per (client, filter).
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub slot: Arc<SessionSlot>,
    pub subscription: Subscription,
}

/// Counters exposed to logs now and to metrics later.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages_received: AtomicU64,
    pub messages_routed: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub connections_total: AtomicU64,
}

pub struct Broker {
    pub config: Config,
    subscriptions: RwLock<SubscriptionTree<RouteEntry>>,
    retained: RwLock<RetainedStore>,
    sessions: Mutex<HashMap<ByteString, Arc<SessionSlot>>>,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    pub stats: Stats,
    started: Instant,
}

impl Broker {
    pub fn new(config: Config) -> Arc<Broker> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(Broker {
            config,
            subscriptions: RwLock::new(SubscriptionTree::default()),
            retained: RwLock::new(RetainedStore::default()),
            sessions: Mutex::new(HashMap::new()),
            shutdown,
            connections: AtomicUsize::new(0),
            stats: Stats::default(),
            started: Instant::now(),
        })
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
            let messages = self.retained.read().matching(&sub.filter.filter, now);
            for message in messages {
                let qos = message.qos.min(sub.options.qos);
                slot.deliver(Delivery {
                    message,
                    qos,
                    retain: true,
                    subscription_ids: sub.identifier.into_iter().collect(),
                });
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
    /// every matching subscription identifier. Returns how many sessions
    /// were offered the message.
    pub fn publish(&self, message: Message) -> usize {
        let message = Arc::new(message);
        self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
        if message.retain {
            self.retained.write().put(&message);
        }
        let mut merged: Vec<(Arc<SessionSlot>, Delivery)> = Vec::new();
        let mut index: HashMap<*const SessionSlot, usize> = HashMap::new();
        {
            let tree = self.subscriptions.read();
            tree.for_each_match(
                &message.topic,
                &|e: &RouteEntry| e.slot.is_online(),
                &mut |m| {
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
                    if !m.shared {
                        let key = Arc::as_ptr(&e.slot);
                        if let Some(&i) = index.get(&key) {
                            let d = &mut merged[i].1;
                            d.qos = d.qos.max(qos);
                            d.retain |= retain;
                            d.subscription_ids.extend(e.subscription.identifier);
                            return;
                        }
                        index.insert(key, merged.len());
                    }
                    merged.push((
                        Arc::clone(&e.slot),
                        Delivery {
                            message: Arc::clone(&message),
                            qos,
                            retain,
                            subscription_ids: e.subscription.identifier.into_iter().collect(),
                        },
                    ));
                },
            );
        }
        let n = merged.len();
        for (slot, d) in merged {
            if slot.deliver(d) != Enqueued::Queued {
                self.stats.messages_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client_id = %slot.client_id, "session queue full, message dropped");
            }
        }
        self.stats
            .messages_routed
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Highest QoS the broker grants.
    pub fn maximum_qos(&self) -> QoS {
        QoS::ExactlyOnce
    }
}
