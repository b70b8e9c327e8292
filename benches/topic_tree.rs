//! `SubscriptionTree` matching with a million subscriptions (issue #11):
//! the routing cost of every PUBLISH.
//!
//! The tree is built once (that takes seconds). Subscriptions by family:
//! - 987,500 literal device command topics `devices/{n}/cmd`, one client
//!   each (the bulk of a fleet);
//! - 1,000 `telemetry/site-{s}/+/temp`: 10 dashboards x 100 sites;
//! - 1,000 `events/site-{s}/#`: 10 archivers x 100 sites;
//! - 10,500 on `jobs/site-{s}/+`: per site, 10 shared groups
//!   (`$share/workers-{g}/...`) of 10 members and 5 plain monitors.
//!
//! Each benchmark publishes to one topic and counts the matches.

use std::hint::black_box;
use std::time::Duration;

use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion};
use sluice::topic::{SubscriptionTree, TopicFilter};

const TOTAL: usize = 1_000_000;
const SITES: usize = 100;
const DASHBOARDS: usize = 10;
const ARCHIVERS: usize = 10;
const GROUPS: usize = 10;
const MEMBERS: usize = 10;
const MONITORS: usize = 5;

fn subscribe(tree: &mut SubscriptionTree<u32>, filter: String, client: String) {
    let filter = TopicFilter::parse(filter.into(), 32).expect("valid filter");
    tree.insert(&filter, ByteString::from(client), 1);
}

fn tree() -> SubscriptionTree<u32> {
    let mut tree = SubscriptionTree::default();
    for s in 0..SITES {
        for d in 0..DASHBOARDS {
            subscribe(
                &mut tree,
                format!("telemetry/site-{s}/+/temp"),
                format!("dash-{d}"),
            );
        }
        for a in 0..ARCHIVERS {
            subscribe(&mut tree, format!("events/site-{s}/#"), format!("arch-{a}"));
        }
        for g in 0..GROUPS {
            for m in 0..MEMBERS {
                subscribe(
                    &mut tree,
                    format!("$share/workers-{g}/jobs/site-{s}/+"),
                    format!("worker-{g}-{m}"),
                );
            }
        }
        for m in 0..MONITORS {
            subscribe(&mut tree, format!("jobs/site-{s}/+"), format!("mon-{m}"));
        }
    }
    let devices = TOTAL - tree.len();
    for n in 0..devices {
        subscribe(&mut tree, format!("devices/{n}/cmd"), format!("dev-{n}"));
    }
    assert_eq!(tree.len(), TOTAL);
    tree
}

fn count_matches(tree: &SubscriptionTree<u32>, topic: &str) -> usize {
    let mut n = 0;
    tree.for_each_match(topic, Some(&|_| sluice::topic::Pick::Preferred), &mut |m| {
        black_box(m);
        n += 1;
    });
    n
}

fn matching(c: &mut Criterion) {
    let tree = tree();
    let mut g = c.benchmark_group("topic_tree_1m/match");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, topic, expected) in [
        ("literal", "devices/123456/cmd", 1),
        ("plus", "telemetry/site-7/dev-42/temp", DASHBOARDS),
        ("hash", "events/site-7/door-3/open", ARCHIVERS),
        ("shared", "jobs/site-7/job-99", GROUPS + MONITORS),
        ("no_match", "devices/123456/status", 0),
    ] {
        assert_eq!(count_matches(&tree, topic), expected, "{topic}");
        g.bench_function(name, |b| b.iter(|| count_matches(&tree, black_box(topic))));
    }
    g.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
