//! The fjall engine behind the store: one keyspace per record kind, atomic
//! write batches, and the scan that reads everything back at startup.
//!
//! Keys (format 2, see `keys`): sessions by the digest of the client id;
//! messages by id (u64, big endian); outbox entries by session digest and
//! sequence (u64 BE), so one prefix scan finds a session's deliveries in
//! order; incoming QoS 2 ids by session digest and packet id (u16 BE);
//! retained by the digest of the topic. Client ids and topics live in the
//! values.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use bytestring::ByteString;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use super::keys::{self, Digest};
use super::migrate::{INCOMING, MESSAGES, OUTBOX, RETAINED, SESSIONS};
use super::records::{
    decode_retained_value, decode_session_value, encode_retained_value, encode_session_value,
    MessageRecord, SessionRecord,
};
use super::{data_dir, Op, OutboxRecord, OutboxState, StoreError};

/// Drops every op on a message or outbox entry that is created and deleted
/// within the same group: nothing of it was ever on disk, so nothing needs
/// to be. Messages and outbox entries have ids that are never reused, so a
/// `PutMessage` or a `Queued` outbox put is always the key's first write.
/// This is what makes durable QoS 1 cheap when subscribers are online and
/// acknowledge before the next group commit.
fn cancel_short_lived(ops: Vec<Op>) -> Vec<Op> {
    let mut messages = HashSet::new();
    let mut outbox = HashSet::new();
    for op in &ops {
        match op {
            Op::PutMessage { id, .. } => {
                messages.insert(*id);
            }
            Op::PutOutbox {
                client_id,
                seq,
                record,
            } if record.state == OutboxState::Queued => {
                outbox.insert((client_id.clone(), *seq));
            }
            _ => {}
        }
    }
    let mut dead_messages = HashSet::new();
    let mut dead_outbox = HashSet::new();
    for op in &ops {
        match op {
            Op::DeleteMessage { id } if messages.contains(id) => {
                dead_messages.insert(*id);
            }
            Op::DeleteOutbox { client_id, seq } if outbox.contains(&(client_id.clone(), *seq)) => {
                dead_outbox.insert((client_id.clone(), *seq));
            }
            _ => {}
        }
    }
    if dead_messages.is_empty() && dead_outbox.is_empty() {
        return ops;
    }
    ops.into_iter()
        .filter(|op| match op {
            Op::PutMessage { id, .. } | Op::DeleteMessage { id } => !dead_messages.contains(id),
            Op::PutOutbox { client_id, seq, .. } | Op::DeleteOutbox { client_id, seq } => {
                !dead_outbox.contains(&(client_id.clone(), *seq))
            }
            _ => true,
        })
        .collect()
}

/// Everything read back from disk at startup.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<(ByteString, SessionRecord)>,
    pub messages: HashMap<u64, MessageRecord>,
    /// (client id, sequence, record), in key order: per client by sequence.
    pub outbox: Vec<(ByteString, u64, OutboxRecord)>,
    pub incoming: Vec<(ByteString, u16)>,
    pub retained: Vec<(ByteString, u64)>,
    /// Digests of sessions that are gone but left outbox or incoming
    /// entries (e.g. a delivery journaled after the session was deleted).
    pub orphaned_sessions: Vec<Digest>,
    /// How many entries those are.
    pub orphaned_entries: usize,
}

pub struct FjallBackend {
    path: PathBuf,
    db: Database,
    sessions: Keyspace,
    messages: Keyspace,
    outbox: Keyspace,
    incoming: Keyspace,
    retained: Keyspace,
}

impl FjallBackend {
    pub fn open(dir: &Path) -> Result<FjallBackend, StoreError> {
        let db = data_dir::open(dir)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(FjallBackend {
            path: dir.to_path_buf(),
            sessions: ks(SESSIONS)?,
            messages: ks(MESSAGES)?,
            outbox: ks(OUTBOX)?,
            incoming: ks(INCOMING)?,
            retained: ks(RETAINED)?,
            db,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn disk_usage(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Queues the removal of every outbox and incoming entry of a session.
    fn remove_session_entries(
        &self,
        batch: &mut OwnedWriteBatch,
        session: &Digest,
    ) -> Result<(), StoreError> {
        for ks in [&self.outbox, &self.incoming] {
            for item in ks.prefix(session) {
                let key = item.key()?;
                batch.remove(ks, key);
            }
        }
        Ok(())
    }

    /// Applies ops in order as atomic batches. A session delete scans the
    /// session's keys, so it first commits what precedes it.
    pub fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let ops = cancel_short_lived(ops);
        let mut batch = self.db.batch();
        for op in ops {
            match op {
                Op::PutSession { client_id, record } => {
                    batch.insert(
                        &self.sessions,
                        keys::digest(&client_id),
                        encode_session_value(&client_id, &record),
                    );
                }
                Op::DeleteSession { client_id } => {
                    batch.commit()?;
                    batch = self.db.batch();
                    let session = keys::digest(&client_id);
                    batch.remove(&self.sessions, session);
                    self.remove_session_entries(&mut batch, &session)?;
                }
                Op::DeleteOrphaned { session } => {
                    batch.commit()?;
                    batch = self.db.batch();
                    self.remove_session_entries(&mut batch, &session)?;
                }
                Op::PutMessage { id, record } => {
                    batch.insert(&self.messages, id.to_be_bytes(), record.encode());
                }
                Op::DeleteMessage { id } => batch.remove(&self.messages, id.to_be_bytes()),
                Op::PutOutbox {
                    client_id,
                    seq,
                    record,
                } => {
                    batch.insert(
                        &self.outbox,
                        keys::outbox(&keys::digest(&client_id), seq),
                        record.encode(),
                    );
                }
                Op::DeleteOutbox { client_id, seq } => {
                    batch.remove(&self.outbox, keys::outbox(&keys::digest(&client_id), seq));
                }
                Op::PutIncoming {
                    client_id,
                    packet_id,
                } => {
                    batch.insert(
                        &self.incoming,
                        keys::incoming(&keys::digest(&client_id), packet_id),
                        [],
                    );
                }
                Op::DeleteIncoming {
                    client_id,
                    packet_id,
                } => {
                    batch.remove(
                        &self.incoming,
                        keys::incoming(&keys::digest(&client_id), packet_id),
                    );
                }
                Op::PutRetained { topic, message_id } => {
                    batch.insert(
                        &self.retained,
                        keys::digest(&topic),
                        encode_retained_value(message_id, &topic),
                    );
                }
                Op::DeleteRetained { topic } => batch.remove(&self.retained, keys::digest(&topic)),
            }
        }
        batch.commit()?;
        Ok(())
    }

    /// Reads everything back.
    pub fn load(&self) -> Result<Recovered, StoreError> {
        let mut r = Recovered::default();
        let mut clients: HashMap<Digest, ByteString> = HashMap::new();
        for item in self.sessions.iter() {
            let (k, v) = item.into_inner()?;
            let (client_id, record) = decode_session_value(&v)?;
            if k.as_ref() != keys::digest(&client_id) {
                return Err(StoreError::Corrupt("session key"));
            }
            clients.insert(keys::digest(&client_id), client_id.clone());
            r.sessions.push((client_id, record));
        }
        for item in self.messages.iter() {
            let (k, v) = item.into_inner()?;
            let id: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("message key"))?;
            r.messages
                .insert(u64::from_be_bytes(id), MessageRecord::decode(&v)?);
        }
        let mut orphans = HashSet::new();
        for item in self.outbox.iter() {
            let (k, v) = item.into_inner()?;
            let (session, rest) = keys::split(&k).ok_or(StoreError::Corrupt("outbox key"))?;
            let seq: [u8; 8] = rest
                .try_into()
                .map_err(|_| StoreError::Corrupt("outbox key"))?;
            match clients.get(&session) {
                Some(client) => r.outbox.push((
                    client.clone(),
                    u64::from_be_bytes(seq),
                    OutboxRecord::decode(&v)?,
                )),
                None => {
                    orphans.insert(session);
                    r.orphaned_entries += 1;
                }
            }
        }
        for item in self.incoming.iter() {
            let k = item.key()?;
            let (session, rest) = keys::split(&k).ok_or(StoreError::Corrupt("incoming key"))?;
            let id: [u8; 2] = rest
                .try_into()
                .map_err(|_| StoreError::Corrupt("incoming key"))?;
            match clients.get(&session) {
                Some(client) => r.incoming.push((client.clone(), u16::from_be_bytes(id))),
                None => {
                    orphans.insert(session);
                    r.orphaned_entries += 1;
                }
            }
        }
        r.orphaned_sessions = orphans.into_iter().collect();
        for item in self.retained.iter() {
            let (k, v) = item.into_inner()?;
            let (id, topic) = decode_retained_value(&v)?;
            if k.as_ref() != keys::digest(&topic) {
                return Err(StoreError::Corrupt("retained key"));
            }
            r.retained.push((topic, id));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{ProtocolVersion, QoS};
    use crate::store::OutboxState;

    fn message(topic: &str) -> MessageRecord {
        MessageRecord {
            topic: topic.into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            expires_at_ms: 0,
            publisher: None,
            username: None,
            accepted_ms: 0,
        }
    }

    fn outbox(id: u64) -> OutboxRecord {
        OutboxRecord {
            message_id: id,
            qos: QoS::AtLeastOnce,
            retain: false,
            state: OutboxState::Queued,
            packet_id: 0,
            subscription_ids: vec![],
        }
    }

    fn session() -> SessionRecord {
        SessionRecord {
            protocol: ProtocolVersion::V5,
            session_expiry: 60,
            disconnected_at_ms: 0,
            will: None,
            will_delay: 0,
            subscriptions: vec![],
            username: None,
            owner_unknown: false,
        }
    }

    #[test]
    fn writes_survive_reopen_and_session_delete_removes_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = FjallBackend::open(dir.path()).unwrap();
            b.apply(vec![
                Op::PutSession {
                    client_id: "a".into(),
                    record: Box::new(session()),
                },
                Op::PutSession {
                    client_id: "ab".into(),
                    record: Box::new(session()),
                },
                Op::PutMessage {
                    id: 1,
                    record: message("t"),
                },
                Op::PutOutbox {
                    client_id: "a".into(),
                    seq: 2,
                    record: outbox(1),
                },
                Op::PutOutbox {
                    client_id: "a".into(),
                    seq: 1,
                    record: outbox(1),
                },
                Op::PutOutbox {
                    client_id: "ab".into(),
                    seq: 1,
                    record: outbox(1),
                },
                Op::PutIncoming {
                    client_id: "a".into(),
                    packet_id: 7,
                },
                Op::PutRetained {
                    topic: "t".into(),
                    message_id: 1,
                },
            ])
            .unwrap();
            b.sync().unwrap();
        }
        let b = FjallBackend::open(dir.path()).unwrap();
        let r = b.load().unwrap();
        assert_eq!(r.sessions.len(), 2);
        let a_seqs: Vec<u64> = r
            .outbox
            .iter()
            .filter(|o| o.0 == "a")
            .map(|o| o.1)
            .collect();
        assert_eq!(a_seqs, vec![1, 2], "outbox in sequence order");
        assert_eq!(r.incoming, vec![("a".into(), 7)]);
        assert_eq!(r.retained, vec![("t".into(), 1)]);
        b.apply(vec![Op::DeleteSession {
            client_id: "a".into(),
        }])
        .unwrap();
        let r = b.load().unwrap();
        assert_eq!(r.sessions.len(), 1);
        assert_eq!(r.outbox.len(), 1, "only the other client's entry is left");
        assert_eq!(r.outbox[0].0, "ab");
        assert!(r.incoming.is_empty());
    }

    #[test]
    fn entries_created_and_deleted_in_one_group_never_reach_the_disk() {
        let ops = vec![
            Op::PutMessage {
                id: 1,
                record: message("t"),
            },
            Op::PutOutbox {
                client_id: "a".into(),
                seq: 1,
                record: outbox(1),
            },
            Op::PutMessage {
                id: 2,
                record: message("u"),
            },
            Op::DeleteOutbox {
                client_id: "a".into(),
                seq: 1,
            },
            Op::DeleteMessage { id: 1 },
            // A delete of something from an earlier group stays.
            Op::DeleteOutbox {
                client_id: "a".into(),
                seq: 0,
            },
        ];
        let kept = cancel_short_lived(ops);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(matches!(kept[0], Op::PutMessage { id: 2, .. }));
        assert!(matches!(kept[1], Op::DeleteOutbox { seq: 0, .. }));
        // And the outcome on disk is as if all ops had been applied.
        let dir = tempfile::tempdir().unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        b.apply(vec![
            Op::PutMessage {
                id: 7,
                record: message("t"),
            },
            Op::PutOutbox {
                client_id: "a".into(),
                seq: 3,
                record: outbox(7),
            },
            Op::DeleteOutbox {
                client_id: "a".into(),
                seq: 3,
            },
            Op::DeleteMessage { id: 7 },
        ])
        .unwrap();
        let r = b.load().unwrap();
        assert!(r.messages.is_empty() && r.outbox.is_empty());
    }

    #[test]
    fn damaged_record_is_an_error_not_a_panic_or_reset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = FjallBackend::open(dir.path()).unwrap();
            b.sessions.insert("broken", [0xff, 0x00, 0x01]).unwrap();
            b.sync().unwrap();
        }
        let b = FjallBackend::open(dir.path()).unwrap();
        assert!(matches!(
            b.load(),
            Err(StoreError::Corrupt("session record"))
        ));
        assert!(
            b.sessions.contains_key("broken").unwrap(),
            "nothing is reset"
        );
    }

    #[test]
    fn client_ids_and_topics_of_the_protocol_limit_fit_the_keys() {
        // 65,535 bytes is the most an MQTT string can carry.
        let long: ByteString = "c".repeat(65_535).into();
        let topic: ByteString = "t".repeat(65_535).into();
        let dir = tempfile::tempdir().unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        b.apply(vec![
            Op::PutSession {
                client_id: long.clone(),
                record: Box::new(session()),
            },
            Op::PutMessage {
                id: 1,
                record: message("t"),
            },
            Op::PutOutbox {
                client_id: long.clone(),
                seq: 1,
                record: outbox(1),
            },
            Op::PutIncoming {
                client_id: long.clone(),
                packet_id: 3,
            },
            Op::PutRetained {
                topic: topic.clone(),
                message_id: 1,
            },
        ])
        .unwrap();
        b.sync().unwrap();
        drop(b);
        let b = FjallBackend::open(dir.path()).unwrap();
        let r = b.load().unwrap();
        assert_eq!(r.sessions[0].0, long);
        assert_eq!(r.outbox[0].0, long);
        assert_eq!(r.incoming, vec![(long.clone(), 3)]);
        assert_eq!(r.retained, vec![(topic, 1)]);
        b.apply(vec![Op::DeleteSession { client_id: long }])
            .unwrap();
        let r = b.load().unwrap();
        assert!(r.sessions.is_empty() && r.outbox.is_empty() && r.incoming.is_empty());
    }

    #[test]
    fn entries_of_a_deleted_session_are_reported_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        b.apply(vec![Op::PutOutbox {
            client_id: "gone".into(),
            seq: 1,
            record: outbox(1),
        }])
        .unwrap();
        let r = b.load().unwrap();
        assert!(r.outbox.is_empty());
        assert_eq!(r.orphaned_entries, 1);
        b.apply(vec![Op::DeleteOrphaned {
            session: r.orphaned_sessions[0],
        }])
        .unwrap();
        assert_eq!(b.load().unwrap().orphaned_entries, 0);
    }

    #[test]
    fn foreign_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something.txt"), "not ours").unwrap();
        assert!(matches!(
            FjallBackend::open(dir.path()),
            Err(StoreError::Foreign { .. })
        ));
    }

    #[test]
    fn other_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(data_dir::MARKER),
            "sluice-data-format 999\n",
        )
        .unwrap();
        assert!(matches!(
            FjallBackend::open(dir.path()),
            Err(StoreError::WrongFormat { found: 999, .. })
        ));
    }
}
