//! Listeners: TLS and mutual TLS (with certificates from certs/generate.sh),
//! certificate identity as user name, WebSocket framing, several listeners
//! at once, per-listener limits. Real clients: mosquitto_pub/mosquitto_sub.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sluice::codec::*;

use crate::harness::*;
use crate::ws_client::*;

/// A fresh certificate set in a temp dir (CA, server, clients, expired, foreign).
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/generate.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "certs/generate.sh failed");
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

fn tls_config(c: &Certs, extra_tls: &str, extra_top: &str) -> String {
    format!(
        "{extra_top}\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tls\"\n[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra_tls}\n",
        c.p("server-chain.pem"),
        c.p("server.key"),
    )
}

/// mosquitto_sub waiting for `count` messages, as a child process.
fn sub(args: &[String]) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args(args)
        .args(["-W", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (install mosquitto-clients)")
}

fn run(cmd: &str, args: &[String]) -> Output {
    Command::new(cmd).args(args).output().expect(cmd)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Publishes with mosquitto_pub until the subscriber (already started) has
/// had time to subscribe, then returns the subscriber's output.
fn pub_until_received(sub: std::process::Child, pub_args: &[String]) -> String {
    std::thread::sleep(Duration::from_millis(400));
    let out = run("mosquitto_pub", pub_args);
    assert!(
        out.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sub.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_listener_serves_mosquitto_clients_with_cafile() {
    let c = Certs::generate();
    let s = Sluice::start_config(&tls_config(&c, "", ""));
    let port = s.port_of("tls").to_string();
    let common = |extra: &[&str]| {
        let mut v = strings(&[
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &c.p("ca.pem"),
            "-V",
            "5",
        ]);
        v.extend(strings(extra));
        v
    };
    let child = sub(&common(&["-t", "secure/#", "-C", "1", "-v"]));
    let got = pub_until_received(
        child,
        &common(&["-t", "secure/a", "-m", "over tls", "-q", "1"]),
    );
    assert_eq!(got.trim(), "secure/a over tls");
    // The plain TCP listener beside it still works.
    let (c1, _) = Raw::connect(s.port_of("tcp"), V4, "plain", true);
    c1.disconnect();
}

#[test]
fn tls_client_with_untrusted_server_cert_fails() {
    let c = Certs::generate();
    let s = Sluice::start_config(&tls_config(&c, "", ""));
    let out = run(
        "mosquitto_pub",
        &strings(&[
            "-h",
            "localhost",
            "-p",
            &s.port_of("tls").to_string(),
            "--cafile",
            &c.p("other-ca.pem"),
            "-t",
            "x",
            "-m",
            "y",
        ]),
    );
    assert!(
        !out.status.success(),
        "a client must not trust a server cert from another CA"
    );
}

#[test]
fn mutual_tls_accepts_valid_client_certs_and_refuses_others() {
    let c = Certs::generate();
    let extra = format!(
        "client_ca = \"{}\"\nrequire_certificate = true\n",
        c.p("ca.pem")
    );
    let s = Sluice::start_config(&tls_config(&c, &extra, ""));
    let port = s.port_of("tls").to_string();
    let attempt = |cert: Option<(&str, &str)>| {
        let mut a = strings(&[
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &c.p("ca.pem"),
            "-t",
            "m",
            "-m",
            "x",
            "-q",
            "1",
        ]);
        if let Some((crt, key)) = cert {
            a.extend([
                String::from("--cert"),
                c.p(crt),
                String::from("--key"),
                c.p(key),
            ]);
        }
        run("mosquitto_pub", &a).status.success()
    };
    assert!(
        attempt(Some(("client.pem", "client.key"))),
        "valid client certificate refused"
    );
    assert!(!attempt(None), "no client certificate must be refused");
    assert!(
        !attempt(Some(("expired.pem", "expired.key"))),
        "expired certificate must be refused"
    );
    assert!(
        !attempt(Some(("other-client.pem", "other-client.key"))),
        "foreign CA must be refused"
    );
}

#[test]
fn certificate_identity_is_the_user_name_for_the_acl() {
    let c = Certs::generate();
    let acl = c.path("acl.conf");
    std::fs::write(
        &acl,
        "topic read devices/#\n\nuser device-1\ntopic readwrite devices/device-1/#\n",
    )
    .unwrap();
    let extra = format!(
        "client_ca = \"{}\"\nrequire_certificate = true\nuse_identity_as_username = true\n",
        c.p("ca.pem")
    );
    let top = format!("acl_file = \"{}\"\n", acl.display());
    let s = Sluice::start_config(&tls_config(&c, &extra, &top));
    let port = s.port_of("tls").to_string();
    // Anonymous reader on the plain listener.
    let (mut reader, _) = Raw::connect(s.port_of("tcp"), V4, "reader", true);
    assert_eq!(
        reader
            .subscribe(1, &[("devices/#", sub_opts(QoS::AtMostOnce))])
            .reasons,
        vec![0]
    );
    let publish = |cert: &str, key: &str, topic: &str| {
        let a = strings(&[
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &c.p("ca.pem"),
            "--cert",
            &c.p(cert),
            "--key",
            &c.p(key),
            "-t",
            topic,
            "-m",
            topic,
            "-V",
            "311",
        ]);
        assert!(run("mosquitto_pub", &a).status.success());
    };
    publish("client.pem", "client.key", "devices/device-1/temp");
    publish("client.pem", "client.key", "devices/device-2/temp");
    publish("client2.pem", "client2.key", "devices/device-2/temp");
    let got = reader.expect_publish();
    assert_eq!(&*got.topic, "devices/device-1/temp");
    reader.expect_silence(Duration::from_millis(500));
}

#[test]
fn bad_tls_material_is_a_startup_error_naming_the_file() {
    let c = Certs::generate();
    let bogus = c.path("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let cfg = format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tls\"\n[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        bogus.display(),
        c.p("server.key")
    );
    let path = c.path("bad.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new(SLUICE)
        .arg("--config")
        .arg(&path)
        .arg("--in-memory")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus.pem"), "{err}");
}

#[test]
fn sighup_reloads_tls_certificates() {
    let c = Certs::generate();
    let s = Sluice::start_config(&tls_config(&c, "", ""));
    let port = s.port_of("tls").to_string();
    let ok = |ca: &str| {
        run(
            "mosquitto_pub",
            &strings(&[
                "-h",
                "localhost",
                "-p",
                &port,
                "--cafile",
                ca,
                "-t",
                "r",
                "-m",
                "x",
            ]),
        )
        .status
        .success()
    };
    let old_ca = c.dir.path().join("old-ca.pem");
    std::fs::copy(c.path("ca.pem"), &old_ca).unwrap();
    assert!(ok(&c.p("ca.pem")));
    // New certificates (new CA) in the same files, then SIGHUP.
    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/generate.sh"))
        .arg(c.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    s.hangup();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ok(&c.p("ca.pem")),
        "new certificate not served after SIGHUP"
    );
    assert!(
        !ok(&old_ca.to_string_lossy()),
        "old certificate still served after SIGHUP"
    );
}

#[test]
fn websocket_negotiates_mqtt_and_reassembles_packets_across_frames() {
    let s = Sluice::start_config("[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n");
    let port = s.port_of("ws");
    let (mut ws, head) = ws_connect(port, "/mqtt", "mqtt");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt"),
        "{head}"
    );
    // CONNECT split over two frames.
    let connect = encode(
        &Packet::Connect(Box::new(connect_packet(V4, "ws-client", true))),
        V4,
    );
    ws_send(&mut ws, &connect[..5]);
    ws_send(&mut ws, &connect[5..]);
    let ack = ws_recv(&mut ws);
    assert_eq!(ack, vec![0x20, 2, 0, 0], "CONNACK accepted");
    // SUBSCRIBE and PINGREQ in one frame.
    let mut both = encode(
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            filters: vec![("ws/t".into(), sub_opts(QoS::AtMostOnce))],
        }),
        V4,
    );
    both.extend(encode(&Packet::PingReq, V4));
    ws_send(&mut ws, &both);
    let mut got = Vec::new();
    while got.len() < 7 {
        got.extend(ws_recv(&mut ws));
    }
    assert_eq!(got, vec![0x90, 3, 0, 1, 0, 0xd0, 0]);
    // A message from a TCP-free publisher path: publish over the same WS.
    ws_send(
        &mut ws,
        &encode(
            &Packet::Publish(publish("ws/t", b"hi", QoS::AtMostOnce, 0)),
            V4,
        ),
    );
    let m = ws_recv(&mut ws);
    assert_eq!(
        m,
        encode(
            &Packet::Publish(publish("ws/t", b"hi", QoS::AtMostOnce, 0)),
            V4
        )
    );
}

#[test]
fn websocket_wrong_path_is_refused() {
    let s = Sluice::start_config(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\nws_path = \"/mqtt\"\n",
    );
    let (_ws, head) = ws_connect(s.port_of("ws"), "/other", "mqtt");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn websocket_upgrades_from_foreign_pages_are_refused() {
    let s = Sluice::start_config(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\nallowed_origins = [\"https://app.example\"]\n",
    );
    let (port, listed, admin) = (s.listeners[0].1, s.listeners[1].1, s.admin_port());
    let status = |port: u16, origin: Option<&str>| {
        let mut headers = format!("Host: 127.0.0.1:{port}\r\n");
        if let Some(o) = origin {
            headers.push_str(&format!("Origin: {o}\r\n"));
        }
        let (_ws, head) = ws_connect_with(port, "/mqtt", "mqtt", &headers);
        head.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    // A page elsewhere (or a sandboxed one) may not use the visitor's
    // browser to reach the broker.
    for foreign in [
        "http://attacker.example",
        "null",
        &format!("http://localhost:{port}"),
        &format!("http://attacker.example:{admin}"),
        "https://app.example",
    ] {
        assert_eq!(status(port, Some(foreign)), "403", "{foreign}");
    }
    // Devices send no Origin; the listener's own page and the admin
    // dashboard (same host, the admin port) are admitted; so is a listed
    // origin where it is listed.
    assert_eq!(status(port, None), "101");
    assert_eq!(
        status(port, Some(&format!("http://127.0.0.1:{port}"))),
        "101"
    );
    assert_eq!(
        status(port, Some(&format!("https://127.0.0.1:{port}"))),
        "101"
    );
    assert_eq!(
        status(port, Some(&format!("http://127.0.0.1:{admin}"))),
        "101"
    );
    assert_eq!(status(listed, Some("https://app.example")), "101");

    // The dashboard's connection then speaks MQTT.
    let (mut ws, head) = ws_connect_with(
        port,
        "/mqtt",
        "mqtt",
        &format!("Host: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{admin}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ws_send(
        &mut ws,
        &encode(
            &Packet::Connect(Box::new(connect_packet(V4, "dash", true))),
            V4,
        ),
    );
    assert_eq!(ws_recv(&mut ws), [0x20, 2, 0, 0]);
}

#[test]
fn per_listener_connection_limit() {
    let s = Sluice::start_config(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nmax_connections = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
    );
    let limited = s.listeners[0].1;
    let free = s.listeners[1].1;
    let (first, _) = Raw::connect(limited, V5, "l1", true);
    let mut second = Raw::open(limited, V5);
    second.send(&Packet::Connect(Box::new(connect_packet(V5, "l2", true))));
    match second.until_closed().first() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::ServerBusy),
        other => panic!("expected CONNACK 0x89, got {other:?}"),
    }
    let (other, _) = Raw::connect(free, V5, "l3", true);
    other.disconnect();
    first.disconnect();
}
