//! What an MQTT bridge's link reports: whether it is connected, whether
//! the remote still had our session, how often it connected, the last
//! error. Read by the broker's bridge status and metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Shared between the link task (writer) and whoever reports on it.
#[derive(Debug, Default)]
pub struct LinkStatus {
    connected: AtomicBool,
    session_present: AtomicBool,
    connects: AtomicU64,
    delivered: AtomicU64,
    skipped: AtomicU64,
    inbound_received: AtomicU64,
    inbound_dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`LinkStatus`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkReport {
    pub connected: bool,
    /// The remote had our session at the last CONNACK.
    pub session_present: bool,
    /// Successful connections since the bridge started (1 + reconnects).
    pub connects: u64,
    /// Records the remote acknowledged (QoS 0: written).
    pub delivered: u64,
    /// Records of a resent batch the remote already had (PUBACK, PUBCOMP,
    /// QoS 0 written): not published again.
    pub skipped_completed: u64,
    /// Messages from the remote handed to the broker (the in direction).
    pub inbound_received: u64,
    /// QoS 0 messages from the remote dropped while the broker was behind.
    pub inbound_dropped: u64,
    pub last_error: Option<String>,
}

impl LinkStatus {
    pub(crate) fn connected(&self, session_present: bool) {
        self.connected.store(true, Ordering::Relaxed);
        self.session_present
            .store(session_present, Ordering::Relaxed);
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, error: String) {
        *self.last_error.lock() = Some(error);
    }

    pub(crate) fn delivered(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn skipped(&self, n: usize) {
        self.skipped.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn inbound_received(&self) {
        self.inbound_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn inbound_dropped(&self) {
        self.inbound_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report(&self) -> LinkReport {
        LinkReport {
            connected: self.connected.load(Ordering::Relaxed),
            session_present: self.session_present.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            skipped_completed: self.skipped.load(Ordering::Relaxed),
            inbound_received: self.inbound_received.load(Ordering::Relaxed),
            inbound_dropped: self.inbound_dropped.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}
