//! Feeds arbitrary bytes to the packet decoder as a connection would see them.
//!
//! Checked for every input, once per starting state (before CONNECT, and
//! after a 3.1.1 or a v5 CONNECT): decoding never panics, `Ok(None)` never
//! consumes input, a decoded packet always consumes input, and every decoded
//! packet re-encodes to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::codec::{decode_packet, encode_packet, encoded_len, Packet, ProtocolVersion};

/// A fixed header can announce up to 256 MiB and the decoder reserves room
/// for the announced packet; a realistic limit keeps each run cheap and
/// exercises the size check.
const MAX_SIZE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    for start in [None, Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)] {
        decode_stream(data, start);
    }
});

fn decode_stream(data: &[u8], start: Option<ProtocolVersion>) {
    let mut buf = BytesMut::from(data);
    let mut version = start;
    loop {
        let before = buf.len();
        match decode_packet(&mut buf, version, MAX_SIZE) {
            Ok(Some(packet)) => {
                assert!(
                    buf.len() < before,
                    "{} decoded from no bytes",
                    packet.name()
                );
                let v = match (&packet, version) {
                    (Packet::Connect(c), None) => c.protocol,
                    (_, Some(v)) => v,
                    (p, None) => panic!("{} decoded before CONNECT", p.name()),
                };
                check_round_trip(&packet, v);
                // The connection now speaks the version CONNECT named.
                version = Some(v);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed input");
                break;
            }
            Err(_) => break,
        }
    }
}

fn check_round_trip(packet: &Packet, v: ProtocolVersion) {
    let mut out = BytesMut::new();
    let n = match encode_packet(packet, v, &mut out) {
        Ok(n) => n,
        Err(e) => panic!("decoded {packet:?} does not re-encode: {e}"),
    };
    assert_eq!(n, out.len(), "encode_packet reported a wrong length");
    assert_eq!(
        n,
        encoded_len(packet, v),
        "encoded_len disagrees with encode_packet"
    );
    let version = if matches!(packet, Packet::Connect(_)) {
        None
    } else {
        Some(v)
    };
    let again = match decode_packet(&mut out, version, usize::MAX) {
        Ok(Some(p)) => p,
        other => panic!("re-encoded {packet:?} decodes as {other:?}"),
    };
    assert!(
        out.is_empty(),
        "re-encoded {} left {} bytes",
        packet.name(),
        out.len()
    );
    assert_eq!(&again, packet, "round trip changed the packet");
}
