use std::time::Duration;

use super::*;
use crate::http::{BatchMode, Method};
use crate::kafka::Compression;

/// A bridge read from JSON (the broker reads TOML through serde the same
/// way): `sink` is the sink's table.
fn bridge(sink: serde_json::Value, extra: serde_json::Value) -> BridgeConfig {
    let mut v = serde_json::json!({"name": "b", "filters": ["a/#"], "sink": sink});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    serde_json::from_value(v).unwrap()
}

fn http(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"kind": "http", "url": "http://127.0.0.1:1/{topic}"});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

fn kafka(extra: serde_json::Value) -> serde_json::Value {
    let mut v =
        serde_json::json!({"kind": "kafka", "bootstrap_servers": "127.0.0.1:1", "topic": "t"});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

fn no_filter_rule(_: &str) -> Result<(), String> {
    Ok(())
}

fn error_key(b: &BridgeConfig) -> String {
    b.validate(no_filter_rule).unwrap_err().key
}

#[test]
fn defaults_are_the_documented_ones() {
    let b = bridge(http(serde_json::json!({})), serde_json::json!({}));
    assert_eq!(b.qos, 1);
    assert_eq!(b.max_bytes, 1 << 30);
    assert_eq!(b.transform_timeout_ms, 1000);
    assert_eq!(b.ack, BridgeAck::Buffer);
    assert_eq!(b.full_policy, FullPolicy::Block);
    let SinkConfig::Http(h) = &b.sink else {
        panic!("{:?}", b.sink)
    };
    assert_eq!(h.method, Method::Post);
    assert_eq!(h.timeout, Duration::from_secs(10));
    assert_eq!(h.batch, BatchMode::One);
    assert_eq!((h.max_batch_records, h.max_batch_bytes), (100, 1 << 20));
    assert_eq!(h.linger, Duration::ZERO);
    assert_eq!(h.content_type, "application/json");
    assert_eq!(b.validate(no_filter_rule), Ok(()));

    let b = bridge(kafka(serde_json::json!({})), serde_json::json!({}));
    let SinkConfig::Kafka(k) = &b.sink else {
        panic!("{:?}", b.sink)
    };
    assert_eq!(k.acks, "all");
    assert_eq!(k.compression, Compression::None);
    assert_eq!(k.max_in_flight, 5000);
    assert_eq!(k.message_timeout, Duration::from_secs(30));
    assert_eq!(k.record_retries, 5);
    assert_eq!(b.validate(no_filter_rule), Ok(()));
}

#[test]
fn durations_read_from_the_file_keys_and_zero_seconds_mean_one() {
    let b = bridge(
        http(serde_json::json!({"timeout_secs": 0, "linger_ms": 250})),
        serde_json::json!({}),
    );
    let SinkConfig::Http(h) = &b.sink else {
        panic!()
    };
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!(h.linger, Duration::from_millis(250));
    let b = bridge(
        kafka(serde_json::json!({"message_timeout_secs": 0})),
        serde_json::json!({}),
    );
    let SinkConfig::Kafka(k) = &b.sink else {
        panic!()
    };
    assert_eq!(k.message_timeout, Duration::from_secs(1));
}

#[test]
fn unknown_keys_and_kinds_are_refused_by_name() {
    let v = serde_json::json!({"name": "b", "filters": ["a/#"],
        "sink": {"kind": "http", "url": "u", "content_type": "text/plain"}});
    let e = serde_json::from_value::<BridgeConfig>(v).unwrap_err();
    assert!(e.to_string().contains("content_type"), "{e}");
    let v = serde_json::json!({"name": "b", "filters": ["a/#"],
        "sink": {"kind": "amqp", "url": "u"}});
    let e = serde_json::from_value::<BridgeConfig>(v).unwrap_err();
    assert!(e.to_string().contains("amqp"), "{e}");
    let v = serde_json::json!({"name": "b", "filters": ["a/#"],
        "sink": {"kind": "mqtt", "address": "h:1883", "client_id": "c", "url": "u"}});
    let e = serde_json::from_value::<BridgeConfig>(v).unwrap_err();
    assert!(e.to_string().contains("url"), "{e}");
    let v = serde_json::json!({"name": "b", "filters": ["a/#"], "colour": 1,
        "sink": {"kind": "http", "url": "u"}});
    assert!(serde_json::from_value::<BridgeConfig>(v).is_err());
}

#[test]
fn validation_names_the_key_and_the_bridge() {
    let none = serde_json::json!({});
    let cases = [
        (
            bridge(http(none.clone()), serde_json::json!({"qos": 2})),
            "qos",
        ),
        (
            bridge(
                http(none.clone()),
                serde_json::json!({"ack": "sink", "qos": 0}),
            ),
            "qos",
        ),
        (
            bridge(
                http(none.clone()),
                serde_json::json!({"ack": "sink", "full_policy": "drop_oldest"}),
            ),
            "full_policy",
        ),
        (
            bridge(
                http(none.clone()),
                serde_json::json!({"transform": ".payload | {"}),
            ),
            "transform",
        ),
        (
            bridge(http(none.clone()), serde_json::json!({"username": " "})),
            "username",
        ),
        (
            bridge(
                http(none.clone()),
                serde_json::json!({"transform_max_steps": 0}),
            ),
            "transform_max_steps",
        ),
        (
            bridge(kafka(serde_json::json!({"acks": "2"})), none.clone()),
            "sink.acks",
        ),
        (
            bridge(
                kafka(serde_json::json!({"bootstrap_servers": " "})),
                none.clone(),
            ),
            "sink.bootstrap_servers",
        ),
        (
            bridge(kafka(serde_json::json!({"max_in_flight": 0})), none.clone()),
            "sink.max_in_flight",
        ),
    ];
    for (b, key) in cases {
        let e = b.validate(no_filter_rule).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.starts_with("bridge `b`: "), "{e}");
    }
    let mut b = bridge(http(none.clone()), none.clone());
    b.name = "a b".to_owned();
    assert_eq!(error_key(&b), "name");
    let e = bridge(http(none.clone()), none)
        .validate(|f| Err(format!("no {f}")))
        .unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.message.as_str()),
        ("filters", "bridge `b`: `a/#`: no a/#")
    );
}

/// What building the sink would refuse, a configuration check refuses too,
/// under the key that holds it.
#[test]
fn what_building_the_sink_refuses_is_refused_by_validation() {
    let none = serde_json::json!({});
    let cases = [
        (
            http(serde_json::json!({"headers": {"Content-Length": "1"}})),
            "sink.headers.Content-Length",
        ),
        (
            http(
                serde_json::json!({"headers_from_env": {"Authorization": "SLUICE_TEST_UNSET_VAR"}}),
            ),
            "sink.headers_from_env.Authorization",
        ),
        (
            http(serde_json::json!({"tls_ca": "/nonexistent/ca.pem"})),
            "sink.tls_ca",
        ),
        (
            kafka(serde_json::json!({"options": {"no.such.option": "1"}})),
            "sink.options.no.such.option",
        ),
        (
            kafka(serde_json::json!({"options": {"socket.timeout.ms": "soon"}})),
            "sink.options.socket.timeout.ms",
        ),
    ];
    for (sink, key) in cases {
        let b = bridge(sink, none.clone());
        let e = b.validate(no_filter_rule).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        let dir = tempfile::tempdir().unwrap();
        assert!(b.sink.build(dir.path()).is_err(), "{key}: built after all");
    }
    let e = bridge(
        http(serde_json::json!({"headers_from_env": {"Authorization": "SLUICE_TEST_UNSET_VAR"}})),
        none,
    )
    .validate(no_filter_rule)
    .unwrap_err();
    assert_eq!(
        e.message,
        "bridge `b`: environment variable SLUICE_TEST_UNSET_VAR is not set"
    );
}

#[test]
fn the_transform_renders_the_sinks_templates() {
    let b = bridge(
        kafka(serde_json::json!({"topic": "t-{topic.1}", "key": "{topic.2}"})),
        serde_json::json!({}),
    );
    assert!(b.compile_transform().is_ok());
    let b = bridge(
        kafka(serde_json::json!({"topic": "t-{topic.1"})),
        serde_json::json!({}),
    );
    assert_eq!(error_key(&b), "transform");
    assert_eq!(b.client_id(), "$bridge/b");
}
