//! A publisher: writes PUBLISH packets straight into a buffer at the
//! configured rate, within its window of unacknowledged QoS 1/2 messages,
//! and holds back while subscribers are owed too much (closed loop).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use sluice::codec::{encode_packet, put_varint, Ack, Packet, PacketId, ProtocolVersion, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::subscriber::{read_more, IDLE_CHECK, READ_CHUNK};
use super::{Shared, HEADER};
use crate::frames::{self, frame_at};

pub struct PubConfig {
    pub index: u32,
    pub topic: String,
    pub qos: QoS,
    pub version: ProtocolVersion,
    pub size: usize,
    pub rate: f64,
    pub window: usize,
}

/// The bytes every PUBLISH of a publisher starts with: fixed header,
/// remaining length and topic. Built once, copied per message.
fn publish_prefix(cfg: &PubConfig) -> anyhow::Result<BytesMut> {
    let v5 = cfg.version.is_v5();
    let id_len = if cfg.qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + cfg.topic.len() + id_len + usize::from(v5) + cfg.size;
    let mut buf = BytesMut::new();
    buf.put_u8(0x30 | (cfg.qos.as_u8() << 1));
    put_varint(&mut buf, u32::try_from(remaining)?)?;
    buf.put_u16(u16::try_from(cfg.topic.len())?);
    buf.put_slice(cfg.topic.as_bytes());
    Ok(buf)
}

/// Writes one PUBLISH straight into `buf`: cheaper than building a packet.
fn put_publish(
    buf: &mut BytesMut,
    prefix: &[u8],
    cfg: &PubConfig,
    packet_id: u16,
    seq: u64,
    now_ns: u64,
) {
    buf.put_slice(prefix);
    if cfg.qos != QoS::AtMostOnce {
        buf.put_u16(packet_id);
    }
    if cfg.version.is_v5() {
        buf.put_u8(0);
    }
    buf.put_u32(cfg.index);
    buf.put_u64(seq);
    buf.put_u64(now_ns);
    buf.put_bytes(0, cfg.size - HEADER);
}

/// Reads the broker's acknowledgements (QoS 1/2): PUBACK and PUBCOMP give
/// a window slot back, PUBREC asks the publisher for a PUBREL. Walks the
/// packets in place, as the subscribers do.
fn spawn_ack_reader(
    mut rd: OwnedReadHalf,
    window: Arc<Semaphore>,
    rel_tx: mpsc::UnboundedSender<u16>,
    shared: Arc<Shared>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let idle = tokio::time::sleep(IDLE_CHECK);
        tokio::pin!(idle);
        loop {
            let mut pos = 0;
            let mut acked = 0;
            while let Some(f) = frame_at(&buf[pos..])? {
                match f.kind() {
                    frames::PUBACK | frames::PUBCOMP => acked += 1,
                    frames::PUBREC => {
                        if let Some(id) = buf.get(pos + f.body_start..pos + f.body_start + 2) {
                            let _ = rel_tx.send(u16::from_be_bytes([id[0], id[1]]));
                        }
                    }
                    _ => {}
                }
                pos += f.end;
            }
            buf.advance(pos);
            window.add_permits(acked);
            if shared.done.load(Ordering::Acquire) {
                return anyhow::Ok(());
            }
            read_more(&mut rd, &mut buf, idle.as_mut(), "publisher").await?;
        }
    })
}

/// What ended a wait for a window slot.
enum SlotWait {
    /// A slot (true), or none within the wait.
    Slot(bool),
    /// A PUBREC's packet id, to answer with PUBREL (`None`: the ack
    /// reader ended, so none will come).
    Received(Option<u16>),
}

/// One publisher's connection and its state between writes.
struct Publisher {
    wr: OwnedWriteHalf,
    cfg: PubConfig,
    shared: Arc<Shared>,
    window: Arc<Semaphore>,
    rel_rx: mpsc::UnboundedReceiver<u16>,
    buf: BytesMut,
    /// Send time of the batch in `buf`: its messages leave together, and a
    /// clock read per message was a tenth of the generator's instructions
    /// in fan-in. Cleared by every flush, so no wait ages it.
    stamp: Option<u64>,
}

pub async fn publisher(
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    cfg: PubConfig,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let window = Arc::new(Semaphore::new(cfg.window));
    let (rel_tx, rel_rx) = mpsc::unbounded_channel::<u16>();
    let acks = (cfg.qos != QoS::AtMostOnce)
        .then(|| spawn_ack_reader(rd, Arc::clone(&window), rel_tx, Arc::clone(&shared)));
    let mut p = Publisher {
        wr,
        cfg,
        shared,
        window,
        rel_rx,
        buf: BytesMut::with_capacity(64 * 1024),
        stamp: None,
    };
    p.publish_until_stopped().await?;
    p.wait_for_acks().await?;
    if let Some(a) = acks {
        a.abort();
    }
    Ok(())
}

impl Publisher {
    async fn publish_until_stopped(&mut self) -> anyhow::Result<()> {
        let period = (self.cfg.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / self.cfg.rate));
        let started = Instant::now();
        let mut seq: u64 = 0;
        let mut packet_id: u16 = 0;
        let (mut unflushed, mut unflushed_in_window) = (0u64, 0u64);
        let prefix = publish_prefix(&self.cfg)?;
        let shared = Arc::clone(&self.shared);
        while !shared.stop.load(Ordering::Relaxed) {
            if self.cfg.qos == QoS::ExactlyOnce {
                self.queue_pubrels()?;
            }
            if shared.max_owed > 0 && shared.owed() > shared.max_owed {
                self.flush().await?;
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            if let Some(period) = period {
                let due = started + period.mul_f64(seq as f64);
                if Instant::now() < due {
                    self.flush().await?;
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            if self.cfg.qos != QoS::AtMostOnce {
                if !self.take_window_slot().await? {
                    continue;
                }
                packet_id = if packet_id == u16::MAX {
                    1
                } else {
                    packet_id + 1
                };
            }
            let now_ns = *self
                .stamp
                .get_or_insert_with(|| shared.epoch.elapsed().as_nanos() as u64);
            put_publish(&mut self.buf, &prefix, &self.cfg, packet_id, seq, now_ns);
            seq += 1;
            unflushed += 1;
            if shared.measuring.load(Ordering::Relaxed) {
                unflushed_in_window += 1;
            }
            if self.buf.len() >= 16 * 1024 || period.is_some() || unflushed >= 64 {
                shared.sent_total.fetch_add(unflushed, Ordering::Relaxed);
                shared
                    .sent_window
                    .fetch_add(unflushed_in_window, Ordering::Relaxed);
                (unflushed, unflushed_in_window) = (0, 0);
                self.flush().await?;
            }
        }
        shared.sent_total.fetch_add(unflushed, Ordering::Relaxed);
        shared
            .sent_window
            .fetch_add(unflushed_in_window, Ordering::Relaxed);
        self.flush().await
    }

    /// A slot in the window of unacknowledged messages; waits briefly for
    /// one (after writing what is buffered). False if none came. At QoS 2
    /// a slot comes back only with a PUBCOMP, which answers a PUBREL: the
    /// PUBRELs for PUBRECs that arrive meanwhile go out at once (waiting
    /// for a slot without sending them held every message of a full
    /// window up to the wait's end, 100 ms, and capped QoS 2 throughput
    /// for every broker).
    async fn take_window_slot(&mut self) -> anyhow::Result<bool> {
        if let Ok(p) = self.window.try_acquire() {
            p.forget();
            return Ok(true);
        }
        self.flush().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let window = Arc::clone(&self.window);
        let mut releases = self.cfg.qos == QoS::ExactlyOnce;
        loop {
            let woke = tokio::select! {
                p = window.acquire() => SlotWait::Slot(p.is_ok_and(|p| {
                    p.forget();
                    true
                })),
                id = self.rel_rx.recv(), if releases => SlotWait::Received(id),
                _ = tokio::time::sleep_until(deadline) => SlotWait::Slot(false),
            };
            match woke {
                SlotWait::Slot(taken) => return Ok(taken),
                SlotWait::Received(Some(id)) => {
                    self.queue_pubrel(id)?;
                    self.queue_pubrels()?;
                    self.flush().await?;
                }
                // The ack reader ended: no more PUBRECs; wait out the slot.
                SlotWait::Received(None) => releases = false,
            }
        }
    }

    /// PUBRELs for the PUBRECs the ack reader passed on.
    fn queue_pubrels(&mut self) -> anyhow::Result<()> {
        while let Ok(id) = self.rel_rx.try_recv() {
            self.queue_pubrel(id)?;
        }
        Ok(())
    }

    fn queue_pubrel(&mut self, id: u16) -> anyhow::Result<()> {
        if let Some(id) = PacketId::new(id) {
            encode_packet(
                &Packet::PubRel(Ack::new(id)),
                self.cfg.version,
                &mut self.buf,
            )?;
        }
        Ok(())
    }

    /// Waits for outstanding acknowledgements (bounded).
    async fn wait_for_acks(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.cfg.qos != QoS::AtMostOnce
            && self.window.available_permits() < self.cfg.window
            && Instant::now() < deadline
        {
            self.queue_pubrels()?;
            self.flush().await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stamp = None;
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}
