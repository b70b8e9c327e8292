//! Keep alive (3.1.2.10) and reading pauses, on simulated time.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{disconnect_reason, publish, sent, setup, Host};
use crate::codec::{encode_packet, Packet, ProtocolVersion, QoS, ReasonCode};
use crate::session::machine::{Exit, Machine, Routed};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn bytes_of(packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        encode_packet(p, V5, &mut buf).unwrap_or_else(|e| panic!("{e}"));
    }
    buf
}

#[test]
fn silence_for_one_and_a_half_intervals_closes_with_0x8d() {
    let t0 = Instant::now();
    let mut m = Machine::new(setup(V5, 10), t0);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(15)));
    assert_eq!(
        m.handle_timeout(t0 + secs(15) - Duration::from_millis(1)),
        None
    );
    assert_eq!(
        m.handle_timeout(t0 + secs(15)),
        Some(Exit::Violation(ReasonCode::KeepAliveTimeout))
    );
    assert_eq!(
        disconnect_reason(&mut m),
        Some(ReasonCode::KeepAliveTimeout)
    );
}

#[test]
fn v311_keep_alive_closes_without_disconnect() {
    let t0 = Instant::now();
    let mut m = Machine::new(setup(ProtocolVersion::V311, 4), t0);
    assert_eq!(
        m.handle_timeout(t0 + secs(6)),
        Some(Exit::Violation(ReasonCode::KeepAliveTimeout))
    );
    assert!(
        sent(&mut m).is_empty(),
        "3.1.1 has no DISCONNECT from the server"
    );
}

#[test]
fn pingreq_answers_and_resets_the_deadline() {
    let t0 = Instant::now();
    let mut host = Host::new();
    let mut m = Machine::new(setup(V5, 10), t0);
    let mut input = bytes_of(&[Packet::PingReq]);
    assert_eq!(m.receive(&mut input, t0 + secs(14), &mut host), Ok(()));
    assert_eq!(sent(&mut m), vec![Packet::PingResp]);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(29)));
    assert_eq!(m.handle_timeout(t0 + secs(20)), None);
    assert!(m.handle_timeout(t0 + secs(29)).is_some());
}

#[test]
fn a_partial_packet_counts_as_activity() {
    let t0 = Instant::now();
    let mut host = Host::new();
    let mut m = Machine::new(setup(V5, 10), t0);
    let mut input = bytes_of(&[Packet::PingReq]);
    let mut first = input.split_to(1);
    assert_eq!(m.receive(&mut first, t0 + secs(10), &mut host), Ok(()));
    assert!(sent(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), Some(t0 + secs(25)));
}

#[test]
fn zero_turns_keep_alive_off() {
    let t0 = Instant::now();
    let mut m = Machine::new(setup(V5, 0), t0);
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.handle_timeout(t0 + secs(1_000_000)), None);
}

#[test]
fn over_the_publish_rate_reading_pauses_until_the_bucket_refills() {
    let t0 = Instant::now();
    let mut host = Host::new();
    let mut s = setup(V5, 0);
    s.rate_messages = 1;
    let mut m = Machine::new(s, t0);
    let p = Packet::Publish(publish("a", QoS::AtMostOnce, None));
    let mut input = bytes_of(&[p.clone(), p.clone(), p]);
    assert_eq!(m.receive(&mut input, t0, &mut host), Ok(()));
    // One second of burst (one message), the second goes over: the third
    // waits in the buffer.
    assert_eq!(host.routed.len(), 2);
    assert!(m.is_paused());
    assert!(!input.is_empty());
    assert_eq!(m.poll_timeout(), Some(t0 + secs(1)));
    assert_eq!(m.handle_timeout(t0 + Duration::from_millis(999)), None);
    assert!(m.is_paused());
    assert_eq!(m.handle_timeout(t0 + secs(1)), None);
    assert!(!m.is_paused());
    assert_eq!(m.process(&mut input, t0 + secs(1), &mut host), Ok(()));
    assert_eq!(host.routed.len(), 3);
}

#[test]
fn a_saturated_subscriber_pauses_reading_briefly() {
    let t0 = Instant::now();
    let mut host = Host::new();
    host.answer = Routed {
        matched: 1,
        saturated: true,
        refused: false,
    };
    let mut m = Machine::new(setup(ProtocolVersion::V311, 60), t0);
    let p = Packet::Publish(publish("a", QoS::AtLeastOnce, Some(1)));
    assert_eq!(m.handle(p, t0, &mut host), Ok(()));
    assert!(m.is_paused());
    // The pause ends before the keep alive would.
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_millis(100)));
}
