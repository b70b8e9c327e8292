//! The seam for retained messages: what the broker asks of whoever keeps
//! them. [`LocalRetained`], the tree of this process behind a read-write
//! lock, is the one the broker starts with; a clustered store (retained
//! messages replicated across nodes) or a test double implements the same
//! methods. Durability is not part of it: the broker journals retained
//! changes to the store itself (`Op::PutRetained` / `DeleteRetained`) and
//! reloads them at startup through [`RetainedBackend::put`].

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use parking_lot::RwLock;

use super::RetainedStore;
use crate::session::Message;

/// Retained messages (3.3.1.3), one per topic name.
///
/// Locks: an implementation takes its own lock inside each call and
/// nothing else under it (dropping a replaced stored message reaches the
/// store's submit mutex, a leaf).
pub trait RetainedBackend: Send + Sync {
    /// Stores, replaces, or (empty payload) clears the topic's message.
    fn put(&self, message: &Arc<Message>);

    /// Live messages matching `filter` (valid, without `$share/g/`), in
    /// topic order.
    fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>>;

    /// Whether storing `message` keeps the charge within `max_bytes`
    /// (`limits.max_retained_bytes`).
    fn fits(&self, message: &Message, max_bytes: usize) -> bool;

    /// Drops the messages whose expiry has passed; returns their topics.
    fn purge_expired(&self, now: Instant) -> Vec<ByteString>;

    /// How many messages are held.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the held messages are charged against `max_retained_bytes`.
    fn bytes(&self) -> usize;
}

/// The retained messages of this process.
#[derive(Debug, Default)]
pub struct LocalRetained(RwLock<RetainedStore>);

impl RetainedBackend for LocalRetained {
    fn put(&self, message: &Arc<Message>) {
        self.0.write().put(message);
    }

    fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        self.0.read().matching(filter, now)
    }

    fn fits(&self, message: &Message, max_bytes: usize) -> bool {
        self.0.read().fits(message, max_bytes)
    }

    fn purge_expired(&self, now: Instant) -> Vec<ByteString> {
        self.0.write().purge_expired_topics(now)
    }

    fn len(&self) -> usize {
        self.0.read().len()
    }

    fn bytes(&self) -> usize {
        self.0.read().bytes()
    }
}
