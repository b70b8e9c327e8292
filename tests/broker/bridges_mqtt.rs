//! The MQTT bridge (store-and-forward to a remote broker) end to end: a
//! local Sluice, a real remote (Debian's mosquitto, or a second Sluice),
//! real subscribers on the remote, and the faults of the field: the remote
//! frozen, the remote restarted, the local broker SIGKILLed mid-stream.
//! What the local broker acknowledged reaches the remote's subscriber;
//! QoS 2 exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::*;
use crate::mqtt_remote::Mosquitto;

/// A local broker bridging `site/#` to the remote at `port` as
/// `cloud/<topic without its first level>`.
fn edge_config(port: u16, protocol: u8) -> String {
    format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"

[[bridges]]
name = "cloud"
filters = ["site/#"]
[bridges.sink]
kind = "mqtt"
address = "127.0.0.1:{port}"
protocol = {protocol}
client_id = "edge-1"
topic = "cloud/{{topic.2..}}"
keep_alive_secs = 5
ack_timeout_secs = 3
connect_timeout_secs = 2
"#
    )
}

/// A subscriber on the remote, persistent, subscribed to `cloud/#` at QoS 2.
fn remote_subscriber(port: u16, v: ProtocolVersion) -> Raw {
    let mut sub = remote_subscriber_back(port, v);
    sub.subscribe(1, &[("cloud/#", sub_opts(QoS::ExactlyOnce))]);
    sub
}

/// The same subscriber's session resumed (what it is owed flows at once).
fn remote_subscriber_back(port: u16, v: ProtocolVersion) -> Raw {
    let mut c = connect_packet(v, "cloud-sub", false);
    if v == V5 {
        c.properties.session_expiry_interval = Some(3600);
    }
    Raw::connect_with(port, c).0
}

/// Every PUBLISH until `n` distinct payloads arrived or `within` passed;
/// counts per payload.
fn collect(sub: &mut Raw, n: usize, within: Duration) -> (Vec<Publish>, HashMap<Vec<u8>, usize>) {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    while counts.len() < n && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(p) = sub.publish_within(left.min(Duration::from_secs(1))) {
            *counts.entry(p.payload.to_vec()).or_default() += 1;
            all.push(p);
        }
    }
    // Late duplicates show up within a moment.
    while let Some(p) = sub.publish_within(Duration::from_millis(300)) {
        *counts.entry(p.payload.to_vec()).or_default() += 1;
        all.push(p);
    }
    (all, counts)
}

fn user_property<'a>(p: &'a Publish, name: &str) -> Option<&'a str> {
    p.properties
        .user_properties
        .iter()
        .find(|(k, _)| &**k == name)
        .map(|(_, v)| &**v)
}

#[test]
fn every_qos_reaches_a_mosquitto_remote_remapped_with_its_flags() {
    for (level, v) in [(4u8, V4), (5, V5)] {
        let remote = Mosquitto::start();
        let mut sub = remote_subscriber(remote.port, v);
        let s = Sluice::start_config(&edge_config(remote.port, level));
        let (mut p, _) = Raw::connect(s.port, V5, "sensor", true);
        let mut retained = publish("site/r/state", b"on", QoS::AtLeastOnce, 4);
        retained.retain = true;
        p.publish(publish("site/a/q0", b"zero", QoS::AtMostOnce, 0));
        p.publish(publish("site/a/q1", b"one", QoS::AtLeastOnce, 1));
        p.publish(publish("site/a/q2", b"two", QoS::ExactlyOnce, 2));
        p.publish(retained);
        p.publish(publish("elsewhere/x", b"not bridged", QoS::AtLeastOnce, 3));
        let (got, counts) = collect(&mut sub, 4, Duration::from_secs(15));
        let by_topic: HashMap<&str, &Publish> = got.iter().map(|p| (&*p.topic, p)).collect();
        assert_eq!(counts.len(), 4, "protocol {level}: {got:?}");
        assert_eq!(by_topic["cloud/a/q0"].payload.as_ref(), b"zero");
        assert_eq!(by_topic["cloud/a/q1"].qos, QoS::AtLeastOnce);
        assert_eq!(by_topic["cloud/a/q2"].qos, QoS::ExactlyOnce);
        assert!(!by_topic.contains_key("cloud/x"), "only site/# is bridged");
        if v == V5 {
            let q1 = by_topic["cloud/a/q1"];
            assert_eq!(
                user_property(q1, "sluice-bridge"),
                Some("edge-1"),
                "loop marker"
            );
            assert!(user_property(q1, "sluice-msg-id").is_some());
        }
        // The retained flag was kept: a late subscriber gets the message.
        let (mut late, _) = Raw::connect(remote.port, v, "late", true);
        late.subscribe(1, &[("cloud/r/#", sub_opts(QoS::AtLeastOnce))]);
        let r = late.expect_publish();
        assert_eq!((&*r.topic, r.retain), ("cloud/r/state", true));
        let (_, status) = s.admin("GET", "/api/v1/bridges/cloud", None, None);
        assert!(status.contains("\"sink\":\"mqtt\""), "{status}");
    }
}

/// Publishes `range` as `m<i>` on `site/load/<i % 4>` at `qos`, each
/// acknowledged by the local broker before the next.
fn publish_range(port: u16, client: &str, range: std::ops::Range<usize>, qos: QoS) {
    let (mut p, _) = Raw::connect(port, V5, client, true);
    for i in range {
        let id = (i % 60_000 + 1) as u16;
        p.publish(publish(
            &format!("site/load/{}", i % 4),
            format!("m{i}").as_bytes(),
            qos,
            id,
        ));
    }
    p.disconnect();
}

fn assert_exactly_once(counts: &HashMap<Vec<u8>, usize>, n: usize, what: &str) {
    let missing: Vec<usize> = (0..n)
        .filter(|i| !counts.contains_key(format!("m{i}").as_bytes()))
        .collect();
    assert!(missing.is_empty(), "{what}: lost {missing:?}");
    let repeated: Vec<_> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(k, c)| (String::from_utf8_lossy(k).into_owned(), *c))
        .collect();
    assert!(repeated.is_empty(), "{what}: QoS 2 repeated {repeated:?}");
}

#[test]
fn a_local_sigkill_mid_stream_loses_and_repeats_no_qos2_message() {
    let remote = Mosquitto::start();
    let mut sub = remote_subscriber(remote.port, V5);
    let s = Sluice::start_config(&edge_config(remote.port, 5));
    // A backlog builds up in the bridge's buffer while the remote is
    // frozen; the local broker is killed while the bridge drains it.
    remote.pause();
    publish_range(s.port, "sensor", 0..300, QoS::ExactlyOnce);
    remote.resume();
    std::thread::sleep(Duration::from_millis(150));
    let s = s.kill_and_restart();
    publish_range(s.port, "sensor", 300..400, QoS::ExactlyOnce);
    let (_, counts) = collect(&mut sub, 400, Duration::from_secs(30));
    assert_exactly_once(&counts, 400, "after SIGKILL of the local broker");
}

#[test]
fn a_frozen_then_restarted_remote_loses_and_repeats_no_qos2_message() {
    let mut remote = Mosquitto::start();
    let s = Sluice::start_config(&edge_config(remote.port, 5));
    let mut sub = remote_subscriber(remote.port, V5);
    publish_range(s.port, "sensor", 0..100, QoS::ExactlyOnce);
    // Frozen past the bridge's ack timeout: its link is dropped and
    // dialled again (no CONNACK) while records pile up in its buffer.
    remote.pause();
    publish_range(s.port, "sensor", 100..200, QoS::ExactlyOnce);
    std::thread::sleep(Duration::from_secs(4));
    remote.resume();
    publish_range(s.port, "sensor", 200..300, QoS::ExactlyOnce);
    let (_, mut counts) = collect(&mut sub, 300, Duration::from_secs(30));
    sub.drop_connection();
    // Restarted (mosquitto saves its sessions on SIGTERM): the bridge's
    // session and the subscriber's survive.
    remote.restart();
    publish_range(s.port, "sensor", 300..400, QoS::ExactlyOnce);
    let mut sub = remote_subscriber_back(remote.port, V5);
    let (_, after) = collect(&mut sub, 100, Duration::from_secs(30));
    for (k, c) in after {
        *counts.entry(k).or_default() += c;
    }
    let log = remote.log_tail(60);
    assert_exactly_once(
        &counts,
        400,
        &format!("across a frozen and a restarted remote; remote log:\n{log}"),
    );
}
