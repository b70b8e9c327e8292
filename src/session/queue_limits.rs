//! How much a session's queue may hold, and what happens when it is full.

use std::sync::Arc;

use super::queued_bytes::QueuedBytes;

/// What to do when a session's queue is full. A bridge's session never
/// drops a QoS 1/2 delivery, whatever the policy: it pushes back at its
/// limits (see `state/enqueue.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// Drop the oldest queued message to make room (newest data wins).
    #[default]
    DropOldest,
    /// Refuse the new message.
    DropNewest,
    /// For a persistent session: once its queue is full, ask publishers to
    /// wait (v5 QoS 1/2 publishes are refused with 0x97 and retried; other
    /// publishers are read more slowly) instead of dropping, until the
    /// session's client has taken a quarter of the queue. A message that
    /// still arrives for a full queue (QoS 0, 3.1.1 publishers) is dropped
    /// and counted. A session that does not outlive its connection drops
    /// the oldest.
    PushBack,
}

/// Bounds on what a session may hold.
#[derive(Debug, Clone)]
pub struct QueueLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub policy: QueueFullPolicy,
    /// The budget shared by every session (`max_total_queued_bytes`).
    pub global: Option<Arc<QueuedBytes>>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_messages: 10_000,
            max_bytes: 64 << 20,
            policy: QueueFullPolicy::DropOldest,
            global: None,
        }
    }
}
