//! How the broker ends connections of clients that are still sending: the
//! DISCONNECT (v5) or refusing CONNACK must reach the client, followed by
//! an orderly end of stream, not a TCP reset (which makes clients report
//! "connection reset" instead of the reason). Also the v5 Reason Strings
//! that say why (3.1.2.11.7: only when the client asks for problem
//! information, and within its Maximum Packet Size).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice::codec::*;

use crate::harness::*;

/// Bytes sent right after the packet that ends the connection, in the
/// same write: the broker stops reading at that packet, so these are
/// unread input when it closes.
const TRAILING: usize = 64 * 1024;

/// How a connection ended for the client.
#[derive(Debug)]
struct Ending {
    /// Every packet read, in order.
    packets: Vec<Packet>,
    /// `None`: an orderly end of stream; else the read error.
    read_error: Option<ErrorKind>,
    /// The first write error while the client kept sending.
    write_error: Option<ErrorKind>,
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_packet(p, V5, &mut buf).expect("encode");
    buf.to_vec()
}

/// QoS 0 PUBLISH packets, `len` bytes or a little more.
fn filler(len: usize) -> Vec<u8> {
    let one = encode(&Packet::Publish(publish(
        "fill",
        &[7u8; 200],
        QoS::AtMostOnce,
        0,
    )));
    let mut out = Vec::with_capacity(len + one.len());
    while out.len() < len {
        out.extend_from_slice(&one);
    }
    out
}

/// Sends `opening` (then, unless `connect` is None, expects a successful
/// CONNACK first), then `provoke` followed by [`TRAILING`] bytes in one
/// write, and keeps sending a PUBLISH every few milliseconds, reading all
/// the while. When a DISCONNECT or a refusing CONNACK arrives the client
/// stops sending and half-closes, as a client does that read why.
fn provoke_while_sending(port: u16, connect: Option<Connect>, provoke: Vec<u8>) -> Ending {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to sluice");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = BytesMut::new();
    if let Some(c) = connect {
        stream
            .write_all(&encode(&Packet::Connect(Box::new(c))))
            .expect("send CONNECT");
        match read_packet(&mut stream, &mut buf) {
            Ok(Some(Packet::ConnAck(a))) if a.code == ReasonCode::Success => {}
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = stream.try_clone().expect("clone");
    let writing = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut first = provoke;
            first.extend(filler(TRAILING));
            writer.write_all(&first).map_err(|e| e.kind())?;
            let more = filler(1);
            while !stop.load(Ordering::Acquire) {
                writer.write_all(&more).map_err(|e| e.kind())?;
                thread::sleep(Duration::from_millis(5));
            }
            // Half-closed here, after the last write (a write after it
            // would fail with EPIPE on our side).
            let _ = writer.shutdown(Shutdown::Write);
            Ok::<(), ErrorKind>(())
        })
    };
    let mut packets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let read_error = loop {
        assert!(Instant::now() < deadline, "not closed; got {packets:?}");
        match read_packet(&mut stream, &mut buf) {
            Ok(Some(p)) => {
                let last = matches!(&p, Packet::Disconnect(_))
                    || matches!(&p, Packet::ConnAck(a) if a.code != ReasonCode::Success);
                packets.push(p);
                if last {
                    stop.store(true, Ordering::Release);
                }
            }
            Ok(None) => break None,
            Err(kind) => break Some(kind),
        }
    };
    stop.store(true, Ordering::Release);
    let write_error = writing.join().expect("writer thread").err();
    Ending {
        packets,
        read_error,
        write_error,
    }
}

/// The next packet; `Ok(None)` at end of stream.
fn read_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Option<Packet>, ErrorKind> {
    loop {
        if let Some(p) = decode_packet(buf, Some(V5), usize::MAX).expect("broker sent a bad packet")
        {
            return Ok(Some(p));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.kind()),
        }
    }
}

/// The connection ended in order after `last`, which came last.
fn assert_said_why(ending: &Ending, last: impl Fn(&Packet) -> bool) {
    assert!(
        ending.packets.last().is_some_and(last),
        "the reason did not arrive: {ending:?}"
    );
    assert_eq!(
        ending.read_error, None,
        "reset instead of closed: {ending:?}"
    );
    assert_eq!(ending.write_error, None, "reset while sending: {ending:?}");
}

fn qos2(id: u16) -> Vec<u8> {
    encode(&Packet::Publish(publish("q2", b"x", QoS::ExactlyOnce, id)))
}

fn disconnect_reason(p: &Packet) -> Option<(ReasonCode, Option<&str>)> {
    match p {
        Packet::Disconnect(d) => Some((d.reason, d.properties.reason_string.as_deref())),
        _ => None,
    }
}

/// A v5 CONNECT with the given Request Problem Information and Maximum
/// Packet Size properties (`None`: absent).
fn v5_connect(client_id: &str, problem_info: Option<u8>, max_packet: Option<u32>) -> Connect {
    let mut c = connect_v5(client_id, true, 0);
    c.properties.request_problem_information = problem_info;
    c.properties.maximum_packet_size = max_packet;
    c
}

/// Floods past a receive maximum of 2; the DISCONNECT's Reason String.
fn receive_maximum_exceeded(connect: Connect) -> Option<String> {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__RECEIVE_MAXIMUM", "2")]);
    let provoke = [qos2(1), qos2(2), qos2(3)].concat();
    let ending = provoke_while_sending(s.port, Some(connect), provoke);
    assert_said_why(&ending, |p| {
        disconnect_reason(p).is_some_and(|(r, _)| r == ReasonCode::ReceiveMaximumExceeded)
    });
    let why = ending.packets.last().and_then(disconnect_reason);
    why.and_then(|(_, text)| text.map(str::to_owned))
}

#[test]
fn a_client_flooding_past_the_receive_maximum_reads_disconnect_0x93() {
    let why = receive_maximum_exceeded(v5_connect("flood-rm", None, None));
    assert!(
        why.as_deref()
            .is_some_and(|t| t.contains("receive maximum")),
        "{why:?}"
    );
}

#[test]
fn no_reason_string_for_a_client_that_declines_problem_information() {
    assert_eq!(
        receive_maximum_exceeded(v5_connect("rm-quiet", Some(0), None)),
        None
    );
}

#[test]
fn no_reason_string_where_it_would_exceed_the_client_maximum_packet_size() {
    // Room for the CONNACK and a bare DISCONNECT, not for the words.
    assert_eq!(
        receive_maximum_exceeded(v5_connect("rm-small", Some(1), Some(32))),
        None
    );
}

/// The CONNACK refusing a client id reserved for bridges.
fn refusal(problem_info: Option<u8>) -> ConnAck {
    let s = Sluice::start();
    let mut raw = Raw::open(s.port, V5);
    raw.send(&Packet::Connect(Box::new(v5_connect(
        "$bridge/not-a-bridge",
        problem_info,
        None,
    ))));
    match raw.recv() {
        Some(Packet::ConnAck(a)) if a.code == ReasonCode::ClientIdentifierNotValid => a,
        other => panic!("expected CONNACK 0x85, got {other:?}"),
    }
}

#[test]
fn a_v5_refusal_says_why_in_a_reason_string() {
    let why = refusal(None).properties.reason_string;
    assert_eq!(why.as_deref(), Some("client identifier not allowed"));
    assert_eq!(refusal(Some(0)).properties.reason_string, None);
}

#[test]
fn a_malformed_packet_followed_by_more_data_gets_disconnect_0x81() {
    let s = Sluice::start();
    // PUBLISH with QoS 3: "t", packet id 1, no properties.
    let provoke = vec![0x36, 6, 0, 1, b't', 0, 1, 0];
    let ending = provoke_while_sending(s.port, Some(connect_v5("flood-bad", true, 0)), provoke);
    assert_said_why(&ending, |p| {
        disconnect_reason(p).is_some_and(|(r, _)| r == ReasonCode::MalformedPacket)
    });
}

#[test]
fn a_refused_connect_followed_by_more_data_gets_its_connack() {
    let s = Sluice::start();
    let refused = connect_packet(V5, "$bridge/not-a-bridge", true);
    let provoke = encode(&Packet::Connect(Box::new(refused)));
    let ending = provoke_while_sending(s.port, None, provoke);
    assert_said_why(
        &ending,
        |p| matches!(p, Packet::ConnAck(a) if a.code == ReasonCode::ClientIdentifierNotValid),
    );
}

#[test]
fn a_client_kicked_while_sending_reads_disconnect_0x98() {
    // Over its publish rate the client's input waits unread in the socket
    // when the kick comes.
    let s = Sluice::start_with(&[("SLUICE__LIMITS__PUBLISH_RATE_MESSAGES", "10")]);
    let port = s.port;
    let sending = thread::spawn(move || {
        // A PUBLISH still on its way when the kick comes: its PUBACK may
        // precede the DISCONNECT.
        let provoke = encode(&Packet::Publish(publish("k", b"x", QoS::AtLeastOnce, 1)));
        provoke_while_sending(port, Some(connect_v5("kicked", true, 0)), provoke)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = s.admin("DELETE", "/api/v1/clients/kicked", None, None);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "kick failed: {status} {body}");
        thread::sleep(Duration::from_millis(20));
    }
    let ending = sending.join().expect("client thread");
    assert_said_why(&ending, |p| {
        disconnect_reason(p).is_some_and(|(r, _)| r == ReasonCode::AdministrativeAction)
    });
}

/// A masked WebSocket frame (clients must mask), payload under 126 bytes.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The next frame from the server (unmasked): opcode and payload.
fn ws_read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l)?;
            usize::from(u16::from_be_bytes(l))
        }
        127 => panic!("unexpected huge frame"),
        n => usize::from(n),
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p)?;
    Ok((h[0] & 0x0f, p))
}

#[test]
fn over_websocket_the_disconnect_is_followed_by_a_close_frame_not_a_reset() {
    let s = Sluice::start_config(
        "[limits]\nreceive_maximum = 2\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n",
    );
    let mut ws = TcpStream::connect(("127.0.0.1", s.port_of("ws"))).expect("connect");
    ws.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ws.write_all(
        b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .expect("upgrade");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(ws.read(&mut b).expect("upgrade answer"), 1);
        head.push(b[0]);
    }
    let connect = encode(&Packet::Connect(Box::new(connect_v5("ws-flood", true, 0))));
    ws.write_all(&ws_frame(2, &connect)).expect("CONNECT");
    // The CONNACK, then three QoS 2 publishes and 64 KB more in frames.
    let (op, _) = ws_read_frame(&mut ws).expect("CONNACK");
    assert_eq!(op, 2);
    let mut flood = ws_frame(2, &[qos2(1), qos2(2), qos2(3)].concat());
    let one = ws_frame(2, &filler(1)[..120]);
    while flood.len() < TRAILING {
        flood.extend_from_slice(&one);
    }
    ws.write_all(&flood).expect("flood");
    let mut mqtt = BytesMut::new();
    let mut packets = Vec::new();
    let end = loop {
        match ws_read_frame(&mut ws) {
            Ok((2, payload)) => {
                mqtt.extend_from_slice(&payload);
                while let Some(p) = decode_packet(&mut mqtt, Some(V5), usize::MAX).expect("packet")
                {
                    packets.push(p);
                }
            }
            Ok((8, _)) => break Ok(8),
            Ok((op, _)) => panic!("unexpected frame {op}"),
            Err(e) => break Err(e.kind()),
        }
    };
    assert!(
        packets
            .last()
            .and_then(disconnect_reason)
            .is_some_and(|(r, _)| r == ReasonCode::ReceiveMaximumExceeded),
        "{packets:?} then {end:?}"
    );
    assert_eq!(end, Ok(8), "a close frame, not a reset: {packets:?}");
    ws.write_all(&ws_frame(8, &[])).expect("close frame");
    let mut rest = [0u8; 64];
    let after = loop {
        match ws.read(&mut rest) {
            Ok(0) => break Ok(()),
            Ok(_) => continue,
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(after, Ok(()), "closed in order after the close frame");
}
