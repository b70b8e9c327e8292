//! Records to requests, and responses to verdicts: the part of the HTTP sink
//! that does no I/O.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::HeaderValue;
use http::{StatusCode, Uri};

use crate::record::{Record, TOPIC_HEADER};
use crate::sink::SinkError;

/// How many ids an error message lists before it elides the rest.
const IDS_SHOWN: usize = 10;

/// What a destination's answer means for the records it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    /// The server is unavailable, overloaded or slow: try again later.
    Retry,
    /// The server refuses these records: retrying cannot help.
    Reject,
}

pub(crate) fn classify(status: StatusCode) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        408 | 429 => Verdict::Retry,
        500..=599 => Verdict::Retry,
        // Other 4xx; 3xx too: redirects are not followed, so an endpoint that
        // moved needs a new URL, not another try.
        _ => Verdict::Reject,
    }
}

/// One request to make: one record, or one URL's share of a batch.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub uri: Uri,
    /// Names the records and the URL (without its query, which may hold a
    /// secret) in error messages, e.g. `record 7 to http://host/in`.
    pub label: String,
    /// `sluice-record-id`: the record's de-duplication id (see
    /// [`Record::dedup_id`]), or the ids of the array in order,
    /// comma-separated.
    pub ids: HeaderValue,
    /// `sluice-mqtt-topic`, percent-encoded (see [`encode_topic`]).
    pub topic: Option<HeaderValue>,
    pub body: Bytes,
}

/// The request for one record (`BatchMode::One`): the body is the payload.
pub(crate) fn one(record: &Record) -> Result<Outgoing, SinkError> {
    let records = [record];
    let uri = parse_destination(&record.destination)
        .map_err(|reason| bad_destination(&records, &reason))?;
    Ok(Outgoing {
        label: label(&records, &uri),
        ids: ids_header(&records),
        topic: topic_header(&records),
        body: record.payload.clone(),
        uri,
    })
}

/// The requests for a batch in `BatchMode::JsonArray`: one per destination
/// URL, in the order of each URL's first record, each a JSON array of its
/// records' payloads in batch order.
///
/// Everything is checked before anything is sent, so a record that can
/// never go (bad URL, payload that is not JSON) fails the batch up front.
pub(crate) fn json_arrays(batch: &[Record]) -> Result<Vec<Outgoing>, SinkError> {
    grouped(batch, Framing::Array)
}

/// The requests for a batch in `BatchMode::Ndjson`: as [`json_arrays`],
/// one payload per line.
pub(crate) fn ndjson(batch: &[Record]) -> Result<Vec<Outgoing>, SinkError> {
    grouped(batch, Framing::Lines)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Array,
    Lines,
}

fn grouped(batch: &[Record], framing: Framing) -> Result<Vec<Outgoing>, SinkError> {
    let mut groups: Vec<(&str, Vec<&Record>)> = Vec::new();
    for record in batch {
        match groups
            .iter_mut()
            .find(|(dest, _)| *dest == record.destination)
        {
            Some((_, records)) => records.push(record),
            None => groups.push((&record.destination, vec![record])),
        }
    }
    groups
        .into_iter()
        .map(|(destination, records)| {
            let uri = parse_destination(destination)
                .map_err(|reason| bad_destination(&records, &reason))?;
            let mut body = BytesMut::with_capacity(
                records.iter().map(|r| r.payload.len() + 1).sum::<usize>() + 2,
            );
            if framing == Framing::Array {
                body.put_u8(b'[');
            }
            for (i, record) in records.iter().enumerate() {
                if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&record.payload)
                {
                    return Err(SinkError::Permanent(format!(
                        "record {}: payload is not JSON, cannot join a JSON batch: {error}",
                        record.id
                    )));
                }
                match framing {
                    Framing::Array => {
                        if i > 0 {
                            body.put_u8(b',');
                        }
                        body.put_slice(&record.payload);
                    }
                    Framing::Lines if record.payload.contains(&b'\n') => {
                        // Checked above: it parses, so it re-encodes.
                        let value: serde_json::Value =
                            serde_json::from_slice(&record.payload).unwrap_or_default();
                        body.put_slice(value.to_string().as_bytes());
                        body.put_u8(b'\n');
                    }
                    Framing::Lines => {
                        body.put_slice(&record.payload);
                        body.put_u8(b'\n');
                    }
                }
            }
            if framing == Framing::Array {
                body.put_u8(b']');
            }
            Ok(Outgoing {
                label: label(&records, &uri),
                ids: ids_header(&records),
                topic: topic_header(&records),
                body: body.freeze(),
                uri,
            })
        })
        .collect()
}

/// An absolute http(s) URL with a host, and no credentials (hyper would
/// not send them; a static `Authorization` header is the way).
pub(crate) fn parse_destination(destination: &str) -> Result<Uri, String> {
    let uri: Uri = destination
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(s) => return Err(format!("unsupported scheme {s:?}, expected http or https")),
        None => return Err("not an absolute URL (expected http:// or https://)".to_owned()),
    }
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err(
            "credentials in the URL are not supported, use a static Authorization header"
                .to_owned(),
        );
    }
    if authority.host().is_empty() {
        return Err("the URL has no host".to_owned());
    }
    Ok(uri)
}

/// Percent-encodes every byte outside visible ASCII, and `%` itself, so any
/// MQTT topic (UTF-8, spaces allowed) fits a header value and decodes back
/// exactly. Plain topics such as `sensors/room1/temp` are left as they are.
pub(crate) fn encode_topic(topic: &[u8]) -> String {
    let mut out = String::with_capacity(topic.len());
    for &b in topic {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The records' common MQTT topic; none when they have none or differ.
fn topic_header(records: &[&Record]) -> Option<HeaderValue> {
    let topic_of = |r: &Record| {
        r.headers
            .iter()
            .find(|(name, _)| name == TOPIC_HEADER)
            .map(|(_, value)| value.clone())
    };
    let first = topic_of(records.first()?)?;
    if records[1..]
        .iter()
        .any(|r| topic_of(r).as_ref() != Some(&first))
    {
        return None;
    }
    // Only visible ASCII is left after encoding, always a valid value.
    HeaderValue::from_str(&encode_topic(&first)).ok()
}

fn ids_header(records: &[&Record]) -> HeaderValue {
    let ids: Vec<String> = records.iter().map(|r| r.dedup_id()).collect();
    HeaderValue::from_str(&ids.join(",")).unwrap_or_else(|_| {
        let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
        HeaderValue::from_str(&ids.join(",")).expect("digits and commas are a valid header value")
    })
}

fn ids_label(records: &[&Record]) -> String {
    match records {
        [one] => format!("record {}", one.id),
        _ => {
            let shown: Vec<String> = records
                .iter()
                .take(IDS_SHOWN)
                .map(|r| r.id.to_string())
                .collect();
            let more = records.len().saturating_sub(IDS_SHOWN);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("records {}{more}", shown.join(","))
        }
    }
}

fn label(records: &[&Record], uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or_default();
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    format!(
        "{} to {scheme}://{authority}{}",
        ids_label(records),
        uri.path()
    )
}

fn bad_destination(records: &[&Record], reason: &str) -> SinkError {
    let destination = records
        .first()
        .map(|r| r.destination.as_str())
        .unwrap_or_default();
    SinkError::Permanent(format!(
        "{}: invalid destination URL {:?}: {reason}",
        ids_label(records),
        redact(destination)
    ))
}

/// A destination fit for logs and the dead letter file: no query or
/// fragment, no user info, at most 200 characters.
fn redact(destination: &str) -> String {
    let bare = destination.split(['?', '#']).next().unwrap_or_default();
    let shown = match bare.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => bare.to_owned(),
            }
        }
        None => bare.to_owned(),
    };
    shown.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, destination: &str, payload: &str, topic: Option<&str>) -> Record {
        Record {
            id,
            destination: destination.to_owned(),
            key: None,
            payload: Bytes::from(payload.to_owned()),
            headers: topic
                .map(|t| vec![(TOPIC_HEADER.to_owned(), Bytes::from(t.to_owned()))])
                .unwrap_or_default(),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn http_status_verdicts() {
        for (code, verdict) in [
            (200, Verdict::Delivered),
            (201, Verdict::Delivered),
            (204, Verdict::Delivered),
            (408, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (400, Verdict::Reject),
            (401, Verdict::Reject),
            (404, Verdict::Reject),
            (413, Verdict::Reject),
            (301, Verdict::Reject),
        ] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                verdict,
                "{code}"
            );
        }
    }

    #[test]
    fn http_destination_parsing_refuses_without_panicking() {
        assert!(parse_destination("http://127.0.0.1:8080/in?x=1").is_ok());
        assert!(parse_destination("HTTPS://example.com").is_ok());
        for bad in [
            "",
            "not a url",
            "/relative/path",
            "example.com/in",
            "ftp://example.com/in",
            "http://",
            "http:///path",
            "http://user:secret@example.com/in",
            "http://exa mple.com/",
            "http://[::1/",
            "\u{0}",
        ] {
            assert!(parse_destination(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn http_bad_destination_is_permanent_and_names_the_record() {
        let err = one(&record(42, "ftp://x/", "{}", None)).unwrap_err();
        let SinkError::Permanent(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("record 42") && msg.contains("ftp"), "{msg}");
    }

    #[test]
    fn http_bad_destinations_are_shown_without_secrets() {
        assert_eq!(redact("http://u:p@h:1/x?key=s"), "http://***@h:1/x");
        assert_eq!(redact("not a url?token=s#frag"), "not a url");
        assert_eq!(redact("ftp://host/p"), "ftp://host/p");
        assert_eq!(redact(&"x".repeat(500)).len(), 200);
        let SinkError::Permanent(msg) = one(&record(1, "http://u:pw@h/", "", None)).unwrap_err()
        else {
            panic!()
        };
        assert!(!msg.contains("pw"), "{msg}");
    }

    #[test]
    fn http_one_request_carries_payload_id_and_topic() {
        let out = one(&record(
            7,
            "http://h:1/in?token=s3cret",
            "raw bytes",
            Some("a/b c/%"),
        ))
        .unwrap();
        assert_eq!(out.body, "raw bytes");
        assert_eq!(out.ids, "7");
        assert_eq!(out.topic.unwrap(), "a/b%20c/%25");
        assert_eq!(out.label, "record 7 to http://h:1/in");
        assert!(one(&record(8, "http://h/", "", None))
            .unwrap()
            .topic
            .is_none());
    }

    #[test]
    fn http_topic_encoding_keeps_plain_topics_and_escapes_the_rest() {
        assert_eq!(encode_topic(b"sensors/room1/temp"), "sensors/room1/temp");
        assert_eq!(encode_topic("caf\u{e9}/+/#".as_bytes()), "caf%C3%A9/+/#");
        assert_eq!(encode_topic(b"a\r\nb\x7f"), "a%0D%0Ab%7F");
    }

    #[test]
    fn http_ndjson_puts_one_compact_payload_per_line() {
        let batch = [
            record(1, "http://a/", "{\"x\": 1}", None),
            record(2, "http://a/", "{\n  \"y\": 2\n}", None),
            record(3, "http://b/", "3", None),
        ];
        let out = ndjson(&batch).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0].body[..], b"{\"x\": 1}\n{\"y\":2}\n");
        assert_eq!(&out[1].body[..], b"3\n");
        assert!(ndjson(&[record(4, "http://a/", "not json", None)]).is_err());
    }

    #[test]
    fn http_json_arrays_group_by_url_in_first_seen_order() {
        let batch = [
            record(1, "http://a/x", "{\"n\":1}", Some("t/1")),
            record(2, "http://b/y", "2", Some("t/2")),
            record(3, "http://a/x", " [3] ", Some("t/1")),
            record(4, "http://b/y", "\"four\"", Some("t/4")),
        ];
        let out = json_arrays(&batch).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].uri, "http://a/x");
        assert_eq!(out[0].body, "[{\"n\":1}, [3] ]");
        assert_eq!(out[0].ids, "1,3");
        assert_eq!(out[0].topic.as_ref().unwrap(), "t/1");
        assert_eq!(out[1].uri, "http://b/y");
        assert_eq!(out[1].body, "[2,\"four\"]");
        assert_eq!(out[1].ids, "2,4");
        assert!(
            out[1].topic.is_none(),
            "mixed topics must not be reported as one"
        );
        let joined: serde_json::Value = serde_json::from_slice(&out[0].body).unwrap();
        assert_eq!(joined, serde_json::json!([{"n": 1}, [3]]));
    }

    #[test]
    fn http_json_arrays_refuse_non_json_before_sending_anything() {
        let batch = [
            record(1, "http://a/", "{}", None),
            record(2, "http://b/", "{oops", None),
        ];
        let err = json_arrays(&batch).unwrap_err();
        let SinkError::Permanent(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.starts_with("record 2:"), "{msg}");
        assert!(json_arrays(&[record(3, "http://a/", "{} {}", None)]).is_err());
        assert!(json_arrays(&[record(4, "http://a/", "", None)]).is_err());
        assert!(json_arrays(&[]).unwrap().is_empty());
    }

    #[test]
    fn http_long_id_lists_are_elided_in_messages() {
        let batch: Vec<Record> = (1..=12)
            .map(|id| record(id, "ftp://bad/", "1", None))
            .collect();
        let SinkError::Permanent(msg) = json_arrays(&batch).unwrap_err() else {
            panic!()
        };
        assert!(
            msg.starts_with("records 1,2,3,4,5,6,7,8,9,10 and 2 more:"),
            "{msg}"
        );
    }
}
