//! The subscription tree: one node per filter level, with `+` and `#` as
//! ordinary children (topic names can never contain them, so they cannot
//! collide with literal levels). Shared subscriptions hang off the node of
//! their filter, one group per name, and each match picks one member.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytestring::ByteString;

use super::filter::TopicFilter;

/// How a shared-group member ranks for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Chosen first (e.g. online and allowed to read the topic).
    Preferred,
    /// Chosen when no member is preferred (e.g. offline: queued).
    Fallback,
    /// Never chosen (e.g. the ACL denies it the topic).
    Never,
}

/// One subscription found for a topic: the subscribing client and what it
/// asked for. A client with overlapping filters appears once per filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a, V> {
    pub client: &'a ByteString,
    pub value: &'a V,
    /// True when this match came from a shared subscription.
    pub shared: bool,
}

#[derive(Debug)]
struct SharedGroup<V> {
    members: Vec<(ByteString, V)>,
    /// Round-robin position; atomic so matching needs only a read lock.
    next: AtomicUsize,
}

/// The tree's maps hash a topic level (or a client id) on every publish:
/// foldhash instead of SipHash, still seeded per process, so a client
/// cannot choose colliding levels in advance (SipHash was ~950
/// instructions of a QoS 1 message's 26k under callgrind).
type Map<K, T> = HashMap<K, T, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Node<V> {
    children: Map<Box<str>, Node<V>>,
    subscribers: Map<ByteString, V>,
    shared: Map<ByteString, SharedGroup<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: Map::default(),
            subscribers: Map::default(),
            shared: Map::default(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// All subscriptions of all clients, keyed by filter.
#[derive(Debug)]
pub struct SubscriptionTree<V> {
    root: Node<V>,
    count: usize,
}

impl<V> Default for SubscriptionTree<V> {
    fn default() -> Self {
        SubscriptionTree {
            root: Node::default(),
            count: 0,
        }
    }
}

impl<V> SubscriptionTree<V> {
    /// Number of (client, filter) subscriptions.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds or replaces `client`'s subscription to `filter`. Returns true if
    /// it already existed (v5 retain handling 1 needs to know).
    pub fn insert(&mut self, filter: &TopicFilter, client: ByteString, value: V) -> bool {
        let mut node = &mut self.root;
        for level in filter.filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let existed = match &filter.share_group {
            None => node.subscribers.insert(client, value).is_some(),
            Some(group) => {
                let g = node
                    .shared
                    .entry(group.clone())
                    .or_insert_with(|| SharedGroup {
                        members: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                if let Some(slot) = g.members.iter_mut().find(|(c, _)| *c == client) {
                    slot.1 = value;
                    true
                } else {
                    g.members.push((client, value));
                    false
                }
            }
        };
        if !existed {
            self.count += 1;
        }
        existed
    }

    /// Removes `client`'s subscription to `filter`; true if it existed.
    pub fn remove(&mut self, filter: &TopicFilter, client: &ByteString) -> bool {
        let levels: Vec<&str> = filter.filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, filter.share_group.as_ref(), client);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Calls `visit` for every subscription matching topic name `topic`.
    /// Each shared group yields one member, chosen round-robin among the
    /// members `eligible` calls [`Pick::Preferred`], else among the
    /// [`Pick::Fallback`] ones (an online member is preferred over one whose
    /// session is offline); a group with neither yields nothing, so a
    /// member that may not read the topic is never picked. Without
    /// `eligible`, shared groups yield nothing and keep their turn (a
    /// clustered node routes without picking: NATS picks for it).
    pub fn for_each_match<'a>(
        &'a self,
        topic: &str,
        eligible: Option<&dyn Fn(&V) -> Pick>,
        visit: &mut dyn FnMut(Match<'a, V>),
    ) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        walk(&self.root, &levels, 0, dollar, eligible, visit);
    }
}

impl<V> SubscriptionTree<V> {
    /// A member of the shared group `filter` names (`$share/group/...`),
    /// chosen as a publish would choose it; for handing over the messages
    /// of a member whose session ended.
    pub fn pick_shared(&self, filter: &TopicFilter, eligible: &dyn Fn(&V) -> Pick) -> Option<&V> {
        let group = filter.share_group.as_ref()?;
        let mut node = &self.root;
        for level in filter.filter.split('/') {
            node = node.children.get(level)?;
        }
        let group = node.shared.get(group)?;
        pick_member(group, eligible).map(|i| &group.members[i].1)
    }
}

fn remove_at<V>(
    node: &mut Node<V>,
    levels: &[&str],
    group: Option<&ByteString>,
    client: &ByteString,
) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group {
            None => node.subscribers.remove(client).is_some(),
            Some(g) => {
                let Some(shared) = node.shared.get_mut(g) else {
                    return false;
                };
                let before = shared.members.len();
                shared.members.retain(|(c, _)| c != client);
                let removed = shared.members.len() != before;
                if shared.members.is_empty() {
                    node.shared.remove(g);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, group, client);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

/// The member a message goes to: round-robin among the preferred ones,
/// else among the fallbacks, never one marked [`Pick::Never`].
fn pick_member<V>(group: &SharedGroup<V>, eligible: &dyn Fn(&V) -> Pick) -> Option<usize> {
    let n = group.members.len();
    let start = group.next.fetch_add(1, Ordering::Relaxed);
    let mut fallback = None;
    for i in (0..n).map(|i| (start + i) % n) {
        match eligible(&group.members[i].1) {
            Pick::Preferred => return Some(i),
            Pick::Fallback if fallback.is_none() => fallback = Some(i),
            _ => {}
        }
    }
    fallback
}

fn emit<'a, V>(
    node: &'a Node<V>,
    eligible: Option<&dyn Fn(&V) -> Pick>,
    visit: &mut dyn FnMut(Match<'a, V>),
) {
    for (client, value) in &node.subscribers {
        visit(Match {
            client,
            value,
            shared: false,
        });
    }
    let Some(eligible) = eligible else {
        return;
    };
    for group in node.shared.values() {
        let n = group.members.len();
        if n == 0 {
            continue;
        }
        let Some(pick) = pick_member(group, eligible) else {
            continue;
        };
        let (client, value) = &group.members[pick];
        visit(Match {
            client,
            value,
            shared: true,
        });
    }
}

fn walk<'a, V>(
    node: &'a Node<V>,
    levels: &[&str],
    idx: usize,
    dollar: bool,
    eligible: Option<&dyn Fn(&V) -> Pick>,
    visit: &mut dyn FnMut(Match<'a, V>),
) {
    let leading_wildcard_allowed = !(idx == 0 && dollar);
    if idx == levels.len() {
        emit(node, eligible, visit);
        // "a/#" also matches "a" (4.7.1.2).
        if let Some(hash) = node.children.get("#") {
            emit(hash, eligible, visit);
        }
        return;
    }
    if let Some(child) = node.children.get(levels[idx]) {
        walk(child, levels, idx + 1, dollar, eligible, visit);
    }
    if leading_wildcard_allowed {
        if let Some(plus) = node.children.get("+") {
            walk(plus, levels, idx + 1, dollar, eligible, visit);
        }
        if let Some(hash) = node.children.get("#") {
            emit(hash, eligible, visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::parse(ByteString::from(s), 32).unwrap()
    }

    fn matches(tree: &SubscriptionTree<u8>, topic: &str) -> Vec<(String, u8, bool)> {
        let mut out = Vec::new();
        tree.for_each_match(topic, Some(&|_| Pick::Preferred), &mut |m| {
            out.push((m.client.to_string(), *m.value, m.shared))
        });
        out.sort();
        out
    }

    #[test]
    fn wildcards_match_by_level() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("a/b"), "c1".into(), 1);
        t.insert(&f("a/+"), "c2".into(), 2);
        t.insert(&f("a/#"), "c3".into(), 3);
        t.insert(&f("#"), "c4".into(), 4);
        t.insert(&f("+/+/c"), "c5".into(), 5);
        assert_eq!(
            matches(&t, "a/b"),
            vec![
                ("c1".into(), 1, false),
                ("c2".into(), 2, false),
                ("c3".into(), 3, false),
                ("c4".into(), 4, false)
            ]
        );
        assert_eq!(
            matches(&t, "a"),
            vec![("c3".into(), 3, false), ("c4".into(), 4, false)]
        );
        assert_eq!(
            matches(&t, "a/b/c"),
            vec![
                ("c3".into(), 3, false),
                ("c4".into(), 4, false),
                ("c5".into(), 5, false)
            ]
        );
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("#"), "all".into(), 1);
        t.insert(&f("+/broker"), "plus".into(), 2);
        t.insert(&f("$SYS/#"), "sys".into(), 3);
        assert_eq!(matches(&t, "$SYS/broker"), vec![("sys".into(), 3, false)]);
        assert_eq!(matches(&t, "$SYS"), vec![("sys".into(), 3, false)]);
    }

    #[test]
    fn one_client_overlapping_filters_yields_each_match() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("a/+"), "c".into(), 1);
        t.insert(&f("a/b"), "c".into(), 2);
        assert_eq!(matches(&t, "a/b").len(), 2);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t = SubscriptionTree::default();
        assert!(!t.insert(&f("a/b/c"), "c".into(), 1));
        assert!(t.insert(&f("a/b/c"), "c".into(), 2));
        assert_eq!(matches(&t, "a/b/c"), vec![("c".into(), 2, false)]);
        assert!(t.remove(&f("a/b/c"), &"c".into()));
        assert!(!t.remove(&f("a/b/c"), &"c".into()));
        assert!(t.root.is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn shared_group_delivers_to_one_member_round_robin() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("$share/g/a/+"), "m1".into(), 1);
        t.insert(&f("$share/g/a/+"), "m2".into(), 2);
        t.insert(&f("$share/h/a/+"), "m3".into(), 3);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let m = matches(&t, "a/x");
            assert_eq!(m.len(), 2, "one per group");
            seen.extend(m.into_iter().filter(|x| x.1 != 3).map(|x| x.0));
        }
        seen.sort();
        assert_eq!(seen, vec!["m1", "m1", "m2", "m2"]);
        assert!(t.remove(&f("$share/g/a/+"), &"m1".into()));
        assert_eq!(matches(&t, "a/x").iter().filter(|x| x.0 == "m2").count(), 1);
    }

    #[test]
    fn shared_group_prefers_eligible_members() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("$share/g/a"), "off".into(), 1);
        t.insert(&f("$share/g/a"), "on".into(), 2);
        for _ in 0..3 {
            let mut got = Vec::new();
            t.for_each_match(
                "a",
                Some(&|v| {
                    if *v == 2 {
                        Pick::Preferred
                    } else {
                        Pick::Fallback
                    }
                }),
                &mut |m| got.push(m.client.to_string()),
            );
            assert_eq!(got, vec!["on"]);
        }
    }

    #[test]
    fn shared_group_never_picks_a_member_marked_never() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("$share/g/a"), "denied".into(), 1);
        t.insert(&f("$share/g/a"), "allowed".into(), 2);
        for _ in 0..4 {
            let mut got = Vec::new();
            t.for_each_match(
                "a",
                Some(&|v| if *v == 2 { Pick::Fallback } else { Pick::Never }),
                &mut |m| got.push(m.client.to_string()),
            );
            assert_eq!(got, vec!["allowed"]);
        }
        let mut got = Vec::new();
        t.for_each_match("a", Some(&|_| Pick::Never), &mut |m| {
            got.push(m.client.to_string())
        });
        assert!(got.is_empty(), "no member may read: nobody is picked");
    }

    #[test]
    fn a_walk_that_picks_nobody_does_not_take_the_groups_turn() {
        let mut t = SubscriptionTree::default();
        t.insert(&f("$share/g/a"), "m1".into(), 1);
        t.insert(&f("$share/g/a"), "m2".into(), 2);
        let mut seen = Vec::new();
        for _ in 0..4 {
            // A clustered node's own routing walk (no pick), then NATS'.
            t.for_each_match("a", None, &mut |_| {});
            let picked = t.pick_shared(&f("$share/g/a"), &|_| Pick::Preferred);
            seen.push(*picked.unwrap());
        }
        seen.sort();
        assert_eq!(seen, vec![1, 1, 2, 2], "still round robin");
    }
}
