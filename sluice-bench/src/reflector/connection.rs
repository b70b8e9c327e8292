//! One reflector connection: a reader that answers and forwards what it
//! receives, and a writer that drains the connection's outbox.

use std::sync::Arc;

use anyhow::bail;
use bytes::{Buf, BufMut, BytesMut};
use sluice::codec::{decode_varint, put_varint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::routes::{Outbox, Routes, Sub};
use crate::frames::{self, frame_at, publish_parts, Frame};
use crate::pubsub::{put_ack, READ_CHUNK};

/// Consecutive PUBLISH packets of one read bound for the same subscribers:
/// forwarded with one copy per subscriber when none needs re-encoding.
struct Run {
    subs: Arc<[Sub]>,
    start: usize,
    end: usize,
    /// QoS 0 without the retain flag: the bytes go out as they came.
    verbatim: bool,
}

struct Connection {
    routes: Arc<Routes>,
    outbox: Arc<Outbox>,
    v5: bool,
    /// Topics this connection subscribed, to take it off them at the end.
    topics: Vec<Vec<u8>>,
    /// The last topic published here, the routes generation it was looked
    /// up in, and its subscribers.
    cache: (Vec<u8>, u64, Arc<[Sub]>),
    /// Subscriber lists written to during this read, to wake once each.
    touched: Vec<Arc<[Sub]>>,
    /// Answers to this connection, sent once per read.
    replies: BytesMut,
}

pub async fn serve(stream: TcpStream, routes: Arc<Routes>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let outbox = Arc::new(Outbox::default());
    let writer = tokio::spawn(write_loop(wr, Arc::clone(&outbox)));
    let mut conn = Connection {
        routes,
        outbox,
        v5: false,
        topics: Vec::new(),
        cache: (Vec::new(), u64::MAX, Arc::new([])),
        touched: Vec::new(),
        replies: BytesMut::new(),
    };
    let result = conn.read_loop(rd).await;
    for t in &conn.topics {
        conn.routes.unsubscribe(t, &conn.outbox);
    }
    conn.outbox.close();
    let _ = writer.await;
    result
}

/// Writes whatever the outbox holds, one buffer swap and write per wake-up.
async fn write_loop(mut wr: OwnedWriteHalf, outbox: Arc<Outbox>) {
    let mut spare = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let closed = {
            let mut p = outbox.lock();
            std::mem::swap(&mut p.buf, &mut spare);
            p.closed
        };
        if spare.is_empty() {
            if closed {
                return;
            }
            outbox.ready.notified().await;
            continue;
        }
        if wr.write_all(&spare).await.is_err() {
            let mut p = outbox.lock();
            p.closed = true;
            p.buf.clear();
            return;
        }
        spare.clear();
    }
}

impl Connection {
    async fn read_loop(&mut self, mut rd: OwnedReadHalf) -> anyhow::Result<()> {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            let (used, disconnect) = self.take_packets(&buf)?;
            buf.advance(used);
            for subs in self.touched.drain(..) {
                for s in subs.iter() {
                    s.outbox.ready.notify_one();
                }
            }
            if !self.replies.is_empty() {
                self.outbox.send(&self.replies);
                self.replies.clear();
            }
            if disconnect {
                return Ok(());
            }
        }
    }

    /// Handles every whole packet in `buf`: how many bytes they took, and
    /// whether one was DISCONNECT.
    fn take_packets(&mut self, buf: &[u8]) -> anyhow::Result<(usize, bool)> {
        let mut pos = 0;
        let mut run: Option<Run> = None;
        while let Some(f) = frame_at(&buf[pos..])? {
            let packet = &buf[pos..pos + f.end];
            if f.kind() != frames::PUBLISH {
                if let Some(r) = run.take() {
                    self.forward(r, buf);
                }
                if self.control(packet, &f)? {
                    return Ok((pos + f.end, true));
                }
                pos += f.end;
                continue;
            }
            let parts = publish_parts(packet, &f, self.v5)?;
            match parts.packet_id {
                Some(id) if parts.qos == 1 => put_ack(&mut self.replies, frames::PUBACK << 4, id),
                Some(id) => put_ack(&mut self.replies, frames::PUBREC << 4, id),
                None => {}
            }
            let verbatim = parts.qos == 0 && f.first & 1 == 0;
            let subs = self.subscribers(&packet[parts.topic]);
            match &mut run {
                Some(r) if Arc::ptr_eq(&r.subs, subs) && r.end == pos => {
                    r.end = pos + f.end;
                    r.verbatim &= verbatim;
                }
                _ => {
                    let next = Run {
                        subs: Arc::clone(subs),
                        start: pos,
                        end: pos + f.end,
                        verbatim,
                    };
                    if let Some(r) = run.replace(next) {
                        self.forward(r, buf);
                    }
                }
            }
            pos += f.end;
        }
        if let Some(r) = run {
            self.forward(r, buf);
        }
        Ok((pos, false))
    }

    /// Subscribers of `topic`, from the cache while the routes are unchanged.
    fn subscribers(&mut self, topic: &[u8]) -> &Arc<[Sub]> {
        let generation = self.routes.generation();
        if self.cache.0 != topic || self.cache.1 != generation {
            self.cache = (topic.to_vec(), generation, self.routes.lookup(topic));
        }
        &self.cache.2
    }

    /// Copies a run of PUBLISH packets to each of its subscribers.
    fn forward(&mut self, run: Run, buf: &[u8]) {
        if run.subs.is_empty() {
            return;
        }
        let packets = &buf[run.start..run.end];
        for sub in run.subs.iter() {
            let mut pending = sub.outbox.lock();
            if run.verbatim && sub.v5 == self.v5 {
                pending.put_verbatim(packets);
                continue;
            }
            let mut pos = 0;
            while let Ok(Some(f)) = frame_at(&packets[pos..]) {
                let packet = &packets[pos..pos + f.end];
                if let Ok(parts) = publish_parts(packet, &f, self.v5) {
                    pending.put_publish(packet, &parts, self.v5, sub);
                }
                pos += f.end;
            }
        }
        if !self.touched.iter().any(|t| Arc::ptr_eq(t, &run.subs)) {
            self.touched.push(run.subs);
        }
    }

    /// Answers a packet other than PUBLISH; true on DISCONNECT.
    fn control(&mut self, packet: &[u8], f: &Frame) -> anyhow::Result<bool> {
        let body = &packet[f.body_start..];
        match f.kind() {
            frames::CONNECT => {
                let name_len = usize::from(u16::from_be_bytes(field(body, 0)?));
                let Some(&level) = body.get(2 + name_len) else {
                    bail!("CONNECT without a protocol level");
                };
                self.v5 = level == 5;
                let connack: &[u8] = if self.v5 {
                    &[0x20, 3, 0, 0, 0]
                } else {
                    &[0x20, 2, 0, 0]
                };
                self.replies.put_slice(connack);
            }
            frames::SUBSCRIBE | frames::UNSUBSCRIBE => self.subscription(f.kind(), body)?,
            frames::PUBREL => {
                put_ack(&mut self.replies, 0x70, u16::from_be_bytes(field(body, 0)?));
            }
            frames::PINGREQ => self.replies.put_slice(&[0xd0, 0]),
            frames::DISCONNECT => return Ok(true),
            // PUBACK, PUBREC, PUBCOMP from subscribers: nothing is retried.
            _ => {}
        }
        Ok(false)
    }

    /// SUBSCRIBE or UNSUBSCRIBE: exact topics, QoS granted up to 1.
    fn subscription(&mut self, kind: u8, body: &[u8]) -> anyhow::Result<()> {
        let id = field(body, 0)?;
        let mut pos = 2;
        if self.v5 {
            let Some((len, n)) = decode_varint(body.get(pos..).unwrap_or_default())? else {
                bail!("truncated properties");
            };
            pos += n + len as usize;
        }
        let mut codes = Vec::new();
        while pos < body.len() {
            let len = usize::from(u16::from_be_bytes(field(body, pos)?));
            let Some(topic) = body.get(pos + 2..pos + 2 + len) else {
                bail!("truncated topic filter");
            };
            pos += 2 + len;
            if kind == frames::UNSUBSCRIBE {
                self.routes.unsubscribe(topic, &self.outbox);
                codes.push(0);
                continue;
            }
            let qos = body.get(pos).map_or(0, |o| (o & 3).min(1));
            pos += 1;
            let sub = Sub {
                outbox: Arc::clone(&self.outbox),
                qos,
                v5: self.v5,
            };
            self.routes.subscribe(topic, sub);
            self.topics.push(topic.to_vec());
            codes.push(qos);
        }
        // 3.1.1 UNSUBACK has no reason codes.
        if kind == frames::UNSUBSCRIBE && !self.v5 {
            codes.clear();
        }
        let first = if kind == frames::SUBSCRIBE {
            0x90
        } else {
            0xb0
        };
        self.replies.put_u8(first);
        put_varint(
            &mut self.replies,
            (2 + usize::from(self.v5) + codes.len()) as u32,
        )?;
        self.replies.put_slice(&id);
        if self.v5 {
            self.replies.put_u8(0);
        }
        self.replies.put_slice(&codes);
        Ok(())
    }
}

/// Two bytes of `body` at `at`.
fn field(body: &[u8], at: usize) -> anyhow::Result<[u8; 2]> {
    match body.get(at..at + 2) {
        Some(b) => Ok([b[0], b[1]]),
        None => bail!("packet too short"),
    }
}
