//! The seam for who holds a client id across brokers: in cluster mode a
//! CONNECT claims its client id cluster-wide before the session is taken
//! here, so a session belongs to one identity and one node at a time (the
//! single-node ownership rules, across nodes), and a persistent session
//! follows its client to whichever node it connects to. A single node has
//! no directory: every claim is granted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytestring::ByteString;
use tokio::sync::oneshot;

use super::SessionSlot;
use crate::session::{Flows, Message};
use crate::store::SessionRecord;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The client id is this node's now (any holder elsewhere is told to
    /// let go).
    Granted,
    /// Granted, and the client's persistent session lives on: another
    /// node held it, and this is what it was (its subscriptions, expiry,
    /// owner) with its QoS 2 flows; the node resumes it from there.
    Moved(Box<(SessionRecord, Flows)>),
    /// Another identity's session holds the client id on another node,
    /// and the takeover policy keeps it.
    Refused,
}

/// Where client ids are claimed.
pub trait SessionDirectory: Send + Sync {
    /// Claims `client_id` for `identity` (the authenticated user name);
    /// with `clean_start` the session it may have elsewhere ends.
    /// Bounded in time: an unreachable directory grants.
    fn claim<'a>(
        &'a self,
        client_id: &'a ByteString,
        identity: Option<&'a ByteString>,
        clean_start: bool,
    ) -> Pin<Box<dyn Future<Output = Claim> + Send + 'a>>;

    /// The will this node holds for `client_id` now (with its delay in
    /// seconds), or none: kept where other nodes find it, so it is
    /// published if this node dies. Never blocks.
    fn will_changed(&self, _client_id: &ByteString, _will: Option<(Message, u32)>) {}

    /// A connection attached to `slot` here (after its CONNACK's session
    /// is settled). Never blocks.
    fn session_attached(&self, _slot: &Arc<SessionSlot>) {}

    /// The bytes `slot`'s record can still take for new subscriptions,
    /// where the directory keeps it in a record of bounded size; `None`:
    /// bounded only by the subscription count.
    fn subscription_room(&self, _slot: &SessionSlot) -> Option<usize> {
        None
    }

    /// `slot`'s subscriptions changed; the acknowledgement of the change
    /// waits for the returned signals (one dropped unsent: not recorded,
    /// the connection closes).
    fn subscriptions_changed(&self, _slot: &Arc<SessionSlot>) -> Vec<oneshot::Receiver<()>> {
        Vec::new()
    }

    /// `slot`'s QoS 2 flows changed (a session the cluster feeds): they
    /// are recorded once every signal of `after` came; the client sees
    /// nothing more until the returned signals (one dropped unsent: not
    /// recorded, the connection closes).
    fn flows_changed(
        &self,
        _slot: &SessionSlot,
        _flows: Flows,
        after: Vec<oneshot::Receiver<()>>,
    ) -> Vec<oneshot::Receiver<()>> {
        after
    }

    /// `client_id`'s session ended on this node (expired, replaced by a
    /// clean start, removed), not moved to another node.
    fn session_ended(&self, _slot: &SessionSlot) {}
}
