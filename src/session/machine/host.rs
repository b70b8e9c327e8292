//! What a connection's protocol machine needs from the world, as a trait
//! the layer above implements (the server, over the broker and the
//! store). The machine decides; the host carries out what touches shared
//! state and remembers what the connection's writes must wait for
//! (durability tickets, a bridge sink's confirmation). A test double
//! implements it in memory, so every rule runs without sockets or clocks.

use std::ops::DerefMut;
use std::time::Instant;

use bytestring::ByteString;

use crate::auth::Acl;
use crate::codec::{QoS, SubscriptionOptions};
use crate::session::{Message, SessionState};
use crate::topic::TopicFilter;

/// The server's protocol limits a connection enforces (from the
/// configuration; read per call, so they are never stale).
#[derive(Debug, Clone, Copy)]
pub struct ProtocolLimits {
    pub max_packet_size: u32,
    pub max_topic_length: usize,
    pub max_topic_levels: usize,
    /// Aliases the client may set up towards the server (0 = none).
    pub topic_alias_maximum: u16,
    /// Incoming QoS 2 flows the client may have open at once.
    pub receive_maximum: u16,
    pub max_subscriptions_per_client: usize,
    pub max_session_expiry: u32,
    /// The highest QoS a subscription is granted.
    pub maximum_qos: QoS,
}

/// What one subscription adds to a session record besides its filter
/// (4-byte length prefix, options byte, 4-byte identifier): what a new
/// subscription takes of [`ConnectionHost::subscription_room`].
pub const SUBSCRIPTION_RECORD_BYTES: usize = 9;

/// A counter the machine moves (the broker's statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// PUBLISH packets received at this QoS.
    Received(QoS),
    /// Messages sent at this QoS.
    Sent(QoS),
    /// PUBLISH refused by the ACL.
    PublishDenied,
    /// PUBLISH refused because a subscriber asks publishers to slow down.
    PublishQuotaRefused,
    /// Deliveries larger than the client's Maximum Packet Size, dropped.
    DroppedTooLarge,
}

/// What routing one QoS 1/2 PUBLISH produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routed {
    /// Sessions (and shared groups) that were offered the message.
    pub matched: usize,
    /// A subscriber asks publishers to slow down: reading pauses briefly.
    pub saturated: bool,
    /// Not routed at all (the machine asked to refuse when saturated).
    pub refused: bool,
}

pub trait ConnectionHost {
    /// The session's state, locked while the guard lives.
    type State<'a>: DerefMut<Target = SessionState>
    where
        Self: 'a;

    fn limits(&self) -> ProtocolLimits;

    fn state(&self) -> Self::State<'_>;

    /// Runs `f` with the access rules in force (`None`: no ACL).
    fn with_acl<R>(&self, f: impl FnOnce(Option<&Acl>) -> R) -> R;

    fn count(&self, counter: Count, n: u64);

    /// Wall-clock milliseconds (a message's acceptance time).
    fn now_ms(&self) -> u64;

    /// Routes a QoS 0 message; nothing waits for it.
    fn route_at_most_once(&mut self, message: Message);

    /// Routes a QoS 1/2 message; for QoS 2 the session's journaled changes
    /// (its incoming packet id) are written in the message's commit. Unless
    /// refused, its acknowledgement (the next output) waits for the message
    /// to be durable and for any bridge sink that must confirm it.
    fn route(&mut self, message: Message, refuse_if_saturated: bool) -> Routed;

    /// Submits the session's journaled changes; the output written after
    /// this waits for them to be durable.
    fn flush_journal(&mut self);

    /// Called at the end of a delivery pass with the state still locked:
    /// `more` says the pass stopped at its byte budget with messages left
    /// (come back after writing).
    fn drained(&self, state: &SessionState, more: bool);

    /// How many subscriptions the session has, and whether `raw` is one.
    fn subscriptions(&self, raw: &ByteString) -> (usize, bool);

    /// The bytes the session's record can still take for new
    /// subscriptions (each costs its filter and
    /// [`SUBSCRIPTION_RECORD_BYTES`]), where the record is bounded (a
    /// cluster keeps a persistent session's record in its JetStream
    /// consumer); `usize::MAX`: no such bound. Asked once per SUBSCRIBE
    /// that adds a filter, not per packet as [`ConnectionHost::limits`] is.
    fn subscription_room(&self) -> usize;

    fn subscribe(
        &mut self,
        filter: TopicFilter,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        now: Instant,
    );

    /// Whether a subscription with this filter existed.
    fn unsubscribe(&mut self, raw: &ByteString) -> bool;

    /// The session's subscriptions changed (a SUBSCRIBE or UNSUBSCRIBE was
    /// carried out): a persistent session's record is written again, and
    /// the SUBACK/UNSUBACK written after this waits for it to be durable,
    /// so what the acknowledgement confirmed survives a crash.
    fn subscriptions_changed(&mut self);

    /// The session expiry a v5 DISCONNECT set (already capped).
    fn set_session_expiry(&mut self, seconds: u32);
}
