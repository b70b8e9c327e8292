//! Authentication and authorization against the real broker: password
//! files made by Debian's mosquitto_passwd and by `sluice passwd`, CONNACK
//! codes, ACL checks on SUBSCRIBE, PUBLISH and delivery with %c/%u
//! patterns, reload on SIGHUP, and the publish rate limit.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::codec::*;

use crate::harness::*;

fn login(c: &mut Connect, user: &str, password: &str) {
    c.username = Some(user.into());
    c.password = Some(Bytes::copy_from_slice(password.as_bytes()));
}

fn connack(port: u16, c: Connect) -> ConnAck {
    let mut raw = Raw::open(port, c.protocol);
    raw.send(&Packet::Connect(Box::new(c)));
    match raw.recv() {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

pub(crate) fn mosquitto_passwd(file: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("mosquitto_passwd");
    if !file.exists() {
        cmd.arg("-c");
    }
    let status = cmd
        .arg("-b")
        .arg(file)
        .arg(user)
        .arg(password)
        .status()
        .expect("mosquitto_passwd (install mosquitto)");
    assert!(status.success());
}

fn config(dir: &Path, top: &str) -> String {
    let _ = dir;
    format!("{top}\n[[listeners]]\nbind = \"127.0.0.1:0\"\n")
}

#[test]
fn password_file_from_mosquitto_passwd_is_accepted_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    mosquitto_passwd(&pw, "sensor", "s3cret");
    mosquitto_passwd(&pw, "dashboard", "d@sh");
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!(
            "allow_anonymous = false\npassword_file = \"{}\"\n",
            pw.display()
        ),
    ));
    for v in [V4, V5] {
        let mut ok = connect_packet(v, "good", true);
        login(&mut ok, "sensor", "s3cret");
        assert_eq!(connack(s.port, ok).code, ReasonCode::Success);
        let mut bad = connect_packet(v, "bad", true);
        login(&mut bad, "sensor", "wrong");
        let a = connack(s.port, bad);
        assert_eq!(
            a.code,
            ReasonCode::BadUserNameOrPassword,
            "{v:?}: CONNACK 4 / 0x86"
        );
        let mut unknown = connect_packet(v, "who", true);
        login(&mut unknown, "nobody", "x");
        assert_eq!(
            connack(s.port, unknown).code,
            ReasonCode::BadUserNameOrPassword
        );
        let anonymous = connect_packet(v, "anon", true);
        assert_eq!(
            connack(s.port, anonymous).code,
            ReasonCode::NotAuthorized,
            "{v:?}: CONNACK 5 / 0x87"
        );
    }
}

#[test]
fn v311_refusal_codes_are_the_3_1_1_return_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    mosquitto_passwd(&pw, "u", "p");
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!(
            "allow_anonymous = false\npassword_file = \"{}\"\n",
            pw.display()
        ),
    ));
    let mut raw = Raw::open(s.port, V4);
    let mut c = connect_packet(V4, "x", true);
    login(&mut c, "u", "nope");
    let mut buf = bytes::BytesMut::new();
    encode_packet(&Packet::Connect(Box::new(c)), V4, &mut buf).unwrap();
    raw.send_bytes(&buf);
    // Raw bytes: CONNACK with return code 4.
    assert_eq!(
        raw.until_closed(),
        vec![Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::BadUserNameOrPassword,
            properties: Properties::default()
        })]
    );
}

#[test]
fn sluice_passwd_writes_entries_that_both_brokers_read() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    let out = Command::new(SLUICE)
        .args(["passwd"])
        .arg(&pw)
        .args(["meter-7", "--password", "kWh!"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = std::fs::read_to_string(&pw).unwrap();
    assert!(line.starts_with("meter-7:$7$101$"), "{line}");
    // mosquitto_passwd can update the same file (it parses our line).
    mosquitto_passwd(&pw, "other", "o");
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!(
            "allow_anonymous = false\npassword_file = \"{}\"\n",
            pw.display()
        ),
    ));
    let mut c = connect_packet(V5, "m", true);
    login(&mut c, "meter-7", "kWh!");
    assert_eq!(connack(s.port, c).code, ReasonCode::Success);
}

const ACL: &str = "\
# anonymous clients may only read the public tree
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

fn acl_broker() -> (Sluice, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).unwrap();
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!("acl_file = \"{}\"\n", acl.display()),
    ));
    (s, dir)
}

#[test]
fn acl_refuses_subscriptions_with_0x80_and_0x87() {
    let (s, _dir) = acl_broker();
    for (v, refused) in [(V4, 0x80u8), (V5, 0x87)] {
        let mut c = connect_packet(v, "dev-9", true);
        c.username = Some("alice".into());
        let (mut cl, _) = Raw::connect_with(s.port, c);
        let ack = cl.subscribe(
            1,
            &[
                ("alice/#", sub_opts(QoS::AtLeastOnce)),
                ("bob/#", sub_opts(QoS::AtLeastOnce)),
                ("clients/dev-9/cmd", sub_opts(QoS::AtLeastOnce)),
                ("clients/dev-8/cmd", sub_opts(QoS::AtLeastOnce)),
                ("users/alice/inbox", sub_opts(QoS::AtLeastOnce)),
                ("users/bob/inbox", sub_opts(QoS::AtLeastOnce)),
            ],
        );
        assert_eq!(
            ack.reasons,
            vec![1, refused, 1, refused, 1, refused],
            "{v:?}"
        );
        cl.disconnect();
    }
}

#[test]
fn acl_denied_publish_gets_0x87_in_v5_and_is_dropped_in_v311() {
    let (s, _dir) = acl_broker();
    let mut watcher = connect_packet(V5, "w", true);
    watcher.username = Some("alice".into());
    let (mut w, _) = Raw::connect_with(s.port, watcher);
    w.subscribe(1, &[("alice/#", sub_opts(QoS::AtMostOnce))]);
    // Anonymous may not write anywhere.
    let (mut anon5, _) = Raw::connect(s.port, V5, "a5", true);
    anon5.send(&Packet::Publish(publish(
        "alice/x",
        b"no",
        QoS::AtLeastOnce,
        1,
    )));
    match anon5.recv() {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::NotAuthorized),
        other => panic!("{other:?}"),
    }
    let (mut anon4, _) = Raw::connect(s.port, V4, "a4", true);
    anon4.publish(publish("alice/x", b"no", QoS::AtLeastOnce, 1));
    // Alice may write her tree but not alice/secret (deny wins).
    let mut alice = connect_packet(V5, "alice-pub", true);
    alice.username = Some("alice".into());
    let (mut a, _) = Raw::connect_with(s.port, alice);
    a.publish(publish("alice/ok", b"yes", QoS::AtLeastOnce, 1));
    a.send(&Packet::Publish(publish(
        "alice/secret",
        b"no",
        QoS::AtLeastOnce,
        2,
    )));
    match a.recv() {
        Some(Packet::PubAck(x)) => assert_eq!(x.reason, ReasonCode::NotAuthorized),
        other => panic!("{other:?}"),
    }
    assert_eq!(&*w.expect_publish().payload, b"yes");
    w.expect_silence(Duration::from_millis(300));
}

#[test]
fn acl_is_checked_on_delivery_too() {
    // A subscription the ACL accepts can still match topics the reader may
    // not see: each delivery is checked.
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic read sensors/#\ntopic deny sensors/+/secret\n\nuser writer\ntopic write sensors/#\n",
    )
    .unwrap();
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!("acl_file = \"{}\"\n", acl.display()),
    ));
    let (mut reader, _) = Raw::connect(s.port, V4, "reader", true);
    assert_eq!(
        reader
            .subscribe(1, &[("sensors/#", sub_opts(QoS::AtMostOnce))])
            .reasons,
        vec![0]
    );
    let mut w = connect_packet(V4, "w", true);
    w.username = Some("writer".into());
    let (mut writer, _) = Raw::connect_with(s.port, w);
    writer.publish(publish("sensors/a/secret", b"hidden", QoS::AtLeastOnce, 1));
    writer.publish(publish("sensors/a/temp", b"21", QoS::AtLeastOnce, 2));
    let m = reader.expect_publish();
    assert_eq!((&*m.topic, &*m.payload), ("sensors/a/temp", &b"21"[..]));
    reader.expect_silence(Duration::from_millis(300));
}

#[test]
fn sighup_reloads_acl_without_dropping_connections_and_keeps_rules_on_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic read a/#\n").unwrap();
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!("acl_file = \"{}\"\n", acl.display()),
    ));
    let (mut c, _) = Raw::connect(s.port, V5, "reloader", true);
    assert_eq!(
        c.subscribe(1, &[("b/#", sub_opts(QoS::AtMostOnce))])
            .reasons,
        vec![0x87]
    );
    std::fs::write(&acl, "topic read a/#\ntopic read b/#\n").unwrap();
    s.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c
            .subscribe(2, &[("b/#", sub_opts(QoS::AtMostOnce))])
            .reasons;
        if r == vec![0] {
            break;
        }
        assert!(Instant::now() < deadline, "ACL not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file keeps the rules in force.
    std::fs::write(&acl, "topic wirte b/#\n").unwrap();
    s.hangup();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        c.subscribe(3, &[("b/#", sub_opts(QoS::AtMostOnce))])
            .reasons,
        vec![0]
    );
    assert!(s.log_lines().join("\n").contains("reload failed"));
    c.send(&Packet::PingReq);
    assert_eq!(
        c.recv(),
        Some(Packet::PingResp),
        "connection survived the reloads"
    );
}

#[test]
fn broken_acl_file_stops_startup_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl.conf");
    std::fs::write(&acl, "topic read a\nuser\n").unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, format!("acl_file = \"{}\"\n", acl.display())).unwrap();
    let out = Command::new(SLUICE)
        .arg("--config")
        .arg(&cfg)
        .arg("--in-memory")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acl.conf") && err.contains("line 2"), "{err}");
}

#[test]
fn publish_rate_limit_paces_a_fast_client_without_dropping() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__PUBLISH_RATE_MESSAGES", "20")]);
    let (mut sub, _) = Raw::connect(s.port, V4, "rate-sub", true);
    sub.subscribe(1, &[("rate", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V4, "rate-pub", true);
    let started = Instant::now();
    for i in 1..=40u16 {
        p.send(&Packet::Publish(publish(
            "rate",
            &i.to_be_bytes(),
            QoS::AtLeastOnce,
            i,
        )));
    }
    for _ in 1..=40 {
        assert!(matches!(p.recv(), Some(Packet::PubAck(_))));
    }
    let took = started.elapsed();
    // 20 at once (a second of burst), the next 20 at 20/s.
    assert!(took >= Duration::from_millis(900), "not paced: {took:?}");
    let got: Vec<u16> = (0..40)
        .map(|_| {
            let m = sub.expect_publish();
            u16::from_be_bytes([m.payload[0], m.payload[1]])
        })
        .collect();
    assert_eq!(
        got,
        (1..=40).collect::<Vec<u16>>(),
        "nothing dropped, order kept"
    );
}

#[test]
fn failed_logins_throttle_the_address_until_the_window_passes() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    sluice::auth::upsert_password_file(&pw, "meter-7", b"right").unwrap();
    let s = Sluice::start_config(&config(
        dir.path(),
        &format!(
            "allow_anonymous = false\npassword_file = \"{}\"\n[limits]\nmax_auth_failures = 10\nauth_failure_window_secs = 2\n",
            pw.display()
        ),
    ));
    let attempt = |v: ProtocolVersion, password: &str| {
        let mut c = connect_packet(v, "guesser", true);
        login(&mut c, "meter-7", password);
        connack(s.port, c).code
    };
    for i in 0..10 {
        assert_eq!(
            attempt(V5, &format!("guess-{i}")),
            ReasonCode::BadUserNameOrPassword,
            "attempt {i}"
        );
    }
    // The 11th guess, and even the right password, are refused unhashed.
    assert_eq!(attempt(V5, "guess-10"), ReasonCode::ConnectionRateExceeded);
    assert_eq!(attempt(V5, "right"), ReasonCode::ConnectionRateExceeded);
    assert_eq!(
        attempt(V4, "right"),
        ReasonCode::ServerUnavailable,
        "3.1.1: rc 3"
    );
    let (_, text) = s.admin("GET", "/metrics", None, None);
    assert_eq!(
        metric(&text, "sluice_auth_throttled_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(metric(&text, "sluice_auth_throttled_addresses"), Some(1.0));
    assert_eq!(metric(&text, "sluice_auth_failures_total"), Some(10.0));
    // Once the window has passed, the right password works again.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        match attempt(V5, "right") {
            ReasonCode::Success => break,
            ReasonCode::ConnectionRateExceeded if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn user_sections_without_a_password_file_are_claimable_and_warned_about() {
    let (s, _dir) = acl_broker();
    assert!(
        s.startup_log
            .iter()
            .any(|l| l.contains("WARN") && l.contains("no password_file")),
        "no start-up warning in {:#?}",
        s.startup_log
    );
    // As the warning says (and mosquitto does): the name alone selects
    // alice's section.
    let mut c = connect_packet(V5, "claims-alice", true);
    c.username = Some("alice".into());
    let (mut alice, ack) = Raw::connect_with(s.port, c);
    assert_eq!(ack.code, ReasonCode::Success);
    let ack = alice.subscribe(1, &[("alice/#", sub_opts(QoS::AtMostOnce))]);
    assert_eq!(ack.reasons, [0]);

    // With a password file, or no user rules, nothing to warn about.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    sluice::auth::upsert_password_file(&pw, "alice", b"pw").unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).unwrap();
    let plain = dir.path().join("plain-acl");
    std::fs::write(
        &plain,
        "topic read public/#\npattern readwrite clients/%c/#\n",
    )
    .unwrap();
    for top in [
        format!(
            "acl_file = \"{}\"\npassword_file = \"{}\"\n",
            acl.display(),
            pw.display()
        ),
        format!("acl_file = \"{}\"\n", plain.display()),
    ] {
        let quiet = Sluice::start_config(&config(dir.path(), &top));
        assert!(
            !quiet
                .startup_log
                .iter()
                .any(|l| l.contains("no password_file")),
            "{top}"
        );
    }
}
