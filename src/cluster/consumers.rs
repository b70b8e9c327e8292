//! A persistent session's place in the cluster: one durable JetStream
//! consumer per session (`s_<hash of the client id>`) on the messages
//! stream. Its subject filters are the session's subscriptions, so the
//! stream (interest retention) keeps every QoS 1/2 message one of them
//! matches until the session's node acknowledges it, and that happens
//! only when the client has acknowledged it (`super::feed`): a node that
//! dies takes nothing with it, the node the client reconnects to reads on
//! from the same consumer. The consumer's metadata carries the session
//! record (subscriptions, expiry, owner), so that node also knows what the
//! session was; its inactivity threshold is the session expiry, so
//! JetStream ends a session whose node died and whose client never came
//! back.
//!
//! Changes go through a few ordered workers (one per client id, chosen by
//! its hash), so a session's end and a new session's first subscription
//! reach JetStream in the order they happened here.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{ConsumerErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use base64::Engine;
use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot, watch};

use super::digest::short_hash;
use super::status::ClusterStats;
use super::subject::SubjectSpace;
use crate::store::SessionRecord;

/// Metadata key of the session record (base64 of the store's encoding).
const SESSION_KEY: &str = "sluice_session";

/// The largest session record a consumer's metadata holds: NATS keeps at
/// most 128 KiB of metadata, and the record goes in base64 (4 bytes for
/// 3), with a margin for the key.
const RECORD_BYTES_MAX: usize = (128 * 1024 - 1024) / 4 * 3;

/// The record as a consumer keeps it: without the will (wills have their
/// own bucket).
fn kept_bytes(record: &SessionRecord) -> Vec<u8> {
    let mut kept = record.clone();
    kept.will = None;
    kept.encode()
}

/// The bytes `record` can still grow by in its consumer's metadata.
pub fn record_room(record: &SessionRecord) -> usize {
    RECORD_BYTES_MAX.saturating_sub(kept_bytes(record).len())
}

/// Most messages a session's consumer hands out unacknowledged: its node
/// holds at most this many of them in memory for an offline client (and
/// never more than a session's queue takes, `limits.max_queued_messages`:
/// the rest waits in the stream rather than being dropped).
const MAX_UNACKNOWLEDGED: usize = 1000;

/// Bound on one change's round trips (a SUBACK waits for it).
const CHANGE_WITHIN: Duration = Duration::from_secs(10);

/// How many ordered workers apply changes.
const WORKERS: usize = 4;

/// A change to a session's consumer.
enum Job {
    /// Create or update it from the session's record; `done` is sent
    /// once JetStream has it (dropped unsent if it could not be done).
    Save {
        client_id: ByteString,
        record: Box<SessionRecord>,
        done: Option<oneshot::Sender<()>>,
    },
    /// The session ended: delete it.
    Delete {
        client_id: ByteString,
        done: Option<oneshot::Sender<()>>,
    },
}

/// The sessions' consumers of one node.
pub struct Consumers {
    /// The messages stream, once it exists.
    pub stream: OnceLock<Stream>,
    ready: watch::Sender<bool>,
    space: SubjectSpace,
    /// A subject no topic maps to: the filter of a session without
    /// subscriptions (a consumer needs one, and must not take everything).
    nothing: String,
    redeliver_after: Duration,
    max_unacknowledged: i64,
    workers: Vec<mpsc::UnboundedSender<Job>>,
    stats: Arc<ClusterStats>,
}

/// The consumer name of `client_id`'s session.
pub fn consumer_name(client_id: &str) -> String {
    format!("s_{}", short_hash(client_id))
}

/// The longest client id a consumer's description shows: NATS refuses a
/// description over 4,096 bytes, and MQTT allows client ids of 65,535.
const DESCRIBED_ID_BYTES: usize = 256;

/// A consumer's description: which session it is (its name is a hash).
fn description(client_id: &str) -> String {
    let mut end = client_id.len().min(DESCRIBED_ID_BYTES);
    while !client_id.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < client_id.len() { "…" } else { "" };
    format!("Sluice session {}{more}", &client_id[..end])
}

impl Consumers {
    /// The workers run until `stop`.
    pub fn start(
        prefix: &str,
        space: SubjectSpace,
        (redeliver_after, max_queued): (Duration, usize),
        stats: Arc<ClusterStats>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Consumers> {
        let (ready, _) = watch::channel(false);
        let mut receivers = Vec::with_capacity(WORKERS);
        let workers = (0..WORKERS)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                receivers.push(rx);
                tx
            })
            .collect();
        let consumers = Arc::new(Consumers {
            stream: OnceLock::new(),
            ready,
            space,
            nothing: format!("{prefix}.m.x"),
            redeliver_after,
            max_unacknowledged: i64::try_from(max_queued.min(MAX_UNACKNOWLEDGED)).unwrap_or(1),
            workers,
            stats,
        });
        for rx in receivers {
            tokio::spawn(work(Arc::clone(&consumers), rx, stop.clone()));
        }
        consumers
    }

    /// The stream exists: changes may go ahead.
    pub fn set_stream(&self, stream: Stream) {
        let _ = self.stream.set(stream);
        self.ready.send_replace(true);
    }

    fn send(&self, client_id: &ByteString, job: Job) {
        let worker = usize::from(short_hash(client_id).as_bytes()[0]) % WORKERS;
        let _ = self.workers[worker].send(job);
    }

    /// Records the session's subscriptions (and the rest of its record,
    /// but its will: wills have their own bucket); the returned signal
    /// says it is done.
    pub fn save(&self, client_id: &ByteString, record: SessionRecord) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        let job = Job::Save {
            client_id: client_id.clone(),
            record: Box::new(record),
            done: Some(done),
        };
        self.send(client_id, job);
        wait
    }

    /// Deletes the session's consumer (its messages go, unless another
    /// session's consumer keeps them).
    pub fn delete(&self, client_id: &ByteString) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        let job = Job::Delete {
            client_id: client_id.clone(),
            done: Some(done),
        };
        self.send(client_id, job);
        wait
    }

    /// The session record another node left in `client_id`'s consumer, if
    /// the consumer exists.
    pub async fn fetch(&self, client_id: &str) -> Result<Option<SessionRecord>, String> {
        let Some(stream) = self.stream.get() else {
            return Ok(None);
        };
        let info = match stream.consumer_info(consumer_name(client_id)).await {
            Ok(info) => info,
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let Some(encoded) = info.config.metadata.get(SESSION_KEY) else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| e.to_string())?;
        SessionRecord::decode(&bytes)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// The consumer a session record calls for.
    fn config(&self, client_id: &str, record: &SessionRecord) -> pull::Config {
        let filters: Vec<String> = record
            .subscriptions
            .iter()
            .filter_map(|s| crate::topic::TopicFilter::parse(s.filter.clone(), usize::MAX).ok())
            .filter(|f| f.share_group.is_none())
            .flat_map(|f| self.space.filter_subjects(&f.filter))
            .collect();
        let mut filter_subjects = without_covered(filters);
        if filter_subjects.is_empty() {
            filter_subjects.push(self.nothing.clone());
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(kept_bytes(record));
        let inactive_threshold = match record.session_expiry {
            u32::MAX => Duration::ZERO,
            secs => Duration::from_secs(u64::from(secs.max(1))),
        };
        pull::Config {
            durable_name: Some(consumer_name(client_id)),
            description: Some(description(client_id)),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.redeliver_after,
            max_ack_pending: self.max_unacknowledged,
            filter_subjects,
            inactive_threshold,
            metadata: HashMap::from([(SESSION_KEY.to_owned(), encoded)]),
            ..Default::default()
        }
    }

    async fn apply(&self, job: &Job) -> Result<(), String> {
        let Some(stream) = self.stream.get() else {
            return Err("stream not ready".into());
        };
        match job {
            Job::Save {
                client_id, record, ..
            } => {
                let config = self.config(client_id, record);
                stream
                    .create_consumer(config)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Job::Delete { client_id, .. } => {
                match stream.delete_consumer(&consumer_name(client_id)).await {
                    Ok(_) => Ok(()),
                    Err(e) => match e.kind() {
                        // Already gone: what a delete is for.
                        ConsumerErrorKind::JetStream(j)
                            if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
                        {
                            Ok(())
                        }
                        _ => Err(e.to_string()),
                    },
                }
            }
        }
    }
}

/// Applies one worker's changes in order until `stop`.
async fn work(
    consumers: Arc<Consumers>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ready = consumers.ready.subscribe();
    loop {
        let job = tokio::select! {
            job = jobs.recv() => match job { Some(j) => j, None => return },
            _ = stop.changed() => return,
        };
        let outcome = tokio::time::timeout(CHANGE_WITHIN, async {
            let _ = ready.wait_for(|r| *r).await;
            let mut delay = Duration::from_millis(100);
            loop {
                match consumers.apply(&job).await {
                    Ok(()) => return Ok(()),
                    Err(e) if delay > Duration::from_secs(2) => return Err(e),
                    Err(_) => {}
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        })
        .await;
        let (client_id, done) = match job {
            Job::Save {
                client_id, done, ..
            }
            | Job::Delete { client_id, done } => (client_id, done),
        };
        match outcome {
            Ok(Ok(())) => {
                ClusterStats::add(&consumers.stats.sessions_recorded, 1);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Ok(Err(e)) => {
                ClusterStats::add(&consumers.stats.sessions_unrecorded, 1);
                tracing::warn!(client_id = %client_id, error = %e, "cluster: session's consumer not changed");
            }
            Err(_) => {
                ClusterStats::add(&consumers.stats.sessions_unrecorded, 1);
                tracing::warn!(client_id = %client_id, "cluster: session's consumer not changed in time");
            }
        }
    }
}

/// The filters without those another one covers (JetStream refuses a
/// consumer whose filters are subsets of one another) and repeats.
fn without_covered(mut filters: Vec<String>) -> Vec<String> {
    filters.sort();
    filters.dedup();
    let kept: Vec<String> = filters
        .iter()
        .filter(|f| !filters.iter().any(|g| g != *f && covers(g, f)))
        .cloned()
        .collect();
    kept
}

/// Whether every subject NATS subject filter `wide` matches is matched by
/// `narrow`'s superset, i.e. `wide` matches all `narrow` matches.
fn covers(wide: &str, narrow: &str) -> bool {
    let mut w = wide.split('.');
    let mut n = narrow.split('.');
    loop {
        match (w.next(), n.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_filters_go_and_partial_overlaps_stay() {
        let kept = without_covered(vec![
            "p.m.t.a.>".into(),
            "p.m.t.a.b".into(),
            "p.m.t.a.*".into(),
            "p.m.t.x.*.c".into(),
            "p.m.t.x.b.*".into(),
            "p.m.t.x.b.*".into(),
            "p.m.t.a".into(),
        ]);
        assert_eq!(
            kept,
            vec!["p.m.t.a", "p.m.t.a.>", "p.m.t.x.*.c", "p.m.t.x.b.*"]
        );
    }

    #[test]
    fn a_subscription_takes_its_filter_and_nine_bytes_of_the_record_room() {
        let mut record = SessionRecord {
            protocol: crate::codec::ProtocolVersion::V5,
            session_expiry: 600,
            disconnected_at_ms: 0,
            will: None,
            will_delay: 0,
            subscriptions: vec![],
            username: Some("owner".into()),
            owner_unknown: false,
        };
        let empty = record_room(&record);
        assert!(empty < RECORD_BYTES_MAX);
        record.subscriptions.push(crate::store::SubscriptionRecord {
            filter: "a/b/#".into(),
            options: crate::codec::SubscriptionOptions::default(),
            identifier: Some(7),
        });
        // The connection machine charges a new filter its length and
        // `SUBSCRIPTION_RECORD_BYTES` (9): the record's own encoding.
        assert_eq!(empty - record_room(&record), "a/b/#".len() + 9);
    }

    #[test]
    fn a_long_client_id_is_cut_in_the_description_on_a_char_boundary() {
        assert_eq!(description("dev-1"), "Sluice session dev-1");
        let long = "é".repeat(40_000);
        let d = description(&long);
        assert!(d.len() < 4096 && d.ends_with('…'), "{}", d.len());
    }

    #[test]
    fn covering_follows_nats_wildcards() {
        assert!(covers("a.*", "a.b"));
        assert!(covers("a.*", "a.*"));
        assert!(!covers("a.*", "a.>"));
        assert!(covers("a.>", "a.b.c"));
        assert!(!covers("a.>", "a"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.*.c", "a.b.*"));
    }
}
