//! Attack class "ownership": a session, its queued messages and a shared
//! group's messages reach only the identity allowed to have them. Users
//! are real (a password file made by mosquitto_passwd), rules a real ACL.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::codec::*;

use crate::access_control::mosquitto_passwd;
use crate::harness::*;

const ACL: &str = "\
user meter-a
topic readwrite meters/meter-a/#
user meter-b
topic readwrite meters/meter-b/#
user hq
topic readwrite meters/#
user worker-all
topic read work/#
user worker-public
topic read work/#
topic deny work/private/#
user dispatcher
topic write work/#
";

/// A broker with the users of the ACL above (password = user name).
fn broker(extra: &str) -> (Sluice, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    for user in [
        "meter-a",
        "meter-b",
        "hq",
        "worker-all",
        "worker-public",
        "dispatcher",
    ] {
        mosquitto_passwd(&pw, user, user);
    }
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).unwrap();
    let s = Sluice::start_config(&format!(
        "allow_anonymous = false\npassword_file = \"{}\"\nacl_file = \"{}\"\n{extra}\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n",
        pw.display(),
        acl.display()
    ));
    (s, dir)
}

fn as_user(mut c: Connect, user: &str) -> Connect {
    c.username = Some(user.into());
    c.password = Some(Bytes::copy_from_slice(user.as_bytes()));
    c
}

fn persistent(version: ProtocolVersion, client_id: &str, user: &str) -> Connect {
    let mut c = connect_packet(version, client_id, false);
    if version == V5 {
        c.properties.session_expiry_interval = Some(3600);
    }
    as_user(c, user)
}

fn try_connect(port: u16, c: Connect) -> (Raw, ConnAck) {
    let mut raw = Raw::open(port, c.protocol);
    raw.send(&Packet::Connect(Box::new(c)));
    match raw.recv() {
        Some(Packet::ConnAck(a)) => (raw, a),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// meter-a's session holds a private PUBACKed message; meter-b uses the
/// same client id.
fn queue_private_message(s: &Sluice, version: ProtocolVersion) {
    let (mut a, _) = Raw::connect_with(s.port, persistent(version, "meter-a-dev", "meter-a"));
    a.subscribe(1, &[("meters/meter-a/#", sub_opts(QoS::AtLeastOnce))]);
    a.disconnect();
    let (mut hq, _) = Raw::connect_with(s.port, as_user(connect_packet(V5, "hq", true), "hq"));
    hq.publish_burst_qos1(
        vec![publish(
            "meters/meter-a/reading",
            b"private",
            QoS::AtLeastOnce,
            1,
        )],
        Duration::from_secs(5),
    );
}

#[test]
fn another_identity_cannot_take_over_a_session_or_its_messages() {
    let (s, _dir) = broker("");
    for version in [V4, V5] {
        queue_private_message(&s, version);
        let (mut b, ack) = try_connect(s.port, persistent(version, "meter-a-dev", "meter-b"));
        assert_eq!(
            ack.code,
            ReasonCode::NotAuthorized,
            "{version:?}: v5 0x87 / 3.1.1 rc 5"
        );
        assert!(!ack.session_present);
        assert!(
            b.until_closed().is_empty(),
            "{version:?}: nothing of meter-a's session reaches meter-b"
        );
        // The owner still has its session and its message.
        let (mut a, ack) = Raw::connect_with(s.port, persistent(version, "meter-a-dev", "meter-a"));
        assert!(ack.session_present, "{version:?}");
        let p = a.recv_publish();
        assert_eq!(&p.payload[..], b"private");
        if let Some(id) = p.packet_id {
            a.send(&Packet::PubAck(Ack::new(id)));
        }
        // Clean start from another identity is refused too: it would
        // discard the owner's session.
        let (_, ack) = try_connect(
            s.port,
            as_user(connect_packet(version, "meter-a-dev", true), "meter-b"),
        );
        assert_eq!(ack.code, ReasonCode::NotAuthorized);
        a.disconnect();
    }
}

#[test]
fn with_any_identity_takeover_the_old_session_is_discarded_first() {
    let (s, _dir) = broker("session_takeover = \"any_identity\"");
    queue_private_message(&s, V5);
    let (mut b, ack) = try_connect(s.port, persistent(V5, "meter-a-dev", "meter-b"));
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(
        !ack.session_present,
        "the state was discarded, not handed over"
    );
    b.expect_silence(Duration::from_millis(800));
}

#[test]
fn queued_messages_are_checked_against_the_acl_at_delivery() {
    let (s, dir) = broker("");
    queue_private_message(&s, V5);
    // The rules change while the message waits in the queue.
    std::fs::write(
        dir.path().join("acl"),
        ACL.replace(
            "topic readwrite meters/meter-a/#",
            "topic write meters/meter-a/#",
        ),
    )
    .unwrap();
    s.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.log_lines().iter().any(|l| l.contains("reload")) {
        assert!(Instant::now() < deadline, "no reload logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut a, ack) = Raw::connect_with(s.port, persistent(V5, "meter-a-dev", "meter-a"));
    assert!(ack.session_present);
    a.expect_silence(Duration::from_millis(800));
}

#[test]
fn shared_subscriptions_deliver_only_to_members_allowed_to_read() {
    let (s, _dir) = broker("");
    let mut members = Vec::new();
    for user in ["worker-all", "worker-public"] {
        let (mut m, _) = Raw::connect_with(s.port, as_user(connect_packet(V5, user, true), user));
        // Both pass the SUBSCRIBE check: worker-public may read part of
        // work/#, so only deliveries tell them apart.
        let ack = m.subscribe(1, &[("$share/g/work/#", sub_opts(QoS::AtLeastOnce))]);
        assert_eq!(ack.reasons, vec![1], "{user}");
        members.push(m);
    }
    let (mut d, _) = Raw::connect_with(
        s.port,
        as_user(connect_packet(V5, "dispatcher", true), "dispatcher"),
    );
    d.publish_burst_qos1(
        (1..=10u16)
            .map(|i| publish("work/private/job", &[i as u8], QoS::AtLeastOnce, i))
            .collect(),
        Duration::from_secs(5),
    );
    let got_all = members[0].collect_publishes(Duration::from_millis(800));
    let got_public = members[1].collect_publishes(Duration::from_millis(200));
    assert!(got_public.is_empty(), "{got_public:?}");
    assert_eq!(
        got_all.len(),
        10,
        "every PUBACKed message goes to the member allowed to read it"
    );
}
