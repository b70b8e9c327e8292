//! A subscriber: acknowledges what it receives and measures latency, loss
//! and order from the header every payload carries.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::BytesMut;
use hdrhistogram::Histogram;
use sluice::codec::{decode_packet, encode_packet, Ack, Packet, ProtocolVersion, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{Shared, HEADER};

pub struct SubStats {
    pub received_window: u64,
    pub duplicates_or_reordered: u64,
    pub latency_us: Histogram<u64>,
}

/// Where each publisher's sequence stands, for duplicates and reordering.
struct Tracker {
    last_seq: Vec<u64>,
    stats: SubStats,
}

impl Tracker {
    /// Reads the payload header: publisher index, sequence, send time.
    fn observe(&mut self, m: &Publish, shared: &Shared) -> anyhow::Result<()> {
        if m.payload.len() < HEADER {
            return Ok(());
        }
        let idx = u32::from_be_bytes(m.payload[0..4].try_into()?) as usize;
        let seq = u64::from_be_bytes(m.payload[4..12].try_into()?);
        let sent_ns = u64::from_be_bytes(m.payload[12..20].try_into()?);
        if let Some(last) = self.last_seq.get_mut(idx) {
            if *last != u64::MAX && seq <= *last {
                self.stats.duplicates_or_reordered += 1;
            } else {
                *last = seq;
            }
        }
        if shared.measuring.load(Ordering::Relaxed) {
            self.stats.received_window += 1;
            let now_ns = shared.epoch.elapsed().as_nanos() as u64;
            let us = now_ns.saturating_sub(sent_ns) / 1000;
            let _ = self.stats.latency_us.record(us.max(1));
        }
        Ok(())
    }
}

pub async fn subscriber(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut buf: BytesMut,
    v: ProtocolVersion,
    publishers: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<SubStats> {
    let mut tracker = Tracker {
        last_seq: vec![u64::MAX; publishers],
        stats: SubStats {
            received_window: 0,
            duplicates_or_reordered: 0,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        },
    };
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut received = 0u64;
    loop {
        while let Some(p) = decode_packet(&mut buf, Some(v), usize::MAX)? {
            match p {
                Packet::Publish(m) => {
                    tracker.observe(&m, &shared)?;
                    received += 1;
                    match (m.qos, m.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => {
                            encode_packet(&Packet::PubAck(Ack::new(id)), v, &mut out)?
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            encode_packet(&Packet::PubRec(Ack::new(id)), v, &mut out)?
                        }
                        _ => 0,
                    };
                }
                Packet::PubRel(a) => {
                    encode_packet(&Packet::PubComp(Ack::new(a.packet_id)), v, &mut out)?;
                }
                _ => {}
            }
        }
        if received > 0 {
            shared.received_total.fetch_add(received, Ordering::Relaxed);
            received = 0;
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        }
        if shared.done.load(Ordering::Acquire) {
            return Ok(tracker.stats);
        }
        match tokio::time::timeout(Duration::from_millis(200), rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => bail!("broker closed a subscriber connection"),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}
