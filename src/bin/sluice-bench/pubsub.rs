//! The publish/subscribe scenarios: fan-in, fan-out and pairs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{BufMut, BytesMut};
use hdrhistogram::Histogram;
use sluice::codec::{
    decode_packet, encode_packet, put_varint, Ack, ConnAck, Connect, Packet, PacketId, Properties,
    ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use crate::args::{Args, Scenario};
use crate::cpu;
use crate::report::Report;

/// Bytes at the start of every payload: publisher index, sequence, send time.
const HEADER: usize = 4 + 8 + 8;

struct Shared {
    epoch: Instant,
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicBool,
    sent_total: AtomicU64,
    sent_window: AtomicU64,
    received_total: AtomicU64,
    fan: u64,
    max_owed: u64,
}

impl Shared {
    fn owed(&self) -> u64 {
        (self.sent_total.load(Ordering::Relaxed) * self.fan)
            .saturating_sub(self.received_total.load(Ordering::Relaxed))
    }
}

pub struct SubStats {
    pub received_window: u64,
    pub duplicates_or_reordered: u64,
    pub latency_us: Histogram<u64>,
}

fn version(args: &Args) -> anyhow::Result<ProtocolVersion> {
    match args.mqtt_version {
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        v => bail!("--mqtt must be 4 or 5, not {v}"),
    }
}

fn qos(args: &Args) -> anyhow::Result<QoS> {
    QoS::from_u8(args.qos).context("--qos must be 0, 1 or 2")
}

/// Opens a connection and completes CONNECT/CONNACK.
pub async fn connect(
    args: &Args,
    client_id: &str,
    keep_alive: u16,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    connect_with(args, client_id, keep_alive, source, false).await
}

pub async fn connect_with(
    args: &Args,
    client_id: &str,
    keep_alive: u16,
    source: Option<std::net::IpAddr>,
    persistent: bool,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let v = version(args)?;
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await?
        .next()
        .context("host did not resolve")?;
    let stream = match source {
        Some(ip) => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            // Back-to-back runs leave tens of thousands of ports in
            // TIME_WAIT. A bind to port 0 then searches the whole port
            // range for one free of them (seen: 30k -> 0.8k connects/s on
            // the second run), so the rate measured would be the kernel's.
            // IP_BIND_ADDRESS_NO_PORT picks the port at connect, where only
            // the four-tuple must be unique.
            no_port_at_bind(&socket);
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::new();
    let connect = Connect {
        protocol: v,
        clean_start: !persistent,
        keep_alive,
        properties: Properties {
            session_expiry_interval: (persistent && v.is_v5()).then_some(3600),
            ..Properties::default()
        },
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    };
    encode_packet(&Packet::Connect(Box::new(connect)), v, &mut buf)?;
    wr.write_all(&buf).await?;
    buf.clear();
    loop {
        if let Some(p) = decode_packet(&mut buf, Some(v), usize::MAX)? {
            match p {
                Packet::ConnAck(ConnAck {
                    code: ReasonCode::Success,
                    ..
                }) => return Ok((rd, wr, buf)),
                other => bail!("connection refused: {other:?}"),
            }
        }
        if rd.read_buf(&mut buf).await? == 0 {
            bail!("broker closed the connection during CONNECT");
        }
    }
}

pub async fn run(args: &Args) -> anyhow::Result<Report> {
    if args.size < HEADER {
        bail!("--size must be at least {HEADER} bytes");
    }
    let v = version(args)?;
    let q = qos(args)?;
    let p = &args.prefix;
    let (pub_topics, sub_filters, fan): (Vec<String>, Vec<String>, u64) = match &args.scenario {
        Scenario::Fanin {
            publishers,
            subscribers,
        } => (
            (0..*publishers).map(|i| format!("{p}/{i}")).collect(),
            vec![format!("{p}/#"); *subscribers],
            *subscribers as u64,
        ),
        Scenario::Fanout { subscribers } => (
            vec![format!("{p}/0")],
            vec![format!("{p}/0"); *subscribers],
            *subscribers as u64,
        ),
        Scenario::Pairs { pairs } => {
            let topics: Vec<String> = (0..*pairs).map(|i| format!("{p}/{i}")).collect();
            (topics.clone(), topics, 1)
        }
        Scenario::Conn { .. } => unreachable!("handled by conn::run"),
    };
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done: AtomicBool::new(false),
        sent_total: AtomicU64::new(0),
        sent_window: AtomicU64::new(0),
        received_total: AtomicU64::new(0),
        fan,
        max_owed: args.max_owed,
    });

    let mut subs = Vec::new();
    for (i, filter) in sub_filters.iter().enumerate() {
        let (rd, mut wr, buf) = connect_with(
            args,
            &format!("{p}-sub-{i}"),
            300,
            None,
            args.persistent_subscribers,
        )
        .await?;
        let sub = Subscribe {
            packet_id: PacketId::MIN,
            properties: Properties::default(),
            filters: vec![(
                filter.as_str().into(),
                SubscriptionOptions {
                    qos: q,
                    ..Default::default()
                },
            )],
        };
        let mut out = BytesMut::new();
        encode_packet(&Packet::Subscribe(sub), v, &mut out)?;
        wr.write_all(&out).await?;
        subs.push(tokio::spawn(subscriber(
            rd,
            wr,
            buf,
            v,
            pub_topics.len(),
            Arc::clone(&shared),
        )));
    }
    // Let the SUBACKs land before publishing.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let per_pub_rate = if args.rate == 0 {
        0.0
    } else {
        args.rate as f64 / pub_topics.len() as f64
    };
    let mut pubs = Vec::new();
    for (i, topic) in pub_topics.iter().enumerate() {
        let (rd, wr, _) = connect(args, &format!("{p}-pub-{i}"), 300, None).await?;
        let cfg = PubConfig {
            index: i as u32,
            topic: topic.clone(),
            qos: q,
            version: v,
            size: args.size,
            rate: per_pub_rate,
            window: args.inflight.max(1),
        };
        pubs.push(tokio::spawn(publisher(rd, wr, cfg, Arc::clone(&shared))));
    }

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let gen_cpu0 = cpu::cpu_seconds(None);
    let broker_cpu0 = args.broker_pid.and_then(|pid| cpu::cpu_seconds(Some(pid)));
    let received0 = shared.received_total.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Release);
    let t0 = Instant::now();
    let mut last = (t0, received0);
    while t0.elapsed().as_secs_f64() < args.duration {
        tokio::time::sleep(Duration::from_secs(1).min(Duration::from_secs_f64(args.duration)))
            .await;
        if !args.json {
            let now = Instant::now();
            let r = shared.received_total.load(Ordering::Relaxed);
            let rate = (r - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            eprintln!(
                "[{:5.1}s] {:>10.0} msg/s received, {} owed",
                t0.elapsed().as_secs_f64(),
                rate,
                shared.owed()
            );
            last = (now, r);
        }
    }
    shared.measuring.store(false, Ordering::Release);
    let window = t0.elapsed();
    let gen_cpu = cpu::cpu_seconds(None).zip(gen_cpu0).map(|(a, b)| a - b);
    let broker_cpu = args
        .broker_pid
        .and_then(|pid| cpu::cpu_seconds(Some(pid)))
        .zip(broker_cpu0)
        .map(|(a, b)| a - b);
    shared.stop.store(true, Ordering::Release);
    for h in pubs {
        h.await.context("publisher task")?.context("publisher")?;
    }
    // Let the last deliveries arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while shared.owed() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.done.store(true, Ordering::Release);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut received_window = 0;
    let mut dups = 0;
    for h in subs {
        let s = h.await.context("subscriber task")??;
        hist.add(&s.latency_us)?;
        received_window += s.received_window;
        dups += s.duplicates_or_reordered;
    }
    let sent_total = shared.sent_total.load(Ordering::Relaxed);
    let received_total = shared.received_total.load(Ordering::Relaxed);
    let expected = sent_total * fan;
    Ok(Report::pubsub(
        args,
        pub_topics.len(),
        sub_filters.len(),
        window,
        shared.sent_window.load(Ordering::Relaxed),
        received_window,
        expected.saturating_sub(received_total),
        dups,
        &hist,
        gen_cpu,
        broker_cpu,
    ))
}

struct PubConfig {
    index: u32,
    topic: String,
    qos: QoS,
    version: ProtocolVersion,
    size: usize,
    rate: f64,
    window: usize,
}

/// Writes one PUBLISH straight into `buf`: cheaper than building a packet.
fn put_publish(
    buf: &mut BytesMut,
    cfg: &PubConfig,
    packet_id: u16,
    seq: u64,
    now_ns: u64,
) -> anyhow::Result<()> {
    let v5 = cfg.version.is_v5();
    let id_len = if cfg.qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + cfg.topic.len() + id_len + usize::from(v5) + cfg.size;
    buf.put_u8(0x30 | (cfg.qos.as_u8() << 1));
    put_varint(buf, u32::try_from(remaining)?)?;
    buf.put_u16(cfg.topic.len() as u16);
    buf.put_slice(cfg.topic.as_bytes());
    if id_len > 0 {
        buf.put_u16(packet_id);
    }
    if v5 {
        buf.put_u8(0);
    }
    buf.put_u32(cfg.index);
    buf.put_u64(seq);
    buf.put_u64(now_ns);
    buf.put_bytes(0, cfg.size - HEADER);
    Ok(())
}

async fn publisher(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    cfg: PubConfig,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let window = Arc::new(Semaphore::new(cfg.window));
    let (rel_tx, mut rel_rx) = mpsc::unbounded_channel::<u16>();
    let acks = if cfg.qos == QoS::AtMostOnce {
        None
    } else {
        let window = Arc::clone(&window);
        let v = cfg.version;
        let shared = Arc::clone(&shared);
        Some(tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                while let Some(p) = decode_packet(&mut buf, Some(v), usize::MAX)? {
                    match p {
                        Packet::PubAck(_) | Packet::PubComp(_) => window.add_permits(1),
                        Packet::PubRec(a) => {
                            let _ = rel_tx.send(a.packet_id.get());
                        }
                        _ => {}
                    }
                }
                if shared.done.load(Ordering::Acquire) {
                    return anyhow::Ok(());
                }
                match tokio::time::timeout(Duration::from_millis(200), rd.read_buf(&mut buf)).await
                {
                    Ok(Ok(0)) => bail!("broker closed the publisher connection"),
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(e)) => return Err(e.into()),
                }
            }
        }))
    };
    let period = (cfg.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / cfg.rate));
    let started = Instant::now();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut seq: u64 = 0;
    let mut packet_id: u16 = 0;
    let mut unflushed = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        while let Ok(id) = rel_rx.try_recv() {
            if let Some(id) = PacketId::new(id) {
                encode_packet(&Packet::PubRel(Ack::new(id)), cfg.version, &mut buf)?;
            }
        }
        if shared.max_owed > 0 && shared.owed() > shared.max_owed {
            flush(&mut wr, &mut buf).await?;
            tokio::time::sleep(Duration::from_micros(500)).await;
            continue;
        }
        if let Some(period) = period {
            let due = started + period.mul_f64(seq as f64);
            if Instant::now() < due {
                flush(&mut wr, &mut buf).await?;
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if cfg.qos != QoS::AtMostOnce {
            match window.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => {
                    flush(&mut wr, &mut buf).await?;
                    match tokio::time::timeout(Duration::from_millis(100), window.acquire()).await {
                        Ok(Ok(p)) => p.forget(),
                        _ => continue,
                    }
                }
            }
            packet_id = if packet_id == u16::MAX {
                1
            } else {
                packet_id + 1
            };
        }
        let now_ns = shared.epoch.elapsed().as_nanos() as u64;
        put_publish(&mut buf, &cfg, packet_id, seq, now_ns)?;
        seq += 1;
        unflushed += 1;
        if shared.measuring.load(Ordering::Relaxed) {
            shared.sent_window.fetch_add(1, Ordering::Relaxed);
        }
        if buf.len() >= 16 * 1024 || period.is_some() || unflushed >= 64 {
            shared.sent_total.fetch_add(unflushed, Ordering::Relaxed);
            unflushed = 0;
            flush(&mut wr, &mut buf).await?;
        }
    }
    shared.sent_total.fetch_add(unflushed, Ordering::Relaxed);
    flush(&mut wr, &mut buf).await?;
    // Wait for outstanding acknowledgements (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while cfg.qos != QoS::AtMostOnce
        && window.available_permits() < cfg.window
        && Instant::now() < deadline
    {
        while let Ok(id) = rel_rx.try_recv() {
            if let Some(id) = PacketId::new(id) {
                encode_packet(&Packet::PubRel(Ack::new(id)), cfg.version, &mut buf)?;
            }
        }
        flush(&mut wr, &mut buf).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(a) = acks {
        a.abort();
    }
    Ok(())
}

async fn flush(wr: &mut OwnedWriteHalf, buf: &mut BytesMut) -> anyhow::Result<()> {
    if !buf.is_empty() {
        wr.write_all(buf).await?;
        buf.clear();
    }
    Ok(())
}

async fn subscriber(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut buf: BytesMut,
    v: ProtocolVersion,
    publishers: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<SubStats> {
    let mut stats = SubStats {
        received_window: 0,
        duplicates_or_reordered: 0,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    let mut last_seq = vec![u64::MAX; publishers];
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut received = 0u64;
    loop {
        while let Some(p) = decode_packet(&mut buf, Some(v), usize::MAX)? {
            match p {
                Packet::Publish(m) => {
                    if m.payload.len() >= HEADER {
                        let idx = u32::from_be_bytes(m.payload[0..4].try_into()?) as usize;
                        let seq = u64::from_be_bytes(m.payload[4..12].try_into()?);
                        let sent_ns = u64::from_be_bytes(m.payload[12..20].try_into()?);
                        if let Some(last) = last_seq.get_mut(idx) {
                            if *last != u64::MAX && seq <= *last {
                                stats.duplicates_or_reordered += 1;
                            } else {
                                *last = seq;
                            }
                        }
                        if shared.measuring.load(Ordering::Relaxed) {
                            stats.received_window += 1;
                            let now_ns = shared.epoch.elapsed().as_nanos() as u64;
                            let us = now_ns.saturating_sub(sent_ns) / 1000;
                            let _ = stats.latency_us.record(us.max(1));
                        }
                    }
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
            return Ok(stats);
        }
        match tokio::time::timeout(Duration::from_millis(200), rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => bail!("broker closed a subscriber connection"),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

/// Sets IP_BIND_ADDRESS_NO_PORT (Linux); a failure only costs speed.
fn no_port_at_bind(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the
    // size given.
    #[allow(unsafe_code)]
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
