//! The Kafka bridge end to end: MQTT in, transformed, buffered on disk,
//! produced to a real Kafka-protocol broker (tansu, see `kafka_peer`) and
//! read back with a consumer; through Kafka outages (SIGSTOP), SIGKILL of
//! the broker, `ack = "sink"`, the status API and records Kafka refuses.
//!
//! Each test runs its own tansu, so pausing one never disturbs another.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;
use sluice::codec::*;

use crate::harness::*;
use crate::kafka_peer::*;

/// Lower than the default 30 s so that an outage is noticed quickly.
const MESSAGE_TIMEOUT_SECS: u64 = 5;

/// The sink settings of the outage tests: the short message timeout, and
/// `acks = "1"`, without the idempotent producer. After a message timeout
/// librdkafka's idempotent producer bumps its epoch locally, which Kafka
/// accepts; tansu 0.6.0 answers every later produce with PRODUCER_FENCED
/// (see `an_outage_with_the_idempotent_producer_loses_nothing`, ignored).
fn outage_sink() -> String {
    format!("message_timeout_secs = {MESSAGE_TIMEOUT_SECS}\nacks = \"1\"")
}

/// Keeps the device (second topic level) and the sequence number.
const TRANSFORM: &str = r#"transform = '{device: .topic | split("/")[1], seq: .payload.seq}'"#;

/// A broker with one Kafka bridge taking `sensors/#`, keyed by the device
/// (`{topic.2}`).
#[derive(Default)]
struct Bridge<'a> {
    name: &'a str,
    /// The Kafka topic (template).
    topic: &'a str,
    /// Extra lines for the `[[bridges]]` table (transform, ack).
    bridge: &'a str,
    /// Extra lines for the sink table (message timeout, acks).
    sink: &'a str,
    /// librdkafka options besides `linger.ms`.
    options: &'a str,
    /// The MQTT port; 0 lets the OS pick, but a restart then picks anew.
    port: u16,
}

impl Bridge<'_> {
    fn config(&self, kafka: &Tansu) -> String {
        let Bridge {
            name,
            topic,
            bridge,
            sink,
            options,
            port,
        } = self;
        format!(
            r#"
[[listeners]]
bind = "127.0.0.1:{port}"

[[bridges]]
name = "{name}"
filters = ["sensors/#"]
{bridge}
[bridges.sink]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
key = "{{topic.2}}"
{sink}
[bridges.sink.options]
"linger.ms" = "5"
{options}
"#,
            bootstrap = kafka.bootstrap()
        )
    }
}

fn telemetry_topic(device: &str) -> String {
    format!("sensors/{device}/telemetry")
}

/// A device's reading; the transform keeps only `seq` (and the device).
fn reading(seq: u64) -> Vec<u8> {
    format!(r#"{{"seq":{seq},"temp":21.5,"noise":"dropped by the transform"}}"#).into_bytes()
}

/// Publishes reading `seq` at QoS 1 and waits for its PUBACK.
fn publish_reading(p: &mut Raw, device: &str, seq: u64) {
    p.publish(publish(
        &telemetry_topic(device),
        &reading(seq),
        QoS::AtLeastOnce,
        packet_id(seq),
    ));
}

fn packet_id(seq: u64) -> u16 {
    (seq % u64::from(u16::MAX)) as u16 + 1
}

fn seq_of(m: &Received) -> u64 {
    m.json()["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq: {m:?}"))
}

/// The sequence numbers of each key, in arrival order.
fn sequences(messages: &[&Received]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in messages {
        let key = m.key.clone().unwrap_or_else(|| panic!("no key: {m:?}"));
        out.entry(key).or_default().push(seq_of(m));
    }
    out
}

/// `GET /api/v1/bridges/{name}`.
fn status(s: &Sluice, name: &str) -> serde_json::Value {
    let (code, body) = s.admin("GET", &format!("/api/v1/bridges/{name}"), None, None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the bridge's status until `done` holds; panics with the last one
/// after `within`.
fn wait_status(
    s: &Sluice,
    name: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let st = status(s, name);
        if done(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "bridge {name}: {what} not reached within {within:?}; status {st}\n{}",
            bridge_log(s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The broker's recent log lines about bridges and Kafka, for failure
/// messages (drains the log).
fn bridge_log(s: &Sluice) -> String {
    let lines: Vec<String> = s
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("bridge") || l.contains("kafka"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn buffered_metric(s: &Sluice, name: &str) -> f64 {
    let (code, text) = s.admin("GET", "/metrics", None, None);
    assert_eq!(code, 200);
    let series = format!("sluice_bridge_buffered_records{{bridge=\"{name}\"}}");
    metric(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn messages_reach_kafka_transformed_in_order_with_ids() {
    let kafka = Tansu::start();
    kafka.create_topic("telemetry-sensors");
    let config = Bridge {
        name: "telemetry",
        topic: "telemetry-{topic.1}",
        bridge: TRANSFORM,
        ..Bridge::default()
    };
    let s = Sluice::start_config(&config.config(&kafka));
    let (mut a, _) = Raw::connect(s.port, V5, "dev-a", true);
    let (mut b, _) = Raw::connect(s.port, V4, "dev-b", true);
    for seq in 0..100 {
        publish_reading(&mut a, "dev-a", seq);
        publish_reading(&mut b, "dev-b", seq);
    }
    let mut reader = kafka.reader("telemetry-sensors");
    reader.read_distinct(200, Duration::from_secs(30));
    let got = reader.read_quiet(Duration::from_millis(500)).to_vec();
    assert_eq!(
        got.len(),
        200,
        "every message once (no resends on a healthy Kafka); {}",
        reader.describe()
    );
    assert_eq!(distinct(&got).len(), 200, "record ids are unique");
    for m in &got {
        // The buffer's record id: a QoS 1 message whose only durable copy
        // is the bridge's buffer keeps it from its PUBACK on, crash or not
        // (a message the store also keeps carries the store's id).
        assert!(m.msg_id() < 1_000_000, "{m:?}");
        let device = m.key.clone().expect("a key");
        assert_eq!(
            m.json(),
            json!({"device": device, "seq": seq_of(m)}),
            "the transform's output, keyed by the device"
        );
        assert_eq!(
            m.header("mqtt-topic"),
            Some(telemetry_topic(&device).as_bytes()),
            "{m:?}"
        );
    }
    let all: Vec<&Received> = got.iter().collect();
    let expected: Vec<u64> = (0..100).collect();
    assert_eq!(
        sequences(&all),
        BTreeMap::from([
            ("dev-a".into(), expected.clone()),
            ("dev-b".into(), expected)
        ]),
        "every device's readings, in publishing order"
    );
}

/// How long the outage lasts: the issue asks for 60 s, shortened here to
/// the message timeout plus 2 s (long enough for the producer to give up
/// on its first batch) so the suite stays fast in CI; set
/// `SLUICE_KAFKA_OUTAGE_SECS=60` to run the full-length outage.
fn outage() -> Duration {
    let secs = std::env::var("SLUICE_KAFKA_OUTAGE_SECS")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("SLUICE_KAFKA_OUTAGE_SECS={v:?}"))
        })
        .unwrap_or(MESSAGE_TIMEOUT_SECS + 2);
    Duration::from_secs(secs)
}

#[test]
fn a_kafka_outage_loses_nothing_and_keeps_order() {
    outage_loses_nothing_and_keeps_order(&outage_sink());
}

/// The default producer (idempotent, acks = all). After the outage tansu
/// fences it (PRODUCER_FENCED); the sink replaces its producer and goes on.
/// Failed before the sink learnt to replace a fenced producer.
#[test]
fn an_outage_with_the_idempotent_producer_loses_nothing() {
    outage_loses_nothing_and_keeps_order(&format!("message_timeout_secs = {MESSAGE_TIMEOUT_SECS}"));
}

/// Two devices publish; Kafka is frozen (SIGSTOP) for `outage()` while
/// they go on; after it thaws, everything arrives, each device in order.
fn outage_loses_nothing_and_keeps_order(sink: &str) {
    let kafka = Tansu::start();
    kafka.create_topic("outage");
    let config = Bridge {
        name: "outage",
        topic: "outage",
        bridge: TRANSFORM,
        sink,
        ..Bridge::default()
    };
    let s = Sluice::start_config(&config.config(&kafka));
    let (mut a, _) = Raw::connect(s.port, V5, "dev-a", true);
    let (mut b, _) = Raw::connect(s.port, V4, "dev-b", true);
    for seq in 0..20 {
        publish_reading(&mut a, "dev-a", seq);
        publish_reading(&mut b, "dev-b", seq);
    }
    let mut before = kafka.reader("outage");
    let got = before.read_distinct(40, Duration::from_secs(30)).len();
    assert!(got >= 40, "before the outage: {}", before.describe());
    drop(before);

    kafka.pause();
    // ack = "buffer": the PUBACKs come from the bridge's disk buffer.
    for seq in 20..60 {
        publish_reading(&mut a, "dev-a", seq);
        publish_reading(&mut b, "dev-b", seq);
    }
    std::thread::sleep(outage());
    // The producer gave up on the first batch: the bridge resends later.
    wait_status(&s, "outage", Duration::from_secs(20), "failing", |st| {
        st["state"] == "failing"
    });
    kafka.resume();

    let mut reader = kafka.reader("outage");
    let got = reader.read_distinct(120, Duration::from_secs(45)).to_vec();
    let expected: Vec<u64> = (0..60).collect();
    assert_eq!(
        sequences(&distinct(&got)),
        BTreeMap::from([
            ("dev-a".into(), expected.clone()),
            ("dev-b".into(), expected)
        ]),
        "nothing lost, order kept (duplicates dropped by {MSG_ID_HEADER}); {}; bridge {}\n{}",
        reader.describe(),
        status(&s, "outage"),
        bridge_log(&s)
    );
    let st = status(&s, "outage");
    assert!(st["retried"].as_u64().unwrap() >= 1, "{st}");
}

/// A 3.1.1 publisher that lives through the broker dying under it (`Raw`
/// panics on a lost connection instead).
pub(crate) struct Link {
    stream: TcpStream,
    buf: BytesMut,
}

impl Link {
    fn connect(port: u16, client_id: &str) -> Option<Link> {
        Link::connect_session(port, client_id, true)
    }

    /// Connects with `clean` session (false: the broker keeps the session,
    /// and with it the QoS 2 flows, across connections and restarts).
    pub(crate) fn connect_session(port: u16, client_id: &str, clean: bool) -> Option<Link> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_nodelay(true).ok()?;
        let mut link = Link {
            stream,
            buf: BytesMut::new(),
        };
        let connect = connect_packet(V4, client_id, clean);
        link.send(&Packet::Connect(Box::new(connect)))?;
        match link.recv(Duration::from_secs(5))? {
            Packet::ConnAck(a) if a.code == ReasonCode::Success => Some(link),
            _ => None,
        }
    }

    pub(crate) fn send(&mut self, p: &Packet) -> Option<()> {
        let mut buf = BytesMut::new();
        encode_packet(p, V4, &mut buf).ok()?;
        self.stream.write_all(&buf).ok()
    }

    /// The next packet; `None` on a closed connection or after `timeout`.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = decode_packet(&mut self.buf, Some(V4), usize::MAX).ok()? {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).ok()?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// What a publisher got through.
struct Published {
    /// Sequence numbers that got their PUBACK.
    acked: Vec<u64>,
    /// Connections that got a CONNACK.
    connections: u32,
}

/// Publishes readings one at a time until `stop`, reconnecting whenever the
/// broker goes away; a reading without PUBACK is sent again, as a device
/// would.
fn publish_through_crashes(port: u16, device: &str, stop: &AtomicBool) -> Published {
    let topic = telemetry_topic(device);
    let mut out = Published {
        acked: Vec::new(),
        connections: 0,
    };
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut link) = Link::connect(port, device) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        out.connections += 1;
        while !stop.load(Ordering::Relaxed) {
            let id = packet_id(seq);
            let p = publish(&topic, &reading(seq), QoS::AtLeastOnce, id);
            if link.send(&Packet::Publish(p)).is_none() {
                break;
            }
            match link.recv(Duration::from_secs(5)) {
                Some(Packet::PubAck(a)) if a.packet_id == pid(id) => {
                    out.acked.push(seq);
                    seq += 1;
                }
                _ => break,
            }
        }
    }
    out
}

#[test]
fn a_sigkill_mid_stream_loses_nothing_acknowledged() {
    let kafka = Tansu::start();
    kafka.create_topic("crash");
    // A fixed port: the publisher finds the broker there again after each
    // restart (from the same file).
    let config = Bridge {
        name: "crash",
        topic: "crash",
        bridge: TRANSFORM,
        port: free_port(),
        ..Bridge::default()
    };
    let mut s = Sluice::start_config(&config.config(&kafka));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (port, stop) = (s.port, Arc::clone(&stop));
        std::thread::spawn(move || publish_through_crashes(port, "dev-k", &stop))
    };
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        s = s.kill_and_restart();
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    assert!(
        published.connections >= 3,
        "the publisher did not get through both crashes: {} connections",
        published.connections
    );
    assert!(
        published.acked.len() >= 20,
        "only {} readings acknowledged",
        published.acked.len()
    );

    let last = *published.acked.last().unwrap();
    let mut reader = kafka.reader("crash");
    let got = reader
        .read_until(Duration::from_secs(45), |got| {
            got.iter().any(|m| seq_of(m) == last)
        })
        .to_vec();
    let seqs: Vec<u64> = distinct(&got).into_iter().map(seq_of).collect();
    let arrived: HashSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = published
        .acked
        .iter()
        .copied()
        .filter(|seq| !arrived.contains(seq))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never in Kafka: {missing:?} (of {} acknowledged); {}",
        published.acked.len(),
        reader.describe()
    );
    // Duplicates come in two kinds: the publisher resends the reading
    // whose PUBACK the crash took (a new message, a new id); and readings
    // already in the bridge's buffer whose removal from the bridge's
    // session was not yet on disk are taken from the session again, under
    // new record ids but the same `sluice-msg-id` (the broker's message
    // id), so `distinct` drops them. Either way a reading's first copy
    // comes in the publisher's order.
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = seqs.iter().copied().filter(|&q| seen.insert(q)).collect();
    if let Some(i) = firsts.windows(2).position(|w| w[0] > w[1]) {
        let all: Vec<(u64, u64)> = got.iter().map(|m| (seq_of(m), m.msg_id())).collect();
        panic!(
            "out of order: reading {} before {}; (reading, record id) as consumed: {all:?}",
            firsts[i],
            firsts[i + 1]
        );
    }
}

#[test]
fn ack_sink_holds_the_puback_until_kafka_has_it() {
    let kafka = Tansu::start();
    kafka.create_topic("ack-sink");
    // The default message timeout: the pause is shorter, and nothing times
    // out (see `outage_sink` for why that matters with tansu).
    let bridge = format!("{TRANSFORM}\nack = \"sink\"");
    let config = Bridge {
        name: "acksink",
        topic: "ack-sink",
        bridge: &bridge,
        ..Bridge::default()
    };
    let s = Sluice::start_config(&config.config(&kafka));
    let (mut p, _) = Raw::connect(s.port, V5, "dev-s", true);
    let topic = telemetry_topic("dev-s");
    let puback = |p: &mut Raw, within: Duration| match p.recv_timeout(within) {
        Some(Packet::PubAck(a)) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    };

    p.send(&Packet::Publish(publish(
        &topic,
        &reading(0),
        QoS::AtLeastOnce,
        1,
    )));
    let a = puback(&mut p, Duration::from_secs(20));
    assert_eq!((a.packet_id, a.reason), (pid(1), ReasonCode::Success));

    kafka.pause();
    p.send(&Packet::Publish(publish(
        &topic,
        &reading(1),
        QoS::AtLeastOnce,
        2,
    )));
    p.expect_silence(Duration::from_secs(2));
    kafka.resume();
    let a = puback(&mut p, Duration::from_secs(30));
    assert_eq!((a.packet_id, a.reason), (pid(2), ReasonCode::Success));

    let mut reader = kafka.reader("ack-sink");
    let got = reader.read_distinct(2, Duration::from_secs(20)).to_vec();
    let seqs: Vec<u64> = distinct(&got).into_iter().map(seq_of).collect();
    assert_eq!(seqs, [0, 1], "{}", reader.describe());
}

#[test]
fn the_bridge_status_shows_kafka_lag() {
    let kafka = Tansu::start();
    kafka.create_topic("lag");
    let config = Bridge {
        name: "lag",
        topic: "lag",
        bridge: TRANSFORM,
        sink: &outage_sink(),
        ..Bridge::default()
    };
    let s = Sluice::start_config(&config.config(&kafka));
    let (mut p, _) = Raw::connect(s.port, V4, "dev-l", true);
    publish_reading(&mut p, "dev-l", 0);
    wait_status(&s, "lag", Duration::from_secs(20), "first delivery", |st| {
        st["delivered"] == 1 && st["state"] == "running"
    });

    kafka.pause();
    for seq in 1..=20 {
        publish_reading(&mut p, "dev-l", seq);
    }
    let st = wait_status(
        &s,
        "lag",
        Duration::from_secs(25),
        "failing with records buffered",
        |st| st["buffered_records"].as_u64().unwrap() > 0 && st["state"] == "failing",
    );
    assert!(st["last_error"].is_string(), "{st}");
    assert_eq!(st["delivered"], 1, "{st}");
    assert!(buffered_metric(&s, "lag") > 0.0);

    kafka.resume();
    wait_status(&s, "lag", Duration::from_secs(40), "caught up", |st| {
        st["delivered"] == 21 && st["buffered_records"] == 0 && st["state"] == "running"
    });
    assert_eq!(buffered_metric(&s, "lag"), 0.0);
}

#[test]
fn a_record_too_large_for_kafka_goes_to_the_dead_letter_file() {
    let kafka = Tansu::start();
    kafka.create_topic("too-large");
    // No transform: the payload goes to Kafka as published.
    let config = Bridge {
        name: "big",
        topic: "too-large",
        options: r#""message.max.bytes" = "2000""#,
        ..Bridge::default()
    };
    let s = Sluice::start_config(&config.config(&kafka));
    let (mut p, _) = Raw::connect(s.port, V4, "dev-x", true);
    let topic = telemetry_topic("dev-x");
    let big = format!(r#"{{"seq":0,"blob":"{}"}}"#, "b".repeat(10_000));
    p.publish(publish(&topic, big.as_bytes(), QoS::AtLeastOnce, 1));
    p.publish(publish(&topic, &reading(1), QoS::AtLeastOnce, 2));

    let mut reader = kafka.reader("too-large");
    reader.read_distinct(1, Duration::from_secs(30));
    let got = reader.read_quiet(Duration::from_millis(500)).to_vec();
    let seqs: Vec<u64> = got.iter().map(seq_of).collect();
    assert_eq!(seqs, [1], "only the small one; {}", reader.describe());

    let file = s.data.path().join("store/bridges/big/dead-letter.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let reason = line["reason"].as_str().unwrap().to_lowercase();
    assert!(reason.contains("too large"), "{line}");
    assert_eq!(line["record"]["destination"], "too-large", "{line}");
    assert_eq!(line["record"]["key"]["utf8"], "dev-x", "{line}");
    assert_eq!(line["record"]["payload"]["utf8"], big.as_str());
    wait_status(&s, "big", Duration::from_secs(5), "counted", |st| {
        st["dead_lettered"] == 1 && st["delivered"] == 1
    });
}
