//! The QoS 2 flows a cluster records of a session it feeds, and how a
//! resumed session goes on with them.

use std::sync::Arc;
use std::time::Instant;

use super::*;

/// A cluster feed's acknowledgement of the stream's copy at `position`.
#[derive(Debug)]
struct FromStream(u64);

impl SinkAck for FromStream {
    fn fire(&self) {}

    fn position(&self) -> Option<u64> {
        Some(self.0)
    }
}

fn fed(topic: &str, qos: QoS, position: u64) -> Delivery {
    let mut d = super::tests::delivery(topic, qos, None);
    d.sink_ack = Some(Arc::new(FromStream(position)));
    d
}

fn kept() -> SessionState {
    let mut s = SessionState::new(QueueLimits::default());
    s.keep_flows();
    s
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn out(position: u64, packet_id: u16, released: bool) -> OutgoingFlow {
    OutgoingFlow {
        position,
        packet_id,
        released,
    }
}

#[test]
fn each_step_of_a_qos2_flow_changes_the_record_before_the_client_sees_it() {
    let now = Instant::now();
    let mut s = kept();
    s.enqueue(fed("one", QoS::ExactlyOnce, 40));
    s.enqueue(fed("q1", QoS::AtLeastOnce, 41));
    assert_eq!(s.take_changed_flows(), None, "queued is not sent");
    let p = s.next_publish(now, 10).unwrap().packet_id.unwrap();
    let sent = s.take_changed_flows().expect("sent under an id");
    assert_eq!(sent.outgoing, [out(40, p.get(), false)]);
    s.next_publish(now, 10).unwrap();
    assert_eq!(s.take_changed_flows(), None, "QoS 1 has no such flow");
    s.on_pubrec(p, ReasonCode::Success);
    let released = s.take_changed_flows().expect("released");
    assert_eq!(released.outgoing, [out(40, p.get(), true)]);
    s.on_pubcomp(p);
    assert_eq!(
        s.take_changed_flows(),
        None,
        "a completed flow stays in the record until the next change"
    );
    assert!(s.flows().outgoing.is_empty());

    assert_eq!(s.on_incoming_qos2(id(7), 10), Ok(true));
    assert_eq!(s.take_changed_flows().unwrap().incoming, [7]);
    s.on_pubrel(id(7));
    assert!(s.take_changed_flows().unwrap().is_empty());
}

#[test]
fn a_session_not_kept_has_no_record() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.enqueue(fed("one", QoS::ExactlyOnce, 40));
    s.next_publish(now, 10).unwrap();
    assert_eq!(s.on_incoming_qos2(id(7), 10), Ok(true));
    assert_eq!(s.take_changed_flows(), None);
}

#[test]
fn a_resumed_session_goes_on_with_each_flow_under_its_packet_id() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.resume_flows(Flows {
        outgoing: vec![out(40, 1, false), out(41, 2, true)],
        incoming: vec![9],
    });
    // A repeat of the client's id 9 is not routed again.
    assert_eq!(s.on_incoming_qos2(id(9), 10), Ok(false));
    // A new message meanwhile takes neither promised id.
    s.enqueue(fed("new", QoS::ExactlyOnce, 50));
    let fresh = s.next_publish(now, 10).unwrap();
    assert_eq!(fresh.packet_id, Some(id(3)));
    // The flows' messages come again from the stream.
    s.enqueue(fed("released", QoS::ExactlyOnce, 41));
    s.enqueue(fed("sent", QoS::AtLeastOnce, 40));
    assert_eq!(s.queued_len(), 0, "a resumed flow is not queued again");
    let resent = s.take_resends(now, &|_| true);
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[0], Packet::PubRel(Ack::new(id(2))));
    let Packet::Publish(p) = &resent[1] else {
        panic!("expected the PUBLISH again: {resent:?}");
    };
    assert_eq!(
        (p.packet_id, p.dup, p.qos),
        (Some(id(1)), true, QoS::ExactlyOnce)
    );
    assert_eq!(&p.topic[..], "sent");
    assert!(s.take_resends(now, &|_| true).is_empty(), "sent once");
    // They go on as any flow, and stay in the record meanwhile.
    let mut record = s.flows().outgoing;
    record.sort_by_key(|f| f.position);
    assert_eq!(
        record,
        [out(40, 1, false), out(41, 2, true), out(50, 3, false)]
    );
    assert_eq!(
        s.on_pubrec(id(1), ReasonCode::Success),
        Some(Ack::new(id(1)))
    );
    assert!(s.on_pubcomp(id(1)));
    assert!(s.on_pubcomp(id(2)));
}

#[test]
fn resumed_flows_the_stream_is_done_with_free_their_packet_ids() {
    let now = Instant::now();
    let mut s = kept();
    s.resume_flows(Flows {
        outgoing: vec![out(40, 1, true), out(45, 2, false)],
        incoming: vec![],
    });
    assert!(s.awaits(40) && s.awaits(45));
    s.forget_awaiting_through(44);
    assert!(!s.awaits(40), "acknowledged in the stream: done with");
    assert!(s.awaits_any());
    assert_eq!(
        s.take_changed_flows().unwrap().outgoing,
        [out(45, 2, false)]
    );
    s.enqueue(fed("new", QoS::ExactlyOnce, 50));
    assert_eq!(s.next_publish(now, 10).unwrap().packet_id, Some(id(1)));
    s.forget_awaiting_through(45);
    assert!(!s.awaits_any());
}

#[test]
fn a_qos2_flow_not_from_the_stream_is_recorded_and_resumed_as_released() {
    let now = Instant::now();
    let mut s = kept();
    // A retained message sent on SUBSCRIBE: not in the stream.
    s.enqueue(super::tests::delivery("retained", QoS::ExactlyOnce, None));
    let p = s.next_publish(now, 10).unwrap().packet_id.unwrap();
    assert_eq!(
        s.take_changed_flows().unwrap().outgoing,
        [out(0, p.get(), false)]
    );

    // Resumed: its packet id is released at once, never reused meanwhile.
    let mut resumed = SessionState::new(QueueLimits::default());
    resumed.resume_flows(s.flows());
    assert_eq!(
        resumed.resend(now, &|_| true),
        [Packet::PubRel(Ack::new(p))]
    );
    resumed.enqueue(fed("new", QoS::ExactlyOnce, 60));
    assert_ne!(resumed.next_publish(now, 10).unwrap().packet_id, Some(p));
    assert!(resumed.on_pubcomp(p));
}

#[test]
fn flows_awaiting_their_messages_count_in_the_receive_maximum() {
    let now = Instant::now();
    let mut s = SessionState::new(QueueLimits::default());
    s.resume_flows(Flows {
        outgoing: vec![out(40, 1, false), out(41, 2, false)],
        incoming: vec![],
    });
    s.enqueue(fed("new", QoS::ExactlyOnce, 50));
    assert!(
        s.next_publish(now, 2).is_none(),
        "window full of resumed flows"
    );
    s.enqueue(fed("sent", QoS::ExactlyOnce, 40));
    s.take_resends(now, &|_| true);
    assert!(s.next_publish(now, 2).is_none(), "still two flows");
    assert!(s.on_pubrec(id(1), ReasonCode::Success).is_some());
    assert!(s.on_pubcomp(id(1)));
    // One flow in flight, one awaited (its id 2 held back): room for one.
    assert_eq!(s.next_publish(now, 2).unwrap().packet_id, Some(id(1)));
}
