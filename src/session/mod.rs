//! The session core: protocol state that needs no socket and no clock.

mod keepalive;
mod lifetime;
pub mod machine;
mod message;
mod outbox;
mod queue_limits;
mod queued_bytes;
mod state;

pub use keepalive::{negotiate_keep_alive, KeepAlive};
pub use lifetime::{after_disconnect, AfterDisconnect, NEVER};
pub use machine::{ConnectionHost, Exit, Machine};
pub use message::{Delivery, Message, MessageRelease, SinkAck, StoredMessage};
pub use outbox::{OutboxRecord, OutboxState, Ticket};
pub use queue_limits::{QueueFullPolicy, QueueLimits};
pub use queued_bytes::QueuedBytes;
pub use state::{
    build_publish, Change, Enqueued, FlowError, Flows, OutgoingFlow, RestoredDelivery, SessionState,
};
