//! `$SYS/broker/...` topics under mosquitto's names, published as retained
//! QoS 0 messages every `sys_interval` seconds. They go through the normal
//! router, so the ACL decides who reads them (`topic read #` does not
//! cover `$SYS`, per MQTT 4.7.2). Kept in memory only.
//!
//! Differences from mosquitto: `messages/*` count PUBLISH packets (as
//! mosquitto's `publish/messages/*` do), and `store/bytes` is the data
//! directory's size on disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::broker::Broker;
use crate::codec::QoS;
use crate::session::Message;

/// Exponentially damped per-minute rates over 1, 5 and 15 minutes, as
/// mosquitto (and Unix load averages) compute them.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

impl LoadAverage {
    /// Folds in `count` events seen over `interval`.
    pub fn update(&mut self, count: u64, interval: Duration) {
        let secs = interval.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let per_minute = count as f64 * 60.0 / secs;
        for (value, period) in [
            (&mut self.one, 60.0),
            (&mut self.five, 300.0),
            (&mut self.fifteen, 900.0),
        ] {
            let decay = (-secs / period).exp();
            *value = per_minute + decay * (*value - per_minute);
        }
    }
}

/// Counter totals at one tick.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    messages_received: u64,
    messages_sent: u64,
    bytes_received: u64,
    bytes_sent: u64,
    connections: u64,
}

impl Totals {
    fn read(broker: &Broker) -> Totals {
        let s = &broker.stats;
        let sum = |a: &[std::sync::atomic::AtomicU64; 3]| -> u64 {
            a.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        };
        Totals {
            messages_received: sum(&s.received_by_qos),
            messages_sent: sum(&s.sent_by_qos),
            bytes_received: s.bytes_received.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            connections: s.connections_total.load(Ordering::Relaxed),
        }
    }
}

/// The load averages kept between ticks.
#[derive(Debug, Default)]
struct Loads {
    messages_received: LoadAverage,
    messages_sent: LoadAverage,
    bytes_received: LoadAverage,
    bytes_sent: LoadAverage,
    connections: LoadAverage,
}

/// Every `$SYS` topic and its current value.
fn values(broker: &Broker, loads: &Loads) -> Vec<(String, String)> {
    let s = &broker.stats;
    let t = Totals::read(broker);
    let connected = s.clients_connected();
    let sessions = broker.session_count();
    let mut v: Vec<(String, String)> = vec![
        (
            "version".into(),
            format!("sluice version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime".into(),
            format!("{} seconds", broker.uptime().as_secs()),
        ),
        ("clients/connected".into(), connected.to_string()),
        (
            "clients/disconnected".into(),
            sessions.saturating_sub(connected).to_string(),
        ),
        ("clients/total".into(), sessions.max(connected).to_string()),
        (
            "clients/maximum".into(),
            s.max_connected.load(Ordering::Relaxed).to_string(),
        ),
        ("messages/received".into(), t.messages_received.to_string()),
        ("messages/sent".into(), t.messages_sent.to_string()),
        (
            "publish/messages/received".into(),
            t.messages_received.to_string(),
        ),
        ("publish/messages/sent".into(), t.messages_sent.to_string()),
        (
            "publish/messages/dropped".into(),
            s.messages_dropped.load(Ordering::Relaxed).to_string(),
        ),
        ("bytes/received".into(), t.bytes_received.to_string()),
        ("bytes/sent".into(), t.bytes_sent.to_string()),
        (
            "subscriptions/count".into(),
            broker.subscription_count().to_string(),
        ),
        (
            "retained messages/count".into(),
            broker.retained_count().to_string(),
        ),
        (
            "store/bytes".into(),
            broker.store().disk_usage().to_string(),
        ),
    ];
    for (name, load) in [
        ("messages/received", loads.messages_received),
        ("messages/sent", loads.messages_sent),
        ("bytes/received", loads.bytes_received),
        ("bytes/sent", loads.bytes_sent),
        ("connections", loads.connections),
    ] {
        for (period, value) in [
            ("1min", load.one),
            ("5min", load.five),
            ("15min", load.fifteen),
        ] {
            v.push((format!("load/{name}/{period}"), format!("{value:.2}")));
        }
    }
    v
}

/// Publishes the `$SYS` topics every `interval` until shutdown.
pub async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut shutdown = broker.shutdown_signal();
    let mut loads = Loads::default();
    let mut last = Totals::read(&broker);
    let mut last_at = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let t = Totals::read(&broker);
        let elapsed = now - last_at;
        if elapsed >= Duration::from_millis(100) {
            loads
                .messages_received
                .update(t.messages_received - last.messages_received, elapsed);
            loads
                .messages_sent
                .update(t.messages_sent - last.messages_sent, elapsed);
            loads
                .bytes_received
                .update(t.bytes_received - last.bytes_received, elapsed);
            loads
                .bytes_sent
                .update(t.bytes_sent - last.bytes_sent, elapsed);
            loads
                .connections
                .update(t.connections - last.connections, elapsed);
            last = t;
            last_at = now;
        }
        for (topic, value) in values(&broker, &loads) {
            broker.publish(Message::from_broker(
                ByteString::from(format!("$SYS/broker/{topic}")),
                Bytes::from(value),
                QoS::AtMostOnce,
                true,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_converges_to_its_per_minute_value() {
        let mut l = LoadAverage::default();
        for _ in 0..600 {
            // 10 events every 10 s = 60 per minute.
            l.update(10, Duration::from_secs(10));
        }
        assert!((l.one - 60.0).abs() < 0.01, "{l:?}");
        assert!((l.fifteen - 60.0).abs() < 0.5, "{l:?}");
    }

    #[test]
    fn the_one_minute_average_reacts_faster_than_the_fifteen() {
        let mut l = LoadAverage::default();
        l.update(100, Duration::from_secs(10));
        assert!(l.one > l.five && l.five > l.fifteen, "{l:?}");
        assert!(l.one > 0.0);
    }
}
