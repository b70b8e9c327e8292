//! `Config::validate`: every check start-up makes, section by section.
//! Each section checks itself (`Limits`, `ListenerConfig`, `AdminConfig`,
//! the bridges crate's `BridgeConfig`); this file runs them in a fixed
//! order (the first problem is the one reported) and names the source.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{Config, ConfigError, MAX_WORKER_THREADS};

/// One problem: the key (in full, `limits.max_packet_size`) and why.
#[derive(Debug)]
pub(super) struct Problem {
    key: String,
    message: String,
}

impl Problem {
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem with its key under `prefix` (`listeners[2]`).
    fn under(self, prefix: &str) -> Problem {
        Problem {
            key: format!("{prefix}.{}", self.key),
            message: self.message,
        }
    }

    fn at(self, source_name: &str) -> ConfigError {
        ConfigError::Invalid {
            source_name: source_name.to_string(),
            key: self.key,
            message: self.message,
        }
    }
}

/// Each named file that is set must exist.
pub(super) fn must_exist<'a>(
    files: impl IntoIterator<Item = (&'static str, Option<&'a PathBuf>)>,
) -> Result<(), Problem> {
    for (key, path) in files {
        if let Some(p) = path {
            if !p.exists() {
                return Err(Problem::new(key, format!("{} does not exist", p.display())));
            }
        }
    }
    Ok(())
}

/// `*`, `name` or `name:port` (no scheme, no path).
pub(super) fn is_host_pattern(h: &str) -> bool {
    h == "*" || (!h.is_empty() && !h.contains(['/', ' ', '*']))
}

/// `*` or `http(s)://host[:port]` (no path).
pub(super) fn is_origin_pattern(o: &str) -> bool {
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"));
    o == "*" || rest.is_some_and(|r| is_host_pattern(r.trim_end_matches('/')) && r != "*")
}

impl Config {
    pub(super) fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        self.first_problem().map_err(|p| p.at(source_name))
    }

    fn first_problem(&self) -> Result<(), Problem> {
        if self.listeners.is_empty() {
            return Err(Problem::new("listeners", "at least one listener is needed"));
        }
        self.limits.validate_packet_size()?;
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(Problem::new(
                "worker_threads",
                format!("must be at most {MAX_WORKER_THREADS} (0: one per core)"),
            ));
        }
        self.limits.validate()?;
        for (i, l) in self.listeners.iter().enumerate() {
            l.validate()
                .map_err(|p| p.under(&format!("listeners[{i}]")))?;
        }
        must_exist([
            ("password_file", self.password_file.as_ref()),
            ("acl_file", self.acl_file.as_ref()),
        ])?;
        self.validate_bridges()?;
        if self.persistence && self.data_dir.as_os_str().is_empty() {
            return Err(Problem::new(
                "data_dir",
                "must not be empty when persistence is on",
            ));
        }
        self.limits.validate_connections()?;
        self.admin.validate()?;
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(Problem::new(
                "log_level",
                "not a valid log filter (try \"info\" or \"sluice=debug\")",
            ));
        }
        Ok(())
    }

    /// Each bridge checks itself (the bridges crate); the broker adds its
    /// topic filter rule and that names are unique.
    fn validate_bridges(&self) -> Result<(), Problem> {
        let max_levels = self.limits.max_topic_levels;
        let mut names = HashSet::new();
        for (i, b) in self.bridges.iter().enumerate() {
            let key = |k: &str| format!("bridges[{i}].{k}");
            b.validate(|f| crate::topic::TopicFilter::parse(f.into(), max_levels).map(drop))
                .map_err(|e| Problem::new(key(&e.key), e.message))?;
            if !names.insert(b.name.clone()) {
                return Err(Problem::new(
                    key("name"),
                    format!("bridge `{}`: a second bridge with this name", b.name),
                ));
            }
        }
        Ok(())
    }
}
