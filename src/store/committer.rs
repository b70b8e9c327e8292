//! The committer thread: group commit, and what happens when a write fails.
//!
//! A failure is sticky. Once a batch failed or the engine panicked, what
//! is on disk is unknown, and a later batch that succeeds says nothing
//! about the earlier one, so no ticket ever becomes durable again (no
//! PUBACK, no PUBREC, no CONNACK that waits for the store), later writes
//! are dropped, and the store reports the failure: readiness turns false
//! and the broker shuts down and exits non-zero for its supervisor to
//! restart it. What was acknowledged before the failure is on disk; what
//! was not acknowledged, the clients still hold and resend.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use tokio::sync::watch;

use super::backend::Backend;
use super::{CommitStats, FsyncPolicy, Op, StoreError};

pub enum Command {
    Write(u64, Vec<Op>),
    /// Persist everything and reply.
    Flush(std::sync::mpsc::Sender<()>),
}

/// What the committer reports to the rest of the store.
pub struct Outcome {
    /// The highest ticket that is durable.
    pub durable: watch::Sender<u64>,
    /// Set once, at the first failure, with its cause.
    pub failure: watch::Sender<Option<Arc<str>>>,
}

impl Outcome {
    pub fn fail(&self, cause: &StoreError) {
        let first = self.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            *f = Some(cause.to_string().into());
            true
        });
        if first {
            tracing::error!(error = %cause, "storage failure: nothing more is acknowledged; the broker shuts down and exits for its supervisor to restart it");
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.borrow().is_some()
    }
}

/// Runs `f`, turning a panic into an error: a panicking engine is a
/// storage failure, not a dead thread that leaves every waiter hanging.
fn guarded(f: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(StoreError::Panicked(message))
    })
}

pub fn run(
    backend: Arc<dyn Backend>,
    rx: Receiver<Command>,
    outcome: Arc<Outcome>,
    policy: FsyncPolicy,
    stats: Arc<CommitStats>,
) {
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
        if !outcome.failed() {
            let started = std::time::Instant::now();
            let n_ops = ops.len();
            let result = guarded(|| {
                backend.apply(ops)?;
                match policy {
                    FsyncPolicy::Never => Ok(()),
                    _ => backend.sync(),
                }
            });
            stats.observe(started.elapsed(), n_ops);
            match result {
                Ok(()) => {
                    if let Some(seq) = last {
                        outcome.durable.send_replace(seq);
                    }
                }
                Err(e) => outcome.fail(&e),
            }
        }
        if !flushes.is_empty() {
            if !outcome.failed() {
                if let Err(e) = guarded(|| backend.sync()) {
                    outcome.fail(&e);
                }
            }
            for f in flushes {
                let _ = f.send(());
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::store::{Backend, FsyncPolicy, Op, Store, StoreError};

    /// Fails (or panics on) its `bad`th apply; every other apply succeeds.
    struct Faulty {
        applied: AtomicUsize,
        bad: usize,
        panic: bool,
    }

    impl Backend for Faulty {
        fn apply(&self, _ops: Vec<Op>) -> Result<(), StoreError> {
            let n = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
            if n != self.bad {
                return Ok(());
            }
            if self.panic {
                panic!("engine invariant broken");
            }
            Err(StoreError::Engine("no space left on device".into()))
        }
        fn sync(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn store(bad: usize, panic: bool) -> Store {
        let backend = Arc::new(Faulty {
            applied: AtomicUsize::new(0),
            bad,
            panic,
        });
        Store::start(backend, FsyncPolicy::Batch, 1).unwrap()
    }

    fn op() -> Vec<Op> {
        vec![Op::DeleteMessage { id: 1 }]
    }

    fn until_failed(s: &Store) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.failure().is_none() {
            assert!(
                Instant::now() < deadline,
                "the store never reported failure"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn nothing_after_a_failed_batch_becomes_durable() {
        let s = store(2, false);
        let first = s.submit(op());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(s.wait(first));
        let failing = s.submit(op());
        until_failed(&s);
        // This batch would be written fine; it must still not count, or its
        // ticket would vouch for the failed one before it.
        let later = s.submit(op());
        s.close();
        assert!(s.is_durable(first));
        assert!(!s.is_durable(failing));
        assert!(!s.is_durable(later), "acknowledged after a failed write");
        assert!(s.failure().unwrap().contains("no space left"));
    }

    #[test]
    fn a_panicking_engine_is_a_storage_failure() {
        let s = store(1, true);
        let t = s.submit(op());
        until_failed(&s);
        assert!(s.failure().unwrap().contains("engine invariant broken"));
        // The committer survived the panic and still answers the close.
        let later = s.submit(op());
        s.close();
        assert!(!s.is_durable(t) && !s.is_durable(later));
    }
}
