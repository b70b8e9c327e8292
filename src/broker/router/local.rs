//! The router of one process: the subscription tree behind a read-write
//! lock. Publishes take it shared (many at once), (un)subscribes
//! exclusive.

use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::RwLock;

use super::{shared_rank, RouteEntry, Router, Target};
use crate::auth::Acl;
use crate::session::Message;
use crate::topic::{Match, Pick, SubscriptionTree, TopicFilter};

#[derive(Debug, Default)]
pub struct LocalRouter {
    tree: RwLock<SubscriptionTree<RouteEntry>>,
}

impl LocalRouter {
    /// As [`Router::route`], without the shared subscriptions: no member
    /// picked, no group's turn taken (a clustered node gets its shared
    /// deliveries from NATS, which picks).
    pub fn route_unshared(&self, message: &Message) -> Vec<Target> {
        self.targets(message, None)
    }

    /// The merged targets of one tree walk.
    fn targets(
        &self,
        message: &Message,
        eligible: Option<&dyn Fn(&RouteEntry) -> Pick>,
    ) -> Vec<Target> {
        let mut targets = Targets::default();
        self.tree
            .read()
            .for_each_match(&message.topic, eligible, &mut |m| targets.add(message, m));
        targets.finish()
    }
}

impl Router for LocalRouter {
    fn subscribe(&self, entry: RouteEntry) -> bool {
        let filter = entry.subscription.filter.clone();
        let client = entry.slot.client_id.clone();
        self.tree.write().insert(&filter, client, entry)
    }

    fn unsubscribe(&self, filter: &TopicFilter, client: &ByteString) -> bool {
        self.tree.write().remove(filter, client)
    }

    fn route(&self, message: &Message, acl: Option<&Acl>) -> Vec<Target> {
        let eligible = |e: &RouteEntry| shared_rank(acl, e, &message.topic);
        self.targets(message, Some(&eligible))
    }

    fn pick_shared(
        &self,
        group: &TopicFilter,
        topic: &str,
        acl: Option<&Acl>,
    ) -> Option<RouteEntry> {
        self.tree
            .read()
            .pick_shared(group, &|e| shared_rank(acl, e, topic))
            .cloned()
    }

    fn len(&self) -> usize {
        self.tree.read().len()
    }
}

/// Targets scanned linearly for a session already matched; past this
/// many, they are merged once after the walk ([`merge_overlapping`]).
pub(super) const MERGE_SCAN_LIMIT: usize = 16;

/// The targets of one publish as the tree walk finds them. Overlapping
/// subscriptions of one session merge into one target. Most publishes
/// match a handful of sessions: a scan finds the earlier target. Past
/// that, targets are pushed as they come and merged once at the end,
/// sorted by session: no hashing per publish (building a map per publish
/// showed up in fan-out profiles).
#[derive(Default)]
struct Targets {
    list: Vec<Target>,
    merge_later: bool,
}

impl Targets {
    fn add(&mut self, message: &Message, m: Match<'_, RouteEntry>) {
        let e = m.value;
        let opts = &e.subscription.options;
        if !m.shared && opts.no_local && message.publisher.as_ref() == Some(&e.slot.client_id) {
            return;
        }
        let qos = message.qos.min(opts.qos);
        let retain = message.retain && opts.retain_as_published;
        if !m.shared && !self.merge_later {
            let key = Arc::as_ptr(&e.slot);
            let found = self
                .list
                .iter_mut()
                .find(|t| !t.shared && Arc::as_ptr(&t.slot) == key);
            if let Some(t) = found {
                t.qos = t.qos.max(qos);
                t.retain |= retain;
                t.subscription_ids.extend(e.subscription.identifier);
                return;
            }
            self.merge_later = self.list.len() >= MERGE_SCAN_LIMIT;
        }
        self.list.push(Target {
            slot: Arc::clone(&e.slot),
            qos,
            retain,
            subscription_ids: e.subscription.identifier.into_iter().collect(),
            shared: m.shared,
            share: m.shared.then(|| e.subscription.filter.raw.clone()),
        });
    }

    fn finish(mut self) -> Vec<Target> {
        if self.merge_later {
            merge_overlapping(&mut self.list);
        }
        self.list
    }
}

/// Merges the targets of one session (not shared-group picks, which are
/// deliveries of their own) into one: highest QoS, retain if any says so,
/// every subscription identifier (3.3.4).
pub(super) fn merge_overlapping(targets: &mut Vec<Target>) {
    targets.sort_unstable_by_key(|t| (t.shared, Arc::as_ptr(&t.slot) as usize));
    targets.dedup_by(|later, kept| {
        if later.shared || kept.shared || !Arc::ptr_eq(&later.slot, &kept.slot) {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain |= later.retain;
        kept.subscription_ids.append(&mut later.subscription_ids);
        true
    });
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
