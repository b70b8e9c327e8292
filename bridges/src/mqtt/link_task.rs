//! The task that owns the bridge's connection to the remote broker: it
//! connects (and reconnects with a backoff), keeps the connection alive,
//! and carries each batch the delivery loop hands over until the remote
//! acknowledged every record of it (PUBACK, PUBCOMP), or the connection
//! failed (the batch is then resent whole by the delivery loop; see
//! [`super`] for why that repeats no QoS 2 message).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_codec::{Ack, Disconnect, Packet, PacketId, QoS, ReasonCode};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::inbound::{Inbound, InboundOutcome, InboundRoute, Routes};
use super::link::{Dialer, Link};
use super::liveness::Liveness;
use super::outgoing::Outgoing;
use super::packet_id_of;
use super::releases::ReleaseLog;
use super::status::LinkStatus;
use crate::sink::SinkError;

mod inbound_flow;

/// The packet id of the bridge's SUBSCRIBE (above the ids of messages).
const SUBSCRIBE_PACKET_ID: u16 = super::MAX_PUBLISH_PACKET_ID + 1;

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the sink asks of the task.
pub(crate) struct Deliver {
    pub(crate) batch: Vec<Outgoing>,
    pub(crate) done: oneshot::Sender<Result<(), SinkError>>,
}

/// What a QoS 1/2 record in flight waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaits {
    /// QoS 1, PUBLISH sent.
    Puback,
    /// QoS 2, PUBLISH sent.
    Pubrec,
    /// QoS 2, PUBREL sent (its id is in the release log).
    Pubcomp,
}

/// The batch being carried.
struct Batch {
    items: Vec<Outgoing>,
    /// Index of the first record not sent yet.
    next: usize,
    /// Records awaiting the remote, by packet id: (index, stage).
    awaiting: HashMap<u16, (usize, Awaits)>,
    done: oneshot::Sender<Result<(), SinkError>>,
    /// Set when the remote refused a record for good (MQTT 5 reason code).
    refused: Option<String>,
}

/// The in direction: where remote messages go, and the broker's end.
pub(crate) struct InboundLink {
    pub(crate) subscriptions: Vec<InboundRoute>,
    pub(crate) routes: Routes,
    pub(crate) tx: mpsc::Sender<Inbound>,
}

/// An inbound QoS 1/2 message the broker is making durable: its
/// acknowledgement goes to the remote when it is (in arrival order, as
/// MQTT wants acknowledgements).
struct PendingAck {
    packet_id: PacketId,
    qos: QoS,
    answer: oneshot::Receiver<InboundOutcome>,
}

/// Why a connection ended.
enum End {
    /// The sink was dropped (bridge stopped or reloaded).
    Stop,
    Lost(String),
}

pub(crate) struct LinkTask {
    pub(crate) dialer: Dialer,
    pub(crate) releases: Arc<Mutex<ReleaseLog>>,
    pub(crate) status: Arc<LinkStatus>,
    pub(crate) rx: mpsc::Receiver<Deliver>,
    /// Records the remote has (PUBACK, PUBCOMP; QoS 0 written) whose batch
    /// the buffer has not acknowledged yet: a resent batch skips them (for
    /// QoS 2 a second PUBLISH would be a new message, for QoS 1 a
    /// duplicate, for QoS 0 a second delivery).
    pub(crate) completed: BTreeSet<u64>,
    batch: Option<Batch>,
    inbound: Option<InboundLink>,
    /// Inbound messages awaiting local durability, oldest first.
    pending_acks: VecDeque<PendingAck>,
    /// Inbound QoS 2 packet ids answered with PUBREC and not yet released:
    /// a PUBLISH under one of them is the remote's resend, not a message.
    received_qos2: HashSet<u16>,
}

impl LinkTask {
    pub(crate) fn new(
        dialer: Dialer,
        releases: Arc<Mutex<ReleaseLog>>,
        status: Arc<LinkStatus>,
        rx: mpsc::Receiver<Deliver>,
        inbound: Option<InboundLink>,
    ) -> LinkTask {
        LinkTask {
            dialer,
            releases,
            status,
            rx,
            completed: BTreeSet::new(),
            batch: None,
            inbound,
            pending_acks: VecDeque::new(),
            received_qos2: HashSet::new(),
        }
    }

    /// Connects, serves, reconnects with a backoff; ends when the sink is
    /// dropped.
    pub(crate) async fn run(mut self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let error = match self.dialer.dial().await {
                Ok(link) => {
                    backoff = Duration::from_millis(250);
                    self.status.connected(link.session_present);
                    tracing::info!(remote = %self.dialer.cfg.address, session_present = link.session_present, "mqtt bridge connected");
                    let end = self.serve(link).await;
                    self.status.disconnected();
                    match end {
                        End::Stop => return,
                        End::Lost(e) => e,
                    }
                }
                Err(e) => e,
            };
            tracing::warn!(remote = %self.dialer.cfg.address, error = %error, "mqtt bridge link down; records stay buffered");
            self.fail_batch(&error);
            self.status.set_error(error.clone());
            if !self.wait_offline(backoff, &error).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Waits `wait`, answering batches that arrive meanwhile as retryable.
    /// False when the sink was dropped.
    async fn wait_offline(&mut self, wait: Duration, error: &str) -> bool {
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                cmd = self.rx.recv() => match cmd {
                    None => return false,
                    Some(d) => {
                        let _ = d.done.send(Err(SinkError::Retryable(format!("remote unreachable: {error}"))));
                    }
                },
            }
        }
    }

    fn fail_batch(&mut self, error: &str) {
        if let Some(b) = self.batch.take() {
            let _ = b.done.send(Err(SinkError::Retryable(error.to_owned())));
        }
    }

    /// Serves one connection until it fails or the sink is dropped.
    async fn serve(&mut self, mut link: Link) -> End {
        let keep_alive = Duration::from_secs(u64::from(link.keep_alive_secs));
        let ack_timeout = self.dialer.cfg.ack_timeout;
        let mut live = Liveness::new(keep_alive, ack_timeout);
        if !link.session_present {
            // The remote forgot our session: its resends will not come,
            // and packet ids start afresh.
            self.received_qos2.clear();
            self.pending_acks.clear();
        }
        if let Err(e) = self.subscribe(&mut link) {
            return End::Lost(e);
        }
        // The SUBSCRIBE goes now, not with whatever is written next.
        if let Err(e) = link.flush(ack_timeout).await {
            return End::Lost(e);
        }
        loop {
            tokio::select! {
                filled = link.fill() => {
                    match filled {
                        Ok(true) => {}
                        Ok(false) => return End::Lost("the remote closed the connection".into()),
                        Err(e) => return End::Lost(e),
                    }
                    live.read();
                    match self.on_readable(&mut link).await {
                        Ok(true) => live.progress(),
                        Ok(false) => {}
                        Err(e) => return End::Lost(e),
                    }
                }
                answer = async { (&mut self.pending_acks.front_mut()?.answer).await.ok() }, if !self.pending_acks.is_empty() => {
                    if let Err(e) = self.answer_front(answer, &mut link) {
                        return End::Lost(e);
                    }
                }
                cmd = self.rx.recv(), if self.batch.is_none() => {
                    let Some(deliver) = cmd else {
                        let bye = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
                        if link.queue(&bye).is_ok() {
                            let _ = link.flush(Duration::from_secs(1)).await;
                        }
                        return End::Stop;
                    };
                    live.progress();
                    if let Err(e) = self.start(deliver, &mut link) {
                        return End::Lost(e);
                    }
                }
                _ = tokio::time::sleep_until(live.deadline()) => {
                    let owed = self.batch.as_ref().is_some_and(|b| !b.awaiting.is_empty());
                    match live.check(owed) {
                        Ok(true) => {
                            if let Err(e) = link.queue(&Packet::PingReq) {
                                return End::Lost(e);
                            }
                        }
                        Ok(false) => {}
                        Err(e) => return End::Lost(e),
                    }
                }
            }
            if link.queued() > 0 {
                if let Err(e) = link.flush(ack_timeout).await {
                    return End::Lost(e);
                }
                live.wrote();
            }
            self.finish_if_done();
        }
    }

    /// Takes a new batch: what the buffer acknowledged since is forgotten,
    /// records the remote completed already are skipped, the window is
    /// filled.
    fn start(&mut self, deliver: Deliver, link: &mut Link) -> Result<(), String> {
        let Deliver { mut batch, done } = deliver;
        if let Some(first) = batch.first().map(|o| o.id) {
            self.completed = self.completed.split_off(&first);
            if let Err(e) = self.releases.lock().forget_below(first) {
                tracing::warn!(error = %e, "mqtt bridge: release log compaction failed");
            }
        }
        let completed = &self.completed;
        let before = batch.len();
        batch.retain(|o| !completed.contains(&o.id));
        self.status.skipped(before - batch.len());
        self.batch = Some(Batch {
            items: batch,
            next: 0,
            awaiting: HashMap::new(),
            done,
            refused: None,
        });
        self.pump(link)
    }

    /// Sends records while the window has room.
    fn pump(&mut self, link: &mut Link) -> Result<(), String> {
        let window = usize::from(self.dialer.cfg.max_in_flight.min(link.receive_maximum));
        let Some(b) = self.batch.as_mut() else {
            return Ok(());
        };
        while b.next < b.items.len() && b.awaiting.len() < window {
            let item = &b.items[b.next];
            let mut publish = item.publish.clone();
            if publish.qos.as_u8() > link.maximum_qos {
                publish.qos = QoS::from_u8(link.maximum_qos).unwrap_or(QoS::AtMostOnce);
            }
            if publish.qos == QoS::AtMostOnce {
                link.queue(&Packet::Publish(publish))?;
                // Written is done for QoS 0: never again, not even when
                // the batch is resent.
                self.completed.insert(item.id);
                b.next += 1;
                continue;
            }
            let pid = packet_id_of(item.id);
            if b.awaiting.contains_key(&pid.get()) {
                // Two records of the batch share a packet id (ids far
                // apart): the second waits for the first.
                break;
            }
            publish.packet_id = Some(pid);
            let stage = if publish.qos == QoS::ExactlyOnce && self.releases.lock().contains(item.id)
            {
                link.queue(&Packet::PubRel(Ack::new(pid)))?;
                Awaits::Pubcomp
            } else {
                let stage = if publish.qos == QoS::ExactlyOnce {
                    Awaits::Pubrec
                } else {
                    Awaits::Puback
                };
                if let Some(max) = link.maximum_packet_size {
                    let len =
                        sluice_codec::encoded_len(&Packet::Publish(publish.clone()), link.version);
                    if len > max as usize {
                        b.refused = Some(format!("the message is {len} bytes, over the remote's maximum packet size {max}"));
                        b.next += 1;
                        continue;
                    }
                }
                link.queue(&Packet::Publish(publish))?;
                stage
            };
            b.awaiting.insert(pid.get(), (b.next, stage));
            b.next += 1;
        }
        Ok(())
    }

    /// Handles every whole packet buffered; true if a record moved on.
    async fn on_readable(&mut self, link: &mut Link) -> Result<bool, String> {
        let mut progress = false;
        let mut to_release: Vec<(PacketId, u64)> = Vec::new();
        while let Some(packet) = link.next_buffered()? {
            progress |= self.on_packet(packet, link, &mut to_release)?;
        }
        if !to_release.is_empty() {
            // Synced before any of these PUBRELs leaves (see releases.rs).
            let ids: Vec<u64> = to_release.iter().map(|(_, id)| *id).collect();
            let log = Arc::clone(&self.releases);
            let written = tokio::task::spawn_blocking(move || log.lock().add(&ids))
                .await
                .map_err(|e| format!("release log task failed: {e}"))?;
            written.map_err(|e| format!("cannot write the release log: {e}"))?;
            for (pid, _) in to_release {
                link.queue(&Packet::PubRel(Ack::new(pid)))?;
            }
        }
        self.pump(link)?;
        Ok(progress)
    }

    fn on_packet(
        &mut self,
        packet: Packet,
        link: &mut Link,
        to_release: &mut Vec<(PacketId, u64)>,
    ) -> Result<bool, String> {
        match packet {
            Packet::PubAck(ack) => Ok(self.acknowledged(ack, Awaits::Puback)),
            Packet::PubComp(ack) => Ok(self.acknowledged(ack, Awaits::Pubcomp)),
            Packet::PubRec(ack) => {
                let pid = ack.packet_id;
                let Some(b) = self.batch.as_mut() else {
                    return Ok(false);
                };
                match b.awaiting.get_mut(&pid.get()) {
                    Some((index, stage)) if *stage == Awaits::Pubrec => {
                        if ack.reason.is_error() {
                            let why = format!("the remote refused it: {:?}", ack.reason);
                            let index = *index;
                            b.awaiting.remove(&pid.get());
                            Self::refuse(b, index, ack.reason, why);
                            return Ok(true);
                        }
                        *stage = Awaits::Pubcomp;
                        to_release.push((pid, b.items[*index].id));
                        Ok(true)
                    }
                    Some((_, Awaits::Pubcomp)) => {
                        // A PUBREC repeated: our PUBREL went (or goes) already.
                        link.queue(&Packet::PubRel(Ack::new(pid)))?;
                        Ok(false)
                    }
                    _ => Ok(false),
                }
            }
            Packet::Publish(p) => {
                self.on_inbound(p, link)?;
                Ok(false)
            }
            Packet::PubRel(ack) => {
                self.received_qos2.remove(&ack.packet_id.get());
                link.queue(&Packet::PubComp(Ack::new(ack.packet_id)))?;
                Ok(false)
            }
            Packet::SubAck(ack) => {
                self.on_suback(&ack.reasons);
                Ok(false)
            }
            Packet::PingResp | Packet::UnsubAck(_) => Ok(false),
            Packet::Disconnect(d) => Err(format!(
                "the remote disconnected us: {:?}{}",
                d.reason,
                d.properties
                    .reason_string
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            other => Err(format!("unexpected {} from the remote", other.name())),
        }
    }

    /// A PUBACK or PUBCOMP: the record is done (or refused, MQTT 5).
    fn acknowledged(&mut self, ack: Ack, expected: Awaits) -> bool {
        let Some(b) = self.batch.as_mut() else {
            return false;
        };
        let pid = ack.packet_id.get();
        match b.awaiting.get(&pid) {
            Some(&(index, stage)) if stage == expected => {
                b.awaiting.remove(&pid);
                if expected == Awaits::Puback && ack.reason.is_error() {
                    let why = format!("the remote refused it: {:?}", ack.reason);
                    Self::refuse(b, index, ack.reason, why);
                } else {
                    self.completed.insert(b.items[index].id);
                }
                true
            }
            _ => false,
        }
    }

    /// Records the first refusal of the batch. Quota exceeded is worth a
    /// retry; other refusals are permanent (the record is dead-lettered).
    fn refuse(b: &mut Batch, index: usize, reason: ReasonCode, why: String) {
        let why = format!("record {}: {why}", b.items[index].id);
        if reason == ReasonCode::QuotaExceeded {
            b.refused.get_or_insert(format!("retry:{why}"));
        } else {
            b.refused.get_or_insert(why);
        }
    }

    /// Answers the batch once nothing is left to send or await.
    fn finish_if_done(&mut self) {
        let done = self
            .batch
            .as_ref()
            .is_some_and(|b| b.next >= b.items.len() && b.awaiting.is_empty());
        if !done {
            return;
        }
        if let Some(b) = self.batch.take() {
            let result = match b.refused {
                None => {
                    self.status.delivered(b.items.len());
                    Ok(())
                }
                Some(why) => match why.strip_prefix("retry:") {
                    Some(why) => Err(SinkError::Retryable(why.to_owned())),
                    None => Err(SinkError::Permanent(why)),
                },
            };
            let _ = b.done.send(result);
        }
    }
}
