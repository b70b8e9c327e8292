//! Prints what arrives in a Kafka topic, one line per record: where it is,
//! its key, the bridge's record id (header `sluice-msg-id`) and the payload.
//!
//! ```sh
//! cargo run --example kafka_tail -- --bootstrap 127.0.0.1:9092 --topic telemetry
//! ```
//!
//! It reads every partition of the topic from the beginning (or only what
//! arrives from now on, `--from-end`) without a consumer group: nothing is
//! committed, and every run sees the whole topic again. `--max N` stops
//! after N records, `--timeout SECS` gives up (status 1) if they do not all
//! arrive in time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Parser, Debug)]
#[command(about = "Print the records of a Kafka topic as they arrive")]
struct Args {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The topic to read.
    #[arg(long, default_value = "telemetry")]
    topic: String,
    /// Only records produced from now on.
    #[arg(long)]
    from_end: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Give up after this many seconds (exit status 1 if --max was not reached).
    #[arg(long)]
    timeout: Option<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);

    // librdkafka wants a group id even for `assign`; it is never used.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "kafka-tail")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .context("create the Kafka consumer")?;

    // The topic may not exist yet (or Kafka may still be starting): wait.
    let partitions = loop {
        match consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(5)) {
            Ok(md) => {
                let ids: Vec<i32> = md
                    .topics()
                    .iter()
                    .filter(|t| t.name() == args.topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if !ids.is_empty() {
                    break ids;
                }
            }
            Err(e) => eprintln!("kafka_tail: waiting for {}: {e}", args.bootstrap),
        }
        if expired() {
            bail!("topic {} not found on {}", args.topic, args.bootstrap);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let offset = if args.from_end {
        Offset::End
    } else {
        Offset::Beginning
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(&args.topic, *p, offset)?;
    }
    consumer.assign(&tpl)?;
    eprintln!(
        "kafka_tail: reading {} ({} partitions) on {}",
        args.topic,
        partitions.len(),
        args.bootstrap
    );

    let mut count = 0u64;
    while args.max.is_none_or(|m| count < m) {
        if expired() {
            bail!("{count} records before the timeout");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                count += 1;
                let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                let id = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "sluice-msg-id"))
                    .and_then(|h| h.value)
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let payload = m.payload().map(String::from_utf8_lossy).unwrap_or_default();
                println!(
                    "{}[{}]@{} key={key} id={id} {payload}",
                    m.topic(),
                    m.partition(),
                    m.offset()
                );
            }
            Some(Err(e)) => eprintln!("kafka_tail: {e}"),
            None => {}
        }
    }
    Ok(())
}
