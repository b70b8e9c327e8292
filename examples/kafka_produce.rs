//! Direct production to Kafka with rdkafka, as the Kafka sink configures
//! it (idempotent, acks=all, linger 5 ms): the baseline the Kafka bridge's
//! end-to-end throughput is compared with (examples/bench/kafka_bridge.py).
//!
//!     cargo run --release --example kafka_produce -- BOOTSTRAP TOPIC COUNT [SIZE] [WINDOW]
//!
//! Prints one JSON line: records, seconds, records per second.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        anyhow::bail!("usage: kafka_produce BOOTSTRAP TOPIC COUNT [SIZE] [WINDOW]");
    }
    let (bootstrap, topic) = (&args[1], &args[2]);
    let count: usize = args[3].parse()?;
    let size: usize = args.get(4).map_or(Ok(64), |s| s.parse())?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?;
    let payload = vec![b'x'; size];
    // Records awaited together: the sink's `max_in_flight` (default 5000).
    let window: usize = args.get(5).map_or(Ok(5000), |s| s.parse())?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = window.min(count - sent);
        let mut deliveries = Vec::with_capacity(n);
        for i in 0..n {
            let key = format!("k{}", (sent + i) % 16);
            let record = FutureRecord::to(topic)
                .payload(&payload[..])
                .key(key.as_bytes());
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
            );
        }
        for d in deliveries {
            d.await?
                .map_err(|(e, _)| anyhow::anyhow!("delivery: {e}"))?;
        }
        sent += n;
    }
    let secs = started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(5))?;
    println!(
        "{{\"records\": {count}, \"seconds\": {secs:.3}, \"per_sec\": {:.0}}}",
        count as f64 / secs
    );
    Ok(())
}
