//! Intake: messages from the bridge's session, through the transform, into
//! the durable buffer. A message is acknowledged to the session (and so
//! leaves the broker's store) only once the buffer holds it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_bridges::buffer::{Buffer, BufferError};
use sluice_bridges::transform::runner::{Outcome, Runner};
use sluice_bridges::{Input, Record};

use super::running::Shared;
use super::stats::BridgeStats;
use crate::codec::{Packet, Publish};
use crate::session::{build_publish, Message, SinkAck};
use crate::store::{now_ms, Store};

/// Messages taken from the session per round.
const INTAKE_BATCH: usize = 2048;

/// Records per buffer append: each append is one fsync, so larger chunks
/// are what lets the bridge keep up with the broker (BENCHMARKS.md,
/// "Bridge buffer fsyncs"). A chunk over the quota is split into single
/// records.
const APPEND_CHUNK: usize = 1024;

/// The transform's input; `origin` (the message as the broker accepted
/// it) gives the publisher's identity and the acceptance time.
fn input_of(p: &Publish, origin: Option<&Message>) -> Input {
    let text = |s: &Option<bytestring::ByteString>| s.as_ref().map(|s| s.to_string());
    Input {
        topic: p.topic.to_string(),
        payload: p.payload.clone(),
        // The publisher's QoS, not the bridge session's delivery QoS: an MQTT
        // bridge republishes at it (capped by its rule), a rule sees it.
        qos: origin.map_or(p.qos, |m| m.qos).as_u8(),
        retain: p.retain,
        client_id: origin.and_then(|m| text(&m.publisher)),
        username: origin.and_then(|m| text(&m.username)),
        timestamp_ms: origin
            .map(|m| m.accepted_ms)
            .filter(|t| *t > 0)
            .unwrap_or_else(now_ms),
        user_properties: p
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Publishers waiting for records to be in the buffer, by record id (in
/// order): fired as each chunk is appended.
type OnAppend = VecDeque<(u64, Arc<dyn SinkAck>)>;

/// Fires the signals of records up to `last` (appended or dead-lettered).
fn fire_through(on_append: &mut OnAppend, last: u64) {
    while on_append.front().is_some_and(|(id, _)| *id <= last) {
        if let Some((_, signal)) = on_append.pop_front() {
            signal.fire();
        }
    }
}

/// What the bridge owes a message it took: the publisher's acknowledgement
/// when it waits for the sink (`ack = "sink"`) or for the buffer (a QoS 1
/// message the store kept no copy of), and the broker's message id (a
/// stable header across a crash, when the store has the message).
type Extras = (Option<Arc<dyn SinkAck>>, Option<u64>);

/// One round's messages, taken from the session under one lock.
struct Batch {
    publishes: Vec<Publish>,
    extras: Vec<Extras>,
    /// The messages as the broker accepted them (for the transform's input).
    origins: Vec<Option<Arc<Message>>>,
}

/// Runs until the bridge is stopped. The transform runs on the runner's
/// own thread under its budget, never on the runtime's workers, and the
/// wait for it gives way to a stop.
pub async fn run(shared: Arc<Shared>, runner: Runner, store: Store) {
    let slot = Arc::clone(&shared.slot);
    let mut stop = shared.stop.clone();
    let mut carried = unacknowledged(&shared);
    // After a start, the first batches may hold messages a crash caught
    // after their buffer append: checked until a batch has none.
    let mut checking = true;
    loop {
        if shared.stopping() {
            return;
        }
        let mut taken = take_batch(&shared, std::mem::take(&mut carried));
        // The messages were routed before they were queued: once this is
        // durable, so is every copy of theirs the store keeps.
        let routed = store.submitted();
        if checking && !taken.publishes.is_empty() {
            checking = skip_buffered(&shared, &store, &mut taken).await;
        }
        let Batch {
            publishes: batch,
            extras,
            origins,
        } = taken;
        if batch.is_empty() {
            tokio::select! {
                _ = slot.notify.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        BridgeStats::add(&shared.stats.received, batch.len() as u64);
        let inputs = batch
            .iter()
            .zip(&origins)
            .map(|(p, m)| input_of(p, m.as_deref()))
            .collect();
        // What came in through this bridge (an MQTT bridge's in
        // direction publishes as the bridge) does not go back out.
        let looped: Vec<bool> = origins
            .iter()
            .map(|m| m.as_ref().and_then(|m| m.publisher.as_ref()) == Some(&slot.client_id))
            .collect();
        drop(origins);
        let Some(mut outcomes) = transform(&shared, &runner, &mut stop, inputs).await else {
            return;
        };
        for (outcome, looped) in outcomes.iter_mut().zip(looped) {
            if looped {
                *outcome = Ok(None);
            }
        }
        // Not in the buffer before the store has them: a message whose
        // routing a crash undid was never acknowledged, its publisher sends
        // it again, and a buffered copy would be a second one at the sink.
        tokio::select! {
            _ = store.wait(routed) => {}
            _ = stop.changed() => return,
        }
        let (records, mut on_append) = to_records(&shared, &batch, extras, outcomes).await;
        let produced = records.len() as u64;
        // Append durably, retrying while the buffer is full (block policy):
        // meanwhile messages wait in the session queue, bounded by its limits.
        if !append_all(&shared, records, &mut on_append).await {
            // Stopped while the buffer was full: the batch stays in flight
            // in the session and is taken again by the next run.
            return;
        }
        BridgeStats::add(&shared.stats.transformed, produced);
        {
            let mut state = slot.state.lock();
            for p in &batch {
                if let Some(id) = p.packet_id {
                    state.on_puback(id);
                }
            }
        }
        slot.flush_journal(&store);
        shared.wake.notify_one();
    }
}

/// What a previous run (or the broker before a crash) took from the
/// session but never acknowledged: it comes first, in its original order.
fn unacknowledged(shared: &Shared) -> Vec<Publish> {
    shared
        .slot
        .state
        .lock()
        .resend(Instant::now(), &|_| true)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Acknowledges to the session, and drops from `batch`, the messages a
/// crash caught between their buffer append and the store's commit of
/// their acknowledgement: the buffer holds them already (by message id),
/// and a second record would be a second message at the sink (for an
/// MQTT remote, a QoS 2 message delivered twice). They come back in flight
/// or queued, depending on what the store had committed. Whether any was
/// found (the next batch is checked too).
async fn skip_buffered(shared: &Arc<Shared>, store: &Store, batch: &mut Batch) -> bool {
    let wanted: std::collections::HashSet<Vec<u8>> = batch
        .extras
        .iter()
        .filter_map(|(_, id)| *id)
        .map(|id| id.to_string().into_bytes())
        .collect();
    if wanted.is_empty() {
        return false;
    }
    let buffer = Arc::clone(&shared.buffer);
    let found = tokio::task::spawn_blocking(move || {
        buffer
            .lock()
            .recently_holds(sluice_bridges::record::MESSAGE_ID_HEADER, &wanted)
    })
    .await;
    let found = match found {
        Ok(Ok(found)) if !found.is_empty() => found,
        Ok(Ok(_)) => return false,
        Ok(Err(e)) => {
            tracing::warn!(bridge = %shared.name, error = %e, "bridge buffer: cannot check for messages buffered before a crash; they may be forwarded twice");
            return false;
        }
        Err(_) => return false,
    };
    let taken = std::mem::replace(
        batch,
        Batch {
            publishes: Vec::new(),
            extras: Vec::new(),
            origins: Vec::new(),
        },
    );
    let mut state = shared.slot.state.lock();
    for ((p, extras), origin) in taken
        .publishes
        .into_iter()
        .zip(taken.extras)
        .zip(taken.origins)
    {
        let buffered = extras
            .1
            .is_some_and(|id| found.contains(id.to_string().as_bytes()));
        match p.packet_id {
            Some(pid) if buffered => {
                state.on_puback(pid);
                if let Some(signal) = extras.0 {
                    signal.fire();
                }
            }
            _ => {
                batch.publishes.push(p);
                batch.extras.push(extras);
                batch.origins.push(origin);
            }
        }
    }
    drop(state);
    tracing::info!(bridge = %shared.name, messages = found.len(), "messages buffered just before a crash are not buffered again");
    shared.slot.flush_journal(store);
    true
}

/// `carried` and then up to [`INTAKE_BATCH`] messages from the session,
/// with what each owes (see [`Extras`]).
fn take_batch(shared: &Shared, carried: Vec<Publish>) -> Batch {
    let mut state = shared.slot.state.lock();
    let now = Instant::now();
    let mut batch = carried;
    batch.reserve(INTAKE_BATCH.saturating_sub(batch.len()));
    let mut origins: Vec<Option<Arc<Message>>> = Vec::with_capacity(batch.capacity());
    origins.extend(
        batch
            .iter()
            .map(|p| p.packet_id.and_then(|id| state.message_of(id))),
    );
    while batch.len() < INTAKE_BATCH {
        let next = state.next_delivery(now, 4096, |d, id| {
            (build_publish(d, id, false, now), Arc::clone(&d.message))
        });
        match next {
            Some((p, m)) => {
                batch.push(p);
                origins.push(Some(m));
            }
            None => break,
        }
    }
    // Taken: publishers held back by the full queue may go on.
    shared.slot.release_push_back(&state);
    let extras = batch
        .iter()
        .map(|p| match p.packet_id {
            Some(id) => (state.take_sink_ack(id), state.message_id_of(id)),
            None => (None, None),
        })
        .collect();
    Batch {
        publishes: batch,
        extras,
        origins,
    }
}

/// Runs the transform over the batch; `None` when the bridge stops first
/// (the batch stays in flight in the session for the next run) or the
/// runner failed (its messages wait in the session until a restart).
async fn transform(
    shared: &Shared,
    runner: &Runner,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    inputs: Vec<Input>,
) -> Option<Vec<Outcome>> {
    let outcomes = tokio::select! {
        r = runner.apply_all(inputs) => r,
        _ = stop.changed() => return None,
    };
    match outcomes {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::error!(bridge = %shared.name, error = %e, "bridge intake stopped: its messages wait in its session until it restarts");
            *shared.failed.lock() = Some(e.to_string());
            while !shared.stopping() {
                if stop.changed().await.is_err() {
                    return None;
                }
            }
            None
        }
    }
}

/// The records the transform produced, numbered from the buffer's next
/// id; a dropped message fires its acknowledgement at once, a failed one
/// goes to the dead-letter file as it came.
async fn to_records(
    shared: &Arc<Shared>,
    batch: &[Publish],
    extras: Vec<Extras>,
    outcomes: Vec<Outcome>,
) -> (Vec<Record>, OnAppend) {
    let mut next_id = shared.buffer.lock().next_id();
    let mut records: Vec<Record> = Vec::with_capacity(batch.len());
    let mut on_append = OnAppend::new();
    let mut dead = Vec::new();
    let mut dead_signals = Vec::new();
    let on_sink = shared.slot.acks_on_sink();
    let mut dropped = 0u64;
    for ((p, (signal, message_id)), outcome) in batch.iter().zip(extras).zip(outcomes) {
        match outcome {
            Ok(Some(mut r)) => {
                r.id = next_id;
                if let Some(m) = message_id {
                    // Stable across a crash that buffers the message
                    // again under a new record id.
                    r.headers.push((
                        sluice_bridges::record::MESSAGE_ID_HEADER.to_owned(),
                        bytes::Bytes::from(m.to_string()),
                    ));
                }
                match signal {
                    Some(signal) if on_sink => shared.sink_acks.lock().push_back((r.id, signal)),
                    Some(signal) => on_append.push_back((r.id, signal)),
                    None => {}
                }
                records.push(r);
                next_id += 1;
            }
            Ok(None) => {
                dropped += 1;
                if let Some(signal) = signal {
                    signal.fire();
                }
            }
            Err(e) => {
                dead.push((raw_record(p), format!("transform failed: {e}")));
                dead_signals.extend(signal);
            }
        }
    }
    BridgeStats::add(&shared.stats.dropped_by_transform, dropped);
    if !dead.is_empty() {
        dead_letter_all(shared, dead).await;
    }
    for signal in dead_signals {
        signal.fire();
    }
    (records, on_append)
}

/// The input as it came, so it can be replayed by hand.
fn raw_record(p: &Publish) -> Record {
    Record {
        id: 0,
        destination: String::new(),
        key: None,
        payload: p.payload.clone(),
        headers: vec![(
            sluice_bridges::record::TOPIC_HEADER.into(),
            bytes::Bytes::copy_from_slice(p.topic.as_bytes()),
        )],
        timestamp_ms: now_ms(),
    }
}

/// Appends `records` in order, in chunks that fit the buffer. While the
/// buffer is full (block policy) the bridge's session is marked saturated,
/// which makes the broker push back on publishers; a record too large for
/// the buffer even when empty goes to the dead letter file. False if the
/// bridge was stopped before everything was appended.
async fn append_all(shared: &Arc<Shared>, records: Vec<Record>, on_append: &mut OnAppend) -> bool {
    let slot = &shared.slot;
    let name = &shared.name;
    let mut pending = into_chunks(records);
    while let Some(chunk) = pending.pop_front() {
        if chunk.is_empty() {
            continue;
        }
        loop {
            let b = Arc::clone(&shared.buffer);
            let recs = Arc::clone(&chunk);
            match tokio::task::spawn_blocking(move || b.lock().append(&recs)).await {
                Ok(Ok(appended)) => {
                    slot.set_saturated(false);
                    if let Some(last) = chunk.last() {
                        fire_through(on_append, last.id);
                    }
                    if appended.dropped_oldest > 0 {
                        BridgeStats::add(&shared.stats.dropped_oldest, appended.dropped_oldest);
                        tracing::warn!(bridge = %name, dropped = appended.dropped_oldest, "bridge buffer full: oldest records dropped");
                    }
                    break;
                }
                Ok(Err(BufferError::Full)) => {
                    if !slot.is_saturated() {
                        tracing::warn!(bridge = %name, "bridge buffer full: publishers to its topics get back-pressure");
                    }
                    slot.set_saturated(true);
                    if shared.stopping() {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(BufferError::TooLarge { .. })) if chunk.len() > 1 => {
                    // Smaller pieces, in order, ahead of the rest.
                    for single in chunk.iter().rev() {
                        pending.push_front(Arc::new(vec![single.clone()]));
                    }
                    break;
                }
                Ok(Err(BufferError::TooLarge { bytes, max_bytes })) => {
                    let reason =
                        format!("record of {bytes} bytes exceeds the buffer quota of {max_bytes}");
                    let id = chunk[0].id;
                    dead_letter(shared, chunk[0].clone(), reason).await;
                    shared.settle_through(id);
                    fire_through(on_append, id);
                    break;
                }
                Ok(Err(e)) => {
                    tracing::error!(bridge = %name, error = %e, "bridge buffer write failed; retrying");
                    if shared.stopping() {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(bridge = %name, error = %e, "bridge buffer task failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    true
}

/// `records` in chunks of up to [`APPEND_CHUNK`], moved, not copied: each
/// attempt to append a chunk shares it with the blocking task.
fn into_chunks(mut records: Vec<Record>) -> VecDeque<Arc<Vec<Record>>> {
    let mut chunks = VecDeque::new();
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(APPEND_CHUNK));
        chunks.push_back(Arc::new(std::mem::replace(&mut records, rest)));
    }
    chunks
}

/// Dead-letters a round's records with one write and one sync.
async fn dead_letter_all(shared: &Shared, records: Vec<(Record, String)>) {
    for (record, reason) in &records {
        shared.log_dead_letter(record.id, reason);
    }
    BridgeStats::add(&shared.stats.dead_lettered, records.len() as u64);
    let b: Arc<Mutex<Buffer>> = Arc::clone(&shared.buffer);
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || b.lock().dead_letter_records(&records)).await
    {
        tracing::error!(bridge = %shared.name, error = %e, "dead-letter write failed");
    }
}

/// A record that never enters the log goes to the buffer's dead-letter
/// file, in the buffer's own format.
pub async fn dead_letter(shared: &Shared, record: Record, reason: String) {
    shared.log_dead_letter(record.id, &reason);
    BridgeStats::add(&shared.stats.dead_lettered, 1);
    let b: Arc<Mutex<Buffer>> = Arc::clone(&shared.buffer);
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || b.lock().dead_letter_record(&record, &reason)).await
    {
        tracing::error!(bridge = %shared.name, error = %e, "dead-letter write failed");
    }
}
