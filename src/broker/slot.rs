//! A session as the broker holds it: the protocol state behind its own
//! lock (never a global one), a wake-up for the connection that serves it,
//! and the bookkeeping of which connection that is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::codec::{ProtocolVersion, ReasonCode, SubscriptionOptions, Will};
use crate::session::{Delivery, Enqueued, QueueLimits, SessionState};
use crate::topic::TopicFilter;

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
    pub will: Option<Will>,
    pub will_delay: u32,
    pub session_expiry: u32,
    pub protocol: Option<ProtocolVersion>,
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
            connection_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    /// Queues a delivery and wakes the connection, if any.
    pub fn deliver(&self, d: Delivery) -> Enqueued {
        let outcome = self.state.lock().enqueue(d);
        if outcome != Enqueued::DroppedNew {
            self.notify.notify_one();
        }
        outcome
    }
}
