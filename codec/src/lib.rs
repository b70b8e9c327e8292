//! The MQTT 3.1.1 + 5.0 wire codec: one packet model for both versions.
//!
//! Decoding is strict: every failure is a [`DecodeError`] that carries the
//! reason code to send. The frame reader checks the packet size from the
//! fixed header before it buffers the body, so an oversized packet costs no
//! memory. Topics and payloads are slices of the received frame; what is
//! kept beyond the packet is copied out of it (`owned`), and what follows a
//! large packet in the read buffer is moved out of its allocation.
//!
//! Layout: `wire` (primitives), `properties`, one file per packet family,
//! and this module (the [`Packet`] enum, framing and dispatch).
//!
//! A crate of its own: the broker (`sluice::codec`) and the bridges crate's
//! MQTT client both speak through it.

// No unwrap on anything outside tests (house rule, as in the broker).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod ack;
mod connect;
mod disconnect;
mod error;
mod owned;
mod plain_publish;
mod properties;
mod publish;
mod reason;
mod subscribe;
mod wire;

#[cfg(test)]
mod tests;

use bytes::{Buf, BufMut, BytesMut};

pub use ack::{Ack, AckKind};
pub use connect::{check_topic_name, ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use owned::{owned_bytes, owned_string};
pub use plain_publish::PlainPublish;
pub use properties::{Properties, PropertyScope};
pub use publish::Publish;
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use wire::{decode_varint, put_varint, PacketId, ProtocolVersion, QoS, Reader, MAX_VARINT};

/// The most `decode_packet` reserves ahead of bytes that have arrived.
const RESERVE_STEP: usize = 64 * 1024;

/// A packet body this large gets the bytes after it copied out of its
/// buffer (see `decode_packet`). With it, a small message shares its
/// allocation only with packets below this size and at most a read chunk
/// more: tens of KB, not `max_packet_size`.
const LARGE_BODY: usize = 16 * 1024;

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the spec writes it, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// Reads one packet from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed (nothing is consumed). `version` is
/// `None` until CONNECT has been read: then CONNECT is the only packet
/// accepted. `max_size` bounds the whole packet, fixed header included.
pub fn decode_packet(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_bytes)) = decode_varint(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_bytes + remaining as usize;
    if total > max_size {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_size,
        });
    }
    let packet_type = first >> 4;
    let flags = first & 0x0f;
    // Reject a wrong first packet before waiting for its body.
    if version.is_none() && packet_type != 1 {
        return Err(DecodeError::Protocol("first packet is not CONNECT"));
    }
    if buf.len() < total {
        // Make room for the rest, but only a bounded step at a time: five
        // header bytes must not make the server allocate a maximum-size
        // packet per connection. The buffer still grows geometrically as the
        // body actually arrives.
        buf.reserve((total - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    buf.advance(1 + len_bytes);
    let body = buf.split_to(remaining as usize).freeze();
    if body.len() >= LARGE_BODY {
        // What was read after a large packet moves to an allocation of its
        // own: a small message decoded from it and kept (queued for an
        // offline session, retained) would otherwise keep the large
        // packet's whole buffer alive. Costs a copy of at most one read
        // chunk per large packet.
        *buf = BytesMut::from(&buf[..]);
    }
    decode_body(packet_type, flags, Reader::new(body), version).map(Some)
}

/// The flags a packet type's fixed header must carry (spec 2.1.3), `None`
/// where they carry information (PUBLISH) or the type is reserved for this
/// version (0, and AUTH before 5.0).
fn required_flags(packet_type: u8, v: ProtocolVersion) -> Option<u8> {
    match packet_type {
        6 | 8 | 10 => Some(2),
        1 | 2 | 4 | 5 | 7 | 9 | 11..=14 => Some(0),
        15 if v.is_v5() => Some(0),
        _ => None,
    }
}

/// Decodes a whole packet body by the type from its fixed header, after
/// checking the header's reserved flags.
fn decode_body(
    packet_type: u8,
    flags: u8,
    mut r: Reader,
    version: Option<ProtocolVersion>,
) -> Result<Packet, DecodeError> {
    let v = version.unwrap_or(ProtocolVersion::V311);
    if required_flags(packet_type, v).is_some_and(|want| flags != want) {
        return Err(DecodeError::Malformed("reserved fixed header flags"));
    }
    let r = &mut r;
    let packet = match packet_type {
        1 => {
            if version.is_some() {
                return Err(DecodeError::Protocol("second CONNECT"));
            }
            Packet::Connect(Box::new(Connect::decode(r)?))
        }
        2 => Packet::ConnAck(ConnAck::decode(r, v)?),
        3 => Packet::Publish(Publish::decode(flags, r, v)?),
        4 => Packet::PubAck(Ack::decode(AckKind::PubAck, r, v)?),
        5 => Packet::PubRec(Ack::decode(AckKind::PubRec, r, v)?),
        6 => Packet::PubRel(Ack::decode(AckKind::PubRel, r, v)?),
        7 => Packet::PubComp(Ack::decode(AckKind::PubComp, r, v)?),
        8 => Packet::Subscribe(Subscribe::decode(r, v)?),
        9 => Packet::SubAck(SubAck::decode(r, v)?),
        10 => Packet::Unsubscribe(Unsubscribe::decode(r, v)?),
        11 => Packet::UnsubAck(UnsubAck::decode(r, v)?),
        12 | 13 => {
            if !r.is_empty() {
                return Err(DecodeError::Malformed("bytes in PINGREQ/PINGRESP"));
            }
            if packet_type == 12 {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        14 => Packet::Disconnect(Disconnect::decode(r, v)?),
        15 if v.is_v5() => Packet::Auth(Auth::decode(r)?),
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    };
    Ok(packet)
}

/// Size of `packet` on the wire, fixed header included.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let body = body_len(packet, version);
    1 + wire::varint_len(u32::try_from(body).unwrap_or(u32::MAX)) + body
}

fn body_len(packet: &Packet, v: ProtocolVersion) -> usize {
    match packet {
        Packet::Connect(c) => c.body_len(),
        Packet::ConnAck(c) => c.body_len(v),
        Packet::Publish(p) => p.body_len(v),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.body_len(v)
        }
        Packet::Subscribe(s) => s.body_len(v),
        Packet::SubAck(s) => s.body_len(v),
        Packet::Unsubscribe(u) => u.body_len(v),
        Packet::UnsubAck(u) => u.body_len(v),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => d.body_len(v),
        Packet::Auth(a) => a.body_len(),
    }
}

/// Appends `packet` to `buf`. Returns the number of bytes written.
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let body = body_len(packet, version);
    if body > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge(body));
    }
    let first: u8 = match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => 0x30 | p.flags(),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xa2,
        Packet::UnsubAck(_) => 0xb0,
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect(_) => 0xe0,
        Packet::Auth(_) => 0xf0,
    };
    let start = buf.len();
    buf.reserve(body + 5);
    buf.put_u8(first);
    wire::put_varint(buf, body as u32)?;
    let body_start = buf.len();
    let result = match packet {
        Packet::Connect(c) => c.encode_body(buf),
        Packet::ConnAck(c) => c.encode_body(version, buf),
        Packet::Publish(p) => p.encode_body(version, buf),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.encode_body(version, buf)
        }
        Packet::Subscribe(s) => s.encode_body(version, buf),
        Packet::SubAck(s) => s.encode_body(version, buf),
        Packet::Unsubscribe(u) => u.encode_body(version, buf),
        Packet::UnsubAck(u) => u.encode_body(version, buf),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => d.encode_body(version, buf),
        Packet::Auth(a) => a.encode_body(buf),
    };
    if let Err(e) = result {
        buf.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(
        buf.len() - body_start,
        body,
        "{} body length mismatch",
        packet.name()
    );
    Ok(buf.len() - start)
}
