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
    let mut counts = HashMap::new();
    let all = collect_into(sub, &mut counts, n, within);
    (all, counts)
}

/// As [`collect`], adding to `counts` (from an earlier connection of the
/// same subscriber) until it holds `n` distinct payloads.
fn collect_into(
    sub: &mut Raw,
    counts: &mut HashMap<Vec<u8>, usize>,
    n: usize,
    within: Duration,
) -> Vec<Publish> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    // A redelivery flagged DUP of a message already here is the remote
    // resending to its subscriber, which a QoS 2 receiver drops by packet
    // id; a copy the bridge published twice would come without DUP.
    let mut count = |p: Publish, counts: &mut HashMap<Vec<u8>, usize>| {
        let seen = counts.contains_key(p.payload.as_ref());
        if !(p.dup && seen) {
            *counts.entry(p.payload.to_vec()).or_default() += 1;
        }
        all.push(p);
    };
    while counts.len() < n && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(p) = sub.publish_within(left.min(Duration::from_secs(1))) {
            count(p, counts);
        }
    }
    // Late duplicates show up within a moment.
    while let Some(p) = sub.publish_within(Duration::from_millis(300)) {
        count(p, counts);
    }
    all
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
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["sink"], "mqtt", "{status}");
        assert_eq!(status["link"]["connected"], true, "{status}");
        assert_eq!(status["link"]["delivered"], 4, "{status}");
        let metrics = http_request(s.admin_port(), "GET", "/metrics", None, None).1;
        assert_eq!(
            metric(&metrics, "sluice_bridge_link_connected{bridge=\"cloud\"}"),
            Some(1.0)
        );
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
    assert_eq!(counts.len(), 300, "before the restart");
    sub.drop_connection();
    // Restarted (mosquitto saves its sessions on SIGTERM): the bridge's
    // session and the subscriber's survive.
    remote.restart();
    publish_range(s.port, "sensor", 300..400, QoS::ExactlyOnce);
    let mut sub = remote_subscriber_back(remote.port, V5);
    collect_into(&mut sub, &mut counts, 400, Duration::from_secs(30));
    let log = remote.log_tail(60);
    assert_exactly_once(
        &counts,
        400,
        &format!("across a frozen and a restarted remote; remote log:\n{log}"),
    );
}

/// A local broker bridging `site/#` to a Sluice remote's TLS listener,
/// with a client certificate when `cert` is set.
fn tls_edge_config(port: u16, certs: &crate::transports::Certs, cert: bool) -> String {
    let client = if cert {
        format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            certs.p("client.pem"),
            certs.p("client.key")
        )
    } else {
        String::new()
    };
    format!(
        "{}[bridges.sink.tls]\nca_file = \"{}\"\nserver_name = \"localhost\"\n{client}",
        edge_config(port, 5),
        certs.p("ca.pem")
    )
}

#[test]
fn mutual_tls_to_the_remote_carries_messages_and_a_missing_certificate_is_reported() {
    let certs = crate::transports::Certs::generate();
    let remote = Sluice::start_config(&format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n\n[[listeners]]\n\
         bind = \"127.0.0.1:0\"\nprotocol = \"tls\"\n[listeners.tls]\ncert = \"{}\"\n\
         key = \"{}\"\nclient_ca = \"{}\"\nrequire_certificate = true\n",
        certs.p("server-chain.pem"),
        certs.p("server.key"),
        certs.p("ca.pem")
    ));
    let mut sub = remote_subscriber(remote.port_of("tcp"), V5);
    let edge = Sluice::start_config(&tls_edge_config(remote.port_of("tls"), &certs, true));
    publish_range(edge.port, "sensor", 0..20, QoS::AtLeastOnce);
    let (_, counts) = collect(&mut sub, 20, Duration::from_secs(15));
    assert_eq!(counts.len(), 20, "over mutual TLS");

    let refused = Sluice::start_config(&tls_edge_config(remote.port_of("tls"), &certs, false));
    publish_range(refused.port, "sensor", 100..101, QoS::AtLeastOnce);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let (_, body) = refused.admin("GET", "/api/v1/bridges/cloud", None, None);
        if body.contains("\"state\":\"failing\"") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains("\"state\":\"failing\""), "{status}");
    assert!(status.contains("\"connected\":false"), "{status}");
    assert!(sub.publish_within(Duration::from_millis(500)).is_none());
}

#[test]
fn a_sigkilled_durable_remote_loses_and_repeats_no_qos2_message() {
    // Started by the harness on a port it keeps across the restart.
    let remote = Sluice::start();
    let mut sub = remote_subscriber(remote.port, V5);
    let edge = Sluice::start_config(&edge_config(remote.port, 5));
    publish_range(edge.port, "sensor", 0..200, QoS::ExactlyOnce);
    // Killed while the bridge forwards: what the remote acknowledged
    // (PUBREC, PUBCOMP) is on its disk, and the rest comes again under
    // the same packet ids.
    let remote = remote.kill_and_restart();
    let (_, mut counts) = collect(&mut sub, 0, Duration::ZERO);
    publish_range(edge.port, "sensor", 200..300, QoS::ExactlyOnce);
    let mut sub = remote_subscriber_back(remote.port, V5);
    collect_into(&mut sub, &mut counts, 300, Duration::from_secs(10));
    assert_exactly_once(&counts, 300, "across a SIGKILL of a durable remote");
}

/// A reload that changes the remote topic restarts the bridge on its
/// buffer: the records waiting across the restart (paused bridge) go out
/// once, under the topic rendered when they were buffered, later messages
/// under the new template; the old link gives way (one client id on the
/// remote) instead of fighting the new one for the session.
#[test]
fn a_reload_changes_the_remote_topic_and_loses_nothing_buffered() {
    let remote = Mosquitto::start();
    let (mut sub, _) = Raw::connect(remote.port, V5, "watch", true);
    sub.subscribe(1, &[("#", sub_opts(QoS::ExactlyOnce))]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, edge_config(remote.port, 5)).unwrap();
    let s = Sluice::start_with_config(&config);
    publish_range(s.port, "sensor", 0..5, QoS::ExactlyOnce);
    let (_, mut counts) = collect(&mut sub, 5, Duration::from_secs(15));
    s.admin("POST", "/api/v1/bridges/cloud/pause", None, None);
    publish_range(s.port, "sensor", 5..10, QoS::ExactlyOnce);
    std::fs::write(
        &config,
        edge_config(remote.port, 5).replace("cloud/{topic.2..}", "cloud2/{topic.2..}"),
    )
    .unwrap();
    let (status, text) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"restarted\":[\"cloud\"]"), "{text}");
    publish_range(s.port, "sensor", 10..15, QoS::ExactlyOnce);
    let got = collect_into(&mut sub, &mut counts, 15, Duration::from_secs(15));
    assert_exactly_once(&counts, 15, "across a reload");
    let topic_of = |i: usize| {
        got.iter()
            .find(|p| p.payload.as_ref() == format!("m{i}").as_bytes())
            .map(|p| p.topic.to_string())
    };
    assert!(
        topic_of(7).is_some_and(|t| t.starts_with("cloud/")),
        "buffered before"
    );
    assert!(
        topic_of(12).is_some_and(|t| t.starts_with("cloud2/")),
        "after the reload"
    );
    let (_, status) = s.admin("GET", "/api/v1/bridges/cloud", None, None);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["link"]["connects"], 1,
        "one link, no takeover fight: {status}"
    );
}

/// `edge_config` with an in direction: `filter` on the remote to `topic`
/// locally, at QoS 2.
fn edge_with_inbound(port: u16, protocol: u8, filter: &str, topic: &str) -> String {
    format!(
        "{}\n[[bridges.sink.inbound]]\nfilter = \"{filter}\"\nqos = 2\ntopic = \"{topic}\"\n",
        edge_config(port, protocol)
    )
}

#[test]
fn commands_from_the_remote_reach_local_subscribers_at_their_qos() {
    for (level, v) in [(4u8, V4), (5, V5)] {
        let remote = Mosquitto::start();
        // Long keep-alive and ack timeout: the SUBSCRIBE must not wait for
        // the link's next timer to be written.
        let s = Sluice::start_config(
            &edge_with_inbound(remote.port, level, "cmd/edge-1/#", "commands/{topic.3..}")
                .replace("keep_alive_secs = 5", "keep_alive_secs = 120")
                .replace("ack_timeout_secs = 3", "ack_timeout_secs = 120"),
        );
        let (mut local, _) = Raw::connect(s.port, V5, "actuator", true);
        local.subscribe(1, &[("commands/#", sub_opts(QoS::ExactlyOnce))]);
        // The bridge subscribes on the remote when it connects.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut cloud, _) = Raw::connect(remote.port, v, "operator", true);
        let mut got = Vec::new();
        let mut n = 0u16;
        while got.is_empty() && Instant::now() < deadline {
            n += 1;
            cloud.publish(publish("cmd/edge-1/pump/on", b"probe", QoS::AtLeastOnce, n));
            got = local.collect_publishes(Duration::from_millis(300));
        }
        assert!(!got.is_empty(), "protocol {level}: nothing came in");
        cloud.publish(publish(
            "cmd/edge-1/valve/close",
            b"q1",
            QoS::AtLeastOnce,
            100,
        ));
        cloud.publish(publish(
            "cmd/edge-1/valve/open",
            b"q2",
            QoS::ExactlyOnce,
            101,
        ));
        cloud.publish(publish("cmd/other/x", b"not ours", QoS::AtLeastOnce, 102));
        let got = local.collect_publishes(Duration::from_millis(1500));
        let seen: Vec<(&str, &[u8], QoS)> = got
            .iter()
            .filter(|p| p.payload.as_ref() != b"probe")
            .map(|p| (&*p.topic, p.payload.as_ref(), p.qos))
            .collect();
        assert_eq!(
            seen,
            [
                ("commands/valve/close", &b"q1"[..], QoS::AtLeastOnce),
                ("commands/valve/open", &b"q2"[..], QoS::ExactlyOnce)
            ],
            "protocol {level}"
        );
        let (_, status) = s.admin("GET", "/api/v1/bridges/cloud", None, None);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert!(
            status["link"]["inbound_received"].as_u64() >= Some(3),
            "{status}"
        );
    }
}

/// Both directions over the same topics (`site/#` out as `cloud/#`,
/// `cloud/#` in as `site/#`): each message arrives once on each side and
/// nothing circles (MQTT 5 no-local on the remote, and the out direction
/// skips what came in through the bridge).
#[test]
fn both_directions_at_once_do_not_loop() {
    let remote = Mosquitto::start();
    let s = Sluice::start_config(&edge_with_inbound(
        remote.port,
        5,
        "cloud/#",
        "site/{topic.2..}",
    ));
    let (mut local_sub, _) = Raw::connect(s.port, V5, "local-sub", true);
    local_sub.subscribe(1, &[("site/#", sub_opts(QoS::AtLeastOnce))]);
    let mut cloud_sub = remote_subscriber(remote.port, V5);
    let (mut cloud_pub, _) = Raw::connect(remote.port, V5, "cloud-pub", true);
    // Until the bridge's inbound subscription is in place.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0u16;
    loop {
        n += 1;
        cloud_pub.publish(publish("cloud/warmup", b"w", QoS::AtLeastOnce, n));
        if local_sub
            .publish_within(Duration::from_millis(300))
            .is_some()
            || Instant::now() > deadline
        {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(local_sub.collect_publishes(Duration::from_millis(200)));
    drop(cloud_sub.collect_publishes(Duration::from_millis(200)));

    let (mut local_pub, _) = Raw::connect(s.port, V5, "local-pub", true);
    local_pub.publish(publish("site/from-edge", b"edge", QoS::AtLeastOnce, 1));
    cloud_pub.publish(publish("cloud/from-cloud", b"cloud", QoS::AtLeastOnce, 500));
    let local: Vec<String> = local_sub
        .collect_publishes(Duration::from_millis(1500))
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    let cloud: Vec<String> = cloud_sub
        .collect_publishes(Duration::from_millis(500))
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    let mut local_sorted = local.clone();
    local_sorted.sort();
    assert_eq!(
        local_sorted,
        ["site/from-cloud", "site/from-edge"],
        "local side"
    );
    let mut cloud_sorted = cloud.clone();
    cloud_sorted.sort();
    assert_eq!(
        cloud_sorted,
        ["cloud/from-cloud", "cloud/from-edge"],
        "remote side"
    );
}
