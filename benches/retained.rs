//! `RetainedStore` with a million retained topics: what a subscribe pays to
//! collect the retained messages its filter matches (issue #11).
//!
//! Topics are `sensors/site-{0..100}/dev-{0..2500}/{temp,hum,co2,batt}`, so
//! `sensors/site-7/+/temp` matches 2,500 messages, `sensors/site-7/#` 10,000
//! and the literal filter one.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sluice::broker::RetainedStore;
use sluice::codec::QoS;
use sluice::session::Message;

const SITES: usize = 100;
const DEVICES: usize = 2_500;
const METRICS: [&str; 4] = ["temp", "hum", "co2", "batt"];

fn message(topic: String, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: None,
        expires_at: None,
        publisher: None,
        username: None,
        accepted_ms: 0,
        stored: None,
    })
}

fn topic(site: usize, device: usize, metric: &str) -> String {
    format!("sensors/site-{site}/dev-{device}/{metric}")
}

/// One million retained messages, built once for every benchmark.
fn store() -> RetainedStore {
    let mut store = RetainedStore::default();
    for site in 0..SITES {
        for device in 0..DEVICES {
            for metric in METRICS {
                store.put(&message(topic(site, device, metric), b"21.5"));
            }
        }
    }
    assert_eq!(store.len(), SITES * DEVICES * METRICS.len());
    store
}

fn matching(c: &mut Criterion) {
    let store = store();
    let now = Instant::now();
    let mut g = c.benchmark_group("retained_1m/matching");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, filter, expected) in [
        ("literal", "sensors/site-7/dev-42/temp", 1),
        ("plus", "sensors/site-7/+/temp", DEVICES),
        ("hash", "sensors/site-7/#", DEVICES * METRICS.len()),
        ("plus_no_match", "sensors/+/dev-42/pressure", 0),
    ] {
        assert_eq!(store.matching(filter, now).len(), expected, "{filter}");
        g.bench_function(name, |b| b.iter(|| store.matching(black_box(filter), now)));
    }
    g.finish();

    // Replacing a retained message (the common case on a publish with
    // RETAIN) and a put/clear cycle, which must not grow the store.
    let mut store = store;
    let mut g = c.benchmark_group("retained_1m/put");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let replacement = message(topic(7, 42, "temp"), b"22.0");
    g.bench_function("replace", |b| b.iter(|| store.put(black_box(&replacement))));
    let fresh = message("sensors/site-7/dev-new/temp".into(), b"1");
    let clear = message("sensors/site-7/dev-new/temp".into(), b"");
    g.bench_function("put_then_clear", |b| {
        b.iter(|| {
            store.put(black_box(&fresh));
            store.put(black_box(&clear));
        })
    });
    g.finish();
    assert_eq!(store.len(), SITES * DEVICES * METRICS.len());
}

criterion_group!(benches, matching);
criterion_main!(benches);
