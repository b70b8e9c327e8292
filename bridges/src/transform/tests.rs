use bytes::Bytes;
use serde_json::json;

use super::*;

fn input(payload: impl Into<Bytes>) -> Input {
    Input {
        topic: "site/pump1/temp".into(),
        payload: payload.into(),
        qos: 1,
        retain: false,
        client_id: Some("pump1".into()),
        username: Some("alice".into()),
        timestamp_ms: 1_700_000_000_123,
        user_properties: vec![("unit".into(), "C".into()), ("unit".into(), "F".into())],
    }
}

fn config(expression: Option<&str>) -> TransformConfig {
    TransformConfig {
        expression: expression.map(str::to_owned),
        destination: "out".into(),
        ..TransformConfig::default()
    }
}

fn compile(expression: &str) -> Transform {
    Transform::compile(&config(Some(expression))).unwrap()
}

fn compile_err(expression: &str) -> String {
    match Transform::compile(&config(Some(expression))) {
        Err(TransformError::Compile(msg)) => msg,
        other => panic!("{expression}: expected a compile error, got {other:?}"),
    }
}

/// The transformed payload as a JSON value.
fn run(t: &Transform, payload: &[u8]) -> Option<serde_json::Value> {
    let record = t.apply(&input(payload.to_vec()), 7).unwrap()?;
    Some(serde_json::from_slice(&record.payload).unwrap())
}

fn nested(depth: usize, open: &[u8], leaf: &[u8], close: &[u8]) -> Vec<u8> {
    let mut out = open.repeat(depth);
    out.extend_from_slice(leaf);
    out.extend_from_slice(&close.repeat(depth));
    out
}

fn nested_json(depth: usize) -> Vec<u8> {
    nested(depth, b"[", b"1", b"]")
}

/// CBOR / MessagePack one-element arrays: a header byte per level.
fn nested_cbor(depth: usize) -> Vec<u8> {
    nested(depth, &[0x81], &[0x01], &[])
}

fn nested_msgpack(depth: usize) -> Vec<u8> {
    nested(depth, &[0x91], &[0x01], &[])
}

fn cbor(v: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

#[test]
fn transform_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Transform>();
}

#[test]
fn identity_forwards_json_bytes_and_fills_the_record() {
    let t = Transform::compile(&TransformConfig {
        key: Some("{client_id}".into()),
        ..config(None)
    })
    .unwrap();
    let payload = &b"{ \"temp\": 21.50,\n \"big\": 123456789012345678901234567890 }"[..];
    let record = t.apply(&input(payload), 42).unwrap().unwrap();
    assert_eq!(
        record,
        Record {
            id: 42,
            destination: "out".into(),
            key: Some(Bytes::from_static(b"pump1")),
            payload: Bytes::from_static(payload),
            headers: vec![
                ("mqtt-topic".into(), Bytes::from_static(b"site/pump1/temp")),
                ("unit".into(), Bytes::from_static(b"C")),
                ("unit".into(), Bytes::from_static(b"F")),
            ],
            timestamp_ms: 1_700_000_000_123,
        }
    );
}

#[test]
fn identity_still_validates_json() {
    let t = Transform::compile(&config(None)).unwrap();
    assert!(matches!(
        t.apply(&input(&b"{nope"[..]), 1),
        Err(TransformError::Decode(_))
    ));
}

#[test]
fn rule_sees_the_envelope() {
    let t = compile(
        ".payload as $p | {t: $p.temp, at: .timestamp, topic, client_id, username, qos, retain, \
         props: .user_properties}",
    );
    assert_eq!(
        run(&t, br#"{"temp": 21.5}"#),
        Some(json!({
            "t": 21.5, "at": 1_700_000_000_123u64, "topic": "site/pump1/temp",
            "client_id": "pump1", "username": "alice", "qos": 1, "retain": false,
            "props": {"unit": "F"},
        }))
    );
}

#[test]
fn envelope_has_null_for_missing_identity() {
    let t = compile("[.client_id, .username]");
    let mut msg = input(&b"1"[..]);
    msg.client_id = None;
    msg.username = None;
    let record = t.apply(&msg, 1).unwrap().unwrap();
    assert_eq!(&record.payload[..], b"[null,null]");
}

#[test]
fn output_is_compact_json() {
    let t = compile(".payload | {a: .a, s: \"x y\"}");
    let record = t
        .apply(&input(&b"{ \"a\" : [ 1 , 2 ] }"[..]), 1)
        .unwrap()
        .unwrap();
    assert_eq!(&record.payload[..], br#"{"a":[1,2],"s":"x y"}"#);
}

#[test]
fn select_drops_what_it_filters_out() {
    let t = compile("select(.payload.temp > 30) | .payload");
    assert_eq!(run(&t, br#"{"temp": 20}"#), None);
    assert_eq!(run(&t, br#"{"temp": 35}"#), Some(json!({"temp": 35})));
}

#[test]
fn only_the_first_output_is_used_and_later_ones_never_run() {
    let t = compile(".payload[]");
    assert_eq!(run(&t, b"[1, 2, 3]"), Some(json!(1)));
    let t = compile(".payload[0], error(\"computed the second output\")");
    assert_eq!(run(&t, b"[1, 2, 3]"), Some(json!(1)));
}

#[test]
fn runtime_errors_are_reported() {
    let t = compile(".payload.temp + \"x\"");
    let err = t.apply(&input(&br#"{"temp": 1}"#[..]), 1).unwrap_err();
    assert!(matches!(err, TransformError::Runtime(_)), "{err:?}");
    let t = compile("error(\"boom\")");
    match t.apply(&input(&b"1"[..]), 1) {
        Err(TransformError::Runtime(msg)) => assert!(msg.contains("boom"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn halt_is_an_error_not_a_process_exit() {
    for rule in ["halt", "halt_error(3)"] {
        let t = compile(rule);
        match t.apply(&input(&b"1"[..]), 1) {
            Err(TransformError::Runtime(msg)) => assert!(msg.contains("halt"), "{msg}"),
            other => panic!("{rule}: {other:?}"),
        }
    }
}

#[test]
fn rules_cannot_read_the_environment() {
    const VAR: &str = "SLUICE_TRANSFORM_TEST_SECRET";
    const SECRET: &str = "hunter2-7f3a";
    std::env::set_var(VAR, SECRET);
    for rule in [
        "env",
        "env.SLUICE_TRANSFORM_TEST_SECRET",
        "$ENV",
        "$ENV.SLUICE_TRANSFORM_TEST_SECRET",
        "\"\\(env)\"",
    ] {
        let msg = compile_err(rule);
        assert!(msg.contains("env") || msg.contains("ENV"), "{rule}: {msg}");
        assert!(msg.contains("process environment"), "{rule}: {msg}");
    }
    // A rule may define its own `env`; it still sees nothing of the process.
    let t = compile("def env: {}; [env.SLUICE_TRANSFORM_TEST_SECRET, (. | tostring)] | tostring");
    let out = run(&t, b"1").unwrap();
    assert!(!out.to_string().contains(SECRET), "{out}");
    assert!(
        matches!(Transform::compile(&config(Some("import \"x\" as x; .")))
        , Err(TransformError::Compile(msg)) if msg.contains("module"))
    );
}

#[test]
fn syntax_errors_give_the_position() {
    let msg = compile_err(".payload | {a: }");
    assert!(msg.contains("line 1, column 16"), "{msg}");
    let msg = compile_err(".payload |\n  map(.x");
    assert!(msg.contains("line 2, column 6"), "{msg}");
    assert!(msg.contains("closing parenthesis"), "{msg}");
    let msg = compile_err(".payload | nosuchfilter(1)");
    assert!(
        msg.contains("`nosuchfilter/1`") && msg.contains("line 1, column 12"),
        "{msg}"
    );
    let msg = compile_err("");
    assert!(msg.contains("end of input"), "{msg}");
}

#[test]
fn cbor_and_msgpack_decode_like_json() {
    let doc = json!({
        "temp": 21.5, "n": -3, "big": u64::MAX, "ok": true, "none": null,
        "tags": ["a", "ü"], "nested": {"x": [1, {"y": 2}]},
    });
    let json_bytes = serde_json::to_vec(&doc).unwrap();
    let expected = run(&compile(".payload"), &json_bytes).unwrap();
    assert_eq!(expected, doc);
    for (format, bytes) in [
        (PayloadFormat::Cbor, cbor(&doc)),
        (PayloadFormat::Msgpack, rmp_serde::to_vec(&doc).unwrap()),
    ] {
        let with_rule = Transform::compile(&TransformConfig {
            payload_format: format,
            ..config(Some(".payload"))
        })
        .unwrap();
        let identity = Transform::compile(&TransformConfig {
            payload_format: format,
            ..config(None)
        })
        .unwrap();
        let from_rule = with_rule.apply(&input(bytes.clone()), 1).unwrap().unwrap();
        let from_identity = identity.apply(&input(bytes), 1).unwrap().unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&from_rule.payload).unwrap(),
            doc,
            "{format:?}"
        );
        assert_eq!(from_rule.payload, from_identity.payload, "{format:?}");
    }
}

#[test]
fn binary_formats_map_non_json_features() {
    // CBOR {1: h'010203', "t": 1(5)}: integer key, byte string, tag.
    let cbor_bytes = [0xa2, 0x01, 0x43, 1, 2, 3, 0x61, b't', 0xc1, 0x05];
    // MessagePack {1: bin8 010203}.
    let msgpack_bytes = [0x81, 0x01, 0xc4, 0x03, 1, 2, 3];
    let cases: [(PayloadFormat, &[u8], serde_json::Value); 2] = [
        (
            PayloadFormat::Cbor,
            &cbor_bytes,
            json!({"1": "AQID", "t": 5}),
        ),
        (PayloadFormat::Msgpack, &msgpack_bytes, json!({"1": "AQID"})),
    ];
    for (format, bytes, expected) in cases {
        let t = Transform::compile(&TransformConfig {
            payload_format: format,
            ..config(Some(".payload"))
        })
        .unwrap();
        assert_eq!(run(&t, bytes), Some(expected), "{format:?}");
    }
}

#[test]
fn trailing_bytes_are_a_decode_error() {
    let cases: [(PayloadFormat, &[u8]); 3] = [
        (PayloadFormat::Json, b"{} x"),
        (PayloadFormat::Cbor, &[0x01, 0x02]),
        (PayloadFormat::Msgpack, &[0x01, 0x02]),
    ];
    for (format, bytes) in cases {
        let t = Transform::compile(&TransformConfig {
            payload_format: format,
            ..config(None)
        })
        .unwrap();
        match t.apply(&input(bytes.to_vec()), 1) {
            Err(TransformError::Decode(msg)) => assert!(
                msg.contains("trailing") || msg.contains("trailing characters"),
                "{format:?}: {msg}"
            ),
            other => panic!("{format:?}: {other:?}"),
        }
    }
}

#[test]
fn raw_is_base64_for_the_rule_and_untouched_without_one() {
    let bytes = vec![0x00, 0xff, b'h'];
    let raw = |expression| {
        Transform::compile(&TransformConfig {
            payload_format: PayloadFormat::Raw,
            ..config(expression)
        })
        .unwrap()
    };
    assert_eq!(run(&raw(Some(".payload")), &bytes), Some(json!("AP9o")));
    let record = raw(None).apply(&input(bytes.clone()), 1).unwrap().unwrap();
    assert_eq!(record.payload, bytes);
}

#[test]
fn nesting_limit_applies_to_every_format() {
    type Encoder = fn(usize) -> Vec<u8>;
    let formats: [(PayloadFormat, Encoder); 3] = [
        (PayloadFormat::Json, nested_json),
        (PayloadFormat::Cbor, nested_cbor),
        (PayloadFormat::Msgpack, nested_msgpack),
    ];
    for (format, encode) in formats {
        let t = Transform::compile(&TransformConfig {
            payload_format: format,
            max_depth: 64,
            ..config(Some(".payload"))
        })
        .unwrap();
        for (depth, ok) in [(64, true), (65, false), (100, false)] {
            match t.apply(&input(encode(depth)), 1) {
                Ok(Some(record)) if ok => {
                    assert_eq!(record.payload, nested_json(depth), "{format:?}")
                }
                Err(TransformError::Decode(msg)) if !ok => {
                    assert!(msg.contains("max_depth 64"), "{format:?} {depth}: {msg}")
                }
                other => panic!("{format:?} at depth {depth}: {other:?}"),
            }
        }
    }
}

#[test]
fn deepest_supported_limit_works_for_json() {
    let t = Transform::compile(&TransformConfig {
        max_depth: MAX_SUPPORTED_DEPTH,
        ..config(None)
    })
    .unwrap();
    assert!(t.apply(&input(nested_json(MAX_SUPPORTED_DEPTH)), 1).is_ok());
    let err = t
        .apply(&input(nested_json(MAX_SUPPORTED_DEPTH + 1)), 1)
        .unwrap_err();
    assert!(matches!(err, TransformError::Decode(_)), "{err:?}");
}

#[test]
fn max_depth_is_validated() {
    for max_depth in [0, MAX_SUPPORTED_DEPTH + 1] {
        let err = Transform::compile(&TransformConfig {
            max_depth,
            ..config(None)
        })
        .unwrap_err();
        assert!(matches!(err, TransformError::Config(_)), "{err:?}");
    }
}

#[test]
fn rules_cannot_build_unbounded_output() {
    let t = compile("reduce range(600) as $i (0; [.])");
    match t.apply(&input(&b"1"[..]), 1) {
        Err(TransformError::Runtime(msg)) => assert!(msg.contains("nested deeper"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn undecodable_payloads_follow_the_policy() {
    let bad = &b"{\"temp\": "[..];
    let with = |on_decode_error| {
        Transform::compile(&TransformConfig {
            on_decode_error,
            destination: "t.{topic.2}.{payload.temp}".into(),
            ..config(Some(".payload"))
        })
        .unwrap()
    };
    match with(OnDecodeError::DeadLetter).apply(&input(bad), 1) {
        Err(TransformError::Decode(msg)) => assert!(msg.contains("invalid JSON"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(with(OnDecodeError::Drop).apply(&input(bad), 1), Ok(None));
    let passed = with(OnDecodeError::Pass)
        .apply(&input(bad), 9)
        .unwrap()
        .unwrap();
    assert_eq!((passed.id, &passed.payload[..]), (9, bad));
    assert_eq!(passed.destination, "t.pump1.");
}

#[test]
fn passing_without_a_rule_still_decodes_for_payload_templates() {
    let with = |destination: &str, key: Option<&str>| {
        Transform::compile(&TransformConfig {
            on_decode_error: OnDecodeError::Pass,
            destination: destination.into(),
            key: key.map(str::to_owned),
            ..config(None)
        })
        .unwrap()
    };
    let good = &br#"{"temp": 21}"#[..];
    let bad = &b"\x00\xff binary"[..];
    for t in [
        with("t.{payload.temp}", None),
        with("t.", Some("{payload.temp}")),
    ] {
        let r = t.apply(&input(good), 1).unwrap().unwrap();
        let rendered = format!(
            "{}{}",
            r.destination,
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default())
        );
        assert_eq!(rendered, "t.21");
        let r = t.apply(&input(bad), 2).unwrap().unwrap();
        assert_eq!(&r.payload[..], bad);
    }
    // No template reads the payload: the same record, decodable or not.
    let t = with("t.{topic.2}", Some("{client_id}"));
    for payload in [good, bad] {
        let r = t.apply(&input(payload), 3).unwrap().unwrap();
        assert_eq!((&r.payload[..], &r.destination[..]), (payload, "t.pump1"));
        assert_eq!(r.key.as_deref(), Some(&b"pump1"[..]));
    }
}

#[test]
fn templates_render_from_the_transformed_payload() {
    let t = Transform::compile(&TransformConfig {
        expression: Some("{device: .payload.d, temp: .payload.t}".into()),
        destination: "plant.{topic.2}.{payload.device}".into(),
        key: Some("{{{payload.device}}}-{username}".into()),
        ..TransformConfig::default()
    })
    .unwrap();
    let record = t
        .apply(&input(&br#"{"d": "p/1", "t": 3}"#[..]), 1)
        .unwrap()
        .unwrap();
    assert_eq!(record.destination, "plant.pump1.p/1");
    assert_eq!(record.key, Some(Bytes::from_static(b"{p/1}-alice")));
}

#[test]
fn url_destinations_escape_substituted_values() {
    let t = Transform::compile(&TransformConfig {
        destination: "https://api.example/v1/{payload.device}?topic={topic}".into(),
        destination_escape: Escape::Url,
        ..config(Some(".payload"))
    })
    .unwrap();
    let record = t
        .apply(&input(&br#"{"device": "a b/c"}"#[..]), 1)
        .unwrap()
        .unwrap();
    assert_eq!(
        record.destination,
        "https://api.example/v1/a%20b%2Fc?topic=site%2Fpump1%2Ftemp"
    );
    let err = t.apply(&input(&br#"{"device": ".."}"#[..]), 1).unwrap_err();
    assert!(
        matches!(
            err,
            TransformError::Render {
                field: "destination",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_templates_fail_at_compile_naming_the_field() {
    let err = Transform::compile(&TransformConfig {
        destination: "x.{topics}".into(),
        ..config(None)
    })
    .unwrap_err();
    assert_eq!(
        err,
        TransformError::Template {
            field: "destination",
            source: TemplateError::UnknownPlaceholder {
                name: "topics".into(),
                offset: 2
            },
        }
    );
    assert!(err.to_string().contains("{topics}"), "{err}");
    let err = Transform::compile(&TransformConfig {
        key: Some("{".into()),
        ..config(None)
    })
    .unwrap_err();
    assert!(
        matches!(err, TransformError::Template { field: "key", .. }),
        "{err:?}"
    );
}

#[test]
fn formats_and_policies_deserialize_from_config_names() {
    #[derive(Deserialize)]
    struct C {
        f: Vec<PayloadFormat>,
        p: Vec<OnDecodeError>,
    }
    let c: C = serde_json::from_value(json!({
        "f": ["json", "cbor", "msgpack", "raw"],
        "p": ["dead_letter", "pass", "drop"],
    }))
    .unwrap();
    use OnDecodeError::*;
    use PayloadFormat::*;
    assert_eq!(c.f, [Json, Cbor, Msgpack, Raw]);
    assert_eq!(c.p, [DeadLetter, Pass, Drop]);
}

fn budget_err(t: &Transform, payload: &[u8]) -> String {
    match t.apply(&input(payload.to_vec()), 7) {
        Err(TransformError::Budget(why)) => why,
        other => panic!("expected a budget error, got {other:?}"),
    }
}

/// Rules that pass the sample at load but loop or recurse on a payload.
const LOOP_ON_FLAG: &str = "if .payload.loop then until(false; .) else .payload end";
const RECURSE_ON_FLAG: &str = "def f: 1 + f; if .payload.deep then f else .payload end";

#[test]
fn an_endless_loop_stops_at_the_step_budget() {
    // Only the step budget may end it: on a loaded machine (a debug build,
    // two cores shared with other tests) the default 1 s time budget came
    // first and the test failed although the step budget works.
    let mut c = config(Some(LOOP_ON_FLAG));
    c.budget.timeout = std::time::Duration::from_secs(60);
    let t = Transform::compile(&c).unwrap();
    assert_eq!(run(&t, br#"{"a":1}"#), Some(json!({"a":1})));
    let why = budget_err(&t, br#"{"loop":true}"#);
    assert!(why.contains("steps"), "{why}");
    // The transform is still usable afterwards.
    assert_eq!(run(&t, br#"{"b":2}"#), Some(json!({"b":2})));
}

#[test]
fn an_endless_loop_stops_at_the_time_budget() {
    let mut c = config(Some(LOOP_ON_FLAG));
    c.budget.max_steps = u64::MAX;
    c.budget.timeout = std::time::Duration::from_millis(100);
    let t = Transform::compile(&c).unwrap();
    let started = std::time::Instant::now();
    let why = budget_err(&t, br#"{"loop":true}"#);
    assert!(why.contains("longer than 100 ms"), "{why}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn unbounded_recursion_is_an_error_not_a_stack_overflow() {
    let mut c = config(Some(RECURSE_ON_FLAG));
    c.budget.max_steps = u64::MAX;
    c.budget.timeout = std::time::Duration::from_secs(60);
    let t = Transform::compile(&c).unwrap();
    let why = budget_err(&t, br#"{"deep":true}"#);
    assert!(why.contains("recursed too deeply"), "{why}");
    assert_eq!(run(&t, br#"{"c":3}"#), Some(json!({"c":3})));
}

#[test]
fn a_range_without_function_calls_is_metered() {
    let mut c = config(Some(
        r#"if .payload.big then [range(1e12)] | length else 0 end"#,
    ));
    c.budget.max_steps = 10_000;
    c.budget.timeout = std::time::Duration::from_secs(60);
    let t = Transform::compile(&c).unwrap();
    let why = budget_err(&t, br#"{"big":true}"#);
    assert!(why.contains("steps"), "{why}");
}

#[test]
fn output_past_its_limit_is_a_budget_error() {
    let mut c = config(Some(r#".payload.s * 100"#));
    c.budget.max_output_bytes = 1000;
    let t = Transform::compile(&c).unwrap();
    assert!(run(&t, br#"{"s":"ab"}"#).is_some());
    let why = budget_err(&t, br#"{"s":"abcdefghijkl"}"#);
    assert!(why.contains("exceeds 1000 bytes"), "{why}");
}

#[test]
fn rules_that_exceed_the_budget_on_a_sample_are_refused_at_load() {
    for rule in [
        "until(false; .)",
        "def f: 1 + f; f",
        "def f: f; f",
        "[repeat(1)]",
    ] {
        match Transform::compile(&config(Some(rule))) {
            Err(TransformError::Budget(why)) => assert!(why.contains("sample"), "{rule}: {why}"),
            other => panic!("{rule}: expected a budget error, got {other:?}"),
        }
    }
}

#[test]
fn the_runner_keeps_order_and_reports_each_message() {
    let t = compile(LOOP_ON_FLAG);
    let runner = super::runner::Runner::new("t", t);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let inputs = vec![
        input(&br#"{"n":1}"#[..]),
        input(&br#"{"loop":true}"#[..]),
        input(&br#"{"n":3}"#[..]),
    ];
    let out = rt.block_on(runner.apply_all(inputs)).unwrap();
    assert_eq!(out.len(), 3);
    assert!(matches!(out[0], Ok(Some(_))));
    assert!(matches!(out[1], Err(TransformError::Budget(_))));
    let third = out[2].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(&third.payload[..], br#"{"n":3}"#);
}

#[test]
fn deep_values_built_by_a_rule_do_not_overflow_when_dropped_or_walked() {
    let mut c = config(Some(
        r#"if .payload.deep then reduce range(1e9) as $i (null; [.]) | [..] | length else . end"#,
    ));
    c.budget.timeout = std::time::Duration::from_secs(60);
    let t = Transform::compile(&c).unwrap();
    let why = budget_err(&t, br#"{"deep":true}"#);
    assert!(why.contains("steps") || why.contains("deeply"), "{why}");
    let mut c = config(Some(
        r#"if .payload.deep then [limit(300000; repeat(1))] | reduce .[] as $i (null; [.]) | tojson | length else . end"#,
    ));
    c.budget.timeout = std::time::Duration::from_secs(60);
    let t = Transform::compile(&c).unwrap();
    let r = t.apply(&input(&br#"{"deep":true}"#[..]), 1);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn the_runner_abandons_a_run_that_never_returns_and_gives_up_after_a_few() {
    use super::runner::{Runner, MAX_ABANDONED};
    let runner = Runner::from_fn("hang", std::time::Duration::from_millis(200), |i| {
        if i.payload.as_ref() == b"hang" {
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
        Ok(None)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let out = rt
        .block_on(runner.apply_all(vec![input("a"), input("hang"), input("b")]))
        .unwrap();
    assert!(
        matches!(out[0], Ok(None)) && matches!(out[2], Ok(None)),
        "{out:?}"
    );
    assert!(matches!(&out[1], Err(TransformError::Budget(why)) if why.contains("abandoned")));
    assert_eq!(runner.abandoned(), 1);
    for _ in 1..MAX_ABANDONED - 1 {
        rt.block_on(runner.apply_all(vec![input("hang")])).unwrap();
    }
    assert!(rt.block_on(runner.apply_all(vec![input("hang")])).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
