//! What a session owes on disk, in the session's own terms: the outbox
//! entry of a QoS 1/2 delivery and the durability position a connection
//! waits for before it acknowledges. The store encodes these (its
//! `records` module adds `encode`/`decode`) and hands out tickets; the
//! session only carries them, so it needs nothing of the store's I/O.

use crate::codec::QoS;

/// Where an outgoing QoS 1/2 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Not sent yet.
    Queued = 0,
    /// PUBLISH sent with `packet_id`, no PUBACK/PUBREC yet.
    Sent = 1,
    /// PUBREC received, PUBREL sent, waiting for PUBCOMP.
    Released = 2,
}

/// One delivery owed to a persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub message_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub state: OutboxState,
    /// 0 while queued.
    pub packet_id: u16,
    pub subscription_ids: Vec<u32>,
}

/// A position in the store's commit sequence; durable once the store
/// reached it. Position 0 is always durable (nothing to wait for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket for commit position `seq` (the store hands these out).
    pub fn at(seq: u64) -> Ticket {
        Ticket(seq)
    }

    /// The commit position this ticket waits for.
    pub fn seq(self) -> u64 {
        self.0
    }
}
