//! The broker's life as a process sees it: when it started, how many
//! connections it holds against `max_connections`, and the shutdown
//! signal every long-running task watches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub struct Lifecycle {
    started: Instant,
    connections: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            shutdown: watch::channel(false).0,
        }
    }
}

impl Lifecycle {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reserves a connection; false when `max` are held already.
    pub fn try_add_connection(&self, max: usize) -> bool {
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Changes to `true` when shutdown has been requested.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether shutdown has begun (read by a connection parking itself,
    /// which must not miss it).
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}
