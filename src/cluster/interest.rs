//! What this node's clients are subscribed to, as NATS needs to know it:
//! the router of a clustered node is the local subscription tree plus a
//! count of subscribers per filter, and the first subscriber of a filter
//! (or the last one leaving it) becomes a change the cluster's inbound
//! task turns into a NATS subscription (or its end). So NATS carries a
//! message only to the nodes whose clients asked for it.
//!
//! Shared subscriptions are announced by their whole filter
//! (`$share/g/f`): NATS picks one node per message among those with a
//! member (a queue group), that node one of its members. So the local
//! tree never picks a shared member for a publish itself ([`Router::route`]
//! leaves shared targets out): every shared delivery comes through NATS,
//! the node's own publishes included.
//!
//! A persistent session's QoS 1/2 messages come from its own JetStream
//! consumer (see `super::feed`), never from here: so it gets them once,
//! on whichever node its client connects to.
//!
//! Not announced: bridges' subscriptions (a node bridges what its own
//! clients publish) and the cluster link's own.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::auth::Acl;
use crate::broker::{LocalRouter, RouteEntry, Router, Target};
use crate::session::Message;
use crate::topic::TopicFilter;

/// A change of this node's interest in a filter: a plain filter, or a
/// shared subscription's whole filter (`$share/g/f`); or a marker asking
/// to be told once every change before it is in effect in NATS.
#[derive(Debug)]
pub enum Interest {
    Add(ByteString),
    Remove(ByteString),
    AddShared(ByteString),
    RemoveShared(ByteString),
    Settled(oneshot::Sender<()>),
}

/// Makes an [`Interest`] change from a key.
type Change = fn(ByteString) -> Interest;

/// The key a subscription is counted under, and its two changes.
fn key_of(filter: &TopicFilter) -> (&ByteString, Change, Change) {
    if filter.share_group.is_some() {
        (&filter.raw, Interest::AddShared, Interest::RemoveShared)
    } else {
        (&filter.filter, Interest::Add, Interest::Remove)
    }
}

/// The local tree, counting subscribers per filter on the side.
pub struct InterestRouter {
    local: LocalRouter,
    counts: Mutex<HashMap<ByteString, usize>>,
    changes: mpsc::UnboundedSender<Interest>,
}

impl InterestRouter {
    /// The router and the stream of interest changes, starting empty.
    pub fn new() -> (Arc<InterestRouter>, mpsc::UnboundedReceiver<Interest>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let router = InterestRouter {
            local: LocalRouter::default(),
            counts: Mutex::new(HashMap::new()),
            changes,
        };
        (Arc::new(router), rx)
    }

    /// Fires once every interest change made so far is in effect in NATS
    /// (its subscriptions sent and the servers' answer to a flush back):
    /// a SUBACK waits for it, so what is published after it through the
    /// same NATS server reaches the new subscription (a shared one above
    /// all, whose every delivery comes through NATS).
    pub fn settled(&self) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        let _ = self.changes.send(Interest::Settled(done));
        wait
    }
}

/// Whether a subscription of `client` is one other nodes must send
/// messages for.
fn announced(client: &str) -> bool {
    !client.starts_with(sluice_bridges::CLIENT_ID_PREFIX)
}

impl Router for InterestRouter {
    fn subscribe(&self, entry: RouteEntry) -> bool {
        let filter = entry.subscription.filter.clone();
        let client = entry.slot.client_id.clone();
        // Under the count's lock, so a concurrent unsubscribe of the last
        // subscriber cannot send its Remove after this Add.
        let mut counts = self.counts.lock();
        let existed = self.local.subscribe(entry);
        if !existed && announced(&client) {
            let (key, add, _) = key_of(&filter);
            let n = counts.entry(key.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                let _ = self.changes.send(add(key.clone()));
            }
        }
        existed
    }

    fn unsubscribe(&self, filter: &TopicFilter, client: &ByteString) -> bool {
        let mut counts = self.counts.lock();
        let removed = self.local.unsubscribe(filter, client);
        if removed && announced(client) {
            let (key, _, remove) = key_of(filter);
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                    let _ = self.changes.send(remove(key.clone()));
                }
            }
        }
        removed
    }

    fn route(&self, message: &Message, _acl: Option<&Acl>) -> Vec<Target> {
        let mut targets = self.local.route_unshared(message);
        // Shared members get their messages through NATS' queue groups,
        // persistent sessions those the stream keeps through their own
        // consumers (`super::feed`).
        let in_stream = super::link::goes_to_stream(message);
        let fed = |t: &Target| in_stream && super::feed::is_fed(&t.slot);
        targets.retain(|t| !(t.shared || fed(t)));
        targets
    }

    fn pick_shared(
        &self,
        group: &TopicFilter,
        topic: &str,
        acl: Option<&Acl>,
    ) -> Option<RouteEntry> {
        self.local.pick_shared(group, topic, acl)
    }

    fn len(&self) -> usize {
        self.local.len()
    }
}
