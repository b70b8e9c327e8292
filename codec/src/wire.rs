//! Primitive wire types (spec 1.5): integers, variable byte integers, UTF-8
//! strings and binary data, read from a frozen packet body without copying
//! and written with explicit length checks.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};

/// Largest value a variable byte integer can carry (spec 1.5.5).
pub const MAX_VARINT: u32 = 268_435_455;

/// Reads primitives from one packet body. Every read checks the remaining
/// length, so a short body is a malformed packet, never a panic.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::Malformed("packet ends early"));
        }
        let v = self.buf[0];
        let _ = self.buf.split_to(1);
        Ok(v)
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(DecodeError::Malformed("packet ends early"));
        }
        let v = u16::from_be_bytes([self.buf[0], self.buf[1]]);
        let _ = self.buf.split_to(2);
        Ok(v)
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(DecodeError::Malformed("packet ends early"));
        }
        let v = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let _ = self.buf.split_to(4);
        Ok(v)
    }

    /// A variable byte integer; non-minimal encodings are malformed (1.5.5).
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        match decode_varint(&self.buf)? {
            Some((v, n)) => {
                let _ = self.buf.split_to(n);
                Ok(v)
            }
            None => Err(DecodeError::Malformed(
                "packet ends inside a variable byte integer",
            )),
        }
    }

    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    /// A UTF-8 string (1.5.4): valid UTF-8 without U+0000.
    pub fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        bytes_to_string(raw)
    }

    pub fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Malformed("field length exceeds packet"));
        }
        Ok(self.buf.split_to(len))
    }

    /// The rest of the body (a PUBLISH payload).
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
}

/// Validates a UTF-8 field as the spec requires and wraps it without copying.
pub fn bytes_to_string(raw: Bytes) -> Result<ByteString, DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::Malformed("string contains U+0000"));
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))
}

/// Decodes a variable byte integer at the start of `buf`: `Ok(None)` when more
/// bytes are needed, the value and its length otherwise.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::Malformed(
                    "variable byte integer is not minimal",
                ));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::Malformed(
        "variable byte integer longer than 4 bytes",
    ))
}

pub fn varint_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub fn put_varint(buf: &mut BytesMut, mut v: u32) -> Result<(), EncodeError> {
    if v > MAX_VARINT {
        return Err(EncodeError::VarIntOutOfRange(v));
    }
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if v == 0 {
            return Ok(());
        }
    }
}

pub fn put_binary(buf: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(data.len()))?;
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

pub fn put_string(buf: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    put_binary(buf, s.as_bytes())
}

/// Quality of service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The protocol level negotiated by CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1 ("MQIsdp", level 3): accepted for old clients, handled as 3.1.1.
    V31,
    V311,
    V5,
}

impl ProtocolVersion {
    pub fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }

    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// A packet identifier: never zero (2.2.1).
pub type PacketId = std::num::NonZeroU16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_at_boundaries() {
        for v in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v).unwrap();
            assert_eq!(buf.len(), varint_len(v));
            assert_eq!(decode_varint(&buf).unwrap(), Some((v, buf.len())));
        }
    }

    #[test]
    fn varint_rejects_non_minimal_and_overlong() {
        assert!(decode_varint(&[0x80, 0x00]).is_err());
        assert!(decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert_eq!(decode_varint(&[0x80]).unwrap(), None);
        assert!(put_varint(&mut BytesMut::new(), MAX_VARINT + 1).is_err());
    }

    #[test]
    fn string_rejects_nul_and_bad_utf8() {
        assert!(bytes_to_string(Bytes::from_static(b"a\0b")).is_err());
        assert!(bytes_to_string(Bytes::from_static(&[0xc3, 0x28])).is_err());
        assert_eq!(
            bytes_to_string(Bytes::from_static("é/x".as_bytes())).unwrap(),
            "é/x"
        );
    }

    #[test]
    fn strings_over_65535_bytes_are_refused_not_truncated() {
        let long = "a".repeat(65_536);
        assert_eq!(
            put_string(&mut BytesMut::new(), &long),
            Err(EncodeError::FieldTooLong(65_536))
        );
    }
}
