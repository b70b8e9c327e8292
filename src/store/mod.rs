//! Durable state. The broker's memory is the working copy; the store is
//! its journal. Changes go to a committer thread as batches of [`Op`]s, and
//! each batch gets a [`Ticket`]: the connection that must not acknowledge
//! before the change is on disk waits for its ticket, everyone else moves
//! on. The committer writes whatever has accumulated in one atomic batch
//! and one fsync (group commit), so many publishers share one disk flush.
//!
//! Layout: `records` (binary formats), `fjall_backend` (the engine and
//! recovery scan), this module (ops, tickets, the committer).

mod commit_stats;
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

pub use commit_stats::{CommitStats, COMMIT_BUCKETS};
pub use fjall_backend::{FjallBackend, Recovered};
pub use records::{
    MessageRecord, OutboxRecord, OutboxState, SessionRecord, SubscriptionRecord, FORMAT_VERSION,
};

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

/// A position in the commit sequence; durable once the store reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ticket(u64);

enum Command {
    Write(u64, Vec<Op>),
    /// Persist everything and reply.
    Flush(std::sync::mpsc::Sender<()>),
}

struct Inner {
    sender: Mutex<(u64, Option<std::sync::mpsc::Sender<Command>>)>,
    durable: watch::Sender<u64>,
    next_message_id: AtomicU64,
    /// Set at shutdown: deletes caused by tearing down memory are ignored.
    closing: AtomicBool,
    policy: FsyncPolicy,
    backend: Option<Arc<FjallBackend>>,
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
        let (durable, _) = watch::channel(0);
        Store {
            inner: Arc::new(Inner {
                sender: Mutex::new((0, None)),
                durable,
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
        let (tx, rx) = std::sync::mpsc::channel::<Command>();
        let (durable, _) = watch::channel(0);
        // Never reuse an id, even when the store was empty at start: bridges
        // hand message ids to consumers for de-duplication. Starting from
        // the clock (µs) stays ahead of earlier runs unless they sustained
        // more than a million messages a second.
        let next_id = (recovered.messages.keys().max().copied().unwrap_or(0) + 1)
            .max(now_ms().saturating_mul(1000));
        let inner = Arc::new(Inner {
            sender: Mutex::new((0, Some(tx))),
            durable,
            next_message_id: AtomicU64::new(next_id),
            closing: AtomicBool::new(false),
            policy,
            backend: Some(Arc::clone(&backend)),
            thread: Mutex::new(None),
            commit_stats: Arc::default(),
        });
        let durable = inner.durable.clone();
        let stats = Arc::clone(&inner.commit_stats);
        let handle = std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || committer(backend, rx, durable, policy, stats))
            .map_err(|e| StoreError::Engine(format!("cannot start the committer thread: {e}")))?;
        *inner.thread.lock() = Some(handle);
        Ok((Store { inner }, recovered))
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
            return Ticket(0);
        }
        let mut guard = self.inner.sender.lock();
        let (counter, sender) = &mut *guard;
        let Some(tx) = sender.as_ref() else {
            return Ticket(0);
        };
        *counter += 1;
        let seq = *counter;
        if tx.send(Command::Write(seq, ops)).is_err() {
            tracing::error!("store committer is gone; change not persisted");
        }
        if self.inner.policy == FsyncPolicy::Never {
            return Ticket(0);
        }
        Ticket(seq)
    }

    /// Queues a deletion caused by memory being released; ignored once the
    /// broker is shutting down (memory teardown is not a state change).
    pub fn submit_release(&self, ops: Vec<Op>) {
        if !self.inner.closing.load(Ordering::Acquire) {
            self.submit(ops);
        }
    }

    /// Waits until `ticket` is durable.
    pub async fn wait(&self, ticket: Ticket) {
        if ticket.0 == 0 || *self.inner.durable.borrow() >= ticket.0 {
            return;
        }
        let mut rx = self.inner.durable.subscribe();
        let _ = rx.wait_for(|d| *d >= ticket.0).await;
    }

    pub fn is_durable(&self, ticket: Ticket) -> bool {
        ticket.0 == 0 || *self.inner.durable.borrow() >= ticket.0
    }

    /// Bytes the data directory uses.
    /// Commit latency and volume, for metrics.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.inner.commit_stats
    }

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

fn committer(
    backend: Arc<FjallBackend>,
    rx: std::sync::mpsc::Receiver<Command>,
    durable: watch::Sender<u64>,
    policy: FsyncPolicy,
    stats: Arc<CommitStats>,
) {
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        if policy != FsyncPolicy::Always {
            // Group commit: take everything that queued up meanwhile.
            while let Ok(c) = rx.try_recv() {
                pending.push(c);
                if pending.len() >= 4096 {
                    break;
                }
            }
        }
        let mut last = None;
        let mut flushes = Vec::new();
        let mut ops: Vec<Op> = Vec::new();
        for c in pending {
            match c {
                Command::Write(seq, o) => {
                    ops.extend(o);
                    last = Some(seq);
                }
                Command::Flush(done) => flushes.push(done),
            }
        }
        let started = std::time::Instant::now();
        let n_ops = ops.len();
        let result = backend.apply(ops).and_then(|()| match policy {
            FsyncPolicy::Never => Ok(()),
            _ => backend.sync(),
        });
        stats.observe(started.elapsed(), n_ops);
        match result {
            Ok(()) => {
                if let Some(seq) = last {
                    durable.send_replace(seq);
                }
            }
            Err(e) => {
                // Acknowledgements waiting for this batch are never sent:
                // clients will retry, nothing acknowledged is lost.
                if !failed {
                    tracing::error!(error = %e, "store write failed; acknowledgements are withheld");
                }
                failed = true;
            }
        }
        if !flushes.is_empty() {
            let _ = backend.sync();
            for f in flushes {
                let _ = f.send(());
            }
            return;
        }
    }
}
