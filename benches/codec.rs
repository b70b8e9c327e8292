//! PUBLISH through the wire codec (issue #11): the per-message cost on both
//! the read and the write side of every connection.
//!
//! 3.1.1 at QoS 0 and 1 with a 64-byte payload, and v5 at QoS 1 with the
//! properties devices send: message expiry, content type, user properties
//! and a topic alias.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::codec::{
    decode_packet, encode_packet, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
};

const MAX_PACKET: usize = 1 << 20;

fn publish(qos: QoS, properties: Properties) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from_static("sensors/site-7/dev-42/temp"),
        packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(4242).expect("non-zero")),
        properties,
        payload: Bytes::from(vec![0x5a; 64]),
    })
}

fn v5_properties() -> Properties {
    Properties {
        message_expiry_interval: Some(3_600),
        content_type: Some("application/json".into()),
        user_properties: vec![
            ("site".into(), "7".into()),
            ("firmware".into(), "2.4.1".into()),
        ],
        topic_alias: Some(7),
        ..Properties::default()
    }
}

fn codec(c: &mut Criterion) {
    let cases = [
        (
            "v311_qos0",
            ProtocolVersion::V311,
            publish(QoS::AtMostOnce, Properties::default()),
        ),
        (
            "v311_qos1",
            ProtocolVersion::V311,
            publish(QoS::AtLeastOnce, Properties::default()),
        ),
        (
            "v5_qos1_properties",
            ProtocolVersion::V5,
            publish(QoS::AtLeastOnce, v5_properties()),
        ),
    ];
    let mut g = c.benchmark_group("codec/publish");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, version, packet) in cases {
        let mut frame = BytesMut::new();
        encode_packet(&packet, version, &mut frame).expect("encodes");
        let frame = frame.freeze();
        // The benchmark is only worth its numbers if the packet survives.
        let back = decode_packet(&mut BytesMut::from(&frame[..]), Some(version), MAX_PACKET)
            .expect("decodes")
            .expect("a whole packet");
        assert_eq!(back, packet, "{name} round trip");
        g.throughput(Throughput::Bytes(frame.len() as u64));

        let mut buf = BytesMut::with_capacity(frame.len());
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                encode_packet(black_box(&packet), version, &mut buf).expect("encodes")
            })
        });
        // A fresh buffer per decode (set up untimed): decoding splits the
        // frame off the connection's read buffer. Small batches keep the
        // buffers in cache, as a frame just read from a socket is.
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&frame[..]),
                |buf| decode_packet(buf, Some(version), MAX_PACKET),
                BatchSize::NumIterations(64),
            )
        });
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
