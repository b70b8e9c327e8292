//! The `sluice` command: run the broker, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::broker::Broker;
use sluice::config::{Config, ListenerConfig, ListenerProtocol};
use sluice::server;
use sluice::store::Store;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "sluice", version, about = "MQTT 3.1.1 + 5.0 broker for IoT")]
struct Cli {
    /// TOML configuration file. Without it, built-in defaults apply.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured listeners
    /// (e.g. 127.0.0.1:0 for a free port).
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// Data directory for sessions, queues and retained messages
    /// (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory only (overrides `persistence`).
    #[arg(long)]
    in_memory: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and exit.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::load(Some(file)) {
            Ok(_) => {
                println!("{}: configuration OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    if cli.in_memory {
        config.persistence = false;
    }
    if let Some(bind) = cli.bind {
        config.listeners = vec![ListenerConfig {
            bind,
            protocol: ListenerProtocol::Tcp,
        }];
    }
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "broker stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (store, recovered) = if config.persistence {
        let started = std::time::Instant::now();
        let (store, recovered) =
            Store::open(&config.data_dir, config.fsync).with_context(|| {
                format!(
                    "cannot open the data directory {}",
                    config.data_dir.display()
                )
            })?;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            fsync = ?config.fsync,
            open_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        (store, Some(recovered))
    } else {
        tracing::warn!(
            "persistence is off: sessions, queues and retained messages live in memory only"
        );
        (Store::disabled(), None)
    };
    let listener_configs = config.listeners.clone();
    let broker = Broker::new(config, store.clone());
    if let Some(recovered) = recovered {
        let s = broker.restore(recovered);
        tracing::info!(
            sessions = s.sessions,
            subscriptions = s.subscriptions,
            retained = s.retained,
            queued = s.queued,
            inflight = s.inflight,
            messages = s.messages,
            dangling_removed = s.dangling_removed,
            elapsed_ms = s.elapsed.as_millis() as u64,
            disk_bytes = store.disk_usage(),
            "state recovered"
        );
    }
    let listeners = server::bind_listeners(&listener_configs).await?;
    for (l, c) in listeners.iter().zip(&listener_configs) {
        let addr = server::local_addr(l).context("listener has no local address")?;
        tracing::info!(protocol = ?c.protocol, %addr, "listening");
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "sluice started");
    // Keep the broker alive until the store is closed: tearing down its
    // memory releases messages, which must not read as deletions.
    let keep_alive = Arc::clone(&broker);
    server::serve(broker, listeners, shutdown_signal(), Duration::from_secs(5)).await;
    store.close();
    drop(keep_alive);
    tracing::info!("store closed");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
