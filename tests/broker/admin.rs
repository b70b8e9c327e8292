//! The admin listener: metrics under a scripted workload, health, each REST
//! endpoint (with and without the token), `$SYS` topics against the REST
//! numbers, reloads with a client that stays connected, signals.

use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn retained(mut p: Publish) -> Publish {
    p.retain = true;
    p
}

fn scrape(s: &Sluice) -> String {
    let (status, text) = s.admin("GET", "/metrics", None, None);
    assert_eq!(status, 200, "{text}");
    text
}

#[test]
fn metrics_follow_a_scripted_workload() {
    let s = Sluice::start();
    let before = scrape(&s);
    let q1 = "sluice_messages_received_total{qos=\"1\"}";
    assert_eq!(metric(&before, q1), Some(0.0), "{before}");

    let (mut sub, _) = Raw::connect(s.port, V5, "metrics-sub", true);
    sub.subscribe(1, &[("m/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V4, "metrics-pub", true);
    for i in 1..=3 {
        p.publish(publish("m/a", b"x", QoS::AtLeastOnce, i));
    }
    p.publish(retained(publish("m/r", b"kept", QoS::AtMostOnce, 0)));
    for _ in 0..4 {
        sub.recv_publish();
    }
    let after = scrape(&s);
    assert_eq!(metric(&after, q1), Some(3.0), "{after}");
    assert_eq!(
        metric(&after, "sluice_messages_received_total{qos=\"0\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "sluice_messages_sent_total{qos=\"1\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&after, "sluice_messages_sent_total{qos=\"0\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "sluice_clients_connected{protocol=\"5.0\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "sluice_clients_connected{protocol=\"3.1.1\"}"),
        Some(1.0)
    );
    assert!(metric(&after, "sluice_subscriptions").unwrap() >= 1.0);
    assert!(metric(&after, "sluice_retained_messages").unwrap() >= 1.0);
    assert!(metric(&after, "sluice_bytes_received_total").unwrap() > 0.0);
    // Only the retained QoS 0 message is stored, and nobody waits for its
    // commit: poll for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&scrape(&s), "sluice_store_commit_seconds_count").unwrap_or(0.0) == 0.0 {
        assert!(Instant::now() < deadline, "no store commit counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(metric(&after, "process_resident_memory_bytes").unwrap() > 1e6);

    p.disconnect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = scrape(&s);
        if metric(&t, "sluice_clients_connected{protocol=\"3.1.1\"}") == Some(0.0) {
            assert_eq!(
                metric(&t, "sluice_sessions{state=\"online\"}"),
                Some(1.0),
                "{t}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "disconnect not counted: {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn failed_logins_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "passwd",
            pw.to_str().unwrap(),
            "alice",
            "--password",
            "right",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let s = Sluice::start_with(&[
        ("SLUICE__PASSWORD_FILE", pw.to_str().unwrap()),
        ("SLUICE__ALLOW_ANONYMOUS", "false"),
    ]);
    let mut c = connect_packet(V4, "intruder", true);
    c.username = Some("alice".into());
    c.password = Some(bytes::Bytes::from_static(b"wrong"));
    let mut raw = Raw::open(s.port, V4);
    raw.send(&Packet::Connect(Box::new(c)));
    match raw.recv() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword),
        other => panic!("{other:?}"),
    }
    let t = scrape(&s);
    assert_eq!(metric(&t, "sluice_auth_failures_total"), Some(1.0), "{t}");
}

#[test]
fn health_and_readiness() {
    let s = Sluice::start();
    let (status, body) = s.admin("GET", "/healthz", None, None);
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = s.admin("GET", "/readyz", None, None);
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["ready"], true);
    assert_eq!(v["store"], "open");
}

#[test]
fn the_rest_api_wants_the_token_but_health_and_metrics_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let s = Sluice::start_config(&format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[admin]\ntoken_file = \"{}\"\n",
        token.display()
    ));
    let (status, body) = s.admin("GET", "/api/v1/clients", None, None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = s.admin("GET", "/api/v1/clients", Some("wrong"), None);
    assert_eq!(status, 401);
    let (status, _) = s.admin("POST", "/api/v1/publish", None, Some(r#"{"topic":"x"}"#));
    assert_eq!(status, 401);
    let (status, body) = s.admin("GET", "/api/v1/clients", Some("s3cret-token"), None);
    assert_eq!(status, 200, "{body}");
    // The scheme is case-insensitive, as a hand-written curl may send it.
    let at = ("127.0.0.1", s.admin_port());
    let lower = "authorization: bearer s3cret-token\r\nHost: localhost\r\n";
    let (status, body) = raw_http(at, &request("POST", "/api/v1/publish", lower, PUBLISH));
    assert_eq!(status, 200, "{body}");
    let bad = "Authorization: Basic s3cret-token\r\nHost: localhost\r\n";
    let (status, _) = raw_http(at, &request("POST", "/api/v1/publish", bad, PUBLISH));
    assert_eq!(status, 401);
    assert_eq!(s.admin("GET", "/healthz", None, None).0, 200);
    assert_eq!(s.admin("GET", "/metrics", None, None).0, 200);
}

#[test]
fn clients_can_be_listed_searched_inspected_and_kicked() {
    let s = Sluice::start();
    let mut c = connect_v5("dashboard-7", true, 0);
    c.keep_alive = 42;
    let (mut dash, _) = Raw::connect_with(s.port, c);
    dash.subscribe(1, &[("sensors/+/temp", sub_opts(QoS::AtLeastOnce))]);
    let (_other, _) = Raw::connect(s.port, V4, "sensor-1", true);

    let (status, body) = s.admin("GET", "/api/v1/clients", None, None);
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["total"], 2, "{v}");

    let (_, body) = s.admin("GET", "/api/v1/clients?q=dash", None, None);
    let v = json(&body);
    assert_eq!(v["total"], 1, "{v}");
    let d = &v["items"][0];
    assert_eq!(d["client_id"], "dashboard-7");
    assert_eq!(d["protocol"], "5.0");
    assert_eq!(d["keep_alive"], 42);
    assert_eq!(d["connected"], true);
    assert!(
        d["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{d}"
    );
    assert!(d["connected_since_ms"].as_u64().unwrap() > 1_600_000_000_000);

    let (status, body) = s.admin(
        "GET",
        "/api/v1/clients/dashboard-7/subscriptions",
        None,
        None,
    );
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["subscriptions"][0]["filter"], "sensors/+/temp");
    assert_eq!(v["subscriptions"][0]["qos"], 1);

    assert_eq!(s.admin("GET", "/api/v1/clients/nobody", None, None).0, 404);

    let (status, body) = s.admin("DELETE", "/api/v1/clients/dashboard-7", None, None);
    assert_eq!(status, 200, "{body}");
    let packets = dash.until_closed();
    assert!(
        packets.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason == ReasonCode::AdministrativeAction)
        ),
        "{packets:?}"
    );
    // Kicking again: not connected any more (and, without session
    // expiry, the session is gone).
    std::thread::sleep(Duration::from_millis(100));
    let (status, _) = s.admin("DELETE", "/api/v1/clients/dashboard-7", None, None);
    assert!(status == 404 || status == 409, "{status}");
}

#[test]
fn retained_messages_are_listed_by_filter_paged_and_deleted() {
    let s = Sluice::start_with(&[("SLUICE__SYS_INTERVAL", "0")]);
    let (mut p, _) = Raw::connect(s.port, V4, "retainer", true);
    for (i, t) in ["site/a/temp", "site/b/temp", "site/b/hum", "other/x"]
        .iter()
        .enumerate()
    {
        p.publish(retained(publish(
            t,
            format!("v{i}").as_bytes(),
            QoS::AtLeastOnce,
            i as u16 + 1,
        )));
    }
    let (status, body) = s.admin("GET", "/api/v1/retained?filter=site/%2B/temp", None, None);
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["items"][0]["topic"], "site/a/temp");
    assert_eq!(v["items"][0]["payload"], "v0");
    let (_, body) = s.admin(
        "GET",
        "/api/v1/retained?filter=%23&offset=1&limit=2",
        None,
        None,
    );
    let v = json(&body);
    assert_eq!(v["total"], 4);
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["items"][0]["topic"], "site/a/temp");
    assert_eq!(
        s.admin("GET", "/api/v1/retained?filter=a/%23/b", None, None)
            .0,
        400
    );

    let (status, _) = s.admin("DELETE", "/api/v1/retained?topic=site/b/hum", None, None);
    assert_eq!(status, 200);
    assert_eq!(
        s.admin("DELETE", "/api/v1/retained?topic=site/b/hum", None, None)
            .0,
        404
    );
    // Gone for new subscribers, and after a restart.
    let s = s.restart();
    let (_, body) = s.admin("GET", "/api/v1/retained?filter=site/%23", None, None);
    assert_eq!(json(&body)["total"], 2, "{body}");
}

#[test]
fn a_message_published_through_the_api_reaches_subscribers() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect(s.port, V5, "listener", true);
    sub.subscribe(1, &[("cmd/#", sub_opts(QoS::AtLeastOnce))]);
    let (status, body) = s.admin(
        "POST",
        "/api/v1/publish",
        None,
        Some(r#"{"topic":"cmd/door","payload":"open","qos":1}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["matched"], 1);
    let got = sub.recv_publish();
    assert_eq!((&*got.topic, &got.payload[..]), ("cmd/door", &b"open"[..]));
    assert_eq!(got.qos, QoS::AtLeastOnce);

    let bad = [
        r#"{"topic":"a/+","payload":"x"}"#,
        r#"{"topic":"$SYS/x","payload":"x"}"#,
        r#"{"topic":"a","qos":3}"#,
        r#"{"topic":"a","payload_base64":"***"}"#,
        r#"{"nope":1}"#,
    ];
    for b in bad {
        let (status, body) = s.admin("POST", "/api/v1/publish", None, Some(b));
        assert_eq!(status, 400, "{b} -> {body}");
        assert!(json(&body)["error"].is_string());
    }
}

#[test]
fn sys_topics_are_published_and_match_the_rest_numbers() {
    let s = Sluice::start_with(&[("SLUICE__SYS_INTERVAL", "1")]);
    let (mut p, _) = Raw::connect(s.port, V4, "sys-pub", true);
    p.publish(retained(publish("x/kept", b"1", QoS::AtLeastOnce, 1)));
    let (mut sub, _) = Raw::connect(s.port, V4, "sys-watcher", true);
    sub.subscribe(1, &[("$SYS/broker/#", sub_opts(QoS::AtMostOnce))]);
    // Retained values arrive at once, then every second.
    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && seen.len() < 39 {
        if let Some(m) = sub.publish_within(Duration::from_millis(500)) {
            seen.insert(
                m.topic.to_string(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            );
        }
    }
    for t in [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/load/messages/received/1min",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
    ] {
        assert!(seen.contains_key(t), "{t} missing from {:?}", seen.keys());
    }
    assert!(seen["$SYS/broker/version"].starts_with("sluice version "));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    // Wait for a tick with both clients counted, then compare with REST.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(m) = sub.publish_within(Duration::from_millis(1500)) {
            if &*m.topic == "$SYS/broker/clients/connected" && &m.payload[..] == b"2" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "clients/connected never said 2");
    }
    let (_, body) = s.admin("GET", "/api/v1/broker", None, None);
    let v = json(&body);
    assert_eq!(v["clients_connected"], 2);
    assert_eq!(v["messages_received"], 1);
    assert_eq!(v["subscriptions"], 1);
    // $SYS values stay in memory: never in the store across a restart.
    let s = s.restart();
    let (mut late, _) = Raw::connect(s.port, V4, "late", true);
    late.subscribe(1, &[("$SYS/broker/version", sub_opts(QoS::AtMostOnce))]);
    let v = late.publish_within(Duration::from_millis(1500));
    assert!(v.is_some(), "version republished after restart");
}

#[test]
fn sys_topics_are_only_readable_where_the_acl_allows() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic read #\npattern readwrite %c/#\nuser ops\ntopic read $SYS/#\n",
    )
    .unwrap();
    let pw = dir.path().join("pw");
    for user in ["ops", "dev"] {
        let ok = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["passwd", pw.to_str().unwrap(), user, "--password", "pw"])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let s = Sluice::start_with(&[
        ("SLUICE__SYS_INTERVAL", "1"),
        ("SLUICE__ACL_FILE", acl.to_str().unwrap()),
        ("SLUICE__PASSWORD_FILE", pw.to_str().unwrap()),
    ]);
    let login = |user: &str| {
        let mut c = connect_packet(V4, user, true);
        c.username = Some(user.into());
        c.password = Some(bytes::Bytes::from_static(b"pw"));
        let (mut r, ack) = Raw::connect_with(s.port, c);
        assert_eq!(ack.code, ReasonCode::Success);
        r.subscribe(1, &[("$SYS/broker/uptime", sub_opts(QoS::AtMostOnce))]);
        r
    };
    let mut ops = login("ops");
    let mut dev = login("dev");
    assert!(ops.publish_within(Duration::from_secs(3)).is_some());
    assert!(dev.publish_within(Duration::from_secs(2)).is_none());
}

#[test]
fn the_log_level_changes_at_run_time() {
    let s = Sluice::start_args(&[], &[("SLUICE__SYS_INTERVAL", "0")]);
    let _ = s.log_lines();
    // The harness runs with sluice=debug: a connection logs at debug.
    let (status, body) = s.admin(
        "PUT",
        "/api/v1/log-level",
        None,
        Some(r#"{"level":"warn"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let _ = s.log_lines();
    let (c, _) = Raw::connect(s.port, V4, "quiet", true);
    c.disconnect();
    std::thread::sleep(Duration::from_millis(300));
    let lines = s.log_lines();
    assert!(!lines.iter().any(|l| l.contains("DEBUG")), "{lines:?}");
    s.admin(
        "PUT",
        "/api/v1/log-level",
        None,
        Some(r#"{"level":"sluice=debug"}"#),
    );
    let (c, _) = Raw::connect(s.port, V4, "loud", true);
    c.disconnect();
    std::thread::sleep(Duration::from_millis(300));
    let lines = s.log_lines();
    assert!(lines.iter().any(|l| l.contains("DEBUG")), "{lines:?}");
    let (status, _) = s.admin(
        "PUT",
        "/api/v1/log-level",
        None,
        Some(r#"{"level":"=,nonsense[["}"#),
    );
    assert_eq!(status, 400);
}

#[test]
fn a_reload_applies_a_new_acl_while_clients_stay_connected_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite #\n").unwrap();
    let config = dir.path().join("sluice.toml");
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "sys_interval = 0\nacl_file = \"{}\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n{extra}",
                acl.display()
            ),
        )
        .unwrap();
    };
    write_config("");
    let s = Sluice::start_with_config(&config);
    let (mut sub, _) = Raw::connect(s.port, V5, "stays", true);
    sub.subscribe(
        1,
        &[
            ("a/#", sub_opts(QoS::AtMostOnce)),
            ("b/#", sub_opts(QoS::AtMostOnce)),
        ],
    );
    let (mut p, _) = Raw::connect(s.port, V5, "pub", true);
    p.publish(publish("b/1", b"before", QoS::AtMostOnce, 0));
    assert_eq!(&sub.recv_publish().payload[..], b"before");

    // Only a/# readable now.
    std::fs::write(&acl, "topic readwrite a/#\ntopic write b/#\n").unwrap();
    let (status, body) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["access_reloaded"], true);
    p.publish(publish("b/1", b"hidden", QoS::AtMostOnce, 0));
    p.publish(publish("a/1", b"visible", QoS::AtMostOnce, 0));
    assert_eq!(&sub.recv_publish().payload[..], b"visible");

    // A broken file: refused, nothing changes, clients still connected.
    write_config("bogus_key = 1\n");
    let (status, body) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("bogus_key"), "{body}");
    p.publish(publish("a/2", b"still", QoS::AtMostOnce, 0));
    assert_eq!(&sub.recv_publish().payload[..], b"still");
    let (_, body) = s.admin("GET", "/api/v1/clients?connected=true", None, None);
    assert_eq!(json(&body)["total"], 2);
}

#[test]
fn sighup_reloads_the_log_level_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "log_level = \"info\"\nsys_interval = 0\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    // Without RUST_LOG, so the file decides the level.
    let mut s = Sluice::start_args(&["--config", config.to_str().unwrap()], &[("RUST_LOG", "")]);
    let _ = s.log_lines();
    std::fs::write(
        &config,
        "log_level = \"sluice=debug\"\nsys_interval = 0\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    s.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s
        .log_lines()
        .iter()
        .any(|l| l.contains("configuration reloaded"))
    {
        assert!(Instant::now() < deadline, "no reload line");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (c, _) = Raw::connect(s.port, V4, "after-hup", true);
    c.disconnect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.log_lines().iter().any(|l| l.contains("DEBUG")));
    s.signal("TERM");
    assert!(s
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|st| st.success()));
}

/// Sends `request` exactly as written on a new connection; (status, whole
/// response). For headers a browser sets (Host, Origin) that
/// `http_request` does not.
pub(crate) fn raw_http(addr: (&str, u16), request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A request with a body (JSON) and extra header lines.
pub(crate) fn request(method: &str, path: &str, headers: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const PUBLISH: &str = r#"{"topic": "from/admin", "payload": "x"}"#;

#[test]
fn admin_refuses_rebound_hosts_and_cross_site_changes() {
    let s = Sluice::start();
    let port = s.admin_port();
    let at = ("127.0.0.1", port);
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    // DNS rebinding: the page's name, now pointing at us, is the Host.
    let rebound = format!("Host: rebind.attacker.example:{port}\r\n");
    let (status, text) = raw_http(at, &request("GET", "/api/v1/broker", &rebound, ""));
    assert_eq!(status, 421, "{text}");
    let (status, text) = raw_http(at, &request("POST", "/api/v1/reload", &rebound, ""));
    assert_eq!(status, 421, "{text}");
    let (status, _) = raw_http(at, &request("GET", "/dashboard/", &rebound, ""));
    assert_eq!(status, 421);

    // A cross-site POST from a page the operator visits.
    for origin in [
        "http://attacker.example",
        "null",
        &format!("http://127.0.0.1:{}", port ^ 1),
    ] {
        let headers = format!("{host}Origin: {origin}\r\n");
        let (status, text) = raw_http(at, &request("POST", "/api/v1/reload", &headers, ""));
        assert_eq!(status, 403, "{origin}: {text}");
        let (status, _) = raw_http(at, &request("POST", "/api/v1/publish", &headers, PUBLISH));
        assert_eq!(status, 403, "{origin}");
    }
    let (status, _) = raw_http(
        at,
        &request(
            "DELETE",
            "/api/v1/retained?topic=a",
            &format!("{host}Origin: http://evil\r\n"),
            "",
        ),
    );
    assert_eq!(status, 403);

    // Same origin (the listener's own page), or no Origin (curl, scripts).
    let same = format!("{host}Origin: http://127.0.0.1:{port}\r\n");
    let (status, text) = raw_http(at, &request("POST", "/api/v1/publish", &same, PUBLISH));
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw_http(at, &request("POST", "/api/v1/publish", &host, PUBLISH));
    assert_eq!(status, 200, "{text}");
    let localhost = format!("Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n");
    let (status, text) = raw_http(at, &request("POST", "/api/v1/publish", &localhost, PUBLISH));
    assert_eq!(status, 200, "{text}");
    // A GET may come from anywhere: the browser does not show a foreign
    // page the answer.
    let (status, text) = raw_http(
        at,
        &request(
            "GET",
            "/api/v1/broker",
            &format!("{host}Origin: http://elsewhere\r\n"),
            "",
        ),
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = raw_http(at, &request("GET", "/dashboard/config.json", &host, ""));
    assert_eq!(status, 200);
}

#[test]
fn admin_allowed_hosts_and_origins_extend_the_defaults() {
    let s = Sluice::start_config(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[admin]\nallowed_hosts = [\"broker.lan\"]\nallowed_origins = [\"https://ops.example\"]\n",
    );
    let port = s.admin_port();
    let at = ("127.0.0.1", port);
    let lan = format!("Host: broker.lan:{port}\r\n");
    let (status, text) = raw_http(at, &request("GET", "/api/v1/broker", &lan, ""));
    assert_eq!(status, 200, "{text}");
    let ops = format!("{lan}Origin: https://ops.example\r\n");
    let (status, text) = raw_http(at, &request("POST", "/api/v1/publish", &ops, PUBLISH));
    assert_eq!(status, 200, "{text}");
    let other = format!("{lan}Origin: https://other.example\r\n");
    let (status, _) = raw_http(at, &request("POST", "/api/v1/publish", &other, PUBLISH));
    assert_eq!(status, 403);
    let (status, _) = raw_http(
        at,
        &request("GET", "/api/v1/broker", "Host: broker.lan.evil\r\n", ""),
    );
    assert_eq!(status, 421);
}

/// An address of this machine other than loopback, if it has one.
pub(crate) fn outward_ip() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn tokenless_admin_api_answers_loopback_clients_only() {
    let Some(ip) = outward_ip() else {
        eprintln!("skipped: this machine has no address besides loopback");
        return;
    };
    let mut s = Sluice::start_args(&["--admin-bind", "0.0.0.0:0"], &[]);
    assert!(
        s.startup_log
            .iter()
            .any(|l| l.contains("WARN") && l.contains("not on loopback and has no token")),
        "no start-up warning"
    );
    let port = s.admin_port();
    let host = format!("Host: {ip}:{port}\r\n");
    let (status, text) = raw_http(
        (&ip.to_string(), port),
        &request("GET", "/api/v1/broker", &host, ""),
    );
    assert_eq!(status, 401, "{text}");
    let (status, _) = raw_http(
        (&ip.to_string(), port),
        &request("POST", "/api/v1/reload", &host, ""),
    );
    assert_eq!(status, 401);
    // Health and the dashboard stay reachable; loopback keeps the API.
    let (status, _) = raw_http(
        (&ip.to_string(), port),
        &request("GET", "/healthz", &host, ""),
    );
    assert_eq!(status, 200);
    let (status, text) = raw_http(
        ("127.0.0.1", port),
        &request(
            "GET",
            "/api/v1/broker",
            &format!("Host: 127.0.0.1:{port}\r\n"),
            "",
        ),
    );
    assert_eq!(status, 200, "{text}");
    s.signal("TERM");
    let _ = s.wait_exit(Duration::from_secs(15));
}

#[test]
fn admin_request_trickled_a_byte_at_a_time_is_cut_off() {
    let s = Sluice::start_config(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[admin]\nrequest_timeout_secs = 1\n",
    );
    let port = s.admin_port();
    // A body promised at 1000 bytes, sent a byte every 200 ms; then the
    // same for the headers.
    let head = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    // A handler that does not read the body answers; the connection
    // still closes rather than wait for the rest.
    let reload = head.replace("/api/v1/publish", "/api/v1/reload");
    for (opening, trickle) in [
        (head.as_str(), "{"),
        (reload.as_str(), "{"),
        ("GET /healthz HTTP/1.1\r\n", "X"),
    ] {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::io::Write::write_all(&mut c, opening.as_bytes()).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let closed_after = loop {
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "still open after 8 s (answer so far: {:?})",
                String::from_utf8_lossy(&answer)
            );
            if std::io::Write::write_all(&mut c, trickle.as_bytes()).is_err() {
                break started.elapsed();
            }
            let mut buf = [0u8; 1024];
            match std::io::Read::read(&mut c, &mut buf) {
                Ok(0) => break started.elapsed(),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break started.elapsed(),
            }
        };
        assert!(
            closed_after < Duration::from_secs(4),
            "{opening}: {closed_after:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        if opening == head {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    // A declared body over admin.max_body_bytes is refused at once.
    let (status, _) = raw_http(
        ("127.0.0.1", port),
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n",
    );
    assert_eq!(status, 413);
}
