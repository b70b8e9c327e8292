//! The `sluice` command: run the broker, or check a configuration file.

// No unwrap on anything outside tests (house rule; Cargo.toml says why
// this is not in the [lints] table).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::admin::{self, AdminState};
use sluice::bridge::Bridges;
use sluice::broker::{AccessControl, Broker, Seams};
use sluice::cluster::{Cluster, InterestRouter};
use sluice::config::{Config, ListenerConfig, LogFormat};
use sluice::ops::reload::{Reloader, SetLogLevel};
use sluice::ops::sys_topics;
use sluice::server;
use sluice::store::Store;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the broker allocates and frees
/// on different threads (a message is built by its publisher's task and
/// dropped by the last subscriber's), where glibc's malloc spends much of
/// the broker's CPU (`_int_malloc`, `unlink_chunk`, `malloc_consolidate`).
/// BENCHMARKS.md ("Allocator") has what it measured. The `system-alloc`
/// feature keeps the system allocator, for heap profilers (valgrind's
/// massif and dhat see only malloc).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Serve the admin API (metrics, health, REST) on this address instead
    /// of `admin.bind` (e.g. 127.0.0.1:0).
    #[arg(long)]
    admin_bind: Option<std::net::SocketAddr>,
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
    if let Some(command) = &cli.command {
        return run_command(command);
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
    let (set_log_level, from_env) = init_logging(&config);
    if let Some(addr) = cli.admin_bind {
        config.admin.bind = addr;
    }
    let logging = Logging {
        set_log_level,
        from_env,
        config_file: cli.config.clone(),
    };

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, logging)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "broker stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sluice passwd` and `sluice check-config`: run, say how it went, exit.
fn run_command(command: &Command) -> ExitCode {
    match command {
        Command::Passwd {
            file,
            user,
            password,
        } => match passwd(file, user, password.clone()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig { file } => match Config::load(Some(file)) {
            Ok(_) => {
                println!("{}: configuration OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Installs the log subscriber (text or JSON on stderr) behind a reload
/// handle; returns how to change its filter and whether `RUST_LOG` set it.
fn init_logging(config: &Config) -> (SetLogLevel, bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // An empty RUST_LOG counts as unset.
    let log_from_env = std::env::var("RUST_LOG").is_ok_and(|v| !v.trim().is_empty());
    let filter = if log_from_env {
        EnvFilter::try_from_env("RUST_LOG")
            .unwrap_or_else(|_| EnvFilter::new(with_quiet_storage(&config.log_level)))
    } else {
        EnvFilter::new(with_quiet_storage(&config.log_level))
    };
    // The filter sits behind a reload handle: the level changes at run time.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let output = match config.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        // One JSON object per line, for log collectors.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    let set_log_level: SetLogLevel = Box::new(move |level: &str| {
        let f = EnvFilter::try_new(with_quiet_storage(level))?;
        Ok(handle.reload(f)?)
    });
    (set_log_level, log_from_env)
}

/// The storage engine's own info lines are noise to an operator.
fn with_quiet_storage(level: &str) -> String {
    if level.contains("fjall") || level.contains("lsm_tree") {
        level.to_owned()
    } else {
        format!("{level},fjall=warn,lsm_tree=warn")
    }
}

/// How the running log filter can be changed, and where the configuration
/// came from (for reloads).
struct Logging {
    set_log_level: SetLogLevel,
    from_env: bool,
    config_file: Option<PathBuf>,
}

async fn run(config: Config, logging: Logging) -> anyhow::Result<()> {
    let listener_configs = config.listeners.clone();
    let allow_anonymous = config.allow_anonymous;
    let initial_level = config.log_level.clone();
    let interest = config.cluster.as_ref().map(|_| InterestRouter::new());
    let (broker, store) = start_broker(config, interest.as_ref().map(|(r, _)| Arc::clone(r)))?;
    let cfg = &broker.config;
    let bridges = Bridges::start_all(&broker, &cfg.bridges, &cfg.data_dir).await?;
    // After the bridges: their start removes `$bridge/` sessions it does
    // not know, and the cluster's link session is one.
    let cluster = match (&cfg.cluster, interest) {
        (Some(cluster_cfg), Some(interest)) => {
            let cluster = Cluster::start(cluster_cfg, &broker, interest).await?;
            tracing::info!(node = %cluster_cfg.node_name, servers = ?cluster_cfg.servers, replicas = cluster_cfg.replicas, "cluster mode: connecting to NATS");
            Some(cluster)
        }
        _ => None,
    };
    let listeners = server::bind_all(&listener_configs, allow_anonymous).await?;
    for l in &listeners {
        let (addr, protocol) = (l.ctx.addr, l.ctx.protocol.name());
        tracing::info!(protocol, %addr, "listening");
    }
    let bound: Vec<_> = listeners.iter().map(|l| Arc::clone(&l.ctx)).collect();
    let reloader = Arc::new(Reloader::new(
        logging.config_file,
        Arc::clone(&broker),
        Arc::clone(&bridges),
        bound.clone(),
        logging.set_log_level,
        initial_level,
        logging.from_env,
    ));
    let admin = start_admin(&broker, &bridges, &reloader, bound).await?;
    if let (Some(state), Some(cluster)) = (&admin, &cluster) {
        let _ = state.cluster.set(cluster.status());
    }
    tokio::spawn(Arc::clone(&broker).housekeeping(Duration::from_secs(30)));
    if cfg.sys_interval > 0 {
        tokio::spawn(sys_topics::run(
            Arc::clone(&broker),
            Duration::from_secs(cfg.sys_interval),
        ));
    }
    // Signal handlers are installed before "sluice started": a signal that
    // comes right after must not find the default action (exit) in place.
    let (first_signal, second_signal) = signals(store.clone())?;
    tokio::spawn(reload_on_sighup(Arc::clone(&reloader))?);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "sluice started");
    let drain_timeout = Duration::from_secs(cfg.drain_timeout_secs);
    // Keep the broker alive until the store is closed: tearing down its
    // memory releases messages, which must not read as deletions.
    let keep_alive = Arc::clone(&broker);
    // A storage failure shuts the broker down like a signal, and arms a
    // deadline for the exit (see `ops::store_failure`).
    let store_failure = tokio::spawn(sluice::ops::store_failure::watch(store.clone()));
    let shutdown = async move {
        tokio::select! {
            () = first_signal => {}
            _ = store_failure => {}
        }
    };
    server::serve(broker, listeners, shutdown, Duration::from_secs(5)).await;
    if let Some(state) = &admin {
        state.ready.store(false, Ordering::Release);
    }
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    let result = stop(&bridges, &store, drain_timeout).await;
    drop(second_signal);
    drop(keep_alive);
    result
}

/// Opens the store (or runs in memory), loads the password and ACL files,
/// and builds the broker with what the store recovered.
/// A clustered node's router (`cluster`) announces its filters to NATS.
fn start_broker(
    config: Config,
    cluster: Option<Arc<InterestRouter>>,
) -> anyhow::Result<(Arc<Broker>, Store)> {
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
    let anonymous = config
        .listeners
        .iter()
        .any(|l| l.allow_anonymous.unwrap_or(config.allow_anonymous));
    sluice::auth::warn_if_names_are_unverified(
        access.acl.as_ref(),
        access.passwords.is_some(),
        anonymous,
    );
    warn_if_anonymous_off_loopback(&config);
    warn_if_few_open_files(config.limits.max_connections);
    let broker = match cluster {
        Some(router) => Broker::with_seams(
            config,
            store.clone(),
            Seams {
                router,
                ..Seams::default()
            },
        ),
        None => Broker::new(config, store.clone()),
    };
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
    Ok((broker, store))
}

/// Warns about each listener that lets clients in without credentials from
/// other machines. That is the container image's quick-start default (a
/// first `mosquitto_pub` just works), fine on a trusted network, but the
/// operator must know it is what they run. A listener that requires a
/// client certificate is not open to anyone.
fn warn_if_anonymous_off_loopback(config: &Config) {
    for l in &config.listeners {
        let anonymous = l.allow_anonymous.unwrap_or(config.allow_anonymous);
        let certificate = l.tls.as_ref().is_some_and(|t| t.require_certificate);
        if anonymous && !certificate && !l.bind.ip().to_canonical().is_loopback() {
            tracing::warn!(protocol = l.protocol.name(), addr = %l.bind, "anonymous clients are accepted off loopback: anyone who reaches this address may publish and subscribe without credentials (set allow_anonymous = false and a password_file, or limit them with an acl_file)");
        }
    }
}

/// Raises the open-file limit as far as allowed and says so when it is
/// still below what `max_connections` needs.
fn warn_if_few_open_files(max_connections: usize) {
    if let Some(limit) = sluice::ops::process::raise_fd_limit() {
        let wanted = max_connections as u64 + 1024;
        if limit < wanted {
            tracing::warn!(open_files = limit, max_connections, "the open-file limit is below max_connections; raise it (ulimit -n) to hold that many clients");
        }
    }
}

/// Binds and serves the admin listener when it is enabled; its state says
/// whether the broker is ready.
async fn start_admin(
    broker: &Arc<Broker>,
    bridges: &Arc<Bridges>,
    reloader: &Arc<Reloader>,
    bound: Vec<Arc<server::ListenerCtx>>,
) -> anyhow::Result<Option<Arc<AdminState>>> {
    let cfg = &broker.config;
    if !cfg.admin.enabled {
        return Ok(None);
    }
    let listener = admin::bind(&cfg.admin).await?;
    let state = AdminState::new(
        &cfg.admin,
        &listener,
        Arc::clone(broker),
        Arc::clone(bridges),
        Arc::clone(reloader),
        bound,
    )?;
    state.ready.store(true, Ordering::Release);
    let scheme = if cfg.admin.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(protocol = "admin", addr = %listener.addr, scheme, "admin API listening");
    tokio::spawn(admin::serve(listener, Arc::clone(&state)));
    Ok(Some(state))
}

/// After the listeners closed: bridges deliver what they can within the
/// drain timeout (not after a storage failure), stop, and the store closes.
async fn stop(bridges: &Bridges, store: &Store, drain_timeout: Duration) -> anyhow::Result<()> {
    let failure = store.failure();
    if failure.is_none() {
        let left = bridges.drain(drain_timeout).await;
        if left > 0 {
            tracing::warn!(records = left, "bridges could not deliver everything before the drain timeout; the rest stays buffered for the next start");
        }
    }
    bridges.stop_all().await;
    store.close();
    if let Some(cause) = failure {
        anyhow::bail!("storage failure: {cause}");
    }
    tracing::info!("store closed");
    Ok(())
}

/// SIGHUP reloads what can change without a restart. A reload that fails
/// leaves the running configuration in place. The handler is installed
/// when this is called, not when the task first runs.
fn reload_on_sighup(
    reloader: Arc<Reloader>,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut hup = Signals::hangup()?;
    Ok(async move {
        while hup.recv().await {
            if let Err(e) = reloader.reload().await {
                tracing::error!(error = %e, "reload failed; the running configuration stays");
            }
        }
    })
}

/// The first SIGINT/SIGTERM starts a graceful shutdown (the returned
/// future resolves); a second one exits at once, after writing what the
/// store holds so far (everything acknowledged is already durable).
fn signals(
    store: Store,
) -> anyhow::Result<(
    impl std::future::Future<Output = ()>,
    tokio::task::JoinHandle<()>,
)> {
    let mut stop = Signals::termination()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        stop.recv().await;
        let _ = tx.send(());
        stop.recv().await;
        tracing::warn!("second signal: exiting now");
        let closing = std::thread::spawn(move || store.close());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !closing.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::process::exit(1);
    });
    Ok((
        async move {
            let _ = rx.await;
        },
        watcher,
    ))
}

/// Signal streams, registered at construction.
struct Signals {
    #[cfg(unix)]
    streams: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn of(kinds: &[tokio::signal::unix::SignalKind]) -> anyhow::Result<Signals> {
        let streams = kinds
            .iter()
            .map(|k| tokio::signal::unix::signal(*k))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot install signal handlers")?;
        Ok(Signals { streams })
    }

    /// SIGINT or SIGTERM.
    fn termination() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::SignalKind;
            Signals::of(&[SignalKind::interrupt(), SignalKind::terminate()])
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    fn hangup() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            Signals::of(&[tokio::signal::unix::SignalKind::hangup()])
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal of any of the kinds; false if none can come.
    async fn recv(&mut self) -> bool {
        #[cfg(unix)]
        {
            let polls = self.streams.iter_mut().map(|s| Box::pin(s.recv()));
            futures_util::future::select_all(polls).await.0.is_some()
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            true
        }
    }
}
