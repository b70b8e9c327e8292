//! Which messages the newest records carry, acknowledged or not: after a
//! crash, the broker hands the bridge again the messages it had not seen
//! acknowledged, and some of them reached the buffer just before the crash.
//! Appended again they would be new records (new ids, and for the MQTT
//! sink new packet ids: a QoS 2 message delivered twice). The window is
//! between a buffer append and the broker's commit of the session's
//! acknowledgement, so those records are in the last segments.

use std::collections::HashSet;

use super::format::HEADER_LEN;
use super::reader::Reader;
use super::{Buffer, BufferError};

/// How many of the newest segments are read.
const SEGMENTS_READ: usize = 2;

impl Buffer {
    /// Of `wanted` (values of the record header `header`), those carried by
    /// a record of the newest segments, acknowledged or not. Leaves the
    /// reader where it was.
    pub fn recently_holds(
        &mut self,
        header: &str,
        wanted: &HashSet<Vec<u8>>,
    ) -> Result<HashSet<Vec<u8>>, BufferError> {
        let mut found = HashSet::new();
        let first = self.segments.len().saturating_sub(SEGMENTS_READ);
        let Some(start) = self.segments.get(first).map(|s| s.first_id) else {
            return Ok(found);
        };
        if wanted.is_empty() {
            return Ok(found);
        }
        let scan = Reader {
            segment: start,
            pos: HEADER_LEN,
            handle: None,
        };
        let saved = std::mem::replace(&mut self.reader, scan);
        let result = loop {
            match self.read_next() {
                Ok(Some(record)) => {
                    let carried = record.headers.iter().find(|(k, _)| k == header);
                    if let Some((_, v)) = carried.filter(|(_, v)| wanted.contains(v.as_ref())) {
                        found.insert(v.to_vec());
                    }
                }
                Ok(None) => break Ok(found),
                Err(e) => break Err(e),
            }
        };
        self.reader = saved;
        result
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::buffer::{BufferConfig, FullPolicy};
    use crate::record::Record;

    fn carrying(id: u64) -> Record {
        Record {
            id,
            destination: "t".into(),
            key: None,
            payload: Bytes::from(vec![b'x'; 100]),
            headers: vec![("msg-id".into(), Bytes::from(format!("m{id}")))],
            timestamp_ms: 0,
        }
    }

    #[test]
    fn acknowledged_records_of_the_newest_segments_are_found_and_the_reader_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BufferConfig::new(dir.path());
        config.segment_bytes = 512;
        config.fsync = false;
        config.full_policy = FullPolicy::Block;
        let mut b = Buffer::open(config.clone()).unwrap();
        let all: Vec<Record> = (0..30).map(carrying).collect();
        b.append(&all).unwrap();
        b.peek(25).unwrap();
        b.ack(25).unwrap();
        drop(b);
        let mut b = Buffer::open(config).unwrap();
        let wanted = ["m0", "m24", "m29", "m99"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let found = b.recently_holds("msg-id", &wanted).unwrap();
        assert!(
            found.contains(b"m24".as_slice()),
            "acknowledged, newest segment"
        );
        assert!(found.contains(b"m29".as_slice()));
        assert!(!found.contains(b"m99".as_slice()));
        assert!(
            !found.contains(b"m0".as_slice()),
            "an old segment is not read"
        );
        let next: Vec<u64> = b.peek(10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(next, [25, 26, 27, 28, 29], "the reader did not move");
    }
}
