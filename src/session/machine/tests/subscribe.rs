//! SUBSCRIBE, UNSUBSCRIBE, DISCONNECT and deliveries.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use super::{disconnect_reason, id, machine, sent, setup, Host};
use crate::codec::{
    ConnAck, Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
use crate::session::machine::{Count, Exit, Machine};
use crate::session::{Delivery, Message};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

fn subscribe(filters: &[(&str, SubscriptionOptions)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(1),
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|(f, o)| (ByteString::from(*f), *o))
            .collect(),
    })
}

fn suback(m: &mut Machine) -> Vec<u8> {
    match sent(m).as_slice() {
        [Packet::SubAck(SubAck { reasons, .. })] => reasons.clone(),
        other => panic!("expected one SUBACK, got {other:?}"),
    }
}

#[test]
fn an_invalid_filter_is_refused_in_its_entry() {
    let now = Instant::now();
    for (version, code) in [(V5, 0x8F), (V311, 0x80)] {
        let mut host = Host::new();
        let mut m = machine(version, now);
        let long = "x".repeat(65);
        let p = subscribe(&[
            ("a/#/b", options(QoS::AtMostOnce)),
            (&long, options(QoS::AtMostOnce)),
            ("a/b/c/d/e", options(QoS::AtMostOnce)),
            ("ok", options(QoS::AtLeastOnce)),
        ]);
        assert_eq!(m.handle(p, now, &mut host), Ok(()));
        assert_eq!(suback(&mut m), vec![code, code, code, 1]);
        assert_eq!(host.subscriptions.len(), 1);
    }
}

#[test]
fn the_acl_refuses_a_filter_with_0x87() {
    let now = Instant::now();
    let mut host = Host::new().with_acl("topic read public/#\n");
    let mut m = machine(V5, now);
    let p = subscribe(&[
        ("secret/#", options(QoS::AtMostOnce)),
        ("public/x", options(QoS::AtMostOnce)),
    ]);
    assert_eq!(m.handle(p, now, &mut host), Ok(()));
    assert_eq!(suback(&mut m), vec![0x87, 0]);
}

#[test]
fn the_subscription_quota_counts_new_filters_only() {
    let now = Instant::now();
    let mut host = Host::new();
    let mut m = machine(V5, now);
    let p = subscribe(&[
        ("a", options(QoS::AtMostOnce)),
        ("b", options(QoS::AtMostOnce)),
        ("c", options(QoS::AtMostOnce)),
        ("a", options(QoS::AtLeastOnce)),
    ]);
    assert_eq!(m.handle(p, now, &mut host), Ok(()));
    assert_eq!(suback(&mut m), vec![0, 0, 0x97, 1]);
}

#[test]
fn the_subscription_bytes_limit_refuses_what_would_not_fit_the_record() {
    let now = Instant::now();
    let mut host = Host::new();
    host.limits.max_subscriptions_per_client = 10;
    // Two 16-byte filters fit, with 9 bytes each for the record.
    host.subscription_room = 2 * (16 + 9);
    for (version, refused) in [(V5, 0x97), (V311, 0x80)] {
        host.subscriptions.clear();
        let mut m = machine(version, now);
        let p = subscribe(&[
            ("aaaaaaaaaaaaaaaa", options(QoS::AtMostOnce)),
            ("bbbbbbbbbbbbbbbb", options(QoS::AtMostOnce)),
            ("cccccccccccccccc", options(QoS::AtMostOnce)),
            ("aaaaaaaaaaaaaaaa", options(QoS::AtLeastOnce)),
            ("d", options(QoS::AtMostOnce)),
        ]);
        assert_eq!(m.handle(p, now, &mut host), Ok(()));
        assert_eq!(
            suback(&mut m),
            vec![0, 0, refused, 1, refused],
            "{version:?}: a filter already held takes no more room"
        );
        assert_eq!(host.subscriptions.len(), 2);
    }
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let now = Instant::now();
    let mut host = Host::new();
    let mut m = machine(V5, now);
    let mut o = options(QoS::AtMostOnce);
    o.no_local = true;
    let r = m.handle(subscribe(&[("$share/g/a", o)]), now, &mut host);
    assert_eq!(r, Err(Exit::Violation(ReasonCode::ProtocolError)));
    assert_eq!(disconnect_reason(&mut m), Some(ReasonCode::ProtocolError));
    assert!(host.subscriptions.is_empty());
}

#[test]
fn the_granted_qos_is_capped_by_the_server_maximum() {
    let now = Instant::now();
    let mut host = Host::new();
    host.limits.maximum_qos = QoS::AtLeastOnce;
    let mut m = machine(V5, now);
    let p = subscribe(&[("a", options(QoS::ExactlyOnce))]);
    assert_eq!(m.handle(p, now, &mut host), Ok(()));
    assert_eq!(suback(&mut m), vec![1]);
}

#[test]
fn unsubscribe_says_which_filters_existed() {
    let now = Instant::now();
    let mut host = Host::new();
    let mut m = machine(V5, now);
    assert_eq!(
        m.handle(
            subscribe(&[("a", options(QoS::AtMostOnce))]),
            now,
            &mut host
        ),
        Ok(())
    );
    sent(&mut m);
    let u = Packet::Unsubscribe(Unsubscribe {
        packet_id: id(2),
        properties: Properties::default(),
        filters: vec![ByteString::from("a"), ByteString::from("b")],
    });
    assert_eq!(m.handle(u, now, &mut host), Ok(()));
    match sent(&mut m).as_slice() {
        [Packet::UnsubAck(UnsubAck { reasons, .. })] => assert_eq!(reasons, &[0x00, 0x11]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    // One session record write per packet (before its acknowledgement),
    // not one per filter.
    assert_eq!(host.subscription_writes, 2);
}

fn disconnect(reason: ReasonCode, expiry: Option<u32>) -> Packet {
    Packet::Disconnect(Disconnect {
        reason,
        properties: Properties {
            session_expiry_interval: expiry,
            ..Properties::default()
        },
    })
}

#[test]
fn disconnect_may_not_raise_an_expiry_connect_set_to_zero() {
    let now = Instant::now();
    let mut host = Host::new();
    let mut s = setup(V5, 0);
    s.session_expiry_was_zero = true;
    let mut m = Machine::new(s, now);
    let r = m.handle(disconnect(ReasonCode::Success, Some(30)), now, &mut host);
    assert_eq!(r, Err(Exit::Violation(ReasonCode::ProtocolError)));
    assert_eq!(disconnect_reason(&mut m), Some(ReasonCode::ProtocolError));
    assert_eq!(host.session_expiry, None);
}

#[test]
fn disconnect_sets_a_capped_expiry_and_decides_the_will() {
    let now = Instant::now();
    let mut host = Host::new();
    let mut m = machine(V5, now);
    let r = m.handle(
        disconnect(ReasonCode::Success, Some(1 << 20)),
        now,
        &mut host,
    );
    assert_eq!(r, Err(Exit::Disconnect { with_will: false }));
    assert_eq!(host.session_expiry, Some(3600));
    let r = m.handle(
        disconnect(ReasonCode::DisconnectWithWill, None),
        now,
        &mut host,
    );
    assert_eq!(r, Err(Exit::Disconnect { with_will: true }));
}

fn delivery(topic: &str, payload: &'static [u8], qos: QoS) -> Delivery {
    Delivery {
        message: Arc::new(Message::from_broker(
            ByteString::from(topic),
            Bytes::from_static(payload),
            qos,
            false,
            0,
        )),
        qos,
        retain: false,
        subscription_ids: vec![],
        seq: None,
        sink_ack: None,
        shared_group: None,
    }
}

#[test]
fn drain_drops_what_the_acl_denies_or_the_client_cannot_take() {
    let now = Instant::now();
    let mut host = Host::new().with_acl("topic read public/#\n");
    let mut s = setup(V5, 0);
    s.client_max_packet = 64;
    let mut m = Machine::new(s, now);
    {
        let mut state = host.state.borrow_mut();
        state.enqueue(delivery("secret", b"x", QoS::AtLeastOnce));
        state.enqueue(delivery("public/big", &[b'x'; 100], QoS::AtLeastOnce));
        state.enqueue(delivery("public/ok", b"x", QoS::AtLeastOnce));
    }
    m.drain(now, &mut host);
    match sent(&mut m).as_slice() {
        [Packet::Publish(p)] => assert_eq!(&*p.topic, "public/ok"),
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
    assert_eq!(host.state.borrow().inflight_len(), 1, "dropped flows end");
    assert_eq!(host.counted(Count::Sent(QoS::AtLeastOnce)), 1);
    assert_eq!(host.counted(Count::DroppedTooLarge), 1);
    assert_eq!(host.drained.get(), 1);
}

#[test]
fn a_resumed_session_sends_again_only_what_the_acl_allows_and_the_client_takes() {
    let now = Instant::now();
    let mut host = Host::new().with_acl("topic read public/#\n");
    let mut s = setup(V5, 0);
    s.client_max_packet = 64;
    let mut m = Machine::new(s, now);
    let ids: Vec<_> = {
        let mut state = host.state.borrow_mut();
        state.enqueue(delivery("secret/1", b"x", QoS::AtLeastOnce));
        state.enqueue(delivery("secret/2", b"x", QoS::ExactlyOnce));
        state.enqueue(delivery("public/big", &[b'x'; 100], QoS::AtLeastOnce));
        state.enqueue(delivery("public/ok", b"x", QoS::AtLeastOnce));
        // In flight from an earlier connection (no ACL, no size limit).
        (0..4)
            .filter_map(|_| state.next_publish(now, 10)?.packet_id)
            .collect()
    };
    assert_eq!(ids.len(), 4);
    let connack = ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties: Properties::default(),
    };
    m.start(connack, now, &mut host);
    match sent(&mut m).as_slice() {
        [Packet::ConnAck(_), Packet::PubRel(rel), Packet::Publish(p)] => {
            // The client may hold the QoS 2 message from the earlier
            // connection: released, so its packet id can be used again.
            assert_eq!(rel.packet_id, ids[1]);
            assert!(p.dup && &*p.topic == "public/ok", "{p:?}");
        }
        other => panic!("expected CONNACK, PUBREL, PUBLISH; got {other:?}"),
    }
    assert_eq!(
        host.state.borrow().inflight_len(),
        2,
        "the QoS 1 flows not sent again end"
    );
    assert_eq!(
        host.journal_flushes, 1,
        "the released record goes to the disk before the PUBREL is written"
    );
}
