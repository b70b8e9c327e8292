//! MQTT packets found in a buffer by their fixed header alone.
//!
//! The generator's subscribers and the reflector see millions of packets a
//! second; decoding each into a `Packet` (a topic string, a payload
//! handle, properties) cost the generator more CPU than the broker spent
//! delivering them. Walking the fixed header and reading the few bytes
//! needed in place costs no allocation and no copy.

use std::ops::Range;

use anyhow::bail;
use sluice::codec::decode_varint;

/// Packet types (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const PINGREQ: u8 = 12;
pub const DISCONNECT: u8 = 14;

/// One complete packet at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: packet type and flags.
    pub first: u8,
    /// Where the variable header starts (after the remaining length).
    pub body_start: usize,
    /// One past the packet's last byte.
    pub end: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

/// The complete packet at the start of `buf`, or `None` if more bytes are
/// needed.
pub fn frame_at(buf: &[u8]) -> anyhow::Result<Option<Frame>> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((len, n)) = decode_varint(rest)? else {
        return Ok(None);
    };
    let end = 1 + n + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        first,
        body_start: 1 + n,
        end,
    }))
}

/// Where the parts of a PUBLISH lie, as ranges of the packet's own bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishParts {
    pub qos: u8,
    pub topic: Range<usize>,
    pub packet_id: Option<u16>,
    /// The v5 properties with their length prefix (empty range in 3.1.1).
    pub properties: Range<usize>,
    pub payload: Range<usize>,
}

/// Splits the PUBLISH `packet` (a whole packet, fixed header included).
pub fn publish_parts(packet: &[u8], frame: &Frame, v5: bool) -> anyhow::Result<PublishParts> {
    let qos = (frame.first >> 1) & 3;
    let at = frame.body_start;
    let Some(len_bytes) = packet.get(at..at + 2) else {
        bail!("PUBLISH without a topic");
    };
    let topic = at + 2..at + 2 + usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let mut pos = topic.end;
    let packet_id = if qos > 0 {
        let Some(id) = packet.get(pos..pos + 2) else {
            bail!("PUBLISH without a packet id");
        };
        pos += 2;
        Some(u16::from_be_bytes([id[0], id[1]]))
    } else {
        None
    };
    let props_start = pos;
    if v5 {
        let Some((len, n)) = decode_varint(packet.get(pos..frame.end).unwrap_or_default())? else {
            bail!("PUBLISH with truncated properties");
        };
        pos += n + len as usize;
    }
    if pos > frame.end {
        bail!("PUBLISH shorter than its header");
    }
    Ok(PublishParts {
        qos,
        topic,
        packet_id,
        properties: props_start..pos,
        payload: pos..frame.end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice::codec::{
        encode_packet, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    };

    fn encoded(qos: QoS, v: ProtocolVersion) -> BytesMut {
        let p = Publish {
            dup: false,
            qos,
            retain: false,
            topic: "a/b".into(),
            packet_id: (qos != QoS::AtMostOnce).then_some(PacketId::MIN),
            properties: Properties::default(),
            payload: vec![7u8; 300].into(),
        };
        let mut buf = BytesMut::new();
        encode_packet(&Packet::Publish(p), v, &mut buf).unwrap();
        buf
    }

    #[test]
    fn a_publish_splits_into_topic_id_and_payload_in_both_versions() {
        for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                let buf = encoded(qos, v);
                let f = frame_at(&buf).unwrap().unwrap();
                assert_eq!((f.kind(), f.end), (PUBLISH, buf.len()));
                let parts = publish_parts(&buf, &f, v.is_v5()).unwrap();
                assert_eq!(&buf[parts.topic.clone()], b"a/b");
                assert_eq!(parts.packet_id, (qos == QoS::AtLeastOnce).then_some(1));
                assert_eq!(parts.payload.len(), 300);
                assert_eq!(parts.properties.len(), usize::from(v.is_v5()));
            }
        }
    }

    #[test]
    fn a_partial_packet_waits_for_more_bytes() {
        let buf = encoded(QoS::AtMostOnce, ProtocolVersion::V311);
        for cut in 0..buf.len() {
            assert_eq!(frame_at(&buf[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_topic_longer_than_the_packet_is_refused() {
        let buf = [0x30u8, 3, 0, 9, b'a'];
        let f = frame_at(&buf).unwrap().unwrap();
        assert!(publish_parts(&buf, &f, false).is_err());
    }
}
