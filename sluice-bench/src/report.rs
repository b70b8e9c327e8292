//! Results of a run, as text or one JSON object.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::args::{Args, Scenario};

pub struct Report {
    value: serde_json::Value,
    failed: bool,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn pubsub(
        args: &Args,
        publishers: usize,
        subscribers: usize,
        window: Duration,
        sent: u64,
        received: u64,
        lost: u64,
        duplicates_or_reordered: u64,
        latency_us: &Histogram<u64>,
        gen_cpu: Option<f64>,
        broker_cpu: Option<f64>,
    ) -> Report {
        let secs = window.as_secs_f64();
        let rate = received as f64 / secs;
        let scenario = match args.scenario {
            Scenario::Fanin { .. } => "fanin",
            Scenario::Fanout { .. } => "fanout",
            Scenario::Pairs { .. } => "pairs",
            Scenario::Conn { .. } => "conn",
            Scenario::Reflector => "reflector",
        };
        let q = |p: f64| latency_us.value_at_quantile(p);
        let value = json!({
            "scenario": scenario,
            "mqtt": args.mqtt_version,
            "qos": args.qos,
            "size": args.size,
            "publishers": publishers,
            "subscribers": subscribers,
            "target_rate": args.rate,
            "closed_loop": args.max_owed > 0,
            "seconds": secs,
            "sent": sent,
            "received": received,
            "sent_per_sec": sent as f64 / secs,
            "received_per_sec": rate,
            "mb_per_sec": rate * args.size as f64 / 1e6,
            "lost": lost,
            "duplicates_or_reordered": duplicates_or_reordered,
            "latency_us": {
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999), "max": latency_us.max(),
            },
            "generator_cpu_s": gen_cpu,
            "broker_cpu_s": broker_cpu,
            "received_per_broker_cpu_s": broker_cpu.filter(|c| *c > 0.0).map(|c| received as f64 / c),
        });
        Report {
            failed: args.qos > 0 && lost > 0,
            value,
        }
    }

    pub fn conn(value: serde_json::Value) -> Report {
        Report {
            value,
            failed: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", self.value);
            return;
        }
        let v = &self.value;
        if v["scenario"] == "conn" {
            println!(
                "conn: {} connections in {:.2}s ({:.0}/s); broker RSS {} per connection",
                v["connections"],
                v["connect_seconds"],
                v["connects_per_sec"],
                v["rss_per_connection"]
            );
            return;
        }
        println!(
            "{} qos{} {}B {}→{}: sent {:.0}/s, received {:.0}/s ({:.1} MB/s), lost {}, dup/reordered {}",
            v["scenario"].as_str().unwrap_or("?"),
            v["qos"],
            v["size"],
            v["publishers"],
            v["subscribers"],
            v["sent_per_sec"].as_f64().unwrap_or(0.0),
            v["received_per_sec"].as_f64().unwrap_or(0.0),
            v["mb_per_sec"].as_f64().unwrap_or(0.0),
            v["lost"],
            v["duplicates_or_reordered"],
        );
        let l = &v["latency_us"];
        println!(
            "latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}",
            l["p50"], l["p90"], l["p99"], l["p99_9"], l["max"]
        );
        println!(
            "cpu s: generator {} broker {}; received per broker cpu-second {}",
            v["generator_cpu_s"], v["broker_cpu_s"], v["received_per_broker_cpu_s"]
        );
    }
}
