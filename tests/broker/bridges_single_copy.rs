//! One durable copy per bridged message: a QoS 1 message whose only
//! durable destination is a bridge is kept by the bridge's buffer alone
//! (the publisher's PUBACK waits for the buffer's append), not also by the
//! store. QoS 2 and messages a persistent session also needs keep their
//! store copy. The SIGKILL tests of bridges.rs and bridges_kafka.rs check
//! that nothing acknowledged is lost either way.

use std::time::Duration;

use sluice::codec::*;

use crate::bridges::Endpoint;
use crate::harness::*;

fn config(port: u16) -> String {
    format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"

[[bridges]]
name = "telemetry"
filters = ["sensors/#"]
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{port}/ingest"
"#
    )
}

fn store_ops(s: &Sluice) -> f64 {
    let (_, text) = s.admin("GET", "/metrics", None, None);
    metric(&text, "sluice_store_ops_total").expect("sluice_store_ops_total")
}

#[test]
fn a_bridged_qos1_message_is_made_durable_by_the_buffer_alone() {
    let ep = Endpoint::start("[]");
    let s = Sluice::start_config(&config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    let before = store_ops(&s);
    for i in 0..100u16 {
        p.publish(publish(
            "sensors/attic/temp",
            format!("{i}").as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    assert_eq!(ep.wait_for(100, Duration::from_secs(20)).len(), 100);
    let qos1_ops = store_ops(&s) - before;
    // Before: a put of the message and of the bridge session's queue
    // entry, and their deletes: 400 operations. Now none per message (the
    // start-up's own writes may still land in the window).
    assert!(
        qos1_ops < 100.0,
        "{qos1_ops} store operations for 100 bridged QoS 1 messages"
    );

    // QoS 2 keeps its store copy (the publisher's packet-id state and the
    // message become durable together).
    let before = store_ops(&s);
    for i in 0..10u16 {
        p.publish(publish(
            "sensors/attic/temp",
            format!("{}", 1000 + i).as_bytes(),
            QoS::ExactlyOnce,
            200 + i,
        ));
    }
    assert_eq!(ep.wait_for(110, Duration::from_secs(20)).len(), 110);
    let qos2_ops = store_ops(&s) - before;
    assert!(
        qos2_ops >= 20.0,
        "{qos2_ops} store operations for 10 bridged QoS 2 messages"
    );
}

#[test]
fn a_persistent_subscriber_keeps_the_store_copy_across_a_sigkill() {
    // The endpoint is down: the bridge holds the message in its buffer, and
    // a persistent session that also matches needs the store's copy.
    let ep = Endpoint::start("[503, 503, 503, 503, 503, 503, 503, 503]");
    let s = Sluice::start_config(&config(ep.port));
    let (mut sub, _) = Raw::connect(s.port, V4, "keeper", false);
    sub.subscribe(1, &[("sensors/#", sub_opts(QoS::AtLeastOnce))]);
    drop(sub);
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    p.publish(publish("sensors/attic/temp", b"21.5", QoS::AtLeastOnce, 1));
    let s = s.kill_and_restart();
    let (mut sub, ack) = Raw::connect(s.port, V4, "keeper", false);
    assert!(ack.session_present);
    match sub.recv_timeout(Duration::from_secs(10)) {
        Some(Packet::Publish(m)) => assert_eq!(&m.payload[..], b"21.5"),
        other => panic!("the persistent session lost the message: {other:?}"),
    }
    let got = ep.wait_for(1, Duration::from_secs(30));
    assert!(
        got.iter().any(|r| r["body"] == "21.5"),
        "the bridge lost it: {got:?}"
    );
}
