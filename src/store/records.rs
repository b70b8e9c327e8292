//! On-disk record formats. Hand-written, length-checked binary encodings:
//! a damaged record is a `Corrupt` error naming what failed, never a panic.
//! MQTT properties reuse the wire codec, so every field round-trips.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::codec::{
    Properties, PropertyScope, ProtocolVersion, QoS, Reader, RetainHandling, SubscriptionOptions,
    Will,
};

use super::StoreError;
use crate::session::{OutboxRecord, OutboxState};

/// Bumped whenever a record or key layout changes incompatibly; an older
/// data directory is migrated at open (see `migrate`).
///
/// 1: keys embedded client ids and topics. 2: keys are digests (see
/// `keys`), session values carry the client id and the identity, retained
/// values carry the topic.
pub const FORMAT_VERSION: u32 = 2;

pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn new() -> Enc {
        Enc(Vec::with_capacity(64))
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    fn properties(&mut self, p: &Properties) -> &mut Self {
        let mut buf = BytesMut::new();
        // Properties we store were decoded from the wire or built by us, so
        // they fit the wire format; an error would be a bug, stored as empty.
        if p.encode(&mut buf).is_err() {
            buf.clear();
            buf.extend_from_slice(&[0]);
        }
        self.bytes(&buf)
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Dec<'a> {
        Dec { buf, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.buf.len() < n {
            return Err(StoreError::Corrupt(self.what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, StoreError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<ByteString, StoreError> {
        let b = self.bytes()?;
        let s = std::str::from_utf8(b).map_err(|_| StoreError::Corrupt(self.what))?;
        Ok(ByteString::from(s))
    }
    fn qos(&mut self) -> Result<QoS, StoreError> {
        QoS::from_u8(self.u8()?).ok_or(StoreError::Corrupt(self.what))
    }
    fn properties(&mut self, scope: PropertyScope) -> Result<Properties, StoreError> {
        let b = Bytes::copy_from_slice(self.bytes()?);
        Properties::decode(&mut Reader::new(b), scope).map_err(|_| StoreError::Corrupt(self.what))
    }
    /// What is left to read.
    pub fn rest(self) -> &'a [u8] {
        self.buf
    }
    pub fn finish(&self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Corrupt(self.what))
        }
    }
}

/// A message kept for queued deliveries or as a retained message. Expiry
/// is wall-clock milliseconds since the Unix epoch, so it keeps counting
/// while the broker is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Option<Box<Properties>>,
    /// 0 = never expires.
    pub expires_at_ms: u64,
    pub publisher: Option<ByteString>,
    /// The publisher's user name and when the broker accepted the message
    /// (ms since the epoch), for bridges. Encoded last; a record written
    /// before they existed decodes with `None` and 0.
    pub username: Option<ByteString>,
    pub accepted_ms: u64,
}

impl MessageRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.bytes(self.topic.as_bytes())
            .bytes(&self.payload)
            .u8(self.qos.as_u8())
            .u8(u8::from(self.retain))
            .properties(self.properties.as_deref().unwrap_or(&Properties::default()))
            .u64(self.expires_at_ms);
        match &self.publisher {
            Some(p) => e.u8(1).bytes(p.as_bytes()),
            None => e.u8(0),
        };
        match &self.username {
            Some(u) => e.u8(1).bytes(u.as_bytes()),
            None => e.u8(0),
        };
        e.u64(self.accepted_ms);
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<MessageRecord, StoreError> {
        let mut d = Dec::new(buf, "message record");
        let topic = d.string()?;
        let payload = Bytes::copy_from_slice(d.bytes()?);
        let qos = d.qos()?;
        let retain = d.u8()? != 0;
        let properties = d.properties(PropertyScope::Publish)?;
        let properties = (!properties.is_empty()).then(|| Box::new(properties));
        let expires_at_ms = d.u64()?;
        let publisher = if d.u8()? == 1 {
            Some(d.string()?)
        } else {
            None
        };
        let (mut username, mut accepted_ms) = (None, 0);
        if !d.buf.is_empty() {
            if d.u8()? == 1 {
                username = Some(d.string()?);
            }
            accepted_ms = d.u64()?;
        }
        d.finish()?;
        Ok(MessageRecord {
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at_ms,
            publisher,
            username,
            accepted_ms,
        })
    }
}

// `OutboxState` and `OutboxRecord` are the session's (`session::outbox`);
// their on-disk format lives here.
impl OutboxRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.u64(self.message_id)
            .u8(self.qos.as_u8())
            .u8(u8::from(self.retain))
            .u8(self.state as u8)
            .u16(self.packet_id)
            .u32(self.subscription_ids.len() as u32);
        for id in &self.subscription_ids {
            e.u32(*id);
        }
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<OutboxRecord, StoreError> {
        let mut d = Dec::new(buf, "outbox record");
        let message_id = d.u64()?;
        let qos = d.qos()?;
        let retain = d.u8()? != 0;
        let state = match d.u8()? {
            0 => OutboxState::Queued,
            1 => OutboxState::Sent,
            2 => OutboxState::Released,
            _ => return Err(StoreError::Corrupt("outbox record")),
        };
        let packet_id = d.u16()?;
        let n = d.u32()? as usize;
        if n > 1 << 16 {
            return Err(StoreError::Corrupt("outbox record"));
        }
        let mut subscription_ids = Vec::with_capacity(n);
        for _ in 0..n {
            subscription_ids.push(d.u32()?);
        }
        d.finish()?;
        Ok(OutboxRecord {
            message_id,
            qos,
            retain,
            state,
            packet_id,
            subscription_ids,
        })
    }
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub filter: ByteString,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A persistent session between connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub protocol: ProtocolVersion,
    pub session_expiry: u32,
    /// Wall-clock ms when the last connection ended; 0 = it was connected
    /// when the broker stopped (a crash: treat as lost at restart).
    pub disconnected_at_ms: u64,
    pub will: Option<Will>,
    pub will_delay: u32,
    pub subscriptions: Vec<SubscriptionRecord>,
    /// Who owns the session: the authenticated identity of the last
    /// connection (user name, or certificate identity where the listener
    /// uses it as the user name), as `Control::username` holds it. Restored
    /// so ACL checks on delivery see the same identity after a restart.
    pub username: Option<ByteString>,
    /// Read from a format-1 record, which kept no identity: the first
    /// identity to connect with this client id adopts the session (an
    /// upgrade must not lock owners out of their sessions).
    pub owner_unknown: bool,
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos.as_u8()
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from_byte(b: u8) -> Result<SubscriptionOptions, StoreError> {
    let bad = StoreError::Corrupt("subscription options");
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(b & 3).ok_or(bad.clone())?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(bad),
        },
    })
}

impl SessionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.u8(self.protocol.level())
            .u32(self.session_expiry)
            .u64(self.disconnected_at_ms)
            .u32(self.will_delay);
        match &self.will {
            Some(w) => {
                e.u8(1)
                    .bytes(w.topic.as_bytes())
                    .bytes(&w.payload)
                    .u8(w.qos.as_u8())
                    .u8(u8::from(w.retain))
                    .properties(&w.properties);
            }
            None => {
                e.u8(0);
            }
        }
        e.u32(self.subscriptions.len() as u32);
        for s in &self.subscriptions {
            e.bytes(s.filter.as_bytes())
                .u8(options_byte(&s.options))
                .u32(s.identifier.unwrap_or(0));
        }
        // 0: anonymous, 1: this identity, 2: unknown (migrated from
        // format 1, adopted by the first identity to connect).
        match (&self.username, self.owner_unknown) {
            (_, true) => e.u8(2),
            (Some(u), false) => e.u8(1).bytes(u.as_bytes()),
            (None, false) => e.u8(0),
        };
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<SessionRecord, StoreError> {
        Self::decode_format(buf, FORMAT_VERSION)
    }

    /// Decodes a record as data format `format` wrote it (1 had no
    /// identity); for the migration of older data directories.
    pub fn decode_format(buf: &[u8], format: u32) -> Result<SessionRecord, StoreError> {
        let mut d = Dec::new(buf, "session record");
        let protocol = match d.u8()? {
            3 => ProtocolVersion::V31,
            4 => ProtocolVersion::V311,
            5 => ProtocolVersion::V5,
            _ => return Err(StoreError::Corrupt("session record")),
        };
        let session_expiry = d.u32()?;
        let disconnected_at_ms = d.u64()?;
        let will_delay = d.u32()?;
        let will = if d.u8()? == 1 {
            let topic = d.string()?;
            let payload = Bytes::copy_from_slice(d.bytes()?);
            let qos = d.qos()?;
            let retain = d.u8()? != 0;
            let properties = d.properties(PropertyScope::Will)?;
            Some(Will {
                topic,
                payload,
                qos,
                retain,
                properties,
            })
        } else {
            None
        };
        let n = d.u32()? as usize;
        if n > 1 << 20 {
            return Err(StoreError::Corrupt("session record"));
        }
        let mut subscriptions = Vec::with_capacity(n);
        for _ in 0..n {
            let filter = d.string()?;
            let options = options_from_byte(d.u8()?)?;
            let id = d.u32()?;
            subscriptions.push(SubscriptionRecord {
                filter,
                options,
                identifier: (id != 0).then_some(id),
            });
        }
        let (username, owner_unknown) = if format >= 2 {
            match d.u8()? {
                0 => (None, false),
                1 => (Some(d.string()?), false),
                2 => (None, true),
                _ => return Err(StoreError::Corrupt("session record")),
            }
        } else {
            (None, true)
        };
        d.finish()?;
        Ok(SessionRecord {
            protocol,
            session_expiry,
            disconnected_at_ms,
            will,
            will_delay,
            subscriptions,
            username,
            owner_unknown,
        })
    }
}

/// A session's value in format 2: its client id (the key is only a digest
/// of it, see `keys`), then the record.
pub fn encode_session_value(client_id: &str, record: &SessionRecord) -> Vec<u8> {
    let mut e = Enc::new();
    e.bytes(client_id.as_bytes());
    e.0.extend_from_slice(&record.encode());
    e.0
}

pub fn decode_session_value(buf: &[u8]) -> Result<(ByteString, SessionRecord), StoreError> {
    let mut d = Dec::new(buf, "session record");
    let client_id = d.string()?;
    Ok((client_id, SessionRecord::decode(d.rest())?))
}

/// A retained entry's value in format 2: the message id, then the topic
/// (the key is only a digest of it).
pub fn encode_retained_value(message_id: u64, topic: &str) -> Vec<u8> {
    let mut e = Enc::new();
    e.u64(message_id).bytes(topic.as_bytes());
    e.0
}

pub fn decode_retained_value(buf: &[u8]) -> Result<(u64, ByteString), StoreError> {
    let mut d = Dec::new(buf, "retained value");
    let id = d.u64()?;
    let topic = d.string()?;
    d.finish()?;
    Ok((id, topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_record_round_trips() {
        let m = MessageRecord {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"\x00\xffdata"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Some(Box::new(Properties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into())],
                correlation_data: Some(Bytes::from_static(b"c")),
                ..Default::default()
            })),
            expires_at_ms: 1_700_000_000_000,
            publisher: Some("dev-1".into()),
            username: Some("alice".into()),
            accepted_ms: 1_700_000_000_123,
        };
        assert_eq!(MessageRecord::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn session_record_round_trips() {
        let s = SessionRecord {
            protocol: ProtocolVersion::V5,
            session_expiry: 3600,
            disconnected_at_ms: 42,
            will: Some(Will {
                topic: "dead".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties {
                    will_delay_interval: Some(5),
                    ..Default::default()
                },
            }),
            will_delay: 5,
            subscriptions: vec![SubscriptionRecord {
                filter: "$share/g/a/#".into(),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
                identifier: Some(7),
            }],
            username: Some("meter-a".into()),
            owner_unknown: false,
        };
        assert_eq!(SessionRecord::decode(&s.encode()).unwrap(), s);
        // A session migrated from format 1 keeps "owner unknown" across
        // rewrites until an identity adopts it.
        let migrated = SessionRecord {
            username: None,
            owner_unknown: true,
            ..s.clone()
        };
        assert_eq!(SessionRecord::decode(&migrated.encode()).unwrap(), migrated);
        let anonymous = SessionRecord {
            username: None,
            ..s
        };
        assert_eq!(
            SessionRecord::decode(&anonymous.encode()).unwrap(),
            anonymous
        );
    }

    #[test]
    fn outbox_record_round_trips() {
        let o = OutboxRecord {
            message_id: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            state: OutboxState::Sent,
            packet_id: 300,
            subscription_ids: vec![1, 2],
        };
        assert_eq!(OutboxRecord::decode(&o.encode()).unwrap(), o);
    }

    #[test]
    fn truncated_records_are_corrupt_not_panics() {
        let o = OutboxRecord {
            message_id: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            state: OutboxState::Queued,
            packet_id: 0,
            subscription_ids: vec![],
        }
        .encode();
        for n in 0..o.len() {
            assert!(OutboxRecord::decode(&o[..n]).is_err());
        }
        assert!(SessionRecord::decode(&[9, 9, 9]).is_err());
        assert!(MessageRecord::decode(&[0xff; 3]).is_err());
    }
}
