use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_codec::{
    decode_packet, encode_packet, Ack, ConnAck, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::transform::{MQTT_QOS_HEADER, MQTT_RETAIN_HEADER};

fn cfg(address: &str) -> MqttSinkConfig {
    let v = serde_json::json!({"address": address, "client_id": "edge-1", "ack_timeout_secs": 2,
        "connect_timeout_secs": 2});
    serde_json::from_value(v).unwrap()
}

fn record(id: u64, topic: &str, qos: u8, retain: bool) -> Record {
    let mut headers = vec![
        (
            "mqtt-topic".to_owned(),
            Bytes::from(format!("site/{topic}")),
        ),
        (MQTT_QOS_HEADER.to_owned(), Bytes::from(qos.to_string())),
        ("room".to_owned(), Bytes::from_static(b"kitchen")),
    ];
    if retain {
        headers.push((MQTT_RETAIN_HEADER.to_owned(), Bytes::from_static(b"1")));
    }
    Record {
        id,
        destination: topic.to_owned(),
        key: None,
        payload: Bytes::from(format!("p{id}")),
        headers,
        timestamp_ms: 0,
    }
}

#[test]
fn packet_ids_follow_record_ids_and_leave_room_for_subscribes() {
    assert_eq!(packet_id_of(0).get(), 1);
    assert_eq!(packet_id_of(7), packet_id_of(7));
    assert_eq!(
        packet_id_of(u64::from(MAX_PUBLISH_PACKET_ID) - 1).get(),
        MAX_PUBLISH_PACKET_ID
    );
    assert_eq!(packet_id_of(u64::from(MAX_PUBLISH_PACKET_ID)).get(), 1);
    assert!((0..200_000u64).all(|id| packet_id_of(id).get() <= MAX_PUBLISH_PACKET_ID));
}

#[test]
fn settings_that_cannot_work_are_refused_with_their_key() {
    let parse = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"address": "h:1883", "client_id": "c"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<MqttSinkConfig>(v)
    };
    let e = parse(serde_json::json!({"protocol": 3})).unwrap_err();
    assert!(e.to_string().contains("use 4 (MQTT 3.1.1) or 5"), "{e}");
    let key = |extra| parse(extra).unwrap().check().unwrap_err().key;
    assert_eq!(key(serde_json::json!({"address": "no-port"})), "address");
    assert_eq!(key(serde_json::json!({"address": "h:0"})), "address");
    assert_eq!(key(serde_json::json!({"client_id": ""})), "client_id");
    assert_eq!(key(serde_json::json!({"qos": 3})), "qos");
    assert_eq!(
        key(serde_json::json!({"max_in_flight": 0})),
        "max_in_flight"
    );
    assert_eq!(
        key(serde_json::json!({"password_env": "SLUICE_TEST_SURELY_UNSET"})),
        "password_env"
    );
    assert_eq!(
        key(serde_json::json!({"protocol": 4, "password_env": "PATH"})),
        "username"
    );
    assert_eq!(
        key(serde_json::json!({"tls": {"cert_file": "/nonexistent.pem"}})),
        "tls.key_file"
    );
    assert_eq!(
        key(serde_json::json!({"tls": {"ca_file": "/nonexistent.pem"}})),
        "tls"
    );
    assert_eq!(
        key(serde_json::json!({"inbound": [{"filter": "a/#/b"}]})),
        "inbound"
    );
    assert_eq!(
        key(serde_json::json!({"inbound": [{"filter": "a/#", "qos": 3}]})),
        "inbound"
    );
    assert_eq!(
        key(serde_json::json!({"inbound": [{"filter": "a/#", "topic": "{nope}"}]})),
        "inbound"
    );
    assert!(parse(serde_json::json!({"address": "[::1]:1883"}))
        .unwrap()
        .check()
        .is_ok());
}

#[test]
fn records_become_publishes_capped_remapped_and_marked() {
    let mut c = cfg("h:1883");
    c.qos = 1;
    let o = outgoing::outgoing(&record(3, "cloud/a", 2, true), &c).unwrap();
    assert_eq!(o.publish.qos, QoS::AtLeastOnce, "capped at the rule's QoS");
    assert!(o.publish.retain);
    assert_eq!(&*o.publish.topic, "cloud/a");
    let props: Vec<(&str, &str)> = o
        .publish
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (&**k, &**v))
        .collect();
    assert_eq!(
        props,
        [
            ("room", "kitchen"),
            (MESSAGE_ID_PROPERTY, "3"),
            (LOOP_MARKER, "edge-1")
        ]
    );
    c.retain = RetainPolicy::Clear;
    c.qos = 2;
    let o = outgoing::outgoing(&record(4, "cloud/a", 0, true), &c).unwrap();
    assert_eq!((o.publish.qos, o.publish.retain), (QoS::AtMostOnce, false));
    c.protocol = RemoteProtocol::V311;
    let o = outgoing::outgoing(&record(5, "cloud/a", 2, false), &c).unwrap();
    assert_eq!(o.publish.qos, QoS::ExactlyOnce);
    assert!(
        o.publish.properties.user_properties.is_empty(),
        "3.1.1 has no properties"
    );
    for bad in ["", "cloud/+", "cloud/#", "a\0b"] {
        assert!(
            outgoing::outgoing(&record(6, bad, 1, false), &c).is_err(),
            "{bad:?}"
        );
    }
}

/// A remote that speaks just enough MQTT 5 to script one crash point.
struct Scripted {
    stream: TcpStream,
    buf: BytesMut,
    /// Unknown until CONNECT is read.
    version: Option<ProtocolVersion>,
}

impl Scripted {
    async fn accept(listener: &TcpListener, session_present: bool) -> Scripted {
        let (stream, _) = listener.accept().await.unwrap();
        let mut s = Scripted {
            stream,
            buf: BytesMut::new(),
            version: None,
        };
        assert!(matches!(s.read().await, Some(Packet::Connect(_))));
        s.version = Some(ProtocolVersion::V5);
        s.write(Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode::Success,
            properties: Properties::default(),
        }))
        .await;
        s
    }

    async fn read(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode_packet(&mut self.buf, self.version, 1 << 20).unwrap() {
                return Some(p);
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn write(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V5, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }
}

/// The crash point that matters for QoS 2: the remote answered PUBREC, our
/// PUBREL went out, the connection (or the broker) died before PUBCOMP. The
/// remote has released the packet id (it may have delivered the message):
/// a new sink on the same directory (a restarted broker) must resume the
/// record with PUBREL, never publish it again. A record whose PUBREC never
/// came goes again as PUBLISH under the same packet id.
#[tokio::test]
async fn a_released_qos2_record_is_resumed_with_pubrel_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let batch = vec![
        record(41, "cloud/a", 2, false),
        record(42, "cloud/b", 2, false),
    ];

    let mut first = MqttSink::new(cfg(&address), dir.path()).unwrap();
    first.start();
    let remote = async {
        let mut r = Scripted::accept(&listener, false).await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            if let Some(Packet::Publish(p)) = r.read().await {
                seen.push(p.packet_id.unwrap());
            }
        }
        // PUBREC for record 41 only; wait for its PUBREL, then "crash".
        r.write(Packet::PubRec(Ack::new(packet_id_of(41)))).await;
        match r.read().await {
            Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, packet_id_of(41)),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        seen
    };
    let (sent, seen) = tokio::join!(first.send(&batch), remote);
    assert_eq!(seen, [packet_id_of(41), packet_id_of(42)]);
    assert!(matches!(sent, Err(SinkError::Retryable(_))), "{sent:?}");
    drop(first);

    let mut second = MqttSink::new(cfg(&address), dir.path()).unwrap();
    second.start();
    let remote = async {
        let mut r = Scripted::accept(&listener, true).await;
        let mut got = Vec::new();
        while got.len() < 2 {
            match r.read().await {
                Some(Packet::PubRel(a)) => {
                    got.push(("pubrel", a.packet_id));
                    r.write(Packet::PubComp(Ack::new(a.packet_id))).await;
                }
                Some(Packet::Publish(p)) => {
                    let pid = p.packet_id.unwrap();
                    got.push(("publish", pid));
                    r.write(Packet::PubRec(Ack::new(pid))).await;
                }
                Some(_) => {}
                None => break,
            }
        }
        // Record 42's flow completes.
        match r.read().await {
            Some(Packet::PubRel(a)) => r.write(Packet::PubComp(Ack::new(a.packet_id))).await,
            other => panic!("expected PUBREL, got {other:?}"),
        }
        got
    };
    let (sent, got) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(second.send(&batch), remote)
    })
    .await
    .unwrap();
    sent.unwrap();
    assert_eq!(
        got,
        [("pubrel", packet_id_of(41)), ("publish", packet_id_of(42))],
        "record 41 resumed by PUBREL, record 42 published again under its id"
    );
    assert_eq!(second.status().report().delivered, 2);
}
