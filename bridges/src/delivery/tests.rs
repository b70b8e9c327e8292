//! The delivery loop against an in-memory sink and a real buffer.

use std::collections::VecDeque;

use bytes::Bytes;

use super::*;
use crate::buffer::BufferConfig;

/// Answers each `send` from a script (then `Ok`), refuses one record
/// permanently whenever it is in the batch, and notes every batch's ids.
struct ScriptedSink {
    answers: VecDeque<Result<(), SinkError>>,
    refused: Option<u64>,
    max_batch: usize,
    sent: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Sink for ScriptedSink {
    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.sent.lock().push(batch.iter().map(|r| r.id).collect());
        if batch.iter().any(|r| Some(r.id) == self.refused) {
            return Err(SinkError::Permanent("HTTP 400".to_owned()));
        }
        self.answers.pop_front().unwrap_or(Ok(()))
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Delivered(usize, u64),
    DeadLettered(u64, String),
    Failing(Option<String>),
}

struct TestHost {
    buffer: Arc<Mutex<Buffer>>,
    wake: Notify,
    stop: watch::Receiver<bool>,
    events: Mutex<Vec<Event>>,
}

impl DeliveryHost for TestHost {
    fn name(&self) -> &str {
        "test"
    }
    fn buffer(&self) -> &Arc<Mutex<Buffer>> {
        &self.buffer
    }
    fn paused(&self) -> bool {
        false
    }
    fn wake(&self) -> &Notify {
        &self.wake
    }
    fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
    fn delivered(&self, records: usize, through: u64) {
        self.events.lock().push(Event::Delivered(records, through));
    }
    fn dead_lettered(&self, record: u64, reason: &str) {
        self.events
            .lock()
            .push(Event::DeadLettered(record, reason.to_owned()));
    }
    fn failing(&self, error: Option<String>) {
        self.events.lock().push(Event::Failing(error));
    }
}

fn record(id: u64) -> Record {
    Record {
        id,
        destination: "mem".to_owned(),
        key: None,
        payload: Bytes::from(format!("{{\"n\":{id}}}")),
        headers: Vec::new(),
        timestamp_ms: 0,
    }
}

/// Runs the loop over records `ids` until the buffer is empty (within a
/// deadline), then stops it; returns the batches sent, the host's events
/// and the dead-letter file.
async fn deliver(ids: std::ops::RangeInclusive<u64>, mut sink: ScriptedSink) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BufferConfig::new(dir.path());
    config.fsync = false;
    let mut buffer = Buffer::open(config).unwrap();
    buffer.append(&ids.map(record).collect::<Vec<_>>()).unwrap();
    let (stop_tx, stop) = watch::channel(false);
    let host = Arc::new(TestHost {
        buffer: Arc::new(Mutex::new(buffer)),
        wake: Notify::new(),
        stop,
        events: Mutex::new(Vec::new()),
    });
    let sent = Arc::new(Mutex::new(Vec::new()));
    sink.sent = Arc::clone(&sent);
    let task = tokio::spawn(run(sink, Arc::clone(&host)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host.buffer.lock().is_empty() {
        assert!(Instant::now() < deadline, "the buffer never drained");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send_replace(true);
    host.wake.notify_one();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop stops")
        .unwrap();
    let dead_letters =
        std::fs::read_to_string(host.buffer.lock().dead_letter_path()).unwrap_or_default();
    let events = std::mem::take(&mut *host.events.lock());
    let sent = std::mem::take(&mut *sent.lock());
    Outcome {
        sent,
        events,
        dead_letters,
    }
}

struct Outcome {
    sent: Vec<Vec<u64>>,
    events: Vec<Event>,
    dead_letters: String,
}

fn scripted(answers: Vec<Result<(), SinkError>>, max_batch: usize) -> ScriptedSink {
    ScriptedSink {
        answers: answers.into(),
        refused: None,
        max_batch,
        sent: Arc::default(),
    }
}

/// A retryable failure resends from the first unacknowledged record: the
/// batch that failed, not the one before it, and nothing is skipped.
#[tokio::test]
async fn a_retryable_error_resends_from_the_first_unacknowledged_record() {
    let down = SinkError::Retryable("connection refused".to_owned());
    let out = deliver(1..=4, scripted(vec![Ok(()), Err(down)], 2)).await;
    assert_eq!(out.sent, vec![vec![1, 2], vec![3, 4], vec![3, 4]]);
    assert_eq!(
        out.events,
        vec![
            Event::Delivered(2, 2),
            Event::Failing(Some("connection refused".to_owned())),
            Event::Delivered(2, 4),
            Event::Failing(None),
        ]
    );
    assert!(out.dead_letters.is_empty(), "{}", out.dead_letters);
}

/// A permanent failure sends the batch one record at a time: the refused
/// record goes to the dead-letter file with the sink's reason, the others
/// are delivered in order.
#[tokio::test]
async fn a_permanent_failure_dead_letters_the_refused_record_only() {
    let mut sink = scripted(Vec::new(), 10);
    sink.refused = Some(2);
    let out = deliver(1..=3, sink).await;
    assert_eq!(out.sent, vec![vec![1, 2, 3], vec![1], vec![2], vec![3]]);
    assert_eq!(
        out.events,
        vec![
            Event::Delivered(1, 1),
            Event::DeadLettered(2, "HTTP 400".to_owned()),
            Event::Delivered(1, 3),
        ]
    );
    let lines: Vec<serde_json::Value> = out
        .dead_letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.dead_letters);
    assert_eq!(lines[0]["reason"], "HTTP 400", "{}", lines[0]);
    assert_eq!(lines[0]["record"]["id"], 2, "{}", lines[0]);
}

#[test]
fn batches_are_cut_at_the_byte_limit_but_never_empty() {
    let rec = |id, size| Record {
        payload: Bytes::from(vec![b'x'; size]),
        ..record(id)
    };
    let mut b: Vec<_> = (0..5).map(|i| rec(i, 400)).collect();
    truncate_to_bytes(&mut b, 1000);
    assert_eq!(b.len(), 2);
    let mut big = vec![rec(1, 5000), rec(2, 10)];
    truncate_to_bytes(&mut big, 1000);
    assert_eq!(
        big.len(),
        1,
        "a record larger than the limit still goes alone"
    );
    let mut all: Vec<_> = (0..3).map(|i| rec(i, 10)).collect();
    truncate_to_bytes(&mut all, usize::MAX);
    assert_eq!(all.len(), 3);
}
