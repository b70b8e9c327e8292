use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::session::message::Message;
use crate::session::{QueueFullPolicy, QueuedBytes};

pub(super) fn delivery(topic: &str, qos: QoS, expires_at: Option<Instant>) -> Delivery {
    Delivery {
        message: Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: None,
            expires_at,
            publisher: None,
            username: None,
            accepted_ms: 0,
            stored: None,
        }),
        qos,
        retain: false,
        subscription_ids: vec![],
        seq: None,
        sink_ack: None,
        shared_group: None,
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn qos1_flow_completes_on_puback() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(delivery("a", QoS::AtLeastOnce, None));
    let p = s.next_publish(now, 10).unwrap();
    assert_eq!(p.packet_id, Some(pid(1)));
    assert_eq!(s.inflight_len(), 1);
    assert!(!s.on_puback(pid(2)));
    assert!(s.on_puback(pid(1)));
    assert_eq!(s.inflight_len(), 0);
    assert!(!s.on_puback(pid(1)), "a second PUBACK matches nothing");
}

#[test]
fn qos2_flow_goes_through_pubrec_pubrel_pubcomp() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(delivery("a", QoS::ExactlyOnce, None));
    let p = s.next_publish(now, 10).unwrap();
    let id = p.packet_id.unwrap();
    assert!(!s.on_pubcomp(id), "PUBCOMP before PUBREC is ignored");
    assert_eq!(s.on_pubrec(id, ReasonCode::Success), Some(Ack::new(id)));
    assert!(s.on_pubcomp(id));
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn pubrec_with_error_reason_ends_the_flow() {
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(delivery("a", QoS::ExactlyOnce, None));
    let id = s
        .next_publish(Instant::now(), 10)
        .unwrap()
        .packet_id
        .unwrap();
    assert_eq!(s.on_pubrec(id, ReasonCode::QuotaExceeded), None);
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn window_limits_inflight_but_not_qos0() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(delivery("a", QoS::AtLeastOnce, None));
    s.enqueue(delivery("b", QoS::AtLeastOnce, None));
    assert!(s.next_publish(now, 1).is_some());
    assert!(s.next_publish(now, 1).is_none(), "window full");
    assert!(s.on_puback(pid(1)));
    assert_eq!(&*s.next_publish(now, 1).unwrap().topic, "b");
    s.enqueue(delivery("c", QoS::AtMostOnce, None));
    assert_eq!(
        &*s.next_publish(now, 1).unwrap().topic,
        "c",
        "QoS 0 ignores the window"
    );
}

#[test]
fn resend_sets_dup_and_keeps_order_and_pubrel_state() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    for t in ["a", "b", "c"] {
        s.enqueue(delivery(t, QoS::ExactlyOnce, None));
    }
    let ids: Vec<PacketId> = (0..3)
        .map(|_| s.next_publish(now, 10).unwrap().packet_id.unwrap())
        .collect();
    s.on_pubrec(ids[1], ReasonCode::Success);
    let again = s.resend(now, &|_| true);
    assert_eq!(again.len(), 3);
    match &again[0] {
        Packet::Publish(p) => {
            assert!(p.dup);
            assert_eq!(&*p.topic, "a");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(again[1], Packet::PubRel(Ack::new(ids[1])));
}

#[test]
fn incoming_qos2_is_routed_once_until_pubrel() {
    let mut s = SessionState::new(QueueLimits::default());
    assert_eq!(s.on_incoming_qos2(pid(5), 10), Ok(true));
    assert_eq!(
        s.on_incoming_qos2(pid(5), 10),
        Ok(false),
        "duplicate not routed again"
    );
    assert_eq!(s.on_pubrel(pid(5)), Ack::new(pid(5)));
    assert_eq!(
        s.on_pubrel(pid(5)).reason,
        ReasonCode::PacketIdentifierNotFound
    );
    assert_eq!(
        s.on_incoming_qos2(pid(5), 10),
        Ok(true),
        "id reusable after PUBCOMP"
    );
}

#[test]
fn receive_maximum_is_enforced_on_incoming_qos2() {
    let mut s = SessionState::new(QueueLimits::default());
    assert_eq!(s.on_incoming_qos2(pid(1), 2), Ok(true));
    assert_eq!(s.on_incoming_qos2(pid(2), 2), Ok(true));
    assert_eq!(
        s.on_incoming_qos2(pid(3), 2),
        Err(FlowError::ReceiveMaximumExceeded)
    );
}

#[test]
fn expired_messages_are_dropped_and_expiry_is_decremented() {
    let t0 = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(delivery(
        "old",
        QoS::AtLeastOnce,
        Some(t0 + Duration::from_secs(1)),
    ));
    s.enqueue(delivery(
        "new",
        QoS::AtLeastOnce,
        Some(t0 + Duration::from_secs(60)),
    ));
    let p = s.next_publish(t0 + Duration::from_secs(20), 10).unwrap();
    assert_eq!(&*p.topic, "new");
    assert_eq!(p.properties.message_expiry_interval, Some(40));
    assert_eq!(s.expired, 1);
}

/// The global budget drops the new delivery whatever the policy, and
/// gets back what is sent and what an ending session held.
#[test]
fn global_queue_budget_is_shared_and_given_back() {
    let budget = Arc::new(QueuedBytes::new(8));
    let limits = QueueLimits {
        global: Some(Arc::clone(&budget)),
        ..QueueLimits::default()
    };
    let mut a = SessionState::new(limits.clone());
    let mut b = SessionState::new(limits);
    // Each delivery is charged topic + payload: 1 + 1 bytes.
    for _ in 0..3 {
        assert_eq!(
            a.enqueue(delivery("t", QoS::AtLeastOnce, None)),
            Enqueued::Queued
        );
    }
    assert_eq!(
        b.enqueue(delivery("t", QoS::AtLeastOnce, None)),
        Enqueued::Queued
    );
    assert_eq!(
        b.enqueue(delivery("t", QoS::AtLeastOnce, None)),
        Enqueued::DroppedNew
    );
    assert_eq!((budget.used(), budget.refused(), b.dropped), (8, 1, 1));
    assert!(a.next_publish(Instant::now(), 10).is_some());
    assert_eq!(budget.used(), 6);
    drop(a);
    assert_eq!(budget.used(), 2);
}

#[test]
fn queue_limit_drops_by_policy() {
    let limits = QueueLimits {
        max_messages: 2,
        max_bytes: usize::MAX,
        policy: QueueFullPolicy::DropOldest,
        global: None,
    };
    let mut s = SessionState::new(limits.clone());
    s.enqueue(delivery("1", QoS::AtLeastOnce, None));
    s.enqueue(delivery("2", QoS::AtLeastOnce, None));
    assert_eq!(
        s.enqueue(delivery("3", QoS::AtLeastOnce, None)),
        Enqueued::DroppedOldest
    );
    assert_eq!(&*s.next_publish(Instant::now(), 10).unwrap().topic, "2");

    let limits = QueueLimits {
        policy: QueueFullPolicy::DropNewest,
        ..limits
    };
    let mut s = SessionState::new(limits);
    s.enqueue(delivery("1", QoS::AtLeastOnce, None));
    s.enqueue(delivery("2", QoS::AtLeastOnce, None));
    assert_eq!(
        s.enqueue(delivery("3", QoS::AtLeastOnce, None)),
        Enqueued::DroppedNew
    );
    assert_eq!(s.dropped, 1);
    assert_eq!(&*s.next_publish(Instant::now(), 10).unwrap().topic, "1");
}

#[test]
fn push_back_holds_publishers_for_a_full_persistent_queue() {
    let limits = QueueLimits {
        max_messages: 4,
        max_bytes: usize::MAX,
        policy: QueueFullPolicy::PushBack,
        global: None,
    };
    let mut s = SessionState::new(limits.clone());
    s.set_persistent(true);
    for t in ["1", "2", "3"] {
        s.enqueue(delivery(t, QoS::AtLeastOnce, None));
        assert!(!s.wants_push_back(), "room left after {t}");
    }
    s.enqueue(delivery("4", QoS::AtLeastOnce, None));
    assert!(s.wants_push_back());
    // What still arrives is refused, never an older message dropped.
    assert_eq!(
        s.enqueue(delivery("5", QoS::AtLeastOnce, None)),
        Enqueued::DroppedNew
    );
    assert!(!s.push_back_may_end());
    assert_eq!(&*s.next_publish(Instant::now(), 10).unwrap().topic, "1");
    assert!(s.push_back_may_end(), "three of four: publishers may go on");

    // Without a session that outlives the connection, nobody waits.
    let mut clean = SessionState::new(limits);
    for t in ["1", "2", "3", "4"] {
        clean.enqueue(delivery(t, QoS::AtLeastOnce, None));
    }
    assert!(!clean.wants_push_back());
    assert_eq!(
        clean.enqueue(delivery("5", QoS::AtLeastOnce, None)),
        Enqueued::DroppedOldest
    );
}

/// A bridge's queue: QoS 1/2 deliveries are kept past the limits and the
/// global budget whatever the policy, and the limits push back instead; a
/// QoS 0 delivery may still go, but never pushes a QoS 1/2 one out.
#[test]
fn a_lossless_queue_keeps_qos_1_and_2_and_pushes_back() {
    let budget = Arc::new(QueuedBytes::new(4));
    let limits = QueueLimits {
        max_messages: 2,
        max_bytes: usize::MAX,
        policy: QueueFullPolicy::DropOldest,
        global: Some(Arc::clone(&budget)),
    };
    let mut s = SessionState::new(limits);
    s.set_lossless(true);
    s.enqueue(delivery("0", QoS::AtMostOnce, None));
    for t in ["1", "2", "3", "4"] {
        assert_eq!(
            s.enqueue(delivery(t, QoS::AtLeastOnce, None)),
            Enqueued::Queued,
            "{t}"
        );
    }
    assert_eq!((s.queued_len(), s.dropped), (5, 0));
    assert!(s.wants_push_back(), "not persistent, not push_back: still");
    assert_eq!(budget.used(), 10, "charged past the budget");
    // A QoS 0 delivery: the oldest QoS 0 one goes, then it finds only
    // deliveries that may not go ahead, and goes too.
    assert_eq!(
        s.enqueue(delivery("5", QoS::AtMostOnce, None)),
        Enqueued::DroppedNew
    );
    let now = Instant::now();
    let sent: Vec<String> = std::iter::from_fn(|| s.next_publish(now, 10))
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(sent, ["1", "2", "3", "4"]);
    assert!(s.push_back_may_end());
    assert_eq!((budget.used(), s.dropped), (0, 2));
}

#[test]
fn packet_ids_skip_those_in_flight_and_wrap() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.next_packet_id = u16::MAX;
    s.enqueue(delivery("a", QoS::AtLeastOnce, None));
    s.enqueue(delivery("b", QoS::AtLeastOnce, None));
    assert_eq!(
        s.next_publish(now, 10).unwrap().packet_id,
        Some(pid(u16::MAX))
    );
    assert_eq!(s.next_publish(now, 10).unwrap().packet_id, Some(pid(1)));
}

fn stored_delivery(topic: &str, qos: QoS, seq: u64) -> Delivery {
    struct Forget;
    impl crate::session::MessageRelease for Forget {
        fn release(&self, _id: u64) {}
    }
    let mut d = delivery(topic, qos, None);
    let mut m = (*d.message).clone();
    m.stored = Some(Arc::new(crate::session::StoredMessage::new(
        seq * 10,
        Arc::new(Forget),
    )));
    d.message = Arc::new(m);
    d.seq = Some(seq);
    d
}

#[test]
fn journal_records_outbox_changes_and_when_to_wait() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.set_persistent(true);
    s.enqueue(stored_delivery("one", QoS::AtLeastOnce, 1));
    s.enqueue(stored_delivery("two", QoS::ExactlyOnce, 2));
    let p1 = s.next_publish(now, 10).unwrap().packet_id.unwrap();
    let (j, wait) = s.take_journal();
    assert!(!wait, "QoS 1 sends need not wait for the disk");
    assert!(
        j.is_empty(),
        "a QoS 1 send is not recorded: it is simply resent after a restart"
    );
    let p2 = s.next_publish(now, 10).unwrap().packet_id.unwrap();
    let (_, wait) = s.take_journal();
    assert!(wait, "a QoS 2 packet id must be durable before it is sent");
    s.on_puback(p1);
    assert_eq!(
        s.take_journal().0,
        vec![Change::Outbox {
            seq: 1,
            record: None
        }]
    );
    s.on_pubrec(p2, ReasonCode::Success);
    let (j, wait) = s.take_journal();
    assert!(wait);
    assert!(
        matches!(&j[..], [Change::Outbox { seq: 2, record: Some(r) }] if r.state == OutboxState::Released)
    );
    s.on_pubcomp(p2);
    assert_eq!(
        s.take_journal().0,
        vec![Change::Outbox {
            seq: 2,
            record: None
        }]
    );
    assert_eq!(s.on_incoming_qos2(pid(4), 10), Ok(true));
    assert_eq!(
        s.take_journal(),
        (
            vec![Change::Incoming {
                packet_id: 4,
                present: true
            }],
            true
        )
    );
}

#[test]
fn non_persistent_deliveries_journal_nothing() {
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(delivery("a", QoS::ExactlyOnce, None));
    s.next_publish(Instant::now(), 10);
    s.on_incoming_qos2(pid(1), 10).unwrap();
    assert_eq!(s.take_journal(), (vec![], false));
}

#[test]
fn restore_puts_each_state_where_it_belongs() {
    let now = Instant::now();
    let restored = vec![
        RestoredDelivery {
            delivery: stored_delivery("released", QoS::ExactlyOnce, 1),
            state: OutboxState::Released,
            packet_id: 5,
        },
        RestoredDelivery {
            delivery: stored_delivery("sent", QoS::AtLeastOnce, 2),
            state: OutboxState::Sent,
            packet_id: 6,
        },
        RestoredDelivery {
            delivery: stored_delivery("queued", QoS::AtLeastOnce, 3),
            state: OutboxState::Queued,
            packet_id: 0,
        },
    ];
    let mut s = SessionState::restore(QueueLimits::default(), restored, vec![9]);
    let again = s.resend(now, &|_| true);
    assert_eq!(again[0], Packet::PubRel(Ack::new(pid(5))));
    assert!(matches!(&again[1], Packet::Publish(p) if p.dup && p.packet_id == Some(pid(6))));
    let next = s.next_publish(now, 10).unwrap();
    assert_eq!(&*next.topic, "queued");
    assert_ne!(next.packet_id, Some(pid(5)));
    assert_ne!(next.packet_id, Some(pid(6)));
    assert_eq!(
        s.on_incoming_qos2(pid(9), 10),
        Ok(false),
        "incoming id remembered"
    );
}

/// Counts its firings (a cluster feed acknowledges the stream's copy when
/// the client acknowledged the delivery).
#[derive(Debug, Default)]
struct Fired(std::sync::atomic::AtomicUsize);

impl SinkAck for Fired {
    fn fire(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn watched(topic: &str, qos: QoS, expires_at: Option<Instant>) -> (Delivery, Arc<Fired>) {
    let fired = Arc::new(Fired::default());
    let mut d = delivery(topic, qos, expires_at);
    d.sink_ack = Some(Arc::clone(&fired) as Arc<dyn SinkAck>);
    (d, fired)
}

fn count(f: &Fired) -> usize {
    f.0.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_delivery_is_settled_when_the_client_acknowledges_it_not_when_it_is_sent() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    let (one, one_fired) = watched("a", QoS::AtLeastOnce, None);
    let (two, two_fired) = watched("b", QoS::ExactlyOnce, None);
    s.enqueue(one);
    s.enqueue(two);
    let p1 = s.next_publish(now, 10).unwrap().packet_id.unwrap();
    let p2 = s.next_publish(now, 10).unwrap().packet_id.unwrap();
    assert_eq!(
        (count(&one_fired), count(&two_fired)),
        (0, 0),
        "sent is not settled"
    );
    assert!(s.on_puback(p1));
    assert_eq!(count(&one_fired), 1);
    s.on_pubrec(p2, ReasonCode::Success);
    assert_eq!(count(&two_fired), 0, "PUBREC leaves the flow open");
    assert!(s.on_pubcomp(p2));
    assert_eq!(count(&two_fired), 1);
}

#[test]
fn an_expired_delivery_is_settled_and_a_dropped_one_is_not() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits {
        max_messages: 1,
        ..QueueLimits::default()
    });
    let (old, old_fired) = watched("a", QoS::AtLeastOnce, Some(now));
    s.enqueue(old);
    let (new, new_fired) = watched("b", QoS::AtLeastOnce, None);
    s.enqueue(new);
    assert_eq!(
        count(&old_fired),
        0,
        "dropped from a full queue: offered again later"
    );
    assert!(s.next_publish(now + Duration::from_secs(1), 10).is_some());
    assert_eq!(count(&new_fired), 0);

    let (gone, gone_fired) = watched("c", QoS::AtLeastOnce, Some(now));
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(gone);
    assert!(s.next_publish(now + Duration::from_secs(1), 10).is_none());
    assert_eq!(count(&gone_fired), 1, "expired: settled");
}

#[test]
fn a_flow_too_large_for_the_client_now_completes_instead_of_being_sent_again() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    let (one, one_fired) = watched("big/1", QoS::AtLeastOnce, None);
    let (two, two_fired) = watched("big/2", QoS::ExactlyOnce, None);
    s.enqueue(one);
    s.enqueue(two);
    s.enqueue(delivery("small", QoS::AtLeastOnce, None));
    let ids: Vec<PacketId> = (0..3)
        .map(|_| s.next_publish(now, 10).unwrap().packet_id.unwrap())
        .collect();
    // The client reconnects with a smaller Maximum Packet Size.
    let fits = |p: &Packet| !matches!(p, Packet::Publish(p) if p.topic.starts_with("big"));
    let again = s.resend(now, &fits);
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(
        again[0],
        Packet::PubRel(Ack::new(ids[1])),
        "QoS 2: released"
    );
    assert!(matches!(&again[1], Packet::Publish(p) if p.dup && p.packet_id == Some(ids[2])));
    assert_eq!(count(&one_fired), 1, "QoS 1: completed as if sent");
    assert_eq!(count(&two_fired), 0, "QoS 2: waits for PUBCOMP");
    assert_eq!(s.inflight_len(), 2, "the QoS 1 flow holds no window slot");
    assert!(s.on_pubcomp(ids[1]));
    assert_eq!(count(&two_fired), 1);
    assert_eq!(
        s.resend(now, &fits).len(),
        1,
        "next time only the one that fits"
    );
}
