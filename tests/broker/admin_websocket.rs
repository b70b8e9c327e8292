//! MQTT over WebSocket on the admin port (`/mqtt`, `admin.mqtt_websocket`):
//! the dashboard's broker on the defaults, where no ws listener exists. It
//! is guarded as the REST API is (Host, Origin, the token or a loopback
//! peer) and then is an MQTT connection under the broker's own rules.

use base64::Engine;
use sluice::codec::*;

use crate::admin::{outward_ip, raw_http, request};
use crate::harness::*;
use crate::ws_client::*;

const V4: ProtocolVersion = ProtocolVersion::V311;

fn status(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or("")
}

fn token_protocol(token: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    format!("mqtt, sluice.bearer.{b64}")
}

fn config_json(s: &Sluice) -> serde_json::Value {
    let (code, body) = s.admin("GET", "/dashboard/config.json", None, None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The page's own origin: how the dashboard's browser opens the socket.
fn dashboard_headers(port: u16) -> String {
    format!("Host: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n")
}

#[test]
fn the_dashboard_has_a_broker_on_the_defaults() {
    // `--bind` replaces the MQTT listeners with one TCP listener: no ws.
    let s = Sluice::start();
    let admin = s.admin_port();
    let cfg = config_json(&s);
    assert_eq!(
        cfg["listeners"],
        serde_json::json!([{"protocol": "ws", "port": admin, "path": "/mqtt", "admin": true}])
    );
    assert_eq!(cfg["token_required"], false);

    let (mut ws, head) = ws_connect_with(admin, "/mqtt", "mqtt", &dashboard_headers(admin));
    assert_eq!(status(&head), "101", "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt"),
        "{head}"
    );
    ws_send(
        &mut ws,
        &encode(
            &Packet::Connect(Box::new(connect_packet(V4, "dashboard", true))),
            V4,
        ),
    );
    assert_eq!(ws_recv(&mut ws), [0x20, 2, 0, 0], "CONNACK accepted");
    ws_send(
        &mut ws,
        &encode(
            &Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                filters: vec![("sensors/#".into(), sub_opts(QoS::AtMostOnce))],
            }),
            V4,
        ),
    );
    assert_eq!(ws_recv(&mut ws), [0x90, 3, 0, 1, 0], "SUBACK");
    // A device publishes over TCP; the page receives it.
    let (mut device, _) = Raw::connect(s.port, V4, "device", true);
    let reading = publish("sensors/t1", b"21.5", QoS::AtMostOnce, 0);
    device.send(&Packet::Publish(reading.clone()));
    assert_eq!(ws_recv(&mut ws), encode(&Packet::Publish(reading), V4));
    // It is counted like any connection.
    let (_, clients) = s.admin("GET", "/api/v1/clients?query=dashboard", None, None);
    assert!(clients.contains("\"dashboard\""), "{clients}");
}

#[test]
fn the_admin_websocket_wants_the_token_and_a_page_of_its_own_origin() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let s = Sluice::start_config(&format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        token.display()
    ));
    let admin = s.admin_port();
    assert_eq!(config_json(&s)["token_required"], true);
    let page = dashboard_headers(admin);
    let upgrade = |protocols: &str, headers: &str| {
        let (_ws, head) = ws_connect_with(admin, "/mqtt", protocols, headers);
        head
    };
    assert_eq!(status(&upgrade("mqtt", &page)), "401");
    assert_eq!(status(&upgrade(&token_protocol("wrong"), &page)), "401");
    // The token as a subprotocol (what a browser can send); the server
    // selects `mqtt` and never echoes the token.
    let head = upgrade(&token_protocol("s3cret-token"), &page);
    assert_eq!(status(&head), "101", "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("sec-websocket-protocol: mqtt\r\n"), "{head}");
    assert!(!head.contains("sluice.bearer"), "{head}");
    // Or as the header, for non-browser clients.
    let with_header = format!("{page}Authorization: Bearer s3cret-token\r\n");
    assert_eq!(status(&upgrade("mqtt", &with_header)), "101");
    // A page elsewhere may not use a browser that holds the token.
    let foreign = format!("Host: 127.0.0.1:{admin}\r\nOrigin: http://attacker.example\r\n");
    assert_eq!(
        status(&upgrade(&token_protocol("s3cret-token"), &foreign)),
        "403"
    );
    // Nor a name an attacker's DNS points here.
    let rebound = format!("Host: attacker.example:{admin}\r\n");
    assert_eq!(
        status(&upgrade(&token_protocol("s3cret-token"), &rebound)),
        "421"
    );
    // A plain GET is told what the endpoint is for.
    let (code, _) = raw_http(
        ("127.0.0.1", admin),
        &request("GET", "/mqtt", &format!("Host: 127.0.0.1:{admin}\r\n"), ""),
    );
    assert_eq!(code, 426);
}

#[test]
fn the_brokers_own_authentication_applies_after_the_upgrade() {
    let s = Sluice::start_config(
        "allow_anonymous = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    let admin = s.admin_port();
    let (mut ws, head) = ws_connect_with(admin, "/mqtt", "mqtt", &dashboard_headers(admin));
    assert_eq!(status(&head), "101", "{head}");
    ws_send(
        &mut ws,
        &encode(
            &Packet::Connect(Box::new(connect_packet(V4, "anonymous-page", true))),
            V4,
        ),
    );
    // 3.1.1 "not authorized" (0x05), then the connection closes.
    assert_eq!(ws_recv(&mut ws), [0x20, 2, 0, 5]);
}

#[test]
fn without_a_token_only_loopback_peers_get_the_admin_websocket() {
    let Some(ip) = outward_ip() else {
        eprintln!("skipped: this machine has no address besides loopback");
        return;
    };
    let s = Sluice::start_args(&["--admin-bind", "0.0.0.0:0"], &[]);
    let admin = s.admin_port();
    let headers = format!("Host: {ip}:{admin}\r\nOrigin: http://{ip}:{admin}\r\n");
    let (_ws, head) = ws_connect_at((&ip.to_string(), admin), "/mqtt", "mqtt", &headers);
    assert_eq!(status(&head), "401", "{head}");
    let (_ws, head) = ws_connect_with(admin, "/mqtt", "mqtt", &dashboard_headers(admin));
    assert_eq!(status(&head), "101", "{head}");
}

#[test]
fn the_admin_websocket_can_be_turned_off() {
    let s = Sluice::start_config(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\nmqtt_websocket = false\n",
    );
    let admin = s.admin_port();
    assert_eq!(config_json(&s)["listeners"], serde_json::json!([]));
    let (_ws, head) = ws_connect_with(admin, "/mqtt", "mqtt", &dashboard_headers(admin));
    assert_eq!(status(&head), "404", "{head}");
}
