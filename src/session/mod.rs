//! The session core: protocol state that needs no socket and no clock.

mod keepalive;
mod lifetime;
mod message;
mod outbox;
mod queued_bytes;
mod state;

pub use keepalive::{negotiate_keep_alive, KeepAlive};
pub use lifetime::{after_disconnect, AfterDisconnect, NEVER};
pub use message::{Delivery, Message, MessageRelease, SinkAck, StoredMessage};
pub use outbox::{OutboxRecord, OutboxState, Ticket};
pub use queued_bytes::QueuedBytes;
pub use state::{
    build_publish, Change, Enqueued, FlowError, QueueFullPolicy, QueueLimits, RestoredDelivery,
    SessionState,
};
