//! Runs a bridge's transform off the async runtime, on a thread of its own.
//!
//! The budget ([`super::budget`]) stops a rule from inside; this is the
//! backstop for what it cannot see (a native filter stuck in a loop that
//! never yields to jaq). A record whose run has not ended
//! [`ABANDON_GRACE`] after its time budget is given up: it is reported as
//! failed, the thread is left to finish on its own and a new one takes the
//! rest of the batch. After [`MAX_ABANDONED`] such threads the runner
//! refuses further work ([`RunnerFailed`]); the bridge stops taking
//! messages rather than leak a CPU per bad record.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::record::now_ms;

use tokio::sync::mpsc as tmpsc;

use super::{budget, Transform, TransformError};
use crate::record::{Input, Record};

/// How long past its time budget a run may go before it is abandoned.
pub const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// Threads abandoned before the runner gives up.
pub const MAX_ABANDONED: u32 = 3;

/// One message's outcome; record ids are the caller's to assign.
pub type Outcome = Result<Option<Record>, TransformError>;

/// The runner abandoned too many threads; the message says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("transform runner stopped: {0}")]
pub struct RunnerFailed(pub String);

struct Job {
    inputs: Arc<Vec<Input>>,
    start: usize,
    results: tmpsc::UnboundedSender<Outcome>,
}

struct Worker {
    jobs: mpsc::Sender<Job>,
    /// When the current record's run started, ms since the epoch; 0: idle.
    busy_since_ms: Arc<AtomicU64>,
}

type ApplyFn = dyn Fn(&Input) -> Outcome + Send + Sync;

/// A transform and the thread that runs it.
pub struct Runner {
    name: String,
    apply: Arc<ApplyFn>,
    /// How long one record may run before it is abandoned.
    limit: Duration,
    worker: Mutex<Option<Worker>>,
    abandoned: AtomicU32,
    /// No jq rule: transform on the caller's task. Handing every message
    /// to the rule thread and back cost ~5 µs and a wake-up per message
    /// (the Kafka bridge benchmark fell from 64k to 50k records/s).
    inline: bool,
}

impl Runner {
    /// `name` names the thread (`jq-NAME`).
    pub fn new(name: &str, transform: Transform) -> Runner {
        let limit = transform.budget.timeout + ABANDON_GRACE;
        let inline = !transform.has_rule();
        let mut r = Runner::from_fn(name, limit, move |input| transform.apply(input, 0));
        r.inline = inline;
        r
    }

    /// A runner of any function (tests make one that hangs).
    pub(crate) fn from_fn(
        name: &str,
        limit: Duration,
        apply: impl Fn(&Input) -> Outcome + Send + Sync + 'static,
    ) -> Runner {
        Runner {
            name: name.to_owned(),
            apply: Arc::new(apply),
            limit,
            worker: Mutex::new(None),
            abandoned: AtomicU32::new(0),
            inline: false,
        }
    }

    /// The worker slot; a poisoned lock (a panic elsewhere while holding
    /// it) still holds a valid `Option`.
    fn worker(&self) -> MutexGuard<'_, Option<Worker>> {
        self.worker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Threads given up so far.
    pub fn abandoned(&self) -> u32 {
        self.abandoned.load(Ordering::Relaxed)
    }

    fn spawn(&self) -> Result<Worker, RunnerFailed> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let busy = Arc::new(AtomicU64::new(0));
        let (apply, busy_since_ms) = (Arc::clone(&self.apply), Arc::clone(&busy));
        budget::spawn_rule_thread(format!("jq-{}", self.name), move || {
            while let Ok(job) = rx.recv() {
                for input in &job.inputs[job.start..] {
                    if job.results.is_closed() {
                        break;
                    }
                    busy_since_ms.store(now_ms().max(1), Ordering::Relaxed);
                    let outcome = apply(input);
                    busy_since_ms.store(0, Ordering::Relaxed);
                    if job.results.send(outcome).is_err() {
                        break;
                    }
                }
            }
        })
        .map_err(|e| RunnerFailed(format!("cannot start the transform thread: {e}")))?;
        Ok(Worker {
            jobs,
            busy_since_ms: busy,
        })
    }

    fn submit(&self, inputs: &Arc<Vec<Input>>, start: usize) -> Result<Submitted, RunnerFailed> {
        let mut slot = self.worker();
        if slot.is_none() {
            *slot = Some(self.spawn()?);
        }
        let (tx, rx) = tmpsc::unbounded_channel();
        let job = Job {
            inputs: Arc::clone(inputs),
            start,
            results: tx,
        };
        let worker = slot
            .as_ref()
            .ok_or_else(|| RunnerFailed("no worker".into()))?;
        if worker.jobs.send(job).is_err() {
            // The thread is gone (it cannot panic, but be safe): a new one.
            *slot = None;
            return Err(RunnerFailed("the transform thread exited".into()));
        }
        Ok(Submitted {
            results: rx,
            busy_since_ms: Arc::clone(&worker.busy_since_ms),
        })
    }

    /// Transforms `inputs` in order, one outcome per input.
    pub async fn apply_all(&self, inputs: Vec<Input>) -> Result<Vec<Outcome>, RunnerFailed> {
        if self.inline {
            return Ok(inputs.iter().map(|i| (self.apply)(i)).collect());
        }
        let limit = self.limit;
        let inputs = Arc::new(inputs);
        let mut out: Vec<Outcome> = Vec::with_capacity(inputs.len());
        let mut sub = self.submit(&inputs, 0)?;
        while out.len() < inputs.len() {
            match tokio::time::timeout(Duration::from_millis(100), sub.results.recv()).await {
                Ok(Some(outcome)) => out.push(outcome),
                Ok(None) => {
                    *self.worker() = None;
                    sub = self.submit(&inputs, out.len())?;
                }
                Err(_) => {
                    let since = sub.busy_since_ms.load(Ordering::Relaxed);
                    let stuck_for = Duration::from_millis(now_ms().saturating_sub(since));
                    if since == 0 || stuck_for < limit {
                        continue;
                    }
                    let n = self.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::error!(bridge = %self.name, abandoned = n, "jq rule did not stop within its budget: its thread is abandoned");
                    *self.worker() = None;
                    out.push(Err(TransformError::Budget(format!(
                        "the rule did not stop within {} ms; its thread was abandoned",
                        limit.as_millis()
                    ))));
                    if n >= MAX_ABANDONED {
                        return Err(RunnerFailed(format!(
                            "{n} transform threads did not stop within their budget"
                        )));
                    }
                    if out.len() < inputs.len() {
                        sub = self.submit(&inputs, out.len())?;
                    }
                }
            }
        }
        Ok(out)
    }
}

struct Submitted {
    results: tmpsc::UnboundedReceiver<Outcome>,
    busy_since_ms: Arc<AtomicU64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::TransformConfig;

    /// A bridge without a jq rule transforms on its own task: no rule
    /// thread and no hand-off per message (which cost the Kafka bridge a
    /// fifth of its throughput); one with a rule gets its thread.
    #[test]
    fn only_a_rule_gets_a_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let input = Input {
            topic: "a/b".into(),
            payload: bytes::Bytes::from_static(b"{\"n\":1}"),
            qos: 1,
            retain: false,
            client_id: None,
            username: None,
            timestamp_ms: 0,
            user_properties: Vec::new(),
        };
        for (expression, threaded) in [(None, false), (Some(".payload"), true)] {
            let t = Transform::compile(&TransformConfig {
                expression: expression.map(str::to_owned),
                destination: "out".into(),
                ..TransformConfig::default()
            })
            .unwrap();
            let runner = Runner::new("t", t);
            let out = rt.block_on(runner.apply_all(vec![input.clone()])).unwrap();
            assert!(matches!(out[0], Ok(Some(_))));
            assert_eq!(runner.worker().is_some(), threaded, "{expression:?}");
        }
    }
}
