//! Retained store tests: matching by the spec rules (checked against
//! `filter_matches`), pruning, expiry and deep topics.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::codec::QoS;
use crate::topic::filter_matches;

fn msg(topic: &str, payload: &'static [u8], expires_at: Option<Instant>) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: None,
        expires_at,
        publisher: None,
        username: None,
        accepted_ms: 0,
        stored: None,
    })
}

fn store(topics: &[&str]) -> RetainedStore {
    let mut r = RetainedStore::default();
    for t in topics {
        r.put(&msg(t, b"x", None));
    }
    r
}

fn topics(r: &RetainedStore, filter: &str) -> Vec<String> {
    r.matching(filter, Instant::now())
        .iter()
        .map(|m| m.topic.to_string())
        .collect()
}

fn node_count(r: &RetainedStore) -> usize {
    let mut n = 0;
    let mut stack = vec![&r.root];
    while let Some(node) = stack.pop() {
        n += 1;
        stack.extend(node.children.values());
    }
    n
}

#[test]
fn store_replace_and_clear() {
    let mut r = RetainedStore::default();
    let now = Instant::now();
    r.put(&msg("a/b", b"1", None));
    r.put(&msg("a/b", b"2", None));
    assert_eq!(r.len(), 1);
    assert_eq!(r.matching("a/+", now)[0].payload, Bytes::from_static(b"2"));
    assert_eq!(r.matching("a/b", now)[0].payload, Bytes::from_static(b"2"));
    r.put(&msg("a/b", b"", None));
    assert!(r.is_empty());
    assert!(r.matching("a/b", now).is_empty());
}

#[test]
fn literal_filters_match_exactly_one_topic() {
    let r = store(&["a", "a/b", "a/b/c", "b"]);
    assert_eq!(topics(&r, "a/b"), ["a/b"]);
    assert_eq!(topics(&r, "a"), ["a"]);
    assert!(topics(&r, "a/b/c/d").is_empty());
    assert!(topics(&r, "c").is_empty());
}

#[test]
fn wildcards_match_by_level_in_topic_order() {
    let r = store(&["a/x", "a-b", "a", "a/b/c", "b/b/c", "a/c"]);
    assert_eq!(
        topics(&r, "#"),
        ["a", "a-b", "a/b/c", "a/c", "a/x", "b/b/c"]
    );
    assert_eq!(topics(&r, "a/+"), ["a/c", "a/x"]);
    assert_eq!(topics(&r, "+/b/c"), ["a/b/c", "b/b/c"]);
    assert_eq!(topics(&r, "+/+/+"), ["a/b/c", "b/b/c"]);
    assert_eq!(topics(&r, "+"), ["a", "a-b"]);
    assert!(topics(&r, "a/+/x").is_empty());
}

#[test]
fn hash_matches_the_parent_level() {
    let r = store(&["a", "a/b", "a/b/c", "ab"]);
    assert_eq!(topics(&r, "a/#"), ["a", "a/b", "a/b/c"]);
    assert_eq!(topics(&r, "a/+/#"), ["a/b", "a/b/c"]);
    assert_eq!(topics(&r, "a/b/c/#"), ["a/b/c"]);
    assert!(topics(&r, "a/b/c/+").is_empty());
}

#[test]
fn empty_levels_are_levels() {
    let r = store(&["a//b", "/x", "a/", "a"]);
    assert_eq!(topics(&r, "a/+/b"), ["a//b"]);
    assert_eq!(topics(&r, "a//b"), ["a//b"]);
    assert_eq!(topics(&r, "a/+"), ["a/"]);
    assert_eq!(topics(&r, "+/x"), ["/x"]);
    assert_eq!(topics(&r, "/+"), ["/x"]);
    assert_eq!(topics(&r, "+"), ["a"]);
    assert_eq!(topics(&r, "a/#"), ["a", "a/", "a//b"]);
}

#[test]
fn dollar_topics_need_explicit_filters() {
    let r = store(&["$SYS/x", "$SYS", "a/$b"]);
    assert_eq!(topics(&r, "#"), ["a/$b"]);
    assert!(topics(&r, "+").is_empty());
    assert!(topics(&r, "+/x").is_empty());
    assert_eq!(topics(&r, "+/#"), ["a/$b"]);
    assert_eq!(topics(&r, "$SYS/#"), ["$SYS", "$SYS/x"]);
    assert_eq!(topics(&r, "$SYS/+"), ["$SYS/x"]);
    assert_eq!(topics(&r, "$SYS"), ["$SYS"]);
    assert_eq!(topics(&r, "a/+"), ["a/$b"]);
}

/// Every filter over a set of awkward topics against the reference
/// matcher used for subscriptions.
#[test]
fn agrees_with_filter_matches() {
    let all = [
        "a", "a/b", "a/b/c", "a//b", "a/", "/", "/a", "//", "b/a", "$SYS", "$SYS/a", "$x/a/b",
        "a/$SYS", "a-b", "a/b-c/d",
    ];
    let r = store(&all);
    let filters = [
        "#", "+", "+/+", "+/#", "/#", "/+", "a/#", "a/+", "a/+/#", "+/b", "+/+/+", "a//b", "a/+/b",
        "+//+", "$SYS/#", "$SYS/+", "$x/+/b", "a/b/#", "//", "+/", "a",
    ];
    for f in filters {
        let mut want: Vec<&str> = all
            .iter()
            .copied()
            .filter(|t| filter_matches(f, t))
            .collect();
        want.sort_unstable();
        assert_eq!(topics(&r, f), want, "filter {f}");
    }
}

#[test]
fn clearing_prunes_empty_nodes() {
    let mut r = store(&["a/b/c", "a/b", "a/x/y"]);
    let before = node_count(&r);
    r.put(&msg("a/b/c/d/e", b"x", None));
    r.put(&msg("a/b/c/d/e", b"", None));
    assert_eq!(node_count(&r), before, "leaf chain under a message");
    // A message above other topics: its node stays for the children.
    r.put(&msg("a/b", b"", None));
    assert_eq!(topics(&r, "#"), ["a/b/c", "a/x/y"]);
    r.put(&msg("a/b/c", b"", None));
    assert_eq!(topics(&r, "#"), ["a/x/y"]);
    assert_eq!(node_count(&r), 4, "root, a, x, y");
    // Clearing what is not there changes nothing.
    r.put(&msg("a/x", b"", None));
    r.put(&msg("nope/a", b"", None));
    assert_eq!(r.len(), 1);
    r.put(&msg("a/x/y", b"", None));
    assert!(r.is_empty());
    assert_eq!(node_count(&r), 1, "only the root");
}

#[test]
fn put_clear_cycles_do_not_grow_the_tree() {
    let mut r = store(&["keep/this", "sensors/site-1"]);
    let before = node_count(&r);
    for i in 0..100_000 {
        let topic = format!("sensors/site-{}/dev-{i}/temp", i % 7);
        r.put(&msg(&topic, b"1", None));
        r.put(&msg(&topic, b"", None));
    }
    assert_eq!(r.len(), 2);
    assert_eq!(node_count(&r), before);
}

#[test]
fn deep_topics_do_not_overflow_the_stack() {
    let deep = "a/".repeat(100_000) + "z";
    let mut r = RetainedStore::default();
    r.put(&msg(&deep, b"1", None));
    r.put(&msg("a", b"1", None));
    assert_eq!(r.matching("a/#", Instant::now()).len(), 2);
    assert_eq!(r.matching(&deep, Instant::now()).len(), 1);
    r.put(&msg(&deep, b"", None));
    assert_eq!(node_count(&r), 2);
    r.put(&msg(&deep, b"1", None));
    drop(r);
}

#[test]
fn expired_messages_are_not_delivered() {
    let mut r = RetainedStore::default();
    let now = Instant::now();
    let later = now + Duration::from_secs(2);
    r.put(&msg("a", b"1", Some(now + Duration::from_secs(1))));
    r.put(&msg("a/b/c", b"1", Some(now + Duration::from_secs(1))));
    r.put(&msg("a/b", b"1", Some(now + Duration::from_secs(10))));
    r.put(&msg("a/d", b"1", None));
    assert_eq!(r.matching("#", now).len(), 4);
    assert_eq!(r.matching("a", now).len(), 1);
    assert_eq!(r.matching("#", later).len(), 2);
    assert!(r.matching("a", later).is_empty());
    assert!(r.matching("a/+/c", later).is_empty());
    assert_eq!(r.purge_expired(later), 2);
    assert_eq!(r.len(), 2);
    assert_eq!(topics(&r, "#"), ["a/b", "a/d"]);
    assert_eq!(node_count(&r), 4, "root, a, b, d: a/b/c pruned");
    assert_eq!(r.purge_expired(now + Duration::from_secs(60)), 1);
    assert_eq!(topics(&r, "#"), ["a/d"]);
}

/// A level wider than a small vector (a hash map inside), then narrow again.
#[test]
fn wide_levels_match_and_prune() {
    let mut r = store(&["site/other"]);
    let before = node_count(&r);
    for d in 0..100 {
        for m in ["temp", "hum"] {
            r.put(&msg(&format!("site/dev-{d}/{m}"), b"1", None));
        }
    }
    assert_eq!(r.len(), 201);
    assert_eq!(r.matching("site/+/temp", Instant::now()).len(), 100);
    assert_eq!(r.matching("site/#", Instant::now()).len(), 201);
    assert_eq!(
        topics(&r, "site/dev-42/+"),
        ["site/dev-42/hum", "site/dev-42/temp"]
    );
    assert_eq!(topics(&r, "+/dev-7/temp"), ["site/dev-7/temp"]);
    for d in 0..100 {
        r.put(&msg(&format!("site/dev-{d}/temp"), b"", None));
        r.put(&msg(&format!("site/dev-{d}/hum"), b"", None));
        assert_eq!(r.len(), 199 - 2 * d);
        assert_eq!(topics(&r, "site/+"), ["site/other"]);
    }
    assert_eq!(node_count(&r), before);
    assert_eq!(topics(&r, "#"), ["site/other"]);
}

/// A million leaves: each node must stay a vector and a pointer wide.
#[test]
fn nodes_stay_small() {
    assert!(std::mem::size_of::<Node>() <= 4 * std::mem::size_of::<usize>());
}

/// The byte charge follows puts, replacements, clears and purges, and a
/// replacement no larger than the message it replaces always fits.
#[test]
fn bytes_are_charged_and_given_back() {
    let mut r = RetainedStore::default();
    let one = retained_size(&msg("a/b", b"12345", None));
    r.put(&msg("a/b", b"12345", None));
    r.put(&msg("a/c", b"12345", Some(Instant::now())));
    assert_eq!(r.bytes(), 2 * one);
    r.put(&msg("a/b", b"1", None));
    assert_eq!(r.bytes(), 2 * one - 4);
    assert!(!r.fits(&msg("x", b"12345", None), r.bytes()));
    assert!(r.fits(&msg("x", b"12345", None), r.bytes() + one));
    assert!(r.fits(&msg("a/c", b"123", None), 0), "smaller replacement");
    assert!(r.fits(&msg("a/c", b"", None), 0), "clearing");
    r.purge_expired(Instant::now() + Duration::from_millis(1));
    r.put(&msg("a/b", b"", None));
    assert_eq!((r.len(), r.bytes()), (0, 0));
}
