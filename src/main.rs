//! The `sluice` command: run the broker, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::broker::Broker;
use sluice::config::{Config, ListenerConfig, ListenerProtocol};
use sluice::server;
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
    let listeners = server::bind_listeners(&config.listeners).await?;
    for (l, c) in listeners.iter().zip(&config.listeners) {
        let addr = server::local_addr(l).context("listener has no local address")?;
        tracing::info!(protocol = ?c.protocol, %addr, "listening");
    }
    let broker = Broker::new(config);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "sluice started");
    server::serve(broker, listeners, shutdown_signal(), Duration::from_secs(5)).await;
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
