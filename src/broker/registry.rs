//! The session registry: which session each client id has. Only the map;
//! what ending a session means for subscriptions, the store and shared
//! groups is the broker's to carry out (`Broker::open_session`,
//! `Broker::remove_session`), after this lock is dropped.
//!
//! Lock: `SessionRegistry::sessions` is taken alone, never while the
//! router, the timers or any slot lock is held, and nothing is taken under
//! it ([`SessionRegistry::totals`] copies the map before visiting slots).

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::Mutex;

use super::{SessionSlot, SessionTotals};

/// What [`SessionRegistry::open`] found for a client id.
pub enum Opened {
    /// The existing session, resumed.
    Resumed(Arc<SessionSlot>),
    /// A new session was registered; `replaced` is the one clean start
    /// discarded (already out of the map), for the broker to clean up.
    New {
        slot: Arc<SessionSlot>,
        replaced: Option<Arc<SessionSlot>>,
    },
}

#[derive(Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<ByteString, Arc<SessionSlot>>>,
}

impl SessionRegistry {
    /// Resumes the session of `client_id`, or (none, or `clean_start`)
    /// registers the one `make` builds, taking the old one out.
    pub fn open(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        make: impl FnOnce() -> SessionSlot,
    ) -> Opened {
        let mut sessions = self.sessions.lock();
        let replaced = match sessions.get(client_id) {
            Some(existing) if !clean_start => return Opened::Resumed(Arc::clone(existing)),
            Some(_) => sessions.remove(client_id),
            None => None,
        };
        let slot = Arc::new(make());
        sessions.insert(client_id.clone(), Arc::clone(&slot));
        Opened::New { slot, replaced }
    }

    /// Registers a session (at startup, from the store).
    pub fn insert(&self, slot: Arc<SessionSlot>) {
        self.sessions.lock().insert(slot.client_id.clone(), slot);
    }

    /// Takes `slot` out unless it has already been replaced by another
    /// session of the same client id; true if it was taken out.
    pub fn remove_if_current(&self, slot: &Arc<SessionSlot>) -> bool {
        let mut sessions = self.sessions.lock();
        match sessions.get(&slot.client_id) {
            Some(current) if Arc::ptr_eq(current, slot) => {
                sessions.remove(&slot.client_id);
                true
            }
            _ => false,
        }
    }

    pub fn find(&self, client_id: &ByteString) -> Option<Arc<SessionSlot>> {
        self.sessions.lock().get(client_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether a session may be opened for `client_id` under a cap of
    /// `max`: resuming or replacing one always, a new one below the cap.
    pub fn admits(&self, client_id: &ByteString, max: usize) -> bool {
        let sessions = self.sessions.lock();
        sessions.len() < max || sessions.contains_key(client_id)
    }

    /// Every client id (for housekeeping, not the hot path).
    pub fn ids(&self) -> Vec<ByteString> {
        self.sessions.lock().keys().cloned().collect()
    }

    /// Every session (admin API, totals; not the hot path).
    pub fn all(&self) -> Vec<Arc<SessionSlot>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Sessions online and offline and what they hold. The map is copied
    /// first: slot locks are never taken under the registry's.
    pub fn totals(&self) -> SessionTotals {
        let mut totals = SessionTotals::default();
        for slot in self.all() {
            totals.count(&slot);
        }
        totals
    }
}
