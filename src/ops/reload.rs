//! Reloading what can change without a restart: TLS certificates, the
//! password and ACL files, the log level and bridge definitions. SIGHUP and
//! `POST /api/v1/reload` both come here. Everything is loaded and checked
//! first; a reload that fails changes nothing and says why.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::auth::AuthError;
use crate::bridge::{BridgeChanges, BridgeStartError, Bridges};
use crate::broker::{AccessControl, Broker};
use crate::config::{Config, ConfigError};
use crate::server::ListenerCtx;

/// Replaces the running log filter; errors name what was wrong.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), LogLevelError> + Send + Sync>;

/// Why a log filter was not put in force.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// Not a valid tracing filter.
    #[error(transparent)]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The running subscriber is gone (shutting down).
    #[error(transparent)]
    Reload(#[from] tracing_subscriber::reload::Error),
}

/// Why a reload changed nothing. The messages are the causes' own: the
/// admin API and the SIGHUP log show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Access(#[from] AuthError),
    /// A bridge could not be built.
    #[error("{0}")]
    Bridges(#[from] BridgeStartError),
    /// The new log filter was refused.
    #[error("{0}")]
    LogLevel(#[from] LogLevelError),
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// The log filter now in force (unchanged when `RUST_LOG` is set: the
    /// environment wins, as at start-up).
    pub log_level: String,
    pub tls_listeners_reloaded: usize,
    pub tls_errors: Vec<String>,
    pub access_reloaded: bool,
    pub bridges: BridgeChanges,
}

pub struct Reloader {
    config_file: Option<PathBuf>,
    broker: Arc<Broker>,
    bridges: Arc<Bridges>,
    /// The bound MQTT listeners, whose TLS material a reload re-reads.
    /// Held here, not by the broker: the broker sits below the server.
    listeners: Vec<Arc<ListenerCtx>>,
    set_log_level: SetLogLevel,
    /// `RUST_LOG` was set at start: it decides the level, not the file.
    log_level_from_env: bool,
    /// One reload at a time.
    lock: tokio::sync::Mutex<String>,
}

impl Reloader {
    pub fn new(
        config_file: Option<PathBuf>,
        broker: Arc<Broker>,
        bridges: Arc<Bridges>,
        listeners: Vec<Arc<ListenerCtx>>,
        set_log_level: SetLogLevel,
        initial_level: String,
        log_level_from_env: bool,
    ) -> Reloader {
        Reloader {
            config_file,
            broker,
            bridges,
            listeners,
            set_log_level,
            log_level_from_env,
            lock: tokio::sync::Mutex::new(initial_level),
        }
    }

    /// Sets the log filter now (admin API), whatever `RUST_LOG` said.
    pub async fn set_log_level(&self, level: &str) -> Result<(), LogLevelError> {
        let mut current = self.lock.lock().await;
        (self.set_log_level)(level)?;
        *current = level.to_owned();
        tracing::info!(level, "log level changed");
        Ok(())
    }

    /// Re-reads the configuration file and applies what may change.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut level = self.lock.lock().await;
        let config = Config::load(self.config_file.as_deref())?;
        let access = AccessControl::load(config.password_file.as_ref(), config.acl_file.as_ref())?;
        // Config::load compiled every transform; the bridges' reload builds
        // every sink before it stops anything.
        let bridges = self.bridges.reload(&config.bridges).await?;
        self.broker.set_access(access);
        if !self.log_level_from_env && *level != config.log_level {
            (self.set_log_level)(&config.log_level)?;
            *level = config.log_level.clone();
        }
        let mut tls_listeners_reloaded = 0;
        let mut tls_errors = Vec::new();
        for l in &self.listeners {
            if let Some(tls) = &l.tls {
                match tls.reload() {
                    Ok(()) => tls_listeners_reloaded += 1,
                    Err(e) => {
                        tracing::error!(listener = %l.addr, error = %e, "TLS reload failed; the previous certificates stay");
                        tls_errors.push(format!("{}: {e}", l.addr));
                    }
                }
            }
        }
        let report = ReloadReport {
            log_level: level.clone(),
            tls_listeners_reloaded,
            tls_errors,
            access_reloaded: true,
            bridges,
        };
        tracing::info!(
            log_level = %report.log_level,
            tls = report.tls_listeners_reloaded,
            bridges_added = ?report.bridges.added,
            bridges_removed = ?report.bridges.removed,
            bridges_restarted = ?report.bridges.restarted,
            "configuration reloaded"
        );
        Ok(report)
    }
}
