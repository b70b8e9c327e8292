//! Bridges inside the broker. A bridge is a subscriber in the same topic
//! tree as any client (a persistent session named `$bridge/NAME`), so what
//! reaches it obeys the same routing and durability rules: a QoS 1 message
//! is in the store before its publisher gets PUBACK. The intake task moves
//! messages from that session through the transform into the bridge's disk
//! buffer and only then acknowledges them to the session; the delivery task
//! drains the buffer into the sink, resending from the first record not
//! acknowledged by the far side.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use parking_lot::Mutex;
use sluice_bridges::buffer::{Buffer, BufferConfig, BufferError};
use sluice_bridges::http::{HttpSink, HttpSinkConfig};
use sluice_bridges::transform::{Escape, Transform, TransformConfig, TransformError};
use sluice_bridges::{Input, Record, Sink, SinkError};
use tokio::sync::Notify;

use crate::broker::{Broker, SessionSlot, Subscription};
use crate::codec::{ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions};
use crate::config::{BridgeConfig, BridgeSinkConfig};
use crate::session::NEVER;
use crate::store::now_ms;
use crate::topic::TopicFilter;

/// Client ids with this prefix belong to bridges; clients may not use them.
pub const CLIENT_ID_PREFIX: &str = "$bridge/";

/// Compiles a bridge's transform as configured (also used to validate the
/// configuration before anything starts).
pub fn compile_transform(b: &BridgeConfig) -> Result<Transform, TransformError> {
    let (destination, escape) = match &b.sink {
        BridgeSinkConfig::Http { url, .. } => (url.clone(), Escape::Url),
    };
    Transform::compile(&TransformConfig {
        expression: b.transform.clone(),
        payload_format: b.payload_format,
        on_decode_error: b.on_decode_error,
        max_depth: sluice_bridges::transform::DEFAULT_MAX_DEPTH,
        destination,
        destination_escape: escape,
        key: None,
    })
}

/// A running bridge, for status reporting.
pub struct BridgeHandle {
    pub name: String,
    pub buffer: Arc<Mutex<Buffer>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeStartError {
    #[error("bridge `{name}`: {message}")]
    Setup { name: String, message: String },
}

/// Opens every configured bridge's buffer and session and starts its tasks.
pub fn start_all(
    broker: &Arc<Broker>,
    data_dir: &Path,
) -> Result<Vec<BridgeHandle>, BridgeStartError> {
    // A bridge removed from the configuration leaves its session behind
    // (restored from the store); it would collect messages forever.
    for id in broker.session_ids() {
        let Some(name) = id.strip_prefix(CLIENT_ID_PREFIX) else {
            continue;
        };
        if !broker.config.bridges.iter().any(|b| b.name == name) {
            if let Some(slot) = broker.find_session(&id) {
                tracing::info!(bridge = %name, "bridge no longer configured: its session is removed (its buffer directory stays)");
                broker.remove_session(&slot);
            }
        }
    }
    let mut out = Vec::new();
    for b in &broker.config.bridges {
        out.push(start(broker, b, data_dir)?);
    }
    Ok(out)
}

fn start(
    broker: &Arc<Broker>,
    cfg: &BridgeConfig,
    data_dir: &Path,
) -> Result<BridgeHandle, BridgeStartError> {
    let err = |message: String| BridgeStartError::Setup {
        name: cfg.name.clone(),
        message,
    };
    let transform = compile_transform(cfg).map_err(|e| err(e.to_string()))?;
    let sink = match &cfg.sink {
        BridgeSinkConfig::Http {
            method,
            headers,
            timeout_secs,
            batch,
            tls_ca,
            ..
        } => HttpSink::new(HttpSinkConfig {
            method: *method,
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: Duration::from_secs((*timeout_secs).max(1)),
            batch: *batch,
            tls_ca: tls_ca.clone(),
            ..HttpSinkConfig::default()
        })
        .map_err(|e| err(e.to_string()))?,
    };
    let mut buffer_cfg = BufferConfig::new(data_dir.join("bridges").join(&cfg.name));
    buffer_cfg.max_bytes = cfg.max_bytes;
    buffer_cfg.segment_bytes = (cfg.max_bytes / 8).clamp(64 * 1024, 16 << 20);
    buffer_cfg.full_policy = cfg.full_policy;
    let buffer = Buffer::open(buffer_cfg).map_err(|e| err(e.to_string()))?;
    let recovered = buffer.len();
    let buffer = Arc::new(Mutex::new(buffer));

    let slot = attach_session(broker, cfg).map_err(err)?;
    tracing::info!(bridge = %cfg.name, buffered = recovered, filters = ?cfg.filters, "bridge started");
    let wake = Arc::new(Notify::new());
    tokio::spawn(intake(
        Arc::clone(broker),
        slot,
        transform,
        Arc::clone(&buffer),
        Arc::clone(&wake),
        cfg.name.clone(),
    ));
    tokio::spawn(deliver(sink, Arc::clone(&buffer), wake, cfg.name.clone()));
    Ok(BridgeHandle {
        name: cfg.name.clone(),
        buffer,
    })
}

/// The bridge's persistent session with exactly the configured filters.
fn attach_session(broker: &Arc<Broker>, cfg: &BridgeConfig) -> Result<Arc<SessionSlot>, String> {
    let client_id = ByteString::from(format!("{CLIENT_ID_PREFIX}{}", cfg.name));
    let (slot, _) = broker.open_session(&client_id, false);
    {
        let mut c = slot.control.lock();
        c.protocol = Some(ProtocolVersion::V5);
        c.session_expiry = NEVER;
        c.generation += 1;
    }
    slot.set_persistent(broker.store().is_enabled());
    slot.set_online(true);
    let max_levels = broker.config.limits.max_topic_levels;
    let wanted: Vec<TopicFilter> = cfg
        .filters
        .iter()
        .map(|f| {
            TopicFilter::parse(f.as_str().into(), max_levels).map_err(|e| format!("`{f}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let stale: Vec<ByteString> = slot
        .subscriptions
        .lock()
        .keys()
        .filter(|k| !wanted.iter().any(|w| w.raw == **k))
        .cloned()
        .collect();
    for raw in stale {
        broker.unsubscribe(&slot, &raw);
    }
    let qos = if cfg.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    for filter in wanted {
        let options = SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: true,
            // A bridge forwards traffic as it happens, not the retained
            // history every time the broker starts.
            retain_handling: RetainHandling::DoNotSend,
        };
        broker.subscribe(
            &slot,
            Subscription {
                filter,
                options,
                identifier: None,
            },
            Instant::now(),
        );
    }
    broker.persist_session(&slot, 0);
    Ok(slot)
}

fn input_of(p: &Publish) -> Input {
    Input {
        topic: p.topic.to_string(),
        payload: p.payload.clone(),
        qos: p.qos.as_u8(),
        retain: p.retain,
        client_id: None,
        username: None,
        timestamp_ms: now_ms(),
        user_properties: p
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Moves messages from the bridge's session into its buffer. A message is
/// acknowledged to the session (and so leaves the broker's store) only once
/// the buffer holds it.
async fn intake(
    broker: Arc<Broker>,
    slot: Arc<SessionSlot>,
    transform: Transform,
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    name: String,
) {
    let store = broker.store().clone();
    loop {
        let batch: Vec<Publish> = {
            let mut state = slot.state.lock();
            let now = Instant::now();
            let mut v = Vec::new();
            while v.len() < 512 {
                match state.next_publish(now, 4096) {
                    Some(p) => v.push(p),
                    None => break,
                }
            }
            v
        };
        if batch.is_empty() {
            slot.notify.notified().await;
            continue;
        }
        let mut next_id = buffer.lock().next_id();
        let mut records: Vec<Record> = Vec::with_capacity(batch.len());
        for p in &batch {
            match transform.apply(&input_of(p), next_id) {
                Ok(Some(r)) => {
                    records.push(r);
                    next_id += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(bridge = %name, topic = %p.topic, reason = %e, "message not bridged: transform failed");
                    // The input as it came, so it can be replayed by hand.
                    let raw = Record {
                        id: 0,
                        destination: String::new(),
                        key: None,
                        payload: p.payload.clone(),
                        headers: vec![(
                            "mqtt-topic".into(),
                            bytes::Bytes::copy_from_slice(p.topic.as_bytes()),
                        )],
                        timestamp_ms: now_ms(),
                    };
                    dead_letter(&buffer, raw, format!("transform failed: {e}"), &name).await;
                }
            }
        }
        // Append durably, retrying while the buffer is full (block policy):
        // meanwhile messages wait in the session queue, bounded by its limits.
        append_all(&buffer, records, &slot, &name).await;
        {
            let mut state = slot.state.lock();
            for p in &batch {
                if let Some(id) = p.packet_id {
                    state.on_puback(id);
                }
            }
        }
        slot.flush_journal(&store);
        wake.notify_one();
    }
}

/// Appends `records` in order, in chunks that fit the buffer. While the
/// buffer is full (block policy) the bridge's session is marked saturated,
/// which makes the broker push back on publishers; a record too large for
/// the buffer even when empty goes to the dead letter file.
async fn append_all(
    buffer: &Arc<Mutex<Buffer>>,
    records: Vec<Record>,
    slot: &Arc<SessionSlot>,
    name: &str,
) {
    let mut pending: std::collections::VecDeque<Vec<Record>> =
        records.chunks(64).map(<[Record]>::to_vec).collect();
    while let Some(chunk) = pending.pop_front() {
        if chunk.is_empty() {
            continue;
        }
        loop {
            let b = Arc::clone(buffer);
            let recs = chunk.clone();
            match tokio::task::spawn_blocking(move || b.lock().append(&recs)).await {
                Ok(Ok(appended)) => {
                    slot.set_saturated(false);
                    if appended.dropped_oldest > 0 {
                        tracing::warn!(bridge = %name, dropped = appended.dropped_oldest, "bridge buffer full: oldest records dropped");
                    }
                    break;
                }
                Ok(Err(BufferError::Full)) => {
                    if !slot.is_saturated() {
                        tracing::warn!(bridge = %name, "bridge buffer full: publishers to its topics get back-pressure");
                    }
                    slot.set_saturated(true);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(BufferError::TooLarge { .. })) if chunk.len() > 1 => {
                    // Smaller pieces, in order, ahead of the rest.
                    for single in chunk.iter().rev() {
                        pending.push_front(vec![single.clone()]);
                    }
                    break;
                }
                Ok(Err(BufferError::TooLarge { bytes, max_bytes })) => {
                    let reason =
                        format!("record of {bytes} bytes exceeds the buffer quota of {max_bytes}");
                    dead_letter(buffer, chunk[0].clone(), reason, name).await;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::error!(bridge = %name, error = %e, "bridge buffer write failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(bridge = %name, error = %e, "bridge buffer task failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// A record that never enters the log goes to the buffer's dead-letter
/// file, in the buffer's own format.
async fn dead_letter(buffer: &Arc<Mutex<Buffer>>, record: Record, reason: String, name: &str) {
    tracing::warn!(bridge = %name, %reason, "record dead-lettered");
    let b = Arc::clone(buffer);
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || b.lock().dead_letter_record(&record, &reason)).await
    {
        tracing::error!(bridge = %name, error = %e, "dead-letter write failed");
    }
}

/// Drains the buffer into the sink, in order. Retryable failures back off
/// exponentially (up to 5 s) and resend; a permanent failure sends the
/// batch one record at a time to find the culprit, which goes to the dead
/// letter file.
async fn deliver<S: Sink + 'static>(
    mut sink: S,
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    name: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    loop {
        let b = Arc::clone(&buffer);
        let batch = match tokio::task::spawn_blocking(move || b.lock().peek(100)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(bridge = %name, error = %e, "bridge buffer read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => continue,
        };
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        match sink.send(&batch).await {
            Ok(()) => {
                ack(&buffer, batch.len()).await;
                backoff = Duration::from_millis(100);
                if let Some(since) = failing_since.take() {
                    tracing::info!(bridge = %name, outage_ms = since.elapsed().as_millis() as u64, "bridge sink reachable again");
                }
            }
            Err(SinkError::Retryable(e)) => {
                if failing_since.is_none() {
                    tracing::warn!(bridge = %name, error = %e, "bridge sink unreachable; records stay buffered");
                    failing_since = Some(Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(SinkError::Permanent(_)) => {
                // Find the record the endpoint refuses; the ones before it
                // got through and are acknowledged.
                for one in batch.chunks(1) {
                    match sink.send(one).await {
                        Ok(()) => ack(&buffer, 1).await,
                        Err(SinkError::Permanent(reason)) => {
                            tracing::warn!(bridge = %name, record = one[0].id, %reason, "record refused by the sink: dead-lettered");
                            let b = Arc::clone(&buffer);
                            let _ =
                                tokio::task::spawn_blocking(move || b.lock().dead_letter(&reason))
                                    .await;
                        }
                        Err(SinkError::Retryable(_)) => break,
                    }
                }
            }
        }
    }
}

async fn ack(buffer: &Arc<Mutex<Buffer>>, n: usize) {
    let b = Arc::clone(buffer);
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || b.lock().ack(n)).await {
        tracing::error!(error = %e, "bridge buffer acknowledgement failed; records will be resent");
    }
}
