//! `$SYS/broker/...` topics under mosquitto's names, published as retained
//! QoS 0 messages every `sys_interval` seconds. They go through the normal
//! router, so the ACL decides who reads them (`topic read #` does not
//! cover `$SYS`, per MQTT 4.7.2). Kept in memory only.
//!
//! Differences from mosquitto: `messages/*` count PUBLISH packets (as
//! mosquitto's `publish/messages/*` do), and `store/bytes` is the data
//! directory's size on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::numbers::BrokerNumbers;
use crate::broker::Broker;
use crate::codec::QoS;
use crate::session::Message;
use crate::store::now_ms;

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

/// Picks one counter out of the numbers.
type Counter = fn(&BrokerNumbers) -> u64;

/// The counters that get load averages, by their `$SYS` name.
const LOADED: [(&str, Counter); 5] = [
    ("messages/received", |n| n.messages_received),
    ("messages/sent", |n| n.messages_sent),
    ("bytes/received", |n| n.bytes_received),
    ("bytes/sent", |n| n.bytes_sent),
    ("connections", |n| n.connections_total),
];

/// Every `$SYS` topic and its current value.
fn values(n: &BrokerNumbers, loads: &[LoadAverage; LOADED.len()]) -> Vec<(String, String)> {
    let l = &n.limits;
    let mut v: Vec<(String, String)> = [
        ("version", format!("sluice version {}", n.version)),
        ("uptime", format!("{} seconds", n.uptime_secs)),
        ("clients/connected", n.clients_connected.to_string()),
        ("clients/disconnected", n.clients_disconnected.to_string()),
        ("clients/total", n.clients_total.to_string()),
        ("clients/maximum", n.clients_maximum.to_string()),
        ("messages/received", n.messages_received.to_string()),
        ("messages/sent", n.messages_sent.to_string()),
        ("publish/messages/received", n.messages_received.to_string()),
        ("publish/messages/sent", n.messages_sent.to_string()),
        ("publish/messages/dropped", n.messages_dropped.to_string()),
        ("bytes/received", n.bytes_received.to_string()),
        ("bytes/sent", n.bytes_sent.to_string()),
        ("subscriptions/count", n.subscriptions.to_string()),
        ("retained messages/count", n.retained.to_string()),
        ("store/bytes", n.store_bytes.to_string()),
        ("limits/opening/bytes", l.opening_bytes.to_string()),
        ("limits/retained/bytes", l.retained_bytes.to_string()),
        ("limits/queued/bytes", l.queued_bytes.to_string()),
        (
            "limits/refused/connect_too_large",
            l.refused_connect_too_large.to_string(),
        ),
        ("limits/refused/opening_wait", l.opening_waits.to_string()),
        ("limits/refused/retained", l.refused_retained.to_string()),
        ("limits/refused/sessions", l.refused_sessions.to_string()),
        (
            "limits/refused/queued_bytes",
            l.refused_queued_bytes.to_string(),
        ),
    ]
    .into_iter()
    .map(|(topic, value)| (topic.to_owned(), value))
    .collect();
    for ((name, _), load) in LOADED.iter().zip(loads) {
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
    let mut loads = [LoadAverage::default(); LOADED.len()];
    let mut last = BrokerNumbers::read(&broker);
    let mut last_at = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let numbers = BrokerNumbers::read(&broker);
        let elapsed = now - last_at;
        if elapsed >= Duration::from_millis(100) {
            for ((_, pick), load) in LOADED.iter().zip(&mut loads) {
                load.update(pick(&numbers).saturating_sub(pick(&last)), elapsed);
            }
            last = numbers.clone();
            last_at = now;
        }
        for (topic, value) in values(&numbers, &loads) {
            broker.publish(Message::from_broker(
                ByteString::from(format!("$SYS/broker/{topic}")),
                Bytes::from(value),
                QoS::AtMostOnce,
                true,
                now_ms(),
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
