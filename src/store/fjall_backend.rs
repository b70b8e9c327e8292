//! The fjall engine behind the store: one keyspace per record kind, atomic
//! write batches, and the scan that reads everything back at startup.
//!
//! Keys: sessions by client id; messages by id (u64, big endian); outbox
//! entries by client id, 0x00, sequence (u64 BE), so one prefix scan finds
//! a session's deliveries in order (client ids never contain NUL); incoming
//! QoS 2 ids by client id, 0x00, packet id (u16 BE); retained by topic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytestring::ByteString;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::records::{MessageRecord, OutboxRecord, SessionRecord, FORMAT_VERSION};
use super::{Op, StoreError};

const MARKER: &str = "SLUICE_FORMAT";

/// Drops every op on a message or outbox entry that is created and deleted
/// within the same group: nothing of it was ever on disk, so nothing needs
/// to be. Messages and outbox entries have ids that are never reused, so a
/// `PutMessage` or a `Queued` outbox put is always the key's first write.
/// This is what makes durable QoS 1 cheap when subscribers are online and
/// acknowledge before the next group commit.
fn cancel_short_lived(ops: Vec<Op>) -> Vec<Op> {
    use std::collections::HashSet;
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
            } if record.state == super::records::OutboxState::Queued => {
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

fn client_key(client: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(client.len() + 1 + suffix.len());
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k.extend_from_slice(suffix);
    k
}

fn split_client_key(key: &[u8]) -> Result<(ByteString, &[u8]), StoreError> {
    let pos = key
        .iter()
        .position(|b| *b == 0)
        .ok_or(StoreError::Corrupt("client key"))?;
    let client = std::str::from_utf8(&key[..pos]).map_err(|_| StoreError::Corrupt("client key"))?;
    Ok((ByteString::from(client), &key[pos + 1..]))
}

fn check_marker(dir: &Path) -> Result<(), StoreError> {
    let marker = dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let found = text
                .trim()
                .strip_prefix("sluice-data-format ")
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or(StoreError::Corrupt("format marker"))?;
            if found != FORMAT_VERSION {
                return Err(StoreError::WrongFormat {
                    path: dir.to_path_buf(),
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_files = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if has_files {
                return Err(StoreError::Foreign {
                    path: dir.to_path_buf(),
                });
            }
            std::fs::write(&marker, format!("sluice-data-format {FORMAT_VERSION}\n"))
                .map_err(|e| StoreError::Engine(format!("cannot write {}: {e}", marker.display())))
        }
        Err(e) => Err(StoreError::Engine(format!(
            "cannot read {}: {e}",
            marker.display()
        ))),
    }
}

impl FjallBackend {
    pub fn open(dir: &Path) -> Result<FjallBackend, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        check_marker(dir)?;
        let db = Database::builder(dir.join("db")).open()?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(FjallBackend {
            path: dir.to_path_buf(),
            sessions: ks("sessions")?,
            messages: ks("messages")?,
            outbox: ks("outbox")?,
            incoming: ks("incoming")?,
            retained: ks("retained")?,
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
                        client_id.as_bytes().as_ref(),
                        record.encode(),
                    );
                }
                Op::DeleteSession { client_id } => {
                    batch.commit()?;
                    batch = self.db.batch();
                    batch.remove(&self.sessions, client_id.as_bytes().as_ref());
                    let prefix = client_key(&client_id, &[]);
                    for ks in [&self.outbox, &self.incoming] {
                        for item in ks.prefix(&prefix) {
                            let key = item.key()?;
                            batch.remove(ks, key);
                        }
                    }
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
                        client_key(&client_id, &seq.to_be_bytes()),
                        record.encode(),
                    );
                }
                Op::DeleteOutbox { client_id, seq } => {
                    batch.remove(&self.outbox, client_key(&client_id, &seq.to_be_bytes()));
                }
                Op::PutIncoming {
                    client_id,
                    packet_id,
                } => {
                    batch.insert(
                        &self.incoming,
                        client_key(&client_id, &packet_id.to_be_bytes()),
                        [],
                    );
                }
                Op::DeleteIncoming {
                    client_id,
                    packet_id,
                } => {
                    batch.remove(
                        &self.incoming,
                        client_key(&client_id, &packet_id.to_be_bytes()),
                    );
                }
                Op::PutRetained { topic, message_id } => {
                    batch.insert(
                        &self.retained,
                        topic.as_bytes().as_ref(),
                        message_id.to_be_bytes(),
                    );
                }
                Op::DeleteRetained { topic } => {
                    batch.remove(&self.retained, topic.as_bytes().as_ref())
                }
            }
        }
        batch.commit()?;
        Ok(())
    }

    /// Reads everything back.
    pub fn load(&self) -> Result<Recovered, StoreError> {
        let mut r = Recovered::default();
        for item in self.sessions.iter() {
            let (k, v) = item.into_inner()?;
            let id = std::str::from_utf8(&k).map_err(|_| StoreError::Corrupt("session key"))?;
            r.sessions
                .push((ByteString::from(id), SessionRecord::decode(&v)?));
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
        for item in self.outbox.iter() {
            let (k, v) = item.into_inner()?;
            let (client, rest) = split_client_key(&k)?;
            let seq: [u8; 8] = rest
                .try_into()
                .map_err(|_| StoreError::Corrupt("outbox key"))?;
            r.outbox
                .push((client, u64::from_be_bytes(seq), OutboxRecord::decode(&v)?));
        }
        for item in self.incoming.iter() {
            let k = item.key()?;
            let (client, rest) = split_client_key(&k)?;
            let id: [u8; 2] = rest
                .try_into()
                .map_err(|_| StoreError::Corrupt("incoming key"))?;
            r.incoming.push((client, u16::from_be_bytes(id)));
        }
        for item in self.retained.iter() {
            let (k, v) = item.into_inner()?;
            let topic = std::str::from_utf8(&k).map_err(|_| StoreError::Corrupt("retained key"))?;
            let id: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("retained value"))?;
            r.retained
                .push((ByteString::from(topic), u64::from_be_bytes(id)));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{ProtocolVersion, QoS};
    use crate::store::records::OutboxState;

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
        std::fs::write(dir.path().join(MARKER), "sluice-data-format 999\n").unwrap();
        assert!(matches!(
            FjallBackend::open(dir.path()),
            Err(StoreError::WrongFormat { found: 999, .. })
        ));
    }
}
