//! The JetStream stream and key-value bucket a cluster shares, created by
//! the first node that starts (every node asks; the same configuration
//! answers the same).
//!
//! The stream takes every QoS 1/2 message published on any node
//! (`<prefix>.m.>`), with the configured replicas: JetStream acknowledges a
//! publish once a majority stored it, and that acknowledgement is what a
//! publisher's PUBACK waits for. Its retention is by interest: nothing
//! reads the stream yet (nodes receive the same publish as plain NATS
//! subscribers), so a message is dropped as soon as it is stored; the
//! stream's role is the quorum write and the de-duplication window, and it
//! is what persistent sessions read from (one consumer each, see
//! `super::consumers`): what one of them wants stays until it is acknowledged.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

/// The names a cluster's prefix gives.
#[derive(Debug, Clone)]
pub struct Names {
    pub stream: String,
    pub stream_subjects: String,
    pub retained_bucket: String,
    pub sessions_bucket: String,
    pub wills_bucket: String,
    pub nodes_bucket: String,
    pub flows_bucket: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            stream: format!("{prefix}_messages"),
            stream_subjects: format!("{prefix}.m.>"),
            retained_bucket: format!("{prefix}_retained"),
            sessions_bucket: format!("{prefix}_sessions"),
            wills_bucket: format!("{prefix}_wills"),
            nodes_bucket: format!("{prefix}_nodes"),
            flows_bucket: format!("{prefix}_flows"),
        }
    }
}

/// How long JetStream remembers a message id to drop a resend.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The buckets a cluster keeps.
pub struct Buckets {
    /// The messages stream.
    pub messages: stream::Stream,
    pub retained: kv::Store,
    pub sessions: kv::Store,
    pub wills: kv::Store,
    pub nodes: kv::Store,
    /// Persistent sessions' QoS 2 flows (`super::flows`).
    pub flows: kv::Store,
}

/// Creates the stream and the buckets if they are missing.
pub async fn ensure(
    js: &jetstream::Context,
    names: &Names,
    replicas: usize,
) -> Result<Buckets, String> {
    let messages = js
        .get_or_create_stream(stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.stream_subjects.clone()],
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: Duration::from_secs(24 * 3600),
            description: Some("Sluice: QoS 1/2 messages of the cluster".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {}: {e}", names.stream))?;
    Ok(Buckets {
        messages,
        retained: bucket(js, &names.retained_bucket, "retained messages", replicas).await?,
        sessions: bucket(
            js,
            &names.sessions_bucket,
            "who holds each client id",
            replicas,
        )
        .await?,
        wills: bucket(
            js,
            &names.wills_bucket,
            "wills of open connections",
            replicas,
        )
        .await?,
        nodes: bucket(js, &names.nodes_bucket, "node heartbeats", replicas).await?,
        flows: bucket(
            js,
            &names.flows_bucket,
            "persistent sessions' QoS 2 flows",
            replicas,
        )
        .await?,
    })
}

/// The key-value bucket `name` (one value per key), made if missing.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    what: &str,
    replicas: usize,
) -> Result<kv::Store, String> {
    match js.get_key_value(name).await {
        Ok(bucket) => Ok(bucket),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: name.to_owned(),
                description: format!("Sluice: {what} of the cluster"),
                history: 1,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("bucket {name}: {e}")),
    }
}
