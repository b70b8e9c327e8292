//! `sluice-bench`: an MQTT load generator built on the project's codec.
//!
//! Written to cost little CPU, since on a small machine it shares the cores
//! with the broker under test: one hand-rolled client per connection, no
//! client library, writes batched per wake-up, no allocation per message on
//! the hot path beyond the shared encode buffer.
//!
//! Every payload carries the publisher's index, a sequence number and the
//! send time, so subscribers measure latency, loss, duplicates and
//! reordering themselves.

// No unwrap on anything outside tests (house rule; Cargo.toml says why
// this is not in the [lints] table).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod args;
mod conn;
mod cpu;
mod frames;
mod pubsub;
mod reflector;
mod report;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = args::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &args.scenario {
            args::Scenario::Conn {
                connections,
                source_addresses,
                in_flight,
                client_id_len,
                subscribe,
                settle,
            } => {
                let plan = conn::ConnPlan {
                    connections: *connections,
                    source_addresses: *source_addresses,
                    in_flight: *in_flight,
                    client_id_len: *client_id_len,
                    subscribe: *subscribe,
                    settle: *settle,
                };
                conn::run(&args, &plan).await
            }
            args::Scenario::Reflector => reflector::run(&args.host, args.port)
                .await
                .map(|()| report::Report::conn(serde_json::Value::Null)),
            _ => pubsub::run(&args).await,
        }
    });
    match result {
        Ok(report) => {
            report.print(args.json);
            if report.failed() {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
