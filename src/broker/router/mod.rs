//! The router: who is subscribed to what, and, for one publish, which
//! subscribers get a copy and how (QoS, retain flag, subscription ids).
//!
//! [`Router`] is the seam: the broker holds an `Arc<dyn Router>` and makes
//! one call per publish ([`Router::route`]), so the dynamic dispatch never
//! sits in the per-subscriber loop; [`LocalRouter`], the subscription tree
//! of this process, is the implementation the broker starts with. A
//! clustered router or a test double implements the same five methods.
//!
//! # Subscribers, and a remote node as one of them
//!
//! A subscriber is a [`SessionSlot`]: something with a queue that a task
//! drains. A client's connection drains its session's queue; a bridge
//! drains a `$bridge/...` session's queue into its sink (the bridge is
//! already "one more kind of subscriber"). A peer node of a cluster would
//! be the same: a slot keyed by the node (say `$node/<id>`), subscribed
//! with the union of the filters its clients hold, drained by a link task
//! that forwards to the peer. Routing needs nothing new for it: a publish
//! matching several of the node's filters merges into one delivery (as for
//! any session with overlapping subscriptions), so the peer gets one copy
//! and matches its own clients there; the slot's flags already say what a
//! link needs (`acl_exempt`: the peer applies its own ACL; `saturated`:
//! the link is behind and publishers should slow down). Shared groups span
//! nodes when a node's slot joins a group as a member.

mod local;

use std::sync::Arc;

use bytestring::ByteString;

use super::{SessionSlot, Subscription};
use crate::auth::Acl;
use crate::codec::QoS;
use crate::session::Message;
use crate::topic::{Pick, TopicFilter};

pub use local::LocalRouter;

/// What the router keeps per (subscriber, filter).
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub slot: Arc<SessionSlot>,
    pub subscription: Subscription,
}

/// One subscriber a publish goes to, after overlapping subscriptions of
/// the subscriber were merged.
#[derive(Debug)]
pub struct Target {
    pub slot: Arc<SessionSlot>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Chosen for a shared group: never merged with the session's own
    /// subscriptions (each is a delivery of its own), and already checked
    /// against the ACL when it was picked.
    pub shared: bool,
    /// The shared subscription's filter, for a hand-over if the session
    /// ends before the message is acknowledged.
    pub share: Option<ByteString>,
}

/// Subscriptions and matching, behind one seam.
///
/// Locks: an implementation's own lock is taken inside each call and
/// released before it returns. While it is held, only a slot's `control`
/// may be taken (the ACL check of a shared-group pick, through
/// [`shared_rank`]); never the registry, the timers or another slot lock.
pub trait Router: Send + Sync {
    /// Adds or replaces the entry's subscription (keyed by its filter and
    /// its slot's client id). True if it existed (v5 retain handling 1).
    fn subscribe(&self, entry: RouteEntry) -> bool;

    /// Removes `client`'s subscription to `filter`; true if it existed.
    fn unsubscribe(&self, filter: &TopicFilter, client: &ByteString) -> bool;

    /// The subscribers `message` goes to: one target per subscriber for
    /// its own subscriptions (highest granted QoS, every identifier,
    /// 3.3.4), one per shared group (a member `acl` lets read, online
    /// preferred), none for the publisher's own `no_local` ones. The
    /// non-shared targets are not checked against the ACL here.
    fn route(&self, message: &Message, acl: Option<&Acl>) -> Vec<Target>;

    /// A member of the shared group `group` names (`$share/g/...`), chosen
    /// as a publish on `topic` would choose it; for handing over the
    /// messages of a member whose session ended.
    fn pick_shared(
        &self,
        group: &TopicFilter,
        topic: &str,
        acl: Option<&Acl>,
    ) -> Option<RouteEntry>;

    /// Number of (subscriber, filter) subscriptions.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a shared-group member ranks for a message on `topic`: a member
/// that may not read it is never picked (picking first and checking after
/// would lose the message), an online one is preferred.
pub fn shared_rank(acl: Option<&Acl>, e: &RouteEntry, topic: &str) -> Pick {
    let allowed = acl.is_none_or(|acl| e.slot.may_read(acl, topic));
    match (allowed, e.slot.is_online()) {
        (false, _) => Pick::Never,
        (true, true) => Pick::Preferred,
        (true, false) => Pick::Fallback,
    }
}
