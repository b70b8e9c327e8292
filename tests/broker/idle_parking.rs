//! Idle connections parked in the idle table (issue 20): a plain-TCP
//! connection with nothing to do becomes a record waiting on its socket;
//! everything a connected client can meet must still reach it there —
//! deliveries of every QoS, its own packets, its keep-alive deadline, a
//! takeover, an admin kick, shutdown. Each test first waits until the
//! connection is parked (the `sluice_connections_parked` gauge), so it
//! would fail if a parked connection missed the event.

use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::*;

/// A broker that parks connections after 50 ms of idleness.
fn broker() -> Sluice {
    Sluice::start_with(&[("SLUICE__LIMITS__PARK_AFTER_IDLE_MS", "50")])
}

fn parked(s: &Sluice) -> u64 {
    let (_, body) = s.admin("GET", "/metrics", None, None);
    metric(&body, "sluice_connections_parked").unwrap_or(0.0) as u64
}

/// Waits until `n` connections are parked (polling; never a timing
/// assertion: it only fails if they are never parked).
fn wait_parked(s: &Sluice, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while parked(s) != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} parked connections, have {}",
            parked(s)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_parked_subscriber_gets_every_qos_and_its_pings_answered() {
    let s = broker();
    for v in [V4, V5] {
        let (mut sub, _) = Raw::connect(s.port, v, &format!("parked-sub-{v:?}"), true);
        sub.subscribe(1, &[("park/#", sub_opts(QoS::ExactlyOnce))]);
        wait_parked(&s, 1);
        let (mut publisher, _) = Raw::connect(s.port, v, "parked-pub", true);
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            wait_parked(&s, 2);
            publisher.publish(publish(
                "park/x",
                format!("m{i}").as_bytes(),
                qos,
                10 + i as u16,
            ));
            wait_parked(&s, 2);
            let got = sub.expect_publish();
            assert_eq!(&got.payload[..], format!("m{i}").as_bytes());
            assert_eq!(got.qos, qos);
        }
        // The PUBREL of the QoS 2 delivery, answered.
        match sub.recv() {
            Some(Packet::PubRel(a)) => sub.send(&Packet::PubComp(Ack::new(a.packet_id))),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        wait_parked(&s, 2);
        sub.send(&Packet::PingReq);
        assert_eq!(sub.recv(), Some(Packet::PingResp));
        sub.disconnect();
        publisher.disconnect();
        wait_parked(&s, 0);
    }
}

#[test]
fn an_unacknowledged_delivery_goes_on_after_the_puback_wakes_the_connection() {
    let s = broker();
    // Receive maximum 1: the second message waits for the first's PUBACK.
    let mut c = connect_v5("parked-window", true, 0);
    c.properties.receive_maximum = Some(1);
    let (mut sub, _) = Raw::connect_with(s.port, c);
    sub.subscribe(1, &[("win/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut publisher, _) = Raw::connect(s.port, V5, "window-pub", true);
    publisher.publish(publish("win/1", b"first", QoS::AtLeastOnce, 1));
    publisher.publish(publish("win/2", b"second", QoS::AtLeastOnce, 2));
    let first = sub.recv_publish();
    assert_eq!(&first.payload[..], b"first");
    sub.expect_silence(Duration::from_millis(200));
    // Both connections park while the second message waits.
    wait_parked(&s, 2);
    sub.send(&Packet::PubAck(Ack::new(
        first.packet_id.expect("QoS 1 has an id"),
    )));
    assert_eq!(&sub.recv_publish().payload[..], b"second");
}

#[test]
fn keep_alive_expires_while_parked_and_the_will_goes_out() {
    let s = broker();
    let (mut watcher, _) = Raw::connect(s.port, V4, "will-watcher", true);
    watcher.subscribe(1, &[("gone/#", sub_opts(QoS::AtLeastOnce))]);
    let mut c = connect_v5("sleepy", true, 0);
    c.keep_alive = 1;
    c.will = Some(will_msg("gone/sleepy", b"timeout", QoS::AtLeastOnce, false));
    let (mut sleepy, _) = Raw::connect_with(s.port, c);
    wait_parked(&s, 2);
    // Silent: only the idle table's deadline can end it.
    assert_eq!(
        sleepy.until_closed(),
        vec![disconnect_packet(ReasonCode::KeepAliveTimeout)]
    );
    assert_eq!(&watcher.recv_publish().payload[..], b"timeout");
}

#[test]
fn a_parked_session_is_taken_over() {
    let s = broker();
    let (mut first, _) = Raw::connect_with(s.port, connect_v5("twin", false, 600));
    first.subscribe(1, &[("twin/#", sub_opts(QoS::AtLeastOnce))]);
    wait_parked(&s, 1);
    let (mut second, ack) = Raw::connect_with(s.port, connect_v5("twin", false, 600));
    assert!(ack.session_present);
    assert_eq!(
        first.until_closed(),
        vec![disconnect_packet(ReasonCode::SessionTakenOver)]
    );
    // The session, with its subscription, serves the new connection.
    let (mut publisher, _) = Raw::connect(s.port, V4, "twin-pub", true);
    publisher.publish(publish("twin/a", b"to-second", QoS::AtLeastOnce, 1));
    assert_eq!(&second.recv_publish().payload[..], b"to-second");
}

#[test]
fn an_admin_kick_reaches_a_parked_client() {
    let s = broker();
    let (mut c, _) = Raw::connect(s.port, V5, "kick-me", true);
    wait_parked(&s, 1);
    let (status, body) = s.admin("DELETE", "/api/v1/clients/kick-me", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        c.until_closed(),
        vec![disconnect_packet(ReasonCode::AdministrativeAction)]
    );
    wait_parked(&s, 0);
}

#[test]
fn shutdown_says_goodbye_to_parked_clients() {
    let s = broker();
    let (mut c, _) = Raw::connect(s.port, V5, "parked-at-shutdown", true);
    wait_parked(&s, 1);
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        c.until_closed(),
        vec![disconnect_packet(ReasonCode::ServerShuttingDown)]
    );
}

#[test]
fn a_client_that_closes_while_parked_leaves_its_will() {
    let s = broker();
    let (mut watcher, _) = Raw::connect(s.port, V4, "close-watcher", true);
    watcher.subscribe(1, &[("closed/#", sub_opts(QoS::AtLeastOnce))]);
    let mut c = connect_packet(V4, "closer", true);
    c.will = Some(will_msg("closed/closer", b"lost", QoS::AtLeastOnce, false));
    let (closer, _) = Raw::connect_with(s.port, c);
    wait_parked(&s, 2);
    closer.drop_connection();
    assert_eq!(&watcher.recv_publish().payload[..], b"lost");
    wait_parked(&s, 1);
}

#[test]
fn parking_can_be_turned_off() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__PARK_AFTER_IDLE_MS", "0")]);
    let (mut c, _) = Raw::connect(s.port, V4, "never-parked", true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(parked(&s), 0);
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp));
}

#[test]
fn a_new_connection_that_stays_silent_parks_soon_and_a_talking_one_waits() {
    // A minute before an idle connection parks, except a new one that
    // says nothing after its CONNACK (an idle device): 100 ms.
    let s = Sluice::start_with(&[("SLUICE__LIMITS__PARK_AFTER_IDLE_MS", "60000")]);
    let (mut silent, _) = Raw::connect(s.port, V4, "silent-device", true);
    wait_parked(&s, 1);
    let (mut talker, _) = Raw::connect(s.port, V4, "talker", true);
    talker.subscribe(1, &[("talk/#", sub_opts(QoS::AtMostOnce))]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        parked(&s),
        1,
        "a client that subscribed waits the full minute"
    );
    silent.send(&Packet::PingReq);
    assert_eq!(silent.recv(), Some(Packet::PingResp));
}
