//! The `sluice` command: run the broker, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::broker::{AccessControl, Broker};
use sluice::config::{Config, ListenerConfig, LogFormat};
use sluice::server;
use sluice::server::ListenerCtx;
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
    /// Create or update a user in a mosquitto-format password file ($7$,
    /// PBKDF2-SHA512). Prompts for the password unless --password is given.
    Passwd {
        /// The password file (created if missing).
        file: PathBuf,
        /// The user name.
        user: String,
        /// The password, for scripts (visible in the process list).
        #[arg(long)]
        password: Option<String>,
    },
}

fn passwd(file: &std::path::Path, user: &str, password: Option<String>) -> anyhow::Result<()> {
    if user.is_empty() || user.contains(':') {
        anyhow::bail!("a user name must be non-empty and contain no ':'");
    }
    let password = match password {
        Some(p) => p,
        None => {
            let first = rpassword::prompt_password("Password: ")?;
            let again = rpassword::prompt_password("Reenter password: ")?;
            if first != again {
                anyhow::bail!("passwords do not match");
            }
            first
        }
    };
    sluice::auth::upsert_password_file(file, user, password.as_bytes())?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Passwd {
        file,
        user,
        password,
    }) = &cli.command
    {
        return match passwd(file, user, password.clone()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
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
        config.listeners = vec![ListenerConfig::tcp(bind)];
    }
    // The storage engine's own info lines are noise to an operator.
    let level = if config.log_level.contains("fjall") || config.log_level.contains("lsm_tree") {
        config.log_level.clone()
    } else {
        format!("{},fjall=warn,lsm_tree=warn", config.log_level)
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&level));
    use std::io::IsTerminal;
    match config.log_format {
        LogFormat::Human => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        // One JSON object per line, for log collectors.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }

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
    let access = AccessControl::load(config.password_file.as_ref(), config.acl_file.as_ref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener_configs = config.listeners.clone();
    let allow_anonymous = config.allow_anonymous;
    let broker = Broker::new(config, store.clone());
    broker.set_access(access);
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
    let data_dir = broker.config.data_dir.clone();
    let bridges = sluice::bridge::start_all(&broker, &data_dir)?;
    let listeners = server::bind_all(&listener_configs, allow_anonymous).await?;
    for l in &listeners {
        let (addr, protocol) = (l.ctx.addr, l.ctx.protocol.name());
        tracing::info!(protocol, %addr, "listening");
    }
    let contexts: Vec<Arc<ListenerCtx>> = listeners.iter().map(|l| Arc::clone(&l.ctx)).collect();
    tokio::spawn(reload_on_sighup(Arc::clone(&broker), contexts));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "sluice started");
    // Keep the broker alive until the store is closed: tearing down its
    // memory releases messages, which must not read as deletions.
    let keep_alive = Arc::clone(&broker);
    server::serve(broker, listeners, shutdown_signal(), Duration::from_secs(5)).await;
    store.close();
    drop(keep_alive);
    drop(bridges);
    tracing::info!("store closed");
    Ok(())
}

/// SIGHUP re-reads the password file, the ACL and TLS certificates. A file
/// that fails to load leaves the running rules in place.
async fn reload_on_sighup(broker: Arc<Broker>, listeners: Vec<Arc<ListenerCtx>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match broker.reload_access() {
                Ok(()) => tracing::info!("password file and ACL reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; the previous rules stay in force")
                }
            }
            for l in &listeners {
                if let Some(tls) = &l.tls {
                    match tls.reload() {
                        Ok(()) => tracing::info!(listener = %l.addr, "TLS certificates reloaded"),
                        Err(e) => {
                            tracing::error!(listener = %l.addr, error = %e, "TLS reload failed; the previous certificates stay")
                        }
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (broker, listeners);
    }
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
