//! Migration of older data directories, run at open. Format 1 keyed
//! sessions, outbox and incoming entries by client id and retained entries
//! by topic (too long for the engine's keys at the protocol's limits, see
//! `keys`); format 2 keys them by digest in new keyspaces.
//!
//! One atomic engine batch moves every entry from the format 1 keyspaces
//! to the format 2 ones, then the engine is synced, and only then the
//! marker says 2. A crash before the batch is durable leaves format 1 as
//! it was; a crash after it but before the marker leaves empty format 1
//! keyspaces, and the next start migrates nothing and writes the marker.
//! Messages kept their layout and stay where they are.

use bytestring::ByteString;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use super::keys;
use super::records::{encode_retained_value, encode_session_value, SessionRecord};
use super::StoreError;

/// Keyspaces of format 1 that format 2 replaced.
const V1_KEYSPACES: [&str; 4] = ["sessions", "outbox", "incoming", "retained"];

/// Keyspace names of format 2.
pub const SESSIONS: &str = "sessions_v2";
pub const OUTBOX: &str = "outbox_v2";
pub const INCOMING: &str = "incoming_v2";
pub const RETAINED: &str = "retained_v2";
pub const MESSAGES: &str = "messages";

/// The format of an engine whose marker was lost: 1 while a format 1
/// keyspace holds entries (a migration always empties them in the same
/// batch that fills format 2, so this is right even after a migration cut
/// short), else 2.
pub fn format_of(db: &Database) -> Result<u32, StoreError> {
    for name in V1_KEYSPACES {
        if db.keyspace_exists(name)
            && !db
                .keyspace(name, KeyspaceCreateOptions::default)?
                .is_empty()?
        {
            return Ok(1);
        }
    }
    Ok(2)
}

fn utf8(b: &[u8], what: &'static str) -> Result<ByteString, StoreError> {
    std::str::from_utf8(b)
        .map(ByteString::from)
        .map_err(|_| StoreError::Corrupt(what))
}

/// Format 1 outbox and incoming keys: client id, 0x00, suffix.
fn split_v1(key: &[u8]) -> Result<(ByteString, &[u8]), StoreError> {
    let pos = key
        .iter()
        .position(|b| *b == 0)
        .ok_or(StoreError::Corrupt("client key"))?;
    Ok((utf8(&key[..pos], "client key")?, &key[pos + 1..]))
}

/// Moves every format 1 entry to format 2 in one durable batch; returns
/// how many moved.
pub fn v1_to_v2(db: &Database) -> Result<usize, StoreError> {
    let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
    let (sessions, outbox, incoming, retained) =
        (ks(SESSIONS)?, ks(OUTBOX)?, ks(INCOMING)?, ks(RETAINED)?);
    let mut batch = db.batch();
    let mut moved = 0;
    for name in V1_KEYSPACES {
        if !db.keyspace_exists(name) {
            continue;
        }
        let old = ks(name)?;
        for item in old.iter() {
            let (k, v) = item.into_inner()?;
            match name {
                "sessions" => {
                    let client = utf8(&k, "session key")?;
                    let record = SessionRecord::decode_format(&v, 1)?;
                    batch.insert(
                        &sessions,
                        keys::digest(&client),
                        encode_session_value(&client, &record),
                    );
                }
                "outbox" | "incoming" => {
                    let (client, rest) = split_v1(&k)?;
                    let mut key = keys::digest(&client).to_vec();
                    key.extend_from_slice(rest);
                    let target = if name == "outbox" { &outbox } else { &incoming };
                    batch.insert(target, key, v);
                }
                _ => {
                    let topic = utf8(&k, "retained key")?;
                    let id: [u8; 8] = v
                        .as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("retained value"))?;
                    batch.insert(
                        &retained,
                        keys::digest(&topic),
                        encode_retained_value(u64::from_be_bytes(id), &topic),
                    );
                }
            }
            batch.remove(&old, k);
            moved += 1;
        }
    }
    batch.commit()?;
    db.persist(PersistMode::SyncAll)?;
    Ok(moved)
}

/// Deletes the format 1 keyspaces once they are empty (a migration moved
/// everything); best effort, since empty leftovers cost nothing and are
/// deleted on the next start.
pub fn drop_v1(db: &Database) {
    for name in V1_KEYSPACES {
        if !db.keyspace_exists(name) {
            continue;
        }
        let deleted = db
            .keyspace(name, KeyspaceCreateOptions::default)
            .and_then(|ks| match ks.is_empty()? {
                true => db.delete_keyspace(ks),
                false => Ok(()),
            });
        if let Err(e) = deleted {
            tracing::warn!(keyspace = name, error = %e, "cannot delete an old, empty keyspace");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;

    use super::*;
    use crate::codec::{ProtocolVersion, QoS};
    use crate::store::data_dir::{DB_DIR, MARKER};
    use crate::store::records::MessageRecord;
    use crate::store::FjallBackend;
    use crate::store::{OutboxRecord, OutboxState};

    fn session() -> SessionRecord {
        SessionRecord {
            protocol: ProtocolVersion::V311,
            session_expiry: u32::MAX,
            disconnected_at_ms: 5,
            will: None,
            will_delay: 0,
            subscriptions: vec![],
            username: None,
            owner_unknown: false,
        }
    }

    /// A session record as format 1 wrote it: no identity at the end.
    fn v1_session() -> Vec<u8> {
        let mut v = session().encode();
        assert_eq!(v.pop(), Some(0), "format 2 appends the identity");
        v
    }

    fn v1_client_key(client: &str, suffix: &[u8]) -> Vec<u8> {
        let mut k = client.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(suffix);
        k
    }

    /// Writes a format 1 data directory as Sluice 0.1 left it: marker,
    /// then the engine with format 1 keys.
    fn write_v1(dir: &Path, marker: &str) {
        std::fs::write(dir.join(MARKER), marker).unwrap();
        let db = Database::builder(dir.join(DB_DIR)).open().unwrap();
        let ks = |n: &str| db.keyspace(n, KeyspaceCreateOptions::default).unwrap();
        let (sessions, messages, outbox, incoming, retained) = (
            ks("sessions"),
            ks("messages"),
            ks("outbox"),
            ks("incoming"),
            ks("retained"),
        );
        sessions.insert("dev-1", v1_session()).unwrap();
        let message = MessageRecord {
            topic: "t/1".into(),
            payload: Bytes::from_static(b"kept"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: None,
            expires_at_ms: 0,
            publisher: None,
            username: None,
            accepted_ms: 0,
        };
        messages
            .insert(7u64.to_be_bytes(), message.encode())
            .unwrap();
        for seq in [2u64, 1] {
            let o = OutboxRecord {
                message_id: 7,
                qos: QoS::AtLeastOnce,
                retain: false,
                state: OutboxState::Queued,
                packet_id: 0,
                subscription_ids: vec![],
            };
            outbox
                .insert(v1_client_key("dev-1", &seq.to_be_bytes()), o.encode())
                .unwrap();
        }
        incoming
            .insert(v1_client_key("dev-1", &9u16.to_be_bytes()), [])
            .unwrap();
        retained.insert("t/1", 7u64.to_be_bytes()).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }

    fn assert_migrated(dir: &Path) {
        let b = FjallBackend::open(dir).unwrap();
        let r = b.load().unwrap();
        // Format 1 kept no identity: the first one to connect adopts it.
        let adopted_later = SessionRecord {
            owner_unknown: true,
            ..session()
        };
        assert_eq!(r.sessions, vec![("dev-1".into(), adopted_later)]);
        let seqs: Vec<_> = r.outbox.iter().map(|o| (o.0.clone(), o.1)).collect();
        assert_eq!(seqs, vec![("dev-1".into(), 1), ("dev-1".into(), 2)]);
        assert_eq!(r.incoming, vec![("dev-1".into(), 9)]);
        assert_eq!(r.retained, vec![("t/1".into(), 7)]);
        assert_eq!(r.messages[&7].payload, Bytes::from_static(b"kept"));
        assert_eq!(r.orphaned_entries, 0);
        assert_eq!(
            std::fs::read_to_string(dir.join(MARKER)).unwrap(),
            "sluice-data-format 2\n"
        );
        drop(b);
        let db = Database::builder(dir.join(DB_DIR)).open().unwrap();
        for name in V1_KEYSPACES {
            assert!(!db.keyspace_exists(name), "{name} left behind");
        }
    }

    #[test]
    fn a_format_1_directory_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        write_v1(dir.path(), "sluice-data-format 1\n");
        assert_migrated(dir.path());
        // And it opens again as format 2.
        assert_migrated(dir.path());
    }

    #[test]
    fn a_migration_cut_before_the_marker_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        write_v1(dir.path(), "sluice-data-format 1\n");
        {
            let db = Database::builder(dir.path().join(DB_DIR)).open().unwrap();
            v1_to_v2(&db).unwrap();
            // Crash here: the engine is format 2, the marker still says 1.
        }
        assert_migrated(dir.path());
    }

    #[test]
    fn a_format_1_directory_with_a_torn_marker_is_recovered_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        write_v1(dir.path(), "");
        assert_migrated(dir.path());
    }
}
