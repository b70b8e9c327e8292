//! The dead-letter line: one JSON object per record a sink refused for good.
//!
//! ```json
//! {"reason":"permanent: 400 Bad Request","dead_lettered_at_ms":1700000000000,
//!  "record":{"id":7,"destination":"https://…","timestamp_ms":1700000000000,
//!            "key":{"utf8":"device-7"},"payload":{"base64":"AAEC"},
//!            "headers":[{"name":"mqtt-topic","value":{"utf8":"plant/7"}}]}}
//! ```
//!
//! Byte fields are `{"utf8": …}` when they are valid UTF-8 (readable for
//! operators) and `{"base64": …}` otherwise, so a tool can replay them
//! exactly.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;

use crate::record::Record;

#[derive(Serialize)]
struct Line<'a> {
    reason: &'a str,
    dead_lettered_at_ms: u64,
    record: LineRecord<'a>,
}

#[derive(Serialize)]
struct LineRecord<'a> {
    id: u64,
    destination: &'a str,
    timestamp_ms: u64,
    key: Option<ByteField<'a>>,
    payload: ByteField<'a>,
    headers: Vec<LineHeader<'a>>,
}

#[derive(Serialize)]
struct LineHeader<'a> {
    name: &'a str,
    value: ByteField<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum ByteField<'a> {
    Utf8(&'a str),
    Base64(String),
}

impl<'a> ByteField<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => ByteField::Utf8(text),
            Err(_) => ByteField::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

/// The JSON line (with its trailing newline) for `record`.
pub(crate) fn line(record: &Record, reason: &str) -> Vec<u8> {
    let line = Line {
        reason,
        dead_lettered_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        record: LineRecord {
            id: record.id,
            destination: &record.destination,
            timestamp_ms: record.timestamp_ms,
            key: record.key.as_deref().map(ByteField::new),
            payload: ByteField::new(&record.payload),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| LineHeader {
                    name,
                    value: ByteField::new(value),
                })
                .collect(),
        },
    };
    // Serialising plain strings and numbers cannot fail.
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}
