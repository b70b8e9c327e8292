//! A subscriber: acknowledges what it receives and measures latency, loss
//! and order from the header every payload carries.
//!
//! It reads big chunks and walks the packets in place (`frames`): no
//! decoding, allocation or clock read per message, so that it keeps up
//! with a broker delivering millions of messages a second on the same
//! cores. Every message received in one read gets that read's time.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::{Buf, BufMut, BytesMut};
use hdrhistogram::Histogram;
use sluice::codec::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Sleep;

use super::{Shared, HEADER};
use crate::frames::{self, frame_at, publish_parts};

/// Bytes asked for per read: many deliveries per system call.
pub const READ_CHUNK: usize = 64 * 1024;

/// How often an idle reader looks whether the run is over.
pub const IDLE_CHECK: Duration = Duration::from_millis(200);

pub struct SubStats {
    pub received_window: u64,
    pub duplicates_or_reordered: u64,
    pub latency_us: Histogram<u64>,
}

/// Above this many messages in one read, latency is sampled.
const SAMPLE_ABOVE: u64 = 64;
/// One message in this many is timed when sampling, and counts this many
/// times in the histogram, so the distribution keeps its shape: recording
/// every message was a fifth of the generator's instructions in fan-out.
const SAMPLE_STRIDE: u64 = 16;

/// Where each publisher's sequence stands, for duplicates and reordering.
struct Tracker {
    last_seq: Vec<u64>,
    stats: SubStats,
    /// Messages seen, for picking every SAMPLE_STRIDE-th.
    seen: u64,
    /// 1, or SAMPLE_STRIDE when the last read brought many messages.
    stride: u64,
}

impl Tracker {
    /// Reads the payload header: publisher index, sequence, send time.
    fn observe(&mut self, payload: &[u8], measuring: bool, now_ns: u64) {
        let Some(header) = payload.get(..HEADER) else {
            return;
        };
        let (idx, rest) = header.split_at(4);
        let (seq, sent) = rest.split_at(8);
        let idx = u32::from_be_bytes(idx.try_into().unwrap_or_default()) as usize;
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
        let sent_ns = u64::from_be_bytes(sent.try_into().unwrap_or_default());
        if let Some(last) = self.last_seq.get_mut(idx) {
            if *last != u64::MAX && seq <= *last {
                self.stats.duplicates_or_reordered += 1;
            } else {
                *last = seq;
            }
        }
        if measuring {
            self.stats.received_window += 1;
            self.seen += 1;
            if self.seen % self.stride == 0 {
                let us = now_ns.saturating_sub(sent_ns) / 1000;
                let _ = self.stats.latency_us.record_n(us.max(1), self.stride);
            }
        }
    }
}

/// An acknowledgement without reason code or properties: the same four
/// bytes in 3.1.1 and 5.0 (reason code 0 may be left out).
pub fn put_ack(out: &mut BytesMut, first: u8, packet_id: u16) {
    out.put_u8(first);
    out.put_u8(2);
    out.put_u16(packet_id);
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
        seen: 0,
        stride: 1,
    };
    let mut out = BytesMut::with_capacity(16 * 1024);
    let idle = tokio::time::sleep(IDLE_CHECK);
    tokio::pin!(idle);
    loop {
        let received = take_packets(&mut buf, &mut out, &mut tracker, v.is_v5(), &shared)?;
        if received > 0 {
            shared.received_total.fetch_add(received, Ordering::Relaxed);
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        }
        if shared.done.load(Ordering::Acquire) {
            return Ok(tracker.stats);
        }
        read_more(&mut rd, &mut buf, idle.as_mut(), "subscriber").await?;
    }
}

/// Reads more into `buf`, or returns empty-handed when the `idle` timer
/// fires (re-arming it), so that the caller looks whether the run is over.
/// One timer for the whole run: a timeout around every read cost a timer
/// registration per read.
pub async fn read_more(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    mut idle: Pin<&mut Sleep>,
    who: &str,
) -> anyhow::Result<()> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    tokio::select! {
        biased;
        r = rd.read_buf(buf) => {
            if r? == 0 {
                bail!("broker closed a {who} connection");
            }
        }
        () = &mut idle => idle.as_mut().reset(tokio::time::Instant::now() + IDLE_CHECK),
    }
    Ok(())
}

/// Counts and acknowledges every whole packet in `buf`, then drops them
/// from it; the number of PUBLISH packets seen.
fn take_packets(
    buf: &mut BytesMut,
    out: &mut BytesMut,
    tracker: &mut Tracker,
    v5: bool,
    shared: &Shared,
) -> anyhow::Result<u64> {
    let now_ns = shared.epoch.elapsed().as_nanos() as u64;
    let measuring = shared.measuring.load(Ordering::Relaxed);
    let mut pos = 0;
    let mut received = 0;
    while let Some(f) = frame_at(&buf[pos..])? {
        let packet = &buf[pos..pos + f.end];
        match f.kind() {
            frames::PUBLISH => {
                let parts = publish_parts(packet, &f, v5)?;
                tracker.observe(&packet[parts.payload], measuring, now_ns);
                received += 1;
                match (parts.qos, parts.packet_id) {
                    (1, Some(id)) => put_ack(out, frames::PUBACK << 4, id),
                    (2, Some(id)) => put_ack(out, frames::PUBREC << 4, id),
                    _ => {}
                }
            }
            frames::PUBREL => {
                if let Some(id) = packet.get(f.body_start..f.body_start + 2) {
                    put_ack(out, 0x70, u16::from_be_bytes([id[0], id[1]]));
                }
            }
            frames::SUBACK => {
                shared.subscribed.fetch_add(1, Ordering::Release);
            }
            _ => {}
        }
        pos += f.end;
    }
    buf.advance(pos);
    tracker.stride = if received > SAMPLE_ABOVE {
        SAMPLE_STRIDE
    } else {
        1
    };
    Ok(received)
}
