//! A bridge's session never drops a message it was given, whatever the
//! global queue policy: a message the broker acknowledged to its publisher
//! reaches the bridge's sink. Here the broker drops the oldest message of
//! any queue over 8, and the bridge's buffer (64 KiB, `block`) is full while
//! the bridge is paused: its session's queue grows past 8 with QoS 2
//! messages from 3.1.1 and v5 publishers and QoS 1 messages a persistent
//! subscriber also takes (so the store keeps them). Meanwhile publishers
//! are pushed back (v5: 0x97; 3.1.1: acknowledgement withheld until the
//! bridge has room), and once the sink accepts, every acknowledged message
//! arrives, also across a SIGKILL with the backlog queued.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::bridges::Endpoint;
use crate::harness::*;

/// The queue limit every session has (the bridge's too).
const MAX_QUEUED: usize = 8;

fn config(port: u16) -> String {
    format!(
        r#"
[limits]
max_queued_messages = {MAX_QUEUED}
queue_full_policy = "drop_oldest"

[[listeners]]
bind = "127.0.0.1:0"

[[bridges]]
name = "telemetry"
filters = ["sensors/#"]
max_bytes = 65536
full_policy = "block"
payload_format = "raw"
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{port}/ingest"
"#
    )
}

/// A payload of ~2 KB that names its message (`tag-i`) before the `|`.
fn payload(tag: &str, i: u16) -> String {
    format!("{tag}-{i}|{}", "p".repeat(2000))
}

/// What one publisher sent and what the broker answered, per packet id.
struct Flows {
    raw: Raw,
    tag: &'static str,
    topic: &'static str,
    qos: QoS,
    /// Sent, not yet answered.
    open: BTreeSet<u16>,
    /// QoS 2: PUBREC received, PUBREL sent, PUBCOMP awaited.
    released: BTreeSet<u16>,
    /// Acknowledged: PUBACK or PUBCOMP with success.
    acked: BTreeSet<u16>,
    /// Refused with 0x97 (quota exceeded): not the broker's.
    refused: BTreeSet<u16>,
}

impl Flows {
    fn new(raw: Raw, tag: &'static str, topic: &'static str, qos: QoS) -> Flows {
        Flows {
            raw,
            tag,
            topic,
            qos,
            open: BTreeSet::new(),
            released: BTreeSet::new(),
            acked: BTreeSet::new(),
            refused: BTreeSet::new(),
        }
    }

    fn message(&self, i: u16, dup: bool) -> Packet {
        let mut p = publish(
            &format!("{}/{i}", self.topic),
            payload(self.tag, i).as_bytes(),
            self.qos,
            i,
        );
        p.dup = dup;
        Packet::Publish(p)
    }

    fn send(&mut self, i: u16) {
        let p = self.message(i, false);
        self.raw.send(&p);
        self.refused.remove(&i);
        self.open.insert(i);
    }

    /// Reads answers until every flow is complete or refused, or `within`
    /// has passed, or the connection closed.
    fn collect(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !(self.open.is_empty() && self.released.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(p) = self.raw.recv_timeout(left) else {
                return;
            };
            match p {
                Packet::PubAck(a) => self.answered(a.packet_id.get(), a.reason),
                Packet::PubRec(a) => {
                    let id = a.packet_id.get();
                    if a.reason.is_error() {
                        self.answered(id, a.reason);
                    } else if self.open.remove(&id) {
                        self.released.insert(id);
                        self.raw.send(&Packet::PubRel(Ack::new(a.packet_id)));
                    }
                }
                Packet::PubComp(a) => {
                    let id = a.packet_id.get();
                    assert_eq!(a.reason, ReasonCode::Success, "{} {id}", self.tag);
                    if self.released.remove(&id) {
                        self.acked.insert(id);
                    }
                }
                other => panic!("{}: unexpected {other:?}", self.tag),
            }
        }
    }

    fn answered(&mut self, id: u16, reason: ReasonCode) {
        if !self.open.remove(&id) {
            return;
        }
        match reason {
            ReasonCode::Success => {
                self.acked.insert(id);
            }
            ReasonCode::QuotaExceeded => {
                self.refused.insert(id);
            }
            other => panic!("{} {id}: {other:?}", self.tag),
        }
    }

    /// Sends again what the broker refused, until it takes everything.
    fn retry_refused(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.refused.is_empty() && Instant::now() < deadline {
            let refused: Vec<u16> = self.refused.iter().copied().collect();
            for i in refused {
                self.send(i);
            }
            self.collect(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// As a client does after a lost connection: reconnects to the same
    /// session and resends every flow the broker has not completed.
    fn resume(&mut self, port: u16, client_id: &str) {
        let (raw, ack) = Raw::connect(port, self.raw.version, client_id, false);
        assert!(ack.session_present, "{client_id}: session lost");
        self.raw = raw;
        for i in self.open.clone() {
            let p = self.message(i, true);
            self.raw.send(&p);
        }
        for i in self.released.clone() {
            let Some(id) = PacketId::new(i) else { continue };
            self.raw.send(&Packet::PubRel(Ack::new(id)));
        }
    }

    /// The bodies of the messages the broker acknowledged.
    fn acknowledged(&self) -> Vec<String> {
        self.acked
            .iter()
            .map(|i| format!("{}-{i}", self.tag))
            .collect()
    }
}

/// The message names (`tag-i`) the endpoint has received.
fn delivered(ep: &Endpoint) -> HashSet<String> {
    ep.delivered()
        .iter()
        .filter_map(|r| r["body"].as_str())
        .filter_map(|b| b.split('|').next())
        .map(str::to_owned)
        .collect()
}

/// Waits (bounded) until every name in `wanted` was delivered; the ones
/// still missing.
fn missing_after(ep: &Endpoint, wanted: &[String], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = delivered(ep);
        let missing: Vec<String> = wanted
            .iter()
            .filter(|w| !got.contains(*w))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every message the broker acknowledged to one of `flows` reaches the
/// endpoint (bounded wait), and every flow was answered; how many were
/// acknowledged.
fn assert_acknowledged_delivered(ep: &Endpoint, flows: &[&Flows]) -> usize {
    let wanted: Vec<String> = flows.iter().flat_map(|f| f.acknowledged()).collect();
    let missing = missing_after(ep, &wanted, Duration::from_secs(60));
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
    for f in flows {
        assert!(
            f.open.is_empty() && f.released.is_empty() && f.refused.is_empty(),
            "{}: unanswered {:?} {:?}, refused {:?}",
            f.tag,
            f.open,
            f.released,
            f.refused
        );
    }
    wanted.len()
}

/// Pauses the bridge and fills its buffer with QoS 1 messages from a 3.1.1
/// publisher, one at a time (each PUBACK waits for the buffer), until the
/// bridge says it pushes back.
fn pause_and_fill(s: &Sluice) -> Flows {
    let (status, body) = s.admin("POST", "/api/v1/bridges/telemetry/pause", None, None);
    assert_eq!(status, 200, "{body}");
    let (raw, _) = Raw::connect(s.port, V4, "filler", true);
    let mut fill = Flows::new(raw, "fill", "sensors/fill", QoS::AtLeastOnce);
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 1..=100 {
        fill.send(i);
        while !fill.acked.contains(&i) {
            log.push_str(&s.log_lines().join("\n"));
            if log.contains("back-pressure") {
                return fill;
            }
            assert!(Instant::now() < deadline, "the buffer never filled");
            fill.collect(Duration::from_millis(100));
        }
    }
    panic!("100 messages of 2 KB did not fill 64 KiB");
}

/// A persistent session, offline, that takes the `sensors/keep/#`
/// messages: the store keeps those (they are not the bridge's alone).
fn keeper(port: u16) {
    let (mut sub, _) = Raw::connect(port, V4, "keeper", false);
    sub.subscribe(1, &[("sensors/keep/#", sub_opts(QoS::AtLeastOnce))]);
    sub.disconnect();
}

/// Two 3.1.1 publishers, sending without waiting, interleaved: "old", 20
/// QoS 2 messages, and "dev", QoS 1 messages the keeper also takes (as
/// many as its queue holds: the keeper drops none).
fn v4_publishers(port: u16, clean: bool) -> (Flows, Flows) {
    let (raw, _) = Raw::connect(port, V4, "old", clean);
    let mut old = Flows::new(raw, "old", "sensors/old", QoS::ExactlyOnce);
    let (raw, _) = Raw::connect(port, V4, "dev", clean);
    let mut kept = Flows::new(raw, "kept", "sensors/keep", QoS::AtLeastOnce);
    for i in 1..=20u16 {
        old.send(i);
        if usize::from(i) <= MAX_QUEUED {
            kept.send(i);
        }
    }
    (old, kept)
}

/// The bridge session's view in the admin API.
fn bridge_session(s: &Sluice) -> serde_json::Value {
    let (status, body) = s.admin("GET", "/api/v1/clients/%24bridge%2Ftelemetry", None, None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Messages the bridge session holds (queued and in flight).
fn held(view: &serde_json::Value) -> u64 {
    view["queued"].as_u64().unwrap_or(0) + view["inflight"].as_u64().unwrap_or(0)
}

/// Waits (bounded) until the bridge session holds more than `n` messages;
/// its view then.
fn backlog_over(s: &Sluice, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = bridge_session(s);
        if held(&v) > n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bridge's session dropped nothing (its admin view and `/metrics`).
fn assert_bridge_dropped_nothing(s: &Sluice) -> String {
    assert_eq!(bridge_session(s)["dropped"], 0);
    let (_, metrics) = s.admin("GET", "/metrics", None, None);
    assert_eq!(
        metric(
            &metrics,
            "sluice_session_messages_dropped{client_id=\"$bridge/telemetry\"}"
        ),
        None,
        "{metrics}"
    );
    metrics
}

#[test]
fn a_full_bridge_drops_nothing_it_acknowledged_under_drop_oldest() {
    let ep = Endpoint::start("[]");
    let s = Sluice::start_config(&config(ep.port));
    keeper(s.port);
    let mut fill = pause_and_fill(&s);

    // The bridge pushes back; publishers go on sending.
    let (mut old, mut kept) = v4_publishers(s.port, true);
    let (raw, _) = Raw::connect(s.port, V5, "new", true);
    let mut new = Flows::new(raw, "new", "sensors/new", QoS::ExactlyOnce);
    for i in 1..=20 {
        new.send(i);
    }
    // Well past the queue limit (checked below, after what matters most).
    let backlog = backlog_over(&s, MAX_QUEUED as u64 + 20);
    // The 3.1.1 publisher's PUBRECs wait for room (checked below too).
    old.collect(Duration::from_millis(500));
    let answered_while_full = old.released.len() + old.acked.len();

    let (status, body) = s.admin("POST", "/api/v1/bridges/telemetry/resume", None, None);
    assert_eq!(status, 200, "{body}");
    for f in [&mut fill, &mut old, &mut new, &mut kept] {
        f.collect(Duration::from_secs(60));
    }
    // v5 publishers were told 0x97 while the bridge was full, and retry.
    assert!(!new.refused.is_empty(), "no v5 publish was refused");
    new.retry_refused(Duration::from_secs(60));

    let acknowledged = assert_acknowledged_delivered(&ep, &[&fill, &old, &new, &kept]);
    assert_eq!(acknowledged, fill.acked.len() + 20 + 20 + MAX_QUEUED);
    assert!(
        held(&backlog) > MAX_QUEUED as u64 + 20
            && backlog["dropped"] == 0
            && backlog["pushing_back"] == true,
        "the full bridge's session: {backlog}"
    );
    assert_eq!(
        answered_while_full, 0,
        "3.1.1 PUBRECs while the bridge was full"
    );
    // Nor did any other queue (the keeper took exactly what it holds).
    let metrics = assert_bridge_dropped_nothing(&s);
    assert_eq!(
        metric(
            &metrics,
            "sluice_messages_dropped_total{reason=\"queue_full\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
}

#[test]
fn a_bridge_backlog_over_the_queue_limit_survives_a_sigkill() {
    let ep = Endpoint::start("[]");
    let s = Sluice::start_config(&config(ep.port));
    keeper(s.port);
    let _fill = pause_and_fill(&s);
    let (mut old, mut kept) = v4_publishers(s.port, false);
    let backlog = backlog_over(&s, MAX_QUEUED as u64 + 20);
    // What has been answered so far (nothing more comes while the bridge
    // is full, or everything did).
    old.collect(Duration::from_secs(2));
    kept.collect(Duration::from_secs(2));

    // The backlog is in the store: it comes back into the bridge's session
    // whole, and the bridge (no longer paused) delivers it.
    let s = s.kill_and_restart();
    old.resume(s.port, "old");
    kept.resume(s.port, "dev");
    old.collect(Duration::from_secs(60));
    kept.collect(Duration::from_secs(60));
    let acknowledged = assert_acknowledged_delivered(&ep, &[&old, &kept]);
    assert_eq!(acknowledged, 20 + MAX_QUEUED);
    assert!(
        held(&backlog) > MAX_QUEUED as u64 + 20 && backlog["dropped"] == 0,
        "before the SIGKILL: {backlog}"
    );
    assert_bridge_dropped_nothing(&s);
}
