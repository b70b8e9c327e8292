//! Durable state (store): sessions, queues, flows in flight, incoming QoS 2
//! ids, retained messages and pending wills survive a graceful restart and
//! SIGKILL. Acknowledged means on disk.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::*;

pub(crate) fn persistent(v: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect_packet(v, id, false);
    if v == V5 {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

/// A persistent session subscribed to `filter`, then offline: what it is
/// owed must wait in the store.
fn park_subscriber(port: u16, v: ProtocolVersion, id: &str, filter: &str, qos: QoS) {
    let (mut c, _) = Raw::connect_with(port, persistent(v, id));
    c.subscribe(1, &[(filter, sub_opts(qos))]);
    c.disconnect();
}

fn restart(s: Sluice, kill: bool) -> Sluice {
    if kill {
        s.kill_and_restart()
    } else {
        s.restart()
    }
}

#[test]
fn session_queue_and_retained_survive_restart_and_kill() {
    for kill in [false, true] {
        for v in [V4, V5] {
            let s = Sluice::start();
            let (mut sub, _) = Raw::connect_with(s.port, persistent(v, "keeper"));
            sub.subscribe(1, &[("keep/#", sub_opts(QoS::ExactlyOnce))]);
            sub.disconnect();
            let (mut p, _) = Raw::connect(s.port, v, "pub", true);
            p.publish(publish("keep/1", b"one", QoS::AtLeastOnce, 1));
            p.publish(publish("keep/2", b"two", QoS::ExactlyOnce, 2));
            let mut r = publish("state/led", b"on", QoS::AtLeastOnce, 3);
            r.retain = true;
            p.publish(r);
            let s = restart(s, kill);
            let (mut sub, ack) = Raw::connect_with(s.port, persistent(v, "keeper"));
            assert!(ack.session_present, "{v:?} kill={kill}");
            let a = sub.expect_publish();
            let b = sub.expect_publish();
            assert_eq!(
                (&*a.topic, &*a.payload, a.qos),
                ("keep/1", &b"one"[..], QoS::AtLeastOnce)
            );
            assert_eq!(
                (&*b.topic, &*b.payload, b.qos),
                ("keep/2", &b"two"[..], QoS::ExactlyOnce)
            );
            // The subscription survived too: a new message still arrives.
            let (mut p, _) = Raw::connect(s.port, v, "pub", true);
            p.publish(publish("keep/3", b"three", QoS::AtLeastOnce, 4));
            loop {
                let m = sub.expect_publish();
                if &*m.topic == "keep/3" {
                    break;
                }
                assert_eq!(
                    &*m.topic, "keep/2",
                    "only the QoS 2 PUBREL exchange may come between"
                );
            }
            let (mut fresh, _) = Raw::connect(s.port, v, "late", true);
            fresh.subscribe(1, &[("state/+", sub_opts(QoS::AtLeastOnce))]);
            let m = fresh.expect_publish();
            assert!(m.retain);
            assert_eq!(&*m.payload, b"on");
        }
    }
}

#[test]
fn delivered_and_acknowledged_messages_are_not_redelivered_after_restart() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect_with(s.port, persistent(V5, "acker"));
    sub.subscribe(1, &[("a", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "pub", true);
    p.publish(publish("a", b"x", QoS::AtLeastOnce, 1));
    assert_eq!(&*sub.expect_publish().payload, b"x");
    sub.disconnect();
    // Graceful: the acknowledgement's deletion is flushed at shutdown. After
    // SIGKILL a QoS 1 redelivery (DUP) is allowed; losing it is not.
    let s = s.restart();
    let (mut sub, ack) = Raw::connect_with(s.port, persistent(V5, "acker"));
    assert!(ack.session_present);
    sub.expect_silence(Duration::from_millis(500));
}

#[test]
fn outgoing_qos2_in_each_state_resumes_after_kill() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect_with(s.port, persistent(V4, "q2"));
    sub.subscribe(1, &[("q", sub_opts(QoS::ExactlyOnce))]);
    let (mut p, _) = Raw::connect(s.port, V4, "pub", true);
    p.publish(publish("q", b"released", QoS::ExactlyOnce, 1));
    p.publish(publish("q", b"sent", QoS::ExactlyOnce, 2));
    let first = match sub.recv() {
        Some(Packet::Publish(x)) => x,
        o => panic!("{o:?}"),
    };
    let second = match sub.recv() {
        Some(Packet::Publish(x)) => x,
        o => panic!("{o:?}"),
    };
    sub.send(&Packet::PubRec(Ack::new(first.packet_id.unwrap())));
    assert_eq!(
        sub.recv(),
        Some(Packet::PubRel(Ack::new(first.packet_id.unwrap())))
    );
    let s = s.kill_and_restart();
    let (mut sub, ack) = Raw::connect_with(s.port, persistent(V4, "q2"));
    assert!(ack.session_present);
    let mut got = [sub.recv().unwrap(), sub.recv().unwrap()];
    got.sort_by_key(|p| std::cmp::Reverse(p.name()));
    assert_eq!(
        got[0],
        Packet::PubRel(Ack::new(first.packet_id.unwrap())),
        "released: PUBREL again, not PUBLISH"
    );
    match &got[1] {
        Packet::Publish(x) => {
            assert!(x.dup);
            assert_eq!(
                x.packet_id, second.packet_id,
                "same packet id after restart"
            );
            assert_eq!(&*x.payload, b"sent");
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn incoming_qos2_is_exactly_once_across_kill() {
    let s = Sluice::start();
    park_subscriber(s.port, V5, "once-sub", "once", QoS::ExactlyOnce);
    let (mut p, _) = Raw::connect_with(s.port, persistent(V5, "once-pub"));
    let mut m = publish("once", b"only-once", QoS::ExactlyOnce, 7);
    p.send(&Packet::Publish(m.clone()));
    assert!(matches!(p.recv(), Some(Packet::PubRec(_))));
    let s = s.kill_and_restart();
    let (mut p, ack) = Raw::connect_with(s.port, persistent(V5, "once-pub"));
    assert!(ack.session_present);
    m.dup = true;
    p.send(&Packet::Publish(m));
    assert!(matches!(p.recv(), Some(Packet::PubRec(_))));
    p.send(&Packet::PubRel(Ack::new(pid(7))));
    assert_eq!(p.recv(), Some(Packet::PubComp(Ack::new(pid(7)))));
    let (mut sub, _) = Raw::connect_with(s.port, persistent(V5, "once-sub"));
    assert_eq!(&*sub.expect_publish().payload, b"only-once");
    match sub.recv_timeout(Duration::from_millis(500)) {
        None | Some(Packet::PubRel(_)) => {}
        other => panic!("duplicate delivery: {other:?}"),
    }
}

#[test]
fn pending_will_delay_survives_kill() {
    let s = Sluice::start();
    park_subscriber(s.port, V5, "watcher", "wills/#", QoS::AtLeastOnce);
    let mut c = persistent(V5, "dying");
    let will_props = Properties {
        will_delay_interval: Some(1),
        ..Default::default()
    };
    c.will = Some(Will {
        topic: "wills/dying".into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: will_props,
    });
    let (dying, _) = Raw::connect_with(s.port, c);
    dying.drop_connection();
    std::thread::sleep(Duration::from_millis(100));
    let s = s.kill_and_restart();
    std::thread::sleep(Duration::from_millis(1500));
    let (mut watcher, _) = Raw::connect_with(s.port, persistent(V5, "watcher"));
    let m = watcher.expect_publish();
    assert_eq!((&*m.topic, &*m.payload), ("wills/dying", &b"gone"[..]));
}

#[test]
fn connected_client_at_crash_gets_its_will_after_restart() {
    let s = Sluice::start();
    park_subscriber(s.port, V4, "w2", "lost", QoS::AtLeastOnce);
    let mut c = persistent(V4, "victim");
    c.will = Some(Will {
        topic: "lost".into(),
        payload: bytes::Bytes::from_static(b"victim"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (_victim, _) = Raw::connect_with(s.port, c);
    let s = s.kill_and_restart();
    let (mut watcher, _) = Raw::connect_with(s.port, persistent(V4, "w2"));
    assert_eq!(&*watcher.expect_publish().payload, b"victim");
}

#[test]
fn session_expiry_counts_while_broker_is_down() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "short-lived", false);
    // Long enough that a restart on a busy machine fits inside it.
    c.properties.session_expiry_interval = Some(3);
    let (raw, _) = Raw::connect_with(s.port, c.clone());
    raw.disconnect();
    let s = s.restart();
    let (raw, ack) = Raw::connect_with(s.port, c.clone());
    assert!(ack.session_present, "still within expiry");
    raw.disconnect();
    std::thread::sleep(Duration::from_millis(200));
    let s = s.kill_and_restart();
    std::thread::sleep(Duration::from_millis(3300));
    let (raw, ack) = Raw::connect_with(s.port, c);
    assert!(!ack.session_present, "expired while down");
    raw.disconnect();
}

#[test]
fn clean_sessions_leave_nothing_behind() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V4, "clean", true);
    c.subscribe(1, &[("x", sub_opts(QoS::AtLeastOnce))]);
    c.disconnect();
    let s = s.restart();
    let (c, ack) = Raw::connect(s.port, V4, "clean", false);
    assert!(!ack.session_present);
    c.disconnect();
}

#[test]
fn foreign_data_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = std::process::Command::new(SLUICE)
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Sluice data directory"), "{err}");
    assert!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap() == "mine",
        "left untouched"
    );
}

#[test]
fn damaged_format_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("SLUICE_FORMAT"), "sluice-data-format 999\n").unwrap();
    let out = std::process::Command::new(SLUICE)
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("format 999"));
}

/// The product's promise: a QoS 1 publisher at full speed, the broker
/// killed with SIGKILL at random moments; every message that got a PUBACK
/// reaches the offline persistent subscriber afterwards.
#[test]
fn acknowledged_qos1_messages_survive_repeated_sigkill() {
    let cycles: usize = std::env::var("SLUICE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // A bridge whose rule never ends on real messages (it passes the check
    // on the sample at start) runs through every crash and restart; so
    // does a session whose client id is as long as the protocol allows.
    let mut s = Sluice::start_config(CRASH_CONFIG);
    let long_id = "L".repeat(65_535);
    park_subscriber(s.port, V4, "crash-sub", "crash/t", QoS::AtLeastOnce);
    park_subscriber(s.port, V5, &long_id, "crash/t", QoS::AtLeastOnce);
    let mut acked = BTreeSet::new();
    let mut next: u32 = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..cycles {
        let port = s.port;
        let start = next;
        let progress = Arc::new(AtomicUsize::new(0));
        let made = Arc::clone(&progress);
        let publisher = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let (mut p, _) = Raw::connect(port, V4, "crash-pub", true);
            let mut n = start;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let id = (n % 60_000 + 1) as u16;
                p.send(&Packet::Publish(publish(
                    "crash/t",
                    &n.to_be_bytes(),
                    QoS::AtLeastOnce,
                    id,
                )));
                match p.recv_timeout(Duration::from_secs(2)) {
                    Some(Packet::PubAck(a)) if a.packet_id.get() == id => {
                        acked.push(n);
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
                n += 1;
            }
            (acked, n)
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 350));
        // A loaded machine may take longer to answer the first publish: the
        // kill comes once something was acknowledged (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while progress.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        s = s.kill_and_restart();
        let (got, n) = publisher.join().unwrap();
        assert!(!got.is_empty(), "the publisher made progress");
        acked.extend(got);
        next = n + 1;
    }
    for (version, id) in [(V4, "crash-sub"), (V5, long_id.as_str())] {
        let (mut sub, ack) = Raw::connect_with(s.port, persistent(version, id));
        assert!(ack.session_present);
        let mut received = BTreeSet::new();
        while let Some(p) = sub.recv_timeout(Duration::from_millis(1500)) {
            if let Packet::Publish(m) = p {
                if let Some(id) = m.packet_id {
                    sub.send(&Packet::PubAck(Ack::new(id)));
                }
                let b: [u8; 4] = m.payload[..].try_into().unwrap();
                received.insert(u32::from_be_bytes(b));
            }
        }
        let lost: Vec<&u32> = acked.difference(&received).collect();
        assert!(
            lost.is_empty(),
            "{version:?} subscriber ({} bytes of client id): {} of {} acknowledged messages lost, e.g. {:?}",
            id.len(),
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
        eprintln!(
            "crash test: {} acknowledged, {} received over {cycles} kills",
            acked.len(),
            received.len()
        );
    }
    // The bad rule sent its messages to the dead letter, not the broker down.
    let (status, body) = s.admin("GET", "/api/v1/bridges/endless", None, None);
    assert_eq!(status, 200, "{body}");
}

/// The crash loop's broker: one TCP listener and a bridge whose rule
/// recurses without end on every real message (the start-up check runs it
/// on a sample whose topic is `sample/topic`, where it returns at once).
const CRASH_CONFIG: &str = r#"
[[listeners]]
bind = "127.0.0.1:0"

[[bridges]]
name = "endless"
filters = ["crash/#"]
payload_format = "raw"
transform = 'if .topic == "sample/topic" then . else (def f: 1 + f; f) end'
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:9/never"
timeout_secs = 1
"#;

/// A publisher's acks wait for the disk, but its connection keeps reading
/// meanwhile, so one group commit carries many of its messages. (It used
/// to read a kilobyte per commit: with 1 KB messages, one message per
/// fsync.)
#[test]
fn a_publisher_is_read_while_its_acks_wait_for_the_disk() {
    const MESSAGES: u16 = 2000;
    let s = Sluice::start();
    park_subscriber(s.port, V4, "disk-sub", "disk/t", QoS::AtLeastOnce);
    let commits = |s: &Sluice| {
        let (status, text) = s.admin("GET", "/metrics", None, None);
        assert_eq!(status, 200, "{text}");
        metric(&text, "sluice_store_commit_seconds_count").expect("commit count")
    };
    let before = commits(&s);
    let (mut p, _) = Raw::connect(s.port, V4, "disk-pub", true);
    let burst = (1..=MESSAGES)
        .map(|id| publish("disk/t", &[7; 1000], QoS::AtLeastOnce, id))
        .collect();
    p.publish_burst_qos1(burst, Duration::from_secs(5));
    let groups = commits(&s) - before;
    assert!(groups >= 1.0, "the messages went to disk");
    let per_commit = f64::from(MESSAGES) / groups;
    assert!(
        per_commit >= 8.0,
        "{per_commit:.1} messages per group commit"
    );
}

/// MQTT allows client ids of 65,535 bytes, the storage engine's key limit:
/// a key built from one plus a suffix made the engine panic, and with it
/// every later PUBACK and CONNACK, across restarts. Keys are digests now.
#[test]
fn a_client_id_of_the_protocol_limit_is_stored_and_restored() {
    let long = "L".repeat(65_535);
    let s = Sluice::start();
    park_subscriber(s.port, V4, &long, "long/#", QoS::AtLeastOnce);
    let (mut p, _) = Raw::connect(s.port, V4, "pub", true);
    // `publish` fails without a PUBACK (bounded by the client's timeout).
    p.publish(publish("long/1", b"for the long id", QoS::AtLeastOnce, 1));
    // The store still works for everyone else.
    park_subscriber(s.port, V5, "short", "short/#", QoS::AtLeastOnce);
    p.publish(publish("short/1", b"x", QoS::AtLeastOnce, 2));
    let s = s.restart();
    let (mut sub, ack) = Raw::connect_with(s.port, persistent(V4, &long));
    assert!(ack.session_present);
    let m = sub.expect_publish();
    assert_eq!(
        (&*m.topic, &*m.payload),
        ("long/1", &b"for the long id"[..])
    );
    let (_, ack) = Raw::connect_with(s.port, persistent(V5, "short"));
    assert!(ack.session_present);
}

/// A disk that refuses writes (RLIMIT_FSIZE with SIGXFSZ ignored: EFBIG):
/// from the first failed write on, nothing is acknowledged, readiness is
/// false, the cause is logged, and the process exits with status 1 within
/// a bounded time. Everything acknowledged before is there after a restart.
/// The engine preallocates 64 MiB journals, so the limit is exactly that:
/// the first journal write past the preallocation fails.
#[test]
fn a_failed_write_stops_acknowledgements_and_exits_for_the_supervisor() {
    let mut s = Sluice::start_with_file_size_limit(64 << 20);
    park_subscriber(s.port, V4, "keeper", "disk/#", QoS::AtLeastOnce);
    let (mut p, _) = Raw::connect(s.port, V4, "pub", true);
    // Incompressible, in case the journal compresses.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let payload: Vec<u8> = (0..60_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut log: Vec<String> = Vec::new();
    let store_failed = |s: &Sluice| {
        let (status, body) = s.admin("GET", "/readyz", None, None);
        let failed = body.contains(r#""store":"failed""#);
        assert!(
            !failed || status == 503,
            "ready with a failed store: {body}"
        );
        failed
    };
    let mut acked = 0;
    let mut refused = false;
    'publishing: for id in 1..=2000u16 {
        p.send(&Packet::Publish(publish(
            "disk/t",
            &payload,
            QoS::AtLeastOnce,
            id,
        )));
        // A slow disk only delays the PUBACK; a failed store never sends it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match p.recv_timeout(Duration::from_millis(200)) {
                Some(Packet::PubAck(_)) => {
                    acked += 1;
                    break;
                }
                // The broker may already be closing connections and its
                // admin listener (shutdown follows the failure): then the
                // log says why.
                None if {
                    log.extend(s.log_lines());
                    log.iter().any(|l| l.contains("storage failure"))
                } || store_failed(&s) =>
                {
                    refused = true;
                    break 'publishing;
                }
                None if Instant::now() < deadline => {}
                other => panic!("expected PUBACK or a failed store, got {other:?}"),
            }
        }
    }
    assert!(refused, "the file size limit was never reached");
    assert!(acked > 0, "the limit left no room to start");
    assert!(
        p.recv_timeout(Duration::from_millis(300)).is_none(),
        "acknowledged after the failure"
    );
    let failed_at = Instant::now();
    let exit = s
        .wait_exit(Duration::from_secs(15))
        .expect("the broker did not exit after a storage failure");
    assert_eq!(exit.code(), Some(1));
    assert!(failed_at.elapsed() < Duration::from_secs(12));
    log.extend(s.log_lines());
    let log = log.join("\n");
    assert!(
        log.contains("storage failure") && log.contains("too large"),
        "the cause is logged: {log}"
    );
    let s = s.respawn_without_limits();
    let (mut sub, ack) = Raw::connect_with(s.port, persistent(V4, "keeper"));
    assert!(ack.session_present);
    let got = sub.collect_publishes(Duration::from_millis(500));
    assert!(
        got.len() >= acked,
        "{} of {acked} acknowledged arrived",
        got.len()
    );
}

/// What a power loss a few seconds after the first start left behind when
/// the marker was written without fsync: the file exists, empty. The next
/// start recovers it from the data instead of refusing the directory.
#[test]
fn an_empty_format_marker_is_recovered_not_refused() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V4, "pub", true);
    let mut r = publish("state/door", b"open", QoS::AtLeastOnce, 1);
    r.retain = true;
    p.publish(r);
    let marker = s.data.path().join("store").join("SLUICE_FORMAT");
    std::fs::write(&marker, "").unwrap();
    let s = s.restart();
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "sluice-data-format 2\n"
    );
    let (mut sub, _) = Raw::connect(s.port, V4, "late", true);
    sub.subscribe(1, &[("state/+", sub_opts(QoS::AtLeastOnce))]);
    assert_eq!(&*sub.expect_publish().payload, b"open");
}

/// A persistent session keeps its owner's identity across a restart: with
/// an ACL, messages routed to it before it reconnects are checked against
/// that user's rules, not an anonymous client's (which would drop them).
#[test]
fn a_restored_session_keeps_its_identity_under_an_acl() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    sluice::auth::upsert_password_file(&passwd, "meter-a", b"pw-a").unwrap();
    sluice::auth::upsert_password_file(&passwd, "hq", b"pw-hq").unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user meter-a\ntopic read meters/meter-a/#\n\nuser hq\ntopic write meters/#\n",
    )
    .unwrap();
    let s = Sluice::start_config(&format!(
        "allow_anonymous = false\npassword_file = \"{}\"\nacl_file = \"{}\"\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n",
        passwd.display(),
        acl.display()
    ));
    let login = |port: u16, id: &str, user: &str, password: &str, clean: bool| {
        let mut c = connect_packet(V4, id, clean);
        c.username = Some(user.into());
        c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        Raw::connect_with(port, c)
    };
    let (mut sub, _) = login(s.port, "meter-a-dev", "meter-a", "pw-a", false);
    let ack = sub.subscribe(1, &[("meters/meter-a/#", sub_opts(QoS::AtLeastOnce))]);
    assert_eq!(ack.reasons, vec![1], "granted QoS 1");
    sub.disconnect();
    let (mut hq, _) = login(s.port, "hq-1", "hq", "pw-hq", true);
    hq.publish(publish(
        "meters/meter-a/cmd",
        b"before",
        QoS::AtLeastOnce,
        1,
    ));
    let s = s.restart();
    let (mut hq, _) = login(s.port, "hq-1", "hq", "pw-hq", true);
    hq.publish(publish("meters/meter-a/cmd", b"after", QoS::AtLeastOnce, 2));
    let (mut sub, ack) = login(s.port, "meter-a-dev", "meter-a", "pw-a", false);
    assert!(ack.session_present);
    let got: Vec<Vec<u8>> = sub
        .collect_publishes(Duration::from_millis(500))
        .iter()
        .map(|p| p.payload.to_vec())
        .collect();
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
}

/// A subscription is acknowledged by SUBACK: it must survive a SIGKILL
/// even while its session is still connected (found by the MQTT bridge's
/// remote-crash test: the subscriber's session came back without it).
#[test]
fn a_connected_sessions_subscription_survives_sigkill() {
    for v in [V4, V5] {
        let s = Sluice::start();
        let (mut sub, _) = Raw::connect_with(s.port, persistent(v, "stays"));
        sub.subscribe(1, &[("live/#", sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(s.port, v, "pub", true);
        p.publish(publish("live/1", b"before", QoS::AtLeastOnce, 1));
        assert_eq!(&*sub.expect_publish().payload, b"before");
        let s = s.kill_and_restart();
        let (mut sub, ack) = Raw::connect_with(s.port, persistent(v, "stays"));
        assert!(ack.session_present, "{v:?}");
        let (mut p, _) = Raw::connect(s.port, v, "pub", true);
        p.publish(publish("live/2", b"after", QoS::AtLeastOnce, 1));
        // "before" may come again (its PUBACK raced the kill): at least once.
        let got: Vec<Vec<u8>> = sub
            .collect_publishes(Duration::from_secs(3))
            .into_iter()
            .map(|m| m.payload.to_vec())
            .collect();
        assert!(
            got.contains(&b"after".to_vec()),
            "{v:?}: the subscription was lost: {got:?}"
        );
    }
}
