//! The broker's shared state and the façade the edges call (server,
//! bridges, ops, admin). Each job is a part with private state, in a file
//! of its own:
//!
//! - `registry`: which session each client id has;
//! - `router` (a seam, [`Router`]): subscriptions and matching;
//! - `retained` (a seam, [`RetainedBackend`]): retained messages;
//! - `timers`: will delays and session expiries of offline sessions, one
//!   task for all of them;
//! - `lifecycle`: uptime, connection count, shutdown; `stats`: counters;
//!   `budget`: global budgets; `access`: passwords and ACL.
//!
//! The façade's work is split the same way: `publish` routes a message in
//! small steps, `sessions` opens, ends and subscribes sessions, `offline`
//! carries out what follows a closed connection, `restore` rebuilds
//! everything from the store. The lock order between the parts is written
//! in docs/ARCHITECTURE.md.

mod access;
mod budget;
mod directory;
mod fed;
mod lifecycle;
mod offline;
mod publish;
mod registry;
mod restore;
mod retained;
mod router;
mod sessions;
mod signals;
mod slot;
mod stats;
mod timers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytestring::ByteString;
use tokio::sync::watch;

pub use access::AccessControl;
pub use budget::{BudgetNumbers, Budgets, OpeningCharge};
pub use directory::{Claim, SessionDirectory};
pub use publish::{message_from_record, message_record, will_message, Published};
pub use restore::RestoreSummary;
pub use retained::{LocalRetained, RetainedBackend, RetainedStore};
pub use router::{LocalRouter, RouteEntry, Router, Target};
pub use signals::{OneshotSinkAck, StoreRelease};
pub use slot::{set_parked_waker, Control, ParkedWaker, SessionSlot, Subscription};
pub use stats::{SessionTotals, Stats, TOP_DROPPING_SESSIONS};
/// Public for its criterion bench (and the keep-alive deadlines to come).
pub use timers::TimerWheel;

use crate::codec::QoS;
use crate::config::Config;
use crate::session::{Message, MessageRelease, QueueLimits};
use crate::store::{now_ms, Op, Store};
use lifecycle::Lifecycle;
use registry::SessionRegistry;
use timers::OfflineTimers;

/// The parts a deployment may replace: the router and the retained
/// messages (the store's seam is `store::Backend`, under [`Store`]).
/// `Seams::default()` is this process's own tree and retained store.
pub struct Seams {
    pub router: Arc<dyn Router>,
    pub retained: Arc<dyn RetainedBackend>,
}

impl Default for Seams {
    fn default() -> Self {
        Seams {
            router: Arc::new(LocalRouter::default()),
            retained: Arc::new(LocalRetained::default()),
        }
    }
}

pub struct Broker {
    pub config: Config,
    router: Arc<dyn Router>,
    retained: Arc<dyn RetainedBackend>,
    sessions: SessionRegistry,
    timers: Arc<OfflineTimers>,
    lifecycle: Lifecycle,
    pub stats: Stats,
    /// Global budgets (opening connections, retained, sessions, queues).
    pub budget: Arc<Budgets>,
    store: Store,
    /// Deletes a stored message when its last reference goes; made once
    /// here so each stored message only clones it (no allocation).
    release: Arc<dyn MessageRelease>,
    access: ArcSwap<AccessControl>,
    /// Where client ids are claimed across nodes (cluster mode).
    directory: std::sync::OnceLock<Arc<dyn SessionDirectory>>,
    /// Failed logins per source address (kept across reloads).
    pub login_throttle: crate::auth::LoginThrottle,
}

impl Drop for Broker {
    /// The timer driver holds the broker weakly: wake it so it sees the
    /// broker gone and ends.
    fn drop(&mut self) {
        self.timers.wake();
    }
}

impl Broker {
    pub fn new(config: Config, store: Store) -> Arc<Broker> {
        Broker::with_seams(config, store, Seams::default())
    }

    /// A broker over other implementations of the router and the retained
    /// messages (a cluster's, a test double).
    pub fn with_seams(config: Config, store: Store, seams: Seams) -> Arc<Broker> {
        let login_throttle = crate::auth::LoginThrottle::new(
            config.limits.max_auth_failures,
            Duration::from_secs(config.limits.auth_failure_window_secs),
        );
        let budget = Arc::new(Budgets::new(&config.limits));
        Arc::new(Broker {
            config,
            router: seams.router,
            retained: seams.retained,
            sessions: SessionRegistry::default(),
            timers: Arc::default(),
            lifecycle: Lifecycle::default(),
            stats: Stats::default(),
            budget,
            release: Arc::new(StoreRelease(store.clone())),
            store,
            access: ArcSwap::from_pointee(AccessControl::default()),
            directory: std::sync::OnceLock::new(),
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

    /// Installs the cluster's session directory (once, at start).
    pub fn set_directory(&self, directory: Arc<dyn SessionDirectory>) {
        let _ = self.directory.set(directory);
    }

    /// Claims `client_id` for `identity` across nodes; granted on a single
    /// node.
    pub async fn claim_session(
        &self,
        client_id: &ByteString,
        identity: Option<&ByteString>,
        clean_start: bool,
    ) -> Claim {
        match self.directory.get() {
            Some(d) => d.claim(client_id, identity, clean_start).await,
            None => Claim::Granted,
        }
    }

    /// What the client's next output waits for once `slot`'s QoS 2 flows
    /// changed: the cluster's record of them, written after what the
    /// output waited for already (`after`).
    pub fn flows_recorded(
        &self,
        slot: &SessionSlot,
        flows: crate::session::Flows,
        after: Vec<tokio::sync::oneshot::Receiver<()>>,
    ) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        match self.directory.get() {
            Some(d) => d.flows_changed(slot, flows, after),
            None => after,
        }
    }

    /// A connection attached to `slot` (the directory may start feeding a
    /// persistent session from the cluster).
    pub fn session_attached(&self, slot: &Arc<SessionSlot>) {
        if let Some(d) = self.directory.get() {
            d.session_attached(slot);
        }
    }

    /// The bytes `slot`'s record can still take for new subscriptions
    /// (see [`SessionDirectory::subscription_room`]); unbounded on a
    /// single node.
    pub fn subscription_room(&self, slot: &SessionSlot) -> usize {
        self.directory
            .get()
            .and_then(|d| d.subscription_room(slot))
            .unwrap_or(usize::MAX)
    }

    /// What a change of `slot`'s subscriptions must wait for beyond the
    /// store: the cluster's record of them, in cluster mode.
    pub fn subscriptions_recorded(
        &self,
        slot: &Arc<SessionSlot>,
    ) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        match self.directory.get() {
            Some(d) => d.subscriptions_changed(slot),
            None => Vec::new(),
        }
    }

    /// Tells the directory which will this node now holds for `client_id`
    /// (a connection's, from its CONNECT) or that it holds none.
    pub fn note_will(&self, client_id: &ByteString, will: Option<&crate::codec::Will>) {
        if let Some(d) = self.directory.get() {
            let will = will.map(|w| {
                let delay = w.properties.will_delay_interval.unwrap_or(0);
                (will_message(w, client_id), delay)
            });
            d.will_changed(client_id, will);
        }
    }

    /// After a connection closed: a will already published or cancelled
    /// needs no other node (a delayed one stays theirs until it fires).
    /// Nothing to do, and no lock taken, on a single node.
    fn forget_settled_will(&self, slot: &SessionSlot) {
        if self.directory.get().is_some() && slot.control.lock().will.is_none() {
            self.note_will(&slot.client_id, None);
        }
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
        self.lifecycle.uptime()
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
        self.lifecycle.shutdown_signal()
    }

    pub fn begin_shutdown(&self) {
        self.lifecycle.begin_shutdown();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lifecycle.is_shutting_down()
    }

    /// Reserves a connection slot; false when at `max_connections`.
    pub fn try_add_connection(&self) -> bool {
        let added = self
            .lifecycle
            .try_add_connection(self.config.limits.max_connections);
        if added {
            let total = &self.stats.connections_total;
            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        added
    }

    pub fn remove_connection(&self) {
        self.lifecycle.remove_connection();
    }

    pub fn connection_count(&self) -> usize {
        self.lifecycle.connection_count()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.router.len()
    }

    /// Timers pending for offline sessions (wills and expiries).
    pub fn offline_timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Sessions online and offline, and the messages they hold (queued and
    /// in flight). Visits every session: for scrapes, not the hot path.
    pub fn session_totals(&self) -> SessionTotals {
        self.sessions.totals()
    }

    /// Every session, for the admin API (not the hot path).
    pub fn sessions(&self) -> Vec<Arc<SessionSlot>> {
        self.sessions.all()
    }

    /// Every session's client id (for housekeeping, not the hot path).
    pub fn session_ids(&self) -> Vec<ByteString> {
        self.sessions.ids()
    }

    pub fn find_session(&self, client_id: &ByteString) -> Option<Arc<SessionSlot>> {
        self.sessions.find(client_id)
    }

    /// Live retained messages matching `filter`, in topic order.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained.matching(filter, Instant::now())
    }

    /// Drops retained messages whose v5 message expiry has passed (they are
    /// already invisible to subscribers; this frees their memory). Their
    /// store rows go too. Returns how many.
    pub fn purge_expired_retained(&self) -> usize {
        let topics = self.retained.purge_expired(Instant::now());
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
            self.retained.put(&clear);
            if self.store.is_enabled() {
                self.store.submit(vec![Op::DeleteRetained {
                    topic: topic.clone(),
                }]);
            }
        }
        existed
    }

    /// Highest QoS the broker grants.
    pub fn maximum_qos(&self) -> QoS {
        QoS::ExactlyOnce
    }
}

#[cfg(test)]
mod tests;
