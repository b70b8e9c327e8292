//! Durable state. The broker's memory is the working copy; the store is
//! its journal. Changes go to a committer thread as batches of [`Op`]s, and
//! each batch gets a [`Ticket`]: the connection that must not acknowledge
//! before the change is on disk waits for its ticket, everyone else moves
//! on. The committer writes whatever has accumulated in one atomic batch
//! and one fsync (group commit), so many publishers share one disk flush.
//!
//! # Crash consistency
//!
//! A power loss may drop every write that was not fsynced; a start after
//! one at any moment opens the data or recovers it, never refuses it.
//!
//! 1. The engine (fjall) journals every batch; the committer acknowledges
//!    a ticket only after the batch holding it and every batch before it
//!    were applied and fsynced (`fsync = "never"`: applied). A failed or
//!    panicked batch fails the store for good (`committer`).
//! 2. Every file the store keeps outside the engine (today only the
//!    format marker) is written to a temporary name, fsynced, renamed over
//!    the target, and the directory fsynced (`durable_file`). The data
//!    directory's own entry is fsynced in its parent when it is opened.
//! 3. A new data directory gets its marker before the engine exists, so
//!    an engine never exists without a marker having been written.
//! 4. A marker that is missing, empty, zero-filled or cut short (older
//!    Sluice wrote it without fsync) is rewritten, not refused: with no
//!    engine yet the directory is new; with an engine, its keyspaces tell
//!    the format (entries in format 1 keyspaces mean format 1, which is
//!    then migrated; otherwise format 2). A marker with other contents, a
//!    newer format, or unknown files without a marker are refused: those
//!    are not what a crash leaves.
//! 5. A format migration writes the new layout and removes the old one in
//!    one atomic engine batch, syncs, and only then updates the marker
//!    (`migrate`): it can be cut at any point and redone.
//!
//! Layout: `records` (binary formats), `keys` (key layout), `fjall_backend`
//! (the engine and recovery scan), `data_dir` (marker and recovery),
//! `migrate` (older formats), `durable_file` (files outside the engine),
//! `backend` (what the committer needs of an engine), `committer` (group
//! commit and failure), this module (ops, tickets, the handle).

mod backend;
mod commit_stats;
mod committer;
mod data_dir;
pub mod durable_file;
mod fjall_backend;
mod keys;
mod migrate;
mod records;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use parking_lot::Mutex;
use tokio::sync::watch;

use committer::{Command, Outcome};

/// The session's outbox types and durability ticket, re-exported where
/// the store's users have always found them.
pub use crate::session::{OutboxRecord, OutboxState, Ticket};
pub use backend::Backend;
pub use commit_stats::{CommitStats, COMMIT_BUCKETS};
pub use fjall_backend::{FjallBackend, Recovered};
pub use keys::Digest;
pub use records::{MessageRecord, SessionRecord, SubscriptionRecord, FORMAT_VERSION};

/// How hard the store works to keep what it acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync every submitted batch on its own before acknowledging it.
    Always,
    /// Group commit: everything submitted while the previous fsync ran is
    /// written and fsynced together, then acknowledged.
    #[default]
    Batch,
    /// Write to the OS without fsync and acknowledge at once: survives a
    /// process crash, not a power loss.
    Never,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("storage engine panicked: {0}")]
    Panicked(String),
    #[error("damaged data: {0} could not be read")]
    Corrupt(&'static str),
    #[error("{path} is not a Sluice data directory (it has files but no Sluice format marker)")]
    Foreign { path: PathBuf },
    #[error("{path} holds data format {found}, this Sluice reads format {expected}")]
    WrongFormat {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> StoreError {
        StoreError::Engine(e.to_string())
    }
}

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Op {
    PutSession {
        client_id: ByteString,
        record: Box<SessionRecord>,
    },
    /// Removes the session with its outbox and incoming QoS 2 ids.
    DeleteSession {
        client_id: ByteString,
    },
    /// Removes the outbox and incoming entries a session left behind when
    /// only the digest of its id is known (see [`Recovered`]).
    DeleteOrphaned {
        session: keys::Digest,
    },
    PutMessage {
        id: u64,
        record: MessageRecord,
    },
    DeleteMessage {
        id: u64,
    },
    PutOutbox {
        client_id: ByteString,
        seq: u64,
        record: OutboxRecord,
    },
    DeleteOutbox {
        client_id: ByteString,
        seq: u64,
    },
    PutIncoming {
        client_id: ByteString,
        packet_id: u16,
    },
    DeleteIncoming {
        client_id: ByteString,
        packet_id: u16,
    },
    PutRetained {
        topic: ByteString,
        message_id: u64,
    },
    DeleteRetained {
        topic: ByteString,
    },
}

struct Inner {
    sender: Mutex<(u64, Option<std::sync::mpsc::Sender<Command>>)>,
    outcome: Arc<Outcome>,
    next_message_id: AtomicU64,
    /// Set at shutdown: deletes caused by tearing down memory are ignored.
    closing: AtomicBool,
    policy: FsyncPolicy,
    backend: Option<Arc<dyn Backend>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    commit_stats: Arc<CommitStats>,
}

/// Handle to the store; cheap to clone. A disabled store (persistence off)
/// accepts and forgets everything, and every ticket is already durable.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    pub fn disabled() -> Store {
        Store {
            inner: Arc::new(Inner {
                sender: Mutex::new((0, None)),
                outcome: new_outcome(),
                next_message_id: AtomicU64::new(1),
                closing: AtomicBool::new(false),
                policy: FsyncPolicy::Never,
                backend: None,
                thread: Mutex::new(None),
                commit_stats: Arc::default(),
            }),
        }
    }

    /// Opens (or creates) the data directory and reads everything back.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> Result<(Store, Recovered), StoreError> {
        let backend = Arc::new(FjallBackend::open(dir)?);
        let recovered = backend.load()?;
        // Never reuse an id, even when the store was empty at start: bridges
        // hand message ids to consumers for de-duplication. Starting from
        // the clock (µs) stays ahead of earlier runs unless they sustained
        // more than a million messages a second.
        let next_id = (recovered.messages.keys().max().copied().unwrap_or(0) + 1)
            .max(now_ms().saturating_mul(1000));
        let store = Store::start(backend, policy, next_id)?;
        Ok((store, recovered))
    }

    /// Starts the committer over `backend` (already loaded); message ids
    /// continue from `next_message_id`.
    pub fn start(
        backend: Arc<dyn Backend>,
        policy: FsyncPolicy,
        next_message_id: u64,
    ) -> Result<Store, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<Command>();
        let inner = Arc::new(Inner {
            sender: Mutex::new((0, Some(tx))),
            outcome: new_outcome(),
            next_message_id: AtomicU64::new(next_message_id),
            closing: AtomicBool::new(false),
            policy,
            backend: Some(Arc::clone(&backend)),
            thread: Mutex::new(None),
            commit_stats: Arc::default(),
        });
        let outcome = Arc::clone(&inner.outcome);
        let stats = Arc::clone(&inner.commit_stats);
        let handle = std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || committer::run(backend, rx, outcome, policy, stats))
            .map_err(|e| StoreError::Engine(format!("cannot start the committer thread: {e}")))?;
        *inner.thread.lock() = Some(handle);
        Ok(Store { inner })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.backend.is_some()
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.inner.policy
    }

    pub fn next_message_id(&self) -> u64 {
        self.inner.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `ops` for commit. The ticket resolves once they are durable
    /// as the fsync policy defines it.
    pub fn submit(&self, ops: Vec<Op>) -> Ticket {
        if ops.is_empty() || !self.is_enabled() {
            return Ticket::at(0);
        }
        let mut guard = self.inner.sender.lock();
        let (counter, sender) = &mut *guard;
        let Some(tx) = sender.as_ref() else {
            return Ticket::at(0);
        };
        *counter += 1;
        let seq = *counter;
        if tx.send(Command::Write(seq, ops)).is_err() {
            self.inner.outcome.fail(&StoreError::Engine(
                "the committer thread is gone".to_owned(),
            ));
        }
        if self.inner.policy == FsyncPolicy::Never {
            return Ticket::at(0);
        }
        Ticket::at(seq)
    }

    /// Queues a deletion caused by memory being released; ignored once the
    /// broker is shutting down (memory teardown is not a state change).
    pub fn submit_release(&self, ops: Vec<Op>) {
        if !self.inner.closing.load(Ordering::Acquire) {
            self.submit(ops);
        }
    }

    /// The ticket of everything submitted so far: once it is durable, so
    /// is every change submitted before this call.
    pub fn submitted(&self) -> Ticket {
        if self.inner.policy == FsyncPolicy::Never {
            return Ticket::at(0);
        }
        Ticket::at(self.inner.sender.lock().0)
    }

    /// Waits until `ticket` is durable: after a storage failure, for ever
    /// (the process exits; see `committer`).
    pub async fn wait(&self, ticket: Ticket) {
        if self.is_durable(ticket) {
            return;
        }
        let mut rx = self.inner.outcome.durable.subscribe();
        let _ = rx.wait_for(|d| *d >= ticket.seq()).await;
    }

    pub fn is_durable(&self, ticket: Ticket) -> bool {
        ticket.seq() == 0 || *self.inner.outcome.durable.borrow() >= ticket.seq()
    }

    /// The cause of the storage failure, once there was one (sticky).
    pub fn failure(&self) -> Option<Arc<str>> {
        self.inner.outcome.failure.borrow().clone()
    }

    /// Resolves with the cause at the first storage failure.
    pub async fn failed(&self) -> Arc<str> {
        let mut rx = self.inner.outcome.failure.subscribe();
        let cause = rx.wait_for(|f| f.is_some()).await.map(|f| f.clone());
        match cause {
            Ok(Some(cause)) => cause,
            // The store is gone: nothing can fail any more.
            _ => std::future::pending().await,
        }
    }

    /// Commit latency and volume, for metrics.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.inner.commit_stats
    }

    /// Bytes the data directory uses (0 with persistence off).
    pub fn disk_usage(&self) -> u64 {
        self.inner.backend.as_ref().map_or(0, |b| b.disk_usage())
    }

    /// Stops accepting memory-release deletes, writes everything pending
    /// with fsync, and stops the committer.
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        let tx = self.inner.sender.lock().1.take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            if tx.send(Command::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(30));
            }
        }
        if let Some(h) = self.inner.thread.lock().take() {
            let _ = h.join();
        }
    }
}

fn new_outcome() -> Arc<Outcome> {
    Arc::new(Outcome {
        durable: watch::channel(0).0,
        failure: watch::channel(None).0,
    })
}
