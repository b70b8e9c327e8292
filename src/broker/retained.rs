//! Retained messages (3.3.1.3): the last retained message per topic name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use crate::session::Message;
use crate::topic::filter_matches;

#[derive(Debug, Default)]
pub struct RetainedStore {
    by_topic: HashMap<ByteString, Arc<Message>>,
}

impl RetainedStore {
    /// Stores, replaces, or (empty payload) clears the topic's message.
    pub fn put(&mut self, msg: &Arc<Message>) {
        if msg.payload.is_empty() {
            self.by_topic.remove(&msg.topic);
        } else {
            self.by_topic.insert(msg.topic.clone(), Arc::clone(msg));
        }
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Live retained messages matching `filter`, in topic order (stable for
    /// clients and tests).
    pub fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let mut out: Vec<Arc<Message>> = self
            .by_topic
            .values()
            .filter(|m| !m.is_expired(now) && filter_matches(filter, &m.topic))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// Drops expired messages; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let before = self.by_topic.len();
        self.by_topic.retain(|_, m| !m.is_expired(now));
        before - self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::codec::QoS;

    fn msg(topic: &str, payload: &'static [u8], expires_at: Option<Instant>) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: None,
            expires_at,
            publisher: None,
            stored: None,
        })
    }

    #[test]
    fn store_replace_and_clear() {
        let mut r = RetainedStore::default();
        let now = Instant::now();
        r.put(&msg("a/b", b"1", None));
        r.put(&msg("a/b", b"2", None));
        assert_eq!(r.matching("a/+", now)[0].payload, Bytes::from_static(b"2"));
        r.put(&msg("a/b", b"", None));
        assert!(r.is_empty());
    }

    #[test]
    fn expired_messages_are_not_delivered() {
        let mut r = RetainedStore::default();
        let now = Instant::now();
        r.put(&msg("a", b"1", Some(now + Duration::from_secs(1))));
        assert_eq!(r.matching("#", now).len(), 1);
        assert!(r.matching("#", now + Duration::from_secs(2)).is_empty());
        assert_eq!(r.purge_expired(now + Duration::from_secs(2)), 1);
    }

    #[test]
    fn dollar_topics_need_explicit_filters() {
        let mut r = RetainedStore::default();
        r.put(&msg("$SYS/x", b"1", None));
        assert!(r.matching("#", Instant::now()).is_empty());
        assert_eq!(r.matching("$SYS/#", Instant::now()).len(), 1);
    }
}
