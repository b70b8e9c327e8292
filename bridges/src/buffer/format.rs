//! The on-disk encoding of the buffer: segment header, record frames, and
//! the scan that finds the next intact frame after damage.
//!
//! A segment file is a 16-byte header followed by frames:
//!
//! ```text
//! header: b"SLUICEBF" | version u32 LE (= 1) | reserved u32 (= 0)
//! frame:  magic u32 LE | len u32 LE | body (len bytes) | crc32(len bytes ++ body) u32 LE
//! body:   id u64 | timestamp_ms u64
//!         | destination: u32 len + UTF-8 bytes
//!         | key: u8 0 (none) or 1 + u32 len + bytes
//!         | payload: u32 len + bytes
//!         | headers: u32 count, then per header u32 len + UTF-8 name, u32 len + value
//! ```
//!
//! The frame magic is there so that, after a damaged frame whose length
//! field can no longer be trusted, the reader can find where the next frame
//! starts; a candidate only counts if its CRC matches and its body decodes.

use bytes::{Buf, BufMut, Bytes};

use crate::record::Record;

/// Bytes at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"SLUICEBF";
/// The segment format this code writes and reads.
pub(crate) const SEGMENT_VERSION: u32 = 1;
/// Length of the segment header.
pub(crate) const HEADER_LEN: u64 = 16;
/// Marks the start of a frame (little-endian on disk). Non-ASCII bytes, so
/// it rarely occurs inside text payloads and resynchronisation stays cheap.
pub(crate) const FRAME_MAGIC: u32 = 0xA9E7_5CF1;
/// Magic + length before the body, CRC after it.
pub(crate) const FRAME_OVERHEAD: usize = 4 + 4 + 4;

/// The header every segment file starts with.
pub(crate) fn segment_header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header
}

/// What the first bytes of a segment file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    Valid,
    /// Shorter than a header: the file was being created when the process died.
    Torn,
    /// Our magic, another version: written by a newer (or older) Sluice.
    OtherVersion(u32),
    /// Not our magic: damaged.
    Damaged,
}

pub(crate) fn check_header(bytes: &[u8]) -> Header {
    if bytes.len() < HEADER_LEN as usize {
        return Header::Torn;
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Header::Damaged;
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version == SEGMENT_VERSION {
        Header::Valid
    } else {
        Header::OtherVersion(version)
    }
}

/// A field does not fit the format's u32 lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// Appends the frame of `record` to `out`; returns the frame's length.
pub(crate) fn encode_frame(record: &Record, out: &mut Vec<u8>) -> Result<usize, TooLong> {
    let start = out.len();
    out.put_u32_le(FRAME_MAGIC);
    out.put_u32_le(0); // length, patched below
    out.put_u64_le(record.id);
    out.put_u64_le(record.timestamp_ms);
    let result = (|| {
        put_field(out, record.destination.as_bytes())?;
        match &record.key {
            None => out.put_u8(0),
            Some(key) => {
                out.put_u8(1);
                put_field(out, key)?;
            }
        }
        put_field(out, &record.payload)?;
        out.put_u32_le(u32::try_from(record.headers.len()).map_err(|_| TooLong)?);
        for (name, value) in &record.headers {
            put_field(out, name.as_bytes())?;
            put_field(out, value)?;
        }
        u32::try_from(out.len() - start - 8).map_err(|_| TooLong)
    })();
    let body_len = match result {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    out[start + 4..start + 8].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&out[start + 4..]);
    out.put_u32_le(crc);
    Ok(out.len() - start)
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), TooLong> {
    out.put_u32_le(u32::try_from(bytes.len()).map_err(|_| TooLong)?);
    out.put_slice(bytes);
    Ok(())
}

/// What lies at the start of a byte range.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// An intact record and the length of its frame.
    Record(Record, usize),
    /// The range ends before the frame does (or before its header).
    Incomplete,
    /// Wrong magic, bad CRC or a body that does not decode.
    Corrupt,
}

/// Reads the frame at the start of `buf`. `buf` is shared, so the record's
/// byte fields are slices of it, not copies.
pub(crate) fn parse_frame(buf: &Bytes) -> Frame {
    if buf.len() < 8 {
        return Frame::Incomplete;
    }
    let magic = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if magic != FRAME_MAGIC {
        return Frame::Corrupt;
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    let total = match len.checked_add(FRAME_OVERHEAD) {
        Some(total) => total,
        None => return Frame::Corrupt,
    };
    if buf.len() < total {
        return Frame::Incomplete;
    }
    let crc_at = 8 + len;
    let stored = u32::from_le_bytes([
        buf[crc_at],
        buf[crc_at + 1],
        buf[crc_at + 2],
        buf[crc_at + 3],
    ]);
    if crc32fast::hash(&buf[4..crc_at]) != stored {
        return Frame::Corrupt;
    }
    match decode_body(buf.slice(8..crc_at)) {
        Some(record) => Frame::Record(record, total),
        None => Frame::Corrupt,
    }
}

/// The length a frame header announces, if `header` starts like a frame.
pub(crate) fn announced_len(header: &[u8; 8]) -> Option<usize> {
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    (magic == FRAME_MAGIC).then(|| {
        u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize + FRAME_OVERHEAD
    })
}

/// The offset of the first intact frame in `buf` at or after `from`.
pub(crate) fn resync(buf: &Bytes, from: usize) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut at = from;
    while at + 8 <= buf.len() {
        let found = buf[at..].windows(4).position(|w| w == magic)?;
        at += found;
        if let Frame::Record(..) = parse_frame(&buf.slice(at..)) {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn decode_body(mut body: Bytes) -> Option<Record> {
    if body.remaining() < 16 {
        return None;
    }
    let id = body.get_u64_le();
    let timestamp_ms = body.get_u64_le();
    let destination = take_string(&mut body)?;
    let key = match take_u8(&mut body)? {
        0 => None,
        1 => Some(take_field(&mut body)?),
        _ => return None,
    };
    let payload = take_field(&mut body)?;
    let count = take_u32(&mut body)? as usize;
    // Each header takes at least 8 bytes: refuse counts the body cannot hold
    // before allocating for them.
    if count > body.remaining() / 8 {
        return None;
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_string(&mut body)?;
        let value = take_field(&mut body)?;
        headers.push((name, value));
    }
    if body.has_remaining() {
        return None;
    }
    Some(Record {
        id,
        destination,
        key,
        payload,
        headers,
        timestamp_ms,
    })
}

fn take_u8(body: &mut Bytes) -> Option<u8> {
    body.has_remaining().then(|| body.get_u8())
}

fn take_u32(body: &mut Bytes) -> Option<u32> {
    (body.remaining() >= 4).then(|| body.get_u32_le())
}

fn take_field(body: &mut Bytes) -> Option<Bytes> {
    let len = take_u32(body)? as usize;
    (body.remaining() >= len).then(|| body.split_to(len))
}

fn take_string(body: &mut Bytes) -> Option<String> {
    let bytes = take_field(body)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u64) -> Record {
        Record {
            id,
            destination: "https://example.test/ingest".into(),
            key: Some(Bytes::from_static(b"device-7")),
            payload: Bytes::from_static(&[0, 1, 2, 255, 254]),
            headers: vec![
                ("mqtt-topic".into(), Bytes::from_static(b"plant/7/temp")),
                ("empty".into(), Bytes::new()),
            ],
            timestamp_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn frame_round_trips_every_field() {
        let mut plain = sample(9);
        plain.key = None;
        plain.headers.clear();
        for record in [sample(1), plain] {
            let mut out = Vec::new();
            let len = encode_frame(&record, &mut out).unwrap();
            assert_eq!(len, out.len());
            assert_eq!(parse_frame(&Bytes::from(out)), Frame::Record(record, len));
        }
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_frame(&sample(3), &mut out).unwrap();
        for cut in 0..out.len() {
            let frame = parse_frame(&Bytes::copy_from_slice(&out[..cut]));
            assert!(
                matches!(frame, Frame::Incomplete | Frame::Corrupt),
                "cut at {cut}"
            );
        }
        for byte in 0..out.len() {
            let mut flipped = out.clone();
            flipped[byte] ^= 0x10;
            let frame = parse_frame(&Bytes::from(flipped));
            assert!(!matches!(frame, Frame::Record(..)), "flip in byte {byte}");
        }
    }

    #[test]
    fn resync_skips_garbage_and_damaged_frames() {
        let mut out = vec![0xEE; 5];
        encode_frame(&sample(1), &mut out).unwrap();
        let damaged = out.len() - 3;
        out[damaged] ^= 1;
        let second = out.len();
        encode_frame(&sample(2), &mut out).unwrap();
        let buf = Bytes::from(out);
        assert_eq!(resync(&buf, 0), Some(second));
        assert_eq!(resync(&buf, second + 1), None);
    }

    #[test]
    fn header_states() {
        let header = segment_header();
        assert_eq!(check_header(&header), Header::Valid);
        assert_eq!(check_header(&header[..7]), Header::Torn);
        let mut other = header;
        other[8] = 2;
        assert_eq!(check_header(&other), Header::OtherVersion(2));
        other[0] = b'X';
        assert_eq!(check_header(&other), Header::Damaged);
    }
}
