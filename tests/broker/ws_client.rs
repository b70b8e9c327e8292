//! A minimal WebSocket client for the tests of MQTT over WebSocket: the
//! upgrade as raw HTTP (so tests control every header), then masked
//! binary frames.

use std::io::{Read, Write};
use std::time::Duration;

use sluice::codec::{encode_packet, Packet, ProtocolVersion};

/// A minimal WebSocket client: upgrade, then binary frames (masked, as
/// clients must).
pub fn ws_connect(port: u16, path: &str, protocol: &str) -> (std::net::TcpStream, String) {
    ws_connect_with(port, path, protocol, "Host: localhost\r\n")
}

/// `ws_connect` with the Host (and e.g. Origin) header lines given.
pub fn ws_connect_with(
    port: u16,
    path: &str,
    protocol: &str,
    headers: &str,
) -> (std::net::TcpStream, String) {
    ws_connect_at(("127.0.0.1", port), path, protocol, headers)
}

/// `ws_connect_with` to any address.
pub fn ws_connect_at(
    at: (&str, u16),
    path: &str,
    protocol: &str,
    headers: &str,
) -> (std::net::TcpStream, String) {
    let mut s = std::net::TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\n{headers}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

pub fn ws_send(s: &mut std::net::TcpStream, payload: &[u8]) {
    let mut f = vec![0x82u8];
    assert!(payload.len() < 126);
    f.push(0x80 | payload.len() as u8);
    let mask = [1u8, 2, 3, 4];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).unwrap();
}

pub fn ws_recv(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[0], 0x82, "binary frame expected");
    let len = usize::from(h[1] & 0x7f);
    assert!(len < 126);
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    p
}

/// One packet as the bytes of a frame's payload.
pub fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    encode_packet(p, v, &mut b).unwrap();
    b.to_vec()
}
